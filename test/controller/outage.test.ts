import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileAll, describeDifference } from '#sdn/compiler';
import type { Logger } from '#sdn/log';
import { createModelStore, DatabaseWaitFailed, type ModelStore } from '#sdn/store';
import { loadConfig as controllerConfig } from '../../apps/controller/src/config';
import { startController } from '../../apps/controller/src/controller';
import { startDirectory } from '../../apps/directory/src/app';
import { loadConfig as directoryConfig } from '../../apps/directory/src/config';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../apps/directory/src/db/embedded';
import { settled, type SimHost, SimulatedAgent, startTestController, waitUntil } from '../support/controller';
import { Api, freePort, makeTree, OPERATOR_KEY, sql, startTestDirectory, type TestDirectory } from '../support/directory';

/** An embedded Postgres of this file's own, which the test stops and starts again under load. */
async function restartableDatabase() {
  const dataDir = mkdtempSync(join(tmpdir(), 'sdn-pg-outage-'));
  const port = await freePort();
  let pg: EmbeddedPostgresHandle = await startEmbeddedPostgres({ dataDir, port, persistent: true });
  return {
    url: pg.url,
    async down() {
      await pg.stop();
    },
    async up() {
      pg = await startEmbeddedPostgres({ dataDir, port, persistent: true });
    },
    /** a file-level copy of the stopped server's data (a backup) */
    backup() {
      rmSync(join(dataDir, 'backup'), { recursive: true, force: true });
      execFileSync('cp', ['-a', join(dataDir, 'pg'), join(dataDir, 'backup')]); // owner and modes kept: the server runs as postgres
    },
    /** the stopped server's data replaced by the backup */
    restore() {
      rmSync(join(dataDir, 'pg'), { recursive: true, force: true });
      execFileSync('cp', ['-a', join(dataDir, 'backup'), join(dataDir, 'pg')]);
    },
    async stop() {
      await pg.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Ends the server sessions of the applications named like `pattern`, as an administrator (or a failover) would. */
async function terminate(url: string, pattern: string): Promise<number> {
  const rows = await sql(url, 'SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name LIKE $1 AND pid <> pg_backend_pid()', [pattern]);
  return rows[0].n;
}

/** the application names of the server's sessions */
async function sessions(url: string): Promise<string[]> {
  return (await sql(url, 'SELECT application_name FROM pg_stat_activity')).map((r) => r.application_name);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

describe('losing the database under load', () => {
  let db: Awaited<ReturnType<typeof restartableDatabase>>;
  let t: TestDirectory;
  let store: ModelStore;
  before(async () => {
    db = await restartableDatabase();
    t = await startTestDirectory({ db });
    store = createModelStore(db.url);
  });
  after(async () => {
    await store?.close();
    await t?.stop();
    await db?.stop();
  });

  it('answers 201 or 503 while sessions are killed and Postgres restarts, loses nothing it acknowledged, and every host converges', async () => {
    const { subnet } = await makeTree(t.api, 'outage', '10.9.0.0/16');
    const hosts: SimHost[] = [];
    for (let i = 1; i <= 3; i++) {
      const h = await t.api.make('/api/v1/hosts', { name: `outage${i}`, vtepIp: `198.51.100.${i}` });
      hosts.push({ id: h.id, credential: h.credential, vtepIp: h.vtepIp });
    }
    const c = await startTestController(db.url);
    const agents = hosts.map((h) => new SimulatedAgent(c.agentUrl, h, { minBackoffMs: 20 }));
    try {
      // eight orchestrator clients creating endpoints, each request with a name of its own
      const answered = new Map<string, { status: number; type?: string; id?: string }>();
      let stop = false;
      const client = async (k: number) => {
        for (let i = 0; !stop; i++) {
          const name = `c${k}-${i}`;
          const r = await t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name, hostId: hosts[i % hosts.length].id });
          answered.set(name, { status: r.status, type: r.body?.type, id: r.body?.id });
          if (r.status !== 201) await sleep(20);
        }
      };
      const clients = Array.from({ length: 8 }, (_, k) => client(k));
      const killed = { directory: 0, controller: 0 };
      await sleep(300);
      for (let round = 0; round < 6; round++) {
        killed.directory += await terminate(db.url, 'sdn-directory%');
        await sleep(100);
        killed.controller += await terminate(db.url, 'sdn-store%');
        await sleep(150);
      }
      // Postgres stops: the controller says so on /healthz and in /metrics, and keeps serving its hosts
      const health = async () => {
        const r = await fetch(`${c.url}/healthz`);
        return { code: r.status, ...((await r.json()) as any) };
      };
      await db.down();
      await waitUntil(async () => (await health()).database.ok === false, 'the controller reports the database away', 15_000);
      const away = await health();
      assert.equal(away.code, 200, `still serving: ${JSON.stringify(away)}`);
      assert.equal(typeof away.database.error, 'string');
      assert.match(await (await fetch(`${c.url}/metrics`)).text(), /^sdn_controller_database_up 0$/m);
      await sleep(300);
      await db.up();
      await sleep(700);
      stop = true;
      await Promise.all(clients);
      assert.ok(killed.directory > 0 && killed.controller > 0, `sessions were killed: ${JSON.stringify(killed)}`);

      // only the two answers an orchestrator can act on
      const byStatus = new Map<string, number>();
      for (const a of answered.values()) byStatus.set(`${a.status} ${a.type ?? ''}`, (byStatus.get(`${a.status} ${a.type ?? ''}`) ?? 0) + 1);
      for (const key of byStatus.keys()) assert.match(key, /^(201 |503 \/problems\/(database-unavailable|commit-unknown))$/, `answers: ${JSON.stringify([...byStatus])}`);
      assert.ok((byStatus.get('503 /problems/database-unavailable') ?? 0) > 0, `the outage was seen: ${JSON.stringify([...byStatus])}`);
      assert.ok((byStatus.get('201 ') ?? 0) > 100, `work went on around it: ${JSON.stringify([...byStatus])}`);

      // the directory serves again, and the database holds what was acknowledged and nothing that was refused
      const last = await t.api.post(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'after', hostId: hosts[0].id });
      assert.equal(last.status, 201, JSON.stringify(last.body));
      const rows = (await store.loadSnapshot()).endpoints.filter((e: any) => e.subnetId === subnet.id);
      const stored = new Map(rows.map((e: any) => [e.name, e.id]));
      for (const [name, a] of answered) {
        if (a.status === 201) assert.equal(stored.get(name), a.id, `${name} was acknowledged`);
        if (a.type === '/problems/database-unavailable') assert.ok(!stored.has(name), `${name} was refused as not written, yet it is stored`);
      }

      // the change log has every stored endpoint, without a gap
      const log: any[] = [];
      for (let after = 0; ; ) {
        const r = await t.api.get(`/api/v1/changes?after=${after}&limit=1000`);
        assert.equal(r.status, 200);
        log.push(...r.body.items);
        if (r.body.items.length < 1000) break;
        after = log[log.length - 1].revision;
      }
      log.forEach((ch, i) => assert.equal(ch.revision, i + 1));
      const logged = new Set(log.filter((ch) => ch.kind === 'endpoint' && ch.op === 'create').map((ch) => ch.id));
      for (const id of stored.values()) assert.ok(logged.has(id), `endpoint ${id} is in the change log`);

      // the controller followed the log through the outage: every agent holds what the database compiles to,
      // and every endpoint turned active (the status writes lost with the database were written again)
      const snap = await store.loadSnapshot();
      await waitUntil(() => settled(c, snap.revision, agents), `settled at revision ${snap.revision}`);
      const ref = compileAll(snap, c.controller.engine.opts);
      for (const a of agents) assert.deepEqual(describeDifference(a.state, ref.get(a.host.id)!), [], `agent ${a.host.id}`);
      await waitUntil(async () => (await store.loadSnapshot()).endpoints.every((e: any) => e.status === 'active'), 'every endpoint active');
      // the directory's and the controller's LISTEN sessions are back (without them, other processes' commits are seen by polling only)
      await waitUntil(async () => (await sessions(db.url)).includes('sdn-directory-listen'), 'the directory listens again', 10_000);
      await waitUntil(async () => (await sessions(db.url)).includes('sdn-store-listen'), 'the controller listens again', 10_000);
      const back = await health();
      assert.equal(back.database.ok, true);
      assert.ok(Date.parse(back.database.since) > Date.parse(away.database.since), 'since the database came back');
      assert.match(await (await fetch(`${c.url}/metrics`)).text(), /^sdn_controller_database_up 1$/m);
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      await c.close();
    }
  });

  it('starts the directory and the controller before their database: they wait for it, and refuse wrong credentials at once', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sdn-pg-late-'));
    const port = await freePort();
    const url = `postgres://postgres:postgres@127.0.0.1:${port}/sdn`;
    const waits = { controller: 0 };
    // both start with nothing listening; the controller also waits for the schema the directory's migrations create
    const controller = startController(
      { ...controllerConfig({}), databaseUrl: url, host: '127.0.0.1', port: 0, logLevel: 'error', dbWaitSeconds: 30 },
      { logger: { ...quiet, warn: (msg) => void (msg === 'waiting for the database' && waits.controller++) } },
    );
    await sleep(500);
    const directory = startDirectory({ ...directoryConfig({}), databaseUrl: url, host: '127.0.0.1', port: 0, operatorKey: OPERATOR_KEY, logLevel: 'error', dbWaitSeconds: 30 });
    let pg: EmbeddedPostgresHandle | null = null;
    let dir: Awaited<typeof directory> | null = null;
    let ctl: Awaited<typeof controller> | null = null;
    try {
      await sleep(1500);
      pg = await startEmbeddedPostgres({ dataDir, port, persistent: false });
      [dir, ctl] = await Promise.all([directory, controller]);
      assert.ok(waits.controller >= 2, `the controller waited (${waits.controller} times)`);
      const api = new Api(dir.url, OPERATOR_KEY);
      const { subnet } = await makeTree(api, 'late', '10.7.0.0/24');
      const e = await api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'late' });
      await waitUntil(() => ctl!.controller.engine.revision >= e.revision, 'the controller follows the directory');

      // credentials that will never work are not waited for
      const t0 = Date.now();
      await assert.rejects(
        startController({ ...controllerConfig({}), databaseUrl: url.replace(':postgres@', ':wrong@'), host: '127.0.0.1', port: 0, logLevel: 'error', dbWaitSeconds: 30 }, { logger: quiet }),
        (err: Error) => err instanceof DatabaseWaitFailed && /refused the credentials/.test(err.message) && !err.message.includes('wrong'),
      );
      assert.ok(Date.now() - t0 < 5000, 'refused at once');
    } finally {
      await ctl?.close();
      await dir?.close();
      await pg?.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('rebuilds from the database when it goes back in time (restored from a backup), and every host follows', async () => {
    const { subnet } = await makeTree(t.api, 'rewind', '10.66.0.0/24');
    const hosts: SimHost[] = [];
    for (let i = 1; i <= 2; i++) {
      const h = await t.api.make('/api/v1/hosts', { name: `rewind${i}`, vtepIp: `198.51.100.${20 + i}` });
      hosts.push({ id: h.id, credential: h.credential, vtepIp: h.vtepIp });
    }
    const make = (name: string, i: number) => t.api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name, hostId: hosts[i % 2].id });
    for (let i = 0; i < 4; i++) await make(`kept${i}`, i);
    // a backup taken before any controller ran: the kept endpoints are pending in it
    await db.down();
    db.backup();
    await db.up();
    const c = await startTestController(db.url);
    const agents = hosts.map((h) => new SimulatedAgent(c.agentUrl, h, { minBackoffMs: 20 }));
    const converged = async () => {
      const snap = await store.loadSnapshot();
      await waitUntil(() => settled(c, snap.revision, agents), `settled at revision ${snap.revision}`);
      const ref = compileAll(snap, c.controller.engine.opts);
      for (const a of agents) assert.deepEqual(describeDifference(a.state, ref.get(a.host.id)!), [], `agent ${a.host.id}`);
      return snap;
    };
    try {
      await converged();
      await waitUntil(async () => (await store.loadSnapshot()).endpoints.filter((e: any) => e.subnetId === subnet.id).every((e: any) => e.status === 'active'), 'kept endpoints active');
      // three endpoints the hosts learn; then the backup is restored (the kept endpoints pending again in it)
      const lost = [await make('lost0', 0), await make('lost1', 1), await make('lost2', 0)];
      const before = await converged();
      assert.ok(agents.some((a) => a.state.localEndpoints.has(lost[0].id)));
      await db.down();
      db.restore();
      await db.up();
      await t.restart(); // the directory's own memory of the database (IPAM, revisions) is from before too
      // new changes take the revisions the controller already applied, and more
      for (let i = 0; i < 5; i++) await make(`new${i}`, i);
      const after = await converged();
      assert.ok(after.revision > before.revision, 'the new changes went past the revision the controller had');
      for (const a of agents) for (const e of lost) assert.ok(!a.state.localEndpoints.has(e.id) && !a.state.remoteEndpoints.has(e.id), 'the lost endpoints are gone');
      // the statuses the restore took back are written again
      await waitUntil(async () => (await store.loadSnapshot()).endpoints.filter((e: any) => e.subnetId === subnet.id).every((e: any) => e.status === 'active'), 'every endpoint active');
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      await c.close();
    }
  });
});
