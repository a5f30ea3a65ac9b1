import { resolve } from 'node:path';
import { ConfigError, intFrom, logLevelFrom } from '#sdn/config';
import { DEFAULT_DB_TIMEOUT_SECONDS } from '#sdn/store';

/** The directory's configuration, read and validated once at start. */
export interface DirectoryConfig {
  /** null: run an embedded Postgres in `dataDir` */
  databaseUrl: string | null;
  dataDir: string;
  embeddedPgPort: number;
  /** extra `name=value` server settings for the embedded Postgres (SDN_EMBEDDED_PG_SETTINGS, comma-separated) */
  embeddedPgSettings: string[];
  host: string;
  port: number;
  /** operator key to install on first start instead of generating one */
  operatorKey: string | null;
  /** writer batch size bound (group commit) */
  maxBatch: number;
  poolSize: number;
  /** how long to wait at start for an external database (DATABASE_URL) to accept sessions */
  dbWaitSeconds: number;
  /** a connection to Postgres silent this long while a statement runs is taken as lost (SDN_DB_TIMEOUT_SECONDS) */
  dbTimeoutSeconds: number;
  /** `npm start` also runs the controller, as a child process (SDN_START_CONTROLLER=0: the directory alone) */
  startController: boolean;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export { ConfigError };

export function loadConfig(env: NodeJS.ProcessEnv = process.env): DirectoryConfig {
  const level = logLevelFrom(env);
  const operatorKey = env.SDN_OPERATOR_KEY ?? null;
  if (operatorKey !== null && operatorKey.length < 24) {
    throw new ConfigError('SDN_OPERATOR_KEY must be at least 24 characters');
  }
  return {
    databaseUrl: env.DATABASE_URL && env.DATABASE_URL !== '' ? env.DATABASE_URL : null,
    dataDir: resolve(env.SDN_DATA_DIR ?? '.data'),
    embeddedPgPort: intFrom(env, 'SDN_EMBEDDED_PG_PORT', 54320, 1024, 65535),
    embeddedPgSettings: pgSettingsFrom(env.SDN_EMBEDDED_PG_SETTINGS),
    host: env.HOST ?? '0.0.0.0',
    port: intFrom(env, 'PORT', 8080, 0, 65535),
    operatorKey,
    maxBatch: intFrom(env, 'SDN_WRITE_BATCH', 256, 1, 10000),
    poolSize: intFrom(env, 'SDN_DB_POOL', 8, 2, 200),
    dbWaitSeconds: intFrom(env, 'SDN_DB_WAIT_SECONDS', 60, 0, 3600),
    dbTimeoutSeconds: intFrom(env, 'SDN_DB_TIMEOUT_SECONDS', DEFAULT_DB_TIMEOUT_SECONDS, 1, 3600),
    startController: intFrom(env, 'SDN_START_CONTROLLER', 1, 0, 1) === 1,
    logLevel: level,
  };
}

/**
 * "a=1,b.c=x" -> ['a=1', 'b.c=x']. A comma starts a new setting only before
 * another `name=`, so list values keep theirs
 * ("shared_preload_libraries=pg_stat_statements,auto_explain,work_mem=8MB"
 * is two settings). A setting that is not name=value is an error, not a
 * surprise at start.
 */
function pgSettingsFrom(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === '') return [];
  return raw.split(/,(?=\s*[a-z_][a-z0-9_.]*=)/i).map((item) => {
    const s = item.trim();
    if (!/^[a-z_][a-z0-9_.]*=[^\s]+$/i.test(s)) throw new ConfigError(`SDN_EMBEDDED_PG_SETTINGS: "${s}" is not name=value`);
    return s;
  });
}
