/**
 * A small runnable speaker: `npm run bgp -- --config speaker.json`.
 * Logs peer state changes and best-path changes as JSON lines on stdout;
 * SIGINT/SIGTERM stop it with a Cease NOTIFICATION, SIGUSR2 prints status.
 *
 * Config (JSON):
 * {
 *   "asn": 65001, "routerId": "10.0.0.1",
 *   "listen": { "address": "0.0.0.0", "port": 179 },          // or false
 *   "holdTime": 90,
 *   "gracefulRestart": { "enabled": true, "restartTime": 120 },
 *   "neighbors": [ { "address": "192.0.2.2", "asn": 65002, "port": 179, "passive": false } ],
 *   "routes": [
 *     { "family": "ipv4-unicast", "prefix": "10.1.0.0/16", "nextHop": "192.0.2.1",
 *       "attributes": { "communities": ["65001:10"], "largeCommunities": ["65001:1:2"] } },
 *     { "family": "l2vpn-evpn", "nextHop": "192.0.2.1",
 *       "route": { "routeType": 3, "rd": "10.0.0.1:100", "ethernetTag": 0, "originatorIp": "192.0.2.1" },
 *       "attributes": { "extendedCommunities": [ { "kind": "route-target", "value": "65001:100" },
 *                                                { "kind": "encapsulation", "tunnelType": 8 } ],
 *                       "pmsiTunnel": { "flags": 0, "tunnelType": 6, "label": 10100, "tunnelId": "192.0.2.1" } } }
 *   ]
 * }
 */
import { readFileSync } from 'node:fs';
import { BgpSpeaker, parseCommunity, type LocalRoute, type NeighborConfig, type SpeakerConfig } from './index.js';

interface CliConfig extends Omit<SpeakerConfig, 'logger'> {
  neighbors?: NeighborConfig[];
  routes?: (LocalRoute & { attributes?: { communities?: (number | string)[]; largeCommunities?: (string | { global: number; local1: number; local2: number })[] } })[];
}

function fail(msg: string): never {
  console.error(`bgp: ${msg}`);
  process.exit(2);
}

function parseArgs(argv: string[]): { config: string } {
  const i = argv.indexOf('--config');
  if (i < 0 || !argv[i + 1]) fail('usage: npm run bgp -- --config <file.json>');
  return { config: argv[i + 1] };
}

function loadConfig(path: string): CliConfig {
  let c: CliConfig;
  try {
    c = JSON.parse(readFileSync(path, 'utf8')) as CliConfig;
  } catch (e) {
    fail(`cannot read ${path}: ${(e as Error).message}`);
  }
  if (!Number.isInteger(c.asn) || c.asn < 1 || c.asn > 0xffffffff) fail(`asn must be 1..4294967295, got ${String(c.asn)}`);
  if (typeof c.routerId !== 'string') fail('routerId (an IPv4 address) is required');
  for (const n of c.neighbors ?? []) {
    if (typeof n.address !== 'string' || !Number.isInteger(n.asn)) fail(`neighbor needs address and asn: ${JSON.stringify(n)}`);
  }
  return c;
}

/** Accepts communities as `65001:10` and large communities as `65001:1:2` in the file. */
function toRoute(r: NonNullable<CliConfig['routes']>[number]): LocalRoute {
  const a: Record<string, unknown> | undefined = r.attributes ? { ...r.attributes } : undefined;
  const communities = a?.communities as (number | string)[] | undefined;
  if (a && communities) a.communities = communities.map(parseCommunity);
  const large = a?.largeCommunities as (string | { global: number; local1: number; local2: number })[] | undefined;
  if (a && large) {
    a.largeCommunities = large.map((l) => {
      if (typeof l !== 'string') return l;
      const [g, x, y] = l.split(':').map(Number);
      return { global: g, local1: x, local2: y };
    });
  }
  return { ...r, attributes: a } as LocalRoute;
}

async function main(): Promise<void> {
  const { config } = parseArgs(process.argv.slice(2));
  const c = loadConfig(config);
  process.stdout.on('error', () => process.exit(0)); // reader went away (e.g. | head)
  const out = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...o }) + '\n');
  const speaker = new BgpSpeaker({ ...c, logger: (e) => out(e) });
  speaker.peerStateChanges$.subscribe((s) => out({ event: 'peer-state', ...s }));
  speaker.bestPathChanges$.subscribe((b) => out({ event: 'best-path', family: b.family, key: b.key, route: b.route ?? null }));
  for (const n of c.neighbors ?? []) speaker.addNeighbor(n);
  try {
    await speaker.start();
  } catch (e) {
    fail(`cannot start: ${(e as Error).message}`);
  }
  for (const r of c.routes ?? []) speaker.addRoute(toRoute(r));
  out({ event: 'started', asn: c.asn, routerId: c.routerId, listen: c.listen ?? false, port: speaker.listenPort });
  process.on('SIGUSR2', () => out({ event: 'status', neighbors: speaker.neighbors() }));
  const stop = async () => {
    out({ event: 'stopping' });
    await speaker.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

void main();
