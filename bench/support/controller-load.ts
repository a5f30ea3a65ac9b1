/**
 * The load generator of bench:scale, in its own process so that the
 * controller's process holds nothing but the controller: builds the topology
 * through the REST API, then creates the endpoints with CLIENTS concurrent
 * clients. IPC: parent -> {type:'setup', ...} | {type:'run'}; child -> {type:'setup', hosts} | {type:'run', apiSeconds}.
 *
 * The clients are minimal HTTP/1.1 keep-alive connections (one request at a
 * time each, like wrk's): the load generator shares the two cores with the
 * system under test, and a general-purpose client spent about twice the CPU
 * per request. Every response is still read whole, its status checked and
 * its body parsed.
 */
import { connect, Socket } from 'node:net';
import { GROUPS, placement, POLICY, policyRule, ScaleSize } from './scale-topology';

interface Params extends ScaleSize {
  url: string;
  key: string;
}

let p: Params;
const subnets: string[] = [];
const groups: string[][] = [];
const hosts: { id: string; credential: string; vtepIp: string }[] = [];

/** One keep-alive HTTP/1.1 connection; requests on it are sequential. */
class Connection {
  private socket: Socket | null = null;
  private buf: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (r: { status: number; body: string }) => void; reject: (e: Error) => void } | null = null;

  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  private open(): Socket {
    const s = connect({ host: this.host, port: this.port, noDelay: true });
    s.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      this.parse();
    });
    const fail = (e: Error) => {
      this.socket = null;
      this.buf = Buffer.alloc(0);
      const w = this.waiting;
      this.waiting = null;
      w?.reject(e);
    };
    s.on('error', fail);
    s.on('close', () => fail(new Error('connection closed by the server')));
    this.socket = s;
    return s;
  }

  private parse(): void {
    const w = this.waiting;
    if (!w) return;
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.buf.toString('latin1', 0, end);
    const status = Number(head.slice(9, 12));
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!m) {
      this.waiting = null;
      this.socket?.destroy();
      return w.reject(new Error(`response without content-length: ${head}`));
    }
    const total = end + 4 + Number(m[1]);
    if (this.buf.length < total) return;
    const body = this.buf.toString('utf8', end + 4, total);
    this.buf = this.buf.subarray(total);
    this.waiting = null;
    w.resolve({ status, body });
  }

  request(method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
    const s = this.socket ?? this.open();
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      const len = body === undefined ? 0 : Buffer.byteLength(body);
      s.write(
        `${method} ${path} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\nauthorization: Bearer ${p.key}\r\n` +
          (body === undefined ? '\r\n' : `content-type: application/json\r\ncontent-length: ${len}\r\n\r\n${body}`),
      );
    });
  }
}

let pool: Connection[] = [];

async function call(method: 'POST' | 'GET', path: string, body?: unknown) {
  // each of the `clients` workers below owns one connection at a time
  const conn = pool.pop() ?? new Connection(new URL(p.url).hostname, Number(new URL(p.url).port));
  try {
    const r = await conn.request(method, path, body === undefined ? undefined : JSON.stringify(body));
    if (r.status >= 300) throw new Error(`${method} ${path} -> ${r.status} ${r.body}`);
    return JSON.parse(r.body);
  } finally {
    pool.push(conn);
  }
}

async function parallel(n: number, work: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(p.clients, n) }, async () => {
      for (let i = next++; i < n; i = next++) await work(i);
    }),
  );
}

async function setup() {
  await parallel(p.networks, async (i) => {
    const e = await call('POST', '/api/v1/enterprises', { name: `net-${i}` });
    const d = await call('POST', `/api/v1/enterprises/${e.id}/domains`, { name: 'd' });
    const z = await call('POST', `/api/v1/domains/${d.id}/zones`, { name: 'z' });
    subnets[i] = (await call('POST', `/api/v1/zones/${z.id}/subnets`, { name: 's', cidr: '10.0.0.0/16' })).id;
    groups[i] = await Promise.all(GROUPS.map(async (n) => (await call('POST', `/api/v1/domains/${d.id}/policy-groups`, { name: n })).id));
    for (const r of POLICY) await call('POST', `/api/v1/domains/${d.id}/acl-rules`, policyRule(r, groups[i]));
  });
  await parallel(p.hosts, async (i) => {
    const h = await call('POST', '/api/v1/hosts', { name: `h${i}`, vtepIp: `10.255.${i >> 8}.${(i & 255) + 1}` });
    hosts[i] = { id: h.id, credential: h.credential, vtepIp: h.vtepIp };
  });
}

/** Creates the endpoints, placed as scale-topology's placement() says. */
async function run(): Promise<number> {
  const start = performance.now();
  await parallel(p.endpoints, async (i) => {
    const { network, host, group } = placement(i, p);
    await call('POST', `/api/v1/subnets/${subnets[network]}/endpoints`, { name: `ep-${i}`, externalId: `ext-${i}`, hostId: hosts[host].id, policyGroupIds: [groups[network][group]] });
  });
  return (performance.now() - start) / 1000;
}

process.on('message', (m: any) => {
  const fail = (e: Error) => {
    console.error(e);
    process.exit(1);
  };
  if (m.type === 'setup') {
    p = m.params;
    pool = [];
    setup().then(() => process.send!({ type: 'setup', hosts }), fail);
  } else if (m.type === 'run') {
    run().then((apiSeconds) => process.send!({ type: 'run', apiSeconds }), fail);
  }
});
// a clean exit on the parent's SIGTERM, so that exit hooks (such as node --cpu-prof) run
process.on('SIGTERM', () => process.exit(0));
