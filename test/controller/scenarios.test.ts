import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { AnyEntry, HostState, TABLES } from '#sdn/compiler';
import { encodeAck, encodeHello, encodeNack } from '#sdn/wire';
import WebSocket from 'ws';
import { makeTree } from '../support/directory';
import { controllerTestWorld, settled, SimulatedAgent, startTestController, waitUntil } from '../support/controller';

const w = controllerTestWorld({ namePrefix: 's', vtepNet: '203.0.113' });
const { makeHost, endpoint, settle, assertSame } = w;

describe('controller scenarios', () => {
  it('resumes agents after a controller restart without resending their state', async () => {
    const { subnet } = await makeTree(w.t.api, 'restart');
    const hosts = [await makeHost(), await makeHost(), await makeHost()];
    for (let i = 0; i < 9; i++) await endpoint(subnet.id, hosts[i % 3].id);
    let c = await startTestController(w.t.db.url);
    const port = c.port;
    const agents = hosts.map((h) => new SimulatedAgent(c.agentUrl, h, { minBackoffMs: 20 }));
    try {
      assertSame(agents, await settle(c, agents), c);
      const before = agents.map((a) => a.snapshots);
      assert.deepEqual(before, [1, 1, 1]);
      await c.close();
      c = await startTestController(w.t.db.url, { port });
      await waitUntil(() => agents.every((a) => a.connects === 2), 'agents reconnected');
      assertSame(agents, await settle(c, agents), c);
      // a change after the restart arrives as a delta
      const e = await endpoint(subnet.id, hosts[0].id);
      assertSame(agents, await settle(c, agents), c);
      assert.ok(agents[1].state.remoteEndpoints.has(e.id));
      assert.deepEqual(agents.map((a) => a.snapshots), before, 'no snapshot after the restart');
      // the new controller continues the agents' version numbers
      for (const a of agents) assert.ok(c.controller.streams.get(a.host.id)!.acked > 1);
      // the model changes while no controller runs: the next one rebuilds each agent's state at its revision and sends a delta
      await c.close();
      const during = [await endpoint(subnet.id, hosts[1].id), await endpoint(subnet.id, hosts[2].id)];
      await w.t.api.del(`/api/v1/endpoints/${e.id}`);
      c = await startTestController(w.t.db.url, { port });
      await waitUntil(() => agents.every((a) => a.connects === 3), 'agents reconnected again');
      assertSame(agents, await settle(c, agents), c);
      assert.ok(agents[0].state.remoteEndpoints.has(during[0].id) && !agents[0].state.localEndpoints.has(e.id));
      assert.deepEqual(agents.map((a) => a.snapshots), before, 'still no snapshot');
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      await c.close();
    }
  });

  it('sends one coalesced delta to an agent that missed many versions', async () => {
    const { subnet, domain } = await makeTree(w.t.api, 'missed', '10.9.0.0/16');
    const g = await w.t.api.make(`/api/v1/domains/${domain.id}/policy-groups`, { name: 'g' });
    await w.t.api.make(`/api/v1/domains/${domain.id}/acl-rules`, { priority: 1, direction: 'ingress', action: 'allow', peer: { type: 'policyGroup', id: g.id } });
    const hosts = [await makeHost(), await makeHost()];
    for (const h of hosts) await endpoint(subnet.id, h.id, [g.id]);
    const c = await startTestController(w.t.db.url);
    const stay = new SimulatedAgent(c.agentUrl, hosts[0]);
    let away = new SimulatedAgent(c.agentUrl, hosts[1]);
    try {
      await settle(c, [stay, away]);
      await away.stop();
      const created = [];
      for (let i = 0; i < 60; i++) created.push(await endpoint(subnet.id, hosts[i % 2].id, i % 3 ? [g.id] : []));
      for (const e of created.slice(0, 20)) await w.t.api.del(`/api/v1/endpoints/${e.id}`);
      await settle(c, [stay]);
      const stream = c.controller.streams.get(hosts[1].id)!;
      assert.ok(stream.version - stream.acked <= 1, 'nothing queued per version for the absent agent');
      const missed = stay.deltas;
      assert.ok(missed >= 2, `the connected agent got ${missed} deltas`);
      away = new SimulatedAgent(c.agentUrl, hosts[1], { resumeFrom: away });
      const ref = await settle(c, [stay, away]);
      assertSame([stay, away], ref, c);
      assert.equal(away.snapshots, 0, 'resumed without a snapshot');
      assert.equal(away.deltas, 1, 'one coalesced delta');
    } finally {
      await stay.stop();
      await away.stop();
      await c.close();
    }
  });

  it('never lets a stalled agent slow the others, and sends it one coalesced delta when it catches up', async () => {
    const { subnet } = await makeTree(w.t.api, 'slow', '10.11.0.0/16');
    const hosts = [await makeHost(), await makeHost()];
    for (const h of hosts) await endpoint(subnet.id, h.id);
    const c = await startTestController(w.t.db.url);
    const fast = new SimulatedAgent(c.agentUrl, hosts[0]);
    const slow = new SimulatedAgent(c.agentUrl, hosts[1]);
    try {
      await settle(c, [fast, slow]);
      slow.stall();
      const created: Array<{ id: string }> = [];
      for (let i = 0; i < 30; i++) created.push(await endpoint(subnet.id, hosts[0].id));
      const snap = await w.store.loadSnapshot();
      await waitUntil(() => settled(c, snap.revision, [fast]), 'the fast agent is current');
      for (const e of created) assert.ok(fast.state.localEndpoints.has(e.id));
      assert.equal(slow.held, 1, 'one message in flight to the stalled agent, the rest coalesced');
      const row = ((await (await fetch(`${c.url}/agents`)).json()) as { items: any[] }).items.find((r) => r.hostId === hosts[1].id);
      assert.ok(row.pendingEntries > 0, `pending entries ${row.pendingEntries}`); // what came after the message in flight, coalesced
      assert.match(await (await fetch(`${c.url}/metrics`)).text(), new RegExp(`sdn_agent_lag_versions\\{host="${hosts[1].id}"\\} 1`));
      const deltasBefore = slow.deltas;
      slow.unstall();
      assertSame([fast, slow], await settle(c, [fast, slow]), c);
      assert.equal(slow.deltas - deltasBefore, 2, 'the held delta, then one coalesced delta');
      assert.equal(slow.snapshots, 1);
      await waitUntil(async () => (await w.t.api.get(`/api/v1/endpoints/${created[29].id}`)).body.status === 'active', 'active after the slow host acked');
    } finally {
      await fast.stop();
      await slow.stop();
      await c.close();
    }
  });

  it('shows a moved or regrouped endpoint as pending until every host that must learn the change acknowledged it', async () => {
    const { domain, subnet } = await makeTree(w.t.api, 'moving', '10.12.0.0/16');
    const web = await w.t.api.make(`/api/v1/domains/${domain.id}/policy-groups`, { name: 'web' });
    await w.t.api.make(`/api/v1/domains/${domain.id}/acl-rules`, {
      priority: 10,
      direction: 'ingress',
      action: 'allow',
      appliesTo: { type: 'policyGroup', id: web.id },
      peer: { type: 'any', id: null },
      protocol: 'tcp',
      destinationPorts: ['80'],
    });
    const hosts = [await makeHost(), await makeHost()];
    const e = await endpoint(subnet.id, hosts[0].id);
    // both hosts keep an endpoint of the subnet: both must learn where e is and which groups it is in
    await endpoint(subnet.id, hosts[0].id);
    await endpoint(subnet.id, hosts[1].id);
    const c = await startTestController(w.t.db.url);
    const a0 = new SimulatedAgent(c.agentUrl, hosts[0]);
    const a1 = new SimulatedAgent(c.agentUrl, hosts[1]);
    const status = async () => (await w.t.api.get(`/api/v1/endpoints/${e.id}`)).body.status;
    try {
      await settle(c, [a0, a1]);
      await waitUntil(async () => (await status()) === 'active', 'active at first');
      for (const change of [{ hostId: hosts[1].id }, { policyGroupIds: [web.id] }]) {
        a1.stall();
        const r = await w.t.api.patch(`/api/v1/endpoints/${e.id}`, change);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.status, 'pending', `${JSON.stringify(change)}: pending from the commit on`);
        // the other host acknowledges; the stalled one has not: still pending, whatever the controller writes meanwhile
        await waitUntil(() => a0.mirror.revision >= r.body.revision, `the other host has the change (${a0.mirror.revision} < ${r.body.revision} ${typeof r.body.revision}, ${JSON.stringify(change)})`, 3000);
        await new Promise((done) => setTimeout(done, 300));
        assert.equal(await status(), 'pending', `${JSON.stringify(change)}: a host has not acknowledged it yet`);
        a1.unstall();
        await waitUntil(async () => (await status()) === 'active', `${JSON.stringify(change)}: active once both hosts acknowledged`);
      }
      assert.ok(a1.state.localEndpoints.has(e.id), 'the endpoint now lives on the second host');
      // a rename changes nothing on any host: the endpoint stays active
      const renamed = await w.t.api.patch(`/api/v1/endpoints/${e.id}`, { name: 'renamed' });
      assert.equal(renamed.body.status, 'active');
      // a status write for an older revision (an activation that finished just as the endpoint changed) leaves the newer change pending
      await a0.stop();
      await a1.stop();
      const moved = await w.t.api.patch(`/api/v1/endpoints/${e.id}`, { hostId: hosts[0].id });
      assert.equal(moved.body.status, 'pending');
      await w.store.setEndpointStatus([{ id: e.id, revision: moved.body.revision - 1 }], 'active');
      assert.equal(await status(), 'pending', 'not overridden by a stale activation');
      await w.store.setEndpointStatus([{ id: e.id, revision: moved.body.revision }], 'active');
      assert.equal(await status(), 'active');
    } finally {
      await a0.stop();
      await a1.stop();
      await c.close();
    }
  });

  it('resumes an agent whose last ack was lost with the connection, without a snapshot', async () => {
    const { subnet } = await makeTree(w.t.api, 'lostack', '10.12.0.0/16');
    const hosts = [await makeHost(), await makeHost()];
    for (const h of hosts) await endpoint(subnet.id, h.id);
    const c = await startTestController(w.t.db.url);
    const other = new SimulatedAgent(c.agentUrl, hosts[0]);
    let agent = new SimulatedAgent(c.agentUrl, hosts[1]);
    try {
      await settle(c, [other, agent]);
      agent.stall();
      const e = await endpoint(subnet.id, hosts[0].id);
      await waitUntil(() => agent.held === 1, 'a delta in flight');
      await agent.stop(); // the connection ends before the agent answers
      agent.unstall(); // it applies the delta; its ack cannot be sent
      assert.ok(agent.state.remoteEndpoints.has(e.id));
      await endpoint(subnet.id, hosts[0].id); // and the model moves on
      agent = new SimulatedAgent(c.agentUrl, hosts[1], { resumeFrom: agent });
      assertSame([other, agent], await settle(c, [other, agent]), c);
      assert.equal(agent.snapshots, 0);
      assert.equal(agent.deltas, 1);
    } finally {
      await other.stop();
      await agent.stop();
      await c.close();
    }
  });

  it('reports an agent that rejects a version, resends it a snapshot, and leaves the others alone', async () => {
    const a = await makeTree(w.t.api, 'nackA', '10.10.0.0/24');
    const b = await makeTree(w.t.api, 'nackB', '10.10.0.0/24');
    const hosts = [await makeHost(), await makeHost()];
    await endpoint(a.subnet.id, hosts[0].id);
    await endpoint(a.subnet.id, hosts[1].id);
    await endpoint(b.subnet.id, hosts[0].id);
    const c = await startTestController(w.t.db.url);
    let refuse = false;
    const good = new SimulatedAgent(c.agentUrl, hosts[0]);
    const picky = new SimulatedAgent(c.agentUrl, hosts[1], { reject: (m) => (refuse ? `nft: Could not process rule: No such file or directory (version ${m.version})` : null) });
    try {
      await settle(c, [good, picky]);
      refuse = true;
      const e1 = await endpoint(a.subnet.id, hosts[0].id);
      await waitUntil(() => picky.nacks >= 1, 'a rejection');
      const report = (await (await fetch(`${c.url}/agents`)).json()) as { items: any[] };
      const row = report.items.find((r) => r.hostId === hosts[1].id);
      assert.match(row.lastNack.reason, /Could not process rule/);
      assert.match(await (await fetch(`${c.url}/metrics`)).text(), new RegExp(`sdn_agent_nacks_total\\{host="${hosts[1].id}"\\} [1-9]`));
      // the other agent keeps getting its changes, and endpoints the picky host need not know activate
      const eb = await endpoint(b.subnet.id, hosts[0].id);
      await waitUntil(async () => (await w.t.api.get(`/api/v1/endpoints/${eb.id}`)).body.status === 'active', 'eb active');
      await waitUntil(async () => (await w.t.api.get(`/api/v1/endpoints/${e1.id}`)).body.status === 'error', 'e1 shown as error: a host refused it');
      assert.ok(good.state.localEndpoints.has(e1.id) && good.state.localEndpoints.has(eb.id));
      assert.equal(good.nacks, 0);
      assert.equal(good.snapshots, 1);
      // the picky agent recovers: it gets a snapshot of the current state
      refuse = false;
      await endpoint(a.subnet.id, hosts[0].id); // a change unblocks the rejected snapshot
      assertSame([good, picky], await settle(c, [good, picky]), c);
      assert.ok(picky.snapshots >= 2);
      await waitUntil(async () => (await w.t.api.get(`/api/v1/endpoints/${e1.id}`)).body.status === 'active', 'e1 active');
    } finally {
      await good.stop();
      await picky.stop();
      await c.close();
    }
  });

  it('keeps tenants apart: a host holds only the domains it has endpoints in', async () => {
    const a = await makeTree(w.t.api, 'isoA', '10.20.0.0/24');
    const b = await makeTree(w.t.api, 'isoB', '10.20.0.0/24'); // the same addresses in another enterprise
    const a2 = await w.t.api.make(`/api/v1/enterprises/${a.enterprise.id}/domains`, { name: 'isoA-2' });
    const a2z = await w.t.api.make(`/api/v1/domains/${a2.id}/zones`, { name: 'z' });
    const a2s = await w.t.api.make(`/api/v1/zones/${a2z.id}/subnets`, { name: 's', cidr: '10.21.0.0/24' });
    for (const tree of [a, b]) {
      const g = await w.t.api.make(`/api/v1/domains/${tree.domain.id}/policy-groups`, { name: 'web' });
      await w.t.api.make(`/api/v1/domains/${tree.domain.id}/acl-rules`, { priority: 5, direction: 'ingress', action: 'allow', appliesTo: { type: 'policyGroup', id: g.id } });
    }
    const [h1, h2, h3] = [await makeHost(), await makeHost(), await makeHost()];
    await endpoint(a.subnet.id, h1.id);
    await endpoint(a.subnet.id, h2.id);
    await endpoint(b.subnet.id, h2.id);
    await endpoint(b.subnet.id, h3.id);
    await endpoint(a2s.id, h3.id);
    const c = await startTestController(w.t.db.url);
    const agents = [h1, h2, h3].map((h) => new SimulatedAgent(c.agentUrl, h));
    try {
      assertSame(agents, await settle(c, agents), c);
      const snap = await w.store.loadSnapshot();
      const domainsOf = (s: HostState) => new Set([...s.domains.keys()]);
      assert.deepEqual(domainsOf(agents[0].state), new Set([a.domain.id]));
      assert.deepEqual(domainsOf(agents[1].state), new Set([a.domain.id, b.domain.id]));
      assert.deepEqual(domainsOf(agents[2].state), new Set([b.domain.id, a2.id]));
      // every entry a host holds belongs to a domain it is present in
      const endpointDomain = new Map(snap.endpoints.map((e) => [e.id, e.domainId]));
      const subnetDomain = new Map(snap.subnets.map((s) => [s.id, s.domainId]));
      for (const ag of agents) {
        const present = domainsOf(ag.state);
        const setDomain = new Map([...ag.state.addressSets.values()].map((s) => [s.name, s.domainId]));
        for (const table of TABLES) {
          for (const e of (ag.state[table] as Map<string, AnyEntry>).values()) {
            const x = e as unknown as Record<string, string>;
            let d: string | undefined;
            if (table === 'host') continue;
            if (table === 'setElements') d = setDomain.get(x.set);
            else if (x.domainId) d = x.domainId;
            else if (x.endpointId) d = endpointDomain.get(x.endpointId);
            else if (x.subnetId) d = subnetDomain.get(x.subnetId);
            assert.ok(d && present.has(d), `${table} entry ${JSON.stringify(e)} on host ${ag.host.id} is outside its domains`);
          }
        }
      }
      // h1 holds no address of B, although B uses the same prefix: no endpoint of B is known to it
      const bEndpoints = snap.endpoints.filter((e) => e.domainId === b.domain.id).map((e) => e.id);
      for (const id of bEndpoints) for (const tb of ['localEndpoints', 'remoteEndpoints', 'routes'] as const) assert.ok(!agents[0].state[tb].has(id));
      // placing a B endpoint on h1 brings B's section; deleting it takes it away again
      const visitor = await endpoint(b.subnet.id, h1.id);
      await settle(c, agents);
      assert.ok(agents[0].state.domains.has(b.domain.id));
      await w.t.api.del(`/api/v1/endpoints/${visitor.id}`);
      assertSame(agents, await settle(c, agents), c);
      assert.deepEqual(domainsOf(agents[0].state), new Set([a.domain.id]));
    } finally {
      await Promise.all(agents.map((x) => x.stop()));
      await c.close();
    }
  });
  it('withstands a holder of a host credential sending random hellos, acks and nacks: the others keep their state, the real agent converges', async () => {
    const { subnet } = await makeTree(w.t.api, 'hostile', '10.11.0.0/24');
    const hosts = [await makeHost(), await makeHost(), await makeHost()];
    for (let i = 0; i < 12; i++) await endpoint(subnet.id, hosts[i % 3].id);
    const c = await startTestController(w.t.db.url);
    const others = [new SimulatedAgent(c.agentUrl, hosts[0]), new SimulatedAgent(c.agentUrl, hosts[1])];
    const evil = hosts[2];
    let real: SimulatedAgent | null = null;
    // a seeded generator: a failure names its seed, and TEST_SEED=<seed> replays it
    const seed = process.env.TEST_SEED ? Number(process.env.TEST_SEED) : Date.now() % 2 ** 31;
    let x = seed;
    const next = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const pick = <T>(a: readonly T[]): T => a[Math.floor(next() * a.length)];
    try {
      await settle(c, others);
      const before = others.map((a) => a.snapshots + a.deltas);
      for (let round = 0; round < 150; round++) {
        const ws = new WebSocket(c.agentUrl);
        await new Promise((r) => ws.once('open', r).once('error', r));
        ws.on('error', () => undefined);
        const closed = new Promise((r) => ws.once('close', r));
        const claim = { epoch: pick(['', c.controller.epoch, 'e'.repeat(200)]), version: pick([0, 1, 2, 7, 1000, 2 ** 40]), revision: pick([0, 1, 5, 2 ** 40]), digest: pick(['', 'x', 'ff'.repeat(16)]) };
        if (ws.readyState === WebSocket.OPEN) {
          ws.send(encodeHello({ hostId: evil.id, credential: evil.credential, vtepIp: evil.vtepIp, ...claim }));
          for (let i = Math.floor(next() * 12); i > 0; i--) {
            ws.send(next() < 0.7 ? encodeAck(pick([0, 1, 2, 3, 2 ** 40]), pick(['', 'ff'.repeat(16)])) : encodeNack(pick([0, 1, 2]), pick(['', 'x'.repeat(3000)])));
            if (next() < 0.3) await new Promise((r) => setTimeout(r, 5));
          }
        }
        if (next() < 0.5) ws.close();
        else ws.terminate();
        await Promise.race([closed, new Promise((r) => setTimeout(r, 200))]);
      }
      // the other hosts' agents were left alone: no message since they settled
      assert.deepEqual(others.map((a) => a.snapshots + a.deltas), before, `seed ${seed}`);
      real = new SimulatedAgent(c.agentUrl, evil);
      const e = await endpoint(subnet.id, evil.id);
      assertSame([...others, real], await settle(c, [...others, real]), c);
      await waitUntil(async () => (await w.t.api.get(`/api/v1/endpoints/${e.id}`)).body.status === 'active', `an endpoint of that host activates (seed ${seed})`);
    } finally {
      await Promise.all([...others, ...(real ? [real] : [])].map((a) => a.stop()));
      await c.close();
    }
  });
});
