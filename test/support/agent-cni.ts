/**
 * A minimal container runtime's view of CNI for tests: a CNI_PATH with our
 * plugin (`sdn`, a wrapper around dist/apps/agent/src/cni.js) next to Debian's
 * reference plugins, and a conflist executed the way libcni does (ADD in
 * order with prevResult, DEL in reverse order, CHECK with the cached result).
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CNI_JS = join(__dirname, '..', '..', 'apps', 'agent', 'src', 'cni.js');
/** dist/test/support -> the repository's apps/agent/bin/sdn */
export const SDN_BIN = join(__dirname, '..', '..', '..', 'apps', 'agent', 'bin', 'sdn');
export const REFERENCE_PLUGINS = '/usr/lib/cni';

export function makeCniPath(plugins: string[] = ['tuning', 'portmap', 'bandwidth', 'loopback']): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'sdn-cni-'));
  // the installable wrapper (apps/agent/bin/sdn), linked as a runtime's CNI_PATH would hold it
  symlinkSync(SDN_BIN, join(dir, 'sdn'));
  for (const p of plugins) symlinkSync(join(REFERENCE_PLUGINS, p), join(dir, p));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface PluginRun {
  code: number;
  stdout: string;
  json: any;
}

/**
 * Runs one plugin binary as a runtime would: the reference plugins inside
 * `hostNs` (the test host's namespace), ours in the test's own namespace (it
 * must reach the directory on 127.0.0.1) with `hostNetns` naming the host.
 */
export function runPlugin(cniPath: string, hostNs: string, type: string, env: Record<string, string>, conf: object): Promise<PluginRun> {
  // asynchronous: the directory the plugin calls runs in this process
  const argv = type === 'sdn' ? [join(cniPath, type)] : ['ip', 'netns', 'exec', hostNs, join(cniPath, type)];
  if (type === 'sdn') conf = { ...conf, hostNetns: hostNs };
  return new Promise((resolve) => {
    const child = execFile(argv[0], argv.slice(1), { env: { ...process.env, CNI_PATH: cniPath, ...env }, encoding: 'utf8', timeout: 60000 }, (err, stdout, stderr) => {
      let json: any = null;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : null;
      } catch {
        /* not JSON */
      }
      const code = err ? (typeof (err as any).code === 'number' ? (err as any).code : -1) : 0;
      resolve({ code, stdout: code === 0 ? stdout : stdout + stderr, json });
    });
    child.stdin!.end(JSON.stringify(conf));
  });
}

export interface Attachment {
  containerId: string;
  ifName: string;
  netns: string;
}

/** libcni's conflist semantics for ADD / CHECK / DEL; throws with the failing plugin's error JSON */
export class CniChain {
  constructor(
    readonly cniPath: string,
    readonly hostNs: string,
    readonly conflist: { cniVersion: string; name: string; plugins: any[] },
  ) {}

  private env(cmd: string, a: Attachment): Record<string, string> {
    return { CNI_COMMAND: cmd, CNI_CONTAINERID: a.containerId, CNI_NETNS: a.netns, CNI_IFNAME: a.ifName, CNI_ARGS: '' };
  }

  private conf(plugin: any, prevResult: any) {
    return { cniVersion: this.conflist.cniVersion, name: this.conflist.name, ...plugin, ...(prevResult ? { prevResult } : {}) };
  }

  async add(a: Attachment): Promise<any> {
    let prev: any = null;
    for (const p of this.conflist.plugins) {
      const r = await runPlugin(this.cniPath, this.hostNs, p.type, this.env('ADD', a), this.conf(p, prev));
      if (r.code !== 0) throw new Error(`${p.type} ADD failed: ${r.stdout}`);
      prev = r.json;
    }
    return prev;
  }

  async check(a: Attachment, cached: any): Promise<void> {
    for (const p of this.conflist.plugins) {
      const r = await runPlugin(this.cniPath, this.hostNs, p.type, this.env('CHECK', a), this.conf(p, cached));
      if (r.code !== 0) throw new Error(`${p.type} CHECK failed: ${r.stdout}`);
    }
  }

  async del(a: Attachment, cached: any): Promise<void> {
    for (const p of [...this.conflist.plugins].reverse()) {
      const r = await runPlugin(this.cniPath, this.hostNs, p.type, this.env('DEL', a), this.conf(p, cached));
      if (r.code !== 0) throw new Error(`${p.type} DEL failed: ${r.stdout}`);
    }
  }
}

export function sh(argv: string[]): string {
  return execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
