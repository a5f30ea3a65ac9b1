/**
 * Federation down to the hosts: two datacenters (directory, controller with
 * its federation service, one agent each speaking the real protocol) through
 * a gobgpd route reflector. An endpoint of datacenter 2 reaches the state of
 * datacenter 1's host: FDB/ARP entry towards its VTEP, the VTEP in the VNI's
 * flood list, and its address in the local policy group's address set, so
 * that local ACLs match it. Deleting it removes all of that. Restarting
 * datacenter 1's controller leaves those entries on its host until the new
 * one has learned the routes again, and resumes the host with a delta.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { federate, Federation } from '../../apps/controller/src/federation';
import type { RunningController } from '../../apps/controller/src/controller';
import { createLogger } from '../../apps/controller/src/log';
import { waitFor } from '../bgp/support/wait.js';
import { SimulatedAgent, startTestController } from '../support/controller';
import { startTestDirectory, TestDirectory } from '../support/directory';
import { bgpSpeaker, routeReflector, stretchedDomain } from '../support/federation';

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
}

const federationOf = (ctl: RunningController, name: string) =>
  federate(ctl.controller, { databaseUrl: ctl.controller.config.databaseUrl, speakerName: name, log: createLogger('error'), connectRetryTime: 1, statusIntervalMs: 200 });

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
  const fed = federationOf(ctl, name);
  await fed.start();
  const agent = new SimulatedAgent(ctl.agentUrl, { id: host.id, credential: host.credential, vtepIp: vtep });
  return { name, dir, ctl, fed, agent, domain, subnet, groups, host };
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
      await dc?.fed.stop();
      await dc?.ctl.close();
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
    await dc1.fed.stop();
    await dc1.ctl.close();
    // the model changes while the controller is away: the host's state is no longer the current one
    const app3 = await dc1.dir.api.make(`/api/v1/subnets/${dc1.subnet.id}/endpoints`, { name: 'app-3', hostId: dc1.host.id });
    const started = Date.now();
    dc1.ctl = await startTestController(dc1.dir.dir.databaseUrl, { port, deferResyncMs: 30_000 });
    dc1.fed = federationOf(dc1.ctl, 'dc1');
    await dc1.fed.start();
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
});
