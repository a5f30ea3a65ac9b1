/**
 * HostState: everything one host must program, and nothing more.
 *
 * The controller computes one HostState per host from the policy model; the
 * agent renders it into Linux. It is a set of tables; every entry has a stable
 * string key (see `keyOf`), so a change is expressed as a HostDelta: per table,
 * the entries to upsert (whole entries, never patches) and the keys to remove.
 *
 * Scope (tenant isolation): a host holds the entries of a domain only while at
 * least one endpoint of that domain is placed on it ("the host is present in
 * the domain"). It then holds the whole domain section: the domain, the subnets
 * it has endpoints in, every other endpoint of the domain (as a remote FDB/ARP
 * entry when the host has that subnet, else as a host route over the l3Vni),
 * the VTEPs sharing its VNIs, and the domain's firewall (rules + address sets).
 * Every key belongs to exactly one domain section (set names include a hash of
 * the domain), except the single `host` entry.
 *
 * Device names are derived from VNIs (globally unique in a deployment) or from
 * a hash of an id, are at most 15 characters (IFNAMSIZ - 1), and use only
 * [a-z0-9]; set names match nftables identifiers ([a-z][a-z0-9_]*, < 32).
 *
 * docs/controller.md says what the agent programs from each field.
 */

import type { Action, AclDirection, EtherType } from '#sdn/model';

export type Uuid = string;

/** The host itself: one entry, keyed by hostId. */
export interface HostEntry {
  hostId: Uuid;
  /** local VTEP address: source of every VXLAN device */
  vtepIp: string;
  /** MAC of this host's l3Vni bridges (EVPN router MAC), derived from vtepIp by `routerMacOf` */
  routerMac: string;
  /** deployment-wide anycast gateway MAC, the same on every host, put on every subnet bridge */
  gatewayMac: string;
}

/** A domain (tenant routing instance) with endpoints on this host: a VRF plus an l3Vni for symmetric routing. Key: domainId. */
export interface DomainEntry {
  domainId: Uuid;
  l3Vni: number;
  /** VRF device `vrf<l3Vni>` */
  vrfName: string;
  /** kernel routing table of the VRF: L3_TABLE_BASE + l3Vni (never collides with 253..255) */
  vrfTable: number;
  /** bridge of the l3Vni, `l3br<l3Vni>`, in the VRF, MAC = host routerMac */
  bridgeName: string;
  /** VXLAN device of the l3Vni, `l3vx<l3Vni>` */
  vxlanName: string;
  /** applied to traffic toward a local endpoint that no ingress rule matched */
  defaultIngressAction: Action;
  /** applied to traffic from a local endpoint that no egress rule matched */
  defaultEgressAction: Action;
}

/** A subnet with at least one endpoint on this host. Key: subnetId. */
export interface SubnetEntry {
  subnetId: Uuid;
  domainId: Uuid;
  l2Vni: number;
  /** canonical CIDR, e.g. 10.0.0.0/24 */
  cidr: string;
  ipVersion: 4 | 6;
  /** anycast gateway address, put on the bridge as gateway/prefixLength with HostEntry.gatewayMac */
  gateway: string;
  /** bridge `br<l2Vni>`, enslaved to the domain VRF */
  bridgeName: string;
  /** VXLAN device `vx<l2Vni>`, port of bridgeName, learning off (the FDB is programmed) */
  vxlanName: string;
}

/** An endpoint placed on this host. Key: endpointId. */
export interface LocalEndpointEntry {
  endpointId: Uuid;
  subnetId: Uuid;
  domainId: Uuid;
  mac: string;
  ip: string;
  /** host-side interface to create (veth/tap) and attach to the subnet bridge: `ep` + 12 hex of a hash of the id */
  ifName: string;
  /** orchestrator's id (container id, VM uuid): how the CNI/Docker plugin finds its endpoint */
  externalId: string | null;
  kind: 'container' | 'vm' | 'baremetal';
}

/** An endpoint on another host in a subnet this host has: FDB mac -> vtep, ARP/ND suppression ip -> mac. Key: endpointId. */
export interface RemoteEndpointEntry {
  endpointId: Uuid;
  subnetId: Uuid;
  mac: string;
  ip: string;
  /** VTEP of the host the endpoint is on */
  vtep: string;
}

/**
 * An endpoint of the domain in a subnet this host does not have: a host route
 * in the VRF over the l3Vni (symmetric IRB). Key: endpointId.
 */
export interface RouteEntry {
  endpointId: Uuid;
  domainId: Uuid;
  /** ip/32 or ip/128 */
  prefix: string;
  /** next hop: the VTEP of the host the endpoint is on (its router MAC is in peerVteps) */
  vtep: string;
}

/**
 * Another VTEP sharing a VNI with this host (the flood lists). Key: `${vni}|${vtep}`.
 * kind 'l2': head-end replication of BUM traffic on the subnet's VXLAN device.
 * kind 'l3': a peer of the domain's l3Vni; routes point to it through its router MAC.
 */
export interface PeerVtepEntry {
  vni: number;
  kind: 'l2' | 'l3';
  domainId: Uuid;
  /** the subnet of an l2 VNI; null for an l3Vni */
  subnetId: Uuid | null;
  vtep: string;
  /** the peer's router MAC (routerMacOf(vtep)) */
  routerMac: string;
}

export type AddressSetSource = 'policyGroup' | 'zone' | 'subnet' | 'networkMacro' | 'networkMacroGroup' | 'endpoint';

/**
 * A named set of prefixes (nftables set with `flags interval`), one per
 * (domain, referenced object, family). Key: name.
 *   policyGroup:       ip/32 (/128) of every placed endpoint of the domain in the group
 *   endpoint:          that endpoint's ip/32 (/128) while placed
 *   zone:              CIDRs of the domain's subnets in the zone
 *   subnet:            the subnet's CIDR
 *   networkMacro:      the macro's CIDR
 *   networkMacroGroup: the CIDRs of its macros
 * Only prefixes of the set's family are members. Elements are in setElements.
 */
export interface AddressSetEntry {
  /** `<pg|ep|zn|sn|nm|ng><4|6>_<12 hex>`, e.g. pg4_1a2b3c4d5e6f */
  name: string;
  family: 4 | 6;
  domainId: Uuid;
  sourceType: AddressSetSource;
  sourceId: Uuid;
}

/** One member of an address set. Key: `${set}|${cidr}`. */
export interface SetElementEntry {
  set: string;
  /** canonical prefix; host addresses as /32 or /128 */
  cidr: string;
}

export interface PortRange {
  from: number;
  to: number;
}

/**
 * One ACL rule of a domain present on this host. Key: ruleId. The agent
 * evaluates, per domain and direction, rules in ascending priority; first
 * match wins; no match -> the domain's default action for that direction.
 * ingress = traffic toward a local endpoint of the domain, egress = from it.
 */
export interface RuleEntry {
  ruleId: Uuid;
  domainId: Uuid;
  direction: AclDirection;
  priority: number;
  action: Action;
  etherType: EtherType;
  /** IP protocol number; null = any */
  protocol: number | null;
  /** set the local endpoint's address must be in; null = every local endpoint of the domain */
  appliesToSet: string | null;
  /** set the remote address must be in; null = any address */
  peerSet: string | null;
  /** empty = any port; only meaningful for tcp (6) and udp (17) */
  sourcePorts: PortRange[];
  destinationPorts: PortRange[];
  /** an accepted connection's return traffic is accepted too (conntrack); see docs */
  stateful: boolean;
}

/** Entry type of each table. The order of TABLES is the wire order and the agent's apply order for upserts. */
export interface EntryByTable {
  host: HostEntry;
  domains: DomainEntry;
  subnets: SubnetEntry;
  localEndpoints: LocalEndpointEntry;
  remoteEndpoints: RemoteEndpointEntry;
  routes: RouteEntry;
  peerVteps: PeerVtepEntry;
  addressSets: AddressSetEntry;
  setElements: SetElementEntry;
  rules: RuleEntry;
}

export type TableName = keyof EntryByTable;

export const TABLES: readonly TableName[] = [
  'host',
  'domains',
  'subnets',
  'localEndpoints',
  'remoteEndpoints',
  'routes',
  'peerVteps',
  'addressSets',
  'setElements',
  'rules',
] as const;

export type AnyEntry = EntryByTable[TableName];

/** The full state of one host: table -> key -> entry. Entries are immutable and may be shared between hosts. */
export type HostState = { [T in TableName]: Map<string, EntryByTable[T]> };

/**
 * A change of one host's state: per table, whole entries to upsert and keys to
 * remove. A key is never in both lists of one table. Applying a delta is
 * idempotent (upsert = set, remove = delete if present), so the delta from
 * version A to version C can be applied to any state at a version between A and C.
 */
export type HostDelta = { [T in TableName]?: { upsert: EntryByTable[T][]; remove: string[] } };

/** What joins the fields of a key made of several (keyOf, peerKey, setElementKey). */
export const KEY_SEPARATOR = '|';

/** The fields whose values, joined by KEY_SEPARATOR, make an entry's key (keyOf; an agent that hashes keys from the wire reads the same fields). */
export const KEY_FIELDS: { readonly [T in TableName]: readonly (keyof EntryByTable[T] & string)[] } = {
  host: ['hostId'],
  domains: ['domainId'],
  subnets: ['subnetId'],
  localEndpoints: ['endpointId'],
  remoteEndpoints: ['endpointId'],
  routes: ['endpointId'],
  peerVteps: ['vni', 'vtep'],
  addressSets: ['name'],
  setElements: ['set', 'cidr'],
  rules: ['ruleId'],
};

/**
 * The stable key of an entry: its KEY_FIELDS joined by KEY_SEPARATOR (a one-field key
 * is that field, always a string). Generated per table, so each read is a
 * named, monomorphic property load; field names are the schema's, never data.
 */
export const keyOf = Object.fromEntries(
  TABLES.map((t) => [t, new Function('e', `return ${KEY_FIELDS[t].map((f) => `e[${JSON.stringify(f)}]`).join(` + ${JSON.stringify(KEY_SEPARATOR)} + `)};`)]),
) as { [T in TableName]: (e: EntryByTable[T]) => string };

export function emptyHostState(): HostState {
  return {
    host: new Map(),
    domains: new Map(),
    subnets: new Map(),
    localEndpoints: new Map(),
    remoteEndpoints: new Map(),
    routes: new Map(),
    peerVteps: new Map(),
    addressSets: new Map(),
    setElements: new Map(),
    rules: new Map(),
  };
}

/** Number of entries in a state. */
export function stateSize(s: HostState): number {
  let n = 0;
  for (const t of TABLES) n += s[t].size;
  return n;
}

/** Number of upserts + removes in a delta. */
export function deltaSize(d: HostDelta): number {
  let n = 0;
  for (const t of TABLES) {
    const c = d[t];
    if (c) n += c.upsert.length + c.remove.length;
  }
  return n;
}
