import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PgProxy } from '../support/pg-proxy';
import { makeTree, sql, startTestDatabase, startTestDirectory, type TestDatabase, type TestDirectory } from '../support/directory';

/**
 * The directory's writer loses its connection with a commit on its way (a TCP
 * proxy cuts it at the COMMIT, or at the one-statement batch that commits by
 * itself). The caller must get what really happened: 201 when the commit
 * landed, 503 database-unavailable when it did not, 503 commit-unknown when
 * the database could not be asked.
 */
describe('a commit whose connection is lost', () => {
  let db: TestDatabase;
  let proxy: PgProxy;
  let t: TestDirectory;
  before(async () => {
    db = await startTestDatabase();
    let url: string;
    ({ proxy, url } = await PgProxy.inFrontOf(db.url, 'sdn_check'));
    t = await startTestDirectory({ db: { url, stop: async () => undefined } });
  });
  after(async () => {
    await t?.stop();
    await proxy?.close();
    await db?.stop();
  });

  const lostCommits = async () => {
    const text = await (await fetch(`${t.dir.url}/metrics`)).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^sdn_directory_write_lost_commits_total\{outcome="(\w+)"\} (\d+)$/gm)) out[m[1]] = Number(m[2]);
    return out;
  };
  /** rows in the database itself, not through the directory */
  const count = async (text: string, params: unknown[]) => (await sql(db.url, text, params))[0].n as number;

  it('answers 201 when the COMMIT landed, 503 database-unavailable when it did not', async () => {
    const { domain } = await makeTree(t.api, 'lost-ordinary');
    // a policy group is written the ordinary way: BEGIN, the work, the change log, COMMIT
    proxy.arm('after');
    const landed = await t.api.post(`/api/v1/domains/${domain.id}/policy-groups`, { name: 'landed' });
    assert.equal(proxy.cuts, 1, 'the connection was cut at the COMMIT');
    assert.equal(landed.status, 201, JSON.stringify(landed.body));
    assert.equal(await count('SELECT count(*)::int AS n FROM policy_groups WHERE id = $1', [landed.body.id]), 1);
    assert.equal(await count('SELECT count(*)::int AS n FROM change_log WHERE object_id = $1', [landed.body.id]), 1);

    proxy.arm('before');
    const lost = await t.api.post(`/api/v1/domains/${domain.id}/policy-groups`, { name: 'lost' });
    assert.equal(proxy.cuts, 2);
    assert.equal(lost.status, 503, JSON.stringify(lost.body));
    assert.equal(lost.body.type, '/problems/database-unavailable');
    assert.equal(await count("SELECT count(*)::int AS n FROM policy_groups WHERE name = 'lost'", []), 0);

    // the COMMIT reaches the server only after the directory saw the connection go: the directory ends that session
    // before it looks, so the answer stays true (it answered from a look taken before the late COMMIT landed)
    proxy.arm('late');
    const late = await t.api.post(`/api/v1/domains/${domain.id}/policy-groups`, { name: 'late' });
    assert.equal(late.status, 503, JSON.stringify(late.body));
    assert.equal(late.body.type, '/problems/database-unavailable');
    await new Promise((r) => setTimeout(r, 900)); // past the late COMMIT
    assert.equal(await count("SELECT count(*)::int AS n FROM policy_groups WHERE name = 'late'", []), 0, 'answered as not written, and not written');

    // the writer carries on, on a new connection, and the log has no gap
    const next = await t.api.post(`/api/v1/domains/${domain.id}/policy-groups`, { name: 'lost' });
    assert.equal(next.status, 201, JSON.stringify(next.body));
    const revisions = (await t.api.get('/api/v1/changes?after=0&limit=1000')).body.items.map((c: any) => c.revision);
    assert.deepEqual(revisions, revisions.map((_: number, i: number) => i + 1));
    assert.deepEqual(await lostCommits(), { committed: 1, not_committed: 2, unknown: 0 });
  });

  it('answers 201 when a one-statement batch landed, 503 database-unavailable when it did not', async () => {
    const { subnet } = await makeTree(t.api, 'lost-one', '10.1.0.0/24');
    await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'warm' }); // the subnet's addresses are known: the next creation needs no read
    const before = (await lostCommits()).committed;
    proxy.arm('after');
    const landed = await t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'landed' });
    assert.equal(landed.status, 201, JSON.stringify(landed.body));
    assert.equal((await lostCommits()).committed, before + 1, 'it went as one statement, and was cut');
    assert.equal(await count('SELECT count(*)::int AS n FROM endpoints WHERE id = $1', [landed.body.id]), 1);

    proxy.arm('before');
    const lost = await t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'lost', ip: '10.1.0.77' });
    assert.equal(lost.status, 503, JSON.stringify(lost.body));
    assert.equal(lost.body.type, '/problems/database-unavailable');
    // nothing of it stayed behind: not the row, not its address
    const again = await t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'lost', ip: '10.1.0.77' });
    assert.equal(again.status, 201, JSON.stringify(again.body));
    const list = (await t.api.get(`/api/v1/subnets/${subnet.id}/endpoints`)).body.items.map((e: any) => e.name).sort();
    assert.deepEqual(list, ['landed', 'lost', 'warm']);
  });

  it('answers 503 commit-unknown when the database cannot be asked, and the change is found afterwards', async () => {
    const { domain } = await makeTree(t.api, 'lost-unknown');
    // the commit lands, then the database is away for longer than the directory asks (about three seconds)
    proxy.arm('after', 5000);
    const r = await t.api.post(`/api/v1/domains/${domain.id}/policy-groups`, { name: 'in-doubt' });
    assert.equal(r.status, 503, JSON.stringify(r.body));
    assert.equal(r.body.type, '/problems/commit-unknown');
    assert.match(r.body.detail, /before sending the request again/);
    assert.equal((await lostCommits()).unknown, 1);
    // while the database is away, requests are refused as unavailable, not failed
    const away = await t.api.get(`/api/v1/domains/${domain.id}/policy-groups`);
    assert.equal(away.status, 503, JSON.stringify(away.body));
    assert.equal(away.body.type, '/problems/database-unavailable');
    await new Promise((res) => setTimeout(res, 2500));
    const found = (await t.api.get(`/api/v1/domains/${domain.id}/policy-groups`)).body.items.map((g: any) => g.name);
    assert.deepEqual(found, ['in-doubt'], 'the commit had landed');
  });

  it('keeps every answer true when commits are lost at random under concurrent writers', async () => {
    const { subnet, domain } = await makeTree(t.api, 'lost-load', '10.2.0.0/16');
    await t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'warm' });
    const seed = Number(process.env.TEST_SEED ?? Date.now() % 100000);
    let state = seed;
    const rand = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648);
    const answers: Array<{ name: string; kind: 'endpoint' | 'group'; status: number; type?: string; id?: string }> = [];
    let stop = false;
    const client = async (k: number) => {
      for (let i = 0; !stop; i++) {
        const name = `c${k}-${i}`;
        // mostly endpoint creations (one-statement batches), some groups (the ordinary way) in the same batches
        const kind = i % 7 === 3 ? 'group' : 'endpoint';
        const r =
          kind === 'group'
            ? await t.api.post(`/api/v1/domains/${domain.id}/policy-groups`, { name })
            : await t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name });
        answers.push({ name, kind, status: r.status, type: r.body?.type, id: r.body?.id });
      }
    };
    const before = await lostCommits();
    const clients = Array.from({ length: 8 }, (_, k) => client(k));
    for (let cut = 0; cut < 12; cut++) {
      await new Promise((r) => setTimeout(r, 60 + rand() * 120));
      const r = rand();
      proxy.arm(r < 0.5 ? 'after' : r < 0.8 ? 'before' : 'late');
      await waitUntilDisarmed(proxy);
    }
    stop = true;
    await Promise.all(clients);
    const after = await lostCommits();
    const why = `seed ${seed} (TEST_SEED replays it): ${JSON.stringify({ before, after })}`;
    assert.ok(after.committed > before.committed && after.not_committed > before.not_committed, `both outcomes happened: ${why}`);
    assert.equal(after.unknown, before.unknown, why);

    // what the database holds, asked directly
    const names = await sql(
      db.url,
      'SELECT name, revision FROM endpoints WHERE subnet_id = $1 UNION ALL SELECT name, revision FROM policy_groups WHERE domain_id = $2',
      [subnet.id, domain.id],
    );
    const stored = new Map(names.map((r) => [r.name as string, Number(r.revision)]));
    const log = await sql(db.url, 'SELECT revision, object_id::text AS id FROM change_log ORDER BY revision');
    const logged = new Set(log.map((r) => r.id as string));
    log.forEach((r, i) => assert.equal(Number(r.revision), i + 1, `the change log has no gap: ${why}`));
    for (const a of answers) {
      if (a.status === 201) {
        assert.ok(stored.has(a.name), `${a.name} answered 201 but is not stored: ${why}`);
        assert.ok(logged.has(a.id!), `${a.name} answered 201 but is not in the change log: ${why}`);
      } else {
        assert.equal(a.status, 503, `${a.name}: ${a.status} ${a.type}: ${why}`);
        assert.equal(a.type, '/problems/database-unavailable', why);
        assert.ok(!stored.has(a.name), `${a.name} answered database-unavailable but is stored at revision ${stored.get(a.name)}: ${why}`);
      }
    }
    assert.ok(answers.filter((a) => a.status === 201).length > 50, why);
  });
});

async function waitUntilDisarmed(proxy: PgProxy): Promise<void> {
  for (let i = 0; proxy.isArmed && i < 200; i++) await new Promise((r) => setTimeout(r, 10));
  proxy.disarm();
  await new Promise((r) => setTimeout(r, 250)); // the cut connection's end, and the writer's question
}
