import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { makeTree } from '../support/directory';
import { controllerTestWorld, SimulatedAgent, startTestController, waitUntil } from '../support/controller';

const w = controllerTestWorld({ namePrefix: 'h', vtepNet: '192.0.2' });
const { makeHost, endpoint, settle, assertSame } = w;

describe('controller', () => {
  it('streams every host its state, marks endpoints active when all hosts acked, and exposes metrics', async () => {
    const { subnet, domain } = await makeTree(w.t.api, 'basic');
    const hosts = [await makeHost(), await makeHost()];
    const web = await w.t.api.make(`/api/v1/domains/${domain.id}/policy-groups`, { name: 'web' });
    await w.t.api.make(`/api/v1/domains/${domain.id}/acl-rules`, { priority: 10, direction: 'ingress', action: 'allow', peer: { type: 'policyGroup', id: web.id }, protocol: 'tcp', destinationPorts: ['80'] });
    const e1 = await endpoint(subnet.id, hosts[0].id, [web.id]);
    await endpoint(subnet.id, hosts[1].id);
    const c = await startTestController(w.t.db.url);
    const agents = hosts.map((h) => new SimulatedAgent(c.agentUrl, h));
    try {
      const ref = await settle(c, agents);
      assertSame(agents, ref, c);
      assert.ok(agents[1].state.remoteEndpoints.has(e1.id), 'the other host has e1 as a remote endpoint');
      // a new endpoint after start: activated and timed
      const e2 = await endpoint(subnet.id, hosts[1].id, [web.id]);
      await waitUntil(async () => (await w.t.api.get(`/api/v1/endpoints/${e2.id}`)).body.status === 'active', 'e2 active');
      assert.equal((await w.t.api.get(`/api/v1/endpoints/${e1.id}`)).body.status, 'active');
      assertSame(agents, await settle(c, agents), c);
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
      assert.equal((await w.t.api.get(`/api/v1/endpoints/${e3.id}`)).body.status, 'pending');
      const late = new SimulatedAgent(c.agentUrl, lonely);
      agents.push(late);
      await waitUntil(async () => (await w.t.api.get(`/api/v1/endpoints/${e3.id}`)).body.status === 'active', 'e3 active once its host acked');
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      await c.close();
    }
  });

  it('refuses an agent with a bad credential or a VTEP that is not its own', async () => {
    const h = await makeHost();
    const c = await startTestController(w.t.db.url);
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
