import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeTree, startTestDirectory, TestDirectory } from '../support/directory';

describe('the whole model over HTTP', () => {
  let t: TestDirectory;
  before(async () => {
    t = await startTestDirectory();
  });
  after(async () => {
    await t?.stop();
  });

  it('creates the whole tree, reads it back, and tears it down', async () => {
    const api = t.api;
    const ent = await api.make('/api/v1/enterprises', { name: 'acme', description: 'a tenant' });
    const dom = await api.make(`/api/v1/enterprises/${ent.id}/domains`, {
      name: 'prod',
      routeDistinguisher: '65000:100',
      importRouteTargets: ['65000:100'],
      exportRouteTargets: ['65000:100'],
      l3Vni: 90001,
    });
    assert.equal(dom.defaultIngressAction, 'deny');
    assert.equal(dom.defaultEgressAction, 'deny');
    assert.equal(dom.l3Vni, 90001);
    const zone = await api.make(`/api/v1/domains/${dom.id}/zones`, { name: 'web-tier' });
    const subnet = await api.make(`/api/v1/zones/${zone.id}/subnets`, { name: 'web', cidr: '10.0.0.0/24' });
    assert.equal(subnet.gateway, '10.0.0.1');
    assert.ok(subnet.l2Vni >= 1 && subnet.l2Vni !== 90001);
    const host = await api.make('/api/v1/hosts', { name: 'hv1', vtepIp: '192.0.2.1' });
    assert.equal(typeof host.credential, 'string', 'a host credential is issued once');
    assert.equal((await api.get(`/api/v1/hosts/${host.id}`)).body.credential, undefined, 'and never shown again');
    const web = await api.make(`/api/v1/domains/${dom.id}/policy-groups`, { name: 'web', communityTag: '65000:1' });
    const db = await api.make(`/api/v1/domains/${dom.id}/policy-groups`, { name: 'db', communityTag: '65000:2:3' });
    const ep = await api.make(`/api/v1/subnets/${subnet.id}/endpoints`, {
      name: 'web-1',
      kind: 'vm',
      hostId: host.id,
      externalId: 'vm-1',
      mac: 'AA-BB-CC-00-11-22',
      policyGroupIds: [web.id],
    });
    assert.equal(ep.mac, 'aa:bb:cc:00:11:22');
    assert.equal(ep.status, 'pending');
    assert.deepEqual(ep.policyGroupIds, [web.id]);
    // the group-insert path (no MAC given) answers exactly what a read and the change log show
    const fast = await api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'web-2', hostId: host.id, policyGroupIds: [web.id, db.id] });
    assert.deepEqual((await api.get(`/api/v1/endpoints/${fast.id}`)).body, fast);
    const logged = (await api.get(`/api/v1/changes?after=${fast.revision - 1}&limit=1`)).body.items[0];
    assert.deepEqual(logged.state, fast);
    const macro = await api.make(`/api/v1/enterprises/${ent.id}/network-macros`, { name: 'partner', cidr: '198.51.100.0/24' });
    const mgroup = await api.make(`/api/v1/enterprises/${ent.id}/network-macro-groups`, { name: 'partners', networkMacroIds: [macro.id] });
    const rule = await api.make(`/api/v1/domains/${dom.id}/acl-rules`, {
      priority: 100,
      direction: 'ingress',
      action: 'allow',
      appliesTo: { type: 'policyGroup', id: db.id },
      peer: { type: 'policyGroup', id: web.id },
      protocol: 'tcp',
      destinationPorts: ['5432', '6000-6010'],
    });
    assert.equal(rule.stateful, true);
    assert.equal(rule.etherType, 'ipv4');
    await api.make(`/api/v1/domains/${dom.id}/acl-rules`, {
      priority: 10,
      direction: 'egress',
      action: 'allow',
      peer: { type: 'networkMacroGroup', id: mgroup.id },
    });

    // every resource reads back at its own path, with meta fields
    for (const [path, obj] of [
      ['enterprises', ent],
      ['domains', dom],
      ['zones', zone],
      ['subnets', subnet],
      ['hosts', host],
      ['endpoints', ep],
      ['policy-groups', web],
      ['network-macros', macro],
      ['network-macro-groups', mgroup],
      ['acl-rules', rule],
    ] as const) {
      const r = await api.get(`/api/v1/${path}/${obj.id}`);
      assert.equal(r.status, 200, path);
      assert.equal(r.body.id, obj.id);
      assert.ok(r.body.createdAt && r.body.updatedAt && Number.isInteger(r.body.revision), `${path} has meta fields`);
      assert.equal(r.headers.get('etag'), `"${r.body.revision}"`);
    }

    // a parent with children is not deleted without cascade
    const refused = await api.del(`/api/v1/enterprises/${ent.id}`);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.type, '/problems/has-children');
    assert.match(refused.body.detail, /cascade=true/);
    assert.equal((await api.del(`/api/v1/subnets/${subnet.id}`)).status, 409);
    assert.equal((await api.del(`/api/v1/policy-groups/${web.id}`)).status, 409, 'named by a rule');

    // a host with endpoints is not deleted either
    assert.equal((await api.del(`/api/v1/hosts/${host.id}`)).status, 409);

    const gone = await api.del(`/api/v1/enterprises/${ent.id}?cascade=true`);
    assert.equal(gone.status, 204);
    for (const [path, obj] of [
      ['enterprises', ent],
      ['domains', dom],
      ['subnets', subnet],
      ['endpoints', ep],
      ['acl-rules', rule],
      ['network-macros', macro],
    ] as const) {
      assert.equal((await api.get(`/api/v1/${path}/${obj.id}`)).status, 404, `${path} is gone`);
    }
    assert.equal((await api.del(`/api/v1/hosts/${host.id}`)).status, 204, 'the host is free now');

    // VNIs are released with their owners
    const ent2 = await api.make('/api/v1/enterprises', { name: 'acme2' });
    const dom2 = await api.make(`/api/v1/enterprises/${ent2.id}/domains`, { name: 'prod', l3Vni: 90001 });
    assert.equal(dom2.l3Vni, 90001);
  });

  it('refuses a stale write with 412 and accepts the current revision', async () => {
    const { zone } = await makeTree(t.api, 'concurrency');
    const stale = zone.revision;
    const ok = await t.api.patch(`/api/v1/zones/${zone.id}`, { description: 'first' }, { 'if-match': `"${stale}"` });
    assert.equal(ok.status, 200);
    assert.ok(ok.body.revision > stale);
    const late = await t.api.patch(`/api/v1/zones/${zone.id}`, { description: 'second' }, { 'if-match': `"${stale}"` });
    assert.equal(late.status, 412);
    assert.equal(late.body.currentRevision, ok.body.revision);
    assert.equal((await t.api.get(`/api/v1/zones/${zone.id}`)).body.description, 'first');
    const del = await t.api.del(`/api/v1/zones/${zone.id}?cascade=true`, { 'if-match': `"${stale}"` });
    assert.equal(del.status, 412);
  });

  it('pages lists with limit and cursor, and filters them', async () => {
    const { subnet } = await makeTree(t.api, 'paging', '10.7.0.0/24');
    const host = await t.api.make('/api/v1/hosts', { name: 'paging-host', vtepIp: '192.0.2.77' });
    for (let i = 0; i < 25; i++) {
      await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: `p${i}`, externalId: `ext-${i}`, hostId: i % 5 === 0 ? host.id : null });
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: any = await t.api.get(`/api/v1/subnets/${subnet.id}/endpoints?limit=10${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(r.status, 200);
      seen.push(...r.body.items.map((e: any) => e.id));
      cursor = r.body.nextCursor;
      pages++;
    } while (cursor);
    assert.equal(pages, 3);
    assert.equal(new Set(seen).size, 25);
    const byExt = await t.api.get(`/api/v1/endpoints?externalId=ext-7`);
    assert.equal(byExt.body.items.length, 1);
    assert.equal(byExt.body.items[0].name, 'p7');
    const byHost = await t.api.get(`/api/v1/endpoints?hostId=${host.id}&subnetId=${subnet.id}`);
    assert.equal(byHost.body.items.length, 5);
    const byName = await t.api.get(`/api/v1/subnets?name=paging-s`);
    assert.equal(byName.body.items.length, 1);
    const bad = await t.api.get(`/api/v1/endpoints?colour=blue`);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.errors[0].field, 'colour');
    assert.equal((await t.api.get(`/api/v1/endpoints?limit=0`)).status, 400);
    assert.equal((await t.api.get(`/api/v1/endpoints?cursor=bm9wZQ`)).status, 400);
  });

  it('moves an endpoint between hosts and changes its groups', async () => {
    const { domain, subnet } = await makeTree(t.api, 'move', '10.8.0.0/24');
    const h1 = await t.api.make('/api/v1/hosts', { name: 'move-h1', vtepIp: '192.0.2.81' });
    const h2 = await t.api.make('/api/v1/hosts', { name: 'move-h2', vtepIp: '192.0.2.82' });
    const g = await t.api.make(`/api/v1/domains/${domain.id}/policy-groups`, { name: 'app' });
    const ep = await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'vm', hostId: h1.id });
    const moved = await t.api.patch(`/api/v1/endpoints/${ep.id}`, { hostId: h2.id, policyGroupIds: [g.id] });
    assert.equal(moved.status, 200);
    assert.equal(moved.body.hostId, h2.id);
    assert.deepEqual(moved.body.policyGroupIds, [g.id]);
    assert.equal(moved.body.ip, ep.ip, 'a move keeps the address');
    // removing the group with cascade takes it out of the endpoint
    assert.equal((await t.api.del(`/api/v1/policy-groups/${g.id}`)).status, 409);
    assert.equal((await t.api.del(`/api/v1/policy-groups/${g.id}?cascade=true`)).status, 204);
    assert.deepEqual((await t.api.get(`/api/v1/endpoints/${ep.id}`)).body.policyGroupIds, []);
  });

  it("reports the writer's queue wait once per committed change and its transaction time once per batch", async () => {
    const read = async () => {
      const text = await (await fetch(`${t.dir.url}/metrics`)).text();
      const n = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
      return {
        waits: n('sdn_directory_write_queue_seconds_count'),
        waited: n('sdn_directory_write_queue_seconds_sum'),
        batches: n('sdn_directory_write_batch_seconds_count'),
        took: n('sdn_directory_write_batch_seconds_sum'),
        itemBatches: n('sdn_directory_write_batch_items_count'),
        items: n('sdn_directory_write_batch_items_sum'),
      };
    };
    const { subnet } = await makeTree(t.api, 'writer-metrics', '10.77.0.0/24');
    const m0 = await read();
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: `w${i}` })));
    for (const r of replies) assert.equal(r.status, 201);
    const m1 = await read();
    // one wait per item and one transaction time per batch, the same batches the batch-size histogram saw
    assert.equal(m1.waits - m0.waits, m1.items - m0.items);
    assert.equal(m1.items - m0.items, 20);
    assert.equal(m1.batches - m0.batches, m1.itemBatches - m0.itemBatches);
    assert.ok(m1.batches - m0.batches >= 1 && m1.batches - m0.batches <= 20);
    assert.ok(m1.took > m0.took, 'transactions take time');
    assert.ok(m1.waited >= m0.waited);
  });

  it('serves health, readiness, metrics and the OpenAPI document', async () => {
    const base = t.dir.url;
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(((await ready.json()) as any).database, 'ok');
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /sdn_directory_http_requests_total\{method="POST",route="\/api\/v1\/enterprises",status="201"\}/);
    assert.match(metrics, /sdn_directory_http_request_duration_seconds_bucket/);
    assert.match(metrics, /sdn_directory_ipam_allocations_total \d+/);
    const doc: any = await (await fetch(`${base}/api/docs.json`)).json();
    assert.equal(doc.openapi.startsWith('3'), true);
    for (const p of [
      '/api/v1/enterprises',
      '/api/v1/enterprises/{parentId}/domains',
      '/api/v1/domains/{parentId}/zones',
      '/api/v1/zones/{parentId}/subnets',
      '/api/v1/subnets/{parentId}/endpoints',
      '/api/v1/endpoints/{id}',
      '/api/v1/hosts',
      '/api/v1/domains/{parentId}/policy-groups',
      '/api/v1/domains/{parentId}/acl-rules',
      '/api/v1/enterprises/{parentId}/network-macros',
      '/api/v1/enterprises/{parentId}/network-macro-groups',
      '/api/v1/changes',
    ]) {
      assert.ok(doc.paths[p], `OpenAPI documents ${p}`);
    }
    assert.ok(doc.components.schemas.Problem);
    assert.ok(doc.components.schemas.endpoint.properties.policyGroupIds);
    assert.ok(doc.paths['/api/v1/endpoints/{id}'].patch.responses['412']);
    assert.equal((await fetch(`${base}/api/docs`)).status, 200);
  });
});
