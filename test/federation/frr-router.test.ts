/**
 * FRR (zebra + bgpd) as the DC router of a domain, in its own namespace on
 * the underlay: its L3VNI lives in its default VRF (zebra `vni`, a VXLAN
 * device in a bridge with an address), and it originates an EVPN type-5
 * default route (`default-originate ipv4`) that the controller's speaker
 * learns; the domain's hosts then route through it over the l3Vni.
 */
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { endpointIfName } from '#sdn/compiler';
import type { RunningController } from '../../apps/controller/src/controller';
import { federate, Federation } from '../../apps/controller/src/federation';
import { createLogger } from '../../apps/controller/src/log';
import { waitFor } from '../bgp/support/wait.js';
import { AgentProcess, startAgentProcess, stopAgentProcess, until } from '../support/agent-process';
import { startTestController } from '../support/controller';
import { makeTree, startTestDirectory, TestDirectory } from '../support/directory';
import { NetnsWorld, ping, runPrefix, sh } from '../support/netns';

const L3VNI = 50901;
const ROUTER_VTEP = '192.0.2.9';
const OURS = '169.254.99.1';
const ROUTER = '169.254.99.2';

describe('FRR as the DC router: its default route on every host', { timeout: 180_000 }, () => {
  const world = new NetnsWorld(runPrefix('fr'));
  const dir = mkdtempSync(join(tmpdir(), 'frr-router-'));
  const procs: ChildProcess[] = [];
  let t: TestDirectory;
  let ctl: RunningController;
  let fed: Federation;
  let agent: AgentProcess;
  let container = '';
  let routerNs = '';
  const w: Record<string, any> = {};
  const vtysh = (cmd: string) => sh(['vtysh', '--vty_socket', dir, '-c', cmd]);

  before(async () => {
    world.setup(1);
    const r = world.addHost('r', ROUTER_VTEP);
    routerNs = r.ns;
    // the router's L3VNI in its default VRF, and a network behind it
    for (const cmd of [
      ['link', 'add', 'br' + L3VNI, 'type', 'bridge'],
      ['link', 'add', 'vx' + L3VNI, 'type', 'vxlan', 'id', String(L3VNI), 'local', ROUTER_VTEP, 'dstport', '4789', 'nolearning'],
      ['link', 'set', 'vx' + L3VNI, 'master', 'br' + L3VNI],
      ['link', 'set', 'vx' + L3VNI, 'up'],
      ['link', 'set', 'br' + L3VNI, 'up'],
      ['addr', 'add', '10.99.0.1/24', 'dev', 'br' + L3VNI],
    ]) sh(['ip', '-n', routerNs, ...cmd]);
    sh(['ip', 'netns', 'exec', routerNs, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    // BGP between the controller (root namespace) and the router over a veth
    sh(['ip', 'link', 'add', `${world.prefix}bgp`, 'type', 'veth', 'peer', 'name', 'bgp0', 'netns', routerNs]);
    sh(['ip', 'addr', 'add', `${OURS}/30`, 'dev', `${world.prefix}bgp`]);
    sh(['ip', 'link', 'set', `${world.prefix}bgp`, 'up']);
    sh(['ip', '-n', routerNs, 'addr', 'add', `${ROUTER}/30`, 'dev', 'bgp0']);
    sh(['ip', '-n', routerNs, 'link', 'set', 'bgp0', 'up']);
    chmodSync(dir, 0o777);
    writeFileSync(join(dir, 'zebra.conf'), `hostname dc-router\nvni ${L3VNI}\n!\n`);
    writeFileSync(
      join(dir, 'bgpd.conf'),
      `hostname dc-router
router bgp 65010
 bgp router-id 10.0.0.9
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor ${OURS} remote-as 65000
 neighbor ${OURS} timers connect 1
 address-family l2vpn evpn
  neighbor ${OURS} activate
  advertise-all-vni
  advertise ipv4 unicast
  default-originate ipv4
  route-target import 65000:9700
 exit-address-family
!
`,
    );
    for (const f of ['zebra.conf', 'bgpd.conf']) chmodSync(join(dir, f), 0o666);
    const frr = (daemon: string, extra: string[]) => {
      const log = openSync(join(dir, `${daemon}.log`), 'a');
      const p = spawn('ip', ['netns', 'exec', routerNs, `/usr/lib/frr/${daemon}`, '-f', join(dir, `${daemon}.conf`), '-z', join(dir, 'zserv.api'), '-i', join(dir, `${daemon}.pid`), '--vty_socket', dir, ...extra], {
        stdio: ['ignore', log, log],
      });
      procs.push(p);
    };
    // zebra runs as the frr user (a member of frrvty, as Debian runs it); bgpd as root
    frr('zebra', ['-u', 'frr', '-g', 'frr']);
    await until('zebra', () => {
      try {
        vtysh('show version');
        return true;
      } catch {
        return false;
      }
    });
    frr('bgpd', ['-S', '-P', '0', '-p', '179']);
    // zebra takes up VNIs once bgpd enables EVPN (advertise-all-vni)
    await until(`the router's L3VNI`, () => {
      try {
        return /L3/.test(vtysh('show evpn vni'));
      } catch {
        return false;
      }
    }).catch((e) => {
      throw new Error(`${e.message}: ${readFileSync(join(dir, 'zebra.log'), 'utf8')} ${readFileSync(join(dir, 'bgpd.log'), 'utf8')}`);
    });

    t = await startTestDirectory();
    const tree = await makeTree(t.api, 'frr-dc', '10.71.0.0/16');
    // the domain's l3Vni is the router's, and it imports the router's target
    await t.api.del(`/api/v1/subnets/${tree.subnet.id}`);
    await t.api.del(`/api/v1/zones/${tree.zone.id}`);
    await t.api.del(`/api/v1/domains/${tree.domain.id}`);
    w.domain = await t.api.make(`/api/v1/enterprises/${tree.enterprise.id}/domains`, {
      name: 'routed', l3Vni: L3VNI, importRouteTargets: ['65000:9700', `65010:${L3VNI}`], exportRouteTargets: ['65000:9700'],
      defaultIngressAction: 'allow', defaultEgressAction: 'allow',
    });
    const zone = await t.api.make(`/api/v1/domains/${w.domain.id}/zones`, { name: 'z' });
    w.subnet = await t.api.make(`/api/v1/zones/${zone.id}/subnets`, { name: 's', cidr: '10.71.0.0/24' });
    const h = world.host('h1');
    w.host = await t.api.make('/api/v1/hosts', { name: 'h1', vtepIp: h.vtep });
    w.ep = await t.api.make(`/api/v1/subnets/${w.subnet.id}/endpoints`, { name: 'c1', kind: 'container', hostId: w.host.id });
    const sp = await t.api.make('/api/v1/bgp-speakers', { name: 'dc1', datacenter: 'dc1', asn: 65000, routerId: '10.255.41.100', listenAddress: OURS, listenPort: 21921 });
    w.peer = await t.api.make(`/api/v1/bgp-speakers/${sp.id}/bgp-neighbors`, { name: 'dc-router', address: ROUTER, port: 179, asn: 65010 });
    ctl = await startTestController(t.dir.databaseUrl);
    fed = federate(ctl.controller, { databaseUrl: t.dir.databaseUrl, speakerName: 'dc1', log: createLogger('error'), connectRetryTime: 1 });
    await fed.start();
    agent = await startAgentProcess(h, { controllerUrl: ctl.agentUrl, hostId: w.host.id, credential: w.host.credential });
    await until('the veth of c1', () => {
      try {
        sh(['ip', '-n', h.ns, 'link', 'show', `ec${endpointIfName(w.ep.id).slice(2)}`]);
        return true;
      } catch {
        return false;
      }
    });
    container = world.attachContainer('c1', h, { ifName: endpointIfName(w.ep.id), ip: w.ep.ip, prefixLength: 24, gateway: w.subnet.gateway });
  });

  after(async () => {
    await stopAgentProcess(agent, 'SIGKILL');
    for (const p of procs) p.kill('SIGKILL');
    await fed?.stop();
    await ctl?.close();
    await t?.stop();
    try {
      sh(['ip', 'link', 'del', `${world.prefix}bgp`]);
    } catch {
      /* gone with the namespace */
    }
    world.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it("installs the router's EVPN default route in the domain on the host, through the router's VTEP and router MAC", async () => {
    await waitFor('BGP session with FRR', () => fed.speaker?.neighbors()[0]?.state === 'established', 60_000);
    const h = world.host('h1');
    const domainNs = () => (JSON.parse(sh(['ip', '-j', 'netns', 'list']).trim() || '[]') as Array<{ name: string }>).map((n) => n.name).filter((n) => n.startsWith(h.domainPrefix));
    await until('default route via the router', () => domainNs().some((ns) => /default via 192\.0\.2\.9 .*onlink/.test(sh(['ip', '-n', ns, 'route', 'show', 'default']))), 30_000);
    const rmac = sh(['ip', '-n', routerNs, '-j', 'link', 'show', 'br' + L3VNI]);
    const mac = (JSON.parse(rmac)[0] as { address: string }).address;
    const fdb = domainNs().map((ns) => sh(['bridge', '-n', ns, 'fdb', 'show'])).join('\n');
    assert.ok(fdb.includes(`${mac} dev`) && fdb.includes(`dst ${ROUTER_VTEP}`), `the router MAC ${mac} is reached at the router VTEP`);
    // FRR learned the subnet (type 5) and routes back to it: the container reaches the network behind the router
    await until('FRR has our subnet', () => vtysh('show bgp l2vpn evpn route type prefix').includes('10.71.0.0'), 30_000);
    await until('the container reaches 10.99.0.1 behind the router', () => ping(container, '10.99.0.1', 1), 30_000);
  });
});
