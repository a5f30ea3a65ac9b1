import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { compileAll, describeDifference } from '#sdn/compiler';
import { createModelStore, type ModelStore } from '#sdn/store';
import { loadConfig as controllerConfig } from '../../apps/controller/src/config';
import { startController } from '../../apps/controller/src/controller';
import { startDirectory, type RunningDirectory } from '../../apps/directory/src/app';
import { loadConfig as directoryConfig } from '../../apps/directory/src/config';
import { blackhole, overTcp, sessionPorts } from '../support/blackhole';
import { settled, type SimHost, SimulatedAgent, waitUntil } from '../support/controller';
import { Api, makeTree, OPERATOR_KEY, sql, startTestDatabase, type TestDatabase } from '../support/directory';

/**
 * A database whose connections go silent instead of failing: every packet of
 * the sessions open at that moment is dropped by the kernel (nftables), as
 * when a failover's old primary disappears. Without a bound, a statement on
 * such a connection waits for good and a LISTEN session never learns it is
 * dead. The directory and the controller run with SDN_DB_TIMEOUT_SECONDS=2.
 */
const TIMEOUT_SECONDS = 2;

/** Creates an endpoint named `name`: the answer, and how long it took in seconds. */
async function timedCreate(api: Api, subnetId: string, name: string) {
  const started = Date.now();
  const reply = await api.post(`/api/v1/subnets/${subnetId}/endpoints`, { name });
  return { reply, seconds: (Date.now() - started) / 1000 };
}

/** Tries to create an endpoint named `name` for up to 30 s: whether it was written, and the other answers by "status type". */
async function untilWritten(api: Api, subnetId: string, name: string) {
  const others = new Map<string, number>();
  for (const end = Date.now() + 30_000; Date.now() < end; ) {
    const r = await api.post(`/api/v1/subnets/${subnetId}/endpoints`, { name });
    if (r.status === 201 || r.status === 200) return { written: true, others };
    const k = `${r.status} ${r.body?.type}`;
    others.set(k, (others.get(k) ?? 0) + 1);
  }
  return { written: false, others };
}

describe('database connections that go silent or are ended', () => {
  let db: TestDatabase;
  /** the database over TCP, where the kernel can drop its packets */
  let url: string;
  let dir: RunningDirectory;
  let api: Api;
  let store: ModelStore;
  before(async () => {
    db = await startTestDatabase();
    url = overTcp(db.url);
    dir = await startDirectory({
      ...directoryConfig({}),
      databaseUrl: url,
      host: '127.0.0.1',
      port: 0,
      operatorKey: OPERATOR_KEY,
      logLevel: 'error',
      dbTimeoutSeconds: TIMEOUT_SECONDS,
      startController: false,
    });
    api = new Api(dir.url, OPERATOR_KEY);
    store = createModelStore(url);
  });
  after(async () => {
    await store?.close();
    await dir?.close();
    await db?.stop();
  });

  it('costs the directory a bounded wait and a 503, not its writer: the lost write is found not committed, and its LISTEN session is replaced', { timeout: 90_000 }, async () => {
    const { subnet } = await makeTree(api, 'silent', '10.20.0.0/24');
    assert.equal((await api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'before' })).status, 201);
    const listenBefore = await sessionPorts(url, 'sdn-directory-listen');
    assert.equal(listenBefore.length, 1, 'the directory listens');
    // the pool holds several connections, idle when the packets start to drop (concurrent reads open them)
    await waitUntil(async () => {
      await Promise.all(Array.from({ length: 8 }, () => api.get(`/api/v1/subnets/${subnet.id}/endpoints`)));
      return (await sessionPorts(url, 'sdn-directory')).length >= 3;
    }, 'three pooled connections');
    const hole = await blackhole(url, ['sdn-directory', 'sdn-directory-listen']);
    try {
      // the writer's connection is silent: after the timeout it is taken as lost, and the database, asked on a new
      // connection, shows the batch was not committed (its statement never reached the server)
      const { reply: during, seconds: waited } = await timedCreate(api, subnet.id, 'during');
      assert.equal(during.status, 503, JSON.stringify(during.body));
      assert.equal(during.body.type, '/problems/database-unavailable', JSON.stringify(during.body));
      assert.ok(waited >= TIMEOUT_SECONDS - 0.2 && waited < TIMEOUT_SECONDS + 8, `answered after ${waited} s`);

      // work goes on over new connections: the idle ones, as dead, were closed with the silent one, so the next
      // requests meet none of them (each would cost another timeout and a 503)
      for (const name of ['after', 'after-2']) {
        const { reply, seconds } = await timedCreate(api, subnet.id, name);
        assert.equal(reply.status, 201, `${name}: ${JSON.stringify(reply.body)} after ${seconds} s`);
      }
      const names = (await store.loadSnapshot()).endpoints.filter((e) => e.subnetId === subnet.id).map((e) => e.name);
      assert.deepEqual(names.sort(), ['after', 'after-2', 'before']);

      // the LISTEN session, idle, gets no answer to its keepalives: it is ended and opened again
      await waitUntil(
        async () => (await sessionPorts(url, 'sdn-directory-listen')).some((p) => !hole.ports.includes(p)),
        'a new LISTEN session',
        40_000,
      );
    } finally {
      hole.heal();
    }
  });

  it('a frozen database server (SIGSTOP) costs a bounded wait and a 503, /readyz says so at once, and all resumes after SIGCONT', { timeout: 90_000 }, async (t) => {
    if (process.env.DATABASE_URL) return t.skip('freezes the embedded Postgres of this file');
    const { subnet } = await makeTree(api, 'frozen', '10.22.0.0/24');
    assert.equal((await api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'before' })).status, 201);
    // the server's postmaster (its pid heads postmaster.pid in the data folder); its children are every other server process
    const dataDir = (await sql<{ data_directory: string }>(url, 'SHOW data_directory'))[0].data_directory;
    const postmaster = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
    // the postmaster first, so that it forks no process we would miss; a child may exit meanwhile (kill then fails for it)
    const signal = (sig: string, pids: number[]) => pids.forEach((pid) => spawnSync('kill', [`-${sig}`, String(pid)]));
    signal('STOP', [postmaster]);
    const children = spawnSync('pgrep', ['-P', String(postmaster)], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean).map(Number);
    signal('STOP', children);
    const server = [...children, postmaster];
    let frozen = true;
    try {
      // the kernel still accepts connections and answers keepalives: only the statement's bound can tell
      const { reply: during, seconds: waited } = await timedCreate(api, subnet.id, 'during');
      assert.equal(during.status, 503, JSON.stringify(during.body));
      // the statement may be in the frozen server's socket buffer, to run once it thaws: the outcome cannot be known
      assert.equal(during.body.type, '/problems/commit-unknown', JSON.stringify(during.body));
      assert.ok(waited >= TIMEOUT_SECONDS - 0.2 && waited < 3 * TIMEOUT_SECONDS + 10, `answered after ${waited} s`);
      const probeStarted = Date.now();
      const ready = await api.get('/readyz');
      assert.equal(ready.status, 503, JSON.stringify(ready.body));
      assert.ok(Date.now() - probeStarted < 1800, `/readyz answered in ${Date.now() - probeStarted} ms`);
      assert.match(ready.body.database, /no answer in 1 s/);
      signal('CONT', server);
      frozen = false;
      const { written, others } = await untilWritten(api, subnet.id, 'after');
      assert.ok(written, 'the directory writes again');
      for (const k of others.keys()) assert.match(k, /^503 /, `answers meanwhile: ${JSON.stringify([...others])}`);
      assert.equal((await api.get('/readyz')).status, 200);
      // what was answered commit-unknown is there or not; either way the change log has no gap and matches the table
      const snap = await store.loadSnapshot();
      const names = snap.endpoints.filter((e) => e.subnetId === subnet.id).map((e) => e.name);
      assert.ok(names.includes('before') && names.includes('after'), JSON.stringify(names));
      const log = (await api.get('/api/v1/changes?after=0&limit=10000')).body.items as Array<{ revision: number; kind: string; op: string; id: string }>;
      log.forEach((ch, i) => assert.equal(ch.revision, i + 1, 'no gap'));
      const created = new Set(log.filter((ch) => ch.kind === 'endpoint' && ch.op === 'create').map((ch) => ch.id));
      for (const e of snap.endpoints) assert.ok(created.has(e.id), `${e.name} is in the change log`);
    } finally {
      if (frozen) signal('CONT', server);
    }
  });

  it('a session ended while the controller loads its model fails the load, not the process', async () => {
    // the load waits on a lock another session holds, and an administrator (or a failover) ends its session meanwhile;
    // a pooled client checked out for the load had no 'error' listener, and pg's 'error' event then ended the process
    const loader = createModelStore(url);
    const { Client } = await import('pg');
    const locker = new Client({ connectionString: url });
    await locker.connect();
    try {
      await locker.query('BEGIN; LOCK TABLE change_log IN ACCESS EXCLUSIVE MODE');
      const load = loader.loadSnapshot().then(
        () => 'loaded',
        (e: Error) => e.message,
      );
      await waitUntil(async () => (await sql(url, `SELECT 1 FROM pg_stat_activity WHERE application_name = 'sdn-store' AND wait_event_type = 'Lock'`)).length > 0, 'the load waits');
      await sql(url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sdn-store'`);
      assert.match(await load, /terminat/);
      await locker.query('ROLLBACK');
      await new Promise((r) => setTimeout(r, 200)); // pg emits the connection's end after the statement's error
      // and the store loads on a new connection
      assert.equal(typeof (await loader.loadSnapshot()).revision, 'number');
    } finally {
      await locker.end();
      await loader.close();
    }
  });

  it('costs the controller a bounded wait: its follower reads again on a new connection and its hosts get the change', { timeout: 120_000 }, async () => {
    const { subnet } = await makeTree(api, 'silent-ctl', '10.21.0.0/24');
    const h = await api.make('/api/v1/hosts', { name: 'silent-h', vtepIp: '198.51.100.40' });
    const host: SimHost = { id: h.id, credential: h.credential, vtepIp: h.vtepIp };
    const c = await startController({
      ...controllerConfig({}),
      databaseUrl: url,
      host: '127.0.0.1',
      port: 0,
      logLevel: 'error',
      pollMs: 100,
      statusFlushMs: 20,
      dbTimeoutSeconds: TIMEOUT_SECONDS,
    });
    const agent = new SimulatedAgent(c.agentUrl, host, { minBackoffMs: 20 });
    try {
      const first = await api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'first', hostId: host.id });
      await waitUntil(() => settled(c, first.revision, [agent]), 'the agent has the first endpoint');
      await waitUntil(async () => (await api.get(`/api/v1/endpoints/${first.id}`)).body.status === 'active', 'first active');

      const hole = await blackhole(url, ['sdn-store', 'sdn-store-listen']);
      try {
        assert.ok(hole.ports.length >= 2, `the follower's sessions: ${hole.ports}`);
        // a change the controller's silent connections cannot bring: its follower must notice and read on a new one
        const second = await api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'second', hostId: host.id });
        await waitUntil(() => settled(c, second.revision, [agent]), 'the agent has the second endpoint', 30_000);
        await waitUntil(async () => (await api.get(`/api/v1/endpoints/${second.id}`)).body.status === 'active', 'second active', 30_000);
        const snap = await store.loadSnapshot();
        await waitUntil(() => settled(c, snap.revision, [agent]), 'settled');
        assert.deepEqual(describeDifference(agent.state, compileAll(snap, c.controller.engine.opts).get(host.id)!), []);
        // its LISTEN session is replaced as well
        await waitUntil(async () => (await sessionPorts(url, 'sdn-store-listen')).some((p) => !hole.ports.includes(p)), 'a new LISTEN session', 40_000);
      } finally {
        hole.heal();
      }
    } finally {
      await agent.stop();
      await c.close();
    }
  });
});
