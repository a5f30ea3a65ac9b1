/**
 * Controller test support: start a real controller against a test database,
 * and simulated agents speaking the real protocol over loopback.
 */
import { strict as assert } from 'node:assert';
import { after, before } from 'node:test';
import { compileAll, describeDifference, type HostState } from '#sdn/compiler';
import { createModelStore, type ModelStore } from '#sdn/store';
import { loadConfig } from '../../apps/controller/src/config';
import type { Level } from '../../apps/controller/src/log';
import { ControllerOptions, RunningController, startController } from '../../apps/controller/src/controller';
import { startTestDirectory, type TestDirectory } from './directory';
import { SimulatedAgent, type SimHost } from './sim-agent';

export { SimulatedAgent, type SimHost, type SimOptions } from './sim-agent';

/** The test controllers' and federations' log level: SDN_TEST_LOG_LEVEL (debug, info, warn), else error. */
export const testLogLevel = (): Level => (['debug', 'info', 'warn'].includes(process.env.SDN_TEST_LOG_LEVEL ?? '') ? (process.env.SDN_TEST_LOG_LEVEL as Level) : 'error');

export async function startTestController(databaseUrl: string, opts: ControllerOptions & { port?: number } = {}): Promise<RunningController> {
  return startController(
    { ...loadConfig({}), databaseUrl, host: '127.0.0.1', port: opts.port ?? 0, logLevel: testLogLevel(), pollMs: 100, statusFlushMs: 20 },
    opts,
  );
}

export async function waitUntil(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** True when the host's agent is connected and has acknowledged everything the controller has for it. */
export function hostSettled(c: RunningController, hostId: string): boolean {
  const s = c.controller.streams.get(hostId);
  return !!s?.session?.isOpen && !s.inflight && s.pending.size === 0 && s.pendingValid;
}

/** True when the controller has applied every change up to `revision` and every connected agent acked its newest version. */
export function settled(c: RunningController, revision: number, agents: SimulatedAgent[]): boolean {
  const ctl = c.controller;
  if (ctl.engine.revision < revision) return false;
  return agents.every((a) => hostSettled(c, a.host.id) && a.mirror.version === ctl.streams.get(a.host.id)!.acked);
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
