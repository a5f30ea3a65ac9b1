import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeTree, Reply, startTestDirectory, TestDirectory } from '../support/directory';

function problem(r: Reply, status: number, field?: string, detail?: RegExp) {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(r.body.status, status);
  assert.ok(r.body.type.startsWith('/problems/'));
  assert.ok(r.body.title && r.body.detail);
  if (field !== undefined) assert.equal(r.body.errors?.[0]?.field, field, JSON.stringify(r.body));
  if (detail) assert.match(r.body.detail, detail);
}

describe('bad input gets a clear, specific problem+json', () => {
  let t: TestDirectory;
  let tree: Awaited<ReturnType<typeof makeTree>>;
  before(async () => {
    t = await startTestDirectory();
    tree = await makeTree(t.api, 'errors', '10.0.0.0/24');
  });
  after(async () => {
    await t?.stop();
  });

  it('refuses invalid CIDRs, gateways outside the subnet and bad reserved ranges', async () => {
    const z = `/api/v1/zones/${tree.zone.id}/subnets`;
    problem(await t.api.post(z, { name: 'a', cidr: '10.0.300.0/24' }), 400, 'cidr', /not a valid CIDR/);
    problem(await t.api.post(z, { name: 'a', cidr: '10.1.0.1/24' }), 400, 'cidr', /host bits are set \(did you mean 10\.1\.0\.0\/24\?\)/);
    problem(await t.api.post(z, { name: 'a', cidr: '10.1.0.0/33' }), 400, 'cidr', /prefix length/);
    problem(await t.api.post(z, { name: 'a', cidr: 'banana' }), 400, 'cidr');
    problem(await t.api.post(z, { name: 'a', cidr: '10.1.0.0/24', gateway: '10.2.0.1' }), 400, 'gateway', /outside 10\.1\.0\.0\/24/);
    problem(await t.api.post(z, { name: 'a', cidr: '10.1.0.0/24', gateway: '10.1.0.255' }), 400, 'gateway', /not a usable address/);
    problem(
      await t.api.post(z, { name: 'a', cidr: '10.1.0.0/24', reservedRanges: [{ start: '10.1.0.9', end: '10.1.0.3' }] }),
      400,
      'reservedRanges[0]',
      /before start/,
    );
    problem(await t.api.post(z, { name: 'a', cidr: '10.1.0.0/24', l2Vni: 16777216 }), 400, 'l2Vni');
  });

  it('refuses subnets whose addresses hosts cannot own (multicast, loopback, link-local, reserved), which would fail every agent holding them', async () => {
    const z = `/api/v1/zones/${tree.zone.id}/subnets`;
    const refused: Array<[string, RegExp]> = [
      ['0.0.0.0/0', /overlaps 0\.0\.0\.0\/8/],
      ['0.0.0.0/24', /"this network"/],
      ['127.0.0.0/24', /loopback/],
      ['169.254.0.0/24', /link-local/],
      ['224.0.0.0/24', /multicast/],
      ['239.255.255.0/24', /multicast/],
      ['240.0.0.0/24', /reserved/],
      ['255.255.255.0/24', /reserved/],
      ['::/64', /reserved by the IETF/],
      ['::ffff:0:0/120', /IPv4-mapped/],
      ['fe80::/64', /link-local/],
      ['ff05::/64', /multicast/],
    ];
    for (const [cidr, why] of refused) problem(await t.api.post(z, { name: 'special', cidr }), 400, 'cidr', why);
    // their neighbours are ordinary unicast space
    const z2 = (await t.api.make(`/api/v1/domains/${tree.domain.id}/zones`, { name: 'unicast-edges' })).id;
    for (const [i, cidr] of ['1.0.0.0/24', '126.255.255.0/24', '128.0.0.0/24', '169.253.0.0/24', '169.255.0.0/24', '223.255.255.0/24', '100.64.0.0/24', '100::/64', 'fec0::/64', 'fe00::/64'].entries()) {
      assert.equal((await t.api.post(`/api/v1/zones/${z2}/subnets`, { name: `edge${i}`, cidr })).status, 201, cidr);
    }
  });

  it('refuses overlapping subnets in a domain and allows them across domains and tenants', async () => {
    const z = `/api/v1/zones/${tree.zone.id}/subnets`;
    problem(await t.api.post(z, { name: 'over', cidr: '10.0.0.128/25' }), 409, 'cidr', /overlaps subnet/);
    problem(await t.api.post(z, { name: 'over', cidr: '10.0.0.0/8' }), 409, 'cidr', /overlaps subnet/);
    // another zone of the same domain is still the same routing table
    const z2 = await t.api.make(`/api/v1/domains/${tree.domain.id}/zones`, { name: 'z2' });
    problem(await t.api.post(`/api/v1/zones/${z2.id}/subnets`, { name: 'over', cidr: '10.0.0.0/25' }), 409, 'cidr');
    // another domain of the same enterprise, and another enterprise, may reuse it
    const d2 = await t.api.make(`/api/v1/enterprises/${tree.enterprise.id}/domains`, { name: 'd2' });
    const z3 = await t.api.make(`/api/v1/domains/${d2.id}/zones`, { name: 'z' });
    assert.equal((await t.api.post(`/api/v1/zones/${z3.id}/subnets`, { name: 'reuse', cidr: '10.0.0.0/24' })).status, 201);
    const other = await makeTree(t.api, 'errors-other', '10.0.0.0/24');
    assert.equal(other.subnet.cidr, '10.0.0.0/24');
  });

  it('refuses malformed MACs, duplicate MACs, unknown fields and wrong types', async () => {
    const e = `/api/v1/subnets/${tree.subnet.id}/endpoints`;
    problem(await t.api.post(e, { name: 'a', mac: 'aa:bb:cc:dd:ee' }), 400, 'mac', /not a MAC address/);
    problem(await t.api.post(e, { name: 'a', mac: '01:00:5e:00:00:01' }), 400, 'mac', /multicast/);
    await t.api.make(e, { name: 'a', mac: '02:00:00:00:00:01' });
    problem(await t.api.post(e, { name: 'b', mac: '02:00:00:00:00:01' }), 409, 'mac', /already used/);
    problem(await t.api.post(e, { name: 'a', colour: 'blue' }), 400, '', /unknown field\(s\): colour/);
    problem(await t.api.post(e, { name: 42 }), 400, 'name');
    problem(await t.api.post(e, { name: 'a', kind: 'toaster' }), 400, 'kind', /container, vm or baremetal/);
    problem(await t.api.post(e, { name: 'a', policyGroupIds: ['not-a-uuid'] }), 400, 'policyGroupIds[0]', /UUID/);
    problem(await t.api.post(e, { name: 'a', hostId: '00000000-0000-4000-8000-000000000001' }), 422, 'hostId', /host .* does not exist/);
    problem(await t.api.post(e, []), 400, '', /JSON object/);
  });

  it('answers 404 for unknown ids, malformed ids and unknown routes', async () => {
    problem(await t.api.get('/api/v1/endpoints/00000000-0000-4000-8000-000000000000'), 404, undefined, /endpoint .* does not exist/);
    problem(await t.api.get('/api/v1/endpoints/not-a-uuid'), 404);
    problem(await t.api.post('/api/v1/subnets/00000000-0000-4000-8000-000000000000/endpoints', { name: 'a' }), 404, undefined, /subnet/);
    problem(await t.api.get('/api/v1/nothing-here'), 404);
  });

  it('refuses a priority clash and rules that name objects of another domain or enterprise', async () => {
    const rules = `/api/v1/domains/${tree.domain.id}/acl-rules`;
    await t.api.make(rules, { priority: 10, direction: 'ingress', action: 'deny' });
    problem(await t.api.post(rules, { priority: 10, direction: 'ingress', action: 'allow' }), 409, 'priority', /priority 10 is already used/);
    // the same priority in the other direction is fine
    assert.equal((await t.api.post(rules, { priority: 10, direction: 'egress', action: 'allow' })).status, 201);

    const d2 = await t.api.make(`/api/v1/enterprises/${tree.enterprise.id}/domains`, { name: 'rules-d2' });
    const foreignGroup = await t.api.make(`/api/v1/domains/${d2.id}/policy-groups`, { name: 'g' });
    problem(
      await t.api.post(rules, { priority: 11, direction: 'ingress', action: 'allow', peer: { type: 'policyGroup', id: foreignGroup.id } }),
      422,
      'peer.id',
      /belongs to another domain/,
    );
    const other = await makeTree(t.api, 'rules-other-tenant', '10.0.0.0/24');
    problem(
      await t.api.post(rules, { priority: 12, direction: 'ingress', action: 'allow', appliesTo: { type: 'subnet', id: other.subnet.id } }),
      422,
      'appliesTo.id',
      /does not exist/,
    );
    problem(await t.api.post(rules, { priority: 13, direction: 'ingress', action: 'allow', peer: { type: 'zone' } }), 400, 'peer.id', /required/);
    problem(await t.api.post(rules, { priority: 13, direction: 'ingress', action: 'allow', destinationPorts: ['80'] }), 400, 'protocol', /tcp or udp/);
    problem(await t.api.post(rules, { priority: 13, direction: 'ingress', action: 'allow', protocol: 'tcp', destinationPorts: ['90-80'] }), 400, 'destinationPorts[0]');
    problem(await t.api.post(rules, { priority: 13, direction: 'sideways', action: 'allow' }), 400, 'direction');
    problem(await t.api.post(rules, { priority: 13, direction: 'ingress', action: 'allow', protocol: 256 }), 400, 'protocol');
  });

  it('refuses bodies over 1 MiB with 413 and malformed JSON with 400', async () => {
    const big = JSON.stringify({ name: 'x', description: 'y'.repeat(1024 * 1024 + 10) });
    problem(await t.api.post('/api/v1/enterprises', big), 413, undefined, /1 MiB/);
    problem(await t.api.post('/api/v1/enterprises', '{"name": '), 400, undefined, /not valid JSON/);
  });

  it('refuses strings Postgres cannot store (NUL, lone surrogates) with 400 naming the field, in bodies and filters', async () => {
    const eps = `/api/v1/subnets/${tree.subnet.id}/endpoints`;
    // JSON text, so that the escapes reach the server as they are
    problem(await t.api.post(eps, '{"name": "a\\u0000b"}'), 400, 'name', /U\+0000/);
    problem(await t.api.post(eps, '{"name": "x\\ud800"}'), 400, 'name', /lone UTF-16 surrogate/);
    problem(await t.api.post(eps, '{"name": "ok", "externalId": "\\udc00"}'), 400, 'externalId', /surrogate/);
    problem(await t.api.post('/api/v1/enterprises', '{"name": "n", "description": "d\\u0000"}'), 400, 'description', /NUL/);
    problem(await t.api.patch(`/api/v1/zones/${tree.zone.id}`, '{"description": "\\ud83d"}'), 400, 'description', /surrogate/);
    // nested values (checked after the schema: a group id must be a UUID first), and field names: still 400s
    problem(await t.api.post(eps, '{"name": "ok", "policyGroupIds": ["\\u0000"]}'), 400, 'policyGroupIds[0]', /UUID/);
    problem(await t.api.post(`/api/v1/zones/${tree.zone.id}/subnets`, '{"name": "r", "cidr": "10.77.0.0/24", "description": "x\\ud800"}'), 400, 'description', /surrogate/);
    problem(await t.api.post(eps, '{"name": "ok", "a\\u0000": 1}'), 400, '', /unknown field/);
    problem(await t.api.get(`${eps}?name=a%00b`), 400, 'name', /NUL/);
    // a well-formed pair is a character like any other
    const ok = await t.api.post(eps, '{"name": "clef \\ud834\\udd1e"}');
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal(ok.body.name, 'clef 𝄞');
    assert.equal((await t.api.get(`${eps}?name=${encodeURIComponent('clef 𝄞')}`)).body.items.length, 1);
  });

  it('refuses duplicate names, VNIs, route distinguishers and community tags', async () => {
    problem(await t.api.post('/api/v1/enterprises', { name: 'errors' }), 409, 'name', /already exists/);
    const d = await t.api.make(`/api/v1/enterprises/${tree.enterprise.id}/domains`, { name: 'vni-a', l3Vni: 777, routeDistinguisher: '65000:7' });
    problem(await t.api.post(`/api/v1/enterprises/${tree.enterprise.id}/domains`, { name: 'vni-b', l3Vni: 777 }), 409, 'l3Vni', /VNI 777/);
    problem(await t.api.post(`/api/v1/zones/${tree.zone.id}/subnets`, { name: 's', cidr: '10.50.0.0/24', l2Vni: 777 }), 409, 'l2Vni');
    problem(await t.api.post(`/api/v1/enterprises/${tree.enterprise.id}/domains`, { name: 'rd', routeDistinguisher: '65000:7' }), 409, 'routeDistinguisher');
    problem(await t.api.post(`/api/v1/enterprises/${tree.enterprise.id}/domains`, { name: 'rd2', routeDistinguisher: '65000' }), 400, 'routeDistinguisher');
    await t.api.make(`/api/v1/domains/${d.id}/policy-groups`, { name: 'tagged', communityTag: '65000:42' });
    const other = await makeTree(t.api, 'tags-other', '10.0.0.0/24');
    problem(await t.api.post(`/api/v1/domains/${other.domain.id}/policy-groups`, { name: 't', communityTag: '65000:42' }), 409, 'communityTag');
    problem(await t.api.post(`/api/v1/domains/${other.domain.id}/policy-groups`, { name: 't', communityTag: '70000:1' }), 400, 'communityTag');
    problem(await t.api.post(`/api/v1/domains/${other.domain.id}/policy-groups`, { name: 't', communityTag: '1:2:3:4' }), 400, 'communityTag');
  });

  it('refuses change-log reads outside their ranges', async () => {
    problem(await t.api.get('/api/v1/changes?after=-1'), 400, 'after', /from 0 to/);
    problem(await t.api.get('/api/v1/changes?limit=0'), 400, 'limit', /from 1 to 10000/);
    problem(await t.api.get('/api/v1/changes?limit=10001'), 400, 'limit');
    problem(await t.api.get('/api/v1/changes?waitMs=30001'), 400, 'waitMs');
    const one = await t.api.get('/api/v1/changes?limit=1');
    assert.equal(one.status, 200);
    assert.equal(one.body.items.length, 1);
  });

  it('refuses a malformed If-Match and cascade flag', async () => {
    problem(await t.api.patch(`/api/v1/zones/${tree.zone.id}`, { description: 'x' }, { 'if-match': 'yesterday' }), 400, 'If-Match');
    problem(await t.api.del(`/api/v1/zones/${tree.zone.id}?cascade=maybe`), 400, 'cascade');
  });
});
