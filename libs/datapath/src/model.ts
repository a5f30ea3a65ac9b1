/**
 * The kernel objects of one domain namespace, and HostState -> those objects.
 *
 * Isolation design (docs/agent.md): this kernel has no VRF device, so each
 * domain (tenant routing instance) gets its own network namespace on the host,
 * `${nsPrefix}${l3Vni}`. The VXLAN devices are created from the host namespace
 * straight into the domain namespace (`ip link add ... netns <domain>`), so
 * their UDP sockets stay on the underlay (the host namespace holds the VTEP
 * address) while their frames are switched and routed inside the domain.
 * Routing, neighbours, conntrack and nftables are then per domain by
 * construction; overlapping addresses of two tenants never meet.
 *
 * The model is a set of keyed objects per kind. The same model is produced by
 * rendering a HostState and by reading the kernel, so one diff serves delta
 * application and start-up reconciliation alike.
 */
import type { HostState, RuleEntry } from '#sdn/compiler';
import { parseCidr, type Cidr } from '#sdn/model';

export interface DatapathConfig {
  /** namespace that holds the VTEP address (where VXLAN sockets live); null = the agent's own */
  hostNetns: string | null;
  /** a domain's namespace is `${nsPrefix}${l3Vni}`; the prefix marks what the agent owns */
  nsPrefix: string;
  /** MTU of VXLAN devices and endpoint interfaces: underlay MTU - 50 for VXLAN over IPv4 */
  mtu: number;
  /** UDP port of VXLAN (IANA 4789) */
  vxlanPort: number;
}

export const defaultDatapathConfig = (): DatapathConfig => ({ hostNetns: null, nsPrefix: 'sdn', mtu: 1450, vxlanPort: 4789 });

/** routes the agent installs carry this protocol number, so they are found again at start */
export const ROUTE_PROTO = 201;
/** the nftables table in every domain namespace */
export const NFT_TABLE = 'sdn';
/** set of the local endpoints' addresses of the domain, one per family */
export const LOCAL_SET: Record<4 | 6, string> = { 4: 'local4', 6: 'local6' };
/** conntrack mark of a connection admitted by a stateless rule: its return traffic is checked again */
export const STATELESS_MARK = '0x00000002';

export type LinkSpec = (
  | { kind: 'bridge'; name: string; mac: string }
  | { kind: 'vxlan'; name: string; vni: number; local: string; master: string }
  /** host side of an endpoint, on the subnet bridge; `peer` (container side) waits in the host namespace */
  | { kind: 'veth'; name: string; master: string; peer: string; peerMac: string }
) & {
  /** read from the kernel: the device is down (an interrupted apply); it is recreated */
  down?: true;
};

export interface FdbSpec {
  dev: string;
  mac: string;
  /** remote VTEP of a VXLAN (self) entry; undefined for a bridge (master) entry */
  dst?: string;
}

export interface NeighSpec {
  dev: string;
  ip: string;
  mac: string;
}

export interface RouteSpec {
  prefix: string;
  via: string;
  dev: string;
}

export interface NftRule {
  text: string;
  /** `${ruleId} ${hash}` or `default <action>`: how a rule is recognised when read back */
  comment: string;
}

export interface NftModel {
  /** set name -> family */
  sets: Map<string, 4 | 6>;
  /** set name -> members as the kernel holds them (hosts without /32, nested prefixes folded) */
  elements: Map<string, Set<string>>;
  egress: NftRule[];
  ingress: NftRule[];
  /** the table and its forward chain are in place */
  base: boolean;
  /** anti-spoofing in `table bridge sdn`: what each endpoint port may send from */
  guard: GuardModel;
}

/**
 * Source guard of the local endpoints' ports (bridge family, before any
 * forwarding decision): a frame from `ep<hash>` must carry that endpoint's MAC
 * and IP, so that an endpoint can neither borrow another's policy nor slip
 * past the egress chain with an address outside `local4`. Elements are
 * `"<ifname>" . <address>` as nft writes them.
 */
export interface GuardModel {
  base: boolean;
  src4: Set<string>;
  src6: Set<string>;
  srcmac: Set<string>;
}

export const GUARD_SETS = ['src4', 'src6', 'srcmac'] as const;
/** comments of the guard chain's rules, in order: what says the guard is ours and current */
export const GUARD_COMMENTS = ['guard other ports', 'guard mac', 'guard ipv4', 'guard ipv6', 'guard arp'];
/** comments of the forward chain's rules, in order */
export const BASE_COMMENTS = ['base established', 'base invalid', 'base nd', 'base egress4', 'base egress6', 'base ingress4', 'base ingress6'];
export const guardElement = (ifName: string, addr: string) => `"${ifName}" . ${addr}`;

export interface DomainModel {
  ns: string;
  l3Vni: number;
  links: Map<string, LinkSpec>;
  /** `${dev}|${cidr}` */
  addrs: Map<string, { dev: string; cidr: string }>;
  /** fdbKey() */
  fdb: Map<string, FdbSpec>;
  /** `${dev}|${ip}` */
  neigh: Map<string, NeighSpec>;
  /** prefix */
  routes: Map<string, RouteSpec>;
  nft: NftModel;
}

export const fdbKey = (f: FdbSpec) => (f.dst === undefined ? `master|${f.dev}|${f.mac}` : `self|${f.dev}|${f.mac}|${f.dst}`);
export const ZERO_MAC = '00:00:00:00:00:00';

export function emptyDomainModel(ns: string, l3Vni: number): DomainModel {
  return {
    ns,
    l3Vni,
    links: new Map(),
    addrs: new Map(),
    fdb: new Map(),
    neigh: new Map(),
    routes: new Map(),
    nft: emptyNft(),
  };
}

export const emptyNft = (): NftModel => ({
  sets: new Map(),
  elements: new Map(),
  egress: [],
  ingress: [],
  base: false,
  guard: { base: false, src4: new Set(), src6: new Set(), srcmac: new Set() },
});

export const domainNs = (cfg: DatapathConfig, l3Vni: number) => `${cfg.nsPrefix}${l3Vni}`;
/** the container side of an endpoint's veth pair: `ec` + the same 12 hex as its `ep` name */
export const peerIfName = (ifName: string) => `ec${ifName.slice(2)}`;

/** `10.0.0.5/32` -> `10.0.0.5` (how nft and ip print a host), other prefixes unchanged */
export function shortPrefix(cidr: string): string {
  if (cidr.endsWith('/32') && !cidr.includes(':')) return cidr.slice(0, -3);
  if (cidr.endsWith('/128') && cidr.includes(':')) return cidr.slice(0, -4);
  return cidr;
}

/** Members of an interval set as nft accepts them: a prefix inside another member is folded into it (nft refuses overlaps). */
export function foldedElements(cidrs: Iterable<string>): Set<string> {
  const all = [...new Set(cidrs)];
  const wide: Cidr[] = [];
  for (const c of all) {
    if (c.endsWith('/32') || c.endsWith('/128')) continue;
    const p = parseCidr(c);
    if (p.ok) wide.push(p.cidr);
  }
  const out = new Set<string>();
  if (wide.length === 0) {
    for (const c of all) out.add(shortPrefix(c));
    return out;
  }
  for (const c of all) {
    const p = parseCidr(c);
    if (!p.ok) continue;
    const inside = wide.some(
      (w) =>
        w.version === p.cidr.version &&
        w.prefixLength < p.cidr.prefixLength &&
        (p.cidr.network >> BigInt((w.version === 4 ? 32 : 128) - w.prefixLength)) === (w.network >> BigInt((w.version === 4 ? 32 : 128) - w.prefixLength)),
    );
    if (!inside) out.add(shortPrefix(c));
  }
  return out;
}

function hash(text: string): string {
  // FNV-1a 32 bit twice with different seeds: enough to recognise a rule we wrote
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x5bd1e995) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}

const ports = (r: { from: number; to: number }[]) => `{ ${r.map((p) => (p.from === p.to ? `${p.from}` : `${p.from}-${p.to}`)).join(', ')} }`;

/**
 * One ACL rule as an nft rule of the domain's `egress` or `ingress` chain.
 * Egress runs first (the packet leaves a local endpoint) and an allow there
 * `return`s so that the ingress check of a local destination still runs;
 * ingress allow is final. A stateless allow marks the connection, so its
 * return traffic is not taken as established (see the forward chain).
 */
export function ruleText(r: RuleEntry): string {
  const fam = r.etherType === 'ipv6' ? 'ip6' : 'ip';
  const self = r.direction === 'egress' ? 'saddr' : 'daddr';
  const peer = r.direction === 'egress' ? 'daddr' : 'saddr';
  const parts = [`meta nfproto ${r.etherType}`];
  if (r.appliesToSet) parts.push(`${fam} ${self} @${r.appliesToSet}`);
  if (r.peerSet) parts.push(`${fam} ${peer} @${r.peerSet}`);
  if (r.protocol !== null) {
    if (r.protocol === 6 || r.protocol === 17) {
      const p = r.protocol === 6 ? 'tcp' : 'udp';
      parts.push(`meta l4proto ${p}`);
      if (r.sourcePorts.length) parts.push(`${p} sport ${ports(r.sourcePorts)}`);
      if (r.destinationPorts.length) parts.push(`${p} dport ${ports(r.destinationPorts)}`);
    } else parts.push(`meta l4proto ${r.protocol}`);
  }
  if (r.action === 'deny') parts.push('drop');
  else {
    if (!r.stateful) parts.push(`ct mark set ${STATELESS_MARK}`);
    parts.push(r.direction === 'egress' ? 'return' : 'accept');
  }
  return parts.join(' ');
}

const byPriority = (a: RuleEntry, b: RuleEntry) => a.priority - b.priority || (a.ruleId < b.ruleId ? -1 : a.ruleId > b.ruleId ? 1 : 0);

/** Renders the domains of a state (all, or those in `only`) into kernel objects, keyed by namespace. */
export function renderState(state: HostState, cfg: DatapathConfig, only?: Set<string>): Map<string, DomainModel> {
  const out = new Map<string, DomainModel>();
  const host = [...state.host.values()][0];
  if (!host) return out;
  const byDomain = new Map<string, DomainModel>();
  for (const d of state.domains.values()) {
    if (only && !only.has(d.domainId)) continue;
    const m = emptyDomainModel(domainNs(cfg, d.l3Vni), d.l3Vni);
    m.links.set(d.bridgeName, { kind: 'bridge', name: d.bridgeName, mac: host.routerMac });
    m.links.set(d.vxlanName, { kind: 'vxlan', name: d.vxlanName, vni: d.l3Vni, local: host.vtepIp, master: d.bridgeName });
    m.nft.base = true;
    m.nft.guard.base = true;
    m.nft.sets.set(LOCAL_SET[4], 4);
    m.nft.sets.set(LOCAL_SET[6], 6);
    m.nft.elements.set(LOCAL_SET[4], new Set());
    m.nft.elements.set(LOCAL_SET[6], new Set());
    out.set(m.ns, m);
    byDomain.set(d.domainId, m);
  }
  const subnetModel = (subnetId: string) => {
    const s = state.subnets.get(subnetId);
    const m = s && byDomain.get(s.domainId);
    return s && m ? { s, m } : null;
  };
  for (const s of state.subnets.values()) {
    const m = byDomain.get(s.domainId);
    if (!m) continue;
    m.links.set(s.bridgeName, { kind: 'bridge', name: s.bridgeName, mac: host.gatewayMac });
    m.links.set(s.vxlanName, { kind: 'vxlan', name: s.vxlanName, vni: s.l2Vni, local: host.vtepIp, master: s.bridgeName });
    const len = s.cidr.split('/')[1];
    const cidr = `${s.gateway}/${len}`;
    m.addrs.set(`${s.bridgeName}|${cidr}`, { dev: s.bridgeName, cidr });
  }
  const lookup = stateLookup(state);
  for (const t of PIECE_TABLES) {
    for (const e of (state[t] as Map<string, any>).values()) {
      const r = entryPieces(t, e, lookup);
      const m = r && byDomain.get(r.domainId);
      if (!m) continue;
      for (const p of r.pieces) addPiece(m, p);
    }
  }
  const members = new Map<string, string[]>();
  for (const a of state.addressSets.values()) {
    const m = byDomain.get(a.domainId);
    if (!m) continue;
    m.nft.sets.set(a.name, a.family);
    members.set(a.name, []);
  }
  for (const el of state.setElements.values()) members.get(el.set)?.push(el.cidr);
  for (const a of state.addressSets.values()) {
    const m = byDomain.get(a.domainId);
    if (m) m.nft.elements.set(a.name, foldedElements(members.get(a.name) ?? []));
  }

  const rules = [...state.rules.values()].sort(byPriority);
  for (const r of rules) {
    const m = byDomain.get(r.domainId);
    if (!m) continue;
    const text = ruleText(r);
    (r.direction === 'egress' ? m.nft.egress : m.nft.ingress).push({ text, comment: `${r.ruleId} ${hash(text)}` });
  }
  for (const d of state.domains.values()) {
    const m = byDomain.get(d.domainId);
    if (!m) continue;
    if (d.defaultEgressAction === 'deny') m.nft.egress.push({ text: 'drop', comment: 'default deny' });
    m.nft.ingress.push(d.defaultIngressAction === 'deny' ? { text: 'drop', comment: 'default deny' } : { text: 'accept', comment: 'default allow' });
  }
  return out;
}

/**
 * The kernel objects of one entry of the tables that change with every
 * endpoint (local and remote endpoints, routes, peer VTEPs). Each object is
 * made by exactly one entry, so a delta of these tables can be applied as
 * "remove the old entry's pieces, add the new entry's pieces" (incremental.ts).
 */
export type Piece =
  | { kind: 'link'; key: string; v: LinkSpec }
  | { kind: 'neigh'; key: string; v: NeighSpec }
  | { kind: 'fdb'; key: string; v: FdbSpec }
  | { kind: 'route'; key: string; v: RouteSpec }
  /** an element of an nft set of `table inet sdn` (local4/local6), as nft prints it */
  | { kind: 'elem'; key: string; set: string; v: string }
  | { kind: 'guard'; key: string; set: (typeof GUARD_SETS)[number]; v: string };

export const PIECE_TABLES = ['localEndpoints', 'remoteEndpoints', 'routes', 'peerVteps'] as const;
export type PieceTable = (typeof PIECE_TABLES)[number];

export interface StateLookup {
  subnet(id: string): import('#sdn/compiler').SubnetEntry | undefined;
  domain(id: string): import('#sdn/compiler').DomainEntry | undefined;
}

/**
 * Next hop of a route over the l3Vni: the VTEP; for an IPv6 prefix and an
 * IPv4 VTEP its IPv4-mapped address (Linux takes an IPv6 next hop for an IPv4
 * route, RFC 5549, but not the other way round).
 */
export const nextHop = (prefix: string, vtep: string) => (prefix.includes(':') && !vtep.includes(':') ? `::ffff:${vtep}` : vtep);

export const stateLookup = (s: HostState): StateLookup => ({ subnet: (id) => s.subnets.get(id), domain: (id) => s.domains.get(id) });

const fdbPiece = (v: FdbSpec): Piece => ({ kind: 'fdb', key: fdbKey(v), v });
const neighPiece = (v: NeighSpec): Piece => ({ kind: 'neigh', key: `${v.dev}|${v.ip}`, v });

/** The pieces of one entry and its domain; null when what it hangs on (subnet, domain) is not in the state. */
export function entryPieces(t: PieceTable, e: any, look: StateLookup): { domainId: string; pieces: Piece[] } | null {
  switch (t) {
    case 'localEndpoints': {
      const s = look.subnet(e.subnetId);
      if (!s) return null;
      const v6 = e.ip.includes(':');
      const link: LinkSpec = { kind: 'veth', name: e.ifName, master: s.bridgeName, peer: peerIfName(e.ifName), peerMac: e.mac };
      const local = LOCAL_SET[v6 ? 6 : 4];
      const src = v6 ? 'src6' : 'src4';
      return {
        domainId: s.domainId,
        pieces: [
          { kind: 'link', key: e.ifName, v: link },
          neighPiece({ dev: s.bridgeName, ip: e.ip, mac: e.mac }),
          { kind: 'elem', key: `${local}|${e.ip}`, set: local, v: e.ip },
          { kind: 'guard', key: `srcmac|${guardElement(e.ifName, e.mac)}`, set: 'srcmac', v: guardElement(e.ifName, e.mac) },
          { kind: 'guard', key: `${src}|${guardElement(e.ifName, e.ip)}`, set: src, v: guardElement(e.ifName, e.ip) },
        ],
      };
    }
    case 'remoteEndpoints': {
      const s = look.subnet(e.subnetId);
      if (!s) return null;
      return {
        domainId: s.domainId,
        pieces: [
          fdbPiece({ dev: s.vxlanName, mac: e.mac, dst: e.vtep }),
          fdbPiece({ dev: s.vxlanName, mac: e.mac }),
          neighPiece({ dev: s.bridgeName, ip: e.ip, mac: e.mac }),
        ],
      };
    }
    case 'routes': {
      const d = look.domain(e.domainId);
      if (!d) return null;
      return { domainId: d.domainId, pieces: [{ kind: 'route', key: e.prefix, v: { prefix: e.prefix, via: nextHop(e.prefix, e.vtep), dev: d.bridgeName } }] };
    }
    case 'peerVteps': {
      if (e.kind === 'l2') {
        const s = e.subnetId ? look.subnet(e.subnetId) : undefined;
        if (!s) return null;
        return { domainId: s.domainId, pieces: [fdbPiece({ dev: s.vxlanName, mac: ZERO_MAC, dst: e.vtep })] };
      }
      const d = look.domain(e.domainId);
      if (!d) return null;
      return {
        domainId: d.domainId,
        pieces: [
          fdbPiece({ dev: d.vxlanName, mac: e.routerMac, dst: e.vtep }),
          fdbPiece({ dev: d.vxlanName, mac: e.routerMac }),
          neighPiece({ dev: d.bridgeName, ip: e.vtep, mac: e.routerMac }),
          // IPv6 routes over an IPv4 underlay go via the VTEP's IPv4-mapped address (as FRR does)
          ...(e.vtep.includes(':') ? [] : [neighPiece({ dev: d.bridgeName, ip: `::ffff:${e.vtep}`, mac: e.routerMac })]),
        ],
      };
    }
    default: {
      const _: never = t;
      return _;
    }
  }
}

export function addPiece(m: DomainModel, p: Piece): void {
  switch (p.kind) {
    case 'link':
      m.links.set(p.key, p.v);
      break;
    case 'neigh':
      m.neigh.set(p.key, p.v);
      break;
    case 'fdb':
      m.fdb.set(p.key, p.v);
      break;
    case 'route':
      m.routes.set(p.key, p.v);
      break;
    case 'elem': {
      let set = m.nft.elements.get(p.set);
      if (!set) m.nft.elements.set(p.set, (set = new Set()));
      set.add(p.v);
      break;
    }
    case 'guard':
      m.nft.guard[p.set].add(p.v);
      break;
    default: {
      const _: never = p;
      return _;
    }
  }
}

export function removePiece(m: DomainModel, p: Piece): void {
  switch (p.kind) {
    case 'link':
      m.links.delete(p.key);
      break;
    case 'neigh':
      m.neigh.delete(p.key);
      break;
    case 'fdb':
      m.fdb.delete(p.key);
      break;
    case 'route':
      m.routes.delete(p.key);
      break;
    case 'elem':
      m.nft.elements.get(p.set)?.delete(p.v);
      break;
    case 'guard':
      m.nft.guard[p.set].delete(p.v);
      break;
    default: {
      const _: never = p;
      return _;
    }
  }
}

/** Differences between two sets of domain models (for tests: the incremental model against a full render). */
export function modelDifferences(a: Map<string, DomainModel>, b: Map<string, DomainModel>, limit = 10): string[] {
  const out: string[] = [];
  const cmpMap = (ns: string, what: string, x: Map<string, unknown>, y: Map<string, unknown>) => {
    for (const [k, v] of x) if (JSON.stringify(v) !== JSON.stringify(y.get(k))) out.push(`${ns} ${what} ${k}: ${JSON.stringify(v)} != ${JSON.stringify(y.get(k))}`);
    for (const k of y.keys()) if (!x.has(k)) out.push(`${ns} ${what} ${k}: only in second`);
  };
  const cmpSet = (ns: string, what: string, x: Set<string> | undefined, y: Set<string> | undefined) => {
    const xs = [...(x ?? [])].sort().join(',');
    const ys = [...(y ?? [])].sort().join(',');
    if (xs !== ys) out.push(`${ns} ${what}: ${xs} != ${ys}`);
  };
  for (const ns of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(ns);
    const y = b.get(ns);
    if (!x || !y) {
      out.push(`${ns}: only in ${x ? 'first' : 'second'}`);
      continue;
    }
    cmpMap(ns, 'link', x.links, y.links);
    cmpMap(ns, 'addr', x.addrs, y.addrs);
    cmpMap(ns, 'fdb', x.fdb, y.fdb);
    cmpMap(ns, 'neigh', x.neigh, y.neigh);
    cmpMap(ns, 'route', x.routes, y.routes);
    cmpMap(ns, 'set', x.nft.sets, y.nft.sets);
    for (const set of new Set([...x.nft.elements.keys(), ...y.nft.elements.keys()])) cmpSet(ns, `elements ${set}`, x.nft.elements.get(set), y.nft.elements.get(set));
    for (const g of GUARD_SETS) cmpSet(ns, `guard ${g}`, x.nft.guard[g], y.nft.guard[g]);
    for (const c of ['egress', 'ingress'] as const) {
      const xs = x.nft[c].map((r) => r.comment).join(',');
      const ys = y.nft[c].map((r) => r.comment).join(',');
      if (xs !== ys) out.push(`${ns} chain ${c}: ${xs} != ${ys}`);
    }
  }
  return out.slice(0, limit);
}

/** The domains a delta touches (their domainIds), looked up in the states before and after it. */
export function touchedDomains(before: HostState, after: HostState, delta: import('#sdn/compiler').HostDelta): Set<string> | null {
  const out = new Set<string>();
  if (delta.host && (delta.host.upsert.length || delta.host.remove.length)) return null; // every domain
  const subnetDomain = (id: string) => after.subnets.get(id)?.domainId ?? before.subnets.get(id)?.domainId;
  const setDomain = (name: string) => after.addressSets.get(name)?.domainId ?? before.addressSets.get(name)?.domainId;
  const add = (id: string | undefined) => {
    if (id) out.add(id);
  };
  for (const [t, c] of Object.entries(delta) as [string, { upsert: any[]; remove: string[] }][]) {
    if (!c) continue;
    const old = (k: string) => (before as any)[t].get(k);
    const entries = [...c.upsert, ...c.remove.map(old).filter((x) => x !== undefined)];
    for (const e of entries) {
      switch (t) {
        case 'remoteEndpoints':
          add(subnetDomain(e.subnetId));
          break;
        case 'setElements':
          add(setDomain(e.set));
          break;
        default:
          add(e.domainId);
      }
    }
  }
  return out;
}

export { hash as ruleHash };
