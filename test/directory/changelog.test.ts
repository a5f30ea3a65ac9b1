import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { firstValueFrom, take, toArray } from 'rxjs';
import { createModelStore } from '../../libs/store/src';
import { makeTree, startTestDatabase, startTestDirectory, TestDatabase, TestDirectory } from '../support/directory';

async function allChanges(t: TestDirectory) {
  const out: any[] = [];
  let after = 0;
  for (;;) {
    const r = await t.api.get(`/api/v1/changes?after=${after}&limit=10000`);
    assert.equal(r.status, 200);
    out.push(...r.body.items);
    if (r.body.items.length < 10000) return out;
    after = out[out.length - 1].revision;
  }
}

function assertGapFree(changes: any[]) {
  changes.forEach((c, i) => assert.equal(c.revision, i + 1, `revision ${i + 1} is at position ${i}`));
}

describe('the change log', () => {
  let db: TestDatabase;
  let one: TestDirectory;
  let two: TestDirectory;
  before(async () => {
    db = await startTestDatabase();
    one = await startTestDirectory({ db });
    two = await startTestDirectory({ db }); // a second directory process on the same database
  });
  after(async () => {
    await two?.stop();
    await one?.stop();
    await db?.stop();
  });

  it('is gap-free and ordered under concurrent writers in two directory processes, failures included', async () => {
    const { domain, zone } = await makeTree(one.api, 'log', '10.0.0.0/24');
    const s2 = await two.api.make(`/api/v1/zones/${zone.id}/subnets`, { name: 's2', cidr: '10.0.1.0/24' });
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 150; i++) {
      const api = i % 2 ? one.api : two.api;
      ops.push(api.post(`/api/v1/subnets/${s2.id}/endpoints`, { name: `e${i}` }));
      if (i % 10 === 0) ops.push(api.post(`/api/v1/domains/${domain.id}/policy-groups`, { name: `g${i}` }));
      // failures in the middle of batches must not leave holes
      if (i % 7 === 0) ops.push(api.post(`/api/v1/zones/${zone.id}/subnets`, { name: `bad${i}`, cidr: '10.0.0.0/25' }));
      if (i % 13 === 0) ops.push(api.post(`/api/v1/subnets/${s2.id}/endpoints`, { name: 'dup-mac', mac: '02:aa:00:00:00:01' }));
    }
    const replies = (await Promise.all(ops)) as any[];
    const created = replies.filter((r) => r.status === 201).length;
    assert.ok(replies.some((r) => r.status === 409), 'some writes failed on purpose');
    const changes = await allChanges(one);
    assertGapFree(changes);
    // 4 for the tree, 1 for s2, then one entry per successful create
    assert.equal(changes.length, 5 + created);
    // both processes see the same log
    assert.deepEqual(await allChanges(two), changes);
    // every endpoint's revision is the revision of its change
    const eps = changes.filter((c) => c.kind === 'endpoint');
    for (const c of eps) assert.equal(c.state.revision, c.revision);
    // and each address appears once
    assert.equal(new Set(eps.map((c) => c.state.ip)).size, eps.length);
  });

  it('commits a batch of endpoint creations as one statement, and runs it again the ordinary way after another process wrote or when a row is kept out', async () => {
    const oneStatement = async (t: TestDirectory) => {
      const text = await (await fetch(`${t.dir.url}/metrics`)).text();
      const read = (outcome: string) => Number(new RegExp(`sdn_directory_write_one_statement_batches_total\\{outcome="${outcome}"\\} (\\d+)`).exec(text)?.[1]);
      return { committed: read('committed'), retried: read('retried') };
    };
    const { subnet } = await makeTree(one.api, 'onestmt', '10.9.0.0/24');
    // one's writer now knows the counter and the subnet's address pool (loading it is a read): its
    // next endpoint batch is one statement
    await one.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'warm' });
    const m0 = await oneStatement(one);
    const a = await one.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'a', externalId: 'ext-a' });
    const m1 = await oneStatement(one);
    assert.deepEqual(m1, { committed: m0.committed + 1, retried: m0.retried });

    // another process writes: one's presumption of the counter is stale, its statement fails the check
    await two.api.make('/api/v1/enterprises', { name: 'onestmt-other' });
    const b = await one.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'b' });
    const m2 = await oneStatement(one);
    assert.deepEqual(m2, { committed: m1.committed, retried: m1.retried + 1 });

    // the same externalId again: the row is kept out (ON CONFLICT), the statement fails the count; the
    // ordinary way answers with the existing endpoint
    await one.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'c' }); // one statement again
    const again = await one.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'a2', externalId: 'ext-a' });
    assert.equal(again.status, 200);
    assert.equal(again.body.id, a.id);
    const m3 = await oneStatement(one);
    assert.deepEqual(m3, { committed: m2.committed + 1, retried: m2.retried + 1 });

    // nothing lost or duplicated, the log gap-free, each endpoint's revision is its change's
    const changes = await allChanges(two);
    assertGapFree(changes);
    const mine = changes.filter((c) => c.kind === 'endpoint' && c.state?.subnetId === subnet.id);
    assert.deepEqual(
      mine.map((c) => c.state.name),
      ['warm', 'a', 'b', 'c'],
    );
    for (const c of mine) assert.equal((await two.api.get(`/api/v1/endpoints/${c.id}`)).body.revision, c.revision);
    assert.equal(b.revision, mine[2].revision);
  });

  it('refuses, without a dangling row, an endpoint for a subnet, host or group another directory process just deleted', async () => {
    // directory one has just read (and cached) the subnet, host and group; directory two deletes them
    const { zone } = await makeTree(one.api, 'stale', '10.7.0.0/24');
    const s = await one.api.make(`/api/v1/zones/${zone.id}/subnets`, { name: 'gone', cidr: '10.7.1.0/24' });
    const h = await one.api.make('/api/v1/hosts', { name: 'gone-host', vtepIp: '192.0.2.77' });
    const keep = await one.api.make(`/api/v1/zones/${zone.id}/subnets`, { name: 'kept', cidr: '10.7.2.0/24' });
    const g = await one.api.make(`/api/v1/domains/${keep.domainId}/policy-groups`, { name: 'gone-group' });
    await one.api.make(`/api/v1/subnets/${s.id}/endpoints`, { name: 'warm', hostId: h.id });
    await one.api.make(`/api/v1/subnets/${keep.id}/endpoints`, { name: 'warm2', hostId: h.id, policyGroupIds: [g.id] });
    assert.equal((await two.api.del(`/api/v1/subnets/${s.id}?cascade=true`)).status, 204);
    const r1 = await one.api.post(`/api/v1/subnets/${s.id}/endpoints`, { name: 'late' });
    assert.ok(r1.status === 404 || r1.status === 409, `got ${r1.status}`);
    assert.equal((await two.api.get(`/api/v1/endpoints?name=late`)).body.items.length, 0);
    // the group: the same answer as for a group that never existed
    assert.equal((await two.api.del(`/api/v1/policy-groups/${g.id}?cascade=true`)).status, 204);
    const r2 = await one.api.post(`/api/v1/subnets/${keep.id}/endpoints`, { name: 'late2', policyGroupIds: [g.id] });
    assert.equal(r2.status, 422);
    assert.match(r2.body.detail, /policy group/);
    // the host: a conflict, nothing created
    for (const e of (await two.api.get(`/api/v1/endpoints?hostId=${h.id}`)).body.items) await two.api.del(`/api/v1/endpoints/${e.id}`);
    assert.equal((await two.api.del(`/api/v1/hosts/${h.id}`)).status, 204);
    const r3 = await one.api.post(`/api/v1/subnets/${keep.id}/endpoints`, { name: 'late3', hostId: h.id });
    assert.ok(r3.status === 404 || r3.status === 409, `got ${r3.status}`);
    assert.equal((await two.api.get(`/api/v1/endpoints?name=late3`)).body.items.length, 0);
  });

  it('writes one entry per object of a cascade delete, in the same transaction', async () => {
    const { enterprise, subnet } = await makeTree(one.api, 'cascade', '10.1.0.0/24');
    for (let i = 0; i < 3; i++) await one.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: `c${i}` });
    const before = (await allChanges(one)).length;
    assert.equal((await one.api.del(`/api/v1/enterprises/${enterprise.id}?cascade=true`)).status, 204);
    const changes = await allChanges(one);
    assertGapFree(changes);
    const tail = changes.slice(before);
    assert.deepEqual(
      tail.map((c) => `${c.op}:${c.kind}`),
      ['delete:endpoint', 'delete:endpoint', 'delete:endpoint', 'delete:subnet', 'delete:zone', 'delete:domain', 'delete:enterprise'],
    );
    assert.ok(tail.every((c) => c.state === null && c.committedAt === tail[0].committedAt));
  });

  it('keeps every state exactly, whatever its strings hold, in one-statement and ordinary batches alike', async () => {
    const { subnet } = await makeTree(one.api, 'chars', '10.9.0.0/24');
    // the states travel joined by U+001E, and the other columns as array literals
    const names = ['a\u001eb', 'pipe | semi ;', '\u001e', 'quote " and \\ backslash', '{braces},comma', 'NULL', 'tab\tnew\nline', 'snow ☃ clef 𝄞', "it's"];
    const before = (await allChanges(one)).length;
    // sent together: they are written in the endpoint creations' one-statement batches
    const made = await Promise.all(names.map((name) => one.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name })));
    assert.deepEqual(
      made.map((e) => e.name),
      names,
    );
    // an update, a delete (a null state) and a creation in the ordinary batches, together
    const [renamed, deleted] = await Promise.all([
      one.api.patch(`/api/v1/endpoints/${made[0].id}`, { name: 'b\u001e\u001ec' }),
      one.api.del(`/api/v1/endpoints/${made[1].id}`),
      one.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: '\u001e"\u001e', mac: '02:aa:00:00:09:01' }),
    ]);
    assert.equal(renamed.status, 200);
    assert.equal(deleted.status, 204);
    const tail = (await allChanges(one)).slice(before);
    assert.equal(tail.length, names.length + 3);
    for (const c of tail) {
      if (c.op === 'delete') {
        assert.equal(c.state, null);
        assert.equal(c.id, made[1].id);
        continue;
      }
      const now = await one.api.get(`/api/v1/endpoints/${c.id}`);
      // the newest entry of an object is the object as the API shows it
      const newest = tail.filter((x) => x.id === c.id).at(-1);
      if (newest === c) assert.deepEqual({ ...c.state, status: now.body.status }, now.body);
      assert.equal(c.enterpriseId, subnet.enterpriseId);
    }
    assert.deepEqual(
      tail
        .filter((c) => c.op === 'create')
        .map((c) => c.state.name)
        .sort(),
      [...names, '\u001e"\u001e'].sort(),
    );
  });

  it('streams changes live over server-sent events from a given revision', async () => {
    const start = (await allChanges(one)).length;
    const ac = new AbortController();
    // the headers come at once, not with the first event or the first keep-alive (15 s)
    let timer: NodeJS.Timeout | undefined;
    const res = await Promise.race([
      fetch(`${one.dir.url}/api/v1/changes/stream?after=${start}`, {
        headers: { authorization: `Bearer ${one.api.key}` },
        signal: ac.signal,
      }),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no response headers within 5 s of connecting')), 5000))),
    ]).finally(() => clearTimeout(timer));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = res.body!.getReader();
    // a write through the OTHER process reaches this stream (LISTEN/NOTIFY)
    const ent = await two.api.make('/api/v1/enterprises', { name: 'streamed' });
    let text = '';
    const deadline = Date.now() + 5000;
    while (!text.includes(ent.id) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    ac.abort();
    const events = text.split('\n\n').filter((e) => e.startsWith('id: '));
    assert.ok(events.length >= 1);
    const first = events[0].split('\n');
    assert.equal(first[0], `id: ${start + 1}`);
    assert.equal(first[1], 'event: change');
    const data = JSON.parse(first[2].slice('data: '.length));
    assert.equal(data.id, ent.id);
    assert.equal(data.kind, 'enterprise');
  });

  it('feeds the controller store: snapshot plus follow gives the current model', async () => {
    const store = createModelStore(db.url, { pollMs: 50 });
    try {
      const snap = await store.loadSnapshot();
      const log = await allChanges(one);
      assert.equal(snap.revision, log.length);
      const live = log.filter((c) => c.op !== 'delete');
      const liveIds = new Set(live.map((c) => c.id));
      for (const c of log.filter((x) => x.op === 'delete')) liveIds.delete(c.id);
      const snapIds = new Set(
        [snap.enterprises, snap.domains, snap.zones, snap.subnets, snap.hosts, snap.endpoints, snap.policyGroups].flat().map((x: any) => x.id),
      );
      assert.deepEqual([...snapIds].sort(), [...liveIds].sort());
      const next = firstValueFrom(store.follow(snap.revision).pipe(take(2), toArray()));
      await one.api.make('/api/v1/enterprises', { name: 'after-snapshot-1' });
      await two.api.make('/api/v1/enterprises', { name: 'after-snapshot-2' });
      const got = await next;
      assert.deepEqual(
        got.map((c) => c.revision),
        [snap.revision + 1, snap.revision + 2],
      );
      assert.deepEqual(
        got.map((c: any) => c.state.name),
        ['after-snapshot-1', 'after-snapshot-2'],
      );
    } finally {
      await store.close();
    }
  });

  it('loses nothing committed across a restart of the directory', async () => {
    const { subnet } = await makeTree(one.api, 'restart', '10.2.0.0/24');
    const eps = await Promise.all(Array.from({ length: 30 }, (_, i) => one.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: `r${i}` })));
    const before = await allChanges(one);
    await one.restart();
    const after = await allChanges(one);
    assert.deepEqual(after, before);
    for (const e of eps) {
      const r = await one.api.get(`/api/v1/endpoints/${e.id}`);
      assert.equal(r.status, 200);
      assert.equal(r.body.ip, e.ip);
    }
    // allocation continues without reusing an address
    const next = await one.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'after-restart' });
    assert.ok(!eps.some((e) => e.ip === next.ip));
    assertGapFree(await allChanges(one));
  });
});
