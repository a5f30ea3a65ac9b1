import { createHash } from 'node:crypto';
import { Pool, PoolClient, QueryConfig, QueryResultRow } from 'pg';
import type { ChangeOp, ResourceKind } from '#sdn/model';

/**
 * Access to Postgres: a pool for reads, and one serial writer that commits
 * every change together with its change-log entries.
 *
 * Why one writer with group commit: the change log must be gap-free and
 * ordered, so commits that write it are serialized anyway (a row lock on
 * revision_counter, held to commit). One transaction per request would then
 * cost one commit (and fsync) per request. The writer instead runs all the
 * work that is waiting as one transaction: each work item executes its
 * statements, then one UPDATE of the counter, one multi-row INSERT into the
 * change log, one NOTIFY and one COMMIT cover the whole batch. Under load
 * batches grow and the cost per change falls; idle, a batch is one item.
 *
 * Failure isolation: a work item that throws before writing only fails
 * itself. One that fails after writing (a constraint violation, or a domain
 * error thrown late) poisons the batch: it is rolled back and every item is
 * replayed alone, so only the faulty one fails. Work items must therefore be
 * re-runnable: no side effects outside the transaction, except through
 * `tx.onRollback` / `tx.onCommit`.
 *
 * Several directory processes may share one database: each batch starts by
 * locking the counter row (FOR UPDATE), which serializes batches across
 * processes, so checks done in code inside a work item see a stable world.
 */

export interface PendingChange {
  revision: number;
  kind: ResourceKind;
  op: ChangeOp;
  id: string;
  enterpriseId: string | null;
  state: object | null;
}

export interface Tx {
  query<R extends QueryResultRow = any>(sql: string, params?: unknown[]): Promise<R[]>;
  /** the next revision of this transaction; every changed object takes one */
  nextRevision(): number;
  /** the revision nextRevision() would return, without taking it */
  peekRevision(): number;
  /** records a change-log entry (revision from nextRevision()) */
  log(change: PendingChange): void;
  /** transaction time, one per batch */
  readonly now: Date;
  onCommit(fn: () => void): void;
  onRollback(fn: () => void): void;
}

export type Work<T> = (tx: Tx) => Promise<T>;

/**
 * A bulk handler runs many work items of one kind in a few statements (the
 * endpoint-creation hot path: one INSERT for a whole batch). It returns one
 * result per payload, in order; a per-item failure must not have written.
 */
export type BulkHandler = (tx: Tx, payloads: unknown[]) => Promise<Array<{ ok: true; value: unknown } | { ok: false; error: unknown }>>;

interface Item {
  work?: Work<unknown>;
  bulk?: BulkHandler;
  payload?: unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

class PoisonedBatch extends Error {}

export interface CommitListener {
  (info: { firstRevision: number; lastRevision: number; changes: number; items: number }): void;
}

const statementNames = new Map<string, string>();

/**
 * A named statement for a query text: Postgres parses and plans it once per
 * connection instead of on every call. Query texts come from templates in the
 * code (values always go in parameters), so the set of names stays small.
 * Measured on the endpoint-creation benchmark: parse and plan were most of the
 * Postgres CPU spent per request.
 */
export function statement(text: string, values?: unknown[]): QueryConfig {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = 'q' + createHash('sha1').update(text).digest('hex').slice(0, 24);
    if (statementNames.size < 10_000) statementNames.set(text, name);
  }
  return { name, text, values: values as any[] };
}

export class Database {
  readonly pool: Pool;
  private queue: Item[] = [];
  private writing = false;
  private writer: PoolClient | null = null;
  private closed = false;
  private listeners: CommitListener[] = [];

  constructor(
    readonly url: string,
    private readonly opts: { poolSize: number; maxBatch: number },
  ) {
    this.pool = new Pool({ connectionString: url, max: opts.poolSize, application_name: 'sdn-directory' });
    this.pool.on('error', () => undefined); // idle client errors surface on next use
  }

  onCommit(fn: CommitListener): void {
    this.listeners.push(fn);
  }

  async read<R extends QueryResultRow = any>(sql: string, params?: unknown[]): Promise<R[]> {
    return (await this.pool.query<R>(statement(sql, params))).rows;
  }

  /** Runs `work` inside the next committed batch; resolves after COMMIT. */
  write<T>(work: Work<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('database is closed'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (v: unknown) => void, reject });
      if (!this.writing) void this.drain();
    });
  }

  /** Queues one payload for a bulk handler; resolves after COMMIT with its result. */
  writeBulk<T>(bulk: BulkHandler, payload: unknown): Promise<T> {
    if (this.closed) return Promise.reject(new Error('database is closed'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ bulk, payload, resolve: resolve as (v: unknown) => void, reject });
      if (!this.writing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.opts.maxBatch);
        try {
          await this.runBatch(batch, false);
        } catch (e) {
          if (e instanceof PoisonedBatch) {
            for (const item of batch) {
              try {
                await this.runBatch([item], true);
              } catch (e2) {
                item.reject(e2);
              }
            }
          } else {
            await this.dropWriter();
            for (const item of batch) item.reject(e);
          }
        }
      }
    } finally {
      this.writing = false;
    }
  }

  private async dropWriter(): Promise<void> {
    if (this.writer) {
      this.writer.release(true);
      this.writer = null;
    }
  }

  private async runBatch(batch: Item[], alone: boolean): Promise<void> {
    if (!this.writer) {
      this.writer = await this.pool.connect();
      this.writer.on('error', () => undefined);
    }
    const client = this.writer;
    const now = new Date();
    const changes: PendingChange[] = [];
    const commitHooks: Array<() => void> = [];
    const rollbackHooks: Array<() => void> = [];
    let committed = false;
    try {
      // one round trip: BEGIN and the lock that serializes writers across processes
      const begun = (await client.query('BEGIN; SELECT revision FROM revision_counter WHERE id = 1 FOR UPDATE')) as unknown as Array<{
        rows: Array<{ revision: string }>;
      }>;
      let revision = Number(begun[1].rows[0].revision);
      const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown } | undefined> = new Array(batch.length);
      const bulkGroups = new Map<BulkHandler, number[]>();
      const first = revision + 1;
      for (let index = 0; index < batch.length; index++) {
        const item = batch[index];
        if (item.bulk) {
          const g = bulkGroups.get(item.bulk) ?? [];
          g.push(index);
          bulkGroups.set(item.bulk, g);
          continue;
        }
        const startRevision = revision;
        const startChanges = changes.length;
        const itemCommitHooks: Array<() => void> = [];
        const itemRollbackHooks: Array<() => void> = [];
        let wrote = false;
        const tx: Tx = {
          query: async (sql, params) => {
            if (!/^\s*select/i.test(sql)) wrote = true;
            return (await client.query(statement(sql, params))).rows;
          },
          nextRevision: () => ++revision,
          peekRevision: () => revision + 1,
          log: (c) => {
            changes.push(c);
          },
          now,
          onCommit: (fn) => itemCommitHooks.push(fn),
          onRollback: (fn) => itemRollbackHooks.push(fn),
        };
        try {
          const value = await item.work!(tx);
          results[index] = { ok: true, value };
          commitHooks.push(...itemCommitHooks);
          rollbackHooks.push(...itemRollbackHooks);
        } catch (error) {
          for (const fn of itemRollbackHooks) fn();
          if ((wrote || isDbError(error)) && !alone) throw new PoisonedBatch();
          if (alone) throw error;
          revision = startRevision;
          changes.length = startChanges;
          results[index] = { ok: false, error };
        }
      }
      for (const [handler, indexes] of bulkGroups) {
        const hooks: Array<() => void> = [];
        const tx: Tx = {
          query: async (sql, params) => (await client.query(statement(sql, params))).rows,
          nextRevision: () => ++revision,
          peekRevision: () => revision + 1,
          log: (c) => {
            changes.push(c);
          },
          now,
          onCommit: (fn) => commitHooks.push(fn),
          onRollback: (fn) => hooks.push(fn),
        };
        let out;
        try {
          out = await handler(
            tx,
            indexes.map((i) => batch[i].payload),
          );
        } catch (error) {
          for (const fn of hooks) fn();
          if (alone) throw error;
          throw new PoisonedBatch();
        }
        rollbackHooks.push(...hooks);
        indexes.forEach((i, k) => (results[i] = out[k]));
      }
      if (changes.length > 0) {
        const committedAt = new Date();
        // one round trip: the entries, the counter, the notification
        await client.query(
          statement(
            `WITH entries AS (
               INSERT INTO change_log (revision, kind, op, object_id, enterprise_id, state, committed_at)
               SELECT r, k, o, i, e, s, $2 FROM json_to_recordset($1::json) AS t(r bigint, k text, o text, i uuid, e uuid, s json)
             ), counter AS (
               UPDATE revision_counter SET revision = $3 WHERE id = 1
             )
             SELECT pg_notify('sdn_changes', $4)`,
            [
              // one JSON document: serialised natively, instead of six array parameters escaped in JavaScript
              JSON.stringify(
                changes.map((c) => ({
                  r: c.revision,
                  k: c.kind,
                  o: c.op,
                  i: c.id,
                  e: c.enterpriseId,
                  s: c.state === null ? null : { ...c.state, revision: c.revision },
                })),
              ),
              committedAt,
              revision,
              String(revision),
            ],
          ),
        );
      }
      await client.query('COMMIT');
      committed = true;
      for (const fn of commitHooks) fn();
      if (changes.length > 0) {
        for (const l of this.listeners) {
          l({ firstRevision: first, lastRevision: revision, changes: changes.length, items: batch.length });
        }
      }
      batch.forEach((item, i) => {
        const r = results[i]!;
        if (r.ok) item.resolve(r.value);
        else item.reject(r.error);
      });
    } catch (e) {
      for (const fn of rollbackHooks) fn();
      if (!committed) await client.query('ROLLBACK').catch(() => this.dropWriter());
      throw e;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    while (this.writing) await new Promise((r) => setTimeout(r, 5));
    await this.dropWriter();
    await this.pool.end();
  }
}

export function isDbError(e: unknown): e is { code: string; constraint?: string; detail?: string } {
  return typeof e === 'object' && e !== null && typeof (e as any).code === 'string' && 'severity' in (e as any);
}
