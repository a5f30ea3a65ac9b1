/**
 * The controller: loads the model from Postgres, follows the change log,
 * keeps every host's state with the incremental engine, and streams per-host
 * deltas to the agents (libs/wire). It holds nothing it cannot rebuild.
 *
 * Per host (HostStream): at most one message in flight; changes arriving
 * meanwhile are coalesced into `pending` (key -> newest value), so a slow
 * agent gets one merged delta when it acks and never holds others up.
 * Activation: an endpoint change is deployed when every host that must know
 * the endpoint has acknowledged a version that includes it; each host counts
 * its changes (`changeSeq`), each message covers the changes up to its seq.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Subscription } from 'rxjs';
import { AnyEntry, diffStates, Engine, ExternalRoute, PendingChanges, TableName } from '#sdn/compiler';
import type { Change } from '#sdn/model';
import { createModelStore, describeDatabase, ModelStore, waitForDatabase } from '#sdn/store';
import { AgentServer, AgentSession, CLOSE_REPLACED, CLOSE_SHUTDOWN, EntryLists, Hello } from '#sdn/wire';
import type { ControllerConfig } from './config';
import type { RemoteBridge } from './remote-bridge';
import { createLogger, Logger } from './log';
import { createMetrics, ControllerMetrics } from './metrics';

/** An endpoint change waiting for acknowledgements. */
interface Activation {
  endpointId: string;
  /** the endpoint's revision this activation confirms: a status write never overrides a newer change */
  revision: number;
  /** ms since epoch of the directory commit; null for endpoints found pending at start (not timed) */
  committedAt: number | null;
  remaining: number;
  done: boolean;
}

class HostStream {
  session: AgentSession | null = null;
  /** newest version number used for this host */
  version = 0;
  acked = 0;
  ackedDigest = '';
  /** count of state changes of this host; a message covers the changes up to its seq */
  changeSeq = 1;
  ackedSeq = 0;
  inflight: { version: number; seq: number; changes: PendingChanges | null; sentAt: number } | null = null;
  pending = new PendingChanges();
  /** false: pending is not a complete account of the changes since `acked`; send a snapshot */
  pendingValid = false;
  /** the last snapshot was rejected: wait for a change before sending another */
  blocked = false;
  /** rebuilding the agent's old state to resume with a delta: send nothing meanwhile */
  resuming = false;
  readonly waiters: Array<{ seq: number; act: Activation }> = [];
  nacks = 0;
  lastNack: { version: number; reason: string; at: string } | null = null;
  bytesSent = 0;
  lastSentAt = 0;
  timer: NodeJS.Timeout | null = null;
  snapshotsSent = 0;
  deltasSent = 0;
  constructor(readonly hostId: string) {}
}

export interface ControllerStats {
  revision: number;
  bytesSent: number;
  snapshotsSent: number;
  deltasSent: number;
  activations: number;
  pendingActivations: number;
  nacks: number;
}

export interface ControllerOptions {
  /** called for every timed activation (benchmarks compute exact percentiles from it) */
  onActivation?(endpointId: string, latencyMs: number): void;
  /** called for every directory endpoint change applied, with commit -> applied (ms) */
  onApplied?(lagMs: number): void;
  store?: ModelStore;
  logger?: Logger;
  /**
   * Federation: hold the resume of agents that come back from before this controller started, with a state that is
   * not the current one, until releaseResync() or this many ms (see deferResync). 0 or absent: no hold.
   */
  deferResyncMs?: number;
}

export class Controller {
  readonly epoch = randomBytes(8).toString('hex');
  engine: Engine;
  readonly streams = new Map<string, HostStream>();
  readonly metrics: ControllerMetrics;
  readonly agents: AgentServer;
  private readonly activations = new Map<string, Activation>();
  /** models rebuilt at past revisions, shared by agents resuming from the same one */
  private readonly history = new Map<number, { engine: Promise<Engine>; at: number }>();
  /** endpoint id -> the revision found deployed everywhere (written as `active`) */
  private readonly toActivate = new Map<string, number>();
  /** endpoints a host refused to program (a nack covered their change), with that revision: shown as `error` until a later version is acknowledged */
  private readonly toError = new Map<string, number>();
  private buffer: Change[] = [];
  private flushScheduled = false;
  private subscription: Subscription | null = null;
  private statusTimer: NodeJS.Timeout | null = null;
  private statusWriting = false;
  private stopped = false;
  private loaded = false;
  /** endpoints of other datacenters, as external hosts and endpoints (federation); null without federation */
  private bridge: RemoteBridge | null = null;
  /** external routes changed since the last flush */
  private externalDirty = false;
  private readonly releaseHooks: Array<() => void> = [];
  /** agents whose resume waits for the federation's first convergence (deferResync); null when none waits */
  private deferred: { timer: NodeJS.Timeout; streams: Set<HostStream> } | null = null;
  /** federation's read side for /bgp/neighbors and /bgp/rib; null without federation */
  federationView: { neighbors(): unknown; rib(family: string): unknown } | null = null;
  readonly stats: ControllerStats = { revision: 0, bytesSent: 0, snapshotsSent: 0, deltasSent: 0, activations: 0, pendingActivations: 0, nacks: 0 };

  constructor(
    readonly config: ControllerConfig,
    readonly store: ModelStore,
    readonly log: Logger,
    private readonly opts: ControllerOptions = {},
  ) {
    this.engine = new Engine({ gatewayMac: config.gatewayMac });
    this.metrics = createMetrics(
      () => [...this.streams.values()].map((s) => ({ hostId: s.hostId, connected: !!s.session?.isOpen, version: s.version, acked: s.acked, pendingEntries: s.pending.size })),
      () => this.engine.revision,
      () => this.activations.size,
      () => this.store.database.ok,
    );
    this.agents = new AgentServer({
      pingIntervalMs: config.pingIntervalMs,
      authenticate: (h) => this.authenticate(h),
      onSession: (s) => this.onSession(s),
      onError: (e, ctx) => this.log.warn('agent connection error', { ...ctx, error: e.message }),
    });
  }

  /**
   * Federation: model changes made from imported routes (see remote-bridge.ts).
   * They go through the same batch as directory changes; external hosts get
   * no stream and are never waited for.
   */
  attachBridge(bridge: RemoteBridge): void {
    this.bridge = bridge;
    this.engine.passiveHosts = bridge.externalHostIds;
  }

  /**
   * Federation, at start: an agent's state holds what other datacenters
   * advertise, which this controller learns again only once its BGP sessions
   * are up. An agent resuming meanwhile would be sent a state without it (a
   * snapshot that removes the other datacenters' endpoints from its kernel
   * until their routes are back). Like a restarting BGP speaker's selection
   * deferral (RFC 4724 §4.1), an agent from before this controller's start
   * whose state is not the current one keeps what it has, and gets nothing,
   * until releaseResync() (the federation has every neighbour's End-of-RIB)
   * or `ms`; its resume is decided then, against the state with the
   * imported objects back.
   */
  deferResync(ms: number): void {
    if (this.deferred || ms <= 0) return;
    const timer = setTimeout(() => this.releaseResync(`no End-of-RIB from every neighbour in ${ms / 1000} s`), ms);
    timer.unref();
    this.deferred = { timer, streams: new Set() };
  }

  /** Ends deferResync's hold: every held agent resumes against the current state. */
  releaseResync(why: string): void {
    const d = this.deferred;
    if (!d) return;
    this.deferred = null;
    clearTimeout(d.timer);
    if (this.stopped) return;
    for (const hook of this.releaseHooks) hook();
    this.flush(); // the imported objects the federation has queued
    this.log.info('held agents resume', { why, agents: d.streams.size });
    for (const s of d.streams) {
      if (!s.session?.isOpen || !s.resuming) continue;
      const how = this.decideResume(s, s.session);
      this.log.info('agent resume', { hostId: s.hostId, resume: how });
      this.pump(s);
    }
  }

  /** Called when deferResync's hold ends, by releaseResync or by its time running out. */
  onResyncReleased(hook: () => void): void {
    this.releaseHooks.push(hook);
  }

  injectExternal(changes: Change[]): void {
    if (changes.length === 0 || this.stopped) return;
    this.buffer.push(...changes);
    this.scheduleFlush();
  }

  /** Federation: the prefixes of a domain behind other networks' VTEPs (type-5 routes). */
  setExternalRoutes(domainId: string, routes: ExternalRoute[]): void {
    if (this.stopped) return;
    this.engine.setExternalRoutes(domainId, routes);
    this.externalDirty = true;
    this.scheduleFlush();
  }

  private isExternalHost(hostId: string): boolean {
    return this.bridge?.externalHostIds.has(hostId) ?? false;
  }

  /** the change-log follower's view of the database, for /healthz */
  databaseHealth(): { ok: boolean; since: string; error?: string } {
    const d = this.store.database;
    return { ok: d.ok, since: new Date(d.since).toISOString(), ...(d.ok || d.error === null ? {} : { error: d.error }) };
  }

  get ready(): boolean {
    return this.loaded && !this.stopped && this.subscription !== null;
  }

  // ------------------------------------------------------------------ model

  async start(): Promise<void> {
    if (this.opts.deferResyncMs) this.deferResync(this.opts.deferResyncMs);
    const snap = await this.store.loadSnapshot();
    this.engine.load(snap);
    for (const h of this.engine.hostIds()) this.streamOf(h);
    // endpoints that were never confirmed: activate them once their hosts ack
    for (const e of snap.endpoints) if (e.status !== 'active' && this.engine.isPlaced(e.id)) this.track(e.id, e.revision, null);
    this.loaded = true;
    this.log.info('model loaded', { revision: snap.revision, hosts: snap.hosts.length, endpoints: snap.endpoints.length, epoch: this.epoch });
    this.follow();
    this.statusTimer = setInterval(() => {
      void this.flushStatus();
      const now = Date.now();
      for (const [r, x] of this.history) if (now - x.at > 30_000) this.history.delete(r);
    }, this.config.statusFlushMs);
  }

  private follow(): void {
    this.subscription = this.store.follow(this.engine.revision).subscribe({
      next: (ch) => {
        this.buffer.push(ch);
        this.scheduleFlush();
      },
      error: (e: Error) => {
        this.log.error('change log follow failed; rebuilding from the database', { error: e.message });
        this.subscription = null;
        void this.resync();
      },
    });
  }

  /** Rebuilds the model from the database and turns the difference into pending changes. */
  private async resync(): Promise<void> {
    if (this.stopped) return;
    try {
      this.flush();
      const next = new Engine({ gatewayMac: this.config.gatewayMac });
      if (this.bridge) next.passiveHosts = this.bridge.externalHostIds;
      const snap = await this.store.loadSnapshot();
      next.load(snap);
      // objects bridged from imported routes are not in the database: put them back
      if (this.bridge) {
        for (const ch of this.bridge.all()) next.apply(ch);
        for (const d of this.bridge.prefixDomains()) next.setExternalRoutes(d, this.bridge.routesOf(d));
        next.takeDeltas();
      }
      const hosts = new Set([...this.engine.hostIds(), ...next.hostIds()]);
      for (const h of hosts) {
        if (this.isExternalHost(h)) continue;
        const d = diffStates(this.engine.stateOf(h), next.stateOf(h));
        const s = this.streamOf(h);
        s.changeSeq++;
        if (s.pendingValid) s.pending.merge(d);
      }
      this.engine = next;
      // endpoints the database shows unconfirmed (a restored database has the statuses of its backup): activate them
      // once their hosts ack this difference, as at start
      for (const e of snap.endpoints) if (e.status !== 'active' && this.engine.isPlaced(e.id) && !this.activations.has(e.id)) this.track(e.id, e.revision, null);
      this.follow();
      for (const s of this.streams.values()) this.pump(s);
    } catch (e) {
      this.log.error('resync failed; retrying', { error: (e as Error).message });
      setTimeout(() => void this.resync(), 1000).unref();
    }
  }

  /** Changes arriving together (one event-loop turn) are applied as one batch. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Applies the buffered changes as one batch and sends what they changed. */
  private flush(): void {
    this.flushScheduled = false;
    if ((this.buffer.length === 0 && !this.externalDirty) || this.stopped) return;
    this.externalDirty = false;
    const batch = this.buffer;
    this.buffer = [];
    const endpoints = new Map<string, { at: number; revision: number }>();
    const deletedHosts: string[] = [];
    const now = Date.now();
    for (const ch of batch) {
      this.engine.apply(ch);
      if (ch.kind === 'endpoint') {
        if (this.bridge?.externalEndpointIds.has(ch.id)) continue; // nothing here acknowledges it
        const at = Date.parse(ch.committedAt);
        this.metrics.applyLag.observe((now - at) / 1000);
        this.opts.onApplied?.(now - at);
        if (ch.state) endpoints.set(ch.id, { at, revision: ch.revision });
        else {
          endpoints.delete(ch.id);
          this.cancel(ch.id);
        }
      } else if (ch.kind === 'host' && ch.state === null) deletedHosts.push(ch.id);
    }
    this.metrics.changes.inc(batch.length);
    this.stats.revision = this.engine.revision;
    // each changed host's changes become (or join) its coalescing buffer (dropped when a snapshot is due anyway)
    this.engine.takeChanges((hostId, changes) => {
      if (this.isExternalHost(hostId)) return;
      const s = this.streamOf(hostId);
      s.changeSeq++;
      s.blocked = false;
      if (!s.pendingValid) return;
      if (s.pending.size === 0) s.pending = changes;
      else s.pending.mergePending(changes);
      this.boundPending(s);
    });
    for (const h of deletedHosts) this.dropHost(h);
    for (const [id, { at, revision }] of endpoints) {
      if (this.engine.isPlaced(id)) this.track(id, revision, at);
      else this.cancel(id); // not on any host: nothing to confirm
    }
    for (const s of this.streams.values()) if (s.pending.size > 0 || !s.pendingValid) this.pump(s);
  }

  /** A disconnected agent's pending changes may not grow past its state: then it gets a snapshot. */
  private boundPending(s: HostStream): void {
    if (s.session?.isOpen) return;
    if (s.pending.size > Math.max(1000, this.engine.entryCount(s.hostId) / 2)) {
      s.pending = new PendingChanges();
      s.pendingValid = false;
    }
  }

  private streamOf(hostId: string): HostStream {
    let s = this.streams.get(hostId);
    if (!s) {
      s = new HostStream(hostId);
      this.streams.set(hostId, s);
    }
    return s;
  }

  private dropHost(hostId: string): void {
    const s = this.streams.get(hostId);
    if (!s) return;
    for (const w of s.waiters) this.release(w.act);
    s.waiters.length = 0;
    if (s.timer) clearTimeout(s.timer);
    s.session?.close(CLOSE_SHUTDOWN, 'host deleted');
    this.streams.delete(hostId);
  }

  // -------------------------------------------------------------- activation

  private track(endpointId: string, revision: number, committedAt: number | null): void {
    this.cancel(endpointId);
    const act: Activation = { endpointId, revision, committedAt, remaining: 0, done: false };
    for (const h of this.engine.hostsThatKnow(endpointId)) {
      if (this.isExternalHost(h)) continue;
      const s = this.streamOf(h);
      if (s.ackedSeq >= s.changeSeq) continue;
      act.remaining++;
      s.waiters.push({ seq: s.changeSeq, act });
    }
    this.activations.set(endpointId, act);
    if (act.remaining === 0) this.complete(act);
  }

  private cancel(endpointId: string): void {
    const a = this.activations.get(endpointId);
    if (a) {
      a.done = true;
      this.activations.delete(endpointId);
    }
  }

  private release(act: Activation): void {
    if (act.done) return;
    if (--act.remaining <= 0) this.complete(act);
  }

  private complete(act: Activation): void {
    act.done = true;
    this.activations.delete(act.endpointId);
    this.toError.delete(act.endpointId);
    this.toActivate.set(act.endpointId, act.revision);
    this.stats.activations++;
    if (act.committedAt !== null) {
      const ms = Date.now() - act.committedAt;
      this.metrics.activation.observe(ms / 1000);
      this.opts.onActivation?.(act.endpointId, ms);
    }
  }

  private acknowledged(s: HostStream, seq: number): void {
    if (seq > s.ackedSeq) s.ackedSeq = seq;
    let i = 0;
    while (i < s.waiters.length && s.waiters[i].seq <= s.ackedSeq) this.release(s.waiters[i++].act);
    if (i) s.waiters.splice(0, i);
  }

  private async flushStatus(): Promise<void> {
    if (this.statusWriting || (this.toActivate.size === 0 && this.toError.size === 0)) return;
    this.statusWriting = true;
    const ids = [...this.toActivate].map(([id, revision]) => ({ id, revision }));
    this.toActivate.clear();
    const failed = [...this.toError].filter(([id]) => this.activations.has(id)).map(([id, revision]) => ({ id, revision }));
    this.toError.clear();
    try {
      if (failed.length) await this.store.setEndpointStatus(failed, 'error');
      // chunks small enough for an index nested loop (a large array makes the planner scan the table)
      for (let i = 0; i < ids.length; i += 1000) await this.store.setEndpointStatus(ids.slice(i, i + 1000), 'active');
    } catch (e) {
      for (const x of ids) if (!this.toActivate.has(x.id)) this.toActivate.set(x.id, x.revision);
      for (const x of failed) if (!this.toError.has(x.id)) this.toError.set(x.id, x.revision);
      this.log.warn('writing endpoint status failed; will retry', { error: (e as Error).message, endpoints: ids.length });
    } finally {
      this.statusWriting = false;
    }
  }

  // ------------------------------------------------------------------ agents

  private async authenticate(h: Hello): Promise<true | string> {
    if (!(await this.store.verifyHostCredential(h.hostId, h.credential))) {
      this.log.warn('agent refused: bad credential', { hostId: h.hostId });
      return 'unknown host or bad credential';
    }
    const host = this.engine.hosts.get(h.hostId);
    if (host && host.vtepIp !== h.vtepIp) {
      this.log.warn('agent refused: VTEP mismatch', { hostId: h.hostId, vtepIp: h.vtepIp, directory: host.vtepIp });
      return `VTEP ${h.vtepIp} does not match the directory's ${host.vtepIp}`;
    }
    return true;
  }

  private onSession(session: AgentSession): void {
    const h = session.hello;
    const s = this.streamOf(h.hostId);
    if (s.session && s.session !== session) s.session.close(CLOSE_REPLACED, 'replaced by a newer connection');
    s.session = session;
    s.blocked = false;
    s.version = Math.max(s.version, h.version);
    let how: string;
    if (this.deferred && h.epoch !== this.epoch && h.digest !== '' && h.digest !== this.engine.digestOf(h.hostId)) {
      // its state may hold what other datacenters advertise, which this controller has not learned again yet: the
      // agent keeps it, and gets nothing, until the federation has (releaseResync)
      how = 'deferred until the federation has converged';
      s.inflight = null;
      s.pending = new PendingChanges();
      s.pendingValid = false;
      s.resuming = true;
      this.deferred.streams.add(s);
    } else how = this.decideResume(s, session);
    this.log.info('agent connected', { hostId: h.hostId, vtepIp: h.vtepIp, resumeFrom: h.version, resume: how, remote: session.remoteAddress });
    void this.store.markHostSeen(h.hostId, 'up').catch(() => undefined);
    session.on('ack', (a) => this.onAck(s, session, a.version, a.digest));
    session.on('nack', (n) => this.onNack(s, session, n.version, n.reason));
    session.on('close', (c) => {
      if (s.session !== session) return;
      s.session = null;
      this.log.info('agent disconnected', { hostId: s.hostId, code: c.code, reason: c.reason, acked: s.acked });
      if (!this.stopped) void this.store.markHostSeen(s.hostId, 'down').catch(() => undefined);
    });
    this.pump(s);
  }

  /** How the agent of `session` continues: its state is current, a delta follows, or a snapshot. */
  private decideResume(s: HostStream, session: AgentSession): string {
    const h = session.hello;
    s.resuming = false;
    let how: string;
    if (h.digest !== '' && h.digest === this.engine.digestOf(h.hostId)) {
      // the agent already holds the current state (e.g. the controller restarted, nothing changed)
      how = 'in sync';
      s.inflight = null;
      s.pending = new PendingChanges();
      s.pendingValid = true;
      s.acked = h.version;
      s.ackedDigest = h.digest;
      this.acknowledged(s, s.changeSeq);
    } else if (h.epoch === this.epoch && s.inflight && h.version === s.inflight.version) {
      // the ack of the message in flight (delta or snapshot) was lost; pending holds what came after it
      how = 'delta (in-flight version acknowledged)';
      s.acked = h.version;
      this.acknowledged(s, s.inflight.seq);
      s.inflight = null;
    } else if (h.epoch === this.epoch && h.version === s.acked && s.acked > 0 && s.pendingValid) {
      how = 'delta';
      if (s.inflight) {
        if (s.inflight.changes === null) s.pendingValid = false;
        else {
          s.inflight.changes.mergePending(s.pending);
          s.pending = s.inflight.changes;
        }
        s.inflight = null;
      }
    } else if (h.digest !== '' && h.revision > 0 && h.revision <= this.engine.revision) {
      // e.g. the controller restarted and the model changed meanwhile: rebuild the agent's state at its revision
      how = 'delta from its revision';
      s.inflight = null;
      s.pending = new PendingChanges();
      s.pendingValid = false;
      s.resuming = true;
      void this.resumeFromRevision(s, session);
    } else {
      how = 'snapshot';
      s.inflight = null;
      s.pending = new PendingChanges();
      s.pendingValid = false;
    }
    return how;
  }

  /** Sends the difference between the agent's state at its revision and now; a snapshot when that state cannot be rebuilt. */
  private async resumeFromRevision(s: HostStream, session: AgentSession): Promise<void> {
    const h = session.hello;
    let how = 'snapshot';
    try {
      const past = await this.engineAt(h.revision);
      if (s.session === session && past.digestOf(h.hostId) === h.digest) {
        s.pending = new PendingChanges();
        s.pending.merge(diffStates(past.stateOf(h.hostId), this.engine.stateOf(h.hostId)));
        s.pendingValid = true;
        s.acked = h.version;
        s.ackedDigest = h.digest;
        how = 'delta';
      }
    } catch (e) {
      this.log.warn('rebuilding a past state failed', { hostId: h.hostId, revision: h.revision, error: (e as Error).message });
    }
    if (s.session !== session) return;
    this.log.info('agent resume from revision', { hostId: h.hostId, revision: h.revision, resume: how, entries: s.pending.size });
    s.resuming = false;
    this.pump(s);
  }

  private engineAt(revision: number): Promise<Engine> {
    const now = Date.now();
    for (const [r, x] of this.history) if (now - x.at > 30_000) this.history.delete(r);
    let x = this.history.get(revision);
    // each rebuild holds a whole model: at most two at a time, the others get snapshots
    if (!x && this.history.size >= 2) return Promise.reject(new Error('two past models are being kept already'));
    if (!x) {
      const engine = (async () => {
        const e = new Engine({ gatewayMac: this.config.gatewayMac });
        if (this.bridge) e.passiveHosts = this.bridge.externalHostIds;
        e.load(await this.store.loadSnapshotAt(revision));
        // objects bridged from imported routes are not in the change log: the agent's state at that revision held
        // them as they are now, unless they changed since (its digest then differs, and it gets a snapshot)
        if (this.bridge) {
          for (const ch of this.bridge.all()) e.apply(ch);
          for (const d of this.bridge.prefixDomains()) e.setExternalRoutes(d, this.bridge.routesOf(d));
          e.takeDeltas();
        }
        return e;
      })();
      x = { engine, at: now };
      this.history.set(revision, x);
      engine.catch(() => this.history.delete(revision));
    }
    return x.engine;
  }

  private onAck(s: HostStream, session: AgentSession, version: number, digest: string): void {
    if (s.session !== session || !s.inflight || s.inflight.version !== version) {
      this.log.debug('stale ack ignored', { hostId: s.hostId, version });
      return;
    }
    s.acked = version;
    s.ackedDigest = digest;
    const seq = s.inflight.seq;
    s.inflight = null;
    this.acknowledged(s, seq);
    this.pump(s);
  }

  private onNack(s: HostStream, session: AgentSession, version: number, reason: string): void {
    if (s.session !== session || !s.inflight || s.inflight.version !== version) return;
    const wasSnapshot = s.inflight.changes === null;
    s.nacks++;
    this.stats.nacks++;
    s.lastNack = { version, reason, at: new Date().toISOString() };
    // the endpoints waiting for this version will not be programmed by it: the directory shows them as error
    for (const w of s.waiters) if (w.seq <= s.inflight.seq && !w.act.done) this.toError.set(w.act.endpointId, w.act.revision);
    this.metrics.nacks.inc({ host: s.hostId });
    this.log.warn('agent rejected a version', { hostId: s.hostId, version, reason, snapshot: wasSnapshot });
    s.inflight = null;
    s.pending = new PendingChanges();
    s.pendingValid = false;
    // a rejected snapshot is not resent until the state changes again
    s.blocked = wasSnapshot;
    this.pump(s);
  }

  /** Sends the host what it is missing, when nothing is in flight. */
  private pump(s: HostStream): void {
    const session = s.session;
    if (!session?.isOpen || s.inflight || s.blocked || s.resuming) return;
    if (!s.pendingValid) {
      const lists: { [T in TableName]?: AnyEntry[] } = {};
      this.engine.forEachEntry(s.hostId, (t, e) => (lists[t] ??= []).push(e));
      const version = ++s.version;
      const n = session.sendSnapshot({ epoch: this.epoch, version, revision: this.engine.revision, digest: this.engine.digestOf(s.hostId) }, lists as EntryLists);
      s.inflight = { version, seq: s.changeSeq, changes: null, sentAt: Date.now() };
      s.pending = new PendingChanges();
      s.pendingValid = true;
      this.sent(s, 'snapshot', n);
      return;
    }
    if (s.pending.size === 0) {
      // nothing to send; the agent is current
      if (s.ackedSeq < s.changeSeq) this.acknowledged(s, s.changeSeq);
      return;
    }
    const wait = s.lastSentAt + this.config.sendIntervalMs - Date.now();
    if (wait > 0) {
      s.timer ??= setTimeout(() => {
        s.timer = null;
        this.pump(s);
      }, wait);
      return;
    }
    const version = ++s.version;
    const n = session.sendDelta({ epoch: this.epoch, fromVersion: s.acked, version, revision: this.engine.revision, digest: this.engine.digestOf(s.hostId) }, s.pending.toDelta());
    s.inflight = { version, seq: s.changeSeq, changes: s.pending, sentAt: Date.now() };
    s.pending = new PendingChanges();
    this.sent(s, 'delta', n);
  }

  private sent(s: HostStream, kind: 'snapshot' | 'delta', bytes: number): void {
    s.lastSentAt = Date.now();
    s.bytesSent += bytes;
    this.stats.bytesSent += bytes;
    if (kind === 'snapshot') {
      s.snapshotsSent++;
      this.stats.snapshotsSent++;
    } else {
      s.deltasSent++;
      this.stats.deltasSent++;
    }
    this.metrics.bytes.inc({ kind }, bytes);
    this.metrics.messages.inc({ kind });
  }

  /** What /agents shows. */
  agentReport() {
    return [...this.streams.values()].map((s) => ({
      hostId: s.hostId,
      connected: !!s.session?.isOpen,
      version: s.version,
      ackedVersion: s.acked,
      inFlight: s.inflight?.version ?? null,
      pendingEntries: s.pending.size,
      waitingActivations: s.waiters.length,
      snapshotsSent: s.snapshotsSent,
      deltasSent: s.deltasSent,
      bytesSent: s.bytesSent,
      nacks: s.nacks,
      lastNack: s.lastNack,
    }));
  }

  pendingActivations(): number {
    return this.activations.size;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.subscription?.unsubscribe();
    this.subscription = null;
    if (this.statusTimer) clearInterval(this.statusTimer);
    if (this.deferred) clearTimeout(this.deferred.timer);
    this.deferred = null;
    for (const s of this.streams.values()) {
      if (s.timer) clearTimeout(s.timer);
      s.session?.close(CLOSE_SHUTDOWN, 'controller stopping');
    }
    await this.agents.close();
    this.statusWriting = false;
    await this.flushStatus();
  }
}

export interface RunningController {
  controller: Controller;
  /** http://host:port */
  url: string;
  /** ws://host:port/agent */
  agentUrl: string;
  port: number;
  close(): Promise<void>;
}

/** Starts a controller: loads the model, follows the change log, serves agents, /metrics, /healthz and /agents. */
export async function startController(config: ControllerConfig, opts: ControllerOptions = {}): Promise<RunningController> {
  const log = opts.logger ?? createLogger(config.logLevel);
  const store = opts.store ?? createModelStore(config.databaseUrl, { pollMs: config.pollMs, timeoutMs: config.dbTimeoutSeconds * 1000 });
  const controller = new Controller(config, store, log, opts);
  // the controller may start before (or with) the directory that creates the schema, or before Postgres
  await waitForDatabase(config.databaseUrl, {
    seconds: config.dbWaitSeconds,
    schema: true,
    onWait: (reason) => log.warn('waiting for the database', { database: describeDatabase(config.databaseUrl), reason }),
  });
  await controller.start();
  const handler = (req: IncomingMessage, res: ServerResponse) => void route(controller, req, res);
  // with a certificate, agents connect over wss:// (their host credential is in the hello)
  const server: Server = config.tls
    ? createHttpsServer({ cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }, handler)
    : createServer(handler);
  controller.agents.attach(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const [http, ws] = config.tls ? ['https', 'wss'] : ['http', 'ws'];
  log.info('controller listening', { url: `${http}://${host}:${port}`, agents: `${ws}://${host}:${port}/agent` });
  return {
    controller,
    url: `${http}://${host}:${port}`,
    agentUrl: `${ws}://${host}:${port}/agent`,
    port,
    async close() {
      await controller.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections?.();
      if (!opts.store) await store.close();
    },
  };
}

async function route(c: Controller, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const json = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  try {
    if (req.method !== 'GET') return json(405, { title: 'method not allowed' });
    switch (path) {
      case '/healthz':
        return json(c.ready ? 200 : 503, {
          status: c.ready ? 'ok' : 'starting',
          revision: c.engine.revision,
          epoch: c.epoch,
          agentsConnected: [...c.streams.values()].filter((s) => s.session?.isOpen).length,
          pendingActivations: c.pendingActivations(),
          // without its database the controller keeps serving the model it holds (no change reaches it meanwhile)
          database: c.databaseHealth(),
        });
      case '/metrics':
        res.writeHead(200, { 'content-type': c.metrics.registry.contentType });
        return void res.end(await c.metrics.registry.metrics());
      case '/agents':
        return json(200, { items: c.agentReport() });
      case '/bgp/neighbors':
        if (!c.federationView) return json(404, { title: 'no BGP speaker runs here (SDN_BGP_SPEAKER)' });
        return json(200, { items: c.federationView.neighbors() });
      case '/bgp/rib': {
        if (!c.federationView) return json(404, { title: 'no BGP speaker runs here (SDN_BGP_SPEAKER)' });
        const family = new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('family') ?? 'l2vpn-evpn';
        if (!['ipv4-unicast', 'ipv6-unicast', 'l2vpn-evpn'].includes(family)) return json(400, { title: 'family must be ipv4-unicast, ipv6-unicast or l2vpn-evpn', family });
        return json(200, { family, items: c.federationView.rib(family) });
      }
      default:
        return json(404, { title: 'not found', path });
    }
  } catch (e) {
    json(500, { title: 'internal error', detail: (e as Error).message });
  }
}
