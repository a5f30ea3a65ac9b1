/**
 * Federation: the controller's MP-BGP speaker (libs/bgp), configured by the
 * directory's bgp-speakers / bgp-neighbors resources and kept current from
 * the change log without a restart.
 *
 * - Export: the local model's EVPN routes (libs/federation EvpnExporter:
 *   type 2 per endpoint, type 3 per host and subnet, type 5 per subnet) are
 *   added to and withdrawn from the speaker as the model changes.
 * - Import: every best path learned from a neighbour is classified
 *   (EvpnImporter: route targets -> domain, VNI -> subnet, communities ->
 *   policy groups) and kept in `remote`; the table remote_endpoints mirrors
 *   the endpoints for the API. `onRemote` tells the host that embeds this
 *   service what changed, so that the compiler can give hosts the entries.
 * - Restart: the rows of the speaker are marked stale when this service
 *   stops gracefully and when it starts; a row learned again is unmarked,
 *   and the rows still stale are deleted once the route selection is
 *   complete (sweepStale). So the API keeps showing the other datacenters'
 *   endpoints across a restart, as a graceful-restart neighbour keeps routes.
 * - Neighbour state and route counts are written to bgp_neighbors every
 *   second (not in the change log: they are operational state).
 *
 * The speaker to run is chosen by name (SDN_BGP_SPEAKER); with no such
 * speaker in the directory, or with it disabled, nothing listens.
 */
import type { Pool } from 'pg';
import type { Subscription } from 'rxjs';
import { Gauge, Registry } from 'prom-client';
import { BgpSpeaker as Speaker, BestPathChange, Family, LogEntry, NeighborConfig, RibRoute } from '#sdn/bgp';
import { EvpnAdvert, EvpnExporter, EvpnImporter, Imported, ReceivedRoute } from '#sdn/federation';
import type { BgpNeighbor, BgpSpeaker, Change, ModelSnapshot } from '#sdn/model';
import { SNAPSHOT_COLLECTION } from '#sdn/model';
import { createModelStore, DEFAULT_DB_TIMEOUT_SECONDS, guardedPool, ModelStore } from '#sdn/store';
import type { Controller } from './controller';
import type { Logger } from './log';
import { RemoteBridge } from './remote-bridge';

/** The speaker this controller runs, from SDN_BGP_SPEAKER (read once at start); null: no federation. */
export function federationSpeakerName(env: NodeJS.ProcessEnv = process.env): string | null {
  const v = env.SDN_BGP_SPEAKER?.trim();
  return v ? v : null;
}

/**
 * Runs federation inside a controller: imported routes reach the compiler
 * through a RemoteBridge (remote-bridge.ts), and so the hosts.
 */
export function federate(controller: Controller, opts: Omit<FederationOptions, 'onRemote' | 'onConverged'>): Federation {
  const bridge = new RemoteBridge(
    (id) => controller.engine.subnets.get(id),
    (domainId) => [...controller.engine.subnets.values()].filter((s) => s.domainId === domainId),
  );
  controller.attachBridge(bridge);
  const f = new Federation({
    ...opts,
    onConverged: (why) => controller.releaseResync(`federation: ${why}`),
    onRemote: (changed, removed) => {
      const u = bridge.update(changed, removed);
      controller.injectExternal(u.changes);
      for (const d of u.prefixDomains) controller.setExternalRoutes(d, bridge.routesOf(d));
    },
  });
  // the controller's hold can run out before every neighbour is back: the hosts then get the state without the rest
  // of the stale routes, and so does the API
  controller.onResyncReleased(() => f.sweepStale());
  f.registerMetrics(controller.metrics.registry);
  controller.federationView = {
    neighbors: () => f.speaker?.neighbors() ?? [],
    rib: (family) => f.speaker?.routes(family as Family) ?? [],
  };
  return f;
}

export interface FederationOptions {
  databaseUrl: string;
  /** a connection to Postgres silent this long while a statement runs is taken as lost (default 30 s) */
  dbTimeoutMs?: number;
  /** name of the bgp-speakers resource this controller runs */
  speakerName: string;
  log: Logger;
  /** seconds between connection attempts to a neighbour (default 10; tests use 1) */
  connectRetryTime?: number;
  /** ms a route waits before it goes to the speaker, to share UPDATEs with its neighbours in time (default 20) */
  exportDelayMs?: number;
  /** ms between writes of neighbour status (default 1000) */
  statusIntervalMs?: number;
  /** told about every change of the imported state */
  onRemote?: (changed: Imported[], removed: Imported[]) => void;
  /**
   * told once, after start, when the imported state is complete: every neighbour of the speaker has sent its
   * End-of-RIB for l2vpn-evpn (at once without a speaker or neighbours)
   */
  onConverged?: (why: string) => void;
  store?: ModelStore;
}

export interface FederationStats {
  advertised: number;
  withdrawn: number;
  imported: number;
  ignored: number;
}

/** how long the RIB must stay unchanged, every neighbour established, to count as complete without End-of-RIB */
const QUIET_MS = 1000;

type Running = { conf: BgpSpeaker; speaker: Speaker; exporter: EvpnExporter; importer: EvpnImporter; sub: Subscription };

const sameSpeaker = (a: BgpSpeaker, b: BgpSpeaker) =>
  a.asn === b.asn && a.routerId === b.routerId && a.listenAddress === b.listenAddress && a.listenPort === b.listenPort && a.rdAdmin === b.rdAdmin;
const neighborKey = (n: BgpNeighbor) => JSON.stringify([n.address, n.port, n.asn, n.families, n.passive, n.routeReflectorClient, n.holdTime, n.maxPrefixes]);

/** kinds in the order a resync creates them (parents, and what endpoints name, first); deletions go the other way */
const RESYNC_ORDER: Array<Change['kind']> = [
  'enterprise', 'domain', 'zone', 'subnet', 'host', 'policyGroup', 'networkMacro', 'networkMacroGroup', 'endpoint', 'aclRule', 'bgpSpeaker', 'bgpNeighbor',
];

export class Federation {
  private readonly store: ModelStore;
  private readonly pool: Pool;
  /** the model by kind and id (the exporter is rebuilt from it when the speaker restarts) */
  private readonly objects = new Map<Change['kind'], Map<string, unknown>>();
  private revision = 0;
  private readonly localVteps = new Map<string, string>(); // host id -> VTEP
  /** local VTEP -> how many hosts use it (a route towards one is our own) */
  private readonly vtepRefs = new Map<string, number>();
  /** imported endpoint routes by `${domainId}|${mac}`: MAC mobility looks up the sequences of one MAC */
  private readonly remoteByMac = new Map<string, Set<string>>();
  private readonly speakers = new Map<string, BgpSpeaker>();
  private readonly neighbors = new Map<string, BgpNeighbor>();
  private running: Running | null = null;
  private readonly configured = new Map<string, { id: string; key: string }>(); // address -> neighbour
  /** best paths from neighbours, by RIB key, and what each means here */
  private readonly received = new Map<string, ReceivedRoute>();
  /** what each best path means here, by RIB key (change it through setRemote) */
  readonly remote = new Map<string, Imported>();
  /** routes refused because a local endpoint holds their address, by `${domainId}|${ip}` */
  private readonly conflicts = new Map<string, Set<string>>();
  private follow: Subscription | null = null;
  private statusTimer: NodeJS.Timeout | null = null;
  private pendingDb = new Map<string, Imported | null>();
  private dbTimer: NodeJS.Timeout | null = null;
  /** wait before writing a refused batch of remote endpoints again; doubles per failure up to 30 s */
  private dbRetryMs = 500;
  private dbChain: Promise<void> = Promise.resolve();
  private lastModelVersion = -1;
  private exportTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** neighbours whose first End-of-RIB for l2vpn-evpn is awaited; null once onConverged was called */
  private awaitingEor: Set<string> | null = new Set();
  private quietTimer: NodeJS.Timeout | null = null;
  /** a graceful stop: the imported rows stay in the table (marked stale) instead of being deleted */
  private keepRows = false;
  /** sweepStale ran since the start (rows are marked stale only at a start or a stop) */
  private swept = false;
  readonly stats: FederationStats = { advertised: 0, withdrawn: 0, imported: 0, ignored: 0 };

  constructor(private readonly opts: FederationOptions) {
    const timeoutMs = opts.dbTimeoutMs ?? DEFAULT_DB_TIMEOUT_SECONDS * 1000;
    this.store = opts.store ?? createModelStore(opts.databaseUrl, { timeoutMs });
    this.pool = guardedPool({ connectionString: opts.databaseUrl, max: 2, application_name: 'sdn-controller-federation' }, timeoutMs);
    this.pool.on('error', () => undefined);
  }

  get speaker(): Speaker | null {
    return this.running?.speaker ?? null;
  }

  get speakerId(): string | null {
    return this.running?.conf.id ?? null;
  }

  async start(): Promise<void> {
    const snap = await this.store.loadSnapshot();
    this.revision = snap.revision;
    for (const [kind, coll] of Object.entries(SNAPSHOT_COLLECTION) as Array<[Change['kind'], keyof Omit<ModelSnapshot, 'revision'>]>) {
      this.objects.set(kind, new Map((snap[coll] as Array<{ id: string }>).map((x) => [x.id, x])));
    }
    for (const h of snap.hosts) this.setLocalVtep(h.id, h.vtepIp);
    for (const s of snap.bgpSpeakers) this.speakers.set(s.id, s);
    for (const n of snap.bgpNeighbors) this.neighbors.set(n.id, n);
    // what an earlier run of this speaker learned is stale until learned again (queued before any route is written)
    this.markStale();
    await this.reconfigure();
    this.checkConverged();
    this.subscribe(snap.revision);
    this.statusTimer = setInterval(() => void this.writeStatus(), this.opts.statusIntervalMs ?? 1000);
  }

  /**
   * Stops the speaker. `graceful` (a restart): the sessions close without a
   * Cease, and the imported rows stay in the table, marked stale, for the
   * next start to confirm or sweep; otherwise they are deleted.
   */
  async stop(options: { graceful?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.keepRows = options.graceful === true;
    if (this.quietTimer) clearTimeout(this.quietTimer);
    this.follow?.unsubscribe();
    if (this.statusTimer) clearInterval(this.statusTimer);
    if (this.exportTimer) clearTimeout(this.exportTimer);
    await this.stopSpeaker(options);
    await this.flushDb();
    if (this.keepRows) this.markStale();
    await this.dbChain;
    await this.pool.end();
    if (!this.opts.store) await this.store.close();
  }

  /** Neighbour state, route counts and bytes, remote endpoints and exported routes, on the controller's /metrics. */
  registerMetrics(registry: Registry): void {
    const neighbors = () => this.running?.speaker.neighbors() ?? [];
    new Gauge({
      name: 'sdn_bgp_neighbor_up',
      help: 'BGP session established (1) or not (0), by neighbour',
      labelNames: ['neighbor', 'state'],
      registers: [registry],
      collect() {
        this.reset();
        for (const n of neighbors()) this.set({ neighbor: n.address, state: n.state }, n.state === 'established' ? 1 : 0);
      },
    });
    const counter = (name: string, help: string, pick: (c: ReturnType<Speaker['neighbors']>[number]['counters']) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['neighbor'],
        registers: [registry],
        collect() {
          this.reset();
          for (const n of neighbors()) this.set({ neighbor: n.address }, pick(n.counters));
        },
      });
    counter('sdn_bgp_neighbor_routes_received', 'Routes in the Adj-RIB-In of the neighbour', (c) => c.routesReceived);
    counter('sdn_bgp_neighbor_routes_advertised', 'Routes in the Adj-RIB-Out of the neighbour', (c) => c.routesAdvertised);
    counter('sdn_bgp_neighbor_bytes_received', 'BGP bytes received from the neighbour', (c) => c.bytesReceived);
    counter('sdn_bgp_neighbor_bytes_sent', 'BGP bytes sent to the neighbour', (c) => c.bytesSent);
    const self = this;
    new Gauge({
      name: 'sdn_federation_remote_endpoints',
      help: 'Endpoints of other datacenters imported',
      registers: [registry],
      collect() {
        let n = 0;
        for (const i of self.remote.values()) if (i.kind === 'endpoint') n++;
        this.set(n);
      },
    });
    new Gauge({
      name: 'sdn_federation_routes_exported',
      help: 'EVPN routes this datacenter advertises',
      registers: [registry],
      collect() {
        this.set(self.running?.exporter.routeCount ?? 0);
      },
    });
  }

  // ------------------------------------------------------------------ model

  private subscribe(from: number): void {
    this.follow = this.store.follow(from).subscribe({
      next: (c) => void this.onChange(c),
      error: (e: Error) => {
        this.opts.log.error('federation: change log follow failed; rebuilding from the database', { error: e.message });
        this.follow = null;
        void this.resync();
      },
    });
  }

  /**
   * After the change log stopped continuing what was read (a gap, or the
   * database went back in time): the model is read again as a snapshot, its
   * differences from what is held applied as changes (deletions children
   * first, then creations and updates parents first), and followed from there.
   * Sessions stay up; routes change as the model did.
   */
  private async resync(): Promise<void> {
    if (this.stopped) return;
    try {
      const snap = await this.store.loadSnapshot();
      const at = new Date().toISOString();
      const change = (kind: Change['kind'], op: Change['op'], id: string, state: { id: string; enterpriseId?: string | null } | null) =>
        ({ revision: snap.revision, kind, op, id, enterpriseId: state?.enterpriseId ?? null, state, committedAt: at }) as Change;
      for (const kind of [...RESYNC_ORDER].reverse()) {
        const now = new Set((snap[SNAPSHOT_COLLECTION[kind]] as Array<{ id: string }>).map((x) => x.id));
        for (const id of [...this.objects.get(kind)!.keys()]) if (!now.has(id)) await this.onChange(change(kind, 'delete', id, null));
      }
      for (const kind of RESYNC_ORDER) {
        const had = this.objects.get(kind)!;
        for (const x of snap[SNAPSHOT_COLLECTION[kind]] as Array<{ id: string }>) {
          const old = had.get(x.id);
          if (old === undefined || JSON.stringify(old) !== JSON.stringify(x)) await this.onChange(change(kind, old === undefined ? 'create' : 'update', x.id, x));
        }
      }
      this.revision = snap.revision;
      if (!this.stopped) this.subscribe(snap.revision);
    } catch (e) {
      this.opts.log.error('federation: rebuilding from the database failed; retrying', { error: (e as Error).message });
      if (!this.stopped) setTimeout(() => void this.resync(), 1000).unref();
    }
  }

  private async onChange(c: Change): Promise<void> {
    this.revision = c.revision;
    const objects = this.objects.get(c.kind)!;
    if (c.state) objects.set(c.id, c.state);
    else objects.delete(c.id);
    if (c.kind === 'host') {
      this.setLocalVtep(c.id, c.state ? c.state.vtepIp : null);
    }
    if (c.kind === 'bgpSpeaker') {
      if (c.state) this.speakers.set(c.id, c.state);
      else this.speakers.delete(c.id);
      await this.reconfigure();
      return;
    }
    if (c.kind === 'bgpNeighbor') {
      if (c.state) this.neighbors.set(c.id, c.state);
      else this.neighbors.delete(c.id);
      this.syncNeighbors();
      return;
    }
    const r = this.running;
    if (!r) return;
    const before = c.kind === 'endpoint' ? r.exporter.model.endpoints.get(c.id) : undefined;
    r.exporter.apply(c);
    this.scheduleExports();
    // a local endpoint gave up an address a refused route claims: look at the route again
    if (before && (!c.state || (c.state as { ip: string }).ip !== before.ip)) {
      const keys = this.conflicts.get(`${before.domainId}|${before.ip}`);
      if (keys) {
        this.conflicts.delete(`${before.domainId}|${before.ip}`);
        for (const k of keys) {
          const rr = this.received.get(k);
          if (rr) this.classify(k, rr);
        }
      }
    }
    if (r.exporter.model.version !== this.lastModelVersion) this.reclassifyAll();
  }

  /** Starts, restarts or stops the speaker to match its resource. */
  private async reconfigure(): Promise<void> {
    const conf = [...this.speakers.values()].find((s) => s.name === this.opts.speakerName && s.enabled) ?? null;
    const r = this.running;
    if (r && conf && sameSpeaker(r.conf, conf)) {
      r.conf = conf;
      return;
    }
    if (r) await this.stopSpeaker({});
    if (!conf || this.stopped) {
      if (!conf) this.opts.log.info('federation: no enabled BGP speaker named ' + this.opts.speakerName);
      return;
    }
    const speaker = new Speaker({
      asn: conf.asn,
      routerId: conf.routerId,
      listen: { address: conf.listenAddress, port: conf.listenPort },
      gracefulRestart: { enabled: true, restartTime: 120 },
      logger: (e: LogEntry) => this.opts.log.debug('bgp', e as unknown as Record<string, unknown>),
    });
    await speaker.start();
    const exporter = new EvpnExporter(
      { asn: conf.asn, routerId: conf.routerId, rdAdmin: conf.rdAdmin ?? undefined },
      (domainId, mac) => this.remoteSequence(domainId, mac),
    );
    exporter.load(this.snapshot());
    const importer = new EvpnImporter(exporter.model, conf.asn, (ip) => this.isLocalVtep(ip));
    const sub = speaker.bestPathChanges$.subscribe((ch) => {
      this.onBestPath(ch);
      // our own routes (a busy datacenter exports all the time) say nothing about what the neighbours have sent
      if (this.awaitingEor && ch.route?.source !== 'local') this.waitForQuiet(speaker);
    });
    sub.add(
      speaker.endOfRib$.subscribe((e) => {
        if (e.family !== 'l2vpn-evpn' || !this.awaitingEor?.delete(e.peer)) return;
        this.checkConverged();
      }),
    );
    sub.add(speaker.peerStateChanges$.subscribe(() => this.awaitingEor && this.waitForQuiet(speaker)));
    speaker.peerStateChanges$.subscribe((p) => this.opts.log.info('bgp neighbour state', { address: p.address, from: p.previous, to: p.state, reason: p.reason }));
    this.running = { conf, speaker, exporter, importer, sub };
    this.lastModelVersion = exporter.model.version;
    this.opts.log.info('federation: speaker started', { name: conf.name, asn: conf.asn, routerId: conf.routerId, port: speaker.listenPort });
    this.syncNeighbors();
    if (this.awaitingEor) {
      for (const n of this.neighbors.values()) if (n.speakerId === conf.id && n.families.includes('l2vpn-evpn')) this.awaitingEor.add(n.address);
    }
    this.pushExports();
  }

  /** Calls converged once no End-of-RIB is awaited any more. */
  private checkConverged(): void {
    if (this.awaitingEor?.size === 0) this.converged('every neighbour sent End-of-RIB');
  }

  /** The imported state is complete: onConverged, once (see FederationOptions). */
  private converged(why: string): void {
    if (!this.awaitingEor) return;
    this.awaitingEor = null;
    if (this.quietTimer) clearTimeout(this.quietTimer);
    this.quietTimer = null;
    this.opts.log.info('federation: the imported routes are complete', { why });
    this.sweepStale();
    this.opts.onConverged?.(why);
  }

  /**
   * Not every neighbour sends End-of-RIB (gobgpd without graceful restart on
   * its side sends none: seen in test/federation/bridge.test.ts). So the routes also count as
   * complete once every awaited neighbour is established and no best path has
   * changed for QUIET_MS: re-armed by every change while waiting.
   */
  private waitForQuiet(speaker: Speaker): void {
    if (this.quietTimer) clearTimeout(this.quietTimer);
    this.quietTimer = null;
    const awaited = this.awaitingEor;
    if (!awaited || awaited.size === 0) return;
    const up = new Set(speaker.neighbors().filter((n) => n.state === 'established').map((n) => n.address));
    if (![...awaited].every((a) => up.has(a))) return;
    this.quietTimer = setTimeout(() => this.converged(`every neighbour established, no route change for ${QUIET_MS} ms`), QUIET_MS);
    this.quietTimer.unref();
  }

  private async stopSpeaker(options: { graceful?: boolean }): Promise<void> {
    const r = this.running;
    if (!r) return;
    this.running = null;
    r.sub.unsubscribe();
    this.configured.clear();
    await r.speaker.stop(options);
    for (const key of [...this.received.keys()]) this.forget(key);
  }

  /** Adds, replaces and removes neighbours to match the resources of the running speaker. */
  private syncNeighbors(): void {
    const r = this.running;
    if (!r) return;
    const wanted = new Map<string, BgpNeighbor>();
    for (const n of this.neighbors.values()) if (n.speakerId === r.conf.id) wanted.set(n.address, n);
    for (const [address, c] of this.configured) {
      const n = wanted.get(address);
      if (!n || neighborKey(n) !== c.key) {
        r.speaker.removeNeighbor(address);
        this.configured.delete(address);
      }
    }
    for (const [address, n] of wanted) {
      if (this.configured.has(address)) continue;
      const local = r.conf.listenAddress;
      const config: NeighborConfig = {
        address,
        port: n.port,
        asn: n.asn,
        passive: n.passive,
        holdTime: n.holdTime,
        families: n.families,
        routeReflectorClient: n.routeReflectorClient,
        connectRetryTime: this.opts.connectRetryTime ?? 10,
        ...(n.maxPrefixes !== null && n.maxPrefixes !== undefined ? { maxPrefixes: n.maxPrefixes } : {}),
        ...(local !== '0.0.0.0' && local !== '::' && local.includes(':') === address.includes(':') ? { localAddress: local } : {}),
      };
      r.speaker.addNeighbor(config);
      this.configured.set(address, { id: n.id, key: neighborKey(n) });
    }
  }

  private snapshot(): ModelSnapshot {
    const snap = { revision: this.revision } as ModelSnapshot;
    for (const [kind, coll] of Object.entries(SNAPSHOT_COLLECTION) as Array<[Change['kind'], keyof Omit<ModelSnapshot, 'revision'>]>) {
      (snap as unknown as Record<string, unknown[]>)[coll] = [...this.objects.get(kind)!.values()];
    }
    return snap;
  }

  private setLocalVtep(hostId: string, vtep: string | null): void {
    const old = this.localVteps.get(hostId);
    if (old !== undefined) {
      const n = (this.vtepRefs.get(old) ?? 1) - 1;
      if (n > 0) this.vtepRefs.set(old, n);
      else this.vtepRefs.delete(old);
      this.localVteps.delete(hostId);
    }
    if (vtep !== null) {
      this.localVteps.set(hostId, vtep);
      this.vtepRefs.set(vtep, (this.vtepRefs.get(vtep) ?? 0) + 1);
    }
  }

  private isLocalVtep(ip: string): boolean {
    return this.vtepRefs.has(ip);
  }

  // ------------------------------------------------------------------ export

  /**
   * Routes go to the speaker a few milliseconds after the change that made
   * them: the speaker packs the routes it has at hand into shared UPDATEs, so
   * a burst of endpoint creations leaves as a few large messages (a route
   * reflector's work is per UPDATE as much as per route).
   */
  private scheduleExports(): void {
    if (this.exportTimer) return;
    this.exportTimer = setTimeout(() => {
      this.exportTimer = null;
      this.pushExports();
    }, this.opts.exportDelayMs ?? 20);
  }

  private pushExports(): void {
    const r = this.running;
    if (!r) return;
    const u = r.exporter.takeUpdates();
    for (const a of u.withdraw) {
      r.speaker.withdrawRoute({ family: 'l2vpn-evpn', route: a.route });
      this.stats.withdrawn++;
    }
    for (const a of u.advertise) {
      r.speaker.addRoute({ family: 'l2vpn-evpn', route: a.route, nextHop: a.nextHop, attributes: attributesOf(a) });
      this.stats.advertised++;
    }
  }

  /** The highest MAC mobility sequence learned from elsewhere for a MAC of a domain. */
  private remoteSequence(domainId: string, mac: string): number | undefined {
    let best: number | undefined;
    for (const key of this.remoteByMac.get(`${domainId}|${mac}`) ?? []) {
      const i = this.remote.get(key);
      if (i?.kind === 'endpoint') best = Math.max(best ?? 0, i.endpoint.mobilitySequence);
    }
    return best;
  }

  /** Every change of `remote` goes through here, so that remoteByMac stays its index. */
  private setRemote(key: string, next: Imported | null): void {
    const before = this.remote.get(key);
    if (before?.kind === 'endpoint') {
      const k = `${before.endpoint.domainId}|${before.endpoint.mac}`;
      const set = this.remoteByMac.get(k);
      set?.delete(key);
      if (set?.size === 0) this.remoteByMac.delete(k);
    }
    if (next === null) {
      this.remote.delete(key);
      return;
    }
    this.remote.set(key, next);
    if (next.kind === 'endpoint') {
      const k = `${next.endpoint.domainId}|${next.endpoint.mac}`;
      let set = this.remoteByMac.get(k);
      if (!set) this.remoteByMac.set(k, (set = new Set()));
      set.add(key);
    }
  }

  // ------------------------------------------------------------------ import

  private onBestPath(ch: BestPathChange): void {
    if (ch.family !== 'l2vpn-evpn') return;
    const route = ch.route;
    if (!route || route.source === 'local' || !route.evpn) {
      this.forget(ch.key);
      return;
    }
    const received = receivedOf(route);
    this.received.set(ch.key, received);
    this.classify(ch.key, received);
  }

  private classify(key: string, received: ReceivedRoute): void {
    const r = this.running;
    if (!r) return;
    const got = r.importer.classify(received);
    const before = this.remote.get(key);
    if (got.kind === 'ignored') {
      this.stats.ignored++;
      if (got.conflict) {
        let keys = this.conflicts.get(got.conflict);
        if (!keys) this.conflicts.set(got.conflict, (keys = new Set()));
        keys.add(key);
        this.opts.log.warn('federation: route refused, it claims a local address', { key, reason: got.reason, peer: received.peer });
      }
      this.opts.log.debug('federation: route not imported', { key, reason: got.reason, peer: received.peer });
      if (before) {
        this.setRemote(key, null);
        this.toDb(key, null, before);
        this.opts.onRemote?.([], [before]);
      }
      return;
    }
    this.stats.imported++;
    this.setRemote(key, got);
    this.toDb(key, got, before);
    this.opts.onRemote?.([got], []);
  }

  private forget(key: string): void {
    this.received.delete(key);
    const before = this.remote.get(key);
    if (!before) return;
    this.setRemote(key, null);
    if (!this.keepRows) this.toDb(key, null, before);
    // stopping (the controller shutting down or restarting): the hosts keep what they forward to until the next
    // controller has learned the routes again (Controller.deferResync), as a restarting BGP speaker keeps its FIB
    if (!this.stopped) this.opts.onRemote?.([], [before]);
  }

  /** Local domains, subnets or groups changed: what received routes mean may have changed too. */
  private reclassifyAll(): void {
    const r = this.running;
    if (!r) return;
    this.lastModelVersion = r.exporter.model.version;
    for (const [key, received] of this.received) this.classify(key, received);
  }

  // ------------------------------------------------------------------ database

  private toDb(key: string, now: Imported | null, before: Imported | undefined): void {
    if (now?.kind !== 'endpoint' && before?.kind !== 'endpoint') return;
    // the row is keyed by domain too: a route that now lands in another domain leaves the old row behind otherwise
    if (before?.kind === 'endpoint' && (now?.kind !== 'endpoint' || now.endpoint.domainId !== before.endpoint.domainId)) {
      this.pendingDb.set(`${before.endpoint.domainId}|${key}`, null);
    }
    if (now?.kind === 'endpoint') this.pendingDb.set(`${now.endpoint.domainId}|${key}`, now);
    if (!this.dbTimer) this.dbTimer = setTimeout(() => void this.flushDb(), 50);
  }

  private flushDb(): Promise<void> {
    if (this.dbTimer) clearTimeout(this.dbTimer);
    this.dbTimer = null;
    const batch = this.pendingDb;
    this.pendingDb = new Map();
    const speakerId = this.running?.conf.id ?? [...this.speakers.values()].find((s) => s.name === this.opts.speakerName)?.id;
    if (batch.size === 0 || !speakerId) return this.dbChain;
    this.dbChain = this.dbChain.then(async () => {
      const deletes: Array<[string, string]> = [];
      const rows: unknown[] = [];
      for (const [k, v] of batch) {
        const [domainId, key] = [k.slice(0, 36), k.slice(37)];
        if (v === null || v.kind !== 'endpoint') {
          deletes.push([domainId, key]);
          continue;
        }
        const e = v.endpoint;
        rows.push({
          k: key, ent: e.enterpriseId, dom: e.domainId, sub: e.subnetId, mac: e.mac, ip: e.ip, vtep: e.vtepIp, l2: e.l2Vni, l3: e.l3Vni,
          groups: e.policyGroupIds, seq: e.mobilitySequence, rd: e.rd, peer: e.peer, dc: this.datacenterOf(e.peer),
        });
      }
      try {
        if (deletes.length) {
          await this.pool.query(
            'DELETE FROM remote_endpoints r USING unnest($2::uuid[], $3::text[]) AS d(dom, k) WHERE r.speaker_id = $1 AND r.domain_id = d.dom AND r.route_key = d.k',
            [speakerId, deletes.map((d) => d[0]), deletes.map((d) => d[1])],
          );
        }
        if (rows.length) {
          await this.pool.query(
            `INSERT INTO remote_endpoints (speaker_id, route_key, enterprise_id, domain_id, subnet_id, mac, ip, vtep_ip, l2_vni, l3_vni,
               policy_group_ids, mobility_sequence, route_distinguisher, peer, datacenter, learned_at)
             SELECT $1, t.k, t.ent, t.dom, t.sub, t.mac, t.ip::inet, t.vtep::inet, t.l2, t.l3, t.groups, t.seq, t.rd, t.peer::inet, t.dc, now()
               FROM json_to_recordset($2::json) AS t(k text, ent uuid, dom uuid, sub uuid, mac text, ip text, vtep text, l2 int, l3 int,
                    groups uuid[], seq bigint, rd text, peer text, dc text)
             ON CONFLICT (speaker_id, domain_id, route_key) DO UPDATE SET subnet_id = EXCLUDED.subnet_id, mac = EXCLUDED.mac, ip = EXCLUDED.ip,
               vtep_ip = EXCLUDED.vtep_ip, l2_vni = EXCLUDED.l2_vni, l3_vni = EXCLUDED.l3_vni, policy_group_ids = EXCLUDED.policy_group_ids,
               mobility_sequence = EXCLUDED.mobility_sequence, route_distinguisher = EXCLUDED.route_distinguisher, peer = EXCLUDED.peer,
               datacenter = EXCLUDED.datacenter, learned_at = EXCLUDED.learned_at, stale = false`,
            [speakerId, JSON.stringify(rows)],
          );
        }
      } catch (e) {
        // the in-memory state is the truth and the table its mirror: the batch goes back in the queue (a value queued
        // since for the same key is newer and wins) and is written again, sooner when a new change comes
        for (const [k, v] of batch) if (!this.pendingDb.has(k)) this.pendingDb.set(k, v);
        const wait = this.dbRetryMs;
        this.dbRetryMs = Math.min(wait * 2, 30_000);
        this.opts.log.warn('federation: could not write remote endpoints; will retry', { error: (e as Error).message, rows: batch.size, retryInMs: wait });
        if (!this.dbTimer && !this.stopped) this.dbTimer = setTimeout(() => void this.flushDb(), wait);
        return;
      }
      this.dbRetryMs = 500;
    });
    return this.dbChain;
  }

  /** Marks the rows of this service's speaker stale (at a start, and at a graceful stop). */
  private markStale(): void {
    this.swept = false;
    this.staleStatement('mark', 'UPDATE remote_endpoints SET stale = true WHERE speaker_id IN (SELECT id FROM bgp_speakers WHERE name = $1) AND NOT stale');
  }

  /**
   * The route selection after a start is complete (every neighbour's
   * End-of-RIB, or quiet, or the controller's hold ran out): the rows not
   * learned again are gone at their peers. Once per start; the routes queued
   * for the table are written first.
   */
  sweepStale(): void {
    if (this.swept || this.stopped) return;
    this.swept = true;
    void this.flushDb();
    this.staleStatement('sweep', 'DELETE FROM remote_endpoints WHERE speaker_id IN (SELECT id FROM bgp_speakers WHERE name = $1) AND stale');
  }

  /** Runs a mark or sweep in the order of the table's writes, again until it succeeds (while running; a stop's mark once). */
  private staleStatement(what: 'mark' | 'sweep', sql: string): void {
    this.dbChain = this.dbChain.then(async () => {
      for (let wait = 500; ; wait = Math.min(wait * 2, 30_000)) {
        try {
          const r = await this.pool.query(sql, [this.opts.speakerName]);
          if (r.rowCount) this.opts.log.info(`federation: ${what === 'mark' ? 'marked' : 'swept'} stale remote endpoints`, { rows: r.rowCount });
          return;
        } catch (e) {
          this.opts.log.warn(`federation: could not ${what} stale remote endpoints; will retry`, { error: (e as Error).message, retryInMs: wait });
          // a stop does not wait out the back-off
          for (let slept = 0; slept < wait && !this.stopped; slept += 250) await new Promise((resolve) => setTimeout(resolve, 250).unref());
          if (this.stopped) return;
        }
      }
    });
  }

  private datacenterOf(peer: string): string | null {
    for (const n of this.neighbors.values()) if (n.address === peer && n.speakerId === this.running?.conf.id) return n.datacenter;
    return null;
  }

  private async writeStatus(): Promise<void> {
    const r = this.running;
    if (!r) return;
    const rows = r.speaker.neighbors().map((n) => ({
      a: n.address,
      s: n.state,
      rx: n.counters.routesReceived,
      tx: n.counters.routesAdvertised,
      e: n.lastError ? `${n.lastError.direction} ${n.lastError.code}/${n.lastError.subcode}: ${n.lastError.reason}` : null,
    }));
    if (rows.length === 0) return;
    try {
      await this.pool.query(
        `UPDATE bgp_neighbors b SET state = t.s, received_routes = t.rx, advertised_routes = t.tx, last_error = t.e, status_updated_at = now()
           FROM json_to_recordset($2::json) AS t(a text, s text, rx int, tx int, e text)
          WHERE b.speaker_id = $1 AND host(b.address) = t.a`,
        [r.conf.id, JSON.stringify(rows)],
      );
    } catch (e) {
      this.opts.log.warn('federation: could not write neighbour status', { error: (e as Error).message });
    }
  }
}

function attributesOf(a: EvpnAdvert) {
  return {
    origin: 0 as const,
    extendedCommunities: a.extendedCommunities,
    ...(a.communities.length ? { communities: a.communities } : {}),
    ...(a.largeCommunities.length ? { largeCommunities: a.largeCommunities } : {}),
    ...(a.pmsiTunnel ? { pmsiTunnel: a.pmsiTunnel } : {}),
  };
}

function receivedOf(r: RibRoute): ReceivedRoute {
  return {
    route: r.evpn!,
    nextHop: r.nextHop,
    extendedCommunities: r.attributes.extendedCommunities ?? [],
    communities: r.attributes.communities ?? [],
    largeCommunities: r.attributes.largeCommunities ?? [],
    pmsiTunnel: r.attributes.pmsiTunnel,
    peer: r.source,
  };
}

