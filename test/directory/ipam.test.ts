import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeTree, startTestDirectory, TestDirectory } from '../support/directory';

describe('IPAM through the API', () => {
  let t: TestDirectory;
  before(async () => {
    t = await startTestDirectory();
  });
  after(async () => {
    await t?.stop();
  });

  it('gives 200 concurrent allocations 200 distinct addresses, then a clean 409 naming the subnet', async () => {
    // 10.1.0.0/24: .1 is the gateway, .0 and .255 are not usable, .202-.254 reserved -> exactly 200 free (.2-.201)
    const { zone } = await makeTree(t.api, 'ipam-a', '10.9.0.0/24');
    const subnet = await t.api.make(`/api/v1/zones/${zone.id}/subnets`, {
      name: 'exact-200',
      cidr: '10.1.0.0/24',
      reservedRanges: [{ start: '10.1.0.202', end: '10.1.0.254' }],
    });
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) => t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: `ep-${i}` })),
    );
    assert.deepEqual(
      replies.filter((r) => r.status !== 201).map((r) => r.body),
      [],
    );
    const ips = replies.map((r) => r.body.ip as string);
    assert.equal(new Set(ips).size, 200, 'every address is distinct');
    for (const ip of ips) {
      const last = Number(ip.split('.')[3]);
      assert.ok(last >= 2 && last <= 201, `${ip} is outside the allocatable range`);
    }
    const full = await t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'one-too-many' });
    assert.equal(full.status, 409);
    assert.match(full.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(full.body.type, '/problems/subnet-exhausted');
    assert.match(full.body.detail, new RegExp(subnet.id));
    assert.match(full.body.detail, /10\.1\.0\.0\/24/);

    // the database holds exactly the 200, distinct
    const list = await t.api.get(`/api/v1/subnets/${subnet.id}/endpoints?limit=1000`);
    assert.equal(list.body.items.length, 200);
  });

  it('frees an address when its endpoint is deleted, and reuses it', async () => {
    const { zone } = await makeTree(t.api, 'ipam-b', '10.9.1.0/24');
    const subnet = await t.api.make(`/api/v1/zones/${zone.id}/subnets`, { name: 'tiny', cidr: '10.2.0.0/29' });
    // /29: .1 gateway, .2-.6 usable
    const eps = [];
    for (let i = 0; i < 5; i++) eps.push(await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: `e${i}` }));
    assert.deepEqual(
      eps.map((e) => e.ip),
      ['10.2.0.2', '10.2.0.3', '10.2.0.4', '10.2.0.5', '10.2.0.6'],
    );
    assert.equal((await t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'full' })).status, 409);
    assert.equal((await t.api.del(`/api/v1/endpoints/${eps[2].id}`)).status, 204);
    const again = await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'again' });
    assert.equal(again.ip, '10.2.0.4');
  });

  it('allocates IPv6 addresses and skips the subnet-router anycast address', async () => {
    const { zone } = await makeTree(t.api, 'ipam-c', '10.9.2.0/24');
    const subnet = await t.api.make(`/api/v1/zones/${zone.id}/subnets`, { name: 'v6', cidr: '2001:db8:0:1::/64' });
    assert.equal(subnet.gateway, '2001:db8:0:1::1');
    assert.equal(subnet.ipVersion, 6);
    const a = await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'a' });
    const b = await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'b' });
    assert.equal(a.ip, '2001:db8:0:1::2');
    assert.equal(b.ip, '2001:db8:0:1::3');
    const anycast = await t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'c', ip: '2001:db8:0:1::' });
    assert.equal(anycast.status, 400);
    assert.match(anycast.body.detail, /anycast/);
  });

  it('honours static addresses and refuses the gateway, network, broadcast, outside and taken ones', async () => {
    const { subnet } = await makeTree(t.api, 'ipam-d', '10.3.0.0/24');
    const ok = await t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 's', ip: '10.3.0.50' });
    assert.equal(ok.status, 201);
    assert.equal(ok.body.ip, '10.3.0.50');
    const cases: Array<[string, number, RegExp]> = [
      ['10.3.0.1', 400, /gateway/],
      ['10.3.0.0', 400, /network or broadcast/],
      ['10.3.0.255', 400, /network or broadcast/],
      ['10.4.0.9', 400, /outside/],
      ['10.3.0.50', 409, /already in use/],
      ['2001:db8::5', 400, /not an IPv4 address/],
    ];
    for (const [ip, status, msg] of cases) {
      const r = await t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'x', ip });
      assert.equal(r.status, status, `${ip}: ${JSON.stringify(r.body)}`);
      assert.match(r.body.detail, msg);
      assert.equal(r.body.errors[0].field, 'ip');
    }
    // allocation skips the static address
    const seen = new Set<string>();
    for (let i = 0; i < 60; i++) seen.add((await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: `d${i}` })).ip);
    assert.ok(!seen.has('10.3.0.50'));
  });

  it('is idempotent on externalId: concurrent retries get one endpoint and one address', async () => {
    const { subnet } = await makeTree(t.api, 'ipam-e', '10.5.0.0/24');
    const replies = await Promise.all(
      Array.from({ length: 20 }, () => t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'pod', externalId: 'k8s-pod-uid-1' })),
    );
    const ids = new Set(replies.map((r) => r.body.id));
    assert.equal(ids.size, 1);
    assert.equal(replies.filter((r) => r.status === 201).length, 1);
    assert.equal(replies.filter((r) => r.status === 200).length, 19);
    const list = await t.api.get(`/api/v1/endpoints?subnetId=${subnet.id}`);
    assert.equal(list.body.items.length, 1);
    // the same externalId in another subnet is another endpoint
    const { subnet: other } = await makeTree(t.api, 'ipam-f', '10.5.0.0/24');
    const r = await t.api.post(`/api/v1/subnets/${other.id}/endpoints`, { name: 'pod', externalId: 'k8s-pod-uid-1' });
    assert.equal(r.status, 201);
    assert.notEqual(r.body.id, [...ids][0]);
  });

  it('enforces distinct addresses in the database itself, not only in code', async () => {
    const { subnet } = await makeTree(t.api, 'ipam-g', '10.6.0.0/24');
    const a = await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'a' });
    const { Client } = await import('pg');
    const c = new Client({ connectionString: t.dir.databaseUrl });
    await c.connect();
    try {
      await assert.rejects(
        c.query(
          `INSERT INTO endpoints (id, enterprise_id, domain_id, zone_id, subnet_id, kind, name, mac, ip, created_at, updated_at, revision)
           SELECT gen_random_uuid(), enterprise_id, domain_id, zone_id, subnet_id, kind, 'dup', '02:00:00:00:00:99', ip, now(), now(), 0
           FROM endpoints WHERE id = $1`,
          [a.id],
        ),
        /endpoints_subnet_ip/,
      );
    } finally {
      await c.end();
    }
  });
});
