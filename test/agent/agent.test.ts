/**
 * The agent process end to end: a real directory and controller, agent
 * processes programming two host namespaces, containers plugged into the
 * veths the agents made. Restarting an agent keeps an established TCP
 * connection; stopping the controller keeps traffic flowing, and changes made
 * meanwhile arrive when it returns.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { endpointIfName } from '#sdn/compiler';
import { freePort, startTestDirectory, TestDirectory } from '../support/directory';
import { startTestController } from '../support/controller';
import type { RunningController } from '../../apps/controller/src/controller';
import { agentHealth, AgentProcess, startAgentProcess, stopAgentProcess, until } from '../support/agent-process';
import { NetnsWorld, ping, runPrefix, sh, startGreeter, waitForLine } from '../support/netns';

describe('agent process with the real controller', () => {
  const world = new NetnsWorld(runPrefix('ag'));
  let t: TestDirectory;
  let controller: RunningController | null = null;
  let port = 0;
  const agents = new Map<string, AgentProcess>();
  const hosts = new Map<string, { id: string; credential: string }>();
  let subnet: any;
  const eps: Record<string, any> = {};
  const containerNs: Record<string, string> = {};

  const stateFile = (name: string) => `/tmp/${world.prefix}-${name}.state.json`;
  const startAgent = async (name: string) => {
    const h = hosts.get(name)!;
    agents.set(name, await startAgentProcess(world.host(name), { controllerUrl: controller!.agentUrl, hostId: h.id, credential: h.credential, stateFile: stateFile(name) }));
  };
  const vethReady = (host: string, epId: string) => {
    try {
      sh(['ip', '-n', world.host(host).ns, 'link', 'show', `ec${endpointIfName(epId).slice(2)}`]);
      return true;
    } catch {
      return false;
    }
  };
  const plug = (name: string, host: string) => {
    const e = eps[name];
    containerNs[name] = world.attachContainer(name, world.host(host), { ifName: endpointIfName(e.id), ip: e.ip, prefixLength: 24, gateway: subnet.gateway });
  };

  before(async () => {
    world.setup(2);
    t = await startTestDirectory();
    port = await freePort();
    controller = await startTestController(t.db.url, { port });
    for (const h of world.hosts) {
      const made = await t.api.make('/api/v1/hosts', { name: `${world.prefix}-${h.name}`, vtepIp: h.vtep });
      hosts.set(h.name, { id: made.id, credential: made.credential });
    }
    const ent = await t.api.make('/api/v1/enterprises', { name: 'ag' });
    const dom = await t.api.make(`/api/v1/enterprises/${ent.id}/domains`, { name: 'ag', defaultIngressAction: 'allow', defaultEgressAction: 'allow' });
    const zone = await t.api.make(`/api/v1/domains/${dom.id}/zones`, { name: 'z' });
    subnet = await t.api.make(`/api/v1/zones/${zone.id}/subnets`, { name: 's', cidr: '10.9.0.0/24' });
    for (const [name, host] of [['e1', 'h1'], ['e2', 'h2']]) {
      eps[name] = await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name, kind: 'container', hostId: hosts.get(host)!.id });
    }
    await startAgent('h1');
    await startAgent('h2');
    await until('the agents to create the veths', () => vethReady('h1', eps.e1.id) && vethReady('h2', eps.e2.id));
    plug('e1', 'h1');
    plug('e2', 'h2');
    await waitForLine(startGreeter(world, containerNs.e2, 7000, 'e2'), 'up');
  });

  after(async () => {
    for (const a of agents.values()) await stopAgentProcess(a, 'SIGKILL');
    world.cleanup();
    for (const name of ['h1', 'h2']) rmSync(stateFile(name), { force: true });
    await controller?.close();
    await t?.stop();
  });

  it('programs the hosts, acknowledges, and the endpoints turn active', async () => {
    assert.ok(ping(containerNs.e1, eps.e2.ip), 'e1 (h1) pings e2 (h2)');
    await until('endpoints active', async () => {
      const s = await Promise.all([eps.e1, eps.e2].map(async (e) => (await t.api.get(`/api/v1/endpoints/${e.id}`)).body.status));
      return s.every((x) => x === 'active');
    });
    const h = await agentHealth(agents.get('h1')!);
    assert.equal(h.status, 'ok');
    assert.ok(h.version > 0);
    const metrics = await (await fetch(`${agents.get('h1')!.url}/metrics`)).text();
    assert.match(metrics, /sdn_agent_versions_applied_total\{kind="snapshot"\} 1/);
    assert.match(metrics, /sdn_agent_apply_seconds_count/);
  });

  it('keeps an established TCP connection across an agent restart, resuming from its state file with no differences', async () => {
    const conn = world.spawnIn(containerNs.e1, [
      process.execPath,
      '-e',
      `const s=require('net').connect(7000,'${eps.e2.ip}');s.on('data',(d)=>process.stdout.write(d));process.stdin.on('data',(d)=>s.write(d));`,
    ]);
    await waitForLine(conn, 'hello from e2');
    // the state file has caught up with the last acknowledged version (it is written at most once a second)
    const acked = (await agentHealth(agents.get('h1')!)).version;
    await until('the state file', () => existsSync(stateFile('h1')) && JSON.parse(readFileSync(stateFile('h1'), 'utf8')).resume.version === acked);
    const report = async () => (((await (await fetch(`${controller!.url}/agents`)).json()) as any).items as any[]).find((a) => a.hostId === hosts.get('h1')!.id);
    const snapshotsBefore = (await report()).snapshotsSent;
    await stopAgentProcess(agents.get('h1'), 'SIGKILL');
    await startAgent('h1');
    const h = await until('h1 reconciled', async () => {
      const x = await agentHealth(agents.get('h1')!);
      return x.status === 'ok' ? x : null;
    });
    assert.equal(h.reconcileDifferences, 0, 'the kernel already held the state: nothing was touched');
    assert.equal(h.resumedFromFile, true);
    await until('h1 back and settled at the controller', async () => {
      const r = await report();
      return r.connected && r.inFlight === null && (await agentHealth(agents.get('h1')!)).controllerConnected;
    });
    assert.equal((await report()).snapshotsSent, snapshotsBefore, 'the controller needed no snapshot for the restarted agent');
    const echoed = waitForLine(conn, 'after-restart');
    conn.stdin!.write('after-restart\n');
    await echoed;
    world.kill(conn);
  });

  it('forwards while the controller is away, and takes the changes made meanwhile when it returns', async () => {
    await controller!.close();
    controller = null;
    await until('agents notice', async () => !(await agentHealth(agents.get('h2')!)).controllerConnected);
    assert.ok(ping(containerNs.e1, eps.e2.ip), 'traffic flows without the controller');
    eps.e3 = await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'e3', kind: 'container', hostId: hosts.get('h2')!.id });
    controller = await startTestController(t.db.url, { port });
    await until('the new endpoint on h2', () => vethReady('h2', eps.e3.id));
    plug('e3', 'h2');
    assert.ok(ping(containerNs.e1, eps.e3.ip), 'e1 (h1) pings e3, created while the controller was away');
    await until('e3 active', async () => (await t.api.get(`/api/v1/endpoints/${eps.e3.id}`)).body.status === 'active');
    for (const [name, a] of agents) {
      const metrics = await (await fetch(`${a.url}/metrics`)).text();
      assert.doesNotMatch(metrics, /sdn_agent_versions_rejected_total\{/, `${name} resumed with the new controller without rejecting a version`);
    }
  });

  it('rejects a version the kernel refuses (the controller sees the reason), keeps forwarding, and recovers on the next change', async () => {
    const zoneId = subnet.zoneId;
    const s2 = await t.api.make(`/api/v1/zones/${zoneId}/subnets`, { name: 's2', cidr: '10.9.1.0/24' });
    const h1 = world.host('h1');
    const domNs = sh(['ip', 'netns', 'list']).split('\n').map((l) => l.split(' ')[0]).find((n) => n.startsWith(h1.domainPrefix))!;
    // something in the way of the bridge the new subnet needs on h1
    sh(['ip', '-n', domNs, 'link', 'add', `br${s2.l2Vni}`, 'type', 'veth', 'peer', 'name', 'blocker']);
    eps.e4 = await t.api.make(`/api/v1/subnets/${s2.id}/endpoints`, { name: 'e4', kind: 'container', hostId: hosts.get('h1')!.id });
    const report = await until('the controller to see the nack', async () => {
      const agentsSeen = ((await (await fetch(`${controller!.url}/agents`)).json()) as any).items as any[];
      const r = agentsSeen.find((a) => a.hostId === hosts.get('h1')!.id);
      return r?.lastNack ? r : null;
    });
    assert.match(report.lastNack.reason, /File exists/, 'the kernel message reaches the controller');
    assert.match((await agentHealth(agents.get('h1')!)).lastError, /File exists/);
    assert.ok(ping(containerNs.e1, eps.e2.ip), 'the last good state keeps forwarding');
    assert.notEqual((await t.api.get(`/api/v1/endpoints/${eps.e4.id}`)).body.status, 'active');

    sh(['ip', '-n', domNs, 'link', 'del', 'blocker']);
    // the next change of h1's state brings a fresh version, which now applies
    await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'e5', kind: 'container', hostId: hosts.get('h2')!.id });
    await until('e4 active', async () => (await t.api.get(`/api/v1/endpoints/${eps.e4.id}`)).body.status === 'active');
    assert.ok(vethReady('h1', eps.e4.id));
    assert.equal((await agentHealth(agents.get('h1')!)).lastError, null);
  });
});
