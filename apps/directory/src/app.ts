import 'reflect-metadata';
import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { DataSource } from 'typeorm';
import { ChangeFeed, ChangesController } from './changes/changes';
import { ApiKeys, AuthGuard } from './common/auth';
import { describeDatabase, waitForDatabase } from '#sdn/store';
import { configureLog, log } from './common/log';
import { ProblemFilter } from './common/problem.filter';
import type { DirectoryConfig } from './config';
import { Database } from './db/database';
import { startEmbeddedPostgres, EmbeddedPostgresHandle } from './db/embedded';
import { migrationDataSource } from './db/migrations';
import { Ipam } from './ipam/allocator';
import { ApiKeysController, Metrics, OpsController } from './ops/ops';
import { ResourceDef, ResourceEngine } from './resources/engine';
import { endpointDef, hostDef, subnetDef } from './resources/network';
import { aclRuleDef, networkMacroDef, networkMacroGroupDef, policyGroupDef } from './resources/policy';
import { resourceController } from './resources/resource.controller';
import { domainDef, enterpriseDef, zoneDef } from './resources/tenancy';
import { bgpNeighborDef, bgpSpeakerDef } from './resources/bgp';
import { RemoteEndpointsController } from './resources/remote';

@Module({})
class DirectoryModule {
  static build(db: Database): DynamicModule {
    const ipam = new Ipam();
    const defs: ResourceDef[] = [
      enterpriseDef,
      domainDef,
      zoneDef,
      subnetDef(ipam),
      hostDef,
      endpointDef(ipam),
      policyGroupDef,
      networkMacroDef,
      networkMacroGroupDef,
      aclRuleDef,
      bgpSpeakerDef,
      bgpNeighborDef,
    ];
    const engine = new ResourceEngine(db);
    defs.forEach((d) => engine.register(d));
    return {
      module: DirectoryModule,
      controllers: [...defs.map(resourceController), ChangesController, ApiKeysController, OpsController, RemoteEndpointsController],
      providers: [
        { provide: Database, useValue: db },
        { provide: Ipam, useValue: ipam },
        { provide: ResourceEngine, useValue: engine },
        ApiKeys,
        ChangeFeed,
        Metrics,
        { provide: APP_GUARD, useClass: AuthGuard },
        { provide: APP_FILTER, useClass: ProblemFilter },
      ],
    };
  }
}

export async function runMigrations(url: string): Promise<string[]> {
  const ds: DataSource = migrationDataSource(url);
  await ds.initialize();
  try {
    const applied = await ds.runMigrations({ transaction: 'each' });
    return applied.map((m) => m.name);
  } finally {
    await ds.destroy();
  }
}

export interface RunningDirectory {
  app: NestFastifyApplication;
  url: string;
  databaseUrl: string;
  /** the operator key generated on first start, if one was */
  generatedOperatorKey: string | null;
  close(): Promise<void>;
}

/** Starts the directory: database (embedded when no URL), migrations, API. */
export async function startDirectory(config: DirectoryConfig): Promise<RunningDirectory> {
  configureLog(config.logLevel, 'directory');
  let embedded: EmbeddedPostgresHandle | null = null;
  let databaseUrl = config.databaseUrl;
  if (databaseUrl === null) {
    embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort, persistent: true, settings: config.embeddedPgSettings });
    databaseUrl = embedded.url;
    log.info('embedded postgres started', { dataDir: config.dataDir, port: config.embeddedPgPort });
  }
  try {
    if (!embedded) {
      const url = databaseUrl;
      await waitForDatabase(url, {
        seconds: config.dbWaitSeconds,
        onWait: (reason) => log.warn('waiting for the database', { database: describeDatabase(url), reason }),
      });
    }
    const applied = await runMigrations(databaseUrl);
    if (applied.length) log.info('migrations applied', { migrations: applied });
    const db = new Database(databaseUrl, { poolSize: config.poolSize, maxBatch: config.maxBatch, timeoutMs: config.dbTimeoutSeconds * 1000 });
    const adapter = new FastifyAdapter({ bodyLimit: 1024 * 1024, maxParamLength: 200 });
    const app = await NestFactory.create<NestFastifyApplication>(DirectoryModule.build(db), adapter, { logger: ['error', 'warn'] });
    const metrics = app.get(Metrics);
    const fastify = app.getHttpAdapter().getInstance();
    fastify.addHook('onResponse', (req, reply, done) => {
      const route = req.routeOptions?.url ?? 'unmatched';
      metrics.requests.inc({ method: req.method, route, status: String(reply.statusCode) });
      metrics.latency.observe({ method: req.method, route }, reply.elapsedTime / 1000);
      done();
    });
    const doc = SwaggerModule.createDocument(
      app,
      new DocumentBuilder()
        .setTitle('SDN policy directory')
        .setDescription('Enterprises, domains, zones, subnets (IPAM), hosts, endpoints, policy groups, network macros, ACL rules, change log.')
        .setVersion('1')
        .addBearerAuth()
        .build(),
    );
    doc.security = [{ bearer: [] }];
    doc.components = doc.components ?? {};
    doc.components.schemas = {
      ...(doc.components.schemas ?? {}),
      Problem: {
        type: 'object',
        description: 'RFC 9457 problem details',
        properties: {
          type: { type: 'string' },
          title: { type: 'string' },
          status: { type: 'integer' },
          detail: { type: 'string' },
          instance: { type: 'string' },
          errors: { type: 'array', items: { type: 'object', properties: { field: { type: 'string' }, message: { type: 'string' } } } },
        },
        required: ['type', 'title', 'status', 'detail'],
      },
      ...Object.fromEntries(app.get(ResourceEngine).all().map((d) => [d.kind, d.modelSchema as any])),
    };
    SwaggerModule.setup('api/docs', app, doc, { jsonDocumentUrl: 'api/docs.json' });
    await app.get(ChangeFeed).start();
    const keys = await app.get(ApiKeys).bootstrap(config.operatorKey);
    await app.listen(config.port, config.host);
    const address = fastify.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = `http://127.0.0.1:${port}`;
    log.info('directory listening', { url, docs: `${url}/api/docs` });
    return {
      app,
      url,
      databaseUrl,
      generatedOperatorKey: keys.generated,
      async close() {
        await app.close();
        await db.close();
        if (embedded) await embedded.stop();
      },
    };
  } catch (e) {
    if (embedded) await embedded.stop();
    throw e;
  }
}
