import { Controller, Get, Injectable, OnModuleDestroy, Query, Req, Res } from '@nestjs/common';
import { ApiOperation, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Client } from 'pg';
import type { Change } from '#sdn/model';
import { guardedClient, rowToChange } from '#sdn/store';
import { Caller, CurrentCaller, scopeOf } from '../common/auth';
import { ValidationFailed } from '../common/errors';
import { log } from '../common/log';
import { Database } from '../db/database';

/**
 * Knows the newest committed revision and wakes followers when it moves:
 * commits of this process directly, commits of other processes through
 * LISTEN sdn_changes, and a slow poll in case a notification was missed.
 */
@Injectable()
export class ChangeFeed implements OnModuleDestroy {
  private latest = 0;
  private waiters = new Set<() => void>();
  private listener: Client | null = null;
  private poll: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly db: Database) {
    db.onCommit(({ lastRevision }) => this.advance(lastRevision));
  }

  async start(): Promise<void> {
    const rows = await this.db.read<{ revision: string }>('SELECT revision FROM revision_counter WHERE id = 1');
    this.latest = Number(rows[0].revision);
    await this.connect();
    this.poll = setInterval(() => void this.refresh(), 1000);
    this.poll.unref();
  }

  /**
   * The LISTEN session. A lost one (Postgres restarted, the session killed) is
   * opened again every second until it is back, the poll covering the gap.
   */
  private async connect(): Promise<void> {
    if (this.stopped) return;
    const c = guardedClient({ connectionString: this.db.url, application_name: 'sdn-directory-listen' }, this.db.timeoutMs);
    let lost = false;
    const reconnect = () => {
      if (lost) return;
      lost = true;
      if (this.listener === c) this.listener = null;
      void c.end().catch(() => undefined);
      if (!this.stopped) setTimeout(() => void this.connect().catch(() => undefined), 1000).unref();
    };
    c.on('notification', (n) => this.advance(Number(n.payload)));
    c.on('error', reconnect);
    c.on('end', reconnect);
    try {
      await c.connect();
      await c.query('LISTEN sdn_changes');
    } catch (e) {
      reconnect();
      throw e;
    }
    if (this.stopped) {
      lost = true;
      await c.end().catch(() => undefined);
      return;
    }
    this.listener = c;
    void this.refresh(); // what was committed while no one listened
  }

  private async refresh(): Promise<void> {
    try {
      const rows = await this.db.read<{ revision: string }>('SELECT revision FROM revision_counter WHERE id = 1');
      const rev = Number(rows[0].revision);
      if (rev < this.latest) {
        // the database went back in time (restored from a backup, a replica promoted without the last commits)
        log.warn('the change log went back: its next entries take revisions already given out', { from: this.latest, to: rev });
        this.latest = rev;
      } else this.advance(rev);
    } catch {
      /* database away: readyz reports it */
    }
  }

  private advance(rev: number): void {
    if (rev <= this.latest) return;
    this.latest = rev;
    const w = [...this.waiters];
    this.waiters.clear();
    for (const f of w) f();
  }

  get revision(): number {
    return this.latest;
  }

  /** resolves when the revision passes `after`, or after `ms` */
  waitBeyond(after: number, ms: number): Promise<void> {
    if (this.latest > after) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiters.delete(done);
        resolve();
      }, ms);
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      this.waiters.add(done);
    });
  }

  async read(caller: Caller, after: number, limit: number): Promise<Change[]> {
    const scope = scopeOf(caller);
    const rows = await this.db.read(
      `SELECT * FROM change_log WHERE revision > $1 AND ($3::uuid IS NULL OR enterprise_id = $3) ORDER BY revision LIMIT $2`,
      [after, limit, scope],
    );
    return rows.map(rowToChange);
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    if (this.poll) clearInterval(this.poll);
    const w = [...this.waiters];
    this.waiters.clear();
    for (const f of w) f();
    await this.listener?.end().catch(() => undefined);
  }
}

function intParam(name: string, v: unknown, fallback: number, max: number, min = 0): number {
  if (v === undefined || v === '') return fallback;
  const s = String(v);
  if (!/^[0-9]+$/.test(s) || Number(s) > max || Number(s) < min) {
    throw new ValidationFailed([{ field: name, message: `must be an integer from ${min} to ${max}, got "${s}"` }]);
  }
  return Number(s);
}

@ApiTags('changes')
@Controller('api/v1/changes')
export class ChangesController {
  constructor(private readonly feed: ChangeFeed) {}

  @Get()
  @ApiOperation({
    summary: 'Read the change log',
    description:
      'Entries with revision > after, in order, gap-free (an enterprise admin sees only its own enterprise). Each entry: revision, kind, op, id, enterpriseId, state (null on delete), committedAt.',
  })
  @ApiQuery({ name: 'after', required: false, schema: { type: 'integer', default: 0 } })
  @ApiQuery({ name: 'limit', required: false, schema: { type: 'integer', default: 1000, minimum: 1, maximum: 10000 } })
  @ApiQuery({ name: 'waitMs', required: false, schema: { type: 'integer', maximum: 30000 }, description: 'long-poll: wait this long for a change when none is there' })
  async list(@CurrentCaller() caller: Caller, @Query() q: Record<string, unknown>) {
    const after = intParam('after', q.after, 0, Number.MAX_SAFE_INTEGER);
    const limit = intParam('limit', q.limit, 1000, 10000, 1);
    const waitMs = intParam('waitMs', q.waitMs, 0, 30000);
    let items = await this.feed.read(caller, after, limit);
    if (items.length === 0 && waitMs > 0) {
      await this.feed.waitBeyond(after, waitMs);
      items = await this.feed.read(caller, after, limit);
    }
    return { items, latestRevision: this.feed.revision };
  }

  @Get('stream')
  @ApiOperation({
    summary: 'Follow the change log live (server-sent events)',
    description: 'One SSE event per change (id = revision, event = change, data = the entry), from ?after= or Last-Event-ID; a comment every 15 s keeps the stream alive.',
  })
  @ApiQuery({ name: 'after', required: false, schema: { type: 'integer' } })
  @ApiResponse({ status: 200, description: 'text/event-stream' })
  async stream(@CurrentCaller() caller: Caller, @Query() q: Record<string, unknown>, @Req() req: FastifyRequest, @Res() reply: FastifyReply) {
    const lastEventId = req.headers['last-event-id'];
    let after = intParam('after', q.after ?? (typeof lastEventId === 'string' ? lastEventId : undefined), 0, Number.MAX_SAFE_INTEGER);
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    // Node holds the headers back until the first write, which may be a keep-alive 15 s away
    raw.flushHeaders();
    let open = true;
    raw.on('close', () => {
      open = false;
    });
    let lastBeat = Date.now();
    try {
      while (open) {
        // every revision <= upTo was committed before the read began
        const upTo = this.feed.revision;
        const items = await this.feed.read(caller, after, 1000);
        for (const c of items) {
          raw.write(`id: ${c.revision}\nevent: change\ndata: ${JSON.stringify(c)}\n\n`);
          after = c.revision;
        }
        if (items.length === 1000) continue;
        // entries of other tenants are skipped, not waited for
        after = Math.max(after, upTo);
        if (Date.now() - lastBeat > 15000) {
          raw.write(': keep-alive\n\n');
          lastBeat = Date.now();
        }
        await this.feed.waitBeyond(after, 5000);
      }
    } catch (e) {
      log.warn('change stream ended', { error: String(e) });
    } finally {
      raw.end();
    }
  }
}
