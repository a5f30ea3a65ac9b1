/**
 * The controller's federation service against a real gobgpd: configured
 * through the directory API, it advertises the model's EVPN routes, follows
 * model and BGP configuration changes without a restart, and turns routes
 * learned from the peer into remote endpoints shown by the API.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Federation } from '../../apps/controller/src/federation';
import { createLogger } from '../../apps/controller/src/log';
import { Gobgpd } from '../bgp/support/gobgp.js';
import { waitFor } from '../bgp/support/wait.js';
import { makeTree, sql, startTestDirectory, TestDirectory } from '../support/directory';

const OURS = '127.0.3.1';
const THEIRS = '127.0.3.2';
const GOBGP_PORT = 21851;
const API_PORT = 50091;

interface GobgpPath {
  nlri: { type?: number; value?: Record<string, any> };
  attrs: { type: number; value?: any; nexthop?: string; communities?: number[]; [k: string]: unknown }[];
}
type GobgpRib = Record<string, GobgpPath[]> | null;
const attr = (p: GobgpPath, type: number) => p.attrs.find((a) => a.type === type);
const paths = (rib: GobgpRib) => Object.values(rib ?? {}).flat();

describe('federation service with a real gobgpd', { timeout: 180_000 }, () => {
  let t: TestDirectory;
  let fed: Federation;
  const g = new Gobgpd({
    asn: 65002,
    routerId: '10.0.0.2',
    address: THEIRS,
    apiPort: API_PORT,
    port: GOBGP_PORT,
    neighbors: [{ address: OURS, asn: 65001, families: ['l2vpn-evpn'] }],
  });
  const w: Record<string, any> = {};
  const warnings: string[] = [];
  const evpnRib = () => g.json<GobgpRib>(['global', 'rib', '-a', 'evpn']);

  before(async () => {
    await g.start();
    t = await startTestDirectory();
    const tree = await makeTree(t.api, 'fed', '10.0.0.0/24');
    Object.assign(w, tree);
    await t.api.patch(`/api/v1/domains/${tree.domain.id}`, { importRouteTargets: ['65001:7001'], exportRouteTargets: ['65001:7001'] });
    w.db = await t.api.make(`/api/v1/domains/${tree.domain.id}/policy-groups`, { name: 'db', communityTag: '65001:20' });
    w.app = await t.api.make(`/api/v1/domains/${tree.domain.id}/policy-groups`, { name: 'app', communityTag: '65001:1:30' });
    w.host = await t.api.make('/api/v1/hosts', { name: 'h1', vtepIp: '10.255.0.1' });
    w.ep = await t.api.make(`/api/v1/subnets/${tree.subnet.id}/endpoints`, { name: 'db-1', hostId: w.host.id, policyGroupIds: [w.db.id, w.app.id] });
    w.speaker = await t.api.make('/api/v1/bgp-speakers', { name: 'dc1', datacenter: 'dc1', asn: 65001, routerId: '10.255.0.100', listenAddress: OURS, listenPort: 21852 });
    w.peer = await t.api.make(`/api/v1/bgp-speakers/${w.speaker.id}/bgp-neighbors`, { name: 'rr', address: THEIRS, port: GOBGP_PORT, asn: 65002, datacenter: 'fabric' });
    const log = createLogger('error');
    fed = new Federation({
      databaseUrl: t.dir.databaseUrl,
      speakerName: 'dc1',
      log: { ...log, warn: (msg) => void warnings.push(msg) },
      connectRetryTime: 1,
      statusIntervalMs: 100,
    });
    await fed.start();
  });
  after(async () => {
    await fed?.stop();
    await t?.stop();
    await g.stop();
  });

  it('comes up from its API configuration and reports the session in the API', async () => {
    const n = await waitFor('neighbour established in the API', async () => {
      const r = await t.api.get(`/api/v1/bgp-neighbors/${w.peer.id}`);
      return r.body.status.state === 'established' ? r.body : undefined;
    });
    assert.ok(n.status.updatedAt);
  });

  it('advertises the endpoint, its VNI and its subnet with targets, router MAC and one community per group', async () => {
    const rib = await waitFor('type 2, 3 and 5 in gobgpd', async () => {
      const r = await evpnRib();
      const types = new Set(paths(r).map((p) => p.nlri.type));
      return types.has(2) && types.has(3) && types.has(5) ? r : undefined;
    });
    const t2 = paths(rib).find((p) => p.nlri.type === 2)!;
    assert.equal(t2.nlri.value!.mac, w.ep.mac);
    assert.equal(t2.nlri.value!.ip, w.ep.ip);
    assert.deepEqual(t2.nlri.value!.labels, [w.subnet.l2Vni, w.domain.l3Vni]);
    assert.equal(attr(t2, 14)!.nexthop, '10.255.0.1');
    assert.deepEqual(attr(t2, 8)!.communities, [65001 * 65536 + 20]);
    assert.deepEqual(attr(t2, 32)!.value, [{ ASN: 65001, LocalData1: 1, LocalData2: 30 }]);
    const ext = JSON.stringify(attr(t2, 16)!.value);
    assert.match(ext, /65001:7001/);
    const t3 = paths(rib).find((p) => p.nlri.type === 3)!;
    assert.equal(attr(t3, 22)!.value?.label ?? (attr(t3, 22) as any).label, w.subnet.l2Vni);
    const t5 = paths(rib).find((p) => p.nlri.type === 5)!;
    assert.equal(t5.nlri.value!.prefix, '10.0.0.0/24');
  });

  it('follows the model: a new endpoint is advertised, a deleted one withdrawn, without a restart', async () => {
    const ep2 = await t.api.make(`/api/v1/subnets/${w.subnet.id}/endpoints`, { name: 'db-2', hostId: w.host.id });
    await waitFor('db-2 in gobgpd', async () => paths(await evpnRib()).some((p) => p.nlri.type === 2 && p.nlri.value!.mac === ep2.mac));
    assert.equal((await t.api.del(`/api/v1/endpoints/${ep2.id}`)).status, 204);
    await waitFor('db-2 withdrawn', async () => !paths(await evpnRib()).some((p) => p.nlri.type === 2 && p.nlri.value!.mac === ep2.mac));
  });

  it('imports a route of another datacenter into the domain its targets name, with the groups its communities name', async () => {
    await g.cli([
      'global', 'rib', '-a', 'evpn', 'add', 'macadv', '02:aa:00:00:00:01', '10.0.0.200', 'etag', '0', 'label', `${w.subnet.l2Vni},${w.domain.l3Vni}`,
      'rd', '10.255.9.100:1', 'rt', '65001:7001', 'encap', 'vxlan', 'router-mac', '02:00:0a:ff:09:09', 'nexthop', '10.255.9.9',
      'community', '65001:20',
    ]);
    const seen = await waitFor('remote endpoint in the API', async () => {
      const r = await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`);
      return r.body.items.find((x: any) => x.mac === '02:aa:00:00:00:01');
    });
    assert.deepEqual(
      { ip: seen.ip, vtepIp: seen.vtepIp, subnetId: seen.subnetId, policyGroupIds: seen.policyGroupIds, peer: seen.peer, datacenter: seen.datacenter },
      { ip: '10.0.0.200', vtepIp: '10.255.9.9', subnetId: w.subnet.id, policyGroupIds: [w.db.id], peer: THEIRS, datacenter: 'fabric' },
    );
    // a group created later with a matching tag picks the remote endpoint up
    const later = await t.api.make(`/api/v1/domains/${w.domain.id}/policy-groups`, { name: 'ops', communityTag: '65002:99' });
    await g.cli([
      'global', 'rib', '-a', 'evpn', 'add', 'macadv', '02:aa:00:00:00:02', '10.0.0.201', 'etag', '0', 'label', `${w.subnet.l2Vni},${w.domain.l3Vni}`,
      'rd', '10.255.9.100:1', 'rt', '65001:7001', 'encap', 'vxlan', 'nexthop', '10.255.9.9', 'community', '65002:99',
    ]);
    await waitFor('second remote endpoint with the later group', async () => {
      const r = await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`);
      return r.body.items.find((x: any) => x.mac === '02:aa:00:00:00:02' && x.policyGroupIds.includes(later.id));
    });
    // a route for another tenant's targets lands nowhere
    await g.cli([
      'global', 'rib', '-a', 'evpn', 'add', 'macadv', '02:bb:00:00:00:01', '10.0.0.202', 'etag', '0', 'label', '10999',
      'rd', '10.255.9.100:2', 'rt', '65001:9999', 'encap', 'vxlan', 'nexthop', '10.255.9.9',
    ]);
    await waitFor('the neighbour status counts what it received', async () => (await t.api.get(`/api/v1/bgp-neighbors/${w.peer.id}`)).body.status.receivedRoutes >= 3);
    const all = (await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`)).body.items;
    assert.ok(!all.some((x: any) => x.mac === '02:bb:00:00:00:01'));
    // a route claiming a local endpoint's address with another MAC is refused until the local endpoint goes
    const holder = await t.api.make(`/api/v1/subnets/${w.subnet.id}/endpoints`, { name: 'holder', hostId: w.host.id, ip: '10.0.0.210' });
    await g.cli([
      'global', 'rib', '-a', 'evpn', 'add', 'macadv', '02:cc:00:00:00:01', '10.0.0.210', 'etag', '0', 'label', `${w.subnet.l2Vni},${w.domain.l3Vni}`,
      'rd', '10.255.9.100:3', 'rt', '65001:7001', 'encap', 'vxlan', 'nexthop', '10.255.9.9',
    ]);
    await waitFor('the claiming route reached us', () => fed.speaker!.routes('l2vpn-evpn').some((r) => r.evpn?.routeType === 2 && r.evpn.mac === '02:cc:00:00:00:01'));
    assert.ok(!(await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`)).body.items.some((x: any) => x.mac === '02:cc:00:00:00:01'));
    assert.equal((await t.api.del(`/api/v1/endpoints/${holder.id}`)).status, 204);
    await waitFor('imported once the address is free', async () =>
      (await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`)).body.items.some((x: any) => x.mac === '02:cc:00:00:00:01'),
    );
    // withdrawn at the peer: gone here
    await g.cli(['global', 'rib', '-a', 'evpn', 'del', 'macadv', '02:aa:00:00:00:01', '10.0.0.200', 'etag', '0', 'label', `${w.subnet.l2Vni},${w.domain.l3Vni}`, 'rd', '10.255.9.100:1']);
    await waitFor('withdrawn remote endpoint gone from the API', async () => {
      const r = await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`);
      return !r.body.items.some((x: any) => x.mac === '02:aa:00:00:00:01');
    });
  });

  it('writes a remote endpoint again when the database refused its first write', async () => {
    // the database refuses every write to the table for a while (a trigger stands for a failing database)
    await sql(t.db.url, `CREATE FUNCTION sdn_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
               CREATE TRIGGER sdn_test_refuse BEFORE INSERT OR UPDATE OR DELETE ON remote_endpoints FOR EACH STATEMENT EXECUTE FUNCTION sdn_test_refuse()`);
    const refusedBefore = warnings.filter((m) => m.startsWith('federation: could not write remote endpoints')).length;
    try {
      await g.cli([
        'global', 'rib', '-a', 'evpn', 'add', 'macadv', '02:ee:00:00:00:01', '10.0.0.230', 'etag', '0', 'label', `${w.subnet.l2Vni},${w.domain.l3Vni}`,
        'rd', '10.255.9.100:5', 'rt', '65001:7001', 'encap', 'vxlan', 'nexthop', '10.255.9.9',
      ]);
      await waitFor('the write was refused', () => warnings.filter((m) => m.startsWith('federation: could not write remote endpoints')).length > refusedBefore);
      assert.ok(!(await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`)).body.items.some((x: any) => x.mac === '02:ee:00:00:00:01'));
    } finally {
      await sql(t.db.url, 'DROP TRIGGER sdn_test_refuse ON remote_endpoints; DROP FUNCTION sdn_test_refuse()');
    }
    // no change of that route follows: the federation writes the refused batch again by itself
    await waitFor('written once the database takes it', async () =>
      (await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`)).body.items.some((x: any) => x.mac === '02:ee:00:00:00:01'),
    );
    await g.cli(['global', 'rib', '-a', 'evpn', 'del', 'macadv', '02:ee:00:00:00:01', '10.0.0.230', 'etag', '0', 'label', `${w.subnet.l2Vni},${w.domain.l3Vni}`, 'rd', '10.255.9.100:5']);
    await waitFor('withdrawn again', async () => !(await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`)).body.items.some((x: any) => x.mac === '02:ee:00:00:00:01'));
  });

  it('rebuilds from the database when it went back in time, withdrawing what is gone, and follows on', async () => {
    const advertised = async (mac: string) => paths(await evpnRib()).some((p) => p.nlri.type === 2 && p.nlri.value!.mac === mac);
    const gone = await t.api.make(`/api/v1/subnets/${w.subnet.id}/endpoints`, { name: 'db-3', hostId: w.host.id });
    await waitFor('db-3 advertised', () => advertised(gone.mac));
    // what restoring a backup taken just before db-3 leaves: no row, no change-log entry, the counter before it
    await sql(t.db.url, `DELETE FROM endpoints WHERE id = '${gone.id}'; DELETE FROM change_log WHERE revision >= ${gone.revision};
               UPDATE revision_counter SET revision = ${gone.revision - 1}`);
    await waitFor('the directory tells followers where the log is now', async () => (await t.api.get('/api/v1/changes?after=0&limit=1')).body.latestRevision === gone.revision - 1);
    // the next change takes db-3's revision: the follower sees another entry where db-3's was
    const next = await t.api.make(`/api/v1/subnets/${w.subnet.id}/endpoints`, { name: 'db-4', hostId: w.host.id });
    assert.equal(next.revision, gone.revision);
    await waitFor('db-3 withdrawn', async () => !(await advertised(gone.mac)));
    await waitFor('db-4 advertised', () => advertised(next.mac));
    // and it follows on
    const later = await t.api.make(`/api/v1/subnets/${w.subnet.id}/endpoints`, { name: 'db-5', hostId: w.host.id });
    await waitFor('db-5 advertised', () => advertised(later.mac));
    for (const e of [next, later]) assert.equal((await t.api.del(`/api/v1/endpoints/${e.id}`)).status, 204);
  });

  it('closes the session of a neighbour that sends more routes than its limit (Cease 6/1), and reopens it when the limit is raised', async () => {
    const status = async () => (await t.api.get(`/api/v1/bgp-neighbors/${w.peer.id}`)).body.status;
    const have = (await status()).receivedRoutes as number;
    assert.equal((await t.api.patch(`/api/v1/bgp-neighbors/${w.peer.id}`, { maxPrefixes: have + 1 })).status, 200);
    await waitFor('session back under the limit', async () => (await status()).state === 'established' && (await status()).receivedRoutes === have);
    for (const i of [1, 2]) {
      await g.cli([
        'global', 'rib', '-a', 'evpn', 'add', 'macadv', `02:dd:00:00:00:0${i}`, `10.0.0.22${i}`, 'etag', '0', 'label', `${w.subnet.l2Vni},${w.domain.l3Vni}`,
        'rd', '10.255.9.100:4', 'rt', '65001:7001', 'encap', 'vxlan', 'nexthop', '10.255.9.9',
      ]);
    }
    const down = await waitFor('session closed for too many routes', async () => {
      const st = await status();
      return st.state !== 'established' && /6\/1/.test(st.lastError ?? '') ? st : undefined;
    });
    assert.match(down.lastError, /more than \d+ routes/);
    await waitFor("the neighbour's routes are gone", async () => (await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`)).body.items.length === 0);
    assert.equal((await t.api.patch(`/api/v1/bgp-neighbors/${w.peer.id}`, { maxPrefixes: null })).status, 200);
    await waitFor('re-established without a limit', async () => (await status()).state === 'established');
    await waitFor('routes back', async () => (await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`)).body.items.some((x: any) => x.mac === '02:dd:00:00:00:02'));
  });

  it('applies neighbour and speaker changes from the API without a restart', async () => {
    assert.equal((await t.api.del(`/api/v1/bgp-neighbors/${w.peer.id}`)).status, 204);
    await waitFor('session down at gobgpd', async () => (await g.neighborState(OURS)) !== 'established' && (await g.neighborState(OURS)) !== '6');
    await waitFor('remote endpoints of the gone neighbour removed', async () => (await t.api.get(`/api/v1/domains/${w.domain.id}/remote-endpoints`)).body.items.length === 0);
    const again = await t.api.make(`/api/v1/bgp-speakers/${w.speaker.id}/bgp-neighbors`, { name: 'rr2', address: THEIRS, port: GOBGP_PORT, asn: 65002 });
    await waitFor('re-established', async () => (await t.api.get(`/api/v1/bgp-neighbors/${again.id}`)).body.status.state === 'established');
    // disabling the speaker closes everything
    await t.api.patch(`/api/v1/bgp-speakers/${w.speaker.id}`, { enabled: false });
    await waitFor('speaker stopped', () => fed.speaker === null);
    await waitFor('our routes gone from gobgpd', async () => !paths(await evpnRib()).some((p) => p.nlri.type === 2 && p.nlri.value!.mac === w.ep.mac));
  });
});
