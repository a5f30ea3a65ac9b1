/**
 * npm run bench:bgp — ingest benchmark (not a test; it prints figures).
 * One replaying sender pushes 1,000,000 IPv4 unicast and 200,000 EVPN
 * type-2 routes to (a) our BgpSpeaker in a child process and (b) gobgpd.
 * Targets: ours >= 2x gobgpd's routes/s, <= 300 bytes per route.
 */
import { fork, spawn, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { encodeWorkload, ReplaySender } from './support/bgp-sender.js';

const run = promisify(execFile);
const IPV4 = Number(process.env.BGP_BENCH_IPV4 ?? 1_000_000);
const EVPN = Number(process.env.BGP_BENCH_EVPN ?? 200_000);
const TOTAL = IPV4 + EVPN;
const SENDER = '127.0.5.10';
const SENDER_AS = 65100;

interface Result {
  name: string;
  /** Seconds from the first byte sent until all IPv4 routes were held. */
  ipv4Seconds: number;
  /** Seconds until every route was held, or the limit when it was not reached. */
  seconds: number;
  routesHeld: number;
  finished: boolean;
  routesPerSecond: number;
  bytesPerRoute: number;
  memoryNote: string;
}
const GOBGP_LIMIT = Number(process.env.BGP_BENCH_GOBGP_LIMIT ?? 120);

/** Children to kill if we are interrupted. */
const children = new Set<{ kill(signal?: NodeJS.Signals): boolean }>();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    for (const c of children) c.kill('SIGKILL');
    process.exit(130);
  });
}
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function benchOurs(buffers: Buffer[]): Promise<Result> {
  const child = fork(join(__dirname, 'support', 'bgp-receiver.js'), [], { execArgv: ['--expose-gc', '--max-old-space-size=4096'] });
  children.add(child);
  try {
    const ready = new Promise<{ baseline: { rss: number; heapUsed: number } }>((resolve) =>
      child.on('message', (m: { type: string; baseline: { rss: number; heapUsed: number } }) => m.type === 'ready' && resolve(m)),
    );
    const v4done = new Promise<{ at: number }>((resolve) => child.on('message', (m: { type: string; at: number }) => m.type === 'ipv4' && resolve(m)));
    const done = new Promise<{ at: number; mem: { rss: number; heapUsed: number }; v4: number; ev: number }>((resolve) =>
      child.on('message', (m: { type: string; at: number; mem: { rss: number; heapUsed: number }; v4: number; ev: number }) => m.type === 'done' && resolve(m)),
    );
    child.send({ address: '127.0.5.1', port: 21830, sender: SENDER, senderAs: SENDER_AS, ipv4: IPV4, evpn: EVPN });
    const { baseline } = await ready;
    const sender = new ReplaySender({ host: '127.0.5.1', port: 21830, localAddress: SENDER, asn: SENDER_AS, routerId: '10.255.0.100' });
    await sender.connect();
    const t0 = Date.now();
    await sender.replay(buffers);
    const d = await done;
    const v4 = await v4done;
    sender.close();
    const seconds = (d.at - t0) / 1000;
    const rssPer = (d.mem.rss - baseline.rss) / TOTAL;
    const heapPer = (d.mem.heapUsed - baseline.heapUsed) / TOTAL;
    return {
      name: 'ours (BgpSpeaker)',
      ipv4Seconds: (v4.at - t0) / 1000,
      seconds,
      routesHeld: TOTAL,
      finished: true,
      routesPerSecond: TOTAL / seconds,
      bytesPerRoute: rssPer,
      memoryNote: `RSS delta after GC ${(rssPer).toFixed(0)} B/route, JS heap ${(heapPer).toFixed(0)} B/route`,
    };
  } finally {
    child.kill('SIGKILL');
  }
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

async function gobgpCount(api: number, family: string): Promise<number> {
  const { stdout } = await run('gobgp', ['-p', String(api), 'global', 'rib', 'summary', '-a', family], { timeout: 20000 });
  const m = /Destination:\s*(\d+)/.exec(stdout);
  return m ? Number(m[1]) : 0;
}

async function benchGobgp(buffers: Buffer[]): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'bgp-bench-gobgpd-'));
  const api = 50081;
  const conf = `[global.config]
  as = 65000
  router-id = "10.0.0.201"
  port = 21831
  local-address-list = ["127.0.5.2"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "${SENDER}"
    peer-as = ${SENDER_AS}
  [neighbors.transport.config]
    passive-mode = true
    local-address = "127.0.5.2"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l2vpn-evpn"
`;
  writeFileSync(join(dir, 'gobgpd.toml'), conf);
  const proc = spawn('gobgpd', ['-f', join(dir, 'gobgpd.toml'), '--api-hosts', `127.0.0.1:${api}`, '--pprof-disable', '-l', 'warn'], { stdio: 'ignore' });
  children.add(proc);
  try {
    for (let i = 0; ; i++) {
      try {
        await run('gobgp', ['-p', String(api), 'global'], { timeout: 5000 });
        break;
      } catch {
        if (i > 50) throw new Error('gobgpd did not start');
        await sleep(200);
      }
    }
    await sleep(500);
    const baseline = rssOf(proc.pid!);
    const sender = new ReplaySender({ host: '127.0.5.2', port: 21831, localAddress: SENDER, asn: SENDER_AS, routerId: '10.255.0.100' });
    await sender.connect();
    const t0 = Date.now();
    await sender.replay(buffers);
    let at = 0;
    let v4at = 0;
    let held = 0;
    let finished = false;
    for (;;) {
      const v4 = await gobgpCount(api, 'ipv4');
      const ev = await gobgpCount(api, 'evpn');
      const now = Date.now();
      if (process.env.BGP_BENCH_DEBUG) console.log(now - t0, v4, ev);
      if (v4 >= IPV4 && v4at === 0) v4at = now;
      held = v4 + ev;
      at = now;
      if (v4 >= IPV4 && ev >= EVPN) {
        finished = true;
        break;
      }
      // gobgpd's EVPN ingest slows down as its table grows; stop at the limit and report what it held.
      if (now - t0 > GOBGP_LIMIT * 1000) break;
      // `gobgp global rib summary` walks gobgpd's table: poll once a second so the probe does not slow it much.
      await sleep(1000);
    }
    const rss = rssOf(proc.pid!);
    sender.close();
    const seconds = (at - t0) / 1000;
    const per = (rss - baseline) / held;
    return {
      name: 'gobgpd 3.10',
      ipv4Seconds: v4at ? (v4at - t0) / 1000 : NaN,
      seconds,
      routesHeld: held,
      finished,
      routesPerSecond: held / seconds,
      bytesPerRoute: per,
      memoryNote: `RSS delta ${per.toFixed(0)} B/route held (Go heap not collected on demand)`,
    };
  } finally {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(`bgp ingest benchmark: ${IPV4.toLocaleString('en')} IPv4 unicast /32 + ${EVPN.toLocaleString('en')} EVPN type-2 routes, one replaying sender on loopback`);
  const t = Date.now();
  const buffers = encodeWorkload({ ipv4Routes: IPV4, evpnRoutes: EVPN }, SENDER_AS);
  const bytes = buffers.reduce((n, b) => n + b.length, 0);
  console.log(`pre-encoded ${buffers.length} UPDATEs, ${(bytes / 1e6).toFixed(1)} MB, in ${Date.now() - t} ms (not timed)`);
  const results: Result[] = [];
  for (const f of process.env.BGP_BENCH_ONLY_GOBGP ? [benchGobgp] : process.env.BGP_BENCH_ONLY_OURS ? [benchOurs, benchOurs] : [benchOurs, benchGobgp]) {
    const r = await f(buffers);
    results.push(r);
    const held = r.finished ? `all ${TOTAL.toLocaleString('en')} routes held after ${r.seconds.toFixed(2)} s` : `only ${r.routesHeld.toLocaleString('en')} of ${TOTAL.toLocaleString('en')} routes held at the ${GOBGP_LIMIT} s limit`;
    console.log(`${r.name.padEnd(18)} IPv4 done after ${r.ipv4Seconds.toFixed(2)} s (${Math.round(IPV4 / r.ipv4Seconds).toLocaleString('en')} routes/s); ${held}; ${Math.round(r.routesPerSecond).toLocaleString('en')} routes/s overall; ${r.memoryNote}`);
  }
  const [ours, gobgp] = results;
  const speed = ours.routesPerSecond / gobgp.routesPerSecond;
  const v4speed = gobgp.ipv4Seconds / ours.ipv4Seconds;
  console.log(`speed ratio ours/gobgpd, whole workload: ${speed.toFixed(2)}x${gobgp.finished ? '' : ' (at least: gobgpd did not finish)'} (target >= 2x: ${speed >= 2 ? 'met' : 'NOT met'}); IPv4 phase alone: ${v4speed.toFixed(2)}x`);
  console.log(`memory per route ours: ${ours.bytesPerRoute.toFixed(0)} B (target <= 300 B: ${ours.bytesPerRoute <= 300 ? 'met' : 'NOT met'}); gobgpd: ${gobgp.bytesPerRoute.toFixed(0)} B`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
