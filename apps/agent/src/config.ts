import { ConfigError, intFrom, logLevelFrom } from '#sdn/config';
/** The agent's configuration, read and validated once at start (environment variables). */
export interface AgentConfig {
  /** ws://controller:9650/agent, or wss:// when the controller has a certificate */
  controllerUrl: string;
  /** PEM file of the CA that signed the controller's certificate (wss); null = the system's CAs */
  controllerCa: string | null;
  hostId: string;
  /** the host credential issued by the directory when the host was created */
  credential: string;
  vtepIp: string;
  /** namespace to program (holds the VTEP address); null = the agent's own */
  netns: string | null;
  /** domain namespaces are `${nsPrefix}${l3Vni}` */
  nsPrefix: string;
  mtu: number;
  /** health and metrics: host:port, port 0 = any */
  httpHost: string;
  httpPort: number;
  /** where the last acknowledged state is kept across restarts; null = not kept (a restart gets a snapshot) */
  stateFile: string | null;
  /** seconds between drift checks (read the kernel, repair differences); 0 = never */
  resyncSeconds: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export { ConfigError };

export function loadAgentConfig(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const need = (name: string) => {
    const v = env[name];
    if (!v) throw new ConfigError(`${name} is required`);
    return v;
  };
  const int = (name: string, fallback: number, min: number, max: number) => intFrom(env, name, fallback, min, max);
  const level = logLevelFrom(env);
  const hostId = need('AGENT_HOST_ID');
  if (!/^[0-9a-f-]{36}$/i.test(hostId)) throw new ConfigError(`AGENT_HOST_ID must be a host UUID, got "${hostId}"`);
  const url = need('AGENT_CONTROLLER_URL');
  if (!/^wss?:\/\//.test(url)) throw new ConfigError(`AGENT_CONTROLLER_URL must be a ws:// or wss:// URL, got "${url}"`);
  if (url.startsWith('ws://') && !/^ws:\/\/(127\.|localhost|\[::1\])/.test(url)) {
    // the host credential travels in the hello: say so, do not refuse (a lab may want it)
    process.stderr.write(`warning: AGENT_CONTROLLER_URL ${url} is not encrypted; the host credential crosses the network in clear (use wss://)\n`);
  }
  const nsPrefix = env.AGENT_NS_PREFIX ?? 'sdn';
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(nsPrefix)) throw new ConfigError(`AGENT_NS_PREFIX must be 1-40 of [A-Za-z0-9_-], got "${nsPrefix}"`);
  return {
    controllerUrl: need('AGENT_CONTROLLER_URL'),
    controllerCa: env.AGENT_CONTROLLER_CA ? env.AGENT_CONTROLLER_CA : null,
    hostId,
    credential: need('AGENT_CREDENTIAL'),
    vtepIp: need('AGENT_VTEP_IP'),
    netns: env.AGENT_NETNS ? env.AGENT_NETNS : null,
    nsPrefix,
    mtu: int('AGENT_MTU', 1450, 576, 9000),
    httpHost: env.AGENT_HTTP_HOST ?? '127.0.0.1',
    httpPort: int('AGENT_HTTP_PORT', 9651, 0, 65535),
    resyncSeconds: int('AGENT_RESYNC_SECONDS', 60, 0, 86400),
    stateFile: env.AGENT_STATE_FILE ? env.AGENT_STATE_FILE : null,
    logLevel: level,
  };
}
