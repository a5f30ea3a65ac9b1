/**
 * npm run bench: endpoint creations per second through the REST API at 64
 * concurrent clients, on embedded Postgres, with p50/p99 latency.
 *
 * The directory runs in a child process (as in production) so that the load
 * generator's CPU is not counted against it; both share this machine's cores.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { treeCpu } from './support/cpu';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 64);
const TOTAL = Number(process.env.BENCH_ENDPOINTS ?? 20000);
const WARMUP = 1000;
const KEY = 'bench-operator-key-0123456789abcdef';

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), 'sdn-bench-'));
  const child = fork(join(__dirname, 'support', 'directory-process.js'), [], {
    env: { ...process.env, SDN_DATA_DIR: dataDir, PORT: '0', SDN_OPERATOR_KEY: KEY, LOG_LEVEL: 'error', SDN_EMBEDDED_PG_PORT: '54377' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: process.env.BENCH_PROFILE ? ['--enable-source-maps', '--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : ['--enable-source-maps'],
  });
  const url: string = await new Promise((resolve, reject) => {
    child.once('message', (m: any) => resolve(m.url));
    child.once('exit', (code) => reject(new Error(`directory exited with ${code}`)));
  });
  const dispatcher = new Agent({ connections: CLIENTS, pipelining: 1, keepAliveTimeout: 60_000 });
  const call = async (method: 'POST' | 'GET', path: string, body?: unknown) => {
    const r = await request(`${url}${path}`, {
      method,
      dispatcher,
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.body.text();
    if (r.statusCode >= 300) throw new Error(`${method} ${path} -> ${r.statusCode} ${text}`);
    return JSON.parse(text);
  };
  try {
    // 50 tenants, each a domain with a /16 subnet, 3 groups; 20 hosts
    const subnets: string[] = [];
    const groups: string[][] = [];
    for (let i = 0; i < 50; i++) {
      const e = await call('POST', '/api/v1/enterprises', { name: `bench-${i}` });
      const d = await call('POST', `/api/v1/enterprises/${e.id}/domains`, { name: 'd' });
      const z = await call('POST', `/api/v1/domains/${d.id}/zones`, { name: 'z' });
      const s = await call('POST', `/api/v1/zones/${z.id}/subnets`, { name: 's', cidr: '10.0.0.0/16' });
      subnets.push(s.id);
      const g = [];
      for (const n of ['web', 'app', 'db']) g.push((await call('POST', `/api/v1/domains/${d.id}/policy-groups`, { name: n })).id);
      groups.push(g);
    }
    const hosts: string[] = [];
    for (let i = 0; i < 20; i++) hosts.push((await call('POST', '/api/v1/hosts', { name: `h${i}`, vtepIp: `192.0.2.${i + 1}` })).id);

    const run = async (count: number, offset: number) => {
      const latencies: number[] = [];
      let next = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: CLIENTS }, async () => {
          for (;;) {
            const i = next++;
            if (i >= count) return;
            const n = i + offset;
            const s = n % subnets.length;
            const start = performance.now();
            await call('POST', `/api/v1/subnets/${subnets[s]}/endpoints`, {
              name: `ep-${n}`,
              externalId: `ext-${n}`,
              hostId: hosts[n % hosts.length],
              policyGroupIds: [groups[s][n % 3]],
            });
            latencies.push(performance.now() - start);
          }
        }),
      );
      return { seconds: (performance.now() - t0) / 1000, latencies: latencies.sort((a, b) => a - b) };
    };
    await run(WARMUP, 0);
    const cpu0 = treeCpu(child.pid!);
    const r = await run(TOTAL, WARMUP);
    const cpu1 = treeCpu(child.pid!);
    const perCreation = (k: 'postgres' | 'other') => ((cpu1[k] - cpu0[k]) * 1e6) / TOTAL;
    const rate = TOTAL / r.seconds;
    const p50 = percentile(r.latencies, 50);
    const p99 = percentile(r.latencies, 99);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const batchSum = Number(/sdn_directory_write_batch_items_sum (\S+)/.exec(metrics)?.[1] ?? 0);
    const batchCount = Number(/sdn_directory_write_batch_items_count (\S+)/.exec(metrics)?.[1] ?? 1);
    console.log('directory endpoint creation benchmark (REST, embedded Postgres)');
    console.log(`  clients                 ${CLIENTS}`);
    console.log(`  endpoints created       ${TOTAL} (after ${WARMUP} warm-up)`);
    console.log(`  wall time               ${r.seconds.toFixed(2)} s`);
    console.log(`  creations per second    ${rate.toFixed(0)}   (target 3000: ratio ${(rate / 3000).toFixed(2)})`);
    console.log(`  latency p50             ${p50.toFixed(1)} ms`);
    console.log(`  latency p99             ${p99.toFixed(1)} ms   (target < 50 ms: ratio ${(p99 / 50).toFixed(2)})`);
    console.log(`  mean writer batch       ${(batchSum / batchCount).toFixed(1)} items per commit`);
    console.log(`  CPU per creation        directory ${perCreation('other').toFixed(0)} µs, Postgres ${perCreation('postgres').toFixed(0)} µs`);
    console.log(`  CPU bound (2 cores)     ${(2e6 / (perCreation('other') + perCreation('postgres'))).toFixed(0)} creations/s if nothing else ran`);
  } finally {
    await dispatcher.close();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
