/**
 * Import/export policy hooks. A hook sees one route and the neighbour and
 * returns undefined (accept unchanged), 'reject', or changes to apply.
 * `policy()` builds a hook from declarative statements (first match wins).
 */
import { ipv4ToNumber, ipv6ToBytes } from '../codec/index.js';
import type { EvpnRoute, Family, LargeCommunity, PathAttributes } from '../codec/index.js';

export interface PolicyRoute {
  family: Family;
  /** Unicast prefix (ipv4/ipv6 unicast). */
  prefix?: string;
  evpn?: EvpnRoute;
  nextHop: string;
  attributes: PathAttributes;
}
export interface PolicyNeighbor {
  address: string;
  asn: number;
  ibgp: boolean;
}
export interface RouteChanges {
  addCommunities?: number[];
  removeCommunities?: number[];
  addLargeCommunities?: LargeCommunity[];
  addRouteTargets?: string[];
  nextHop?: string;
  localPref?: number;
  med?: number;
}
export type PolicyResult = undefined | 'accept' | 'reject' | { set: RouteChanges };
export type PolicyHook = (route: PolicyRoute, neighbor: PolicyNeighbor) => PolicyResult;

export interface PolicyMatch {
  /** Route's prefix (unicast, EVPN type-5 prefix, type-2 IP) lies inside one of these. */
  prefixes?: string[];
  /** Carries one of these route targets. */
  routeTargets?: string[];
  /** Carries one of these communities (number or `65000:100`). */
  communities?: (number | string)[];
  families?: Family[];
}
export interface PolicyStatement {
  match?: PolicyMatch;
  action: 'accept' | 'reject';
  set?: RouteChanges;
}

export function parseCommunity(c: number | string): number {
  if (typeof c === 'number') return c >>> 0;
  const m = /^(\d+):(\d+)$/.exec(c);
  if (!m || +m[1] > 0xffff || +m[2] > 0xffff) throw new Error(`not a community: ${c}`);
  return ((+m[1] << 16) | +m[2]) >>> 0;
}
export function formatCommunity(c: number): string {
  return `${c >>> 16}:${c & 0xffff}`;
}

function bitsOf(addr: string): Uint8Array {
  if (addr.includes(':')) return ipv6ToBytes(addr);
  const n = ipv4ToNumber(addr);
  return Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
}
function contains(outer: string, inner: string): boolean {
  const [oa, ol] = outer.split('/');
  const [ia, il] = inner.includes('/') ? inner.split('/') : [inner, inner.includes(':') ? '128' : '32'];
  if (oa.includes(':') !== ia.includes(':')) return false;
  const olen = Number(ol);
  if (Number(il) < olen) return false;
  const ob = bitsOf(oa);
  const ib = bitsOf(ia);
  for (let bit = 0; bit < olen; bit++) {
    const mask = 0x80 >> bit % 8;
    if ((ob[bit >> 3] & mask) !== (ib[bit >> 3] & mask)) return false;
  }
  return true;
}

function routePrefix(r: PolicyRoute): string | undefined {
  if (r.prefix !== undefined) return r.prefix;
  if (r.evpn?.routeType === 5) return r.evpn.prefix;
  if (r.evpn?.routeType === 2) return r.evpn.ip;
  return undefined;
}

function matches(m: PolicyMatch | undefined, r: PolicyRoute): boolean {
  if (m === undefined) return true;
  if (m.families && !m.families.includes(r.family)) return false;
  if (m.prefixes) {
    const p = routePrefix(r);
    if (p === undefined || !m.prefixes.some((o) => contains(o, p))) return false;
  }
  if (m.routeTargets) {
    const rts = new Set(m.routeTargets);
    if (!(r.attributes.extendedCommunities ?? []).some((e) => e.kind === 'route-target' && rts.has(e.value))) return false;
  }
  if (m.communities) {
    const cs = new Set(m.communities.map(parseCommunity));
    if (!(r.attributes.communities ?? []).some((c) => cs.has(c))) return false;
  }
  return true;
}

/** Builds a hook from statements; the first matching statement decides. */
export function policy(statements: PolicyStatement[], defaultAction: 'accept' | 'reject' = 'accept'): PolicyHook {
  return (route) => {
    for (const s of statements) {
      if (!matches(s.match, route)) continue;
      if (s.action === 'reject') return 'reject';
      return s.set ? { set: s.set } : 'accept';
    }
    return defaultAction;
  };
}

/** Applies changes; returns a new attribute object (the input is shared and never mutated). */
export function applyChanges(a: PathAttributes, c: RouteChanges): PathAttributes {
  const out: PathAttributes = { ...a };
  if (c.addCommunities || c.removeCommunities) {
    const remove = new Set(c.removeCommunities ?? []);
    const list = (a.communities ?? []).filter((x) => !remove.has(x));
    for (const x of c.addCommunities ?? []) if (!list.includes(x)) list.push(x);
    if (list.length > 0) out.communities = list;
    else delete out.communities;
  }
  if (c.addLargeCommunities) out.largeCommunities = [...(a.largeCommunities ?? []), ...c.addLargeCommunities];
  if (c.addRouteTargets) {
    out.extendedCommunities = [...(a.extendedCommunities ?? []), ...c.addRouteTargets.map((value) => ({ kind: 'route-target' as const, value }))];
  }
  if (c.localPref !== undefined) out.localPref = c.localPref;
  if (c.med !== undefined) out.med = c.med;
  return out;
}
