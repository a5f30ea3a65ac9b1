/**
 * The CNI plugin through a runtime's eyes: a conflist chaining our plugin with
 * Debian's reference plugins (tuning, portmap, bandwidth), real agents and a
 * real controller behind it, containers as network namespaces.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { startTestDirectory, TestDirectory, OPERATOR_KEY } from '../support/directory';
import { startTestController } from '../support/controller';
import type { RunningController } from '../../apps/controller/src/controller';
import { AgentProcess, registerHostsAndStartAgents, stopAgentProcess, until } from '../support/agent-process';
import { CniChain, makeCniPath, runPlugin } from '../support/agent-cni';
import { PgProxy } from '../support/pg-proxy';
import { inNs, NetnsWorld, ping, runPrefix, sh } from '../support/netns';

describe('CNI plugin chained with the reference plugins', () => {
  const world = new NetnsWorld(runPrefix('cn'));
  let t: TestDirectory;
  let controller: RunningController;
  const agents: AgentProcess[] = [];
  let hostIds = new Map<string, string>();
  let cniPath: ReturnType<typeof makeCniPath>;
  let subnet: any;
  let web: any;
  const chains = new Map<string, CniChain>();
  const results = new Map<string, any>();

  const sdnConf = (host: string) => ({
    type: 'sdn',
    directoryUrl: t.dir.url,
    apiKey: OPERATOR_KEY,
    subnetId: subnet.id,
    hostId: hostIds.get(host)!,
    policyGroupIds: [web.id],
  });
  const container = (name: string) => {
    const ns = `${world.prefix}c${name}`;
    sh(['ip', 'netns', 'add', ns]);
    return { containerId: `${world.prefix}-${name}-0123456789abcdef`, ifName: 'eth0', netns: `/run/netns/${ns}`, ns };
  };
  const c1 = () => ({ containerId: `${world.prefix}-c1-0123456789abcdef`, ifName: 'eth0', netns: `/run/netns/${world.prefix}cc1` });

  before(async () => {
    world.setup(2);
    t = await startTestDirectory();
    controller = await startTestController(t.db.url);
    hostIds = await registerHostsAndStartAgents(world, t.api, controller.agentUrl, agents);
    const ent = await t.api.make('/api/v1/enterprises', { name: 'cni' });
    const dom = await t.api.make(`/api/v1/enterprises/${ent.id}/domains`, { name: 'cni', defaultIngressAction: 'deny', defaultEgressAction: 'allow' });
    const zone = await t.api.make(`/api/v1/domains/${dom.id}/zones`, { name: 'z' });
    subnet = await t.api.make(`/api/v1/zones/${zone.id}/subnets`, { name: 's', cidr: '10.7.0.0/24' });
    web = await t.api.make(`/api/v1/domains/${dom.id}/policy-groups`, { name: 'web' });
    await t.api.make(`/api/v1/domains/${dom.id}/acl-rules`, { priority: 10, direction: 'ingress', action: 'allow', appliesTo: { type: 'policyGroup', id: web.id }, peer: { type: 'policyGroup', id: web.id }, protocol: 'icmp' });
    cniPath = makeCniPath();
    for (const h of world.hosts) {
      chains.set(
        h.name,
        new CniChain(cniPath.dir, h.ns, {
          cniVersion: '1.0.0',
          name: 'sdnnet',
          plugins: [
            sdnConf(h.name),
            { type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.accept_local': '1' } },
            { type: 'portmap', capabilities: { portMappings: true } },
            { type: 'bandwidth', capabilities: { bandwidth: true } },
          ],
        }),
      );
    }
  });

  after(async () => {
    for (const a of agents) await stopAgentProcess(a, 'SIGKILL');
    world.cleanup();
    cniPath?.remove();
    await controller?.close();
    await t?.stop();
  });

  it('ADDs containers through the whole chain, with a spec-conformant result, and they talk over the overlay', async () => {
    const a = container('c1');
    const b = container('c2');
    const ra = await chains.get('h1')!.add(a);
    const rb = await chains.get('h2')!.add(b);
    results.set('c1', ra);
    results.set('c2', rb);
    assert.equal(ra.cniVersion, '1.0.0');
    assert.equal(ra.interfaces[0].name, 'eth0');
    assert.equal(ra.interfaces[0].sandbox, a.netns);
    assert.match(ra.ips[0].address, /^10\.7\.0\.\d+\/24$/);
    assert.equal(ra.ips[0].gateway, '10.7.0.1');
    assert.equal(ra.ips[0].interface, 0);
    assert.deepEqual(ra.routes, [{ dst: '0.0.0.0/0', gw: '10.7.0.1' }]);
    assert.equal(inNs(a.ns, ['cat', '/proc/sys/net/ipv4/conf/eth0/accept_local']).trim(), '1', 'tuning applied its sysctl on our interface');
    const ipB = rb.ips[0].address.split('/')[0];
    assert.ok(ping(a.ns, ipB), 'c1 (h1) pings c2 (h2)');
    const ep = (await t.api.get(`/api/v1/endpoints?externalId=${encodeURIComponent(`cni:${a.containerId}/eth0`)}`)).body.items[0];
    assert.equal(ep.hostId, hostIds.get('h1'));
    assert.deepEqual(ep.policyGroupIds, [web.id]);
  });

  it('ADDs IPv6 containers too', async () => {
    const zoneId = subnet.zoneId;
    const v6 = await t.api.make(`/api/v1/zones/${zoneId}/subnets`, { name: 's6', cidr: 'fd00:7::/64' });
    await t.api.make(`/api/v1/domains/${subnet.domainId}/acl-rules`, { priority: 20, direction: 'ingress', action: 'allow', etherType: 'ipv6', protocol: 'icmpv6', appliesTo: { type: 'policyGroup', id: web.id } });
    const chain6 = (host: string) => new CniChain(cniPath.dir, world.host(host).ns, { cniVersion: '1.0.0', name: 'sdnnet6', plugins: [{ ...sdnConf(host), subnetId: v6.id }] });
    const a = container('c61');
    const b = container('c62');
    const ra = await chain6('h1').add(a);
    const rb = await chain6('h2').add(b);
    assert.match(ra.ips[0].address, /^fd00:7::[0-9a-f]+\/64$/);
    assert.deepEqual(ra.routes, [{ dst: '::/0', gw: v6.gateway }]);
    assert.ok(ping(a.ns, rb.ips[0].address.split('/')[0]), 'c61 (h1) pings c62 (h2) over IPv6');
  });

  it('is idempotent: a repeated ADD returns the same result and makes no second endpoint; CHECK passes', async () => {
    const again = await chains.get('h1')!.add(c1());
    assert.deepEqual(again, results.get('c1'));
    const list = (await t.api.get(`/api/v1/endpoints?externalId=${encodeURIComponent(`cni:${c1().containerId}/eth0`)}`)).body.items;
    assert.equal(list.length, 1);
    // CHECK through sdn, tuning and portmap. Not bandwidth: its CHECK (and any rate limit) wants the host end of
    // the veth in the host namespace, and ours is on the subnet bridge inside the domain namespace (docs/agent.md)
    const chain = chains.get('h1')!;
    await new CniChain(chain.cniPath, chain.hostNs, { ...chain.conflist, plugins: chain.conflist.plugins.filter((p) => p.type !== 'bandwidth') }).check(c1(), results.get('c1'));
  });

  it('answers VERSION and STATUS, and fails with spec error codes', async () => {
    const h = world.host('h1');
    const v = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'VERSION' }, { cniVersion: '1.1.0' });
    assert.deepEqual(v.json, { cniVersion: '1.1.0', supportedVersions: ['1.0.0', '1.1.0'] });
    const ok = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'STATUS' }, { cniVersion: '1.1.0', name: 'n', ...sdnConf('h1') });
    assert.equal(ok.code, 0, ok.stdout);
    const down = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'STATUS' }, { cniVersion: '1.1.0', name: 'n', ...sdnConf('h1'), directoryUrl: 'http://127.0.0.1:1' });
    assert.equal(down.code, 1);
    assert.equal(down.json.code, 50, 'plugin not available');
    const old = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/none' }, { cniVersion: '0.3.1', name: 'n', ...sdnConf('h1') });
    assert.equal(old.json.code, 1, 'incompatible CNI version');
    assert.equal(old.json.cniVersion, '1.1.0');
    const bad = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/none' }, { cniVersion: '1.0.0', name: 'n', type: 'sdn' });
    assert.equal(bad.json.code, 7, 'invalid network configuration');
    assert.equal(typeof bad.json.msg, 'string');
    const gone = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/none' }, { cniVersion: '1.0.0', name: 'n', ...sdnConf('h1') });
    assert.equal(gone.json.code, 3, 'unknown container');
  });

  it('tells the runtime to try again later (11) when the directory is up but its database is not', async () => {
    // a second directory process on the same database, through a proxy that then loses the database
    const { proxy, url } = await PgProxy.inFrontOf(t.db.url, 'sdn_check');
    const second = await startTestDirectory({ db: { url, stop: async () => undefined } });
    const c = container('503');
    try {
      proxy.refuse(60_000);
      const h = world.host('h1');
      const conf = { cniVersion: '1.0.0', name: 'n', ...sdnConf('h1'), directoryUrl: second.dir.url };
      const add = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'ADD', CNI_CONTAINERID: c.containerId, CNI_IFNAME: c.ifName, CNI_NETNS: c.netns }, conf);
      assert.equal(add.code, 1, add.stdout);
      assert.equal(add.json.code, 11, add.stdout);
      assert.match(add.json.msg, /directory unavailable \(503 \/problems\/database-unavailable\)/);
      const st = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'STATUS' }, { ...conf, cniVersion: '1.1.0' });
      assert.equal(st.json.code, 50, st.stdout);
    } finally {
      sh(['ip', 'netns', 'del', c.ns]);
      await second.stop();
      await proxy.close();
    }
  });

  it('tells the runtime to try again later (11) when the directory accepts the connection and never answers', async () => {
    // a directory that hangs (stopped, or its process frozen): the connection is accepted, nothing comes back
    const held: Socket[] = [];
    const hung = createServer((s) => void held.push(s));
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    const c = container('hung');
    try {
      const h = world.host('h1');
      const conf = { cniVersion: '1.0.0', name: 'n', ...sdnConf('h1'), directoryUrl: `http://127.0.0.1:${(hung.address() as AddressInfo).port}`, directoryTimeoutMs: 1000 };
      const started = Date.now();
      const add = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'ADD', CNI_CONTAINERID: c.containerId, CNI_IFNAME: c.ifName, CNI_NETNS: c.netns }, conf);
      assert.ok(Date.now() - started < 15_000, `answered in ${Date.now() - started} ms`);
      assert.equal(add.code, 1, add.stdout);
      assert.equal(add.json.code, 11, add.stdout);
      assert.match(add.json.msg, /did not answer POST \/api\/v1\/subnets\/[0-9a-f-]+\/endpoints in 1 s/);
      const st = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'STATUS' }, { ...conf, cniVersion: '1.1.0' });
      assert.equal(st.json.code, 50, st.stdout);
      assert.ok(held.length >= 2, 'the plugin did reach the hung directory');
      const bad = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'ADD', CNI_CONTAINERID: c.containerId, CNI_IFNAME: c.ifName, CNI_NETNS: c.netns }, { ...conf, directoryTimeoutMs: '5s' });
      assert.equal(bad.json.code, 7, bad.stdout);
      assert.match(bad.json.msg, /"directoryTimeoutMs" must be a whole number of milliseconds/);
    } finally {
      sh(['ip', 'netns', 'del', c.ns]);
      for (const s of held) s.destroy();
      hung.close();
    }
  });

  it('DELs idempotently, also when the namespace has vanished, and the agents forget the endpoint', async () => {
    const b = { containerId: `${world.prefix}-c2-0123456789abcdef`, ifName: 'eth0', netns: `/run/netns/${world.prefix}cc2` };
    sh(['ip', 'netns', 'del', `${world.prefix}cc2`]); // the runtime removed the container first
    await chains.get('h2')!.del(b, results.get('c2'));
    await chains.get('h2')!.del(b, results.get('c2'));
    const list = (await t.api.get(`/api/v1/endpoints?externalId=${encodeURIComponent(`cni:${b.containerId}/eth0`)}`)).body.items;
    assert.equal(list.length, 0);
    const ipB = results.get('c2').ips[0].address.split('/')[0];
    const h1ns = (await until('h1 forgets c2', () => {
      const out = sh(['ip', 'netns', 'list']);
      const ns = out.split('\n').map((l) => l.split(' ')[0]).find((n) => n.startsWith(world.host('h1').domainPrefix));
      return ns && !sh(['ip', '-n', ns, 'neigh', 'show']).includes(ipB) ? ns : null;
    })) as string;
    assert.ok(h1ns);
    // h2's agent applied the removal of a veth that vanished with the namespace: it is still healthy
    const h: any = await (await fetch(`${agents[1].url}/healthz`)).json();
    assert.equal(h.lastError, null);
  });

  it('GC removes the endpoints of attachments the runtime no longer has', async () => {
    const h = world.host('h1');
    const r = await runPlugin(cniPath.dir, h.ns, 'sdn', { CNI_COMMAND: 'GC' }, { cniVersion: '1.1.0', name: 'sdnnet', ...sdnConf('h1'), 'cni.dev/valid-attachments': [] });
    assert.equal(r.code, 0, r.stdout);
    const list = (await t.api.get(`/api/v1/endpoints?externalId=${encodeURIComponent(`cni:${c1().containerId}/eth0`)}`)).body.items;
    assert.equal(list.length, 0, 'c1 was not among the valid attachments');
  });
});
