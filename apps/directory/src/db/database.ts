import { createHash } from 'node:crypto';
import type { Pool, PoolClient, QueryConfig, QueryResultRow } from 'pg';
import type { ChangeOp, ResourceKind } from '#sdn/model';
import { guardedClient, guardedPool, isConnectionError as lostConnection } from '#sdn/store';

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
 * One-statement batches: the ordinary batch takes four round trips (BEGIN and
 * the counter lock, the work, the change log, COMMIT), and under load the
 * round trips, not Postgres's work, were most of a batch's time (measured in
 * bench:scale: ~2.2 ms of a ~10 ms batch only to take the lock). A batch made
 * only of bulk creations whose handler needs no read is therefore first tried
 * as one autocommitted statement: the handler runs against a presuming
 * transaction (its one `insertIds` is captured, every row presumed to go in,
 * revisions numbered from the counter value this process last committed), and
 * one statement inserts the rows, the change-log entries, moves the counter
 * and notifies, checking with `sdn_check` that every row went in and that the
 * counter was still that value. When a check fails, a read is needed, or any
 * database error occurs, nothing was committed: the handler's in-memory effects
 * are rolled back and the batch runs the ordinary way.
 *
 * A lost connection: the writer's connection is replaced before its next
 * batch when it reported an error while idle. A batch whose connection fails
 * before its commit is sent committed nothing (its callers get
 * DatabaseUnavailable). One whose connection fails after the COMMIT (or the
 * one-statement batch) was sent may have committed: the writer asks the
 * database on a new connection whether the batch's change-log entries are
 * there (`landed`), and answers the callers as committed when they are. Only
 * when the database cannot be asked do they get CommitUnknown.
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
  /**
   * Runs an `INSERT ... RETURNING id` whose rows have `ids` and returns the ids
   * that went in. In a one-statement batch it is not run here but captured, and
   * every id is presumed to go in (the batch's statement checks it).
   */
  insertIds(sql: string, params: unknown[], ids: string[]): Promise<string[]>;
}

export type Work<T> = (tx: Tx) => Promise<T>;

/**
 * A bulk handler runs many work items of one kind in a few statements (the
 * endpoint-creation hot path: one INSERT for a whole batch). It returns one
 * result per payload, in order; a per-item failure must not have written.
 */
export type BulkHandler = (tx: Tx, payloads: unknown[]) => Promise<Array<{ ok: true; value: unknown } | { ok: false; error: unknown }>>;

interface Item {
  /** performance.now() when it was queued */
  queued: number;
  work?: Work<unknown>;
  bulk?: BulkHandler;
  payload?: unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

class PoisonedBatch extends Error {}

/** a presuming transaction was asked for something only a real one can do */
class NeedsTransaction extends Error {}

/** What a batch being written has taken: revisions after `first - 1`, change-log entries, its time. */
class BatchLog {
  readonly changes: PendingChange[] = [];
  readonly now = new Date();
  readonly first: number;

  constructor(public revision: number) {
    this.first = revision + 1;
  }

  /** A transaction writing into this batch: statements through `run`, hooks into the given lists. */
  tx(run: Pick<Tx, 'query' | 'insertIds'>, commitHooks: Array<() => void>, rollbackHooks: Array<() => void>): Tx {
    return {
      query: run.query,
      insertIds: run.insertIds,
      nextRevision: () => ++this.revision,
      peekRevision: () => this.revision + 1,
      log: (c) => {
        this.changes.push(c);
      },
      now: this.now,
      onCommit: (fn) => commitHooks.push(fn),
      onRollback: (fn) => rollbackHooks.push(fn),
    };
  }
}

const CHANGE_LOG_COLUMNS = `INSERT INTO change_log (revision, kind, op, object_id, enterprise_id, state, committed_at)`;

/** how many parameters changeLogParams gives and changeLogRows takes */
const CHANGE_LOG_PARAMS = 6;

/**
 * The rows of the change-log entries given as the CHANGE_LOG_PARAMS parameters
 * from `first` on (changeLogParams). Each state is parsed once, by the cast to json that
 * validates it. As one JSON document of entries, Postgres parsed every state
 * three times (validating the document, splitting it into records, validating
 * each state again) and took ~1.6 times as long per entry (pgbench, 27
 * entries: 0.48-0.79 against 0.29-0.46 ms).
 */
const changeLogRows = (first: number, at: string) => {
  const p = (n: number) => `$${first + n}`;
  return `SELECT t.r, t.k, t.o, t.i, t.e, t.s::json, ${at}
    FROM unnest(${p(0)}::bigint[], ${p(1)}::text[], ${p(2)}::text[], ${p(3)}::uuid[], ${p(4)}::uuid[], string_to_array(${p(5)}, E'\\x1e', ''))
      AS t(r, k, o, i, e, s)`;
};

/**
 * A state character JSON.stringify never leaves unescaped (it escapes every
 * code unit below U+0020), so it separates the states in one text parameter.
 */
const STATE_SEPARATOR = '\x1e';

/**
 * The change-log entries as CHANGE_LOG_PARAMS parameters: revisions, kinds, ops, object ids
 * and enterprise ids as array literals (numbers, identifiers and UUIDs: no
 * element needs quoting), and the states' JSON joined by STATE_SEPARATOR (an
 * empty state is a deletion's null).
 */
function changeLogParams(changes: PendingChange[]): string[] {
  let r = '';
  let k = '';
  let o = '';
  let i = '';
  let e = '';
  let s = '';
  for (let n = 0; n < changes.length; n++) {
    const c = changes[n];
    const sep = n === 0 ? '' : ',';
    r += sep + c.revision;
    k += sep + c.kind;
    o += sep + c.op;
    i += sep + c.id;
    e += sep + (c.enterpriseId ?? 'NULL');
    if (n > 0) s += STATE_SEPARATOR;
    if (c.state !== null) s += JSON.stringify({ ...c.state, revision: c.revision });
  }
  return [`{${r}}`, `{${k}}`, `{${o}}`, `{${i}}`, `{${e}}`, s];
}

/** oneStatementText's texts, per INSERT text and its parameter count */
const oneStatementTexts = new Map<string, Map<number, string>>();

/**
 * The statement of a one-statement batch around a captured INSERT with `k`
 * parameters. Its entries' commit time is Postgres's clock as it writes them
 * (the statement's own work done), not the writer's before it sent the
 * statement: activation latency is measured from it.
 */
function oneStatementText(insert: string, k: number): string {
  // the same (constant) INSERT every batch: built once, and the same string object keeps its hash for statement()
  let byCount = oneStatementTexts.get(insert);
  if (byCount === undefined) oneStatementTexts.set(insert, (byCount = new Map()));
  let text = byCount.get(k);
  if (text === undefined) byCount.set(k, (text = buildOneStatementText(insert, k)));
  return text;
}

function buildOneStatementText(insert: string, k: number): string {
  // after the INSERT's k parameters and the change log's: the counter's step, the row count, the counter's value, the notification
  const p = (n: number) => `$${k + CHANGE_LOG_PARAMS + n}`;
  return `WITH ins AS (${insert}),
    entries AS (${CHANGE_LOG_COLUMNS} ${changeLogRows(k + 1, '(SELECT clock_timestamp())')}),
    counter AS (UPDATE revision_counter SET revision = revision + ${p(1)}::bigint WHERE id = 1 RETURNING revision)
    SELECT sdn_check((SELECT count(*) FROM ins) = ${p(2)}::bigint, 'every row of the batch went in')
       AND sdn_check((SELECT revision FROM counter) = ${p(3)}::bigint, 'no other writer since the last batch') AS ok,
       pg_notify('sdn_changes', ${p(4)})`;
}

export interface CommitListener {
  (info: {
    firstRevision: number;
    lastRevision: number;
    changes: number;
    items: number;
    /** per item, seconds from its queueing to the start of the batch that committed it */
    waits: number[];
    /** seconds from the batch's start to its commit */
    seconds: number;
  }): void;
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
  /** performance.now() when the batch being written started */
  private batchStarted = 0;
  /** answers to the callers of committed batches, given once the next batch's first statement is on its way (or nothing follows) */
  private answers: Array<() => void> = [];
  private writer: PoolClient | null = null;
  /** the writer's connection reported an error: replaced before its next use */
  private writerBroken = false;
  private closed = false;
  private listeners: CommitListener[] = [];
  /** the change-log counter as this process last committed it; null when unknown */
  private lastRevision: number | null = null;
  /** batches committed as one statement / tried and run again the ordinary way */
  readonly oneStatement = { committed: 0, retried: 0 };
  /** batches whose connection was lost with their commit sent, by what the database said afterwards */
  readonly lostCommits = { committed: 0, not_committed: 0, unknown: 0 };

  constructor(
    readonly url: string,
    private readonly opts: { poolSize: number; maxBatch: number; timeoutMs: number },
  ) {
    // a database that does not answer (a connection attempt, or a statement for timeoutMs) fails the request (503)
    // rather than holding the writer forever; see libs/store/src/connection.ts
    this.pool = guardedPool({ connectionString: url, max: opts.poolSize, application_name: 'sdn-directory' }, opts.timeoutMs);
    this.pool.on('error', () => undefined); // idle client errors surface on next use
  }

  /** how long a connection may stay silent while a statement runs (SDN_DB_TIMEOUT_SECONDS) */
  get timeoutMs(): number {
    return this.opts.timeoutMs;
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
      this.queue.push({ queued: performance.now(), work, resolve: resolve as (v: unknown) => void, reject });
      if (!this.writing) void this.drain();
    });
  }

  /** Queues one payload for a bulk handler; resolves after COMMIT with its result. */
  writeBulk<T>(bulk: BulkHandler, payload: unknown): Promise<T> {
    if (this.closed) return Promise.reject(new Error('database is closed'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ queued: performance.now(), bulk, payload, resolve: resolve as (v: unknown) => void, reject });
      if (!this.writing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        // one turn of the event loop first: requests read in it join this batch (bench:scale: ~28 instead of ~24 per batch, 13% fewer commits)
        if (this.queue.length < this.opts.maxBatch) await new Promise((resolve) => setImmediate(resolve));
        const batch = this.queue.splice(0, this.opts.maxBatch);
        this.batchStarted = performance.now();
        // answers to the previous batch are given once this batch's statement is sent (tryOneStatement, runBatch), or at the latest here below
        try {
          if (!(await this.tryOneStatement(batch))) await this.runBatch(batch, false);
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
      this.answer();
      this.writing = false;
    }
  }

  private async connectWriter(): Promise<void> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw isConnectionError(e) ? new DatabaseUnavailable(e) : e;
    }
    this.writer = client;
    this.writerBroken = false;
    // a connection lost while idle (Postgres restarted, the session terminated) is replaced before the next batch
    client.on('error', () => {
      if (this.writer === client) this.writerBroken = true;
    });
  }

  private async dropWriter(): Promise<void> {
    if (this.writer) {
      this.writer.release(true);
      this.writer = null;
    }
    this.writerBroken = false;
  }

  /**
   * Whether a batch whose connection was lost after its commit was sent did
   * commit: its change-log entries are there, with this batch's objects and
   * operations at its revisions (a batch commits all of them or none; another
   * writer taking those revisions wrote other entries). Asked on a new
   * connection once the lost session (`session`, its server process) has
   * ended, so that its outcome is final; retried for about three seconds
   * while Postgres is away (one attempt may take the connection timeout when
   * it hangs); null when it could not be asked.
   */
  private async landed(log: BatchLog, session: number | null): Promise<boolean | null> {
    if (log.changes.length === 0) return true; // it wrote nothing: its answers (refusals, reads) stand either way
    // by revision, not by position in `changes`, whose order this does not rely on (a positional comparison gave
    // wrong answers in the randomized lost-commit test)
    const want = new Map(log.changes.map((c) => [c.revision, c]));
    const first = Math.min(...want.keys());
    const last = Math.max(...want.keys());
    // a database that hangs rather than refuses takes up to the timeout per attempt: no new attempt after ~3 s
    const deadline = performance.now() + 3000;
    for (let attempt = 0; attempt < 6; attempt++) {
      if (attempt > 0) {
        if (performance.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 100 * 2 ** (attempt - 1)));
      }
      let rows: Array<{ revision: string; id: string; op: string }>;
      // on a connection of its own: the pool's idle connections may have died with the lost one (a failover, a
      // partition), and each would take the timeout to find out
      const c = guardedClient({ connectionString: this.url, application_name: 'sdn-directory' }, this.opts.timeoutMs);
      try {
        await c.connect();
        if (session !== null) {
          // the lost session may still be running the batch (Postgres notices a client gone only when it next
          // reads or writes to it), and commit after we looked: end it, and look once it is gone
          await c.query('SELECT pg_terminate_backend($1)', [session]);
          for (let waited = 0; (await c.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [session])).rows.length > 0; waited += 20) {
            if (waited >= 5000) return null;
            await new Promise((r) => setTimeout(r, 20));
          }
          session = null;
        }
        rows = (
          await c.query('SELECT revision::text, object_id::text AS id, op FROM change_log WHERE revision BETWEEN $1 AND $2 ORDER BY revision', [first, last])
        ).rows;
      } catch (e) {
        if (isConnectionError(e)) continue;
        return null;
      } finally {
        void c.end().catch(() => undefined);
      }
      return (
        rows.length === want.size &&
        rows.every((r) => {
          const c = want.get(Number(r.revision));
          return c !== undefined && r.id === c.id && r.op === c.op;
        })
      );
    }
    return null;
  }

  /**
   * After the connection failed with a batch's commit sent (`e`): answers the
   * batch as committed when it did, else throws what its callers are told.
   */
  private async resolveLostCommit(e: unknown, log: BatchLog, lost: PoolClient): Promise<void> {
    const pid = (lost as unknown as { processID: number | null }).processID;
    await this.dropWriter();
    this.lastRevision = null;
    const landed = await this.landed(log, pid);
    this.lostCommits[landed === true ? 'committed' : landed === false ? 'not_committed' : 'unknown']++;
    if (landed === true) return;
    throw landed === false ? new DatabaseUnavailable(e) : new CommitUnknown(e);
  }

  /**
   * Gives the answers held for committed batches. A committed batch's callers
   * are answered after the next batch's statement has been sent: answering
   * first (26 responses serialised and written) delayed every next statement
   * by about a millisecond of event-loop work, and the writer's cycle is what
   * every request waits on. They are committed and durable either way.
   */
  private answer(): void {
    if (this.answers.length === 0) return;
    const answers = this.answers;
    this.answers = [];
    for (const a of answers) a();
  }

  private async runBatch(batch: Item[], alone: boolean): Promise<void> {
    this.answer();
    if (this.writerBroken) await this.dropWriter();
    if (!this.writer) await this.connectWriter();
    const client = this.writer!;
    const query: Tx['query'] = async (sql, params) => (await client.query(statement(sql, params))).rows;
    const insertIds: Tx['insertIds'] = async (sql, params) => (await query(sql, params)).map((r) => r.id as string);
    const commitHooks: Array<() => void> = [];
    const rollbackHooks: Array<() => void> = [];
    let committed = false;
    let lostCommit = false;
    try {
      // one round trip: BEGIN and the lock that serializes writers across processes
      const begun = (await client.query('BEGIN; SELECT revision FROM revision_counter WHERE id = 1 FOR UPDATE')) as unknown as Array<{
        rows: Array<{ revision: string }>;
      }>;
      const log = new BatchLog(Number(begun[1].rows[0].revision));
      const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown } | undefined> = new Array(batch.length);
      const bulkGroups = new Map<BulkHandler, number[]>();
      for (let index = 0; index < batch.length; index++) {
        const item = batch[index];
        if (item.bulk) {
          const g = bulkGroups.get(item.bulk) ?? [];
          g.push(index);
          bulkGroups.set(item.bulk, g);
          continue;
        }
        const startRevision = log.revision;
        const startChanges = log.changes.length;
        const itemCommitHooks: Array<() => void> = [];
        const itemRollbackHooks: Array<() => void> = [];
        let wrote = false;
        const tx = log.tx(
          {
            query: (sql, params) => {
              if (!/^\s*select/i.test(sql)) wrote = true;
              return query(sql, params);
            },
            insertIds: (sql, params, ids) => {
              wrote = true;
              return insertIds(sql, params, ids);
            },
          },
          itemCommitHooks,
          itemRollbackHooks,
        );
        try {
          const value = await item.work!(tx);
          results[index] = { ok: true, value };
          commitHooks.push(...itemCommitHooks);
          rollbackHooks.push(...itemRollbackHooks);
        } catch (error) {
          for (const fn of itemRollbackHooks) fn();
          if ((wrote || isDbError(error)) && !alone) throw new PoisonedBatch();
          if (alone) throw error;
          log.revision = startRevision;
          log.changes.length = startChanges;
          results[index] = { ok: false, error };
        }
      }
      for (const [handler, indexes] of bulkGroups) {
        const hooks: Array<() => void> = [];
        let out;
        try {
          out = await handler(
            log.tx({ query, insertIds }, commitHooks, hooks),
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
      if (log.changes.length > 0) {
        // one round trip: the entries, the counter, the notification
        await client.query(
          statement(
            `WITH entries AS (${CHANGE_LOG_COLUMNS} ${changeLogRows(1, `$${CHANGE_LOG_PARAMS + 1}`)}),
             counter AS (UPDATE revision_counter SET revision = $${CHANGE_LOG_PARAMS + 2} WHERE id = 1)
             SELECT pg_notify('sdn_changes', $${CHANGE_LOG_PARAMS + 3})`,
            [...changeLogParams(log.changes), new Date(), log.revision, String(log.revision)],
          ),
        );
      }
      try {
        await client.query('COMMIT');
      } catch (e) {
        // the connection failed with COMMIT on its way: ask the database whether it happened
        if (!isConnectionError(e) || neverSent(e)) throw e;
        try {
          await this.resolveLostCommit(e, log, client);
        } catch (lost) {
          lostCommit = true;
          throw lost;
        }
      }
      committed = true;
      this.committed(batch, results as Awaited<ReturnType<BulkHandler>>, commitHooks, log);
    } catch (e) {
      for (const fn of rollbackHooks) fn();
      if (!committed && !lostCommit) await client.query('ROLLBACK').catch(() => this.dropWriter());
      // a connection error that reaches here came before COMMIT was sent (or instead of sending it): nothing was committed
      throw e instanceof CommitUnknown || e instanceof DatabaseUnavailable || !isConnectionError(e) ? e : new DatabaseUnavailable(e);
    }
  }

  /** After a batch's commit: the counter as committed, commit hooks, listeners, callers answered. */
  private committed(batch: Item[], results: Awaited<ReturnType<BulkHandler>>, commitHooks: Array<() => void>, log: BatchLog): void {
    this.lastRevision = log.revision;
    for (const fn of commitHooks) fn();
    if (log.changes.length > 0 && this.listeners.length > 0) {
      const started = this.batchStarted;
      const waits = batch.map((item) => Math.max(0, started - item.queued) / 1000);
      const seconds = (performance.now() - started) / 1000;
      for (const l of this.listeners) l({ firstRevision: log.first, lastRevision: log.revision, changes: log.changes.length, items: batch.length, waits, seconds });
    }
    this.answers.push(() =>
      batch.forEach((item, i) => {
        const r = results[i];
        if (r.ok) item.resolve(r.value);
        else item.reject(r.error);
      }),
    );
  }

  /**
   * Commits `batch` as one statement when it can (see the class comment);
   * false when the batch must run the ordinary way, nothing committed.
   */
  private async tryOneStatement(batch: Item[]): Promise<boolean> {
    const handler = batch[0].bulk;
    if (this.lastRevision === null || !handler || !this.writer || batch.some((i) => i.bulk !== handler)) return false;
    const client = this.writer;
    const log = new BatchLog(this.lastRevision);
    const commitHooks: Array<() => void> = [];
    const rollbackHooks: Array<() => void> = [];
    const captured: Array<{ sql: string; params: unknown[]; ids: string[] }> = [];
    const tx = log.tx(
      {
        query: () => Promise.reject(new NeedsTransaction()),
        insertIds: (sql, params, ids) => {
          captured.push({ sql, params, ids });
          return Promise.resolve(ids);
        },
      },
      commitHooks,
      rollbackHooks,
    );
    const undo = () => {
      for (const fn of rollbackHooks) fn();
      return false;
    };
    let results: Awaited<ReturnType<BulkHandler>>;
    try {
      results = await handler(tx, batch.map((i) => i.payload));
    } catch {
      // a read was needed, or the handler refused: the ordinary way does (and reports) it
      return undo();
    }
    // one captured INSERT is what one statement can carry
    const ins = captured.length === 1 ? captured[0] : null;
    if (ins === null || log.changes.length === 0 || results.some((r) => !r.ok && r.error instanceof NeedsTransaction)) return undo();
    const text = oneStatementText(ins.sql, ins.params.length);
    const added = log.revision - log.first + 1;
    try {
      const sent = client.query(statement(text, [...ins.params, ...changeLogParams(log.changes), added, ins.ids.length, log.revision, String(log.revision)]));
      this.answer();
      await sent;
    } catch (e) {
      if (!isConnectionError(e)) {
        undo();
        if (!isDbError(e)) throw e;
        // a check failed or a constraint fired: nothing was committed, the ordinary way does (and reports) it
        this.lastRevision = null;
        this.oneStatement.retried++;
        return false;
      }
      if (neverSent(e)) {
        // the connection had failed before: nothing was sent, the ordinary way runs it on a new connection
        undo();
        await this.dropWriter();
        return false;
      }
      // the statement commits itself, and it was sent: ask the database whether it did
      try {
        await this.resolveLostCommit(e, log, client);
      } catch (lost) {
        undo();
        throw lost;
      }
    }
    this.oneStatement.committed++;
    this.committed(batch, results, commitHooks, log);
    return true;
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

/** An error of the connection to Postgres rather than of a statement (see `lostConnection`), or one this file made of it. */
export function isConnectionError(e: unknown): boolean {
  return e instanceof DatabaseUnavailable || lostConnection(e);
}

/** pg refused a query on a client whose connection had already failed: nothing was sent */
function neverSent(e: unknown): boolean {
  return e instanceof Error && e.message.endsWith('is not queryable');
}

/** The connection to Postgres was lost or could not be made; nothing of the request was committed. */
export class DatabaseUnavailable extends Error {
  constructor(override readonly cause: unknown) {
    super(`the database connection was lost: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

/**
 * The connection was lost after the commit was sent, and the database could
 * not be asked afterwards whether the commit happened. The change may or may
 * not be in the database (and its change log).
 */
export class CommitUnknown extends Error {
  constructor(override readonly cause: unknown) {
    super(`the database connection was lost while committing: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}
