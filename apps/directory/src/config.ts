import { resolve } from 'node:path';

/** The directory's configuration, read and validated once at start. */
export interface DirectoryConfig {
  /** null: run an embedded Postgres in `dataDir` */
  databaseUrl: string | null;
  dataDir: string;
  embeddedPgPort: number;
  host: string;
  port: number;
  /** operator key to install on first start instead of generating one */
  operatorKey: string | null;
  /** writer batch size bound (group commit) */
  maxBatch: number;
  poolSize: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export class ConfigError extends Error {}

function intFrom(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^[0-9]+$/.test(raw)) throw new ConfigError(`${name} must be an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): DirectoryConfig {
  const level = env.LOG_LEVEL ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) {
    throw new ConfigError(`LOG_LEVEL must be debug, info, warn or error, got "${level}"`);
  }
  const operatorKey = env.SDN_OPERATOR_KEY ?? null;
  if (operatorKey !== null && operatorKey.length < 24) {
    throw new ConfigError('SDN_OPERATOR_KEY must be at least 24 characters');
  }
  return {
    databaseUrl: env.DATABASE_URL && env.DATABASE_URL !== '' ? env.DATABASE_URL : null,
    dataDir: resolve(env.SDN_DATA_DIR ?? '.data'),
    embeddedPgPort: intFrom(env, 'SDN_EMBEDDED_PG_PORT', 54320, 1024, 65535),
    host: env.HOST ?? '0.0.0.0',
    port: intFrom(env, 'PORT', 8080, 0, 65535),
    operatorKey,
    maxBatch: intFrom(env, 'SDN_WRITE_BATCH', 256, 1, 10000),
    poolSize: intFrom(env, 'SDN_DB_POOL', 8, 2, 200),
    logLevel: level as DirectoryConfig['logLevel'],
  };
}
