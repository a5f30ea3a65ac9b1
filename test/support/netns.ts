/**
 * Network namespaces for agent tests: an underlay bridge, hosts with a VTEP
 * address on it, and "containers" (namespaces holding an endpoint's veth end).
 * Every name starts with one prefix per test run, and `cleanup()` deletes every
 * namespace with that prefix (also the domain namespaces agents made), so a
 * failed test leaves nothing behind.
 */
import { execFileSync, spawn, ChildProcess } from 'node:child_process';

export function sh(argv: string[], input?: string): string {
  return execFileSync(argv[0], argv.slice(1), { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

/** runs a command in a namespace; returns exit code and output, never throws */
export function tryIn(ns: string, argv: string[], timeoutMs = 20000): { code: number; out: string } {
  try {
    const out = execFileSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    return { code: 0, out };
  } catch (e: any) {
    return { code: typeof e.status === 'number' ? e.status : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

export function inNs(ns: string, argv: string[], input?: string): string {
  return sh(['ip', 'netns', 'exec', ns, ...argv], input);
}

/** a short prefix unique to this process, e.g. `t3f2a` (namespace names stay readable) */
export function runPrefix(tag: string): string {
  return `${tag}${(process.pid % 0xffff).toString(36)}`;
}

export function listNamespaces(prefix: string): string[] {
  const out = sh(['ip', '-j', 'netns', 'list']).trim();
  const list: { name: string }[] = out ? JSON.parse(out) : [];
  return list.map((n) => n.name).filter((n) => n.startsWith(prefix));
}

export interface TestHost {
  name: string;
  ns: string;
  vtep: string;
  /** prefix of its agent's domain namespaces */
  domainPrefix: string;
}

export class NetnsWorld {
  readonly underlay: string;
  readonly hosts: TestHost[] = [];
  private readonly procs = new Set<ChildProcess>();

  constructor(readonly prefix: string) {
    this.underlay = `${prefix}u`;
  }

  /** the underlay: one namespace with a bridge that every host's uplink joins */
  setup(hostCount: number): this {
    this.cleanup();
    sh(['ip', 'netns', 'add', this.underlay]);
    inNs(this.underlay, ['ip', 'link', 'add', 'ul', 'type', 'bridge']);
    inNs(this.underlay, ['ip', 'link', 'set', 'ul', 'up']);
    for (let i = 1; i <= hostCount; i++) this.addHost(`h${i}`, `192.0.2.${i}`);
    return this;
  }

  addHost(name: string, vtep: string): TestHost {
    const ns = `${this.prefix}${name}`;
    sh(['ip', 'netns', 'add', ns]);
    sh(['ip', '-n', ns, 'link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', `${name}up`, 'netns', this.underlay]);
    sh(['ip', '-n', this.underlay, 'link', 'set', `${name}up`, 'master', 'ul', 'up']);
    sh(['ip', '-n', ns, 'addr', 'add', `${vtep}/24`, 'dev', 'uplink']);
    sh(['ip', '-n', ns, 'link', 'set', 'uplink', 'up']);
    sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    const h = { name, ns, vtep, domainPrefix: `${ns}d` };
    this.hosts.push(h);
    return h;
  }

  host(name: string): TestHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name}`);
    return h;
  }

  /**
   * A container: a namespace that takes the container side (`ec...`) of the
   * endpoint's veth from the host namespace, as the CNI plugin does.
   */
  attachContainer(name: string, host: TestHost, ep: { ifName: string; ip: string; prefixLength: number; gateway: string }): string {
    const ns = `${this.prefix}c${name}`;
    sh(['ip', 'netns', 'add', ns]);
    const peer = `ec${ep.ifName.slice(2)}`;
    sh(['ip', '-n', host.ns, 'link', 'set', peer, 'netns', ns]);
    sh(['ip', '-n', ns, 'link', 'set', peer, 'name', 'eth0']);
    const v6 = ep.ip.includes(':');
    sh(['ip', '-n', ns, 'addr', 'add', `${ep.ip}/${ep.prefixLength}`, 'dev', 'eth0', ...(v6 ? ['nodad'] : [])]);
    sh(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
    sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    sh(['ip', '-n', ns, ...(v6 ? ['-6'] : []), 'route', 'add', 'default', 'via', ep.gateway]);
    return ns;
  }

  /** a long-running process inside a namespace, killed at cleanup */
  spawnIn(ns: string, argv: string[]): ChildProcess {
    const p = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    this.procs.add(p);
    p.on('exit', () => this.procs.delete(p));
    return p;
  }

  kill(p: ChildProcess): void {
    if (p.pid && p.exitCode === null) {
      try {
        process.kill(-p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    this.procs.delete(p);
  }

  /** kills our processes and deletes every namespace with the prefix */
  cleanup(): void {
    for (const p of [...this.procs]) this.kill(p);
    for (const ns of listNamespaces(this.prefix)) {
      try {
        // processes still inside (a stray nc) would keep the namespace alive
        const pids = sh(['ip', 'netns', 'pids', ns]).trim().split('\n').filter(Boolean);
        for (const pid of pids) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        sh(['ip', 'netns', 'del', ns]);
      } catch {
        /* already gone */
      }
    }
  }
}

/** true when at least one echo comes back (count 3, 2 s per reply: a loaded machine is not a lost packet) */
export function ping(ns: string, ip: string, count = 3): boolean {
  return tryIn(ns, ['ping', '-c', String(count), '-W', '2', '-i', '0.2', ip]).code === 0;
}

/** a TCP connection attempt from one namespace to ip:port (busybox nc server must listen); true when it gets the server's greeting */
export function tcpConnects(fromNs: string, ip: string, port: number): boolean {
  const r = tryIn(fromNs, ['busybox', 'nc', '-w', '2', ip, String(port)], 8000);
  return r.out.includes('hello');
}

/** a TCP server in a namespace that greets every connection with `hello from <name>` */
export function startGreeter(world: NetnsWorld, ns: string, port: number, name: string): ChildProcess {
  const js = `require('net').createServer((s)=>{s.on('error',()=>{});s.write('hello from ${name}\\n');s.on('data',(d)=>s.write(d))}).listen(${port},'0.0.0.0',()=>console.log('up'))`;
  return world.spawnIn(ns, [process.execPath, '-e', js]);
}

export function waitForLine(p: ChildProcess, text: string, ms = 10000): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`no "${text}" within ${ms} ms: ${buf}`)), ms);
    p.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes(text)) {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

/** connects from a namespace and returns the server's greeting, or null when no connection was made within 3 s (SYN retransmits after 1 s) */
export function greeting(fromNs: string, ip: string, port: number): string | null {
  const js = `const s=require('net').connect(${port},'${ip}');s.setTimeout(3000,()=>process.exit(2));s.on('data',(d)=>{process.stdout.write(d);process.exit(0)});s.on('error',()=>process.exit(1))`;
  const r = tryIn(fromNs, [process.execPath, '-e', js], 15000);
  return r.code === 0 ? r.out.trim() : null;
}
