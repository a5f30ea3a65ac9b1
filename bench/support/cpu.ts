/**
 * CPU accounting for the benchmarks, from /proc. Wall-clock rates on a shared
 * 2-core VM swing with whatever else runs; CPU per operation does not, so it
 * is the figure to compare between changes.
 */
import { readdirSync, readFileSync } from 'node:fs';

const USER_HZ = 100;

/** One process's /proc/PID/stat: parent, command, CPU seconds and minor page faults so far. */
function procStat(pid: string): { ppid: number; comm: string; cpu: number; faults: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const close = stat.lastIndexOf(')'); // the command may contain spaces and parentheses
  const f = stat.slice(close + 2).split(' ');
  return { ppid: Number(f[1]), comm: stat.slice(stat.indexOf('(') + 1, close), cpu: (Number(f[11]) + Number(f[12])) / USER_HZ, faults: Number(f[7]) };
}

/** Minor page faults of this process so far. */
export function ownFaults(): number {
  return procStat('self').faults;
}

/** A process and its descendants, each with its /proc/PID/stat figures (processes gone while reading are left out). */
function tree(root: number): Array<{ pid: number; comm: string; cpu: number; faults: number }> {
  const procs = new Map<number, { ppid: number; comm: string; cpu: number; faults: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      procs.set(Number(name), procStat(name));
    } catch {
      /* gone */
    }
  }
  const out: Array<{ pid: number; comm: string; cpu: number; faults: number }> = [];
  for (const [pid, p] of procs) {
    let q = pid;
    for (let n = 0; q > 1 && q !== root && n < 64; n++) q = procs.get(q)?.ppid ?? 0;
    if (q === root) out.push({ pid, comm: p.comm, cpu: p.cpu, faults: p.faults });
  }
  return out;
}

/**
 * CPU seconds (user + system) used so far by a process and its descendants,
 * Postgres apart; and their minor page faults (first touches of memory: on
 * this kind of VM each costs tens of microseconds of kernel time).
 */
export function treeCpu(root: number): { postgres: number; other: number; faults: { postgres: number; other: number } } {
  const out = { postgres: 0, other: 0, faults: { postgres: 0, other: 0 } };
  for (const p of tree(root)) {
    const k = p.comm.startsWith('postgres') ? 'postgres' : 'other';
    out[k] += p.cpu;
    out.faults[k] += p.faults;
  }
  return out;
}

/** Whole machine: CPU seconds in user and kernel mode, idle, context switches (/proc/stat) and page faults (/proc/vmstat) so far. */
export function machineCpu(): { user: number; system: number; idle: number; switches: number; faults: number } {
  const stat = readFileSync('/proc/stat', 'utf8');
  const f = stat.split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return {
    user: (f[0] + f[1]) / USER_HZ,
    system: (f[2] + f[5] + f[6]) / USER_HZ,
    idle: (f[3] + f[4]) / USER_HZ,
    switches: Number(/\nctxt (\d+)/.exec(stat)?.[1] ?? 0),
    faults: Number(/^pgfault (\d+)$/m.exec(readFileSync('/proc/vmstat', 'utf8'))?.[1] ?? 0),
  };
}

/**
 * A fixed CPU-bound job (hashing, map and string work), timed: this VM's speed
 * moves by ±20% between runs (other guests on the same cores), and this figure
 * says how fast the machine was when a benchmark ran. Lower is faster.
 */
export function calibrate(): number {
  const t = performance.now();
  const m = new Map<string, number>();
  let h = 0;
  for (let i = 0; i < 400_000; i++) {
    const k = `key-${i % 50_000}-${(i * 2654435761) >>> 0}`;
    for (let j = 0; j < k.length; j++) h = Math.imul(h ^ k.charCodeAt(j), 16777619);
    m.set(k.slice(0, 12), h);
  }
  if (m.size === 0) throw new Error('unreachable');
  return performance.now() - t;
}

/** CPU seconds so far of every Postgres process under `root`, by pid. */
export function postgresProcs(root: number): Map<number, { cpu: number }> {
  return new Map(tree(root).filter((p) => p.comm.startsWith('postgres')).map((p) => [p.pid, { cpu: p.cpu }]));
}
