import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from 'pg';
import { createModelStore } from '#sdn/store';
import { Api, makeTree, startTestDirectory, TestDirectory } from '../support/directory';

describe('BGP configuration and remote endpoints in the API', () => {
  let t: TestDirectory;
  let tenant: Api;
  let other: Api;
  let tree: Awaited<ReturnType<typeof makeTree>>;
  let otherTree: Awaited<ReturnType<typeof makeTree>>;

  before(async () => {
    t = await startTestDirectory();
    tree = await makeTree(t.api, 'bgp-a', '10.0.0.0/24');
    otherTree = await makeTree(t.api, 'bgp-b', '10.0.0.0/24');
    tenant = t.api.as((await t.api.make('/api/v1/api-keys', { name: 'a', role: 'enterpriseAdmin', enterpriseId: tree.enterprise.id })).key);
    other = t.api.as((await t.api.make('/api/v1/api-keys', { name: 'b', role: 'enterpriseAdmin', enterpriseId: otherTree.enterprise.id })).key);
  });
  after(async () => {
    await t?.stop();
  });

  it('configures a speaker and its neighbours with sensible defaults, through the change log', async () => {
    const sp = await t.api.make('/api/v1/bgp-speakers', { name: 'dc1', datacenter: 'dc1', asn: 4200000001, routerId: '10.255.0.1' });
    assert.deepEqual(
      { listenAddress: sp.listenAddress, listenPort: sp.listenPort, rdAdmin: sp.rdAdmin, enabled: sp.enabled, asn: sp.asn },
      { listenAddress: '0.0.0.0', listenPort: 179, rdAdmin: null, enabled: true, asn: 4200000001 },
    );
    const rr = await t.api.make(`/api/v1/bgp-speakers/${sp.id}/bgp-neighbors`, { name: 'rr', address: '10.255.0.254', asn: 4200000001 });
    assert.deepEqual(
      { families: rr.families, passive: rr.passive, holdTime: rr.holdTime, gracefulRestart: rr.gracefulRestart, restartTime: rr.restartTime, status: rr.status.state },
      { families: ['l2vpn-evpn'], passive: false, holdTime: 90, gracefulRestart: true, restartTime: 120, status: 'idle' },
    );
    const fabric = await t.api.make(`/api/v1/bgp-speakers/${sp.id}/bgp-neighbors`, {
      name: 'leaf', address: '2001:db8::1', asn: 65001, families: ['ipv4-unicast', 'ipv6-unicast', 'l2vpn-evpn'], passive: true, holdTime: 9,
    });
    assert.equal(fabric.address, '2001:db8::1');
    const listed = await t.api.get(`/api/v1/bgp-speakers/${sp.id}/bgp-neighbors`);
    assert.deepEqual(listed.body.items.map((n: any) => n.name).sort(), ['leaf', 'rr']);
    const stale = await t.api.patch(`/api/v1/bgp-neighbors/${rr.id}`, { holdTime: 30 }, { 'if-match': String(rr.revision - 1) });
    assert.equal(stale.status, 412);
    const upd = await t.api.patch(`/api/v1/bgp-neighbors/${rr.id}`, { holdTime: 30, routeReflectorClient: true }, { 'if-match': String(rr.revision) });
    assert.equal(upd.status, 200);
    assert.equal(upd.body.holdTime, 30);
    const log = (await t.api.get(`/api/v1/changes?after=${sp.revision - 1}&limit=100`)).body.items;
    assert.deepEqual(
      log.map((c: any) => `${c.kind}/${c.op}`),
      ['bgpSpeaker/create', 'bgpNeighbor/create', 'bgpNeighbor/create', 'bgpNeighbor/update'],
    );
    assert.ok(log.every((c: any) => c.enterpriseId === null));
    // the controller's store sees them in its snapshot
    const store = createModelStore(t.dir.databaseUrl);
    try {
      const snap = await store.loadSnapshot();
      assert.equal(snap.bgpSpeakers.find((s) => s.id === sp.id)?.asn, 4200000001);
      assert.equal(snap.bgpNeighbors.find((n) => n.id === rr.id)?.holdTime, 30);
    } finally {
      await store.close();
    }
    // a speaker with neighbours goes only with cascade
    assert.equal((await t.api.del(`/api/v1/bgp-speakers/${sp.id}`)).status, 409);
    assert.equal((await t.api.del(`/api/v1/bgp-speakers/${sp.id}?cascade=true`)).status, 204);
    assert.equal((await t.api.get(`/api/v1/bgp-neighbors/${rr.id}`)).status, 404);
  });

  it('refuses bad BGP parameters with the field and the rule', async () => {
    const bad = async (body: Record<string, unknown>, field: string, re: RegExp) => {
      const r = await t.api.post('/api/v1/bgp-speakers', { name: 'x', datacenter: 'x', asn: 65000, routerId: '10.0.0.1', ...body });
      assert.equal(r.status, 400, JSON.stringify(body));
      const e = r.body.errors.find((x: any) => x.field === field);
      assert.ok(e, `${field} in ${JSON.stringify(r.body.errors)}`);
      assert.match(e.message, re);
    };
    await bad({ asn: 0 }, 'asn', /1 to 4294967295/);
    await bad({ asn: 4294967296 }, 'asn', /1 to 4294967295/);
    await bad({ routerId: '2001:db8::1' }, 'routerId', /IPv4/);
    await bad({ listenPort: 70000 }, 'listenPort', /65535/);
    await bad({ datacenter: 'dc 1' }, 'datacenter', /letters/);
    const sp = await t.api.make('/api/v1/bgp-speakers', { name: 'dc2', datacenter: 'dc2', asn: 65000, routerId: '10.255.0.2' });
    const nb = (body: Record<string, unknown>) => t.api.post(`/api/v1/bgp-speakers/${sp.id}/bgp-neighbors`, { name: 'n', address: '10.0.0.9', asn: 65000, ...body });
    assert.match((await nb({ holdTime: 2 })).body.errors[0].message, /RFC 4271/);
    assert.equal((await nb({ families: ['vpnv4'] })).status, 400);
    assert.equal((await nb({ families: [] })).status, 400);
    assert.equal((await nb({})).status, 201);
    const dup = await nb({ name: 'n2' });
    assert.equal(dup.status, 409);
    assert.match(dup.body.detail, /address 10\.0\.0\.9/);
    assert.equal((await t.api.post('/api/v1/bgp-speakers', { name: 'dc2', datacenter: 'z', asn: 1, routerId: '10.0.0.3' })).status, 409);
  });

  it('keeps the BGP configuration from tenants entirely', async () => {
    const sp = (await t.api.get('/api/v1/bgp-speakers')).body.items[0];
    assert.equal((await tenant.get('/api/v1/bgp-speakers')).status, 403);
    assert.equal((await tenant.get(`/api/v1/bgp-speakers/${sp.id}`)).status, 403);
    assert.equal((await tenant.get(`/api/v1/bgp-speakers/${sp.id}/bgp-neighbors`)).status, 403);
    assert.equal((await tenant.post('/api/v1/bgp-speakers', { name: 'mine', datacenter: 'x', asn: 65000, routerId: '10.0.0.1' })).status, 403);
    assert.equal((await tenant.patch(`/api/v1/bgp-speakers/${sp.id}`, { enabled: false })).status, 403);
    const changes = (await tenant.get('/api/v1/changes?after=0&limit=10000')).body.items;
    assert.ok(!changes.some((c: any) => c.kind.startsWith('bgp')));
  });

  it('shows endpoints learned from other datacenters to their tenant only, read-only', async () => {
    const sp = (await t.api.get('/api/v1/bgp-speakers')).body.items[0];
    // the controller writes these as it imports routes
    const c = new Client({ connectionString: t.dir.databaseUrl });
    await c.connect();
    try {
      for (let i = 0; i < 3; i++) {
        await c.query(
          `INSERT INTO remote_endpoints (speaker_id, route_key, enterprise_id, domain_id, subnet_id, mac, ip, vtep_ip, l2_vni, l3_vni,
             policy_group_ids, mobility_sequence, route_distinguisher, peer, datacenter, learned_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, '10.255.1.1', 10001, 50001, '{}', 0, '1:10001', '10.255.0.254', 'dc-east', now())`,
          [sp.id, `2|1:10001|0|02:00:00:00:00:0${i}|10.0.0.${100 + i}`, tree.enterprise.id, tree.domain.id, tree.subnet.id, `02:00:00:00:00:0${i}`, `10.0.0.${100 + i}`],
        );
      }
    } finally {
      await c.end();
    }
    const page1 = await tenant.get(`/api/v1/domains/${tree.domain.id}/remote-endpoints?limit=2`);
    assert.equal(page1.status, 200);
    assert.equal(page1.body.items.length, 2);
    assert.deepEqual(
      { ip: page1.body.items[0].ip, vtepIp: page1.body.items[0].vtepIp, peer: page1.body.items[0].peer, datacenter: page1.body.items[0].datacenter },
      { ip: '10.0.0.100', vtepIp: '10.255.1.1', peer: '10.255.0.254', datacenter: 'dc-east' },
    );
    const page2 = await tenant.get(`/api/v1/domains/${tree.domain.id}/remote-endpoints?limit=2&cursor=${page1.body.nextCursor}`);
    assert.deepEqual(page2.body.items.map((x: any) => x.ip), ['10.0.0.102']);
    assert.equal(page2.body.nextCursor, null);

    // a second speaker learned the same routes: a page boundary between two rows of one route key loses neither
    const sp2 = await t.api.make('/api/v1/bgp-speakers', { name: 'dc1-b', datacenter: 'dc1', asn: 4200000001, routerId: '10.255.0.2' });
    const c2 = new Client({ connectionString: t.dir.databaseUrl });
    await c2.connect();
    try {
      await c2.query(
        `INSERT INTO remote_endpoints (speaker_id, route_key, enterprise_id, domain_id, subnet_id, mac, ip, vtep_ip, l2_vni, l3_vni,
           policy_group_ids, mobility_sequence, route_distinguisher, peer, datacenter, learned_at)
         SELECT $1, route_key, enterprise_id, domain_id, subnet_id, mac, ip, vtep_ip, l2_vni, l3_vni, policy_group_ids, mobility_sequence,
                route_distinguisher, '10.255.0.253', datacenter, learned_at FROM remote_endpoints WHERE speaker_id = $2`,
        [sp2.id, sp.id],
      );
    } finally {
      await c2.end();
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const r: any = await tenant.get(`/api/v1/domains/${tree.domain.id}/remote-endpoints?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(r.status, 200);
      seen.push(...r.body.items.map((x: any) => `${x.ip} from ${x.peer}`));
      cursor = r.body.nextCursor;
    } while (cursor && seen.length < 20);
    assert.deepEqual(seen.sort(), ['100', '101', '102'].flatMap((h) => [`10.0.0.${h} from 10.255.0.253`, `10.0.0.${h} from 10.255.0.254`]));
    // a cursor this API did not return is a 400 naming it, whatever it decodes to (NUL bytes were a database error)
    const notOurs = [
      'A'.repeat(64),
      Buffer.from('["k"]').toString('base64url'),
      Buffer.from(JSON.stringify(['k\u0000', sp.id])).toString('base64url'),
      Buffer.from(JSON.stringify(['k', 'not-a-uuid'])).toString('base64url'),
      `${page1.body.nextCursor}&cursor=${page1.body.nextCursor}`,
    ];
    for (const bad of notOurs) {
      const r = await tenant.get(`/api/v1/domains/${tree.domain.id}/remote-endpoints?cursor=${bad}`);
      assert.equal(r.status, 400, bad);
      assert.deepEqual(r.body.errors.map((e: any) => e.field), ['cursor']);
    }
    assert.equal((await other.get(`/api/v1/domains/${tree.domain.id}/remote-endpoints`)).status, 404, 'another tenant: as if it did not exist');
    assert.equal((await other.get(`/api/v1/domains/${otherTree.domain.id}/remote-endpoints`)).body.items.length, 0);
    assert.equal((await tenant.post(`/api/v1/domains/${tree.domain.id}/remote-endpoints`, {})).status, 404, 'read-only');
  });
});
