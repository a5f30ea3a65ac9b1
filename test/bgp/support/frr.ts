/** Starts a real FRR bgpd (Debian package frr) without zebra, with private sockets in a temp dir. */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, openSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { waitFor } from './wait.js';

const run = promisify(execFile);

export class FrrBgpd {
  private proc?: ChildProcess;
  readonly dir: string;
  constructor(
    readonly address: string,
    readonly port: number,
    readonly config: string,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'frr-bgpd-'));
    chmodSync(this.dir, 0o777);
  }

  async start(): Promise<void> {
    const conf = join(this.dir, 'bgpd.conf');
    writeFileSync(conf, this.config);
    chmodSync(conf, 0o666);
    const log = openSync(join(this.dir, 'bgpd.out'), 'a');
    this.proc = spawn(
      '/usr/lib/frr/bgpd',
      ['-Z', '-S', '-f', conf, '-l', this.address, '-p', String(this.port), '--vty_socket', this.dir, '-i', join(this.dir, 'bgpd.pid'), '-P', '0', '-u', 'root', '-g', 'root'],
      { stdio: ['ignore', log, log] },
    );
    await waitFor('FRR bgpd vty', async () => (await this.vtysh('show bgp summary json')).includes('{'), 15000, 200);
  }

  /** Runs one command, or several in sequence (e.g. `configure terminal`, then config lines). */
  async vtysh(cmd: string | string[]): Promise<string> {
    const cmds = typeof cmd === 'string' ? [cmd] : cmd;
    const { stdout } = await run('vtysh', ['--vty_socket', this.dir, ...cmds.flatMap((c) => ['-c', c])], { timeout: 10000 });
    return stdout;
  }

  async json<T = unknown>(cmd: string): Promise<T> {
    return JSON.parse(await this.vtysh(cmd)) as T;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
