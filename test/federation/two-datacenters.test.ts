/**
 * Two datacenters, each with its own database, directory and controller
 * federation service, both iBGP route-reflector clients of a real gobgpd:
 * endpoints of one appear in the other as remote endpoints of the same
 * domain and in the policy groups with the same community tags; deletions
 * withdraw; an endpoint that moves between datacenters converges by MAC
 * mobility sequence numbers.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Federation } from '../../apps/controller/src/federation';
import { createLogger } from '../../apps/controller/src/log';
import { waitFor } from '../bgp/support/wait.js';
import { startTestDirectory, TestDirectory } from '../support/directory';
import { bgpSpeaker, routeReflector, stretchedDomain } from '../support/federation';

const RR = '127.0.4.2';
const RR_PORT = 21861;
const RR_API = 50093;

interface Dc {
  name: string;
  address: string;
  dir: TestDirectory;
  fed: Federation;
  domain: any;
  subnet: any;
  groups: Record<string, any>;
  host: any;
}

async function datacenter(name: string, address: string, vtep: string): Promise<Dc> {
  const dir = await startTestDirectory();
  const api = dir.api;
  const { domain, subnet, groups } = await stretchedDomain(api, name, {
    cidr: '10.20.0.0/24', l2Vni: 20100, routeTarget: '65000:9100', half: name === 'dc1' ? 'low' : 'high', groups: { web: '65000:10', app: '65000:20', db: '65000:30' },
  });
  const host = await api.make('/api/v1/hosts', { name: `${name}-h1`, vtepIp: vtep });
  await bgpSpeaker(api, name, { address, port: 21862 + (address.endsWith('.1') ? 0 : 1), routerId: vtep.replace(/\.\d+$/, '.100'), neighbor: { address: RR, port: RR_PORT, datacenter: 'fabric' } });
  const fed = new Federation({ databaseUrl: dir.dir.databaseUrl, speakerName: name, log: createLogger('error'), connectRetryTime: 1, statusIntervalMs: 200 });
  await fed.start();
  return { name, address, dir, fed, domain, subnet, groups, host };
}

const remoteOf = async (dc: Dc) => (await dc.dir.api.get(`/api/v1/domains/${dc.domain.id}/remote-endpoints`)).body.items as any[];

describe('two datacenters over a gobgpd route reflector', { timeout: 240_000 }, () => {
  const rr = routeReflector({ address: RR, port: RR_PORT, apiPort: RR_API, clients: ['127.0.4.1', '127.0.4.3'] });
  let dc1: Dc;
  let dc2: Dc;

  before(async () => {
    await rr.start();
    dc1 = await datacenter('dc1', '127.0.4.1', '10.255.1.1');
    dc2 = await datacenter('dc2', '127.0.4.3', '10.255.2.1');
    for (const dc of [dc1, dc2]) await waitFor(`${dc.name} session`, () => dc.fed.speaker?.neighbors()[0]?.state === 'established');
  });
  after(async () => {
    for (const dc of [dc1, dc2]) {
      await dc?.fed.stop();
      await dc?.dir.stop();
    }
    await rr.stop();
  });

  it('shows an endpoint of one datacenter in the other, in the local groups with the same tags, and withdraws it on delete', async () => {
    const db = await dc2.dir.api.make(`/api/v1/subnets/${dc2.subnet.id}/endpoints`, { name: 'db-1', hostId: dc2.host.id, policyGroupIds: [dc2.groups.db.id] });
    const seen = await waitFor('db-1 in datacenter 1', async () => (await remoteOf(dc1)).find((r) => r.mac === db.mac));
    assert.deepEqual(
      { ip: seen.ip, vtepIp: seen.vtepIp, subnetId: seen.subnetId, groups: seen.policyGroupIds, datacenter: seen.datacenter, l2Vni: seen.l2Vni },
      { ip: db.ip, vtepIp: '10.255.2.1', subnetId: dc1.subnet.id, groups: [dc1.groups.db.id], datacenter: 'fabric', l2Vni: 20100 },
    );
    // and the other way round
    const app = await dc1.dir.api.make(`/api/v1/subnets/${dc1.subnet.id}/endpoints`, { name: 'app-1', hostId: dc1.host.id, policyGroupIds: [dc1.groups.app.id] });
    const back = await waitFor('app-1 in datacenter 2', async () => (await remoteOf(dc2)).find((r) => r.mac === app.mac));
    assert.deepEqual(back.policyGroupIds, [dc2.groups.app.id]);
    // a datacenter never imports its own routes back
    assert.ok(!(await remoteOf(dc1)).some((r) => r.mac === app.mac));
    const t0 = Date.now();
    assert.equal((await dc2.dir.api.del(`/api/v1/endpoints/${db.id}`)).status, 204);
    await waitFor('db-1 withdrawn from datacenter 1', async () => !(await remoteOf(dc1)).some((r) => r.mac === db.mac), 10_000, 20);
    console.log(`# delete in dc2 -> gone from dc1's API: ${Date.now() - t0} ms`);
  });

  it('converges when an endpoint moves from one datacenter to the other (MAC mobility)', async () => {
    const mac = '02:42:0a:14:00:63';
    const before1 = await dc1.dir.api.make(`/api/v1/subnets/${dc1.subnet.id}/endpoints`, { name: 'mover', hostId: dc1.host.id, mac, ip: '10.20.0.99' });
    await waitFor('mover known in dc2', async () => (await remoteOf(dc2)).some((r) => r.mac === mac));
    // the orchestrator starts it in dc2 before it stops it in dc1
    await dc2.dir.api.make(`/api/v1/subnets/${dc2.subnet.id}/endpoints`, { name: 'mover', hostId: dc2.host.id, mac, ip: '10.20.0.99' });
    const moved = await waitFor('dc1 learns the move with a higher sequence', async () =>
      (await remoteOf(dc1)).find((r) => r.mac === mac && r.vtepIp === '10.255.2.1' && r.mobilitySequence >= 1),
    );
    assert.equal(moved.mobilitySequence, 1);
    assert.equal((await dc1.dir.api.del(`/api/v1/endpoints/${before1.id}`)).status, 204);
    await waitFor('dc2 holds no stale entry for it', async () => !(await remoteOf(dc2)).some((r) => r.mac === mac));
    const final1 = (await remoteOf(dc1)).filter((r) => r.mac === mac);
    assert.deepEqual(final1.map((r) => [r.vtepIp, r.mobilitySequence]), [['10.255.2.1', 1]]);
  });
});
