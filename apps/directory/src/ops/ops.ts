import { uuidv7 } from '../common/ids';
import { Body, Controller, Delete, Get, HttpCode, Injectable, Param, Post, Res } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { z } from 'zod';
import { ApiKeys, Caller, CurrentCaller, hashKey, newApiKey, Public, requireOperator } from '../common/auth';
import { NotFound, ReferenceNotFound } from '../common/errors';
import { name, uuid, validate } from '../common/validation';
import { Database } from '../db/database';
import { Ipam } from '../ipam/allocator';
import { bodySchema } from '../resources/schemas';

@Injectable()
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'sdn_directory_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'sdn_directory_http_request_duration_seconds',
    help: 'HTTP request latency by method and route',
    labelNames: ['method', 'route'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: 'sdn_directory_write_batch_items',
    help: 'work items committed per writer transaction (group commit)',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });
  readonly writeWait = new Histogram({
    name: 'sdn_directory_write_queue_seconds',
    help: 'time a change waited for the writer (from its request to the start of the transaction that committed it)',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly writeTime = new Histogram({
    name: 'sdn_directory_write_batch_seconds',
    help: 'writer transaction time, from its start to its commit (durable)',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly revision = new Gauge({ name: 'sdn_directory_change_log_revision', help: 'newest committed change-log revision', registers: [this.registry] });

  constructor(db: Database, ipam: Ipam) {
    collectDefaultMetrics({ register: this.registry, prefix: 'sdn_directory_' });
    new Gauge({
      name: 'sdn_directory_ipam_allocations_total',
      help: 'addresses allocated or claimed by this process',
      registers: [this.registry],
      collect() {
        this.set(ipam.allocations);
      },
    });
    new Gauge({
      name: 'sdn_directory_ipam_exhausted_total',
      help: 'allocations refused because the subnet was full',
      registers: [this.registry],
      collect() {
        this.set(ipam.exhaustions);
      },
    });
    new Gauge({
      name: 'sdn_directory_write_one_statement_batches_total',
      help: 'writer batches of bulk creations tried as one statement: committed so, or run again the ordinary way (another writer, a row kept out, a database error)',
      labelNames: ['outcome'],
      registers: [this.registry],
      collect() {
        this.set({ outcome: 'committed' }, db.oneStatement.committed);
        this.set({ outcome: 'retried' }, db.oneStatement.retried);
      },
    });
    new Gauge({
      name: 'sdn_directory_write_lost_commits_total',
      help: 'writer batches whose database connection was lost with the commit sent, by what the database said afterwards (committed: the callers were answered as usual; not_committed: 503 database-unavailable; unknown: 503 commit-unknown)',
      labelNames: ['outcome'],
      registers: [this.registry],
      collect() {
        for (const [outcome, n] of Object.entries(db.lostCommits)) this.set({ outcome }, n);
      },
    });
    db.onCommit(({ lastRevision, items, waits, seconds }) => {
      this.revision.set(lastRevision);
      this.batchSize.observe(items);
      this.writeTime.observe(seconds);
      for (const w of waits) this.writeWait.observe(w);
    });
  }
}

@ApiTags('operations')
@Controller()
export class OpsController {
  constructor(
    private readonly db: Database,
    private readonly metrics: Metrics,
  ) {}

  @Public()
  @Get('healthz')
  @ApiOperation({ summary: 'Liveness: the process serves requests' })
  healthz() {
    return { status: 'ok' };
  }

  @Public()
  @Get('readyz')
  @ApiOperation({ summary: 'Readiness: the database answers' })
  async readyz(@Res({ passthrough: true }) reply: FastifyReply) {
    // a probe wants its answer within a second (Kubernetes' default probe timeout): a database that has not answered
    // SELECT 1 by then is "not ready", rather than the probe waiting for SDN_DB_TIMEOUT_SECONDS
    const ms = Math.min(1000, this.db.timeoutMs / 2);
    let timer: NodeJS.Timeout | undefined;
    const problem = await Promise.race([
      this.db.read('SELECT 1').then(
        () => null,
        (e: Error) => String(e.message),
      ),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`no answer in ${ms / 1000} s`), ms))),
    ]);
    clearTimeout(timer);
    if (problem === null) return { status: 'ready', database: 'ok' };
    reply.status(503);
    return { status: 'not ready', database: problem };
  }

  @Public()
  @Get('metrics')
  @ApiOperation({ summary: 'Prometheus metrics' })
  async prometheus(@Res() reply: FastifyReply) {
    reply.header('content-type', this.metrics.registry.contentType).send(await this.metrics.registry.metrics());
  }
}

const keyCreate = z.strictObject({
  name,
  role: z.enum(['operator', 'enterpriseAdmin']),
  enterpriseId: uuid.nullable().default(null),
});

@ApiTags('api-keys')
@Controller('api/v1/api-keys')
export class ApiKeysController {
  constructor(
    private readonly db: Database,
    private readonly keys: ApiKeys,
  ) {}

  @Post()
  @ApiOperation({ summary: 'Issue an API key (operator only); the key is shown once' })
  @ApiBody({ schema: bodySchema(keyCreate) })
  async create(@CurrentCaller() caller: Caller, @Body() body: unknown, @Res({ passthrough: true }) reply: FastifyReply) {
    requireOperator(caller, 'issuing API keys');
    const input = validate(keyCreate, body);
    if (input.role === 'enterpriseAdmin') {
      if (input.enterpriseId === null) throw new ReferenceNotFound('enterpriseId', 'enterprise', '(none)');
      const e = await this.db.read('SELECT 1 FROM enterprises WHERE id = $1', [input.enterpriseId]);
      if (e.length === 0) throw new ReferenceNotFound('enterpriseId', 'enterprise', input.enterpriseId);
    }
    const key = newApiKey();
    const id = uuidv7();
    const enterpriseId = input.role === 'operator' ? null : input.enterpriseId;
    await this.db.pool.query('INSERT INTO api_keys (id, name, role, enterprise_id, key_hash) VALUES ($1, $2, $3, $4, $5)', [
      id,
      input.name,
      input.role,
      enterpriseId,
      hashKey(key),
    ]);
    reply.status(201);
    return { id, name: input.name, role: input.role, enterpriseId, key };
  }

  @Get()
  @ApiOperation({ summary: 'List API keys (operator only; never the keys themselves)' })
  async list(@CurrentCaller() caller: Caller) {
    requireOperator(caller, 'listing API keys');
    const rows = await this.db.read('SELECT id, name, role, enterprise_id, created_at FROM api_keys ORDER BY created_at');
    return {
      items: rows.map((r) => ({ id: r.id, name: r.name, role: r.role, enterpriseId: r.enterprise_id, createdAt: r.created_at.toISOString() })),
      nextCursor: null,
    };
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke an API key (operator only)' })
  async revoke(@CurrentCaller() caller: Caller, @Param('id') id: string) {
    requireOperator(caller, 'revoking API keys');
    if (!/^[0-9a-f-]{36}$/i.test(id)) throw new NotFound('API key', id);
    const r = await this.db.pool.query('DELETE FROM api_keys WHERE id = $1', [id]);
    if (r.rowCount === 0) throw new NotFound('API key', id);
    this.keys.forget();
  }
}
