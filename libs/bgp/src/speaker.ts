/**
 * BgpSpeaker: the API the controller uses. It owns the listener, the
 * neighbours (session/peer.ts), and the RIBs: Adj-RIB-In per neighbour,
 * Loc-RIB with the RFC 4271 §9.1 decision, Adj-RIB-Out per neighbour with
 * policy hooks, route reflection (RFC 4456) and graceful restart (RFC 4724)
 * as helper and as restarting speaker.
 */
import * as net from 'node:net';
import { Subject, type Observable } from 'rxjs';
import {
  afiSafiOf,
  canonicalIpv6,
  canonicalMac,
  canonicalRd,
  encode,
  evpnKey,
  isIpv4,
  isIpv6,
  MAX_MESSAGE,
  prefixSize,
  updateSize,
  AttrFlag,
  AS_TRANS,
  CeaseSubcode,
  type AsPathSegment,
  type AttributeIssue,
  type EvpnRoute,
  type Family,
  type PathAttributes,
  type RouteRefresh,
  type Update,
} from './codec/index.js';
import { evpnSize } from './codec/nlri.js';
import {
  attributesKey,
  comparePaths,
  evpnDataKey,
  evpnDataOf,
  evpnFromKey,
  FAMILY_BY_INDEX,
  FAMILY_INDEX,
  PathTable,
  type Path,
  type RouteSource,
} from './rib/path.js';
import { applyChanges, type PolicyHook, type PolicyRoute } from './rib/policy.js';
import { Peer, type NeighborConfig, type Negotiated, type PeerCounters, type PeerHost, type PeerState } from './session/peer.js';

export interface SpeakerConfig {
  asn: number;
  routerId: string;
  /** Where to accept connections; false for none (active sessions only). */
  listen?: { address: string; port: number } | false;
  /** Proposed hold time in seconds (default 90). */
  holdTime?: number;
  /** Route-reflector cluster id (default: the router id). */
  clusterId?: string;
  gracefulRestart?: {
    /** Advertise the capability and act as helper (default true). */
    enabled?: boolean;
    /** Seconds the neighbours should wait for us (default 120). */
    restartTime?: number;
    /** This speaker has just restarted: set the R bit on first sessions. */
    restarting?: boolean;
    /** Seconds stale routes are kept after the neighbour is back (default 360). */
    stalePathTime?: number;
  };
  /** Structured log sink; one object per event. */
  logger?: (entry: LogEntry) => void;
}

export interface LogEntry {
  level: 'debug' | 'info' | 'warn';
  event: string;
  [field: string]: unknown;
}

/** Extra attributes of a route we originate. */
export type LocalAttributes = Omit<PathAttributes, 'mpReach' | 'mpUnreach' | 'nextHop'>;

export type LocalRoute =
  | { family: 'ipv4-unicast' | 'ipv6-unicast'; prefix: string; nextHop: string; attributes?: LocalAttributes }
  | { family: 'l2vpn-evpn'; route: EvpnRoute; nextHop: string; attributes?: LocalAttributes };

/** Identifies a route for withdrawal: only the key fields matter. */
export type RouteKeyInput = { family: 'ipv4-unicast' | 'ipv6-unicast'; prefix: string } | { family: 'l2vpn-evpn'; route: EvpnRoute };

export interface RibRoute {
  family: Family;
  /** RIB key: the prefix, or the EVPN route key (RFC 7432 §7). */
  key: string;
  prefix?: string;
  evpn?: EvpnRoute;
  nextHop: string;
  attributes: LocalAttributes;
  /** 'local' or the neighbour's address. */
  source: string;
  /** Kept for a restarting neighbour (RFC 4724 §4.2). */
  stale: boolean;
}

export interface BestPathChange {
  family: Family;
  key: string;
  /** The new best route; undefined when the route is gone. */
  route: RibRoute | undefined;
}

export interface PeerStateChange {
  address: string;
  previous: PeerState;
  state: PeerState;
  reason: string;
}

export interface NeighborStatus {
  address: string;
  asn: number;
  state: PeerState;
  negotiated?: Negotiated;
  counters: PeerCounters & { routesReceived: number; routesAdvertised: number; staleRoutes: number };
  lastError?: Peer['lastError'];
}

interface SourceData {
  source: RouteSource;
  peer?: Peer;
  adjIn: Map<string, Path>[];
  staleIn: (Map<string, Path> | undefined)[];
  adjOut: Map<string, Path>[];
  pendingOut: Set<string>[];
  outPaths: PathTable;
  /** Export result per best path when the neighbour has no export policy. */
  outCache: WeakMap<Path, Path | null>;
  flushScheduled: boolean;
  flushing: boolean;
  needEor: boolean[];
  needEorr: boolean[];
  restartTimer?: NodeJS.Timeout;
  staleTimer?: NodeJS.Timeout;
}

const NF = 3;
const newMaps = () => Array.from({ length: NF }, () => new Map<string, Path>());

function ipToNumber(s: string): number {
  const p = s.split('.');
  return ((+p[0] << 24) | (+p[1] << 16) | (+p[2] << 8) | +p[3]) >>> 0;
}

export class BgpSpeaker {
  readonly localAsn: number;
  readonly routerId: string;
  readonly holdTime: number;
  readonly clusterId: string;
  readonly gracefulRestart: { enabled: boolean; restartTime: number; restarting: boolean; stalePathTime: number };

  private readonly paths = new PathTable();
  private readonly locRib: Map<string, Path>[] = newMaps();
  private readonly local: SourceData;
  private readonly sources: SourceData[] = [];
  private readonly byPeer = new Map<string, SourceData>();
  private nextSourceId = 1;
  private server?: net.Server;
  private readonly bestPaths = new Subject<BestPathChange>();
  private readonly peerStates = new Subject<PeerStateChange>();
  private readonly endOfRibs = new Subject<{ peer: string; family: Family }>();
  private readonly host: PeerHost;

  /** Best-path changes of the Loc-RIB, one event per route key. */
  readonly bestPathChanges$: Observable<BestPathChange> = this.bestPaths.asObservable();
  /** Neighbour FSM state changes. */
  readonly peerStateChanges$: Observable<PeerStateChange> = this.peerStates.asObservable();
  /** End-of-RIB markers received (RFC 4724 §2), after the routes of that neighbour and family are in the Loc-RIB. */
  readonly endOfRib$: Observable<{ peer: string; family: Family }> = this.endOfRibs.asObservable();

  constructor(private readonly config: SpeakerConfig) {
    if (!isIpv4(config.routerId)) throw new Error(`router id must be an IPv4 address: ${config.routerId}`);
    if (!Number.isInteger(config.asn) || config.asn < 1 || config.asn > 0xffffffff) throw new Error(`AS number out of range: ${config.asn}`);
    this.localAsn = config.asn;
    this.routerId = config.routerId;
    this.holdTime = config.holdTime ?? 90;
    this.clusterId = config.clusterId ?? config.routerId;
    const gr = config.gracefulRestart ?? {};
    this.gracefulRestart = {
      enabled: gr.enabled ?? true,
      restartTime: gr.restartTime ?? 120,
      restarting: gr.restarting ?? false,
      stalePathTime: gr.stalePathTime ?? 360,
    };
    this.local = this.newSource({ id: 0, kind: 'local', address: 'local', routerId: ipToNumber(this.routerId), asn: this.localAsn, ibgp: false, routeReflectorClient: false });
    this.sources.push(this.local);
    const self = this;
    this.host = {
      localAsn: this.localAsn,
      routerId: this.routerId,
      holdTime: this.holdTime,
      gracefulRestart: this.gracefulRestart,
      onEstablished: (p) => self.onEstablished(p),
      onDown: (p, keepStale, reason) => self.onDown(p, keepStale, reason),
      onUpdate: (p, u) => self.onUpdate(p, u),
      onRouteRefresh: (p, rr) => self.onRouteRefresh(p, rr),
      onStateChange: (p, previous, state, reason) => self.peerStates.next({ address: p.address, previous, state, reason }),
      log: (level, event, fields) => self.log(level, event, fields),
    };
  }

  // ------------------------------------------------------------ lifecycle

  /** Starts listening (when configured) and starts the neighbours. */
  async start(): Promise<void> {
    const l = this.config.listen;
    if (l) {
      this.server = net.createServer((s) => this.onIncoming(s));
      await new Promise<void>((resolve, reject) => {
        this.server!.once('error', reject);
        this.server!.listen(l.port, l.address, () => resolve());
      });
    }
    for (const sd of this.sources) sd.peer?.start();
  }

  /** The port actually listened on (useful with port 0). */
  get listenPort(): number | undefined {
    const a = this.server?.address();
    return typeof a === 'object' && a !== null ? a.port : undefined;
  }

  /**
   * Stops everything. `graceful: true` drops the TCP sessions without a
   * NOTIFICATION, so GR-capable neighbours keep our routes as stale while
   * we restart (RFC 4724 §4.1).
   */
  async stop(options: { graceful?: boolean } = {}): Promise<void> {
    for (const sd of this.sources) {
      if (sd.peer) sd.peer.stop(!options.graceful, CeaseSubcode.AdministrativeShutdown);
      clearTimeout(sd.restartTimer);
      clearTimeout(sd.staleTimer);
    }
    if (this.server) {
      const s = this.server;
      this.server = undefined;
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    this.bestPaths.complete();
    this.peerStates.complete();
    this.endOfRibs.complete();
  }

  // ------------------------------------------------------------ neighbours

  addNeighbor(config: NeighborConfig): void {
    const address = config.address.includes(':') ? canonicalIpv6(config.address) : config.address;
    if (this.byPeer.has(address)) throw new Error(`neighbour ${address} already exists`);
    const peer = new Peer({ ...config, address }, this.host);
    const sd = this.newSource({
      id: this.nextSourceId++,
      kind: 'peer',
      address,
      routerId: 0,
      asn: config.asn,
      ibgp: config.asn === this.localAsn,
      routeReflectorClient: config.routeReflectorClient ?? false,
    });
    sd.peer = peer;
    this.sources.push(sd);
    this.byPeer.set(address, sd);
    if (this.server || this.config.listen === false || this.config.listen === undefined) peer.start();
  }

  removeNeighbor(address: string): void {
    const sd = this.byPeer.get(address);
    if (!sd) throw new Error(`no neighbour ${address}`);
    sd.peer!.stop(true, CeaseSubcode.PeerDeconfigured);
    clearTimeout(sd.restartTimer);
    clearTimeout(sd.staleTimer);
    for (let fi = 0; fi < NF; fi++) {
      this.flushStale(sd, fi);
      this.dropAll(sd, fi);
    }
    this.byPeer.delete(address);
    this.sources.splice(this.sources.indexOf(sd), 1);
  }

  neighbors(): NeighborStatus[] {
    return [...this.byPeer.values()].map((sd) => this.status(sd));
  }

  neighbor(address: string): NeighborStatus | undefined {
    const sd = this.byPeer.get(address);
    return sd && this.status(sd);
  }

  /** Asks the neighbour to send its routes again (RFC 2918). */
  refresh(address: string, family: Family): void {
    const sd = this.byPeer.get(address);
    if (!sd?.peer?.isEstablished) return;
    const { afi, safi } = afiSafiOf(family);
    sd.peer.send(encode({ type: 'route-refresh', afi, safi, subtype: 0 }), false);
  }

  private status(sd: SourceData): NeighborStatus {
    const p = sd.peer!;
    let routesReceived = 0;
    let routesAdvertised = 0;
    let staleRoutes = 0;
    for (let fi = 0; fi < NF; fi++) {
      routesReceived += sd.adjIn[fi].size;
      routesAdvertised += sd.adjOut[fi].size;
      staleRoutes += sd.staleIn[fi]?.size ?? 0;
    }
    return {
      address: p.address,
      asn: p.config.asn,
      state: p.state,
      negotiated: p.negotiated,
      counters: { ...p.counters, routesReceived, routesAdvertised, staleRoutes },
      lastError: p.lastError,
    };
  }

  // ------------------------------------------------------------ local routes

  /** Originates (or replaces) a route. */
  addRoute(r: LocalRoute): void {
    const fi = FAMILY_INDEX[r.family];
    const attrs: PathAttributes = { origin: 0, asPath: [], ...(r.attributes ?? {}) };
    delete attrs.mpReach;
    delete attrs.mpUnreach;
    delete attrs.nextHop;
    const { key, evpn } = this.localKey(r);
    if (!isIpv4(r.nextHop) && !isIpv6(r.nextHop)) throw new Error(`next hop is not an IP address: ${r.nextHop}`);
    const nextHop = r.nextHop.includes(':') ? canonicalIpv6(r.nextHop) : r.nextHop;
    // Validate every field now, by encoding the route once: a bad value must fail
    // here, at the caller, not later inside an UPDATE to some neighbour.
    try {
      const mpReach =
        r.family === 'l2vpn-evpn'
          ? { family: r.family, nextHops: [nextHop], nlri: [evpn!] }
          : { family: r.family, nextHops: [nextHop], nlri: [key] };
      encode({ type: 'update', withdrawn: [], nlri: [], attributes: { ...attrs, mpReach } as PathAttributes });
    } catch (e) {
      throw new Error(`invalid route ${key}: ${(e as Error).message}`);
    }
    const path = this.paths.intern(this.local.source, attrs, attributesKey(attrs), nextHop, evpn ? evpnDataOf(evpn) : undefined);
    this.setIn(this.local, fi, key, path);
  }

  /** Withdraws a route we originated (only its key fields matter). */
  withdrawRoute(r: RouteKeyInput): void {
    const fi = FAMILY_INDEX[r.family];
    const { key } = this.localKey(r);
    this.deleteIn(this.local, fi, key);
  }

  private localKey(r: RouteKeyInput): { key: string; evpn?: EvpnRoute } {
    if (r.family === 'l2vpn-evpn') {
      const e = normalizeEvpn(r.route);
      return { key: evpnKey(e), evpn: e };
    }
    const [addr, len] = r.prefix.split('/');
    const canon = r.family === 'ipv6-unicast' ? canonicalIpv6(addr) : addr;
    if (len === undefined) throw new Error(`not a prefix: ${r.prefix}`);
    return { key: `${canon}/${Number(len)}` };
  }

  // ------------------------------------------------------------ queries

  /** Loc-RIB: the best route per key. */
  routes(family: Family): RibRoute[] {
    const out: RibRoute[] = [];
    for (const [key, p] of this.locRib[FAMILY_INDEX[family]]) out.push(this.view(family, key, p));
    return out;
  }

  /** The best route for one key (a prefix, or an EVPN route / route key). */
  route(family: Family, key: string | EvpnRoute): RibRoute | undefined {
    const k = typeof key === 'string' ? key : evpnKey(normalizeEvpn(key));
    const p = this.locRib[FAMILY_INDEX[family]].get(k);
    return p && this.view(family, k, p);
  }

  /** Number of best routes in a family (cheap). */
  routeCount(family: Family): number {
    return this.locRib[FAMILY_INDEX[family]].size;
  }

  adjRibIn(address: string, family: Family): RibRoute[] {
    const sd = this.byPeer.get(address);
    if (!sd) return [];
    const fi = FAMILY_INDEX[family];
    const out: RibRoute[] = [];
    for (const [key, p] of sd.adjIn[fi]) out.push(this.view(family, key, p));
    for (const [key, p] of sd.staleIn[fi] ?? []) out.push(this.view(family, key, p, true));
    return out;
  }

  adjRibOut(address: string, family: Family): RibRoute[] {
    const sd = this.byPeer.get(address);
    if (!sd) return [];
    const out: RibRoute[] = [];
    for (const [key, p] of sd.adjOut[FAMILY_INDEX[family]]) out.push(this.view(family, key, p));
    return out;
  }

  private view(family: Family, key: string, p: Path, stale?: boolean): RibRoute {
    const r: RibRoute = {
      family,
      key,
      nextHop: p.nextHop,
      attributes: p.attrs,
      source: p.source.address,
      stale: stale ?? this.isStale(p, family, key),
    };
    if (family === 'l2vpn-evpn') r.evpn = evpnFromKey(key, p.evpn);
    else r.prefix = key;
    return r;
  }

  private isStale(p: Path, family: Family, key: string): boolean {
    if (p.source.kind === 'local') return false;
    const sd = this.byPeer.get(p.source.address);
    return sd?.staleIn[FAMILY_INDEX[family]]?.get(key) === p;
  }

  // ------------------------------------------------------------ RIB core

  private newSource(source: RouteSource): SourceData {
    return {
      source,
      adjIn: newMaps(),
      staleIn: [undefined, undefined, undefined],
      adjOut: newMaps(),
      pendingOut: Array.from({ length: NF }, () => new Set<string>()),
      outPaths: new PathTable(),
      outCache: new WeakMap(),
      flushScheduled: false,
      flushing: false,
      needEor: [false, false, false],
      needEorr: [false, false, false],
    };
  }

  /** Stores a path (the caller holds one reference to it) and reruns the decision. */
  private setIn(sd: SourceData, fi: number, key: string, path: Path): void {
    const m = sd.adjIn[fi];
    const old = m.get(key);
    if (old === path) {
      this.paths.release(path);
    } else {
      m.set(key, path);
      if (old !== undefined) this.paths.release(old);
    }
    const stale = sd.staleIn[fi];
    if (stale !== undefined) {
      const s = stale.get(key);
      if (s !== undefined) {
        stale.delete(key);
        this.paths.release(s);
      }
    }
    this.decide(fi, key);
  }

  private deleteIn(sd: SourceData, fi: number, key: string): void {
    const old = sd.adjIn[fi].get(key);
    let changed = false;
    if (old !== undefined) {
      sd.adjIn[fi].delete(key);
      this.paths.release(old);
      changed = true;
    }
    const stale = sd.staleIn[fi];
    const s = stale?.get(key);
    if (s !== undefined) {
      stale!.delete(key);
      this.paths.release(s);
      changed = true;
    }
    if (changed) this.decide(fi, key);
  }

  /** RFC 4271 §9.1.2: selects the best of all candidates for one key. */
  private decide(fi: number, key: string): void {
    const loc = this.locRib[fi];
    const old = loc.get(key);
    let best: Path | undefined;
    for (const sd of this.sources) {
      let p = sd.adjIn[fi].get(key);
      if (p === undefined) {
        const st = sd.staleIn[fi];
        if (st === undefined) continue;
        p = st.get(key);
        if (p === undefined) continue;
      }
      if (best === undefined || comparePaths(p, best) < 0) best = p;
    }
    if (best === old) return;
    if (best === undefined) loc.delete(key);
    else loc.set(key, best);
    if (this.bestPaths.observed) {
      const family = FAMILY_BY_INDEX[fi];
      this.bestPaths.next({ family, key, route: best && this.view(family, key, best) });
    }
    for (let i = 1; i < this.sources.length; i++) {
      const sd = this.sources[i];
      const p = sd.peer!;
      if (!p.isEstablished) continue;
      // Nothing to send back to the source of the only path unless we had advertised something.
      if (best !== undefined && best.source === sd.source && !sd.adjOut[fi].has(key)) continue;
      if (!p.negotiated!.families.includes(FAMILY_BY_INDEX[fi])) continue;
      sd.pendingOut[fi].add(key);
      this.scheduleFlush(sd);
    }
  }

  private dropAll(sd: SourceData, fi: number): void {
    const m = sd.adjIn[fi];
    sd.adjIn[fi] = new Map();
    for (const [key, p] of m) {
      this.paths.release(p);
      this.decide(fi, key);
    }
  }

  /** Moves the neighbour's routes of a family to its stale set (kept as candidates); returns the stale count. */
  private markStale(sd: SourceData, fi: number): number {
    const stale = sd.staleIn[fi] ?? new Map<string, Path>();
    for (const [key, p] of sd.adjIn[fi]) {
      const prev = stale.get(key);
      if (prev) this.paths.release(prev);
      stale.set(key, p);
    }
    sd.adjIn[fi] = new Map();
    sd.staleIn[fi] = stale.size > 0 ? stale : undefined;
    return stale.size;
  }

  private flushStale(sd: SourceData, fi: number): void {
    const stale = sd.staleIn[fi];
    if (stale === undefined) return;
    sd.staleIn[fi] = undefined;
    if (stale.size > 0) this.log('info', 'bgp.gr.stale-swept', { peer: sd.source.address, family: FAMILY_BY_INDEX[fi], routes: stale.size });
    for (const [key, p] of stale) {
      this.paths.release(p);
      this.decide(fi, key);
    }
  }

  // ------------------------------------------------------------ inbound

  private onIncoming(socket: net.Socket): void {
    let addr = socket.remoteAddress ?? '';
    if (addr.startsWith('::ffff:')) addr = addr.slice(7);
    const sd = this.byPeer.get(addr.includes(':') ? canonicalIpv6(addr) : addr);
    if (!sd) {
      this.log('warn', 'bgp.connection.unknown-peer', { remote: addr });
      socket.destroy();
      return;
    }
    sd.peer!.acceptIncoming(socket);
  }

  private onUpdate(peer: Peer, u: Update): void {
    const sd = this.byPeer.get(peer.address)!;
    const a = u.attributes;
    // End-of-RIB (RFC 4724 §2).
    if (u.withdrawn.length === 0 && u.nlri.length === 0) {
      const keys = Object.keys(a);
      if (keys.length === 0) return this.onEndOfRib(sd, 0);
      if (keys.length === 1 && a.mpUnreach && a.mpUnreach.family !== 'other' && a.mpUnreach.withdrawn.length === 0) {
        return this.onEndOfRib(sd, FAMILY_INDEX[a.mpUnreach.family]);
      }
    }
    for (const p of u.withdrawn) this.deleteIn(sd, 0, p);
    if (a.mpUnreach && a.mpUnreach.family !== 'other') {
      const fi = FAMILY_INDEX[a.mpUnreach.family];
      if (a.mpUnreach.family === 'l2vpn-evpn') for (const r of a.mpUnreach.withdrawn) this.deleteIn(sd, fi, evpnKey(r));
      else for (const p of a.mpUnreach.withdrawn) this.deleteIn(sd, fi, p);
    }
    if (u.nlri.length === 0 && (a.mpReach === undefined || a.mpReach.family === 'other')) return;
    const withdraw = this.rejectReason(sd, u.issues, a);
    if (withdraw !== undefined) {
      this.log('warn', 'bgp.update.treat-as-withdraw', { peer: peer.address, reason: withdraw });
      for (const p of u.nlri) this.deleteIn(sd, 0, p);
      if (a.mpReach && a.mpReach.family !== 'other') {
        const fi = FAMILY_INDEX[a.mpReach.family];
        if (a.mpReach.family === 'l2vpn-evpn') for (const r of a.mpReach.nlri) this.deleteIn(sd, fi, evpnKey(r));
        else for (const p of a.mpReach.nlri) this.deleteIn(sd, fi, p);
      }
      return;
    }
    const base: PathAttributes = { ...a };
    delete base.mpReach;
    delete base.mpUnreach;
    delete base.nextHop;
    if (!sd.source.ibgp) delete base.localPref; // RFC 4271 §5.1.5
    if (peer.negotiated?.as4) {
      // RFC 6793 §6: a 4-octet speaker does not send AS4_PATH/AS4_AGGREGATOR; discard them.
      delete base.as4Path;
      delete base.as4Aggregator;
    } else {
      mergeAs4(base);
    }
    const baseKey = attributesKey(base);
    const policy = peer.config.importPolicy;
    // All routes of one UPDATE share attributes: intern once per next hop and route data.
    const cache = new Map<string, Path>();
    if (u.nlri.length > 0 && a.nextHop !== undefined) {
      for (const p of u.nlri) this.importRoute(sd, 0, p, undefined, base, baseKey, a.nextHop, policy, cache);
    }
    const mp = a.mpReach;
    if (mp && mp.family !== 'other') {
      const fi = FAMILY_INDEX[mp.family];
      const nh = mp.nextHops[0];
      if (mp.family === 'l2vpn-evpn') {
        for (const r of mp.nlri) if (r.routeType !== 'unknown') this.importRoute(sd, fi, evpnKey(r), r, base, baseKey, nh, policy, cache);
      } else {
        for (const p of mp.nlri) this.importRoute(sd, fi, p, undefined, base, baseKey, nh, policy, cache);
      }
    }
    this.checkMaxPrefixes(peer, sd);
  }

  /** RFC 4486 §4: a neighbour that sends more routes than configured loses the session (and its routes). */
  private checkMaxPrefixes(peer: Peer, sd: SourceData): void {
    const limit = peer.config.maxPrefixes;
    if (limit === undefined) return;
    let n = 0;
    for (const m of sd.adjIn) n += m.size;
    if (n <= limit) return;
    this.log('warn', 'bgp.max-prefixes', { peer: peer.address, limit, received: n });
    peer.stop(true, CeaseSubcode.MaxPrefixes);
    peer.lastError = { direction: 'sent', code: 6, subcode: CeaseSubcode.MaxPrefixes, reason: `more than ${limit} routes received` };
    const restart = peer.config.maxPrefixesRestart;
    if (restart) setTimeout(() => this.byPeer.get(peer.address)?.peer === peer && peer.start(), restart * 1000).unref();
  }

  /** Why the routes of this UPDATE must be treated as withdrawn, if they must. */
  private rejectReason(sd: SourceData, issues: AttributeIssue[] | undefined, a: PathAttributes): string | undefined {
    const tw = issues?.find((i) => i.action === 'treat-as-withdraw');
    if (tw) return `RFC 7606: ${tw.reason}`;
    for (const s of a.asPath ?? []) if (s.asns.includes(this.localAsn)) return 'AS_PATH loop'; // RFC 4271 §9.1.2
    if (sd.source.ibgp) {
      // RFC 4456 §8: reflected back to us.
      if (a.originatorId === this.routerId) return 'ORIGINATOR_ID is ours';
      if (a.clusterList?.includes(this.clusterId)) return 'CLUSTER_LIST loop';
    }
    return undefined;
  }

  private importRoute(
    sd: SourceData,
    fi: number,
    key: string,
    evpn: EvpnRoute | undefined,
    base: PathAttributes,
    baseKey: string,
    nextHop: string,
    policy: PolicyHook | undefined,
    cache: Map<string, Path>,
  ): void {
    let attrs = base;
    let attrsKey = baseKey;
    if (policy !== undefined) {
      const family = FAMILY_BY_INDEX[fi];
      const route: PolicyRoute = { family, nextHop, attributes: base };
      if (evpn) route.evpn = evpn;
      else route.prefix = key;
      const res = policy(route, { address: sd.source.address, asn: sd.source.asn, ibgp: sd.source.ibgp });
      if (res === 'reject') return this.deleteIn(sd, fi, key);
      if (res !== undefined && res !== 'accept') {
        attrs = applyChanges(base, res.set);
        attrsKey = attributesKey(attrs);
        if (res.set.nextHop) nextHop = res.set.nextHop;
        const path = this.paths.intern(sd.source, attrs, attrsKey, nextHop, evpn ? evpnDataOf(evpn) : undefined);
        return this.setIn(sd, fi, key, path);
      }
    }
    const data = evpn ? evpnDataOf(evpn) : undefined;
    const ck = data === undefined ? nextHop : `${nextHop}|${evpnDataKey(data)}`;
    let path = cache.get(ck);
    if (path !== undefined && path.refs > 0) path.refs++;
    else {
      path = this.paths.intern(sd.source, attrs, attrsKey, nextHop, data);
      cache.set(ck, path);
    }
    this.setIn(sd, fi, key, path);
  }

  private onEndOfRib(sd: SourceData, fi: number): void {
    this.log('info', 'bgp.update.end-of-rib', { peer: sd.source.address, family: FAMILY_BY_INDEX[fi] });
    this.flushStale(sd, fi);
    this.endOfRibs.next({ peer: sd.source.address, family: FAMILY_BY_INDEX[fi] });
  }

  private onRouteRefresh(peer: Peer, rr: RouteRefresh): void {
    const sd = this.byPeer.get(peer.address)!;
    const f = FAMILY_BY_INDEX.find((x) => afiSafiOf(x).afi === rr.afi && afiSafiOf(x).safi === rr.safi);
    if (f === undefined || !peer.negotiated?.families.includes(f)) return;
    const fi = FAMILY_INDEX[f];
    if (rr.subtype === 1) {
      // RFC 7313 §4: BoRR. Everything we hold from the neighbour is stale until its EoRR.
      this.markStale(sd, fi);
      return;
    }
    if (rr.subtype === 2) {
      this.flushStale(sd, fi); // EoRR: what was not re-advertised is gone
      return;
    }
    if (rr.subtype !== 0) return;
    const { afi, safi } = afiSafiOf(f);
    if (peer.negotiated.enhancedRouteRefresh) {
      peer.send(encode({ type: 'route-refresh', afi, safi, subtype: 1 }), false); // BoRR (RFC 7313 §4)
      sd.needEorr[fi] = true;
    }
    for (const [, p] of sd.adjOut[fi]) sd.outPaths.release(p);
    sd.adjOut[fi] = new Map();
    for (const key of this.locRib[fi].keys()) sd.pendingOut[fi].add(key);
    this.scheduleFlush(sd);
  }

  // ------------------------------------------------------------ session events

  private onEstablished(peer: Peer): void {
    const sd = this.byPeer.get(peer.address)!;
    const n = peer.negotiated!;
    sd.source.routerId = ipToNumber(n.remoteRouterId);
    clearTimeout(sd.restartTimer);
    // RFC 4724 §4.2: stale routes of families the neighbour no longer preserves go now.
    let anyStale = false;
    for (let fi = 0; fi < NF; fi++) {
      if (sd.staleIn[fi] === undefined) continue;
      const { afi, safi } = afiSafiOf(FAMILY_BY_INDEX[fi]);
      const kept = n.gracefulRestart?.families.find((f) => f.afi === afi && f.safi === safi);
      if (!kept || !kept.forwardingPreserved) this.flushStale(sd, fi);
      else anyStale = true;
    }
    if (anyStale) {
      clearTimeout(sd.staleTimer);
      sd.staleTimer = setTimeout(() => {
        for (let fi = 0; fi < NF; fi++) this.flushStale(sd, fi);
      }, this.gracefulRestart.stalePathTime * 1000);
      sd.staleTimer.unref();
    }
    // Initial advertisement, then End-of-RIB per family.
    for (const f of n.families) {
      const fi = FAMILY_INDEX[f];
      for (const key of this.locRib[fi].keys()) sd.pendingOut[fi].add(key);
      sd.needEor[fi] = true;
    }
    this.scheduleFlush(sd);
  }

  private onDown(peer: Peer, keepStale: boolean, reason: string): void {
    const sd = this.byPeer.get(peer.address);
    if (!sd) return;
    for (let fi = 0; fi < NF; fi++) {
      for (const [, p] of sd.adjOut[fi]) sd.outPaths.release(p);
      sd.adjOut[fi] = new Map();
      sd.pendingOut[fi].clear();
      sd.needEor[fi] = false;
      sd.needEorr[fi] = false;
    }
    sd.outCache = new WeakMap();
    sd.outPaths = new PathTable();
    clearTimeout(sd.staleTimer);
    if (keepStale) {
      // RFC 4724 §4.2: keep the neighbour's routes, marked stale, for its restart time.
      let count = 0;
      const grFamilies = peer.negotiated?.gracefulRestart?.families ?? [];
      for (let fi = 0; fi < NF; fi++) {
        const { afi, safi } = afiSafiOf(FAMILY_BY_INDEX[fi]);
        // Only the families the neighbour listed in its capability are retained (RFC 4724 §4.2).
        if (grFamilies.some((f) => f.afi === afi && f.safi === safi)) count += this.markStale(sd, fi);
        else {
          this.flushStale(sd, fi);
          this.dropAll(sd, fi);
        }
      }
      const restartTime = peer.negotiated?.gracefulRestart?.restartTime ?? 0;
      this.log('info', 'bgp.gr.helper', { peer: peer.address, staleRoutes: count, restartTime, reason });
      clearTimeout(sd.restartTimer);
      sd.restartTimer = setTimeout(() => {
        for (let fi = 0; fi < NF; fi++) this.flushStale(sd, fi);
      }, restartTime * 1000);
      sd.restartTimer.unref();
    } else {
      for (let fi = 0; fi < NF; fi++) {
        this.flushStale(sd, fi);
        this.dropAll(sd, fi);
      }
    }
  }

  // ------------------------------------------------------------ outbound

  private scheduleFlush(sd: SourceData): void {
    if (sd.flushScheduled || sd.flushing) return;
    sd.flushScheduled = true;
    setImmediate(() => {
      sd.flushScheduled = false;
      this.flush(sd).catch((e: unknown) => {
        // Never let one neighbour's export take the process down; reset that session.
        this.log('warn', 'bgp.export.failed', { peer: sd.source.address, error: String((e as Error)?.stack ?? e) });
        sd.flushing = false;
        sd.peer?.stop(true, CeaseSubcode.OutOfResources);
        sd.peer?.start();
      });
    });
  }

  /** Sends what changed in Adj-RIB-Out, packing routes that share attributes. */
  private async flush(sd: SourceData): Promise<void> {
    if (sd.flushing) return;
    sd.flushing = true;
    try {
      const peer = sd.peer!;
      for (let fi = 0; fi < NF; fi++) {
        if (!peer.isEstablished) return;
        const pending = sd.pendingOut[fi];
        if (pending.size === 0 && !sd.needEor[fi] && !sd.needEorr[fi]) continue;
        sd.pendingOut[fi] = new Set();
        const groups = new Map<Path, string[]>();
        const withdrawn: [string, Path][] = [];
        const adjOut = sd.adjOut[fi];
        for (const key of pending) {
          const best = this.locRib[fi].get(key);
          const out = best === undefined ? undefined : this.exportPath(sd, fi, key, best);
          const cur = adjOut.get(key);
          if (out === undefined) {
            if (cur !== undefined) {
              adjOut.delete(key);
              withdrawn.push([key, cur]);
            }
            continue;
          }
          if (out === cur) {
            sd.outPaths.release(out);
            continue;
          }
          adjOut.set(key, out);
          if (cur !== undefined) sd.outPaths.release(cur);
          let g = groups.get(out);
          if (g === undefined) groups.set(out, (g = []));
          g.push(key);
        }
        await this.sendWithdrawals(sd, fi, withdrawn);
        for (const [, p] of withdrawn) sd.outPaths.release(p);
        for (const [path, keys] of groups) await this.sendAdvertisements(sd, fi, path, keys);
        if (!peer.isEstablished) return;
        const { afi, safi } = afiSafiOf(FAMILY_BY_INDEX[fi]);
        if (sd.needEor[fi]) {
          sd.needEor[fi] = false;
          peer.send(encode(fi === 0 ? { type: 'update', withdrawn: [], attributes: {}, nlri: [] } : { type: 'update', withdrawn: [], nlri: [], attributes: { mpUnreach: fi === 2 ? { family: 'l2vpn-evpn', withdrawn: [] } : { family: 'ipv6-unicast', withdrawn: [] } } }));
        }
        if (sd.needEorr[fi]) {
          sd.needEorr[fi] = false;
          peer.send(encode({ type: 'route-refresh', afi, safi, subtype: 2 }), false);
        }
      }
    } finally {
      sd.flushing = false;
    }
    if (sd.pendingOut.some((s) => s.size > 0) && sd.peer!.isEstablished) this.scheduleFlush(sd);
  }

  private async sendWithdrawals(sd: SourceData, fi: number, list: [string, Path][]): Promise<void> {
    const peer = sd.peer!;
    const ctx = peer.codecContext;
    let i = 0;
    while (i < list.length && peer.isEstablished) {
      if (fi === 0) {
        const chunk: string[] = [];
        let size = 23;
        while (i < list.length && size + prefixSize(list[i][0]) <= MAX_MESSAGE) {
          size += prefixSize(list[i][0]);
          chunk.push(list[i++][0]);
        }
        if (!peer.send(encode({ type: 'update', withdrawn: chunk, attributes: {}, nlri: [] }, ctx))) await peer.drained();
      } else {
        const family = FAMILY_BY_INDEX[fi];
        let size = 23 + 4 + 3;
        if (family === 'l2vpn-evpn') {
          const routes: EvpnRoute[] = [];
          while (i < list.length) {
            const r = evpnFromKey(list[i][0], list[i][1].evpn);
            if (size + evpnSize(r) > MAX_MESSAGE - 1) break;
            size += evpnSize(r);
            routes.push(r);
            i++;
          }
          if (!peer.send(encode({ type: 'update', withdrawn: [], nlri: [], attributes: { mpUnreach: { family, withdrawn: routes } } }, ctx))) await peer.drained();
        } else {
          const prefixes: string[] = [];
          while (i < list.length && size + prefixSize(list[i][0]) <= MAX_MESSAGE - 1) {
            size += prefixSize(list[i][0]);
            prefixes.push(list[i++][0]);
          }
          if (!peer.send(encode({ type: 'update', withdrawn: [], nlri: [], attributes: { mpUnreach: { family: 'ipv6-unicast', withdrawn: prefixes } } }, ctx))) await peer.drained();
        }
      }
    }
  }

  private async sendAdvertisements(sd: SourceData, fi: number, path: Path, keys: string[]): Promise<void> {
    const peer = sd.peer!;
    const ctx = peer.codecContext;
    const family = FAMILY_BY_INDEX[fi];
    let i = 0;
    if (fi === 0) {
      const attributes: PathAttributes = { ...path.attrs, nextHop: path.nextHop };
      const base = updateSize({ type: 'update', withdrawn: [], attributes, nlri: [] }, ctx);
      while (i < keys.length && peer.isEstablished) {
        const nlri: string[] = [];
        let size = base;
        while (i < keys.length && size + prefixSize(keys[i]) <= MAX_MESSAGE) {
          size += prefixSize(keys[i]);
          nlri.push(keys[i++]);
        }
        if (!peer.send(encode({ type: 'update', withdrawn: [], attributes, nlri }, ctx))) await peer.drained();
      }
      return;
    }
    const empty: PathAttributes =
      family === 'l2vpn-evpn'
        ? { ...path.attrs, mpReach: { family, nextHops: [path.nextHop], nlri: [] } }
        : { ...path.attrs, mpReach: { family: 'ipv6-unicast', nextHops: [path.nextHop], nlri: [] } };
    // One byte spare: the MP_REACH_NLRI length may need the extended form.
    const base = updateSize({ type: 'update', withdrawn: [], attributes: empty, nlri: [] }, ctx) + 1;
    while (i < keys.length && peer.isEstablished) {
      let size = base;
      let attributes: PathAttributes;
      if (family === 'l2vpn-evpn') {
        const routes: EvpnRoute[] = [];
        while (i < keys.length) {
          const r = evpnFromKey(keys[i], path.evpn);
          const s = evpnSize(r);
          if (size + s > MAX_MESSAGE && routes.length > 0) break;
          size += s;
          routes.push(r);
          i++;
        }
        attributes = { ...path.attrs, mpReach: { family, nextHops: [path.nextHop], nlri: routes } };
      } else {
        const prefixes: string[] = [];
        while (i < keys.length && (size + prefixSize(keys[i]) <= MAX_MESSAGE || prefixes.length === 0)) {
          size += prefixSize(keys[i]);
          prefixes.push(keys[i++]);
        }
        attributes = { ...path.attrs, mpReach: { family: 'ipv6-unicast', nextHops: [path.nextHop], nlri: prefixes } };
      }
      if (!peer.send(encode({ type: 'update', withdrawn: [], attributes, nlri: [] }, ctx))) await peer.drained();
    }
  }

  /**
   * What we advertise to this neighbour for this best path, or undefined.
   * RFC 4271 §9.1.3 / §5.1, RFC 4456 §8 (reflection), then the export policy.
   */
  private exportPath(sd: SourceData, fi: number, key: string, best: Path): Path | undefined {
    const policy = sd.peer!.config.exportPolicy;
    if (policy === undefined) {
      const cached = sd.outCache.get(best);
      if (cached === null) return undefined;
      // A cached path whose last route went away was dropped from the table: rebuild it.
      if (cached !== undefined && cached.refs > 0) {
        cached.refs++;
        return cached;
      }
    }
    const peer = sd.peer!;
    const src = best.source;
    if (src === sd.source) return this.cacheOut(sd, best, undefined, policy);
    if (peer.ibgp && src.kind === 'peer' && src.ibgp) {
      // Only a route reflector passes iBGP routes to iBGP neighbours:
      // from a client to everyone, from a non-client to clients only.
      if (!src.routeReflectorClient && !peer.config.routeReflectorClient) return this.cacheOut(sd, best, undefined, policy);
    }
    const a: PathAttributes = { ...best.attrs };
    let nextHop = best.nextHop;
    const negotiated = peer.negotiated!;
    if (!peer.ibgp) {
      const path = a.asPath ?? [];
      const first = path[0];
      a.asPath =
        first && first.type === 'sequence' && first.asns.length < 255
          ? [{ type: 'sequence', asns: [this.localAsn, ...first.asns] }, ...path.slice(1)]
          : [{ type: 'sequence', asns: [this.localAsn] }, ...path];
      delete a.localPref;
      delete a.originatorId;
      delete a.clusterList;
      if (src.kind === 'peer') delete a.med; // RFC 4271 §5.1.4
      if (fi === 0 && (src.kind === 'peer' || peer.config.nextHopSelf) && isIpv4(negotiated.localAddress)) nextHop = negotiated.localAddress;
      if (fi === 1 && src.kind === 'peer' && peer.config.localAddressV6) nextHop = peer.config.localAddressV6;
    } else {
      a.localPref ??= 100;
      if (src.kind === 'peer' && src.ibgp) {
        a.originatorId ??= numberToIp(src.routerId);
        a.clusterList = [this.clusterId, ...(a.clusterList ?? [])];
      }
      if (fi === 0 && peer.config.nextHopSelf && isIpv4(negotiated.localAddress)) nextHop = negotiated.localAddress;
    }
    if (!negotiated.as4) addAs4(a);
    if (a.unknown) {
      // RFC 4271 §5: pass unrecognised transitive attributes on with Partial set.
      const kept = a.unknown.filter((u) => (u.flags & AttrFlag.Transitive) !== 0).map((u) => ({ ...u, flags: u.flags | AttrFlag.Partial }));
      if (kept.length > 0) a.unknown = kept;
      else delete a.unknown;
    }
    let out = a;
    if (policy !== undefined) {
      const family = FAMILY_BY_INDEX[fi];
      const route: PolicyRoute = { family, nextHop, attributes: a };
      if (fi === 2) route.evpn = evpnFromKey(key, best.evpn);
      else route.prefix = key;
      const res = policy(route, { address: peer.address, asn: peer.config.asn, ibgp: peer.ibgp });
      if (res === 'reject') return undefined;
      if (res !== undefined && res !== 'accept') {
        out = applyChanges(a, res.set);
        if (res.set.nextHop) nextHop = res.set.nextHop;
      }
    }
    const p = sd.outPaths.intern(sd.source, out, attributesKey(out), nextHop, best.evpn);
    if (policy === undefined) sd.outCache.set(best, p);
    return p;
  }

  private cacheOut(sd: SourceData, best: Path, p: undefined, policy: PolicyHook | undefined): undefined {
    if (policy === undefined) sd.outCache.set(best, null);
    return p;
  }

  private log(level: LogEntry['level'], event: string, fields: Record<string, unknown>): void {
    this.config.logger?.({ level, event, ...fields });
  }
}

function pathCount(segs: AsPathSegment[]): number {
  let n = 0;
  for (const x of segs) n += x.type === 'sequence' ? x.asns.length : x.type === 'set' ? 1 : 0;
  return n;
}

/**
 * RFC 6793 §4.2.3: from a 2-octet neighbour, rebuild the real path from
 * AS_PATH (with AS_TRANS) and AS4_PATH.
 */
function mergeAs4(a: PathAttributes): void {
  const as4 = a.as4Path;
  delete a.as4Path;
  if (a.as4Aggregator && a.aggregator?.asn === AS_TRANS) a.aggregator = a.as4Aggregator;
  else if (a.as4Aggregator && a.aggregator) return void delete a.as4Aggregator; // §4.2.3: ignore AS4_PATH too
  delete a.as4Aggregator;
  if (!as4 || !a.asPath) return;
  const keep = pathCount(a.asPath) - pathCount(as4);
  if (keep < 0) return; // AS4_PATH longer than AS_PATH: ignore it
  const merged: AsPathSegment[] = [];
  let left = keep;
  for (const seg of a.asPath) {
    if (left <= 0) break;
    if (seg.type === 'sequence') {
      const take = seg.asns.slice(0, left);
      merged.push({ type: 'sequence', asns: take });
      left -= take.length;
    } else {
      merged.push(seg);
      if (seg.type === 'set') left -= 1;
    }
  }
  // Join adjacent AS_SEQUENCE segments so the result reads like the original path.
  const out: AsPathSegment[] = [];
  for (const seg of [...merged, ...as4]) {
    const last = out[out.length - 1];
    if (last && last.type === 'sequence' && seg.type === 'sequence' && last.asns.length + seg.asns.length <= 255) {
      out[out.length - 1] = { type: 'sequence', asns: [...last.asns, ...seg.asns] };
    } else out.push(seg);
  }
  a.asPath = out;
}

/** RFC 6793 §4.2.2: towards a 2-octet neighbour, carry 4-octet ASNs in AS4_PATH/AS4_AGGREGATOR. */
function addAs4(a: PathAttributes): void {
  const big = (n: number) => n > 0xffff;
  if (a.asPath?.some((x) => x.asns.some(big))) a.as4Path = a.asPath.filter((x) => x.type === 'sequence' || x.type === 'set');
  else delete a.as4Path;
  if (a.aggregator && big(a.aggregator.asn)) a.as4Aggregator = a.aggregator;
  else delete a.as4Aggregator;
}

function numberToIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Canonical text of every field, so keys built from API input match keys from the wire. */
export function normalizeEvpn(r: EvpnRoute): EvpnRoute {
  const ip = (s: string) => (s.includes(':') ? canonicalIpv6(s) : s);
  switch (r.routeType) {
    case 1:
      return { ...r, rd: canonicalRd(r.rd), esi: r.esi.toLowerCase() };
    case 2: {
      const out = { ...r, rd: canonicalRd(r.rd), esi: r.esi.toLowerCase(), mac: canonicalMac(r.mac) };
      if (r.ip !== undefined) out.ip = ip(r.ip);
      return out;
    }
    case 3:
      return { ...r, rd: canonicalRd(r.rd), originatorIp: ip(r.originatorIp) };
    case 4:
      return { ...r, rd: canonicalRd(r.rd), esi: r.esi.toLowerCase(), originatorIp: ip(r.originatorIp) };
    case 5: {
      const [a, l] = r.prefix.split('/');
      return { ...r, rd: canonicalRd(r.rd), esi: r.esi.toLowerCase(), prefix: `${ip(a)}/${Number(l)}`, gateway: ip(r.gateway) };
    }
    default:
      return r;
  }
}
