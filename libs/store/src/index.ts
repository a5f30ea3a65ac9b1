import { createHash, timingSafeEqual } from 'node:crypto';
import type { Client } from 'pg';
import { Observable } from 'rxjs';
import type { Change, EndpointStatus, ModelSnapshot, ResourceKind } from '#sdn/model';
import { SNAPSHOT_COLLECTION } from '#sdn/model';

export * from './wait';
export * from './connection';
import { DEFAULT_DB_TIMEOUT_SECONDS, guardedClient, guardedPool } from './connection';

/**
 * Read access to the policy directory's database for the controller (and any
 * other follower). The change log is the contract: every entry carries the
 * full new state of one object, revisions are gap-free, and commits are
 * serialized, so a reader that sees revision N has seen every revision < N.
 */
export interface ModelStore {
  /** the whole model at one revision (one REPEATABLE READ transaction) */
  loadSnapshot(): Promise<ModelSnapshot>;
  /** the model as it was at `revision`, rebuilt from the change log (which keeps every entry) */
  loadSnapshotAt(revision: number): Promise<ModelSnapshot>;
  /** entries with revision > afterRevision, ordered, at most `limit` */
  readChanges(afterRevision: number, limit: number): Promise<Change[]>;
  /**
   * every entry with revision > fromRevision, in order, live; LISTEN plus polling catch-up. Ends with an error
   * ("change log gap", "change log diverged") when the log stops continuing what was read: the follower must
   * then rebuild from a snapshot. Diverged: the entry last read is gone or another one (the database was restored
   * from a backup, or a replica lacking the last commits was promoted).
   */
  follow(fromRevision: number): Observable<Change>;
  /** operational state of endpoints (not in the change log) */
  /** Writes the status of endpoints at the revision it was established for (an endpoint changed since is left alone). */
  setEndpointStatus(items: Array<{ id: string; revision: number }>, status: EndpointStatus): Promise<void>;
  verifyHostCredential(hostId: string, token: string): Promise<boolean>;
  markHostSeen(hostId: string, status: 'up' | 'down'): Promise<void>;
  /** whether the change-log follower's last read worked, since when, and the error of the last one that did not */
  readonly database: DatabaseHealth;
  close(): Promise<void>;
}

export interface DatabaseHealth {
  ok: boolean;
  /** Date.now() of the last change between ok and not */
  since: number;
  error: string | null;
}


export function rowToChange(r: any): Change {
  return {
    revision: Number(r.revision),
    kind: r.kind,
    op: r.op,
    id: r.object_id,
    enterpriseId: r.enterprise_id,
    state: r.state,
    committedAt: (r.committed_at as Date).toISOString(),
  } as Change;
}

export function emptySnapshot(revision = 0): ModelSnapshot {
  return {
    revision,
    enterprises: [],
    domains: [],
    zones: [],
    subnets: [],
    hosts: [],
    endpoints: [],
    policyGroups: [],
    bgpSpeakers: [],
    bgpNeighbors: [],
    networkMacros: [],
    networkMacroGroups: [],
    aclRules: [],
  };
}

/**
 * The newest entry of every object that still exists is its current state.
 * The newest revision per object is found on the narrow columns first (a hash
 * aggregate), then the states are fetched by primary key: sorting the whole
 * log with its JSON (DISTINCT ON) spilled to disk at 100K objects.
 */
const LATEST_STATES = (where: string) =>
  `SELECT c.kind, c.state FROM change_log c
     JOIN (SELECT object_id, max(revision) AS revision FROM change_log ${where} GROUP BY object_id) latest ON c.revision = latest.revision
    WHERE c.op <> 'delete'`;

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export function createModelStore(databaseUrl: string, opts: { pollMs?: number; poolSize?: number; timeoutMs?: number } = {}): ModelStore {
  // a database that stops answering fails the statement (a lost connection) instead of holding the follower for good
  const timeoutMs = opts.timeoutMs ?? DEFAULT_DB_TIMEOUT_SECONDS * 1000;
  const pool = guardedPool({ connectionString: databaseUrl, max: opts.poolSize ?? 4, application_name: 'sdn-store' }, timeoutMs);
  pool.on('error', () => undefined);
  const pollMs = opts.pollMs ?? 500;
  const closers = new Set<() => Promise<void>>();
  const database: DatabaseHealth = { ok: true, since: Date.now(), error: null };
  const readWorked = (ok: boolean, error: string | null) => {
    if (ok !== database.ok) database.since = Date.now();
    database.ok = ok;
    if (error !== null) database.error = error;
  };

  async function readChanges(after: number, limit: number): Promise<Change[]> {
    // named: each pooled connection parses and plans it once (the controller runs it a few thousand times a minute)
    const r = await pool.query({ name: 'sdn-store-read-changes', text: 'SELECT * FROM change_log WHERE revision > $1 ORDER BY revision LIMIT $2', values: [after, limit] });
    return r.rows.map(rowToChange);
  }

  return {
    async loadSnapshot() {
      const c = await pool.connect();
      try {
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const rev = await c.query('SELECT revision FROM revision_counter WHERE id = 1');
        const snap = emptySnapshot(Number(rev.rows[0].revision));
        // the newest entry of every object that still exists is its current state
        const rows = await c.query(LATEST_STATES(''));
        for (const r of rows.rows) (snap[SNAPSHOT_COLLECTION[r.kind as ResourceKind]] as unknown[]).push(r.state);
        // operational endpoint status lives in the table, not in the log
        const status = await c.query(`SELECT id, status FROM endpoints WHERE status <> 'pending'`);
        if (status.rows.length) {
          const byId = new Map(status.rows.map((s) => [s.id, s.status]));
          for (const e of snap.endpoints) e.status = byId.get(e.id) ?? 'pending';
        }
        await c.query('COMMIT');
        return snap;
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      } finally {
        c.release();
      }
    },

    async loadSnapshotAt(revision) {
      const snap = emptySnapshot(revision);
      const rows = await pool.query(LATEST_STATES('WHERE revision <= $1'), [revision]);
      for (const r of rows.rows) (snap[SNAPSHOT_COLLECTION[r.kind as ResourceKind]] as unknown[]).push(r.state);
      return snap;
    },

    readChanges,
    database,

    follow(fromRevision) {
      return new Observable<Change>((sub) => {
        let cursor = fromRevision;
        /** the entry at `cursor` as it was applied (null until the first read shows it) */
        let last: Change | null = null;
        let stopped = false;
        let wake: (() => void) | null = null;
        // a NOTIFY that arrives while a read is running must not be lost: the next sleep returns at once
        let notified = false;
        let listener: Client | null = null;
        const sleep = (ms: number) =>
          new Promise<void>((resolve) => {
            if (notified) {
              notified = false;
              resolve();
              return;
            }
            const t = setTimeout(() => {
              wake = null;
              resolve();
            }, ms);
            wake = () => {
              clearTimeout(t);
              wake = null;
              resolve();
            };
          });
        const listen = async () => {
          try {
            const c = guardedClient({ connectionString: databaseUrl, application_name: 'sdn-store-listen' }, timeoutMs);
            c.on('notification', () => {
              if (wake) wake();
              else notified = true;
            });
            c.on('error', () => {
              listener = null;
            });
            await c.connect();
            await c.query('LISTEN sdn_changes');
            if (stopped) await c.end();
            else listener = c;
          } catch {
            listener = null; // polling still catches up
          }
        };
        const loop = async () => {
          await listen();
          while (!stopped) {
            try {
              if (!listener) await listen();
              notified = false; // this read sees everything committed before it
              // the entry at the cursor comes too, and must still be the one applied: a database restored from a backup,
              // or a replica promoted without the primary's last commits, numbers new changes again from an older revision
              const batch = await readChanges(Math.max(0, cursor - 1), 5001);
              readWorked(true, null);
              if (cursor > 0) {
                const at = batch.shift();
                if (at?.revision !== cursor || (last !== null && (at.id !== last.id || at.committedAt !== last.committedAt))) {
                  throw new Error(`change log diverged: the entry at revision ${cursor} is ${at?.revision === cursor ? 'another one' : 'gone'} (the database went back in time)`);
                }
                last = at;
              }
              for (const ch of batch) {
                if (stopped) return;
                if (ch.revision !== cursor + 1) throw new Error(`change log gap: expected ${cursor + 1}, read ${ch.revision}`);
                cursor = ch.revision;
                last = ch;
                sub.next(ch);
              }
              if (batch.length < 5000) await sleep(pollMs);
            } catch (e) {
              if (stopped) return;
              if (e instanceof Error && (e.message.startsWith('change log gap') || e.message.startsWith('change log diverged'))) {
                sub.error(e);
                return;
              }
              readWorked(false, (e as Error).message);
              await sleep(pollMs); // database away: retry
            }
          }
        };
        const stop = async () => {
          stopped = true;
          wake?.();
          await listener?.end().catch(() => undefined);
        };
        closers.add(stop);
        void loop();
        return () => {
          closers.delete(stop);
          void stop();
        };
      });
    },

    async setEndpointStatus(items, status) {
      if (items.length === 0) return;
      // a status confirms one revision of the endpoint: an endpoint changed since (moved, regrouped) keeps its `pending`
      // not a named statement: Postgres's generic plan for it (after five runs) is worse than planning
      // each call with the array in hand (measured in bench:scale: 5.6 s instead of 1.5 s of execution)
      await pool.query(
        `UPDATE endpoints e SET status = $2 FROM unnest($1::uuid[], $3::bigint[]) AS v(id, revision)
          WHERE e.id = v.id AND e.revision <= v.revision AND e.status <> $2`,
        [items.map((x) => x.id), status, items.map((x) => x.revision)],
      );
    },

    async verifyHostCredential(hostId, token) {
      if (!/^[0-9a-f-]{36}$/i.test(hostId)) return false;
      const r = await pool.query('SELECT credential_hash FROM hosts WHERE id = $1', [hostId]);
      if (r.rows.length === 0) return false;
      const stored = Buffer.from(r.rows[0].credential_hash, 'hex');
      const given = sha256(token);
      return stored.length === given.length && timingSafeEqual(stored, given);
    },

    async markHostSeen(hostId, status) {
      await pool.query('UPDATE hosts SET status = $2, last_seen_at = now() WHERE id = $1', [hostId, status]);
    },

    async close() {
      for (const c of [...closers]) await c();
      await pool.end();
    },
  };
}
