import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Api, makeTree, startTestDirectory, TestDirectory } from '../support/directory';

/**
 * An enterprise admin sees only its own enterprise. Every access to another
 * tenant's object answers 404 exactly as for an id that does not exist.
 */
describe('tenant isolation', () => {
  let t: TestDirectory;
  let alice: Api; // admin of enterprise A
  let bob: Api; // admin of enterprise B
  const A: Record<string, any> = {};
  const B: Record<string, any> = {};

  async function populate(api: Api, name: string, into: Record<string, any>) {
    const tree = await makeTree(api, name, '10.0.0.0/24'); // the same CIDR in both tenants
    Object.assign(into, tree);
    into.group = await api.make(`/api/v1/domains/${tree.domain.id}/policy-groups`, { name: 'web' });
    into.endpoint = await api.make(`/api/v1/subnets/${tree.subnet.id}/endpoints`, { name: 'vm', policyGroupIds: [into.group.id] });
    into.macro = await api.make(`/api/v1/enterprises/${tree.enterprise.id}/network-macros`, { name: 'm', cidr: '203.0.113.0/24' });
    into.macroGroup = await api.make(`/api/v1/enterprises/${tree.enterprise.id}/network-macro-groups`, { name: 'mg', networkMacroIds: [into.macro.id] });
    into.rule = await api.make(`/api/v1/domains/${tree.domain.id}/acl-rules`, {
      priority: 1,
      direction: 'ingress',
      action: 'allow',
      appliesTo: { type: 'policyGroup', id: into.group.id },
    });
  }

  before(async () => {
    t = await startTestDirectory();
    await populate(t.api, 'tenant-a', A);
    await populate(t.api, 'tenant-b', B);
    const ka = await t.api.make('/api/v1/api-keys', { name: 'alice', role: 'enterpriseAdmin', enterpriseId: A.enterprise.id });
    const kb = await t.api.make('/api/v1/api-keys', { name: 'bob', role: 'enterpriseAdmin', enterpriseId: B.enterprise.id });
    alice = t.api.as(ka.key);
    bob = t.api.as(kb.key);
  });
  after(async () => {
    await t?.stop();
  });

  const kinds: Array<[string, string]> = [
    ['enterprises', 'enterprise'],
    ['domains', 'domain'],
    ['zones', 'zone'],
    ['subnets', 'subnet'],
    ['endpoints', 'endpoint'],
    ['policy-groups', 'group'],
    ['network-macros', 'macro'],
    ['network-macro-groups', 'macroGroup'],
    ['acl-rules', 'rule'],
  ];

  it('answers 404 on read, update and delete of another tenant’s objects, like a missing id', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    for (const [path, key] of kinds) {
      const own = await alice.get(`/api/v1/${path}/${A[key].id}`);
      assert.equal(own.status, 200, `alice reads her ${path}`);
      const foreign = await alice.get(`/api/v1/${path}/${B[key].id}`);
      const absent = await alice.get(`/api/v1/${path}/${missing}`);
      assert.equal(foreign.status, 404, `alice cannot read bob's ${path}`);
      assert.equal(absent.status, 404);
      assert.equal(foreign.body.type, absent.body.type);
      assert.equal(foreign.body.detail.replace(B[key].id, 'X'), absent.body.detail.replace(missing, 'X'), 'the same words as a missing id');
      const change = path === 'acl-rules' ? { description: 'pwned' } : { name: 'pwned' };
      assert.equal((await alice.patch(`/api/v1/${path}/${B[key].id}`, change)).status, 404, `alice cannot change bob's ${path}`);
      assert.equal((await alice.del(`/api/v1/${path}/${B[key].id}?cascade=true`)).status, 404, `alice cannot delete bob's ${path}`);
    }
    // and nothing of bob's changed
    for (const [path, key] of kinds) {
      const r = await bob.get(`/api/v1/${path}/${B[key].id}`);
      assert.equal(r.status, 200, `bob's ${path} is still there`);
      assert.equal(r.body.revision, B[key].revision, `bob's ${path} is unchanged`);
    }
  });

  it('lists only the caller’s own objects', async () => {
    for (const [path, key] of kinds) {
      const r = await alice.get(`/api/v1/${path}?limit=1000`);
      assert.equal(r.status, 200);
      const ids = r.body.items.map((x: any) => x.id);
      assert.ok(ids.includes(A[key].id), `alice lists her ${path}`);
      assert.ok(!ids.includes(B[key].id), `alice does not list bob's ${path}`);
    }
    // filters cannot reach across either
    assert.equal((await alice.get(`/api/v1/endpoints?subnetId=${B.subnet.id}`)).body.items.length, 0);
    // a list under a foreign parent is a 404, not an empty list
    assert.equal((await alice.get(`/api/v1/subnets/${B.subnet.id}/endpoints`)).status, 404);
    assert.equal((await alice.get(`/api/v1/enterprises/${B.enterprise.id}/domains`)).status, 404);
  });

  it('refuses to create children under another tenant’s parent', async () => {
    const attempts: Array<[string, unknown]> = [
      [`/api/v1/enterprises/${B.enterprise.id}/domains`, { name: 'x' }],
      [`/api/v1/domains/${B.domain.id}/zones`, { name: 'x' }],
      [`/api/v1/zones/${B.zone.id}/subnets`, { name: 'x', cidr: '10.9.9.0/24' }],
      [`/api/v1/subnets/${B.subnet.id}/endpoints`, { name: 'x' }],
      [`/api/v1/domains/${B.domain.id}/policy-groups`, { name: 'x' }],
      [`/api/v1/domains/${B.domain.id}/acl-rules`, { priority: 9, direction: 'egress', action: 'deny' }],
      [`/api/v1/enterprises/${B.enterprise.id}/network-macros`, { name: 'x', cidr: '192.0.2.0/24' }],
      [`/api/v1/enterprises/${B.enterprise.id}/network-macro-groups`, { name: 'x' }],
    ];
    for (const [path, body] of attempts) {
      const r = await alice.post(path, body);
      assert.equal(r.status, 404, `${path}: ${JSON.stringify(r.body)}`);
    }
    const count = await t.api.get(`/api/v1/endpoints?subnetId=${B.subnet.id}`);
    assert.equal(count.body.items.length, 1, 'nothing was created in bob’s subnet');
  });

  it('refuses references to another tenant’s objects as if they did not exist', async () => {
    const ep = await alice.post(`/api/v1/subnets/${A.subnet.id}/endpoints`, { name: 'x', policyGroupIds: [B.group.id] });
    assert.equal(ep.status, 422);
    assert.equal(ep.body.errors[0].field, 'policyGroupIds[0]');
    assert.match(ep.body.detail, /does not exist/);
    const rule = await alice.post(`/api/v1/domains/${A.domain.id}/acl-rules`, {
      priority: 50,
      direction: 'ingress',
      action: 'allow',
      peer: { type: 'networkMacro', id: B.macro.id },
    });
    assert.equal(rule.status, 422);
    assert.equal(rule.body.errors[0].field, 'peer.id');
    const mg = await alice.post(`/api/v1/enterprises/${A.enterprise.id}/network-macro-groups`, { name: 'y', networkMacroIds: [B.macro.id] });
    assert.equal(mg.status, 422);
  });

  it('keeps operator-only operations for the operator', async () => {
    assert.equal((await alice.post('/api/v1/enterprises', { name: 'mine' })).status, 403);
    assert.equal((await alice.post('/api/v1/hosts', { name: 'h', vtepIp: '192.0.2.9' })).status, 403);
    assert.equal((await alice.post('/api/v1/api-keys', { name: 'k', role: 'operator' })).status, 403);
    assert.equal((await alice.del(`/api/v1/enterprises/${A.enterprise.id}?cascade=true`)).status, 403);
    // the change log shows alice only her enterprise
    const changes = await alice.get('/api/v1/changes?after=0&limit=10000');
    assert.equal(changes.status, 200);
    assert.ok(changes.body.items.length > 0);
    assert.ok(changes.body.items.every((c: any) => c.enterpriseId === A.enterprise.id));
  });

  it('leaves route distinguishers and targets to the operator, and never lets one target serve two enterprises', async () => {
    // a tenant choosing targets could import another tenant's routes from other datacenters
    const steal = await alice.patch(`/api/v1/domains/${A.domain.id}`, { importRouteTargets: ['65000:4242'] });
    assert.equal(steal.status, 403);
    assert.match(steal.body.detail, /importRouteTargets is set by the operator/);
    assert.equal((await alice.post(`/api/v1/enterprises/${A.enterprise.id}/domains`, { name: 'x', routeDistinguisher: '65000:9' })).status, 403);
    assert.equal((await alice.post(`/api/v1/enterprises/${A.enterprise.id}/domains`, { name: 'plain' })).status, 201, 'a domain without BGP identity is fine');
    // the operator sets them; a target of B's domain is refused for A's
    assert.equal((await t.api.patch(`/api/v1/domains/${B.domain.id}`, { exportRouteTargets: ['65000:4242'] })).status, 200);
    const clash = await t.api.patch(`/api/v1/domains/${A.domain.id}`, { importRouteTargets: ['65000:4242'] });
    assert.equal(clash.status, 409);
    assert.equal(clash.body.type, '/problems/route-target-in-use');
    const created = await t.api.post(`/api/v1/enterprises/${A.enterprise.id}/domains`, { name: 'y', exportRouteTargets: ['65000:4242'] });
    assert.equal(created.status, 409);
    // within one enterprise, sharing a target between its domains is allowed (route leaking between its own VRFs)
    assert.equal((await t.api.post(`/api/v1/enterprises/${B.enterprise.id}/domains`, { name: 'b2', importRouteTargets: ['65000:4242'] })).status, 201);
  });

  it('refuses requests without a valid key', async () => {
    const anon = await fetch(`${t.dir.url}/api/v1/enterprises`);
    assert.equal(anon.status, 401);
    assert.equal(((await anon.json()) as any).type, '/problems/unauthorized');
    assert.equal((await t.api.as('sdn_not-a-real-key').get('/api/v1/enterprises')).status, 401);
    // a revoked key stops working
    const k = await t.api.make('/api/v1/api-keys', { name: 'temp', role: 'enterpriseAdmin', enterpriseId: A.enterprise.id });
    assert.equal((await t.api.as(k.key).get('/api/v1/enterprises')).status, 200);
    assert.equal((await t.api.del(`/api/v1/api-keys/${k.id}`)).status, 204);
    assert.equal((await t.api.as(k.key).get('/api/v1/enterprises')).status, 401);
    // keys are stored hashed
    const { Client } = await import('pg');
    const c = new Client({ connectionString: t.dir.databaseUrl });
    await c.connect();
    const rows = await c.query('SELECT key_hash FROM api_keys');
    await c.end();
    assert.ok(rows.rows.every((r) => /^[0-9a-f]{64}$/.test(r.key_hash) && r.key_hash !== k.key));
  });
});
