/**
 * Real agent processes (dist/apps/agent/src/main.js) for end-to-end tests,
 * each programming one test host namespace. They run in the test's own
 * namespace (so they reach a controller on 127.0.0.1) and program the host
 * namespace through AGENT_NETNS.
 */
import { spawn, ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Api } from './directory';
import type { NetnsWorld, TestHost } from './netns';

export interface AgentProcess {
  proc: ChildProcess;
  /** http://127.0.0.1:port of health and metrics */
  url: string;
  log: string[];
}

const MAIN = join(__dirname, '..', '..', 'apps', 'agent', 'src', 'main.js');

export function startAgentProcess(h: TestHost, opts: { controllerUrl: string; hostId: string; credential: string; stateFile?: string }): Promise<AgentProcess> {
  const proc = spawn(process.execPath, ['--enable-source-maps', MAIN], {
    env: {
      ...process.env,
      AGENT_CONTROLLER_URL: opts.controllerUrl,
      AGENT_HOST_ID: opts.hostId,
      AGENT_CREDENTIAL: opts.credential,
      AGENT_VTEP_IP: h.vtep,
      AGENT_NETNS: h.ns,
      AGENT_NS_PREFIX: h.domainPrefix,
      AGENT_HTTP_PORT: '0',
      AGENT_STATE_FILE: opts.stateFile ?? '',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`agent did not start: ${log.join('\n')}`)), 15000);
    const onLine = (line: string) => {
      log.push(line);
      if (log.length > 500) log.shift();
      try {
        const j = JSON.parse(line);
        if (j.msg === 'agent started') {
          clearTimeout(t);
          resolve({ proc, url: `http://${j.http}`, log });
        }
      } catch {
        /* not JSON */
      }
    };
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    proc.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`agent exited with ${code}: ${log.join('\n')}`));
    });
  });
}

export async function stopAgentProcess(a: AgentProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!a || a.proc.exitCode !== null || a.proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => a.proc.once('exit', () => resolve()));
  a.proc.kill(signal);
  await exited;
}

export async function agentHealth(a: AgentProcess): Promise<any> {
  const r = await fetch(`${a.url}/healthz`);
  return r.json();
}

/** polls until `cond` holds (no timing is asserted: the limit only ends a hung test) */
export async function until<T>(what: string, cond: () => Promise<T | null | undefined | false> | T | null | undefined | false, limitMs = 30000): Promise<T> {
  const end = Date.now() + limitMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Registers every host of a namespace world in the directory (named
 * `${prefix}-${host}`) and starts one agent per host against the controller,
 * pushing each onto `agents` as it starts (so that the caller's cleanup stops
 * those that did if a later one fails). Returns the host ids by host name.
 */
export async function registerHostsAndStartAgents(world: NetnsWorld, api: Api, controllerUrl: string, agents: AgentProcess[]): Promise<Map<string, string>> {
  const hostIds = new Map<string, string>();
  const credentials = new Map<string, string>();
  for (const h of world.hosts) {
    const made = await api.make('/api/v1/hosts', { name: `${world.prefix}-${h.name}`, vtepIp: h.vtep });
    hostIds.set(h.name, made.id);
    credentials.set(h.name, made.credential);
  }
  for (const h of world.hosts) agents.push(await startAgentProcess(h, { controllerUrl, hostId: hostIds.get(h.name)!, credential: credentials.get(h.name)! }));
  return hostIds;
}
