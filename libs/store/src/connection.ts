/**
 * A connection to Postgres that stops answering. A Postgres that crashes or
 * restarts closes its connections, and the client sees an error at once. One
 * that hangs does not: the old primary of a failover whose address is gone,
 * a network partition, a server stopped (SIGSTOP, a frozen VM or disk). Then a
 * statement waits for its answer until TCP gives up (about 15 minutes when
 * the request was not acknowledged, never when it was), and an idle session
 * (a LISTEN) never learns that it is dead.
 *
 * Every connection of the directory and the controller therefore:
 * - sends TCP keepalives after a third of the timeout idle, 1 s apart, and is
 *   lost after 10 unanswered (the kernel's count): a dead peer is noticed even
 *   when nothing is being asked;
 * - is ended when a statement on it has received no byte of answer for the
 *   whole timeout: the peer's kernel still answering keepalives, its Postgres
 *   does not. Its statement then fails as a lost connection (ETIMEDOUT), and
 *   the pool opens a new one for the next;
 * - gives up a connection attempt after at most 10 s;
 * - in a pool, when one connection is ended that way, takes the idle ones
 *   down with it: they lead to the same server, and each would otherwise
 *   cost the next request to use it another timeout (keepalives clear them
 *   only after timeout/3 + 10 s idle). The next requests open new
 *   connections. When the silence was the server's own (a statement waiting
 *   longer than the timeout for a lock), that costs only new connections.
 *
 * The timeout is SDN_DB_TIMEOUT_SECONDS (30 by default). A statement that
 * legitimately sends nothing back for that long (a very large sort before its
 * first row) would be cut: raise it for such databases.
 */
import type { Socket } from 'node:net';
import { Client, type ClientBase, type ClientConfig, Pool, type PoolConfig } from 'pg';

export const DEFAULT_DB_TIMEOUT_SECONDS = 30;

/** The pg settings of a connection with this timeout (keepalives, connection attempts). */
function connectionSettings(timeoutMs: number): Pick<ClientConfig, 'keepAlive' | 'keepAliveInitialDelayMillis' | 'connectionTimeoutMillis'> {
  return {
    keepAlive: true,
    keepAliveInitialDelayMillis: Math.max(1000, Math.round(timeoutMs / 3)),
    connectionTimeoutMillis: Math.min(10_000, timeoutMs),
  };
}

/** A connection ended because its statement got no answer in time: a connection error (ETIMEDOUT). */
export class DatabaseSilent extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(timeoutMs: number, sibling = false) {
    super(
      sibling
        ? `another connection of this pool got nothing from the database for ${timeoutMs / 1000} s; this idle one was closed with it`
        : `the database sent nothing for ${timeoutMs / 1000} s while a statement was running; the connection was taken as lost`,
    );
  }
}

const streamOf = (client: ClientBase) => (client as unknown as { connection?: { stream?: Socket } }).connection?.stream;

const noop = () => undefined;

/**
 * Ends the connection of a connected `client` when a statement on it gets no
 * byte for `timeoutMs`, then calls `lost`. An idle client (nothing asked) is
 * left alone: its keepalives watch it.
 */
function guardClient(client: ClientBase, timeoutMs: number, lost: () => void = noop): void {
  const stream = streamOf(client);
  if (!stream || typeof stream.setTimeout !== 'function') return;
  // the error reaches the statement; a client checked out of a pool has no other listener, and an unheard 'error' throws
  client.on('error', noop);
  // Node re-arms the timer on every read and write, so it fires only after timeoutMs of silence either way
  stream.setTimeout(timeoutMs);
  stream.on('timeout', () => {
    if ((client as unknown as { readyForQuery: boolean }).readyForQuery) return; // idle: nothing is awaited
    stream.destroy(new DatabaseSilent(timeoutMs));
    lost();
  });
}

/**
 * A pool whose connections have the settings above and are guarded
 * (guardClient) once open; a connection lost to silence closes the idle ones
 * too (their 'error' reaches the pool, which drops them: give the pool an
 * 'error' listener).
 */
export function guardedPool(config: PoolConfig, timeoutMs: number): Pool {
  const pool = new Pool({ ...config, ...connectionSettings(timeoutMs) });
  // the pool's own events say which of its clients sit idle
  const idle = new Set<ClientBase>();
  pool.on('release', (_err, client) => idle.add(client));
  pool.on('acquire', (client) => idle.delete(client));
  pool.on('remove', (client) => idle.delete(client));
  pool.on('connect', (client) =>
    guardClient(client, timeoutMs, () => {
      for (const c of [...idle]) if (c !== client) streamOf(c)?.destroy(new DatabaseSilent(timeoutMs, true));
    }),
  );
  return pool;
}

/** A client with the settings above, guarded (guardClient) once connected. */
export function guardedClient(config: ClientConfig, timeoutMs: number): Client {
  const client = new Client({ ...config, ...connectionSettings(timeoutMs) });
  client.once('connect', () => guardClient(client, timeoutMs));
  return client;
}
