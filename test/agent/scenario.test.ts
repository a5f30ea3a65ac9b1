/**
 * The whole product on three hosts: a real directory and controller, an agent
 * process per host, containers attached with the CNI plugin, two enterprises
 * with the same 10.0.0.0/24. Nothing here is compiled by the test: every
 * kernel object comes from the controller's stream through the agents.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OPERATOR_KEY, startTestDirectory, TestDirectory } from '../support/directory';
import { startTestController } from '../support/controller';
import type { RunningController } from '../../apps/controller/src/controller';
import { AgentProcess, registerHostsAndStartAgents, stopAgentProcess, until } from '../support/agent-process';
import { CniChain, makeCniPath } from '../support/agent-cni';
import { greeting, inNs, NetnsWorld, ping, runPrefix, sh, startGreeter, TestHost, waitForLine } from '../support/netns';

describe('three hosts, two tenants, agents and CNI end to end', () => {
  const world = new NetnsWorld(runPrefix('sc'));
  let t: TestDirectory;
  let controller: RunningController;
  const agents: AgentProcess[] = [];
  let hostIds = new Map<string, string>();
  let cniPath: ReturnType<typeof makeCniPath>;
  const ids: Record<string, any> = {};
  const c: Record<string, { ns: string; ip: string; mac: string; host: string; attach: any; chain: CniChain; result: any }> = {};

  async function container(name: string, host: string, subnet: any, groups: string[]): Promise<void> {
    const ns = `${world.prefix}c${name}`;
    sh(['ip', 'netns', 'add', ns]);
    const chain = new CniChain(cniPath.dir, world.host(host).ns, {
      cniVersion: '1.0.0',
      name: 'sdnnet',
      plugins: [{ type: 'sdn', directoryUrl: t.dir.url, apiKey: OPERATOR_KEY, subnetId: subnet.id, hostId: hostIds.get(host), policyGroupIds: groups }],
    });
    const attach = { containerId: `${world.prefix}-${name}`, ifName: 'eth0', netns: `/run/netns/${ns}` };
    const result = await chain.add(attach);
    c[name] = { ns, ip: result.ips[0].address.split('/')[0], mac: result.interfaces[0].mac, host, attach, chain, result };
  }

  /** what the agent programmed on a host: FDB, permanent neighbours, routes, nftables (learned neighbours age on their own) */
  const domainText = (h: TestHost) => {
    const out: string[] = [];
    for (const ns of sh(['ip', 'netns', 'list']).split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(h.domainPrefix))) {
      out.push(sh(['bridge', '-n', ns, 'fdb', 'show']), sh(['ip', '-n', ns, 'neigh', 'show', 'nud', 'permanent']), sh(['ip', '-n', ns, 'route', 'show']), inNs(ns, ['nft', 'list', 'ruleset']));
    }
    return out.join('\n');
  };

  before(async () => {
    world.setup(3);
    t = await startTestDirectory();
    controller = await startTestController(t.db.url);
    cniPath = makeCniPath([]);
    hostIds = await registerHostsAndStartAgents(world, t.api, controller.agentUrl, agents);
    const api = t.api;
    const entA = await api.make('/api/v1/enterprises', { name: 'sc-a' });
    ids.domA = await api.make(`/api/v1/enterprises/${entA.id}/domains`, { name: 'a', defaultIngressAction: 'deny', defaultEgressAction: 'allow' });
    const zoneA = await api.make(`/api/v1/domains/${ids.domA.id}/zones`, { name: 'a' });
    ids.a1 = await api.make(`/api/v1/zones/${zoneA.id}/subnets`, { name: 'front', cidr: '10.0.0.0/24' });
    ids.a2 = await api.make(`/api/v1/zones/${zoneA.id}/subnets`, { name: 'back', cidr: '10.0.1.0/24' });
    for (const g of ['web', 'app', 'db']) ids[g] = await api.make(`/api/v1/domains/${ids.domA.id}/policy-groups`, { name: g });
    const rule = (body: any) => api.make(`/api/v1/domains/${ids.domA.id}/acl-rules`, { direction: 'ingress', action: 'allow', ...body });
    await rule({ priority: 100, appliesTo: { type: 'policyGroup', id: ids.db.id }, peer: { type: 'policyGroup', id: ids.app.id }, protocol: 'tcp', destinationPorts: ['5432'] });
    await rule({ priority: 200, protocol: 'icmp' });
    await rule({ priority: 210, appliesTo: { type: 'policyGroup', id: ids.app.id }, protocol: 'tcp', destinationPorts: ['8080'] });
    const entB = await api.make('/api/v1/enterprises', { name: 'sc-b' });
    const domB = await api.make(`/api/v1/enterprises/${entB.id}/domains`, { name: 'b', defaultIngressAction: 'allow', defaultEgressAction: 'allow' });
    const zoneB = await api.make(`/api/v1/domains/${domB.id}/zones`, { name: 'b' });
    ids.b = await api.make(`/api/v1/zones/${zoneB.id}/subnets`, { name: 'front', cidr: '10.0.0.0/24' });

    await container('web1', 'h1', ids.a1, [ids.web.id]);
    await container('app1', 'h2', ids.a1, [ids.app.id]);
    await container('app2', 'h3', ids.a1, [ids.app.id]);
    await container('db1', 'h3', ids.a2, [ids.db.id]);
    await container('b1', 'h1', ids.b, []);
    await container('b2', 'h2', ids.b, []);
    for (const [name, port] of [['db1', 5432], ['app1', 8080], ['b2', 8080]] as const) await waitForLine(startGreeter(world, c[name].ns, port, name), 'up');
  });

  after(async () => {
    for (const a of agents) await stopAgentProcess(a, 'SIGKILL');
    world.cleanup();
    cniPath?.remove();
    await controller?.close();
    await t?.stop();
  });

  it('carries one subnet across hosts over VXLAN and routes between subnets', () => {
    assert.ok(ping(c.web1.ns, c.app1.ip), 'web1 (h1) pings app1 (h2)');
    assert.equal(greeting(c.web1.ns, c.app1.ip, 8080), 'hello from app1');
    assert.ok(ping(c.web1.ns, c.db1.ip), 'web1 (10.0.0.0/24, h1) pings db1 (10.0.1.0/24, h3)');
  });

  it('enforces the ACL, and a higher-priority deny wins', async () => {
    assert.equal(greeting(c.web1.ns, c.db1.ip, 5432), null, 'web -> db tcp/5432 is denied by default');
    assert.equal(greeting(c.app1.ns, c.db1.ip, 5432), 'hello from db1', 'app -> db tcp/5432 is allowed, and its return traffic passes');
    const app2 = (await t.api.get(`/api/v1/endpoints?externalId=${encodeURIComponent(`cni:${c.app2.attach.containerId}/eth0`)}`)).body.items[0];
    const deny = await t.api.make(`/api/v1/domains/${ids.domA.id}/acl-rules`, {
      priority: 50,
      direction: 'ingress',
      action: 'deny',
      appliesTo: { type: 'policyGroup', id: ids.db.id },
      peer: { type: 'endpoint', id: app2.id },
      protocol: 'tcp',
      destinationPorts: ['5432'],
    });
    await until('the deny on h3', () => domainText(world.host('h3')).includes(deny.id));
    assert.equal(greeting(c.app2.ns, c.db1.ip, 5432), null, 'app2 is denied by the priority-50 rule');
    assert.equal(greeting(c.app1.ns, c.db1.ip, 5432), 'hello from db1', 'app1 is still allowed');
  });

  it('keeps the tenants apart although they use the same addresses', () => {
    assert.equal(c.b2.ip, c.app1.ip, 'the same address in both tenants');
    assert.equal(greeting(c.b1.ns, c.b2.ip, 8080), 'hello from b2', "B reaches B's endpoint");
    assert.equal(greeting(c.web1.ns, c.b2.ip, 8080), 'hello from app1', "A reaches A's endpoint at that address");
    assert.ok(!ping(c.b1.ns, c.db1.ip, 1), "B has no route into A's other subnet");
  });

  it("removes a deleted container's endpoint from every host (CNI DEL; a rule names it, so it is unplaced)", async () => {
    const gone = c.app2;
    const before = world.hosts.map((h) => domainText(h));
    assert.ok(before.every((text) => text.includes(gone.ip)), 'every host knows app2 first');
    await gone.chain.del(gone.attach, gone.result);
    const mentions = (h: TestHost) =>
      domainText(h)
        .split('\n')
        .filter((l) => l.includes(gone.mac) || new RegExp(`(^|[^0-9.])${gone.ip.replace(/\./g, '\\.')}([^0-9]|$)`).test(l));
    for (const h of world.hosts) {
      await until(`${h.name} forgets app2`, () => mentions(h).length === 0, 15000).catch((e) => {
        throw new Error(`${e.message}: ${mentions(h).join(' / ')}`);
      });
    }
    assert.ok(ping(c.web1.ns, c.app1.ip), 'the others still talk');
    const ep = (await t.api.get(`/api/v1/endpoints?externalId=${encodeURIComponent(`cni:${gone.attach.containerId}/eth0`)}`)).body.items[0];
    assert.equal(ep.hostId, null, 'the endpoint the deny rule names stays in the directory, on no host');
  });
});
