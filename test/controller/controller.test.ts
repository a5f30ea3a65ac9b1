import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { compileAll, describeDifference, digestOf, HostState } from '#sdn/compiler';
import { createModelStore, ModelStore } from '#sdn/store';
import { makeTree, startTestDirectory, TestDirectory } from '../support/directory';
import { settled, SimHost, SimulatedAgent, startTestController, waitUntil } from '../support/controller';
import type { RunningController } from '../../apps/controller/src/controller';

let t: TestDirectory;
let store: ModelStore;

before(async () => {
  t = await startTestDirectory();
  store = createModelStore(t.db.url);
});
after(async () => {
  await store.close();
  await t.stop();
});

let hostSeq = 0;
async function makeHost(): Promise<SimHost> {
  hostSeq++;
  const h = await t.api.make('/api/v1/hosts', { name: `h${hostSeq}`, vtepIp: `192.0.2.${hostSeq}` });
  return { id: h.id, credential: h.credential, vtepIp: h.vtepIp };
}

async function endpoint(subnetId: string, hostId: string | null, policyGroupIds: string[] = []) {
  return t.api.make(`/api/v1/subnets/${subnetId}/endpoints`, { name: `ep${Math.random().toString(36).slice(2, 8)}`, hostId, policyGroupIds });
}

/** Waits until the controller and agents are settled at the database's revision, then returns the reference states. */
async function settle(c: RunningController, agents: SimulatedAgent[]): Promise<Map<string, HostState>> {
  const snap = await store.loadSnapshot();
  await waitUntil(() => settled(c, snap.revision, agents), `settled at revision ${snap.revision}`);
  return compileAll(snap, c.controller.engine.opts);
}

function assertSame(c: RunningController, agents: SimulatedAgent[], ref: Map<string, HostState>): void {
  for (const a of agents) {
    const want = ref.get(a.host.id)!;
    assert.deepEqual(describeDifference(c.controller.engine.stateOf(a.host.id), want), [], `controller vs database, host ${a.host.id}`);
    assert.deepEqual(describeDifference(a.state, want), [], `agent vs database, host ${a.host.id}`);
  }
}

describe('controller', () => {
  it('streams every host its state, marks endpoints active when all hosts acked, and exposes metrics', async () => {
    const { subnet, domain } = await makeTree(t.api, 'basic');
    const hosts = [await makeHost(), await makeHost()];
    const web = await t.api.make(`/api/v1/domains/${domain.id}/policy-groups`, { name: 'web' });
    await t.api.make(`/api/v1/domains/${domain.id}/acl-rules`, { priority: 10, direction: 'ingress', action: 'allow', peer: { type: 'policyGroup', id: web.id }, protocol: 'tcp', destinationPorts: ['80'] });
    const e1 = await endpoint(subnet.id, hosts[0].id, [web.id]);
    await endpoint(subnet.id, hosts[1].id);
    const c = await startTestController(t.db.url);
    const agents = hosts.map((h) => new SimulatedAgent(c.agentUrl, h));
    try {
      const ref = await settle(c, agents);
      assertSame(c, agents, ref);
      assert.ok(agents[1].state.remoteEndpoints.has(e1.id), 'the other host has e1 as a remote endpoint');
      // a new endpoint after start: activated and timed
      const e2 = await endpoint(subnet.id, hosts[1].id, [web.id]);
      await waitUntil(async () => (await t.api.get(`/api/v1/endpoints/${e2.id}`)).body.status === 'active', 'e2 active');
      assert.equal((await t.api.get(`/api/v1/endpoints/${e1.id}`)).body.status, 'active');
      assertSame(c, agents, await settle(c, agents));
      const metrics = await (await fetch(`${c.url}/metrics`)).text();
      assert.match(metrics, /sdn_endpoint_activation_seconds_count [1-9]/);
      assert.match(metrics, new RegExp(`sdn_agent_acked_version\\{host="${hosts[0].id}"\\} [1-9]`));
      const health = (await (await fetch(`${c.url}/healthz`)).json()) as { status: string };
      assert.equal(health.status, 'ok');
      // an endpoint whose host has no agent stays pending
      const lonely = await makeHost();
      const e3 = await endpoint(subnet.id, lonely.id);
      await settle(c, agents);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal((await t.api.get(`/api/v1/endpoints/${e3.id}`)).body.status, 'pending');
      const late = new SimulatedAgent(c.agentUrl, lonely);
      agents.push(late);
      await waitUntil(async () => (await t.api.get(`/api/v1/endpoints/${e3.id}`)).body.status === 'active', 'e3 active once its host acked');
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      await c.close();
    }
  });

  it('refuses an agent with a bad credential or a VTEP that is not its own', async () => {
    const h = await makeHost();
    const c = await startTestController(t.db.url);
    const bad = new SimulatedAgent(c.agentUrl, { ...h, credential: 'sdnh_wrong' }, { minBackoffMs: 10_000 });
    const spoof = new SimulatedAgent(c.agentUrl, { ...h, vtepIp: '198.51.100.99' }, { minBackoffMs: 10_000 });
    try {
      await waitUntil(() => bad.rejectedWith !== null && spoof.rejectedWith !== null, 'both refused');
      assert.match(bad.rejectedWith!, /bad credential/);
      assert.match(spoof.rejectedWith!, /does not match/);
      assert.equal(bad.snapshots + spoof.snapshots, 0);
    } finally {
      await bad.stop();
      await spoof.stop();
      await c.close();
    }
  });
});
