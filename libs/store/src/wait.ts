/**
 * Errors of the connection to Postgres, and waiting for a database at start.
 * Shared by the directory (its writer and its answers) and the controller.
 */
import { Client } from 'pg';

/** errno codes of a connection to Postgres that failed or could not be made */
const CONNECTION_ERRNOS = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ENOENT']);

/**
 * An error of the connection to Postgres rather than of a statement: the
 * socket failed or could not be opened, the server ended the session or is
 * not accepting sessions yet (SQLSTATE class 08, 57P01-57P03: shutdown,
 * crash, administrator, starting up), or pg refused to use a client whose
 * connection had failed.
 */
export function isConnectionError(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  const x = e as { code?: unknown; message?: unknown };
  if (typeof x.code === 'string') {
    if ('severity' in x) return x.code.startsWith('08') || x.code === '57P01' || x.code === '57P02' || x.code === '57P03';
    if (CONNECTION_ERRNOS.has(x.code)) return true;
  }
  const m = typeof x.message === 'string' ? x.message : '';
  return /^Connection terminated|is not queryable$|^timeout exceeded when trying to connect|^Connection ended unexpectedly/.test(m);
}

/** `url` without its password, for logs and errors: user@host:port/database (and the socket folder when given) */
export function describeDatabase(url: string): string {
  try {
    const u = new URL(url);
    const socket = u.searchParams.get('host');
    const where = `${u.username ? `${decodeURIComponent(u.username)}@` : ''}${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
    return socket ? `${where} (socket in ${socket})` : where;
  } catch {
    return 'the database (DATABASE_URL is not a URL)';
  }
}

/** The database could not be reached, or refused us, at start: the message says which and what to check. */
export class DatabaseWaitFailed extends Error {}

export interface WaitOptions {
  /** how long to keep trying, in seconds (0: one attempt) */
  seconds: number;
  /** also wait for the directory's schema (its migrations create it): the controller starts before or with the directory */
  schema?: boolean;
  /** called before each wait with what the last attempt said */
  onWait?(reason: string, elapsedSeconds: number): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the database at `url` accepts a session (and has the
 * directory's schema with `schema`), retrying what a database that is not up
 * yet answers: a refused or failed connection, "starting up", a database not
 * created yet, and with `schema` tables the directory has not created yet.
 * Refused credentials and anything else fail at once; so does the end of
 * the wait, with the last reason.
 */
export async function waitForDatabase(url: string, opts: WaitOptions): Promise<void> {
  const started = Date.now();
  const where = describeDatabase(url);
  let delay = 250;
  for (;;) {
    let reason: string;
    const c = new Client({ connectionString: url, connectionTimeoutMillis: 5000, application_name: 'sdn-start' });
    c.on('error', () => undefined);
    try {
      await c.connect();
      if (opts.schema) await c.query('SELECT revision FROM revision_counter WHERE id = 1');
      return;
    } catch (e) {
      const x = e as { code?: string; message?: string };
      if (x.code === '28P01' || x.code === '28000') {
        throw new DatabaseWaitFailed(`${where} refused the credentials in DATABASE_URL: ${x.message}`);
      }
      // a database not created yet (provisioning, an embedded server between its start and its CREATE DATABASE), and
      // for the controller the directory's tables, are waited for like a server that is not up yet
      const noDatabase = x.code === '3D000';
      const noSchema = opts.schema === true && x.code === '42P01';
      if (!isConnectionError(e) && !noDatabase && !noSchema) throw new DatabaseWaitFailed(`${where}: ${x.message ?? String(e)}`);
      reason = noSchema ? `the directory has not created its schema yet (${x.message})` : (x.message ?? String(e));
    } finally {
      await c.end().catch(() => undefined);
    }
    const elapsed = (Date.now() - started) / 1000;
    if (elapsed + delay / 1000 > opts.seconds) {
      throw new DatabaseWaitFailed(`cannot reach ${where} after ${Math.round(elapsed)} s (SDN_DB_WAIT_SECONDS=${opts.seconds}): ${reason}`);
    }
    opts.onWait?.(reason, elapsed);
    await sleep(delay);
    delay = Math.min(delay * 2, 2000);
  }
}
