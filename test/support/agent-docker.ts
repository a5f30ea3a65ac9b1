/**
 * Debian's dockerd for agent tests, started inside a test host's network
 * namespace with its own data/exec roots and socket. It is entered with
 * `nsenter --net` rather than `ip netns exec`: the latter remounts /sys, and
 * dockerd then finds no cgroup hierarchy ("Devices cgroup isn't mounted").
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, copyFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function docker(sock: string, args: string[], input?: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile('docker', ['-H', `unix://${sock}`, ...args], { encoding: 'utf8', timeout: 120000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof (err as any).code === 'number' ? (err as any).code : -1) : 0, out: `${stdout}${stderr}` });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

export class TestDockerd {
  readonly root: string;
  readonly sock: string;
  private proc: ChildProcess | null = null;

  constructor(readonly netns: string) {
    this.root = mkdtempSync(join(tmpdir(), 'sdn-dk-'));
    this.sock = join(this.root, 'docker.sock');
  }

  async start(): Promise<void> {
    this.proc = spawn(
      'nsenter',
      [
        `--net=/run/netns/${this.netns}`,
        'dockerd',
        '--iptables=false',
        '--ip6tables=false',
        '--bridge=none',
        '--data-root', join(this.root, 'data'),
        '--exec-root', join(this.root, 'exec'),
        '--pidfile', join(this.root, 'docker.pid'),
        '-H', `unix://${this.sock}`,
      ],
      { stdio: ['ignore', 'ignore', 'ignore'] },
    );
    for (let i = 0; i < 300; i++) {
      if ((await docker(this.sock, ['info', '--format', '{{.ServerVersion}}'])).code === 0) return;
      if (this.proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('dockerd did not start');
  }

  /** a tiny image from Debian's busybox-static (no registry is reachable) */
  async importBusybox(tag: string): Promise<void> {
    const dir = join(this.root, 'img');
    mkdirSync(join(dir, 'bin'), { recursive: true });
    if (!existsSync(join(dir, 'bin', 'busybox'))) {
      copyFileSync('/bin/busybox', join(dir, 'bin', 'busybox'));
      for (const l of ['sh', 'ip', 'ping', 'nc', 'sleep', 'echo', 'cat', 'wget', 'ifconfig', 'hostname']) symlinkSync('busybox', join(dir, 'bin', l));
    }
    const tar = await new Promise<Buffer>((resolve, reject) =>
      execFile('tar', ['-C', dir, '-c', '.'], { encoding: 'buffer', maxBuffer: 64 << 20 }, (e, out) => (e ? reject(e) : resolve(out))),
    );
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      const child = execFile('docker', ['-H', `unix://${this.sock}`, 'import', '-', tag], (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr }));
      child.stdin!.end(tar);
    });
    if (r.code !== 0) throw new Error(`docker import: ${r.out}`);
  }

  async stop(): Promise<void> {
    const ids = (await docker(this.sock, ['ps', '-aq'])).out.trim().split('\n').filter(Boolean);
    if (ids.length) await docker(this.sock, ['rm', '-f', ...ids]);
    const p = this.proc;
    if (p && p.exitCode === null) {
      const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 20000);
      await exited;
      clearTimeout(t);
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}
