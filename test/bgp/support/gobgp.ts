/** Starts a real gobgpd for tests, on loopback, in a temp dir; always stopped by the caller. */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { waitFor } from './wait.js';

const run = promisify(execFile);

export interface GobgpNeighbor {
  address: string;
  asn: number;
  /** gobgpd waits for our speaker to connect (passive-mode). */
  passive?: boolean;
  gracefulRestart?: boolean;
  families?: string[];
  /** gobgpd reflects routes to and from this iBGP neighbour (RFC 4456). */
  routeReflectorClient?: boolean;
}

export interface GobgpOptions {
  asn: number;
  routerId: string;
  address: string;
  apiPort: number;
  /** BGP listen port. */
  port: number;
  neighbors: GobgpNeighbor[];
}

export class Gobgpd {
  private proc?: ChildProcess;
  readonly dir: string;
  constructor(readonly opts: GobgpOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'gobgpd-'));
  }

  config(): string {
    const o = this.opts;
    let s = `[global.config]\n  as = ${o.asn}\n  router-id = "${o.routerId}"\n  port = ${o.port}\n  local-address-list = ["${o.address}"]\n`;
    for (const n of o.neighbors) {
      s += `\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = "${n.address}"\n    peer-as = ${n.asn}\n`;
      s += `  [neighbors.transport.config]\n    local-address = "${o.address}"\n    passive-mode = ${n.passive ?? true}\n`;
      s += `  [neighbors.timers.config]\n    connect-retry = 1\n    hold-time = 30\n    keepalive-interval = 10\n`;
      if (n.routeReflectorClient) s += `  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = "${o.routerId}"\n`;
      if (n.gracefulRestart) s += `  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 60\n`;
      for (const f of n.families ?? ['ipv4-unicast', 'ipv6-unicast', 'l2vpn-evpn']) {
        s += `  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = "${f}"\n`;
        if (n.gracefulRestart) s += `    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n`;
      }
    }
    return s;
  }

  async start(restarting = false): Promise<void> {
    const conf = join(this.dir, 'gobgpd.toml');
    writeFileSync(conf, this.config());
    const log = openSync(join(this.dir, 'gobgpd.log'), 'a');
    const args = ['-f', conf, '-t', 'toml', '--api-hosts', `127.0.0.1:${this.opts.apiPort}`, '--pprof-disable', '-p', '-l', 'info'];
    if (restarting) args.push('-r');
    this.proc = spawn('gobgpd', args, { stdio: ['ignore', log, log] });
    await waitFor('gobgpd API', async () => (await this.cli(['global'])).includes('AS'), 15000, 200);
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** SIGKILL: peers with graceful restart act as helpers (GoBGP docs). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await exited;
    this.proc = undefined;
  }

  async stop(): Promise<void> {
    await this.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  async cli(args: string[]): Promise<string> {
    const { stdout } = await run('gobgp', ['-p', String(this.opts.apiPort), ...args], { timeout: 10000 });
    return stdout;
  }

  async json<T = unknown>(args: string[]): Promise<T> {
    const out = await this.cli([...args, '-j']);
    return JSON.parse(out.trim() || 'null') as T;
  }

  async neighborState(address: string): Promise<string> {
    const j = await this.json<{ state?: { session_state?: string | number } }>(['neighbor', address]);
    return String(j?.state?.session_state ?? '');
  }
}
