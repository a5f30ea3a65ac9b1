/**
 * Makes connections to Postgres go silent through the real kernel: an
 * nftables rule drops every packet of the given sessions' TCP connections,
 * both ways, as when the server's address disappears (a failover whose old
 * primary is gone, a partition). Nothing is closed or reset: the client's
 * statements and keepalives go unanswered. New connections are not affected.
 * Needs root and nft (the agent's tests need them too).
 */
import { execFileSync } from 'node:child_process';
import { sql } from './directory';

export interface Blackhole {
  /** the client ports of the sessions made silent */
  ports: number[];
  /** deletes the rule */
  heal(): void;
}

let made = 0;

/** Silences the current sessions to the server of `url` whose application name is one of `apps`. */
export async function blackhole(url: string, apps: string[]): Promise<Blackhole> {
  const pgPort = Number(new URL(url).port || 5432);
  const rows = await sql<{ port: number }>(url, 'SELECT client_port AS port FROM pg_stat_activity WHERE application_name = ANY($1) AND client_port > 0', [apps]);
  const ports = rows.map((r) => r.port);
  if (ports.length === 0) throw new Error(`no TCP session of ${apps.join(', ')} to silence`);
  sweepDead();
  const table = `sdn_test_blackhole_${process.pid}_${++made}`;
  const set = `{ ${ports.join(', ')} }`;
  const nft = (script: string) => execFileSync('nft', ['-f', '-'], { input: script });
  nft(`table inet ${table} {
    chain out {
      type filter hook output priority 0; policy accept;
      tcp dport ${pgPort} tcp sport ${set} drop
      tcp sport ${pgPort} tcp dport ${set} drop
    }
  }`);
  let healed = false;
  const heal = () => {
    if (healed) return;
    healed = true;
    process.off('exit', heal);
    nft(`delete table inet ${table}`);
  };
  // a test that dies before healing must not leave a rule behind that drops whatever reuses those ports
  process.once('exit', heal);
  return { ports, heal };
}

/** Deletes the rules of test processes that died (killed) before healing theirs. */
function sweepDead(): void {
  const tables = execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' });
  for (const m of tables.matchAll(/^table inet (sdn_test_blackhole_(\d+)_\d+)$/gm)) {
    try {
      process.kill(Number(m[2]), 0);
    } catch {
      execFileSync('nft', ['delete', 'table', 'inet', m[1]]);
    }
  }
}

/** the client ports of the server's sessions of application `app` */
export async function sessionPorts(url: string, app: string): Promise<number[]> {
  return (await sql<{ port: number }>(url, 'SELECT client_port AS port FROM pg_stat_activity WHERE application_name = $1 AND client_port > 0', [app])).map((r) => r.port);
}

/** `url` over TCP to 127.0.0.1 (the embedded server's URL names its Unix socket, whose sessions nftables cannot drop) */
export function overTcp(url: string): string {
  const u = new URL(url);
  if (!u.searchParams.has('host')) return url;
  u.searchParams.delete('host');
  u.hostname = '127.0.0.1';
  return u.toString();
}
