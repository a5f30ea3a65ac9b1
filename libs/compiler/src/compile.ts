/**
 * The full compile: model snapshot -> every host's state, from scratch. It is
 * the reference the incremental engine must agree with (the property tests
 * compare them after random operation sequences), so it is written to be
 * obviously right rather than fast: plain loops over the snapshot.
 */
import type { Endpoint, ModelSnapshot } from '#sdn/model';
import {
  canonicalCidr,
  compileRule,
  CompilerOptions,
  defaultCompilerOptions,
  domainEntry,
  endpointFamily,
  hostEntry,
  l2PeerEntry,
  l3PeerEntry,
  localEndpointEntry,
  remoteEndpointEntry,
  routeEntry,
  setElementEntry,
  subnetEntry,
} from './entries';
import { hostPrefix } from './names';
import { AddressSetEntry, EntryByTable, emptyHostState, HostState, keyOf, TableName } from './state';

/** Hosts' states for every host of the snapshot. */
export function compileAll(snap: ModelSnapshot, opts: CompilerOptions = defaultCompilerOptions()): Map<string, HostState> {
  const out = new Map<string, HostState>();
  for (const h of snap.hosts) out.set(h.id, compileHost(snap, h.id, opts));
  return out;
}

/** One host's state; an unknown host gets an empty state. */
export function compileHost(snap: ModelSnapshot, hostId: string, opts: CompilerOptions = defaultCompilerOptions()): HostState {
  const state = emptyHostState();
  const put = <T extends TableName>(t: T, e: EntryByTable[T]) => {
    state[t].set(keyOf[t](e), e);
  };
  const hosts = new Map(snap.hosts.map((h) => [h.id, h]));
  const domains = new Map(snap.domains.map((d) => [d.id, d]));
  const subnets = new Map(snap.subnets.map((s) => [s.id, s]));
  const self = hosts.get(hostId);
  if (!self) return state;
  put('host', hostEntry(self, opts));

  // an endpoint counts when its host, subnet and domain exist
  const placed = snap.endpoints.filter(
    (e) => e.hostId !== null && hosts.has(e.hostId) && subnets.has(e.subnetId) && domains.has(e.domainId),
  );
  const vtepOf = (e: Endpoint) => hosts.get(e.hostId!)!.vtepIp;
  const local = placed.filter((e) => e.hostId === hostId);
  const presentDomains = new Set(local.map((e) => e.domainId));
  const heldSubnets = new Set(local.map((e) => e.subnetId));

  for (const domainId of presentDomains) {
    const domain = domains.get(domainId)!;
    put('domains', domainEntry(domain));
    const inDomain = placed.filter((e) => e.domainId === domainId);

    // subnets and their flood lists
    for (const subnetId of heldSubnets) {
      const s = subnets.get(subnetId)!;
      if (s.domainId !== domainId) continue;
      put('subnets', subnetEntry(s));
      const peers = new Set(inDomain.filter((e) => e.subnetId === subnetId && e.hostId !== hostId).map(vtepOf));
      for (const vtep of peers) put('peerVteps', l2PeerEntry(s, vtep));
    }
    // l3Vni peers: every other host present in the domain
    for (const vtep of new Set(inDomain.filter((e) => e.hostId !== hostId).map(vtepOf))) put('peerVteps', l3PeerEntry(domain, vtep));

    // endpoints: local, remote in a held subnet, or routed
    for (const e of inDomain) {
      if (e.hostId === hostId) put('localEndpoints', localEndpointEntry(e));
      else if (heldSubnets.has(e.subnetId)) put('remoteEndpoints', remoteEndpointEntry(e, vtepOf(e)));
      else put('routes', routeEntry(e, vtepOf(e)));
    }

    // firewall: rules and the sets they reference
    const sets = new Map<string, AddressSetEntry>();
    for (const r of snap.aclRules) {
      if (r.domainId !== domainId) continue;
      const c = compileRule(r);
      put('rules', c.rule);
      for (const s of c.sets) sets.set(s.name, s);
    }
    for (const set of sets.values()) {
      put('addressSets', set);
      for (const cidr of setMembers(snap, domain.enterpriseId, inDomain, set)) put('setElements', setElementEntry(set.name, cidr));
    }
  }
  return state;
}

/** The prefixes of an address set (see AddressSetEntry). */
function setMembers(snap: ModelSnapshot, enterpriseId: string, placedInDomain: Endpoint[], set: AddressSetEntry): string[] {
  const fam = set.family;
  const ofFamily = (cidr: string | null) => (cidr !== null && (cidr.includes(':') ? 6 : 4) === fam ? [cidr] : []);
  switch (set.sourceType) {
    case 'policyGroup':
      return placedInDomain.filter((e) => e.policyGroupIds.includes(set.sourceId) && endpointFamily(e) === fam).map((e) => hostPrefix(e.ip));
    case 'endpoint':
      return placedInDomain.filter((e) => e.id === set.sourceId && endpointFamily(e) === fam).map((e) => hostPrefix(e.ip));
    case 'zone':
      return snap.subnets.filter((s) => s.domainId === set.domainId && s.zoneId === set.sourceId).flatMap((s) => ofFamily(canonicalCidr(s.cidr)));
    case 'subnet':
      return snap.subnets.filter((s) => s.domainId === set.domainId && s.id === set.sourceId).flatMap((s) => ofFamily(canonicalCidr(s.cidr)));
    case 'networkMacro':
      return snap.networkMacros
        .filter((m) => m.id === set.sourceId && m.enterpriseId === enterpriseId)
        .flatMap((m) => ofFamily(canonicalCidr(m.cidr)));
    case 'networkMacroGroup': {
      const g = snap.networkMacroGroups.find((x) => x.id === set.sourceId && x.enterpriseId === enterpriseId);
      if (!g) return [];
      return snap.networkMacros
        .filter((m) => g.networkMacroIds.includes(m.id) && m.enterpriseId === enterpriseId)
        .flatMap((m) => ofFamily(canonicalCidr(m.cidr)));
    }
    default: {
      const _: never = set.sourceType;
      return _;
    }
  }
}
