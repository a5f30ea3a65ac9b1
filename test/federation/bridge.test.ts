/**
 * Federation down to the hosts: two datacenters (directory, controller with
 * its federation service, one agent each speaking the real protocol) through
 * a gobgpd route reflector. An endpoint of datacenter 2 reaches the state of
 * datacenter 1's host: FDB/ARP entry towards its VTEP, the VTEP in the VNI's
 * flood list, and its address in the local policy group's address set, so
 * that local ACLs match it. Deleting it removes all of that. Restarting
 * datacenter 1's controller leaves those entries on its host until the new
 * one has learned the routes again, and resumes the host with a delta;
 * across a graceful restart the API keeps showing the other datacenter's
 * endpoints, stale until learned again, and drops those withdrawn meanwhile.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Federation } from '../../apps/controller/src/federation';
import type { RunningController } from '../../apps/controller/src/controller';
import { waitFor } from '../bgp/support/wait.js';
import { SimulatedAgent, startTestController } from '../support/controller';
import { startTestDirectory, TestDirectory } from '../support/directory';
import { bgpSpeaker, routeReflector, stretchedDomain, testFederation } from '../support/federation';

/** gobgp's JSON of a RIB: paths by prefix */
type GobgpRib = Record<string, Array<{ nlri: { type: number; value?: { mac?: string } } }>> | null;

const RR = '127.0.6.2';
const RR_PORT = 21881;

interface Dc {
  name: string;
  dir: TestDirectory;
  ctl: RunningController;
  fed: Federation;
  agent: SimulatedAgent;
  domain: any;
  subnet: any;
  groups: Record<string, any>;
  host: any;
  /** its controller and federation run (after() stops only what runs: a second stop would hang) */
  up: boolean;
}

async function datacenter(name: string, address: string, vtep: string): Promise<Dc> {
  const dir = await startTestDirectory();
  const api = dir.api;
  const { domain, subnet, groups } = await stretchedDomain(api, name, {
    cidr: '10.40.0.0/24', l2Vni: 40100, routeTarget: '65000:9300', half: name === 'dc1' ? 'low' : 'high', groups: { app: '65000:20', db: '65000:30' },
  });
  await api.make(`/api/v1/domains/${domain.id}/acl-rules`, {
    priority: 10, direction: 'ingress', action: 'allow', appliesTo: { type: 'policyGroup', id: groups.db.id }, peer: { type: 'policyGroup', id: groups.app.id },
    protocol: 'tcp', destinationPorts: ['5432'],
  });
  const host = await api.make('/api/v1/hosts', { name: `${name}-h1`, vtepIp: vtep });
  await bgpSpeaker(api, name, { address, port: 21882, routerId: vtep.replace(/\.\d+$/, '.100'), neighbor: { address: RR, port: RR_PORT, datacenter: 'fabric' } });
  const ctl = await startTestController(dir.dir.databaseUrl);
  const fed = testFederation(ctl, name);
  await fed.start();
  const agent = new SimulatedAgent(ctl.agentUrl, { id: host.id, credential: host.credential, vtepIp: vtep });
  return { name, dir, ctl, fed, agent, domain, subnet, groups, host, up: true };
}

/** the domain's remote endpoints in the API of `dc` (one page: the tests hold a few) */
const remoteEndpoints = async (dc: Dc) => (await dc.dir.api.get(`/api/v1/domains/${dc.domain.id}/remote-endpoints`)).body.items as any[];

async function stopControl(dc: Dc, options: { graceful?: boolean } = {}): Promise<void> {
  dc.up = false;
  await dc.fed.stop(options);
  await dc.ctl.close();
}

/** a new controller and federation on the old one's port, holding the agents from before for up to `holdMs` */
async function startControl(dc: Dc, port: number, holdMs = 30_000): Promise<void> {
  dc.ctl = await startTestController(dc.dir.dir.databaseUrl, { port, deferResyncMs: holdMs });
  dc.fed = testFederation(dc.ctl, dc.name);
  dc.up = true;
  await dc.fed.start();
}

describe('federation down to the hosts', { timeout: 240_000 }, () => {
  const rr = routeReflector({ address: RR, port: RR_PORT, apiPort: 50097, clients: ['127.0.6.1', '127.0.6.3'] });
  let dc1: Dc;
  let dc2: Dc;

  before(async () => {
    await rr.start();
    dc1 = await datacenter('dc1', '127.0.6.1', '10.255.11.1');
    dc2 = await datacenter('dc2', '127.0.6.3', '10.255.12.1');
    for (const dc of [dc1, dc2]) await waitFor(`${dc.name} session`, () => dc.fed.speaker?.neighbors()[0]?.state === 'established');
  });
  after(async () => {
    for (const dc of [dc1, dc2]) {
      await dc?.agent.stop();
      if (dc?.up) await stopControl(dc);
      await dc?.dir.stop();
    }
    await rr.stop();
  });

  it("gives a host the FDB, ARP, flood and address-set entries of the other datacenter's endpoint, and takes them back on delete", async () => {
    // a local app endpoint puts dc1's host in the domain
    const app = await dc1.dir.api.make(`/api/v1/subnets/${dc1.subnet.id}/endpoints`, { name: 'app-1', hostId: dc1.host.id, policyGroupIds: [dc1.groups.app.id] });
    const db = await dc2.dir.api.make(`/api/v1/subnets/${dc2.subnet.id}/endpoints`, { name: 'db-1', hostId: dc2.host.id, policyGroupIds: [dc2.groups.db.id] });
    const t0 = Date.now();
    const st = dc1.agent;
    const remote = await waitFor('remote endpoint entry on dc1 host', () => [...st.state.remoteEndpoints.values()].find((r) => r.mac === db.mac));
    console.log(`# create in dc2 -> entry on dc1's host: ${Date.now() - t0} ms`);
    assert.deepEqual({ ip: remote.ip, vtep: remote.vtep, subnetId: remote.subnetId }, { ip: db.ip, vtep: '10.255.12.1', subnetId: dc1.subnet.id });
    const flood = [...st.state.peerVteps.values()].find((p) => p.kind === 'l2' && p.vni === 40100 && p.vtep === '10.255.12.1');
    assert.ok(flood, 'the remote VTEP is in the flood list of the stretched VNI');
    const dbSet = [...st.state.addressSets.values()].find((s) => s.sourceType === 'policyGroup' && s.sourceId === dc1.groups.db.id && s.family === 4);
    assert.ok(dbSet, "dc1's db group has an address set on the host (its rule applies to it)");
    assert.ok(st.state.setElements.has(`${dbSet.name}|${db.ip}/32`), "the remote db endpoint is a member of dc1's db group set");
    // the controller shows its BGP side: neighbours, the RIB, metrics
    const nb = (await (await fetch(`${dc1.ctl.url}/bgp/neighbors`)).json()) as any;
    assert.equal(nb.items[0].state, 'established');
    const rib = (await (await fetch(`${dc1.ctl.url}/bgp/rib?family=l2vpn-evpn`)).json()) as any;
    assert.ok(rib.items.some((r: any) => r.evpn?.mac === db.mac && r.source === '127.0.6.2'), 'the RIB holds the route learned from the reflector');
    assert.ok(rib.items.some((r: any) => r.evpn?.mac === app.mac && r.source === 'local'), 'and our own');
    assert.equal((await fetch(`${dc1.ctl.url}/bgp/rib?family=vpnv4`)).status, 400);
    const metrics = await (await fetch(`${dc1.ctl.url}/metrics`)).text();
    assert.match(metrics, /sdn_bgp_neighbor_up\{neighbor="127\.0\.6\.2",state="established"\} 1/);
    assert.match(metrics, /sdn_federation_remote_endpoints 1/);
    assert.match(metrics, /sdn_bgp_neighbor_routes_received\{neighbor="127\.0\.6\.2"\} [1-9]/);
    // the local endpoint still activates: nothing waits for the external VTEP
    await waitFor('app-1 active in dc1', async () => (await dc1.dir.api.get(`/api/v1/endpoints/${app.id}`)).body.status === 'active');
    const t1 = Date.now();
    assert.equal((await dc2.dir.api.del(`/api/v1/endpoints/${db.id}`)).status, 204);
    await waitFor('remote entries gone from dc1 host', () =>
      ![...st.state.remoteEndpoints.values()].some((r) => r.mac === db.mac) &&
      ![...st.state.setElements.keys()].some((k) => k.endsWith(`|${db.ip}/32`)) &&
      ![...st.state.peerVteps.values()].some((p) => p.vtep === '10.255.12.1'),
    );
    console.log(`# delete in dc2 -> entries gone from dc1's host: ${Date.now() - t1} ms`);
  });

  it('keeps the imported entries across a rebuild of the controller model from the database', async () => {
    const db2 = await dc2.dir.api.make(`/api/v1/subnets/${dc2.subnet.id}/endpoints`, { name: 'db-2', hostId: dc2.host.id, policyGroupIds: [dc2.groups.db.id] });
    await waitFor('db-2 on dc1 host', () => [...dc1.agent.state.remoteEndpoints.values()].some((r) => r.mac === db2.mac));
    await (dc1.ctl.controller as any).resync();
    // a later local change flows, and the imported entry is still there
    const app2 = await dc1.dir.api.make(`/api/v1/subnets/${dc1.subnet.id}/endpoints`, { name: 'app-2', hostId: dc1.host.id });
    await waitFor('app-2 on dc1 host', () => dc1.agent.state.localEndpoints.has(app2.id));
    assert.ok([...dc1.agent.state.remoteEndpoints.values()].some((r) => r.mac === db2.mac));
  });

  it("restarts a controller without taking the other datacenter's entries off its host, and resumes the host with a delta", async () => {
    const db3 = await dc2.dir.api.make(`/api/v1/subnets/${dc2.subnet.id}/endpoints`, { name: 'db-3', hostId: dc2.host.id, policyGroupIds: [dc2.groups.db.id] });
    const agent = dc1.agent;
    await waitFor('db-3 on dc1 host', () => [...agent.state.remoteEndpoints.values()].some((r) => r.mac === db3.mac));
    // every state the host holds from now on must keep db-3 (its kernel would otherwise drop the FDB and ARP entries):
    // neither the old controller's shutdown nor the new one's resume may take it away
    const held: string[] = [];
    const seen: string[] = [];
    const watch = (kind: string) => (m: { version: number }) => {
      const has = [...agent.state.remoteEndpoints.values()].some((r) => r.mac === db3.mac);
      seen.push(`${kind} ${m.version} ${has}`);
      if (!has) held.push(`${kind} ${m.version} without db-3`);
    };
    agent.client.on('snapshot', watch('snapshot'));
    agent.client.on('delta', watch('delta'));
    const snapshots = agent.snapshots;
    const port = dc1.ctl.port;
    await stopControl(dc1);
    // the model changes while the controller is away: the host's state is no longer the current one
    const app3 = await dc1.dir.api.make(`/api/v1/subnets/${dc1.subnet.id}/endpoints`, { name: 'app-3', hostId: dc1.host.id });
    const started = Date.now();
    await startControl(dc1, port);
    await waitFor('app-3 on dc1 host', () => agent.state.localEndpoints.has(app3.id), 40_000);
    const took = Date.now() - started;
    console.log(`# controller restart -> host resumed with the local change: ${took} ms`);
    assert.ok(took < 20_000, `released by the neighbours' End-of-RIB, not the 30 s hold (${took} ms)`);
    assert.deepEqual(held, [], `the host kept the other datacenter's endpoint throughout (received: ${seen.join(', ')})`);
    assert.equal(agent.snapshots, snapshots, 'resumed with a delta, not a snapshot');
    assert.ok([...agent.state.remoteEndpoints.values()].some((r) => r.mac === db3.mac));
    // and it follows on: a new endpoint of dc2 arrives
    const db4 = await dc2.dir.api.make(`/api/v1/subnets/${dc2.subnet.id}/endpoints`, { name: 'db-4', hostId: dc2.host.id });
    await waitFor('db-4 on dc1 host', () => [...agent.state.remoteEndpoints.values()].some((r) => r.mac === db4.mac));
  });

  it("keeps the other datacenter's endpoints in the API across a graceful restart, stale until learned again, and sweeps those withdrawn meanwhile", async () => {
    const kept = await dc2.dir.api.make(`/api/v1/subnets/${dc2.subnet.id}/endpoints`, { name: 'db-5', hostId: dc2.host.id });
    const gone = await dc2.dir.api.make(`/api/v1/subnets/${dc2.subnet.id}/endpoints`, { name: 'db-6', hostId: dc2.host.id });
    await waitFor('db-5 and db-6 in the API of dc1', async () => {
      const l = await remoteEndpoints(dc1);
      return [kept, gone].every((d) => l.some((x) => x.mac === d.mac && x.stale === false));
    });
    const port = dc1.ctl.port;
    await stopControl(dc1, { graceful: true }); // as main.ts stops it on SIGTERM
    const away = await remoteEndpoints(dc1);
    assert.ok(away.some((x) => x.mac === kept.mac) && away.some((x) => x.mac === gone.mac), "the API still shows the other datacenter's endpoints");
    assert.deepEqual(away.filter((x) => !x.stale), [], 'every one of them marked stale while no controller has them');
    // withdrawn while dc1's controller is away: the reflector has it no more when the new one connects
    assert.equal((await dc2.dir.api.del(`/api/v1/endpoints/${gone.id}`)).status, 204);
    await waitFor('db-6 withdrawn at the reflector', async () =>
      !Object.values((await rr.json<GobgpRib>(['global', 'rib', '-a', 'evpn'])) ?? {}).flat().some((p) => p.nlri.type === 2 && p.nlri.value?.mac === gone.mac),
    );
    await startControl(dc1, port);
    const after = await waitFor('db-5 learned again and db-6 swept', async () => {
      const l = await remoteEndpoints(dc1);
      return l.some((x) => x.mac === kept.mac && !x.stale) && !l.some((x) => x.mac === gone.mac) ? l : undefined;
    }, 20_000);
    assert.deepEqual(after.filter((x) => x.stale), [], 'nothing stays stale once the routes are complete');
    assert.equal(after.length, [...dc1.fed.remote.values()].filter((i) => i.kind === 'endpoint').length, 'the API shows what the speaker has imported');
  });

  it('sweeps the stale endpoints when the hold runs out with a neighbour still away', async () => {
    await waitFor('dc1 has learned the other datacenter again', async () => (await remoteEndpoints(dc1)).length > 0);
    const port = dc1.ctl.port;
    await stopControl(dc1, { graceful: true });
    await rr.kill('SIGKILL'); // the reflector is away for the whole restart: no session, no End-of-RIB, no quiet second
    try {
      assert.ok((await remoteEndpoints(dc1)).length > 0 && (await remoteEndpoints(dc1)).every((x) => x.stale));
      const started = Date.now();
      await startControl(dc1, port, 3_000);
      await waitFor('the stale endpoints swept', async () => (await remoteEndpoints(dc1)).length === 0, 15_000);
      const took = Date.now() - started;
      console.log(`# controller restart without its neighbour -> stale endpoints swept: ${took} ms`);
      assert.ok(took >= 3_000, `swept when the 3 s hold ran out, not before (${took} ms)`);
    } finally {
      await rr.start();
    }
  });
});
