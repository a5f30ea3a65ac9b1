/**
 * Controller test support: start a real controller against a test database,
 * and simulated agents speaking the real protocol over loopback.
 */
import { strict as assert } from 'node:assert';
import { after, before } from 'node:test';
import { compileAll, describeDifference, type HostState } from '#sdn/compiler';
import { createModelStore, type ModelStore } from '#sdn/store';
import { AgentClient, DeltaEvent, SnapshotEvent, StateMirror } from '#sdn/wire';
import { loadConfig } from '../../apps/controller/src/config';
import { ControllerOptions, RunningController, startController } from '../../apps/controller/src/controller';
import { startTestDirectory, type TestDirectory } from './directory';

export async function startTestController(databaseUrl: string, opts: ControllerOptions & { port?: number } = {}): Promise<RunningController> {
  return startController(
    { ...loadConfig({}), databaseUrl, host: '127.0.0.1', port: opts.port ?? 0, logLevel: 'error', pollMs: 100, statusFlushMs: 20 },
    opts,
  );
}

export interface SimHost {
  id: string;
  credential: string;
  vtepIp: string;
}

export interface SimOptions {
  /** return a reason to reject (nack) a version instead of applying it */
  reject?: (m: { type: 'snapshot' | 'delta'; version: number }) => string | null;
  /** resume point at the first connection (an agent that kept its state) */
  resumeFrom?: SimulatedAgent;
  minBackoffMs?: number;
}

/** One simulated host agent: applies snapshots and deltas to a StateMirror and acks. */
export class SimulatedAgent {
  mirror = new StateMirror();
  readonly client: AgentClient;
  snapshots = 0;
  deltas = 0;
  nacks = 0;
  connects = 0;
  rejectedWith: string | null = null;
  /** while stalled, received messages wait unapplied and unacknowledged (a slow agent) */
  private stalled: Array<() => void> | null = null;

  constructor(
    url: string,
    readonly host: SimHost,
    private readonly opts: SimOptions = {},
  ) {
    const prev = opts.resumeFrom;
    if (prev) this.mirror = prev.mirror;
    this.client = new AgentClient(url, host.id, host.credential, host.vtepIp, {
      minBackoffMs: opts.minBackoffMs ?? 50,
      maxBackoffMs: 1000,
      resume: prev ? prev.client.lastAcked : undefined,
    });
    this.client.on('connected', () => this.connects++);
    this.client.on('rejected', (r) => (this.rejectedWith = r));
    this.client.on('error', () => undefined);
    this.client.on('snapshot', (m) => this.onSnapshot(m));
    this.client.on('delta', (m) => this.onDelta(m));
    this.client.start();
  }

  get state(): HostState {
    return this.mirror.state;
  }

  get ackedVersion(): number {
    return this.client.lastAcked.version;
  }

  stall(): void {
    this.stalled ??= [];
  }

  /** Applies what arrived while stalled, in order, and acks it. */
  unstall(): void {
    const held = this.stalled ?? [];
    this.stalled = null;
    for (const f of held) f();
  }

  get held(): number {
    return this.stalled?.length ?? 0;
  }

  private onSnapshot(m: SnapshotEvent): void {
    if (this.stalled) return void this.stalled.push(() => this.onSnapshot(m));
    this.snapshots++;
    const why = this.opts.reject?.({ type: 'snapshot', version: m.version }) ?? null;
    if (why !== null) return this.refuse(m, why);
    const r = this.mirror.applySnapshot(m);
    if (r.ok) m.ack();
    else this.refuse(m, r.reason);
  }

  private onDelta(m: DeltaEvent): void {
    if (this.stalled) return void this.stalled.push(() => this.onDelta(m));
    this.deltas++;
    const why = this.opts.reject?.({ type: 'delta', version: m.version }) ?? null;
    if (why !== null) return this.refuse(m, why);
    const r = this.mirror.applyDelta(m);
    if (r.ok) m.ack();
    else this.refuse(m, r.reason);
  }

  private refuse(m: { nack(reason: string): void }, reason: string): void {
    this.nacks++;
    m.nack(reason);
  }

  stop(): Promise<void> {
    return this.client.close();
  }
}

export async function waitUntil(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** True when the controller has applied every change up to `revision` and every connected agent acked its newest version. */
export function settled(c: RunningController, revision: number, agents: SimulatedAgent[]): boolean {
  const ctl = c.controller;
  if (ctl.engine.revision < revision) return false;
  for (const a of agents) {
    const s = ctl.streams.get(a.host.id);
    if (!s || !s.session?.isOpen || s.inflight || s.pending.size > 0 || !s.pendingValid) return false;
    if (a.mirror.version !== s.acked) return false;
  }
  return true;
}

/**
 * What a controller test file shares: a directory (and its database) and a
 * model store for the whole file, hosts and endpoints made through the API,
 * and the check of every agent (and the controller) against the state
 * compiled from the database. `t` and `store` are set before the first test.
 */
export function controllerTestWorld(hosts: { namePrefix: string; vtepNet: string }) {
  let hostSeq = 0;
  const w = {
    t: undefined as unknown as TestDirectory,
    store: undefined as unknown as ModelStore,
    async makeHost(): Promise<SimHost> {
      hostSeq++;
      const h = await w.t.api.make('/api/v1/hosts', { name: `${hosts.namePrefix}${hostSeq}`, vtepIp: `${hosts.vtepNet}.${hostSeq}` });
      return { id: h.id, credential: h.credential, vtepIp: h.vtepIp };
    },
    endpoint(subnetId: string, hostId: string | null, policyGroupIds: string[] = []) {
      return w.t.api.make(`/api/v1/subnets/${subnetId}/endpoints`, { name: `ep${Math.random().toString(36).slice(2, 8)}`, hostId, policyGroupIds });
    },
    /** Waits until the controller and agents are settled at the database's revision, then returns the reference states. */
    async settle(c: RunningController, agents: SimulatedAgent[]): Promise<Map<string, HostState>> {
      const snap = await w.store.loadSnapshot();
      await waitUntil(() => settled(c, snap.revision, agents), `settled at revision ${snap.revision}`);
      return compileAll(snap, c.controller.engine.opts);
    },
    /** Every agent (and the controller's view of its host, when given) holds the reference state. */
    assertSame(agents: SimulatedAgent[], ref: Map<string, HostState>, c?: RunningController): void {
      for (const a of agents) {
        const want = ref.get(a.host.id)!;
        if (c) assert.deepEqual(describeDifference(c.controller.engine.stateOf(a.host.id), want), [], `controller vs database, host ${a.host.id}`);
        assert.deepEqual(describeDifference(a.state, want), [], `agent vs database, host ${a.host.id}`);
      }
    },
  };
  before(async () => {
    w.t = await startTestDirectory();
    w.store = createModelStore(w.t.db.url);
  });
  after(async () => {
    await w.store?.close();
    await w.t?.stop();
  });
  return w;
}
