/**
 * The incremental engine: the in-memory model, indexes over it, and every
 * host's state, kept current change by change.
 *
 * Shape (after OVN's inc-proc-eng): a host's state is a set of domain
 * sections; each section can be recomputed from the indexes (`compileSection`,
 * the node's "run"), and endpoint changes — the hot path — have fine-grained
 * handlers (`place`/`unplace`) whose cost is proportional to the hosts sharing
 * the endpoint's domain, not to the size of the model. Every other kind of
 * change either re-places the endpoints it affects or recomputes the sections
 * of the domains it affects. Either way the result must equal `compileHost`
 * (compile.ts) on the same model; the property tests check exactly that.
 *
 * Writes go through `put`/`del`, which keep each host's digest current and
 * record the newest value of every key written since the last
 * `takeChanges()`, so that a host's changes are coalesced per key.
 */
import type {
  AclRule,
  Change,
  Domain,
  Endpoint,
  Enterprise,
  Host,
  ModelSnapshot,
  NetworkMacro,
  NetworkMacroGroup,
  PolicyGroup,
  Subnet,
  Zone,
} from '#sdn/model';
import { PendingChanges } from './apply';
import { entryHashOf, sameEntry, StateDigest } from './digest';
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
  peerKey,
  remoteEndpointEntry,
  routeEntry,
  setElementEntry,
  setElementKey,
  subnetEntry,
} from './entries';
import { hostPrefix } from './names';
import {
  AddressSetEntry,
  AnyEntry,
  DomainEntry,
  EntryByTable,
  emptyHostState,
  HostDelta,
  HostState,
  keyOf,
  PeerVtepEntry,
  RuleEntry,
  SubnetEntry,
  TableName,
  TABLES,
} from './state';

/** A prefix of a domain reached through a VTEP outside this deployment's hosts. */
export interface ExternalRoute {
  /** stable key of the route (the routes table key) */
  key: string;
  prefix: string;
  vtep: string;
  routerMac: string;
}

/** The pseudo-section that holds the `host` entry. */
const HOST_SECTION = '';

/** One host's state, by domain section, with its running digest and the keys written since the last delta. */
class HostBook {
  readonly sections = new Map<string, HostState>();
  readonly digest = new StateDigest();
  /** the newest value of every key written since the last takeChanges (null: removed); null when none was (the book is in Engine.dirty exactly when not null) */
  changes: PendingChanges | null = null;
  /** the Engine.changeEpoch in which this host was last added to changeHosts */
  changeMark = -1;
  // the section written last: consecutive writes to one section (the common case) skip the map lookup
  private lastId: string | null = null;
  private lastState: HostState | null = null;
  /** no agent: the host keeps no state (Engine.passiveHosts, read once when the book is made) */
  constructor(
    readonly hostId: string,
    readonly passive = false,
  ) {}

  section(domainId: string): HostState {
    if (domainId === this.lastId) return this.lastState!;
    let s = this.sections.get(domainId);
    if (!s) {
      s = emptyHostState();
      this.sections.set(domainId, s);
    }
    this.lastId = domainId;
    this.lastState = s;
    return s;
  }

  dropSection(domainId: string): void {
    this.sections.delete(domainId);
    if (domainId === this.lastId) {
      this.lastId = null;
      this.lastState = null;
    }
  }
}

/** A digest hash pair (entryHashOf). */
type Hash = readonly [number, number];

/**
 * Entries derived from one placed endpoint, shared by every host that holds
 * them, each with its digest hash: computed once here, where the digests'
 * weak-map cache would be looked up once per host.
 */
interface EndpointEntries {
  local: EntryByTable['localEndpoints'];
  remote: EntryByTable['remoteEndpoints'];
  route: EntryByTable['routes'];
  /** the hashes of local, remote and route, made on first use (localHashOf, remoteHashOf, routeHashOf) */
  localHash: Hash | null;
  remoteHash: Hash | null;
  routeHash: Hash | null;
  /** set elements, their keys (setElementKey) and hashes, in parallel arrays: built once, not once per host, and walking them allocates nothing */
  elementKeys: string[];
  elements: EntryByTable['setElements'][];
  elementHashes: Hash[];
}

const localHashOf = (x: EndpointEntries): Hash => (x.localHash ??= entryHashOf('localEndpoints', x.local));
const remoteHashOf = (x: EndpointEntries): Hash => (x.remoteHash ??= entryHashOf('remoteEndpoints', x.remote));
const routeHashOf = (x: EndpointEntries): Hash => (x.routeHash ??= entryHashOf('routes', x.route));

const inc = <K>(m: Map<K, number>, k: K): number => {
  const n = (m.get(k) ?? 0) + 1;
  m.set(k, n);
  return n;
};
const dec = <K>(m: Map<K, number>, k: K): number => {
  const n = (m.get(k) ?? 0) - 1;
  if (n <= 0) m.delete(k);
  else m.set(k, n);
  return n;
};
const getOrNew = <K, V>(m: Map<K, V>, k: K, make: () => V): V => {
  let v = m.get(k);
  if (v === undefined) {
    v = make();
    m.set(k, v);
  }
  return v;
};
const addTo = <K, V>(m: Map<K, Set<V>>, k: K, v: V) => getOrNew(m, k, () => new Set<V>()).add(v);
const removeFrom = <K, V>(m: Map<K, Set<V>>, k: K, v: V) => {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
};
const EMPTY: ReadonlySet<never> = new Set();
const EMPTY_COUNTS: ReadonlyMap<string, number> = new Map();

export class Engine {
  readonly opts: CompilerOptions;
  revision = 0;

  // the model
  readonly enterprises = new Map<string, Enterprise>();
  readonly domains = new Map<string, Domain>();
  readonly zones = new Map<string, Zone>();
  readonly subnets = new Map<string, Subnet>();
  readonly hosts = new Map<string, Host>();
  readonly endpoints = new Map<string, Endpoint>();
  readonly policyGroups = new Map<string, PolicyGroup>();
  readonly networkMacros = new Map<string, NetworkMacro>();
  readonly networkMacroGroups = new Map<string, NetworkMacroGroup>();
  readonly aclRules = new Map<string, AclRule>();
  /**
   * Hosts without an agent (a VTEP of another datacenter, see the controller's
   * remote-bridge): they count as VTEPs of their VNIs and domains for everyone
   * else, but no state is kept for them. A host's id must be here before
   * the host itself is applied.
   */
  passiveHosts: ReadonlySet<string> = new Set();
  /** prefixes of a domain behind a VTEP of another network (EVPN type-5 routes imported by federation), by domain */
  private readonly externalRoutes = new Map<string, Map<string, ExternalRoute>>();

  // indexes over all endpoints (placed or not)
  private readonly endpointsBySubnet = new Map<string, Set<string>>();
  private readonly endpointsByHost = new Map<string, Set<string>>();
  private readonly endpointsByDomain = new Map<string, Set<string>>();
  private readonly subnetsByDomain = new Map<string, Set<string>>();
  private readonly rulesByDomain = new Map<string, Set<string>>();
  private readonly domainsByEnterprise = new Map<string, Set<string>>();
  // indexes over placed endpoints (host, subnet and domain exist)
  private readonly placed = new Set<string>();
  private readonly placedBySubnet = new Map<string, Set<string>>();
  /** subnet -> host -> number of placed endpoints */
  private readonly subnetHosts = new Map<string, Map<string, number>>();
  /** domain -> host -> number of placed endpoints */
  private readonly domainHosts = new Map<string, Map<string, number>>();
  /** domain -> the address sets its rules reference, and the rule entries */
  private readonly domainSets = new Map<string, Map<string, AddressSetEntry>>();
  private readonly domainRules = new Map<string, RuleEntry[]>();
  /** domain -> group or endpoint id -> the names of the sets (by family) its rules made for it: what an endpoint joins */
  private readonly domainMemberSets = new Map<string, Map<string, { 4?: string; 6?: string }>>();
  private readonly entryCache = new Map<string, EndpointEntries>();

  private readonly books = new Map<string, HostBook>();
  private readonly dirty = new Set<HostBook>();
  /** hosts whose state changed while applying the current change */
  private changeHosts = new Set<string>();
  private changeEpoch = 0;

  constructor(opts: CompilerOptions = defaultCompilerOptions()) {
    this.opts = opts;
  }

  // ------------------------------------------------------------------ public

  /** Builds everything from a snapshot (the engine must be empty). Produces no deltas. */
  load(snap: ModelSnapshot): void {
    const ts = '1970-01-01T00:00:00.000Z';
    const asChange = (kind: Change['kind'], state: { id: string; revision: number }) =>
      ({ revision: snap.revision, kind, op: 'create', id: state.id, enterpriseId: null, state, committedAt: ts }) as Change;
    // nothing is recorded for deltas while loading (the load produces none)
    this.loading = true;
    try {
      this.loadAll(snap, asChange);
    } finally {
      this.loading = false;
    }
    this.revision = snap.revision;
  }

  private loading = false;

  private loadAll(snap: ModelSnapshot, asChange: (kind: Change['kind'], state: { id: string; revision: number }) => Change): void {
    // order matters only for speed: containers before contents, endpoints last
    for (const x of snap.enterprises) this.apply(asChange('enterprise', x));
    for (const x of snap.hosts) this.apply(asChange('host', x));
    for (const x of snap.domains) this.apply(asChange('domain', x));
    for (const x of snap.zones) this.apply(asChange('zone', x));
    for (const x of snap.policyGroups) this.apply(asChange('policyGroup', x));
    for (const x of snap.networkMacros) this.apply(asChange('networkMacro', x));
    for (const x of snap.networkMacroGroups) this.apply(asChange('networkMacroGroup', x));
    for (const x of snap.subnets) this.apply(asChange('subnet', x));
    for (const x of snap.aclRules) this.apply(asChange('aclRule', x));
    for (const x of snap.endpoints) this.apply(asChange('endpoint', x));
  }

  /**
   * Applies one change-log entry. Returns the hosts whose state changed (the
   * hosts that must acknowledge before the change counts as deployed).
   */
  apply(ch: Change): Set<string> {
    this.changeHosts = new Set();
    this.changeEpoch++;
    if (ch.revision > this.revision) this.revision = ch.revision;
    switch (ch.kind) {
      case 'endpoint':
        this.onEndpoint(ch.id, ch.state);
        break;
      case 'host':
        this.onHost(ch.id, ch.state);
        break;
      case 'subnet':
        this.onSubnet(ch.id, ch.state);
        break;
      case 'domain':
        this.onDomain(ch.id, ch.state);
        break;
      case 'aclRule':
        this.onAclRule(ch.id, ch.state);
        break;
      case 'networkMacro':
        this.onMacro(ch.enterpriseId ?? ch.state?.enterpriseId ?? this.networkMacros.get(ch.id)?.enterpriseId ?? null, () =>
          setOrDelete(this.networkMacros, ch.id, ch.state),
        );
        break;
      case 'networkMacroGroup':
        this.onMacro(ch.enterpriseId ?? ch.state?.enterpriseId ?? this.networkMacroGroups.get(ch.id)?.enterpriseId ?? null, () =>
          setOrDelete(this.networkMacroGroups, ch.id, ch.state),
        );
        break;
      case 'enterprise':
        setOrDelete(this.enterprises, ch.id, ch.state);
        break;
      case 'zone':
        // zone sets are defined by the subnets' zoneId, so a zone alone changes no host
        setOrDelete(this.zones, ch.id, ch.state);
        break;
      case 'policyGroup':
        // group sets are defined by the endpoints' policyGroupIds
        setOrDelete(this.policyGroups, ch.id, ch.state);
        break;
      case 'bgpSpeaker':
      case 'bgpNeighbor':
        // the BGP configuration is the speaker's business; no host state depends on it
        break;
      default: {
        const _: never = ch;
        throw new Error(`unknown change kind ${(_ as Change).kind}`);
      }
    }
    return this.changeHosts;
  }

  /** Per host, the change of its state since the previous call. */
  takeDeltas(): Map<string, HostDelta> {
    const out = new Map<string, HostDelta>();
    this.takeChanges((hostId, changes) => out.set(hostId, changes.toDelta()));
    return out;
  }

  /**
   * Hands over, per host whose state was written since the previous call, the
   * newest value of every key written (null: removed), and starts afresh. The
   * buffer is the engine's own and is not used by it again: the controller
   * adopts it as the agent's pending changes, or merges it into them. A key
   * written and then written back to its old value within one call's span is
   * still listed (with its current value): correct, if not minimal, and what
   * keeps a write at one map operation here.
   */
  takeChanges(consume: (hostId: string, changes: PendingChanges) => void): void {
    for (const book of this.dirty) {
      const c = book.changes;
      book.changes = null;
      if (c !== null && c.size > 0) consume(book.hostId, c);
    }
    this.dirty.clear();
  }

  hostIds(): IterableIterator<string> {
    return this.books.keys();
  }

  hasHost(hostId: string): boolean {
    return this.books.has(hostId);
  }

  /** A host's current state (a flat copy sharing the entry objects); empty for an unknown host. */
  stateOf(hostId: string): HostState {
    const out = emptyHostState();
    const book = this.books.get(hostId);
    if (!book) return out;
    for (const s of book.sections.values()) {
      for (const t of TABLES) {
        const dst = out[t] as Map<string, AnyEntry>;
        for (const [k, e] of s[t]) dst.set(k, e);
      }
    }
    return out;
  }

  /** Visits a host's entries table by table without copying. */
  forEachEntry(hostId: string, visit: (table: TableName, entry: AnyEntry) => void): void {
    const book = this.books.get(hostId);
    if (!book) return;
    for (const t of TABLES) for (const s of book.sections.values()) for (const e of s[t].values()) visit(t, e);
  }

  digestOf(hostId: string): string {
    return this.books.get(hostId)?.digest.value() ?? new StateDigest().value();
  }

  entryCount(hostId: string): number {
    const book = this.books.get(hostId);
    let n = 0;
    if (book) for (const s of book.sections.values()) for (const t of TABLES) n += s[t].size;
    return n;
  }

  /** Hosts that hold an endpoint (every host present in its domain), empty when it is not placed. */
  hostsThatKnow(endpointId: string): string[] {
    const e = this.endpoints.get(endpointId);
    if (!e || !this.placed.has(endpointId)) return [];
    return [...(this.domainHosts.get(e.domainId) ?? EMPTY_COUNTS).keys()];
  }

  isPlaced(endpointId: string): boolean {
    return this.placed.has(endpointId);
  }

  /**
   * Replaces the external prefixes of a domain (type-5 routes from other
   * datacenters or DC routers). Every host present in the domain gets a route
   * per prefix towards the VTEP; rare, so the domain's sections are recomputed.
   */
  setExternalRoutes(domainId: string, routes: ExternalRoute[]): void {
    const m = new Map(routes.map((r) => [r.key, r]));
    if (m.size) this.externalRoutes.set(domainId, m);
    else this.externalRoutes.delete(domainId);
    if (this.domains.has(domainId)) this.recomputeDomain(domainId);
  }

  /** The whole model as a snapshot (for tests: compare with compileAll). */
  snapshot(): ModelSnapshot {
    return {
      revision: this.revision,
      enterprises: [...this.enterprises.values()],
      domains: [...this.domains.values()],
      zones: [...this.zones.values()],
      subnets: [...this.subnets.values()],
      hosts: [...this.hosts.values()],
      endpoints: [...this.endpoints.values()],
      policyGroups: [...this.policyGroups.values()],
      networkMacros: [...this.networkMacros.values()],
      networkMacroGroups: [...this.networkMacroGroups.values()],
      aclRules: [...this.aclRules.values()],
      bgpSpeakers: [],
      bgpNeighbors: [],
    };
  }

  // ------------------------------------------------------------ change handlers

  private onEndpoint(id: string, next: Endpoint | null): void {
    const prev = this.endpoints.get(id);
    if (prev) {
      if (this.placed.has(id)) this.unplace(prev);
      removeFrom(this.endpointsBySubnet, prev.subnetId, id);
      removeFrom(this.endpointsByDomain, prev.domainId, id);
      if (prev.hostId) removeFrom(this.endpointsByHost, prev.hostId, id);
      this.endpoints.delete(id);
    }
    if (next) {
      this.endpoints.set(id, next);
      addTo(this.endpointsBySubnet, next.subnetId, id);
      addTo(this.endpointsByDomain, next.domainId, id);
      if (next.hostId) addTo(this.endpointsByHost, next.hostId, id);
      if (this.placeable(next)) this.place(next);
    }
  }

  private onHost(id: string, next: Host | null): void {
    const prev = this.hosts.get(id);
    const mine = [...(this.endpointsByHost.get(id) ?? EMPTY)];
    const vtepChanged = !prev || !next || prev.vtepIp !== next.vtepIp;
    if (vtepChanged) this.unplaceAll(mine);
    setOrDelete(this.hosts, id, next);
    if (next) {
      const book = getOrNew(this.books, id, () => new HostBook(id, this.passiveHosts.has(id)));
      this.put(book, HOST_SECTION, 'host', hostEntry(next, this.opts));
      if (vtepChanged) this.placeAll(mine);
    } else {
      const book = this.books.get(id);
      if (book) this.del(book, HOST_SECTION, 'host', id);
      this.books.delete(id);
      if (book) this.dirty.delete(book);
    }
  }

  private onSubnet(id: string, next: Subnet | null): void {
    const prev = this.subnets.get(id);
    if (prev && next && prev.domainId === next.domainId) {
      // placement is unchanged: recompute the sections that show the subnet
      this.subnets.set(id, next);
      this.recomputeDomain(next.domainId);
      return;
    }
    const mine = [...(this.endpointsBySubnet.get(id) ?? EMPTY)];
    this.unplaceAll(mine);
    if (prev) removeFrom(this.subnetsByDomain, prev.domainId, id);
    setOrDelete(this.subnets, id, next);
    if (next) addTo(this.subnetsByDomain, next.domainId, id);
    this.placeAll(mine);
    // zone and subnet sets list subnet CIDRs
    for (const d of new Set([prev?.domainId, next?.domainId])) if (d) this.recomputeDomain(d, (s) => s.sourceType === 'zone' || s.sourceType === 'subnet');
  }

  private onDomain(id: string, next: Domain | null): void {
    const prev = this.domains.get(id);
    if (prev && next && prev.enterpriseId === next.enterpriseId) {
      this.domains.set(id, next);
      this.recomputeDomain(id);
      return;
    }
    const mine = [...(this.endpointsByDomain.get(id) ?? EMPTY)];
    this.unplaceAll(mine);
    if (prev) removeFrom(this.domainsByEnterprise, prev.enterpriseId, id);
    setOrDelete(this.domains, id, next);
    if (next) addTo(this.domainsByEnterprise, next.enterpriseId, id);
    this.placeAll(mine);
  }

  private onAclRule(id: string, next: AclRule | null): void {
    const prev = this.aclRules.get(id);
    if (prev) removeFrom(this.rulesByDomain, prev.domainId, id);
    setOrDelete(this.aclRules, id, next);
    if (next) addTo(this.rulesByDomain, next.domainId, id);
    for (const d of new Set([prev?.domainId, next?.domainId])) {
      if (!d) continue;
      this.indexDomainRules(d);
      this.recomputeDomain(d);
    }
  }

  private onMacro(enterpriseId: string | null, mutate: () => void): void {
    mutate();
    if (enterpriseId === null) return;
    for (const d of this.domainsByEnterprise.get(enterpriseId) ?? EMPTY) {
      this.recomputeDomain(d, (s) => s.sourceType === 'networkMacro' || s.sourceType === 'networkMacroGroup');
    }
  }

  // ----------------------------------------------------- endpoint placement

  private placeable(e: Endpoint): boolean {
    return e.hostId !== null && this.hosts.has(e.hostId) && this.subnets.has(e.subnetId) && this.domains.has(e.domainId);
  }

  private placeAll(ids: string[]): void {
    for (const id of ids) {
      const e = this.endpoints.get(id);
      if (e && !this.placed.has(id) && this.placeable(e)) this.place(e);
    }
  }

  private unplaceAll(ids: string[]): void {
    for (const id of ids) {
      const e = this.endpoints.get(id);
      if (e && this.placed.has(id)) this.unplace(e);
    }
  }

  private vtepOf(hostId: string): string {
    return this.hosts.get(hostId)!.vtepIp;
  }

  /**
   * Entries that every host present in a domain or subnet holds alike: the
   * peer entry of a VTEP on the domain's l3Vni or the subnet's l2Vni
   * (peerEntry), and the domain's and subnet's own entries (ownEntry). One object each,
   * shared by those hosts as an endpoint's entries are, so that it is built
   * (a peer's router MAC included) and hashed once. A host joining a network
   * gets a peer entry for each host already there and each of them one for
   * it: building and hashing a copy per host was about a fifth of the
   * engine's work in bench:pipeline's first 10K endpoints. Kept by the model
   * object, which nothing changes in place (a changed domain or subnet
   * arrives as a new object, with new entries); the peer entry of a VTEP
   * that moved stays until its domain or subnet object is replaced.
   */
  private readonly peers = new WeakMap<Domain | Subnet, Map<string, PeerVtepEntry>>();
  private readonly ownEntries = new WeakMap<Domain | Subnet, DomainEntry | SubnetEntry>();

  private peerEntry<O extends Domain | Subnet>(owner: O, vtep: string, make: (owner: O, vtep: string) => PeerVtepEntry): PeerVtepEntry {
    let m = this.peers.get(owner);
    if (m === undefined) this.peers.set(owner, (m = new Map()));
    let p = m.get(vtep);
    if (p === undefined) m.set(vtep, (p = make(owner, vtep)));
    return p;
  }

  private ownEntry<O extends Domain | Subnet, E extends DomainEntry | SubnetEntry>(owner: O, make: (owner: O) => E): E {
    let x = this.ownEntries.get(owner) as E | undefined;
    if (x === undefined) this.ownEntries.set(owner, (x = make(owner)));
    return x;
  }

  /** An endpoint becomes placed: it is added to every host present in its domain. */
  private place(e: Endpoint): void {
    const H = e.hostId!;
    const S = this.subnets.get(e.subnetId)!;
    const D = this.domains.get(e.domainId)!;
    this.placed.add(e.id);
    addTo(this.placedBySubnet, S.id, e.id);
    const subnetHosts = getOrNew(this.subnetHosts, S.id, () => new Map<string, number>());
    const domainHosts = getOrNew(this.domainHosts, D.id, () => new Map<string, number>());
    const newInSubnet = inc(subnetHosts, H) === 1;
    const newInDomain = inc(domainHosts, H) === 1;
    const book = this.books.get(H)!;
    const vtep = this.vtepOf(H);
    const x = this.entriesOf(e);

    if (newInDomain) {
      // the host joins the domain: it gets the whole section
      if (!book.passive) this.replaceSection(book, D.id, this.compileSection(H, D));
      for (const V of domainHosts.keys()) {
        if (V === H) continue;
        const vb = this.books.get(V)!;
        this.put(vb, D.id, 'peerVteps', this.peerEntry(D, vtep, l3PeerEntry));
        if (newInSubnet && subnetHosts.has(V)) this.put(vb, D.id, 'peerVteps', this.peerEntry(S, vtep, l2PeerEntry));
        this.putEndpoint(vb, e, x, subnetHosts);
      }
      return;
    }
    if (newInSubnet) {
      // the host joins the subnet: its endpoints turn from routes into FDB/ARP entries
      this.put(book, D.id, 'subnets', this.ownEntry(S, subnetEntry));
      for (const V of subnetHosts.keys()) {
        if (V === H) continue;
        this.put(book, D.id, 'peerVteps', this.peerEntry(S, this.vtepOf(V), l2PeerEntry));
        this.put(this.books.get(V)!, D.id, 'peerVteps', this.peerEntry(S, vtep, l2PeerEntry));
      }
      for (const xid of this.placedBySubnet.get(S.id)!) {
        if (xid === e.id) continue;
        this.del(book, D.id, 'routes', xid);
        const y = this.entriesOf(this.endpoints.get(xid)!);
        this.put(book, D.id, 'remoteEndpoints', y.remote, xid, remoteHashOf(y));
      }
    }
    for (const V of domainHosts.keys()) this.putEndpoint(this.books.get(V)!, e, x, subnetHosts);
  }

  /** An endpoint stops being placed: it is removed from every host present in its domain. Call before changing the model. */
  private unplace(e: Endpoint): void {
    const H = e.hostId!;
    const S = this.subnets.get(e.subnetId)!;
    const D = this.domains.get(e.domainId)!;
    const subnetHosts = this.subnetHosts.get(S.id)!;
    const domainHosts = this.domainHosts.get(D.id)!;
    for (const V of domainHosts.keys()) this.delEndpoint(this.books.get(V)!, e);
    this.entryCache.delete(e.id);
    this.placed.delete(e.id);
    removeFrom(this.placedBySubnet, S.id, e.id);
    const leftSubnet = dec(subnetHosts, H) === 0;
    const leftDomain = dec(domainHosts, H) === 0;
    if (subnetHosts.size === 0) this.subnetHosts.delete(S.id);
    if (domainHosts.size === 0) this.domainHosts.delete(D.id);
    const book = this.books.get(H)!;
    const vtep = this.vtepOf(H);

    if (leftDomain) {
      this.replaceSection(book, D.id, null);
      for (const V of domainHosts.keys()) {
        const vb = this.books.get(V)!;
        this.del(vb, D.id, 'peerVteps', peerKey(D.l3Vni, vtep));
        if (leftSubnet && subnetHosts.has(V)) this.del(vb, D.id, 'peerVteps', peerKey(S.l2Vni, vtep));
      }
      return;
    }
    if (leftSubnet) {
      this.del(book, D.id, 'subnets', S.id);
      for (const V of subnetHosts.keys()) {
        this.del(book, D.id, 'peerVteps', peerKey(S.l2Vni, this.vtepOf(V)));
        this.del(this.books.get(V)!, D.id, 'peerVteps', peerKey(S.l2Vni, vtep));
      }
      for (const xid of this.placedBySubnet.get(S.id) ?? EMPTY) {
        this.del(book, D.id, 'remoteEndpoints', xid);
        const y = this.entriesOf(this.endpoints.get(xid)!);
        this.put(book, D.id, 'routes', y.route, xid, routeHashOf(y));
      }
    }
  }

  /** The entries `x` (entriesOf) of a placed endpoint as seen by host `book` (present in its domain). */
  private putEndpoint(book: HostBook, e: Endpoint, x: EndpointEntries, subnetHosts: ReadonlyMap<string, number>): void {
    // the three tables key an endpoint's entry by its id
    if (e.hostId === book.hostId) this.put(book, e.domainId, 'localEndpoints', x.local, e.id, localHashOf(x));
    else if (subnetHosts.has(book.hostId)) this.put(book, e.domainId, 'remoteEndpoints', x.remote, e.id, remoteHashOf(x));
    else this.put(book, e.domainId, 'routes', x.route, e.id, routeHashOf(x));
    for (let i = 0; i < x.elements.length; i++) this.put(book, e.domainId, 'setElements', x.elements[i], x.elementKeys[i], x.elementHashes[i]);
  }

  private delEndpoint(book: HostBook, e: Endpoint): void {
    this.del(book, e.domainId, 'localEndpoints', e.id);
    this.del(book, e.domainId, 'remoteEndpoints', e.id);
    this.del(book, e.domainId, 'routes', e.id);
    for (const key of this.entriesOf(e).elementKeys) this.del(book, e.domainId, 'setElements', key);
  }

  /** Entry objects of a placed endpoint, built once and shared by all hosts. */
  private entriesOf(e: Endpoint): EndpointEntries {
    let x = this.entryCache.get(e.id);
    if (x) return x;
    const vtep = this.vtepOf(e.hostId!);
    x = {
      local: localEndpointEntry(e),
      remote: remoteEndpointEntry(e, vtep),
      route: routeEntry(e, vtep),
      localHash: null,
      remoteHash: null,
      routeHash: null,
      elementKeys: [],
      elements: [],
      elementHashes: [],
    };
    const members = this.domainMemberSets.get(e.domainId);
    if (members) {
      const fam = endpointFamily(e);
      const cidr = hostPrefix(e.ip);
      const join = (n: string | undefined) => {
        if (n === undefined) return;
        const key = setElementKey(n, cidr);
        if (x!.elementKeys.includes(key)) return;
        x!.elementKeys.push(key);
        const el = setElementEntry(n, cidr);
        x!.elements.push(el);
        x!.elementHashes.push(entryHashOf('setElements', el));
      };
      join(members.get(e.id)?.[fam]);
      for (const g of e.policyGroupIds) join(members.get(g)?.[fam]);
    }
    this.entryCache.set(e.id, x);
    return x;
  }

  // ---------------------------------------------------------------- sections

  private indexDomainRules(domainId: string): void {
    const sets = new Map<string, AddressSetEntry>();
    const rules: RuleEntry[] = [];
    for (const rid of this.rulesByDomain.get(domainId) ?? EMPTY) {
      const c = compileRule(this.aclRules.get(rid)!);
      rules.push(c.rule);
      for (const s of c.sets) sets.set(s.name, s);
    }
    const members = new Map<string, { 4?: string; 6?: string }>();
    for (const s of sets.values()) {
      if (s.sourceType !== 'policyGroup' && s.sourceType !== 'endpoint') continue;
      getOrNew(members, s.sourceId, (): { 4?: string; 6?: string } => ({}))[s.family] = s.name;
    }
    if (rules.length) {
      this.domainSets.set(domainId, sets);
      this.domainRules.set(domainId, rules);
      this.domainMemberSets.set(domainId, members);
    } else {
      this.domainSets.delete(domainId);
      this.domainRules.delete(domainId);
      this.domainMemberSets.delete(domainId);
    }
    // cached set elements of the domain's endpoints may be stale now
    for (const id of this.endpointsByDomain.get(domainId) ?? EMPTY) this.entryCache.delete(id);
  }

  /**
   * Recomputes the domain's section on every host present in it. With a
   * filter, does nothing unless the domain references a set it accepts.
   */
  private recomputeDomain(domainId: string, onlyIfSet?: (s: AddressSetEntry) => boolean): void {
    const hosts = this.domainHosts.get(domainId);
    if (!hosts) return;
    if (onlyIfSet && ![...(this.domainSets.get(domainId)?.values() ?? [])].some(onlyIfSet)) return;
    const D = this.domains.get(domainId)!;
    for (const H of hosts.keys()) {
      const book = this.books.get(H)!;
      if (!book.passive) this.replaceSection(book, domainId, this.compileSection(H, D));
    }
  }

  /** The domain section of host H from the indexes (the engine's "run"). H must be present in D. */
  private compileSection(H: string, D: Domain): HostState {
    const sec = emptyHostState();
    const put = <T extends TableName>(t: T, e: EntryByTable[T], key: string = keyOf[t](e)) => {
      sec[t].set(key, e);
    };
    put('domains', this.ownEntry(D, domainEntry));
    const domainHosts = this.domainHosts.get(D.id) ?? EMPTY_COUNTS;
    for (const V of domainHosts.keys()) if (V !== H) put('peerVteps', this.peerEntry(D, this.vtepOf(V), l3PeerEntry));
    for (const sid of this.subnetsByDomain.get(D.id) ?? EMPTY) {
      const S = this.subnets.get(sid)!;
      const holders = this.subnetHosts.get(sid) ?? EMPTY_COUNTS;
      const held = holders.has(H);
      if (held) {
        put('subnets', this.ownEntry(S, subnetEntry));
        for (const V of holders.keys()) if (V !== H) put('peerVteps', this.peerEntry(S, this.vtepOf(V), l2PeerEntry));
      }
      for (const xid of this.placedBySubnet.get(sid) ?? EMPTY) {
        const e = this.endpoints.get(xid)!;
        const x = this.entriesOf(e);
        if (e.hostId === H) put('localEndpoints', x.local);
        else if (held) put('remoteEndpoints', x.remote);
        else put('routes', x.route);
        for (let i = 0; i < x.elements.length; i++) put('setElements', x.elements[i], x.elementKeys[i]);
      }
    }
    for (const r of this.externalRoutes.get(D.id)?.values() ?? []) {
      put('routes', { endpointId: r.key, domainId: D.id, prefix: r.prefix, vtep: r.vtep });
      // the VTEP of a router is reached over the l3Vni through the router MAC its route carried
      if (!sec.peerVteps.has(peerKey(D.l3Vni, r.vtep))) {
        put('peerVteps', { vni: D.l3Vni, kind: 'l3', domainId: D.id, subnetId: null, vtep: r.vtep, routerMac: r.routerMac });
      }
    }
    for (const r of this.domainRules.get(D.id) ?? []) put('rules', r);
    for (const s of this.domainSets.get(D.id)?.values() ?? []) {
      put('addressSets', s);
      for (const cidr of this.staticMembers(D, s)) put('setElements', setElementEntry(s.name, cidr));
    }
    return sec;
  }

  /** Members of sets that list CIDRs of subnets and macros (endpoint-based sets come from entriesOf). */
  private staticMembers(D: Domain, s: AddressSetEntry): string[] {
    const ofFamily = (cidr: string | null) => (cidr !== null && (cidr.includes(':') ? 6 : 4) === s.family ? [cidr] : []);
    const macroCidrs = (ids: string[]) =>
      ids.flatMap((id) => {
        const m = this.networkMacros.get(id);
        return m && m.enterpriseId === D.enterpriseId ? ofFamily(canonicalCidr(m.cidr)) : [];
      });
    switch (s.sourceType) {
      case 'zone':
        return [...(this.subnetsByDomain.get(D.id) ?? EMPTY)]
          .map((id) => this.subnets.get(id)!)
          .filter((x) => x.zoneId === s.sourceId)
          .flatMap((x) => ofFamily(canonicalCidr(x.cidr)));
      case 'subnet': {
        const x = this.subnets.get(s.sourceId);
        return x && x.domainId === D.id ? ofFamily(canonicalCidr(x.cidr)) : [];
      }
      case 'networkMacro':
        return macroCidrs([s.sourceId]);
      case 'networkMacroGroup': {
        const g = this.networkMacroGroups.get(s.sourceId);
        return g && g.enterpriseId === D.enterpriseId ? macroCidrs(g.networkMacroIds) : [];
      }
      case 'policyGroup':
      case 'endpoint':
        return [];
      default: {
        const _: never = s.sourceType;
        return _;
      }
    }
  }

  /** Makes a host's section equal to `next` (null: drop it), writing only what differs. */
  private replaceSection(book: HostBook, domainId: string, next: HostState | null): void {
    const cur = book.sections.get(domainId);
    if (cur) {
      for (const t of TABLES) {
        for (const key of [...cur[t].keys()]) if (!next || !next[t].has(key)) this.del(book, domainId, t, key);
      }
    }
    if (next) for (const t of TABLES) for (const [key, e] of next[t]) this.put(book, domainId, t, e as never, key);
    if (!next) book.dropSection(domainId);
  }

  // ------------------------------------------------------------------ writes

  /** Remembers the newest value of a key for the next takeChanges, and that the host changed in the current change. */
  private record(book: HostBook, table: TableName, key: string, value: AnyEntry | null): void {
    if (this.loading) return;
    let c = book.changes;
    if (c === null) {
      c = book.changes = new PendingChanges();
      this.dirty.add(book);
    }
    c.record(c.table(table), key, value);
    if (book.changeMark !== this.changeEpoch) {
      book.changeMark = this.changeEpoch;
      this.changeHosts.add(book.hostId);
    }
  }

  /** Writes an entry under its key; `hash`, when given, is the entry's (entryHashOf), saving the digest its cache lookup. */
  private put<T extends TableName>(
    book: HostBook,
    section: string,
    table: T,
    entry: EntryByTable[T],
    key: string = keyOf[table](entry),
    hash?: Hash,
  ): void {
    if (book.passive) return;
    const tab = book.section(section)[table] as Map<string, AnyEntry>;
    const cur = tab.get(key) as EntryByTable[T] | undefined;
    if (sameEntry(table, cur, entry)) return;
    this.record(book, table, key, entry);
    if (cur) book.digest.remove(table, cur);
    if (hash === undefined) book.digest.add(table, entry);
    else book.digest.addHash(hash);
    tab.set(key, entry);
  }

  private del(book: HostBook, section: string, table: TableName, key: string): void {
    const tab = book.sections.get(section)?.[table] as Map<string, AnyEntry> | undefined;
    const cur = tab?.get(key);
    if (!tab || cur === undefined) return;
    this.record(book, table, key, null);
    book.digest.remove(table, cur);
    tab.delete(key);
  }
}

function setOrDelete<V>(m: Map<string, V>, id: string, v: V | null): void {
  if (v === null) m.delete(id);
  else m.set(id, v);
}
