/**
 * Constructors of HostState entries from model objects, shared by the full
 * compile and the incremental engine (they differ in which entries they build
 * and when, never in what an entry contains).
 */
import {
  AclPeer,
  AclRule,
  AppliesTo,
  Domain,
  Endpoint,
  formatCidr,
  Host,
  parseCidr,
  parsePortSpec,
  PROTOCOL_NUMBERS,
  Subnet,
} from '#sdn/model';
import {
  bridgeName,
  endpointIfName,
  familyOf,
  hostPrefix,
  L3_TABLE_BASE,
  l3BridgeName,
  l3VxlanName,
  routerMacOf,
  setName,
  vrfName,
  vxlanName,
} from './names';
import type {
  AddressSetEntry,
  AddressSetSource,
  DomainEntry,
  HostEntry,
  LocalEndpointEntry,
  PeerVtepEntry,
  PortRange,
  RemoteEndpointEntry,
  RouteEntry,
  RuleEntry,
  SetElementEntry,
  SubnetEntry,
} from './state';
import { KEY_SEPARATOR } from './state';

export interface CompilerOptions {
  /** deployment-wide anycast gateway MAC */
  gatewayMac: string;
}

export const DEFAULT_GATEWAY_MAC = '02:5d:00:00:00:01';
export const defaultCompilerOptions = (): CompilerOptions => ({ gatewayMac: DEFAULT_GATEWAY_MAC });

export const hostEntry = (h: Host, o: CompilerOptions): HostEntry => ({
  hostId: h.id,
  vtepIp: h.vtepIp,
  routerMac: routerMacOf(h.vtepIp),
  gatewayMac: o.gatewayMac,
});

export const domainEntry = (d: Domain): DomainEntry => ({
  domainId: d.id,
  l3Vni: d.l3Vni,
  vrfName: vrfName(d.l3Vni),
  vrfTable: L3_TABLE_BASE + d.l3Vni,
  bridgeName: l3BridgeName(d.l3Vni),
  vxlanName: l3VxlanName(d.l3Vni),
  defaultIngressAction: d.defaultIngressAction,
  defaultEgressAction: d.defaultEgressAction,
});

export const subnetEntry = (s: Subnet): SubnetEntry => ({
  subnetId: s.id,
  domainId: s.domainId,
  l2Vni: s.l2Vni,
  cidr: s.cidr,
  ipVersion: s.ipVersion,
  gateway: s.gateway,
  bridgeName: bridgeName(s.l2Vni),
  vxlanName: vxlanName(s.l2Vni),
});

export const localEndpointEntry = (e: Endpoint): LocalEndpointEntry => ({
  endpointId: e.id,
  subnetId: e.subnetId,
  domainId: e.domainId,
  mac: e.mac,
  ip: e.ip,
  ifName: endpointIfName(e.id),
  externalId: e.externalId,
  kind: e.kind,
});

export const remoteEndpointEntry = (e: Endpoint, vtep: string): RemoteEndpointEntry => ({
  endpointId: e.id,
  subnetId: e.subnetId,
  mac: e.mac,
  ip: e.ip,
  vtep,
});

export const routeEntry = (e: Endpoint, vtep: string): RouteEntry => ({
  endpointId: e.id,
  domainId: e.domainId,
  prefix: hostPrefix(e.ip),
  vtep,
});

export const l2PeerEntry = (s: Subnet, vtep: string): PeerVtepEntry => ({
  vni: s.l2Vni,
  kind: 'l2',
  domainId: s.domainId,
  subnetId: s.id,
  vtep,
  routerMac: routerMacOf(vtep),
});

export const l3PeerEntry = (d: Domain, vtep: string): PeerVtepEntry => ({
  vni: d.l3Vni,
  kind: 'l3',
  domainId: d.id,
  subnetId: null,
  vtep,
  routerMac: routerMacOf(vtep),
});

/** keyOf.peerVteps of a peer entry, from its fields */
export const peerKey = (vni: number, vtep: string) => `${vni}${KEY_SEPARATOR}${vtep}`;

export const setElementEntry = (set: string, cidr: string): SetElementEntry => ({ set, cidr });
/** keyOf.setElements of a set element, from its fields */
export const setElementKey = (set: string, cidr: string) => `${set}${KEY_SEPARATOR}${cidr}`;

/** Canonical text of a CIDR, or null when it does not parse (such a member is skipped). */
export function canonicalCidr(text: string): string | null {
  const p = parseCidr(text);
  return p.ok ? formatCidr(p.cidr) : null;
}

/** The address set a rule target (appliesTo or peer) refers to, for the rule's family; null for 'any'. */
export function targetSet(domainId: string, t: AppliesTo | AclPeer, family: 4 | 6): AddressSetEntry | null {
  if (t.type === 'any' || t.id === null) return null;
  const sourceType = t.type as AddressSetSource;
  return { name: setName(sourceType, family, domainId, t.id), family, domainId, sourceType, sourceId: t.id };
}

export const ruleFamily = (r: AclRule): 4 | 6 => (r.etherType === 'ipv6' ? 6 : 4);

function protocolNumber(p: AclRule['protocol']): number | null {
  if (p === 'any') return null;
  if (typeof p === 'number') return p;
  return PROTOCOL_NUMBERS[p];
}

function portRanges(specs: string[]): PortRange[] {
  const out: PortRange[] = [];
  for (const s of specs) {
    const r = parsePortSpec(s);
    if (r !== null) out.push({ from: r.from, to: r.to });
  }
  return out.sort((a, b) => a.from - b.from || a.to - b.to);
}

/** A rule's entry and the address sets it references (0, 1 or 2). */
export function compileRule(r: AclRule): { rule: RuleEntry; sets: AddressSetEntry[] } {
  const family = ruleFamily(r);
  const applies = targetSet(r.domainId, r.appliesTo, family);
  const peer = targetSet(r.domainId, r.peer, family);
  const rule: RuleEntry = {
    ruleId: r.id,
    domainId: r.domainId,
    direction: r.direction,
    priority: r.priority,
    action: r.action,
    etherType: r.etherType,
    protocol: protocolNumber(r.protocol),
    appliesToSet: applies?.name ?? null,
    peerSet: peer?.name ?? null,
    sourcePorts: portRanges(r.sourcePorts),
    destinationPorts: portRanges(r.destinationPorts),
    stateful: r.stateful,
  };
  const sets = [applies, peer].filter((s): s is AddressSetEntry => s !== null);
  return { rule, sets };
}

export const endpointFamily = (e: Endpoint) => familyOf(e.ip);
