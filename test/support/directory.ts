import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDirectory, RunningDirectory } from '../../apps/directory/src/app';
import { loadConfig } from '../../apps/directory/src/config';
import { startEmbeddedPostgres, EmbeddedPostgresHandle } from '../../apps/directory/src/db/embedded';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** A real Postgres for one test file: DATABASE_URL when given, else embedded in a temp dir. */
export interface TestDatabase {
  url: string;
  stop(): Promise<void>;
}

export async function startTestDatabase(): Promise<TestDatabase> {
  const external = process.env.DATABASE_URL;
  if (external) {
    // a fresh database per test file on the given server
    const { Client } = await import('pg');
    const name = `sdn_test_${process.pid}_${Date.now()}`;
    const admin = new Client({ connectionString: external });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const u = new URL(external);
    u.pathname = `/${name}`;
    return {
      url: u.toString(),
      async stop() {
        const a = new Client({ connectionString: external });
        await a.connect();
        await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await a.end();
      },
    };
  }
  const dir = mkdtempSync(join(tmpdir(), 'sdn-pg-'));
  const pg: EmbeddedPostgresHandle = await startEmbeddedPostgres({ dataDir: dir, port: await freePort(), persistent: false });
  return {
    url: pg.url,
    async stop() {
      await pg.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One statement on the database itself (not through the directory), on a connection of its own; its rows. */
export async function sql<R = any>(url: string, text: string, params: unknown[] = []): Promise<R[]> {
  const { Client } = await import('pg');
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as R[];
  } finally {
    await c.end();
  }
}

export const OPERATOR_KEY = 'test-operator-key-0123456789abcdef';

export interface TestDirectory {
  dir: RunningDirectory;
  api: Api;
  db: TestDatabase;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestDirectory(opts: { db?: TestDatabase } = {}): Promise<TestDirectory> {
  const db = opts.db ?? (await startTestDatabase());
  const boot = () =>
    startDirectory({
      ...loadConfig({}),
      databaseUrl: db.url,
      host: '127.0.0.1',
      port: 0,
      operatorKey: OPERATOR_KEY,
      logLevel: 'error',
    });
  let dir = await boot();
  const t: TestDirectory = {
    dir,
    api: new Api(dir.url, OPERATOR_KEY),
    db,
    async restart() {
      await dir.close();
      dir = await boot();
      t.dir = dir;
      t.api = new Api(dir.url, OPERATOR_KEY);
    },
    async stop() {
      await dir.close();
      if (!opts.db) await db.stop();
    },
  };
  return t;
}

export interface Reply<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** A small HTTP client speaking to the directory as an orchestrator would. */
export class Api {
  constructor(
    readonly base: string,
    readonly key: string,
  ) {}

  as(key: string): Api {
    return new Api(this.base, key);
  }

  async call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.key}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: any = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  get<T = any>(path: string) {
    return this.call<T>('GET', path);
  }
  post<T = any>(path: string, body: unknown, headers?: Record<string, string>) {
    return this.call<T>('POST', path, body, headers);
  }
  patch<T = any>(path: string, body: unknown, headers?: Record<string, string>) {
    return this.call<T>('PATCH', path, body, headers);
  }
  del<T = any>(path: string, headers?: Record<string, string>) {
    return this.call<T>('DELETE', path, undefined, headers);
  }

  /** POST that must succeed; returns the body */
  async make<T = any>(path: string, body: unknown): Promise<T> {
    const r = await this.post<T>(path, body);
    if (r.status !== 201 && r.status !== 200) throw new Error(`POST ${path} -> ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }
}

/** enterprise -> domain -> zone -> subnet, the usual start of a test */
export async function makeTree(api: Api, name: string, cidr = '10.0.0.0/24') {
  const enterprise = await api.make('/api/v1/enterprises', { name });
  const domain = await api.make(`/api/v1/enterprises/${enterprise.id}/domains`, { name: `${name}-d` });
  const zone = await api.make(`/api/v1/domains/${domain.id}/zones`, { name: `${name}-z` });
  const subnet = await api.make(`/api/v1/zones/${zone.id}/subnets`, { name: `${name}-s`, cidr });
  return { enterprise, domain, zone, subnet };
}
