/**
 * The host agent: receives its state from the controller (libs/wire), renders
 * it into the kernel (libs/datapath), and answers each version with an ack,
 * or a nack carrying the kernel's message. The first snapshot after a start
 * is reconciled against what the kernel holds; nothing is flushed. While the
 * controller is away the kernel keeps the last good state and forwards.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { emptyHostState, HostDelta, HostState, keyOf, StateDigest, TABLES } from '#sdn/compiler';
import { Datapath, defaultDatapathConfig } from '#sdn/datapath';
import { AgentClient, DeltaEvent, ResumePoint, SnapshotEvent } from '#sdn/wire';
import type { AgentConfig } from './config';
import { createLogger, Logger } from './log';

export function agentMetrics() {
  const registry = new Registry();
  return {
    registry,
    versionsApplied: new Counter({ name: 'sdn_agent_versions_applied_total', help: 'versions applied and acknowledged', labelNames: ['kind'], registers: [registry] }),
    versionsRejected: new Counter({ name: 'sdn_agent_versions_rejected_total', help: 'versions rejected (nack)', labelNames: ['kind'], registers: [registry] }),
    appliedVersion: new Gauge({ name: 'sdn_agent_applied_version', help: 'last acknowledged version', registers: [registry] }),
    applySeconds: new Histogram({
      name: 'sdn_agent_apply_seconds',
      help: 'time to apply a snapshot or delta to the kernel',
      labelNames: ['kind'],
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    kernelChanges: new Counter({ name: 'sdn_agent_kernel_changes_total', help: 'kernel objects added, changed or removed', registers: [registry] }),
    reconcileDifferences: new Gauge({
      name: 'sdn_agent_reconcile_differences',
      help: 'differences between the kernel and the desired state found by the last start-up reconciliation',
      registers: [registry],
    }),
    driftRepaired: new Counter({
      name: 'sdn_agent_drift_repaired_total',
      help: 'kernel objects found different from the applied state by the periodic check, and repaired',
      registers: [registry],
    }),
    connected: new Gauge({ name: 'sdn_agent_controller_connected', help: '1 while connected to the controller', registers: [registry] }),
  };
}

export class Agent {
  readonly datapath: Datapath;
  readonly metrics = agentMetrics();
  private client: AgentClient | null = null;
  private http: Server | null = null;
  private digest = new StateDigest();
  private queue: Promise<void> = Promise.resolve();
  private resyncTimer: NodeJS.Timeout | null = null;
  private saveTimer: NodeJS.Timeout | null = null;
  version = 0;
  epoch = '';
  revision = 0;
  /** the start resumed from the state file */
  resumedFromFile = false;
  reconciled = false;
  lastReconcileDifferences: number | null = null;
  lastError: string | null = null;
  httpPort = 0;

  constructor(
    readonly cfg: AgentConfig,
    readonly log: Logger = createLogger(cfg.logLevel),
  ) {
    this.datapath = new Datapath({ ...defaultDatapathConfig(), hostNetns: cfg.netns, nsPrefix: cfg.nsPrefix, mtu: cfg.mtu });
  }

  async start(): Promise<void> {
    this.http = createServer((req, res) => void this.route(req, res));
    await new Promise<void>((resolve, reject) => {
      this.http!.once('error', reject);
      this.http!.listen(this.cfg.httpPort, this.cfg.httpHost, () => resolve());
    });
    this.httpPort = (this.http.address() as AddressInfo).port;
    const resume = await this.loadState();
    const c = new AgentClient(this.cfg.controllerUrl, this.cfg.hostId, this.cfg.credential, this.cfg.vtepIp, {
      minBackoffMs: 100,
      maxBackoffMs: 5000,
      resume,
      ...(this.cfg.controllerCa ? { ws: { ca: readFileSync(this.cfg.controllerCa) } } : {}),
    });
    this.client = c;
    c.on('connected', () => {
      this.metrics.connected.set(1);
      this.log.info('controller connected', { hostId: this.cfg.hostId, resumeFrom: c.lastAcked.version });
    });
    c.on('disconnected', ({ code, reason }) => {
      this.metrics.connected.set(0);
      this.log.warn('controller away; forwarding with the last state', { hostId: this.cfg.hostId, code, reason, version: this.version });
    });
    c.on('rejected', (reason) => this.log.error('controller refused the credential', { hostId: this.cfg.hostId, reason }));
    c.on('error', (e) => this.log.debug('connection error', { error: e.message }));
    c.on('snapshot', (m) => this.enqueue(() => this.onSnapshot(m)));
    c.on('delta', (m) => this.enqueue(() => this.onDelta(m)));
    c.start();
    if (this.cfg.resyncSeconds > 0) {
      this.resyncTimer = setInterval(() => this.enqueue(() => this.resync()), this.cfg.resyncSeconds * 1000);
      this.resyncTimer.unref();
    }
    this.log.info('agent started', { hostId: this.cfg.hostId, netns: this.cfg.netns, nsPrefix: this.cfg.nsPrefix, http: `${this.cfg.httpHost}:${this.httpPort}` });
  }

  /** Stops talking; the kernel keeps its state (an agent restart must not disturb traffic). */
  async stop(): Promise<void> {
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    await this.client?.close();
    await this.queue;
    if (this.saveTimer) {
      clearTimeout(this.saveTimer);
      this.saveState();
    }
    await new Promise<void>((resolve) => (this.http ? this.http.close(() => resolve()) : resolve()));
    this.http?.closeAllConnections?.();
  }

  private enqueue(fn: () => Promise<void>): void {
    this.queue = this.queue.then(fn).catch((e) => this.log.error('unexpected', { error: String(e) }));
  }

  /** Periodic drift check: what someone changed in the kernel behind our back is put back (nothing else is touched). */
  private async resync(): Promise<void> {
    if (!this.reconciled) return;
    try {
      const r = await this.datapath.reconcile(this.datapath.state);
      if (r.changes > 0) {
        this.metrics.driftRepaired.inc(r.changes);
        this.log.warn('repaired kernel drift', { differences: r.changes, version: this.version });
      }
    } catch (e) {
      this.log.error('drift repair failed', { error: (e as Error).message });
    }
  }

  private async onSnapshot(m: SnapshotEvent): Promise<void> {
    const digest = StateDigest.of(m.state);
    if (digest.value() !== m.digest) return this.reject(m, 'snapshot', `snapshot digest ${digest.value()} != announced ${m.digest}`);
    const first = !this.reconciled;
    const t0 = performance.now();
    try {
      const r = first ? await this.datapath.reconcile(m.state) : await this.datapath.applySnapshot(m.state);
      this.metrics.applySeconds.observe({ kind: 'snapshot' }, (performance.now() - t0) / 1000);
      this.metrics.kernelChanges.inc(r.changes);
      if (first) {
        this.reconciled = true;
        this.lastReconcileDifferences = r.changes;
        this.metrics.reconcileDifferences.set(r.changes);
        this.log.info('reconciled with the kernel', { version: m.version, differences: r.changes, ms: Math.round(r.durationMs) });
      }
      this.accepted(m, 'snapshot', digest);
    } catch (e) {
      this.reject(m, 'snapshot', (e as Error).message);
    }
  }

  private async onDelta(m: DeltaEvent): Promise<void> {
    // a restarted controller (new epoch) resumes with a delta from our version: the digest decides
    if (m.fromVersion !== this.version) {
      return this.reject(m, 'delta', `delta from version ${m.fromVersion} does not apply to version ${this.version}`);
    }
    const digest = digestAfter(this.digest, this.datapath, m.delta);
    if (digest.value() !== m.digest) return this.reject(m, 'delta', `state digest ${digest.value()} after version ${m.version} != announced ${m.digest}`);
    const t0 = performance.now();
    try {
      const r = await this.datapath.applyDelta(m.delta);
      this.metrics.applySeconds.observe({ kind: 'delta' }, (performance.now() - t0) / 1000);
      this.metrics.kernelChanges.inc(r.changes);
      this.accepted(m, 'delta', digest);
    } catch (e) {
      this.reject(m, 'delta', (e as Error).message);
    }
  }

  /**
   * The state file: the last acknowledged state with its resume point. At
   * start the kernel is reconciled against it at once (the controller may be
   * away), and the hello resumes from it, so a restart costs a delta.
   */
  private async loadState(): Promise<ResumePoint | undefined> {
    const file = this.cfg.stateFile;
    if (!file || !existsSync(file)) return undefined;
    try {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as { resume: ResumePoint; tables: Record<string, unknown[]> };
      const state: HostState = emptyHostState();
      for (const t of TABLES) for (const e of saved.tables[t] ?? []) (state[t] as Map<string, unknown>).set((keyOf[t] as (x: unknown) => string)(e), e);
      const digest = StateDigest.of(state);
      if (digest.value() !== saved.resume.digest) throw new Error(`digest ${digest.value()} != saved ${saved.resume.digest}`);
      const r = await this.datapath.reconcile(state);
      this.reconciled = true;
      this.resumedFromFile = true;
      this.lastReconcileDifferences = r.changes;
      this.metrics.reconcileDifferences.set(r.changes);
      this.digest = digest;
      this.version = saved.resume.version;
      this.epoch = saved.resume.epoch;
      this.revision = saved.resume.revision;
      this.metrics.appliedVersion.set(this.version);
      this.log.info('reconciled with the kernel from the state file', { version: this.version, differences: r.changes, ms: Math.round(r.durationMs) });
      return saved.resume;
    } catch (e) {
      this.log.warn('state file ignored; the controller will send a snapshot', { file, error: (e as Error).message });
      return undefined;
    }
  }

  /** Writes the state file (temp + rename: a crash leaves the old one or the new one). */
  private saveState(): void {
    this.saveTimer = null;
    const file = this.cfg.stateFile;
    if (!file) return;
    const s = this.datapath.state;
    const tables: Record<string, unknown[]> = {};
    for (const t of TABLES) tables[t] = [...s[t].values()];
    const resume: ResumePoint = { epoch: this.epoch, version: this.version, revision: this.revision, digest: this.digest.value() };
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify({ resume, tables }));
      renameSync(`${file}.tmp`, file);
    } catch (e) {
      this.log.error('cannot write the state file', { file, error: (e as Error).message });
    }
  }

  private accepted(m: SnapshotEvent | DeltaEvent, kind: 'snapshot' | 'delta', digest: StateDigest): void {
    this.digest = digest;
    this.version = m.version;
    this.epoch = m.epoch;
    this.revision = m.revision;
    // at most one write a second: the file may lag the last ack, and the controller resumes from its revision then
    if (this.cfg.stateFile && !this.saveTimer) this.saveTimer = setTimeout(() => this.saveState(), 1000);
    this.lastError = null;
    this.metrics.versionsApplied.inc({ kind });
    this.metrics.appliedVersion.set(m.version);
    m.ack();
    this.log.debug('applied', { kind, version: m.version });
  }

  private reject(m: SnapshotEvent | DeltaEvent, kind: 'snapshot' | 'delta', reason: string): void {
    this.lastError = reason;
    this.metrics.versionsRejected.inc({ kind });
    m.nack(reason.slice(0, 2000));
    this.log.error('version rejected; keeping the last good state', { kind, version: m.version, keptVersion: this.version, reason });
  }

  health() {
    return {
      status: this.reconciled ? 'ok' : 'starting',
      hostId: this.cfg.hostId,
      controllerConnected: this.client?.connected ?? false,
      version: this.version,
      epoch: this.epoch,
      resumedFromFile: this.resumedFromFile,
      reconcileDifferences: this.lastReconcileDifferences,
      lastError: this.lastError,
    };
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      const h = this.health();
      res.writeHead(h.status === 'ok' ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(h));
    } else if (path === '/metrics') {
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      res.end(await this.metrics.registry.metrics());
    } else {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ title: 'not found' }));
    }
  }
}

/** The digest the state will have after a delta, computed without touching the state. */
function digestAfter(current: StateDigest, dp: Datapath, delta: HostDelta): StateDigest {
  const d = current.clone();
  const s = dp.state;
  for (const [t, c] of Object.entries(delta) as [keyof typeof s, { upsert: any[]; remove: string[] }][]) {
    if (!c) continue;
    const tab = s[t] as Map<string, any>;
    const seen = new Set<string>();
    for (const k of c.remove) {
      const old = tab.get(k);
      if (old !== undefined && !seen.has(k)) d.remove(t, old);
      seen.add(k);
    }
    // an upsert replaces the current entry (a key is never both removed and upserted in one table)
    for (const e of c.upsert) {
      const key = (keyOf[t] as (x: unknown) => string)(e);
      const old = seen.has(key) ? undefined : tab.get(key);
      if (old !== undefined) d.remove(t, old);
      d.add(t, e);
      seen.add(key);
    }
  }
  return d;
}
