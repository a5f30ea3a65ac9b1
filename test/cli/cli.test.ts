import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { OPERATOR_KEY, sql, startTestDirectory, TestDirectory } from '../support/directory';

const run = promisify(execFile);
const CLI = join(__dirname, '..', '..', 'apps', 'cli', 'src', 'main.js');

describe('the sdn command line', () => {
  let t: TestDirectory;
  const sdn = async (...args: string[]) => {
    try {
      const r = await run(process.execPath, [CLI, '--url', t.dir.url, ...args], { env: { ...process.env, SDN_KEY: OPERATOR_KEY } });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e: any) {
      return { code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string };
    }
  };
  const json = async (...args: string[]) => {
    const r = await sdn('--json', ...args);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  };

  before(async () => {
    t = await startTestDirectory();
  });
  after(async () => {
    await t?.stop();
  });

  it('builds a tree, lists it as a table, updates with If-Match and deletes with cascade', async () => {
    const e = await json('create', 'enterprise', 'name=acme');
    const d = await json('create', 'domain', '--under', e.id, 'name=prod', 'l3Vni=60001');
    assert.equal(d.l3Vni, 60001, 'numbers are sent as numbers');
    const z = await json('create', 'zone', '--under', d.id, 'name=web');
    const s = await json('create', 'subnet', '--under', z.id, 'name=front', 'cidr=10.1.0.0/24');
    const g = await json('create', 'policy-group', '--under', d.id, 'name=web', 'communityTag=65000:10');
    const ep = await json('create', 'endpoint', '--under', s.id, 'name=web-1', `policyGroupIds=["${g.id}"]`);
    assert.equal(ep.ip, '10.1.0.2');
    const list = await sdn('list', 'endpoints', '--under', s.id);
    assert.equal(list.code, 0);
    const lines = list.stdout.trim().split('\n');
    assert.match(lines[0], /^id\s+name\s+ip\s+mac\s+hostId\s+status$/);
    assert.match(lines[1], new RegExp(`^${ep.id}\\s+web-1\\s+10\\.1\\.0\\.2\\s`));
    const stale = await sdn('update', 'domain', d.id, 'defaultIngressAction=allow', '--if-match', String(d.revision - 1));
    assert.equal(stale.code, 1);
    assert.match(stale.stderr, /^sdn: 412 /);
    const ok = await json('update', 'domain', d.id, 'defaultIngressAction=allow', '--if-match', String(d.revision));
    assert.equal(ok.defaultIngressAction, 'allow');
    const refused = await sdn('delete', 'enterprise', e.id);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /409/);
    assert.equal((await sdn('delete', 'enterprise', e.id, '--cascade')).code, 0);
    assert.equal((await sdn('get', 'enterprise', e.id)).code, 1);
    // the BGP configuration of docs/federation.md
    const sp = await json('create', 'bgp-speaker', 'name=dc1', 'datacenter=dc1', 'asn=65000', 'routerId=10.255.0.100');
    await json('create', 'bgp-neighbor', '--under', sp.id, 'name=rr', 'address=10.255.0.254', 'asn=65000');
    assert.match((await sdn('list', 'bgp-neighbors', '--under', sp.id)).stdout, /rr\s+10\.255\.0\.254\s+65000\s+l2vpn-evpn/);
    const changes = await sdn('changes', '--after', '0');
    assert.match(changes.stdout, /\tdelete\tendpoint\t/);
  });

  it('explains bad input: field errors from the API, usage errors with exit code 2, an unreachable directory', async () => {
    const e = await json('create', 'enterprise', 'name=bad-input');
    const bad = await sdn('create', 'domain', '--under', e.id, 'name=x', 'l3Vni=99999999');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /l3Vni/);
    const usage = await sdn('create', 'subnet', 'name=x');
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--under <zone id>/);
    assert.equal((await sdn('list', 'routers')).code, 2);
    const down = await run(process.execPath, [CLI, '--url', 'http://127.0.0.1:9', 'health']).catch((x) => x);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach the directory at http:\/\/127\.0\.0\.1:9/);
  });

  it("lists a domain's remote endpoints, stale ones marked, and refuses to write them", async () => {
    const e = await json('create', 'enterprise', 'name=fed');
    const d = await json('create', 'domain', '--under', e.id, 'name=stretched');
    const sp = await json('create', 'bgp-speaker', 'name=dc9', 'datacenter=dc9', 'asn=65009', 'routerId=10.255.9.100');
    // the controller's federation writes this table (test/federation); a row stands for one it learned before a restart
    await sql(
      t.db.url,
      `INSERT INTO remote_endpoints (speaker_id, route_key, enterprise_id, domain_id, mac, ip, vtep_ip, l2_vni, route_distinguisher, peer, datacenter, learned_at, stale)
       VALUES ('${sp.id}', 'k1', '${e.id}', '${d.id}', '02:aa:00:00:00:09', '10.9.0.9', '10.255.8.1', 9100, '10.255.8.100:1', '10.255.0.254', 'dc8', now(), true)`,
    );
    const list = await sdn('list', 'remote-endpoints', '--under', d.id);
    assert.equal(list.code, 0, list.stderr);
    const [head, row] = list.stdout.trim().split('\n');
    assert.match(head, /^mac\s+ip\s+vtepIp\s+l2Vni\s+datacenter\s+peer\s+policyGroupIds\s+stale\s+learnedAt$/);
    assert.match(row, /^02:aa:00:00:00:09\s+10\.9\.0\.9\s+10\.255\.8\.1\s+9100\s+dc8\s+10\.255\.0\.254\s+-\s+true\s+\d{4}-/);
    const unscoped = await sdn('list', 'remote-endpoints');
    assert.equal(unscoped.code, 2);
    assert.match(unscoped.stderr, /--under <id>/);
    const write = await sdn('create', 'remote-endpoint', '--under', d.id, 'mac=02:aa:00:00:00:0a');
    assert.equal(write.code, 2);
    assert.match(write.stderr, /read-only/);
  });
});
