/**
 * Real Docker: Debian's dockerd on a test host, our network and IPAM driver
 * on a plugin socket, the host agent underneath. Containers on a network that
 * maps onto a directory subnet and policy group ping each other and a peer on
 * another host over VXLAN, and the domain's ACL decides what else passes.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { endpointIfName } from '#sdn/compiler';
import { DockerPlugin } from '../../apps/agent/src/docker';
import { OPERATOR_KEY, startTestDirectory, TestDirectory } from '../support/directory';
import { startTestController } from '../support/controller';
import type { RunningController } from '../../apps/controller/src/controller';
import { AgentProcess, registerHostsAndStartAgents, stopAgentProcess, until } from '../support/agent-process';
import { docker, TestDockerd } from '../support/agent-docker';
import { NetnsWorld, runPrefix, sh } from '../support/netns';

describe('Docker remote network and IPAM driver', () => {
  const world = new NetnsWorld(runPrefix('dk'));
  const driver = `${world.prefix}sdn`;
  let t: TestDirectory;
  let controller: RunningController;
  const agents: AgentProcess[] = [];
  let plugin: DockerPlugin;
  let dockerd: TestDockerd;
  let hostIds = new Map<string, string>();
  const ids: Record<string, any> = {};
  const ipOf = async (c: string) => (await docker(dockerd.sock, ['inspect', '-f', '{{(index .NetworkSettings.Networks "net1").IPAddress}}', c])).out.trim();
  const exec = (c: string, cmd: string[]) => docker(dockerd.sock, ['exec', c, ...cmd]);

  before(async () => {
    world.setup(2);
    t = await startTestDirectory();
    controller = await startTestController(t.db.url);
    hostIds = await registerHostsAndStartAgents(world, t.api, controller.agentUrl, agents);
    const ent = await t.api.make('/api/v1/enterprises', { name: 'dk' });
    ids.dom = await t.api.make(`/api/v1/enterprises/${ent.id}/domains`, { name: 'dk', defaultIngressAction: 'deny', defaultEgressAction: 'allow' });
    ids.zone = await t.api.make(`/api/v1/domains/${ids.dom.id}/zones`, { name: 'z' });
    ids.web = await t.api.make(`/api/v1/domains/${ids.dom.id}/policy-groups`, { name: 'web' });
    await t.api.make(`/api/v1/domains/${ids.dom.id}/acl-rules`, {
      priority: 10,
      direction: 'ingress',
      action: 'allow',
      appliesTo: { type: 'policyGroup', id: ids.web.id },
      peer: { type: 'policyGroup', id: ids.web.id },
      protocol: 'icmp',
    });
    plugin = new DockerPlugin({
      socketPath: `/run/docker/plugins/${driver}.sock`,
      directoryUrl: t.dir.url,
      apiKey: OPERATOR_KEY,
      hostId: hostIds.get('h1')!,
      hostNetns: world.host('h1').ns,
      stateFile: `/tmp/${driver}-state.json`,
      readyTimeoutMs: 30000,
    });
    await plugin.start();
    dockerd = new TestDockerd(world.host('h1').ns);
    await dockerd.start();
    await dockerd.importBusybox(`local/${driver}`);
  });

  after(async () => {
    await dockerd?.stop();
    await plugin?.stop();
    sh(['rm', '-f', `/tmp/${driver}-state.json`]);
    for (const a of agents) await stopAgentProcess(a, 'SIGKILL');
    world.cleanup();
    await controller?.close();
    await t?.stop();
  });

  it('creates a network on a directory subnet and policy group, and containers ping each other and a peer on another host', async () => {
    const net = await docker(dockerd.sock, [
      'network', 'create', '-d', driver, '--ipam-driver', driver, '--subnet', '10.8.0.0/24',
      '-o', `zone=${ids.zone.id}`, '-o', `policyGroup=${ids.web.id}`, 'net1',
    ]);
    assert.equal(net.code, 0, net.out);
    ids.subnet = (await t.api.get(`/api/v1/zones/${ids.zone.id}/subnets`)).body.items.find((s: any) => s.cidr === '10.8.0.0/24');
    assert.ok(ids.subnet, 'the network is a subnet of the zone');
    for (const c of ['c1', 'c2']) {
      const r = await docker(dockerd.sock, ['run', '-d', '--network', 'net1', '--name', c, `local/${driver}`, 'sh', '-c', 'nc -ll -p 8080 -e echo hello & exec sleep 600']);
      assert.equal(r.code, 0, r.out);
    }
    const ip2 = await ipOf('c2');
    const eps = (await t.api.get(`/api/v1/subnets/${ids.subnet.id}/endpoints`)).body.items;
    assert.equal(eps.length, 2, 'one endpoint per container');
    assert.ok(eps.some((e: any) => e.ip === ip2 && e.hostId === hostIds.get('h1') && e.policyGroupIds[0] === ids.web.id));
    const mac2 = (await exec('c2', ['cat', '/sys/class/net/eth0/address'])).out.trim();
    assert.equal(mac2, eps.find((e: any) => e.ip === ip2).mac, "the container has the directory's MAC");
    const p = await exec('c1', ['ping', '-c', '3', '-W', '2', ip2]);
    assert.equal(p.code, 0, `c1 pings c2: ${p.out}`);

    // a peer in the same network on h2 (plugged as the CNI plugin would)
    const peer = await t.api.make(`/api/v1/subnets/${ids.subnet.id}/endpoints`, { name: 'peer', hostId: hostIds.get('h2'), policyGroupIds: [ids.web.id] });
    const h2 = world.host('h2');
    await until('the peer veth on h2', () => {
      try {
        sh(['ip', '-n', h2.ns, 'link', 'show', `ec${endpointIfName(peer.id).slice(2)}`]);
        return true;
      } catch {
        return false;
      }
    });
    world.attachContainer('peer', h2, { ifName: endpointIfName(peer.id), ip: peer.ip, prefixLength: 24, gateway: ids.subnet.gateway });
    const q = await exec('c1', ['ping', '-c', '3', '-W', '2', peer.ip]);
    assert.equal(q.code, 0, `c1 (docker on h1) pings the peer on h2 over VXLAN: ${q.out}`);
  });

  it('enforces the ACL: tcp/8080 is denied by default, then allowed by a rule', async () => {
    const ip2 = await ipOf('c2');
    const denied = await exec('c1', ['nc', '-w', '2', ip2, '8080']);
    assert.ok(!denied.out.includes('hello'), 'no rule allows tcp/8080');
    await t.api.make(`/api/v1/domains/${ids.dom.id}/acl-rules`, {
      priority: 20,
      direction: 'ingress',
      action: 'allow',
      appliesTo: { type: 'policyGroup', id: ids.web.id },
      peer: { type: 'policyGroup', id: ids.web.id },
      protocol: 'tcp',
      destinationPorts: ['8080'],
    });
    await until('the rule reaches h1', async () => (await exec('c1', ['nc', '-w', '2', ip2, '8080'])).out.includes('hello'));
  });

  it('keeps two tenants apart on one Docker host, with the same CIDR and the same addresses', async () => {
    const entB = await t.api.make('/api/v1/enterprises', { name: 'dk-b' });
    const domB = await t.api.make(`/api/v1/enterprises/${entB.id}/domains`, { name: 'dk-b', defaultIngressAction: 'allow', defaultEgressAction: 'allow' });
    const zoneB = await t.api.make(`/api/v1/domains/${domB.id}/zones`, { name: 'zb' });
    const net = await docker(dockerd.sock, ['network', 'create', '-d', driver, '--ipam-driver', driver, '--subnet', '10.8.0.0/24', '-o', `zone=${zoneB.id}`, 'net2']);
    assert.equal(net.code, 0, net.out);
    for (const c of ['c3', 'c4']) {
      const r = await docker(dockerd.sock, ['run', '-d', '--network', 'net2', '--name', c, '--hostname', c, `local/${driver}`, 'sh', '-c', 'nc -ll -p 8080 -e hostname & exec sleep 600']);
      assert.equal(r.code, 0, r.out);
    }
    const ipOf2 = async (c: string) => (await docker(dockerd.sock, ['inspect', '-f', '{{(index .NetworkSettings.Networks "net2").IPAddress}}', c])).out.trim();
    const [ip1, ip2, ip3, ip4] = [await ipOf('c1'), await ipOf('c2'), await ipOf2('c3'), await ipOf2('c4')];
    assert.deepEqual([ip3, ip4].sort(), [ip1, ip2].sort(), 'tenant B got the same addresses as tenant A');
    const other = ip3 === ip1 ? ip2 : ip1; // the address c3 does not have itself
    const answer = (await exec('c3', ['nc', '-w', '2', other, '8080'])).out.trim();
    assert.equal(answer, other === ip4 ? 'c4' : 'c3', "c3 reaches its own tenant's container at that address");
    await docker(dockerd.sock, ['rm', '-f', 'c3', 'c4']);
    assert.equal((await docker(dockerd.sock, ['network', 'rm', 'net2'])).code, 0);
  });

  it('fails a call, with a message saying why, when the directory accepts the connection and never answers, and answers the next', async () => {
    // a second driver in front of a directory that hangs: without a bound, Docker's call (and every call queued behind
    // it, the driver answers one at a time) waited for undici's 300 s
    const held: Socket[] = [];
    const hung = createServer((s) => void held.push(s));
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    const name = `${driver}h`;
    const stuck = new DockerPlugin({
      socketPath: `/run/docker/plugins/${name}.sock`,
      directoryUrl: `http://127.0.0.1:${(hung.address() as AddressInfo).port}`,
      apiKey: OPERATOR_KEY,
      hostId: hostIds.get('h1')!,
      hostNetns: world.host('h1').ns,
      stateFile: `/tmp/${name}-state.json`,
      readyTimeoutMs: 30000,
      directoryTimeoutMs: 1000,
    });
    await stuck.start();
    try {
      for (const net of ['hung1', 'hung2']) {
        const started = Date.now();
        const r = await docker(dockerd.sock, ['network', 'create', '-d', name, '--ipam-driver', name, '--subnet', '10.88.0.0/24', '-o', `zone=${ids.zone.id}`, net]);
        assert.notEqual(r.code, 0, r.out);
        assert.match(r.out, /did not answer GET \/api\/v1\/zones\/[0-9a-f-]+ in 1 s/);
        assert.ok(Date.now() - started < 20_000, `answered in ${Date.now() - started} ms`);
      }
      assert.ok(held.length >= 2, 'the driver did reach the hung directory');
    } finally {
      await stuck.stop();
      for (const s of held) s.destroy();
      hung.close();
      sh(['rm', '-f', `/tmp/${name}-state.json`]);
    }
  });

  it('removes the endpoints and the subnet when containers and the network go', async () => {
    assert.equal((await docker(dockerd.sock, ['rm', '-f', 'c1', 'c2'])).code, 0);
    const eps = (await t.api.get(`/api/v1/subnets/${ids.subnet.id}/endpoints`)).body.items;
    assert.deepEqual(eps.map((e: any) => e.name), ['peer'], 'only the h2 peer is left');
    await t.api.del(`/api/v1/endpoints/${eps[0].id}`);
    const rm = await docker(dockerd.sock, ['network', 'rm', 'net1']);
    assert.equal(rm.code, 0, rm.out);
    assert.equal((await t.api.get(`/api/v1/subnets/${ids.subnet.id}`)).status, 404, 'the subnet the network made is gone');
  });
});
