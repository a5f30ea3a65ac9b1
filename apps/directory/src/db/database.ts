import { createHash } from 'node:crypto';
import { Client, Pool, PoolClient, QueryConfig, QueryResultRow } from 'pg';
import type { ChangeOp, ResourceKind } from '#sdn/model';
import { CONFIRM_DURABLE } from '#sdn/store';

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
 *
 * Durability without waiting for the disk in the writer: a batch commits with
 * synchronous_commit off, so the counter lock is released, and the next batch
 * runs, while the disk syncs. Nobody is answered yet: a second connection (the
 * confirmer) then runs CONFIRM_DURABLE, an ordinary synchronous commit whose
 * WAL record comes after the batch's, so once it returns the batch is on disk.
 * It raises the durable mark (which bounds every follower of the change log,
 * see #sdn/store) and notifies them; only then are the batch's callers
 * answered and the commit listeners told. One confirmation covers every batch
 * committed before it ran; two may run at once, so a batch committed while
 * one is in flight does not wait for it (Postgres flushes them together). Measured on bench:scale: the writer waiting
 * for the WAL flush left ~10% of the machine idle.
 * What another reader may see in between: a committed but unconfirmed row is
 * visible through the API's reads for the few milliseconds the sync takes, as
 * with any database that replicates synchronously; a crash of Postgres in
 * that window loses it, and its caller, not yet answered, gets an error.
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

/** Confirmations that may run at once (each on its own connection). */
const CONFIRMERS = 2;

/** A committed batch waiting for its confirmation: `settle` answers its callers. */
interface Unconfirmed {
  settle(error: unknown): void;
}

/** The batch was committed, but whether it reached the disk is unknown (the database went away before confirming it). */
export class OutcomeUnknown extends Error {
  constructor(cause: unknown) {
    super(`the change was committed but the database did not confirm it was stored (${String((cause as Error)?.message ?? cause)}); read it back before retrying`);
  }
}

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
  private unconfirmed: Unconfirmed[] = [];
  /** idle confirming connections, outside the pool (whose size bounds readers) */
  private confirmers: Client[] = [];
  /** confirmations in flight (at most CONFIRMERS) */
  private confirming = 0;
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

  /**
   * Raises the durable mark over everything committed so far and waits until
   * it is on disk (see the header). At start-up it confirms what a previous
   * process may have committed and died before confirming.
   */
  async confirmDurable(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      // the retry takes a new connection: an idle one may have been cut as well
      let c = attempt === 0 ? this.confirmers.pop() : undefined;
      try {
        if (!c) {
          const fresh = new Client({ connectionString: this.url, application_name: 'sdn-directory-confirm' });
          // cut while idle: not to be used again
          fresh.on('error', () => (this.confirmers = this.confirmers.filter((x) => x !== fresh)));
          c = fresh;
          await c.connect();
        }
        await c.query(statement(CONFIRM_DURABLE));
        if (this.closed) await c.end().catch(() => undefined);
        else this.confirmers.push(c);
        return;
      } catch (e) {
        await c?.end().catch(() => undefined);
        // once more on a new connection (this one was dropped or its backend killed); a database that is down fails the batch
        if (attempt > 0) throw e;
      }
    }
  }

  /**
   * Queues a committed batch for confirmation. Up to CONFIRMERS confirmations
   * run at once: a batch committed while one is in flight starts its own at
   * once instead of waiting for it (Postgres flushes concurrent commits
   * together), which keeps a request's latency at about one disk sync.
   */
  private confirm(batch: Unconfirmed): void {
    this.unconfirmed.push(batch);
    if (this.confirming < CONFIRMERS) void this.confirmWaiting();
  }

  private async confirmWaiting(): Promise<void> {
    this.confirming++;
    try {
      while (this.unconfirmed.length > 0) {
        const waiting = this.unconfirmed;
        this.unconfirmed = [];
        let error: unknown = null;
        try {
          await this.confirmDurable();
        } catch (e) {
          error = new OutcomeUnknown(e);
        }
        for (const w of waiting) w.settle(error);
      }
    } finally {
      this.confirming--;
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
      // one round trip: BEGIN, a commit that does not wait for the disk (confirmed after), and the lock that serializes writers across processes
      const begun = (await client.query(
        'BEGIN; SET LOCAL synchronous_commit TO off; SELECT revision FROM revision_counter WHERE id = 1 FOR UPDATE',
      )) as unknown as Array<{
        rows: Array<{ revision: string }>;
      }>;
      let revision = Number(begun[2].rows[0].revision);
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
        // one round trip: the entries and the counter (followers are notified by the confirmation)
        await client.query(
          statement(
            `WITH entries AS (
               INSERT INTO change_log (revision, kind, op, object_id, enterprise_id, state, committed_at)
               SELECT r, k, o, i, e, s, $2 FROM json_to_recordset($1::json) AS t(r bigint, k text, o text, i uuid, e uuid, s json)
             )
             UPDATE revision_counter SET revision = $3 WHERE id = 1`,
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
            ],
          ),
        );
      }
      await client.query('COMMIT');
      committed = true;
      for (const fn of commitHooks) fn();
      const last = revision;
      this.confirm({
        settle: (error) => {
          if (error === null && changes.length > 0) {
            for (const l of this.listeners) l({ firstRevision: first, lastRevision: last, changes: changes.length, items: batch.length });
          }
          batch.forEach((item, i) => {
            const r = results[i]!;
            if (!r.ok) item.reject(r.error);
            else if (error !== null) item.reject(error);
            else item.resolve(r.value);
          });
        },
      });
    } catch (e) {
      for (const fn of rollbackHooks) fn();
      if (!committed) await client.query('ROLLBACK').catch(() => this.dropWriter());
      throw e;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    while (this.writing || this.confirming > 0) await new Promise((r) => setTimeout(r, 5));
    await this.dropWriter();
    for (const c of this.confirmers.splice(0)) await c.end().catch(() => undefined);
    await this.pool.end();
  }
}

export function isDbError(e: unknown): e is { code: string; constraint?: string; detail?: string } {
  return typeof e === 'object' && e !== null && typeof (e as any).code === 'string' && 'severity' in (e as any);
}
