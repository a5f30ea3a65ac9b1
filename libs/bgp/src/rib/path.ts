/**
 * Interned paths: one object per distinct (source, attributes, next hop,
 * route data) shared by every prefix that carries it. The RIBs map a route
 * key (a string) to a Path, so a route costs a map entry and its key.
 */
import type { EvpnRoute, Family, PathAttributes } from '../codec/index.js';
import { toHex } from '../codec/index.js';

/** Where a path came from: the speaker itself or one neighbour. */
export interface RouteSource {
  readonly id: number;
  readonly kind: 'local' | 'peer';
  /** Neighbour address, or 'local'. */
  readonly address: string;
  /** Neighbour's BGP identifier as a number (0 for local). */
  routerId: number;
  asn: number;
  readonly ibgp: boolean;
  readonly routeReflectorClient: boolean;
}

/** Route data of EVPN routes that is not part of the route key. */
export interface EvpnData {
  esi?: string;
  labels?: number[];
  label?: number;
  gateway?: string;
}

export interface Path {
  readonly source: RouteSource;
  /** Attributes without MP_REACH/MP_UNREACH/NEXT_HOP. */
  readonly attrs: PathAttributes;
  readonly nextHop: string;
  readonly evpn: EvpnData | undefined;
  readonly internKey: string;
  refs: number;
  // Decision inputs, computed once (RFC 4271 §9.1.2.2).
  readonly localPref: number;
  readonly asPathLength: number;
  readonly neighborAs: number;
  readonly origin: number;
  readonly med: number;
  readonly originatorId: number;
  readonly clusterLength: number;
}

export function attributesKey(a: PathAttributes): string {
  return JSON.stringify(a, (_k, v: unknown) => (v instanceof Uint8Array ? toHex(v) : v));
}

export function evpnDataOf(r: EvpnRoute): EvpnData | undefined {
  switch (r.routeType) {
    case 1:
      return { label: r.label };
    case 2:
      return { esi: r.esi, labels: r.labels };
    case 5:
      return { esi: r.esi, gateway: r.gateway, label: r.label };
    default:
      return undefined;
  }
}

export function evpnDataKey(d: EvpnData | undefined): string {
  if (d === undefined) return '';
  return `${d.esi ?? ''}/${d.labels?.join(',') ?? ''}/${d.label ?? ''}/${d.gateway ?? ''}`;
}

function ipv4Number(s: string): number {
  const p = s.split('.');
  return ((+p[0] << 24) | (+p[1] << 16) | (+p[2] << 8) | +p[3]) >>> 0;
}

export function asPathLength(a: PathAttributes): number {
  let n = 0;
  for (const s of a.asPath ?? []) {
    if (s.type === 'sequence') n += s.asns.length;
    else if (s.type === 'set') n += 1; // RFC 4271 §9.1.2.2 a)
  }
  return n;
}

export class PathTable {
  private readonly paths = new Map<string, Path>();

  get size(): number {
    return this.paths.size;
  }

  /** Returns the shared Path for these values; the caller takes one reference. */
  intern(source: RouteSource, attrs: PathAttributes, attrsKey: string, nextHop: string, evpn: EvpnData | undefined): Path {
    const key = `${source.id}|${nextHop}|${evpnDataKey(evpn)}|${attrsKey}`;
    let p = this.paths.get(key);
    if (p === undefined) {
      const first = attrs.asPath?.find((s) => s.type === 'sequence')?.asns[0];
      p = {
        source,
        attrs,
        nextHop,
        evpn,
        internKey: key,
        refs: 0,
        localPref: attrs.localPref ?? 100,
        asPathLength: asPathLength(attrs),
        neighborAs: first ?? 0,
        origin: attrs.origin ?? 2,
        med: attrs.med ?? 0,
        originatorId: attrs.originatorId !== undefined ? ipv4Number(attrs.originatorId) : source.routerId,
        clusterLength: attrs.clusterList?.length ?? 0,
      };
      this.paths.set(key, p);
    }
    p.refs++;
    return p;
  }

  release(p: Path): void {
    if (--p.refs === 0) this.paths.delete(p.internKey);
  }
}

/**
 * RFC 4271 §9.1.2.2 decision process; negative when a is better.
 * Steps: LOCAL_PREF, locally originated, AS_PATH length, ORIGIN, MED (same
 * neighbour AS), eBGP over iBGP, originator/router id (RFC 4456 §9),
 * CLUSTER_LIST length, neighbour address.
 */
export function comparePaths(a: Path, b: Path): number {
  if (a.localPref !== b.localPref) return b.localPref - a.localPref;
  const al = a.source.kind === 'local' ? 0 : 1;
  const bl = b.source.kind === 'local' ? 0 : 1;
  if (al !== bl) return al - bl;
  if (a.asPathLength !== b.asPathLength) return a.asPathLength - b.asPathLength;
  if (a.origin !== b.origin) return a.origin - b.origin;
  if (a.neighborAs === b.neighborAs && a.med !== b.med) return a.med - b.med;
  const ai = a.source.ibgp ? 1 : 0;
  const bi = b.source.ibgp ? 1 : 0;
  if (ai !== bi) return ai - bi;
  if (a.originatorId !== b.originatorId) return a.originatorId - b.originatorId;
  if (a.clusterLength !== b.clusterLength) return a.clusterLength - b.clusterLength;
  return a.source.address < b.source.address ? -1 : a.source.address > b.source.address ? 1 : 0;
}

export const FAMILY_INDEX: Record<Family, number> = { 'ipv4-unicast': 0, 'ipv6-unicast': 1, 'l2vpn-evpn': 2 };
export const FAMILY_BY_INDEX: Family[] = ['ipv4-unicast', 'ipv6-unicast', 'l2vpn-evpn'];

/** Rebuilds an EVPN route from its key and route data. */
export function evpnFromKey(key: string, d: EvpnData | undefined): EvpnRoute {
  const f = key.split('|');
  switch (f[0]) {
    case '1':
      return { routeType: 1, rd: f[1], esi: f[2], ethernetTag: Number(f[3]), label: d?.label ?? 0 };
    case '2': {
      const r: EvpnRoute = {
        routeType: 2,
        rd: f[1],
        esi: d?.esi ?? '00:00:00:00:00:00:00:00:00:00',
        ethernetTag: Number(f[2]),
        mac: f[3],
        labels: (d?.labels ?? [0]) as [number],
      };
      if (f[4] !== '') r.ip = f[4];
      return r;
    }
    case '3':
      return { routeType: 3, rd: f[1], ethernetTag: Number(f[2]), originatorIp: f[3] };
    case '4':
      return { routeType: 4, rd: f[1], esi: f[2], originatorIp: f[3] };
    case '5':
      return {
        routeType: 5,
        rd: f[1],
        esi: d?.esi ?? '00:00:00:00:00:00:00:00:00:00',
        ethernetTag: Number(f[2]),
        prefix: f[3],
        gateway: d?.gateway ?? '0.0.0.0',
        label: d?.label ?? 0,
      };
    default: {
      const hex = f[1];
      const value = new Uint8Array(hex.length / 2);
      for (let i = 0; i < value.length; i++) value[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
      return { routeType: 'unknown', type: Number(f[0].slice(1)), value };
    }
  }
}
