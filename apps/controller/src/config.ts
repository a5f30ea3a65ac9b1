import { ConfigError, intFrom, logLevelFrom } from '#sdn/config';
import { DEFAULT_DB_TIMEOUT_SECONDS } from '#sdn/store';
/** The controller's configuration, read and validated once at start. */
export interface ControllerConfig {
  databaseUrl: string;
  host: string;
  /** one port: agents (WebSocket upgrade on /agent), /metrics, /healthz, /agents */
  port: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** deployment-wide anycast gateway MAC put on every subnet bridge */
  gatewayMac: string;
  /** change-log polling interval when no NOTIFY arrives (ms) */
  pollMs: number;
  /** how often endpoint status changes are written to the directory (ms) */
  statusFlushMs: number;
  /** milliseconds between WebSocket pings to agents */
  pingIntervalMs: number;
  /** minimum milliseconds between two deltas to one agent (0: send as soon as the previous one is acked). Only a burst waits: a change after a quiet period goes at once; bursts become fewer, larger messages */
  sendIntervalMs: number;
  /** serve agents and HTTP over TLS (SDN_TLS_CERT, SDN_TLS_KEY) */
  tls: TlsFiles | null;
  /** how long to wait at start for the database and the directory's schema */
  dbWaitSeconds: number;
  /** a connection to Postgres silent this long while a statement runs is taken as lost (SDN_DB_TIMEOUT_SECONDS) */
  dbTimeoutSeconds: number;
  /**
   * with a BGP speaker (SDN_BGP_SPEAKER): how long agents from before a restart wait, keeping their state, for the
   * neighbours' End-of-RIB before they resume (SDN_BGP_SELECT_DEFER_SECONDS; 0: no wait)
   */
  bgpSelectDeferSeconds: number;
}

export { ConfigError };

/** PEM certificate and key for wss:// (agents send their host credential in the hello); null = plain ws:// */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

/** the directory's embedded Postgres with its defaults (npm start without DATABASE_URL) */
export const DEFAULT_DATABASE_URL = 'postgres://postgres:postgres@127.0.0.1:54320/sdn';

export function loadConfig(env: NodeJS.ProcessEnv = process.env): ControllerConfig {
  const level = logLevelFrom(env);
  const gatewayMac = (env.SDN_GATEWAY_MAC ?? '02:5d:00:00:00:01').toLowerCase();
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(gatewayMac)) throw new ConfigError(`SDN_GATEWAY_MAC must be a MAC like 02:5d:00:00:00:01, got "${gatewayMac}"`);
  const cert = env.SDN_TLS_CERT ?? '';
  const key = env.SDN_TLS_KEY ?? '';
  if ((cert === '') !== (key === '')) throw new ConfigError('SDN_TLS_CERT and SDN_TLS_KEY go together: give both files or neither');
  return {
    databaseUrl: env.DATABASE_URL && env.DATABASE_URL !== '' ? env.DATABASE_URL : DEFAULT_DATABASE_URL,
    host: env.CONTROLLER_HOST ?? '0.0.0.0',
    port: intFrom(env, 'CONTROLLER_PORT', 9650, 0, 65535),
    logLevel: level,
    gatewayMac,
    pollMs: intFrom(env, 'SDN_POLL_MS', 500, 10, 60_000),
    statusFlushMs: intFrom(env, 'SDN_STATUS_FLUSH_MS', 50, 1, 60_000),
    pingIntervalMs: intFrom(env, 'SDN_PING_MS', 15_000, 100, 600_000),
    sendIntervalMs: intFrom(env, 'SDN_SEND_INTERVAL_MS', 50, 0, 10_000),
    tls: cert ? { certFile: cert, keyFile: key } : null,
    dbWaitSeconds: intFrom(env, 'SDN_DB_WAIT_SECONDS', 60, 0, 3600),
    dbTimeoutSeconds: intFrom(env, 'SDN_DB_TIMEOUT_SECONDS', DEFAULT_DB_TIMEOUT_SECONDS, 1, 3600),
    bgpSelectDeferSeconds: intFrom(env, 'SDN_BGP_SELECT_DEFER_SECONDS', 15, 0, 600),
  };
}
