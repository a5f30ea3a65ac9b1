/**
 * npm run bench:scale — the benchmark that defines the controller's success.
 *
 * 500 isolated networks (one enterprise/domain/subnet each, policy groups
 * web/app/db and a 7-rule policy that references them), 200 simulated hosts,
 * 100,000 endpoints created through the REST API by 64 concurrent clients and
 * spread over the hosts; prints the time until every host acknowledged the
 * final state, activations per second, p50/p99 activation latency (directory
 * commit -> last acknowledgement), controller peak memory, bytes sent to
 * agents, and the per-activation bytes at 10K and at 100K endpoints.
 *
 * Processes: the directory (with its embedded Postgres), the simulated agents
 * and the load generator (64 HTTP clients) run in child processes; this
 * process is the controller and nothing else, so its peak RSS is the
 * controller's.
 *
 * Topology, placement and the SCALE_* sizes: support/scale-topology.ts (each
 * network's endpoints spread round-robin over SCALE_HOSTS_PER_NETWORK hosts,
 * the networks round-robin over all hosts).
 */
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { Client } from 'pg';
import { loadConfig } from '../apps/controller/src/config';
import { startController } from '../apps/controller/src/controller';
import { createLogger } from '../apps/controller/src/log';
import { freePort } from '../test/support/directory';
import { calibrate, machineCpu, ownFaults, postgresProcs, treeCpu } from './support/cpu';
import { scaleSize } from './support/scale-topology';

const SIZE = scaleSize();
const { networks: NETWORKS, hosts: HOSTS, endpoints: ENDPOINTS, clients: CLIENTS, perNetwork: PER_NETWORK, agentProcesses: AGENT_PROCESSES } = SIZE;
const KEY = 'bench-operator-key-0123456789abcdef';

const TARGET_SECONDS = 30;
const TARGET_P99_MS = 1000;
const TARGET_RSS = 1.5 * 1024 ** 3;
const OVN_SECONDS_100K = 1288;
const VENDOR_SECONDS = 600;

/**
 * Postgres's WAL so far: flushes (fsyncs, any process) and writes from
 * pg_stat_io (WAL rows from Postgres 18), bytes and full-page images from
 * pg_stat_wal, checkpoints. On this VM each synchronous commit's flush costs
 * the whole machine far more than its disk time, so the count is worth
 * watching; a checkpoint during the run would add full-page images. Null when
 * the server cannot say. Postgres publishes backend statistics about once a
 * second, so the figures lag by up to that much.
 */
async function walStats(databaseUrl: string): Promise<{ fsyncs: number; writes: number; bytes: number; fpi: number; checkpoints: number } | null> {
  try {
    return await withClient(databaseUrl, async (c) => {
      const r = await c.query(
        `SELECT (SELECT sum(fsyncs) FROM pg_stat_io WHERE object = 'wal') AS fsyncs, (SELECT sum(writes) FROM pg_stat_io WHERE object = 'wal') AS writes,
                (SELECT wal_bytes FROM pg_stat_wal) AS bytes, (SELECT wal_fpi FROM pg_stat_wal) AS fpi,
                (SELECT num_timed + num_requested FROM pg_stat_checkpointer) AS checkpoints`,
      );
      const w = r.rows[0];
      return w.fsyncs === null ? null : { fsyncs: Number(w.fsyncs), writes: Number(w.writes), bytes: Number(w.bytes), fpi: Number(w.fpi), checkpoints: Number(w.checkpoints) };
    });
  } catch {
    return null;
  }
}

/** Runs `fn` on a connection of its own, closed afterwards. */
async function withClient<T>(databaseUrl: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: databaseUrl });
  try {
    await c.connect();
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

type Metrics = (series: string) => number | undefined;

/** The directory's /metrics so far: one series' value by its exact name and labels (undefined: not there yet); null when unreachable. */
async function directoryMetrics(url: string): Promise<Metrics | null> {
  try {
    const text = await (await fetch(`${url}/metrics`)).text();
    const values = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const sp = line.lastIndexOf(' ');
      values.set(line.slice(0, sp), Number(line.slice(sp + 1)));
    }
    return (series) => values.get(series);
  } catch {
    return null;
  }
}

/**
 * Where an API request's time goes: the server-side time of endpoint
 * creations, the writer's queue wait and its transactions (each a sum of
 * seconds and a count; a series not there yet counts as zero).
 */
function requestTimes(m: Metrics): { server: [number, number]; wait: [number, number]; batch: [number, number] } {
  const pair = (name: string, labels = ''): [number, number] => [m(`${name}_sum${labels}`) ?? 0, m(`${name}_count${labels}`) ?? 0];
  return {
    server: pair('sdn_directory_http_request_duration_seconds', '{method="POST",route="/api/v1/subnets/:parentId/endpoints"}'),
    wait: pair('sdn_directory_write_queue_seconds'),
    batch: pair('sdn_directory_write_batch_seconds'),
  };
}

/** the directory's writer batches (batches that wrote a change; one-statement ones committed and retried), null when not reported */
function writerBatches(m: Metrics): { all: number; committed: number; retried: number } | null {
  const all = m('sdn_directory_write_batch_items_count');
  const committed = m('sdn_directory_write_one_statement_batches_total{outcome="committed"}');
  const retried = m('sdn_directory_write_one_statement_batches_total{outcome="retried"}');
  return all === undefined || committed === undefined || retried === undefined ? null : { all, committed, retried };
}

/**
 * SCALE_PG_STATEMENTS=1: the embedded Postgres loads pg_stat_statements (it
 * costs a little), and the run ends with the statements that took the most
 * Postgres time during the run.
 */
const PG_STATEMENTS = process.env.SCALE_PG_STATEMENTS === '1';
async function pgStatements(databaseUrl: string, phase: 'reset' | 'print'): Promise<void> {
  await withClient(databaseUrl, async (c) => {
    if (phase === 'reset') {
      await c.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      await c.query('SELECT pg_stat_statements_reset()');
      return;
    }
    const r = await c.query(
      `SELECT calls, total_exec_time AS ms, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS q
         FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12`,
    );
    console.log('\nPostgres statements by execution time during the run (pg_stat_statements):');
    for (const row of r.rows) {
      console.log(`  ${(Number(row.ms) / 1000).toFixed(2).padStart(7)} s ${String(row.calls).padStart(8)} calls ${String(row.rows).padStart(8)} rows  ${row.q}`);
    }
  });
}

/**
 * Postgres's CPU during the run by process, named by pg_stat_activity
 * (application name, else backend type), largest first: which connection or
 * background process spends it.
 */
async function postgresRoles(
  databaseUrl: string,
  before: Map<number, { cpu: number }>,
  after: Map<number, { cpu: number }>,
): Promise<string> {
  const names = new Map<number, string>();
  try {
    await withClient(databaseUrl, async (c) => {
      const r = await c.query(`SELECT pid, coalesce(nullif(application_name, ''), backend_type) AS who FROM pg_stat_activity`);
      for (const row of r.rows) names.set(Number(row.pid), String(row.who));
    });
  } catch {
    /* unnamed */
  }
  const used = [...after].map(([pid, a]) => ({ who: names.get(pid) ?? 'postmaster or exited', cpu: a.cpu - (before.get(pid)?.cpu ?? 0) }));
  return used
    .filter((u) => u.cpu >= 0.05)
    .sort((a, b) => b.cpu - a.cpu)
    .slice(0, 8)
    .map((u) => `${u.who} ${u.cpu.toFixed(1)}`)
    .join(', ');
}

/**
 * SCALE_PROFILE=dir: the controller's CPU profile of the run alone (from the
 * first API request until every host acked), written to dir as a
 * .cpuprofile (Chrome DevTools, or any cpuprofile reader). Setup and the
 * restart afterwards are left out; profiling costs a little.
 */
const PROFILE_DIR = process.env.SCALE_PROFILE || null;
async function startProfile(): Promise<Session> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 1000 });
  await session.post('Profiler.start');
  return session;
}
async function stopProfile(session: Session, file: string): Promise<void> {
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(file, JSON.stringify(profile));
  session.disconnect();
  console.log(`controller CPU profile of the run: ${file}`);
}

const peakRss = () => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
};
const mib = (b: number) => `${(b / 1024 ** 2).toFixed(0)} MiB`;
const pct = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), 'sdn-scale-'));
  const pgPort = await freePort();
  const directory = fork(join(__dirname, 'support', 'directory-process.js'), [], {
    env: { ...process.env, SDN_DATA_DIR: dataDir, PORT: '0', SDN_OPERATOR_KEY: KEY, LOG_LEVEL: 'error', SDN_EMBEDDED_PG_PORT: String(pgPort), ...(PG_STATEMENTS ? { SDN_EMBEDDED_PG_SETTINGS: [process.env.SDN_EMBEDDED_PG_SETTINGS, 'shared_preload_libraries=pg_stat_statements'].filter(Boolean).join(',') } : {}) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const agentProcs = Array.from({ length: AGENT_PROCESSES }, () =>
    fork(join(__dirname, 'support', 'controller-agents.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  );
  let controller: Awaited<ReturnType<typeof startController>> | null = null;
  const children = [...agentProcs];
  try {
    // the controller reaches Postgres the way the directory does (its Unix socket when embedded)
    const { url, databaseUrl }: { url: string; databaseUrl: string } = await new Promise((resolve, reject) => {
      directory.once('message', (m: any) => resolve(m));
      directory.once('exit', (code) => reject(new Error(`directory exited with ${code}`)));
    });
    const load = fork(join(__dirname, 'support', 'controller-load.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(load);
    const ask = <T>(msg: object, type: string) =>
      new Promise<T>((resolve, reject) => {
        const on = (m: any) => {
          if (m.type !== type) return;
          load.off('message', on);
          resolve(m);
        };
        load.on('message', on);
        load.once('exit', (code) => reject(new Error(`load generator exited with ${code}`)));
        load.send(msg);
      });

    const agentsNow = () =>
      agentProcs.map((proc) => treeCpu(proc.pid!)).reduce((n, t) => ({ cpu: n.cpu + t.other, faults: n.faults + t.faults.other }), { cpu: 0, faults: 0 });

    const calibration = [calibrate(), calibrate(), calibrate()].sort((a, b) => a - b)[1];
    // ---------------------------------------------------------------- topology
    const t0 = performance.now();
    const params = { url, key: KEY, ...SIZE };
    const { hosts } = await ask<{ hosts: { id: string; credential: string; vtepIp: string }[] }>({ type: 'setup', params }, 'setup');
    const setupSeconds = (performance.now() - t0) / 1000;

    // --------------------------------------------------- controller and agents
    const latencies = new Float64Array(ENDPOINTS);
    let activated = 0;
    const appliedLag = new Float64Array(ENDPOINTS);
    let applied = 0;
    controller = await startController(
      { ...loadConfig(process.env), databaseUrl, host: '127.0.0.1', port: 0, logLevel: 'warn' },
      {
        logger: createLogger('warn'),
        onApplied: (ms) => {
          if (applied < ENDPOINTS) appliedLag[applied] = ms;
          applied++;
        },
        onActivation: (_id, ms) => {
          if (activated < ENDPOINTS) latencies[activated] = ms;
          activated++;
        },
      },
    );
    const ctl = controller.controller;
    // the simulated hosts, split over AGENT_PROCESSES processes (as if on separate machines)
    await Promise.all(
      agentProcs.map((proc, k) => {
        proc.send({ type: 'start', url: controller!.agentUrl, hosts: hosts.filter((_, i) => i % AGENT_PROCESSES === k) });
        return new Promise<void>((resolve) => proc.on('message', (m: any) => m.type === 'ready' && resolve()));
      }),
    );
    const bytesBefore = ctl.stats.bytesSent;

    // ------------------------------------------------------------ the run
    const marks: { activated: number; bytes: number }[] = [];
    const sampler = setInterval(() => marks.push({ activated, bytes: ctl.stats.bytesSent - bytesBefore }), 25);
    if (PG_STATEMENTS) await pgStatements(databaseUrl, 'reset');
    const wal0 = await walStats(databaseUrl);
    const pg0 = postgresProcs(directory.pid!);
    const metrics0 = await directoryMetrics(url);
    const times0 = metrics0 && requestTimes(metrics0);
    const cpu0 = { machine: machineCpu(), self: process.cpuUsage(), selfFaults: ownFaults(), dir: treeCpu(directory.pid!), agents: agentsNow(), load: treeCpu(load.pid!) };
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const gcPauses: number[] = [];
    const gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) gcPauses.push(e.duration);
    });
    gcObserver.observe({ entryTypes: ['gc'] });
    const profiler = PROFILE_DIR ? await startProfile() : null;
    const start = performance.now();
    const { apiSeconds } = await ask<{ apiSeconds: number }>({ type: 'run' }, 'run');
    const allAcked = () =>
      activated >= ENDPOINTS && [...ctl.streams.values()].every((s) => !s.session?.isOpen || (!s.inflight && s.pending.size === 0 && s.pendingValid));
    while (!allAcked()) await new Promise((r) => setTimeout(r, 5));
    const totalSeconds = (performance.now() - start) / 1000;
    if (profiler) await stopProfile(profiler, join(PROFILE_DIR!, `controller-${process.pid}.cpuprofile`));
    clearInterval(sampler);
    loopDelay.disable();
    gcObserver.disconnect();
    marks.push({ activated, bytes: ctl.stats.bytesSent - bytesBefore });
    const cpu1 = { machine: machineCpu(), self: process.cpuUsage(cpu0.self), selfFaults: ownFaults(), dir: treeCpu(directory.pid!), agents: agentsNow(), load: treeCpu(load.pid!) };
    const pgByRole = await postgresRoles(databaseUrl, pg0, postgresProcs(directory.pid!));
    // after Postgres has published the run's statistics
    await new Promise((r) => setTimeout(r, 1200));
    const wal1 = await walStats(databaseUrl);
    const metrics1 = await directoryMetrics(url);
    const batches = metrics1 && writerBatches(metrics1);
    const times1 = metrics1 && requestTimes(metrics1);
    if (PG_STATEMENTS) await pgStatements(databaseUrl, 'print');

    // ------------------------------------------------------- correctness check
    const agentReport = async () => {
      const reports: any[] = await Promise.all(
        agentProcs.map(
          (proc) =>
            new Promise((resolve) => {
              const on = (m: any) => {
                if (m.type !== 'report') return;
                proc.off('message', on);
                resolve(m);
              };
              proc.on('message', on);
              proc.send({ type: 'report' });
            }),
        ),
      );
      return {
        digests: Object.assign({}, ...reports.map((r) => r.digests)),
        entries: reports.reduce((n, r) => n + r.entries, 0),
        snapshots: reports.reduce((n, r) => n + r.snapshots, 0),
        deltas: reports.reduce((n, r) => n + r.deltas, 0),
        nacks: reports.reduce((n, r) => n + r.nacks, 0),
        rss: Math.max(...reports.map((r) => r.rss)),
      };
    };
    const report = await agentReport();
    let mismatched = 0;
    for (const h of hosts) if (report.digests[h.id]?.digest !== ctl.engine.digestOf(h.id)) mismatched++;
    const rss = peakRss();

    // ------------------------------------------ controller restart at full size
    // a new controller on the same port: loads the model, the agents reconnect and resume (no snapshot expected)
    const port = controller.port;
    await controller.close();
    controller = null;
    const r0 = performance.now();
    controller = await startController({ ...loadConfig(process.env), databaseUrl, host: '127.0.0.1', port, logLevel: 'warn' }, { logger: createLogger('warn') });
    const loadSeconds = (performance.now() - r0) / 1000;
    const ctl2 = controller.controller;
    const resumed = () => [...ctl2.streams.values()].every((s) => s.session?.isOpen && !s.inflight && s.pending.size === 0 && s.pendingValid && !s.resuming);
    while (!resumed()) await new Promise((r) => setTimeout(r, 5));
    const restartSeconds = (performance.now() - r0) / 1000;
    const after = await agentReport();
    let mismatchedAfter = 0;
    for (const h of hosts) if (after.digests[h.id]?.digest !== ctl2.engine.digestOf(h.id)) mismatchedAfter++;

    // ---------------------------------------------------------------- figures
    const sorted = latencies.slice(0, Math.min(activated, ENDPOINTS)).sort();
    const p50 = pct(sorted, 50);
    const p99 = pct(sorted, 99);
    const bytes = ctl.stats.bytesSent - bytesBefore;
    const at = (n: number) => marks.find((m) => m.activated >= n) ?? marks[marks.length - 1];
    const tenK = Math.min(10_000, ENDPOINTS);
    const first = at(tenK);
    const perActFirst = first.bytes / Math.max(1, first.activated);
    const lastFrom = at(ENDPOINTS - tenK);
    const lastTo = marks[marks.length - 1];
    const perActLast = (lastTo.bytes - lastFrom.bytes) / Math.max(1, lastTo.activated - lastFrom.activated);
    const ctlCpu = (cpu1.self.user + cpu1.self.system) / 1e6;
    const dirCpu = cpu1.dir.other - cpu0.dir.other;
    const pgCpu = cpu1.dir.postgres - cpu0.dir.postgres;
    const agentCpu = cpu1.agents.cpu - cpu0.agents.cpu;
    const loadCpu = cpu1.load.other - cpu0.load.other;
    const line = (k: string, v: string) => console.log(`${k.padEnd(44)} ${v}`);
    console.log(`\nscale benchmark: ${NETWORKS} networks, ${HOSTS} hosts, ${ENDPOINTS} endpoints, ${CLIENTS} clients, ${PER_NETWORK} hosts per network`);
    line('machine speed: fixed CPU job (lower = faster)', `${calibration.toFixed(0)} ms before the run`);
    line('setup (tenants, policy, hosts)', `${setupSeconds.toFixed(1)} s`);
    line('endpoint creation through the API', `${apiSeconds.toFixed(1)} s (${(ENDPOINTS / apiSeconds).toFixed(0)} creations/s)`);
    line('total until every host acked the final state', `${totalSeconds.toFixed(1)} s   target ${TARGET_SECONDS} s: ${(TARGET_SECONDS / totalSeconds).toFixed(2)}x`);
    line('  after the last API response', `${((totalSeconds - apiSeconds) * 1000).toFixed(0)} ms`);
    line('activations per second', `${(activated / totalSeconds).toFixed(0)}`);
    line('activation latency p50 / p99', `${p50.toFixed(0)} ms / ${p99.toFixed(0)} ms   p99 target ${TARGET_P99_MS} ms: ${(TARGET_P99_MS / p99).toFixed(2)}x`);
    const lagSorted = appliedLag.slice(0, Math.min(applied, ENDPOINTS)).sort();
    line('  of which commit -> applied by controller', `p50 ${pct(lagSorted, 50).toFixed(0)} ms / p99 ${pct(lagSorted, 99).toFixed(0)} ms`);
    // the first activations meet a cold controller (every host joining its networks, code not yet optimized);
    // the controller's part is split the same way (changes in the order it applied them)
    const firstAndRest = (values: Float64Array, count: number) => {
      const q = (xs: Float64Array) => `${pct(xs, 50).toFixed(0)}, ${pct(xs, 99).toFixed(0)} ms`;
      return `${q(values.slice(0, Math.min(count, tenK)).sort())} / ${q(values.slice(tenK, Math.min(count, ENDPOINTS)).sort())}`;
    };
    if (Math.min(activated, ENDPOINTS) > tenK) {
      line(`  first ${tenK} / the rest: p50, p99`, firstAndRest(latencies, activated));
      line('    commit -> applied, first / the rest', firstAndRest(appliedLag, applied));
    }
    line('activation latency max', `${sorted[sorted.length - 1].toFixed(0)} ms`);
    line('controller event-loop delay p99 / max', `${(loopDelay.percentile(99) / 1e6).toFixed(0)} ms / ${(loopDelay.max / 1e6).toFixed(0)} ms; GC pauses: ${gcPauses.length}, total ${(gcPauses.reduce((a, b) => a + b, 0) / 1000).toFixed(1)} s, longest ${Math.max(0, ...gcPauses).toFixed(0)} ms`);
    line('controller peak RSS', `${mib(rss)}   target ${mib(TARGET_RSS)}: ${(TARGET_RSS / rss).toFixed(2)}x`);
    line('bytes sent to agents', `${(bytes / 1024 ** 2).toFixed(1)} MiB in ${ctl.stats.deltasSent} deltas, ${ctl.stats.snapshotsSent} snapshots`);
    line(`bytes per activation, first ${tenK}`, `${perActFirst.toFixed(0)} B`);
    line(`bytes per activation, last ${tenK} (at ${ENDPOINTS})`, `${perActLast.toFixed(0)} B   ratio ${(perActLast / perActFirst).toFixed(2)}`);
    line('entries held by the agents', `${report.entries} (${AGENT_PROCESSES} agent processes, largest ${mib(report.rss)})`);
    line('agents whose digest != controller', `${mismatched}; nacks ${report.nacks}`);
    line('CPU s: controller / directory / postgres / agents / clients', `${ctlCpu.toFixed(1)} / ${dirCpu.toFixed(1)} / ${pgCpu.toFixed(1)} / ${agentCpu.toFixed(1)} / ${loadCpu.toFixed(1)}`);
    const m0 = cpu0.machine;
    const m1 = cpu1.machine;
    line('machine: user / kernel / idle CPU s', `${(m1.user - m0.user).toFixed(1)} / ${(m1.system - m0.system).toFixed(1)} / ${(m1.idle - m0.idle).toFixed(1)}; ${((m1.switches - m0.switches) / totalSeconds / 1000).toFixed(0)}K context switches/s`);
    const kf = (n: number) => `${(n / 1000).toFixed(0)}K`;
    line(
      'page faults: controller / directory / postgres / agents',
      `${kf(cpu1.selfFaults - cpu0.selfFaults)} / ${kf(cpu1.dir.faults.other - cpu0.dir.faults.other)} / ${kf(cpu1.dir.faults.postgres - cpu0.dir.faults.postgres)} / ${kf(cpu1.agents.faults - cpu0.agents.faults)}; machine ${kf(m1.faults - m0.faults)} (${((m1.faults - m0.faults) / totalSeconds / 1000).toFixed(1)}K/s)`,
    );
    line('postgres CPU s by process', pgByRole);
    if (times0 && times1) {
      const mean = (k: 'server' | 'wait' | 'batch') => (1000 * (times1[k][0] - times0[k][0])) / Math.max(1, times1[k][1] - times0[k][1]);
      line(
        'API request, mean ms: round trip / in directory',
        `${((1000 * CLIENTS * apiSeconds) / ENDPOINTS).toFixed(1)} / ${mean('server').toFixed(1)} (writer queue ${mean('wait').toFixed(1)}, writer transaction ${mean('batch').toFixed(1)})`,
      );
    }
    line(
      'Postgres WAL flushes (fsyncs) / writes',
      wal0 && wal1 ? `${wal1.fsyncs - wal0.fsyncs} / ${wal1.writes - wal0.writes} (${((wal1.fsyncs - wal0.fsyncs) / totalSeconds).toFixed(0)} flushes/s)` : 'not reported by this server',
    );
    if (wal0 && wal1) {
      line('Postgres WAL written / full-page images / checkpoints', `${mib(wal1.bytes - wal0.bytes)} / ${wal1.fpi - wal0.fpi} / ${wal1.checkpoints - wal0.checkpoints}`);
    }
    line(
      'directory writer batches: all / one statement / retried',
      batches ? `${batches.all} / ${batches.committed} / ${batches.retried} (${(ENDPOINTS / Math.max(1, batches.all)).toFixed(1)} endpoints per batch)` : 'not reported',
    );
    line('controller restart: model loaded / agents resumed', `${loadSeconds.toFixed(1)} s / ${restartSeconds.toFixed(1)} s; snapshots sent ${after.snapshots - report.snapshots}, deltas ${after.deltas - report.deltas}, digests != ${mismatchedAfter}`);
    line('vs OVN ovn-nbctl on this machine (1,288 s)', `${(OVN_SECONDS_100K / totalSeconds).toFixed(0)}x faster${ENDPOINTS === 100_000 ? '' : ' (not the same size)'}`);
    line('vs vendor demonstration (< 600 s)', `${(VENDOR_SECONDS / totalSeconds).toFixed(0)}x faster${ENDPOINTS === 100_000 ? '' : ' (not the same size)'}`);
    if (mismatched > 0 || mismatchedAfter > 0 || activated < ENDPOINTS) process.exitCode = 1;
  } finally {
    for (const proc of agentProcs) proc.send({ type: 'stop' });
    await controller?.close();
    directory.kill('SIGTERM');
    await new Promise((r) => directory.once('exit', r));
    for (const ch of children) ch.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
