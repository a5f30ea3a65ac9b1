/**
 * npm run bench:federation: 10,000 endpoints created in datacenter 1 (REST,
 * 64 clients); the time until datacenter 2 holds them all as remote
 * endpoints, routes per second, and the BGP bytes exchanged. Two complete
 * control planes (database, directory, federation service each) peer
 * through a gobgpd route reflector on loopback.
 *
 * Datacenter 2 has BENCH_DC2_HOSTS hosts (default 5), each with a local
 * endpoint of the domain and a simulated agent speaking the real protocol;
 * the clock stops when every one of them holds all the remote endpoints.
 */
import { fork, ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { federate } from '../apps/controller/src/federation';
import { SimulatedAgent, startTestController } from '../test/support/controller';
import { createLogger } from '../apps/controller/src/log';
import { Gobgpd } from '../test/bgp/support/gobgp';
import { waitFor } from '../test/bgp/support/wait';
import { Agent, request } from 'undici';
import { Api, makeTree } from '../test/support/directory';

const KEY = 'bench-operator-key-0123456789abcdef';

/** A directory in its own process (as in production), on its own embedded Postgres. */
async function directoryProcess(pgPort: number): Promise<{ api: Api; url: string; databaseUrl: string; stop(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'sdn-fed-bench-'));
  const child: ChildProcess = fork(join(__dirname, 'support', 'directory-process.js'), [], {
    env: { ...process.env, SDN_DATA_DIR: dataDir, PORT: '0', SDN_OPERATOR_KEY: KEY, LOG_LEVEL: 'error', SDN_EMBEDDED_PG_PORT: String(pgPort) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const m: { url: string; databaseUrl: string } = await new Promise((resolve, reject) => {
    child.once('message', (x: any) => resolve(x));
    child.once('exit', (code) => reject(new Error(`directory exited with ${code}`)));
  });
  return {
    api: new Api(m.url, KEY),
    url: m.url,
    databaseUrl: m.databaseUrl,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const COUNT = Number(process.env.BENCH_ENDPOINTS ?? 10_000);
const CLIENTS = 64;
const ASN = 65000;
const RR = '127.0.5.2';
const DC2_HOSTS = Number(process.env.BENCH_DC2_HOSTS ?? 5);

type Path = 'direct' | 'gobgp-rr';
interface Peer {
  address: string;
  port: number;
  passive: boolean;
}

async function datacenter(name: string, address: string, port: number, hosts: number, peer: Peer) {
  const dir = await directoryProcess(port + 33000);
  const api = dir.api;
  const tree = await makeTree(api, `${name}-t`, '10.0.0.0/8');
  await api.patch(`/api/v1/domains/${tree.domain.id}`, { importRouteTargets: ['65000:9200'], exportRouteTargets: ['65000:9200'] });
  await api.del(`/api/v1/subnets/${tree.subnet.id}`);
  // one stretched subnet; dc2 allocates from its last /24, dc1 from the rest
  const reservedRanges = [name === 'dc1' ? { start: '10.64.255.0', end: '10.64.255.254' } : { start: '10.64.0.2', end: '10.64.254.255' }];
  const subnet = await api.make(`/api/v1/zones/${tree.zone.id}/subnets`, { name: 's', cidr: '10.64.0.0/16', l2Vni: 30100, reservedRanges });
  const group = await api.make(`/api/v1/domains/${tree.domain.id}/policy-groups`, { name: 'app', communityTag: '65000:20' });
  const hostList: Array<{ id: string; credential: string; vtepIp: string }> = [];
  for (let i = 0; i < hosts; i++) {
    const vtepIp = `10.${name === 'dc1' ? 251 : 252}.0.${i + 1}`;
    const h = await api.make('/api/v1/hosts', { name: `${name}-h${i}`, vtepIp });
    hostList.push({ id: h.id, credential: h.credential, vtepIp });
  }
  const speaker = await api.make('/api/v1/bgp-speakers', { name, datacenter: name, asn: ASN, routerId: `10.${name === 'dc1' ? 251 : 252}.255.1`, listenAddress: address, listenPort: port });
  await api.make(`/api/v1/bgp-speakers/${speaker.id}/bgp-neighbors`, { name: 'peer', address: peer.address, port: peer.port, asn: ASN, passive: peer.passive });
  const ctl = await startTestController(dir.databaseUrl);
  const fed = federate(ctl.controller, { databaseUrl: dir.databaseUrl, speakerName: name, log: createLogger('error'), connectRetryTime: 1 });
  await fed.start();
  return { dir, api, ctl, fed, subnet, group, hosts: hostList };
}

async function scenario(path: Path, base: number) {
  const rr = new Gobgpd({
    asn: ASN,
    routerId: '10.0.0.254',
    address: RR,
    apiPort: 50095,
    port: 21871,
    neighbors: [
      { address: '127.0.5.1', asn: ASN, families: ['l2vpn-evpn'], routeReflectorClient: true },
      { address: '127.0.5.3', asn: ASN, families: ['l2vpn-evpn'], routeReflectorClient: true },
    ],
  });
  if (path === 'gobgp-rr') await rr.start();
  const [p1, p2] = [base + 1, base + 2];
  // direct: the two controllers peer with each other (iBGP, dc2 waits); gobgp-rr: both are clients of gobgpd
  const dc1 = await datacenter('dc1', '127.0.5.1', p1, 20, path === 'direct' ? { address: '127.0.5.3', port: p2, passive: false } : { address: RR, port: 21871, passive: false });
  const dc2 = await datacenter('dc2', '127.0.5.3', p2, DC2_HOSTS, path === 'direct' ? { address: '127.0.5.1', port: p1, passive: true } : { address: RR, port: 21871, passive: false });
  // every dc2 host has one local endpoint of the domain, so it holds the domain; an agent per host
  for (const h of dc2.hosts) await dc2.api.make(`/api/v1/subnets/${dc2.subnet.id}/endpoints`, { name: `local-${h.vtepIp}`, hostId: h.id });
  const agents = dc2.hosts.map((h) => new SimulatedAgent(dc2.ctl.agentUrl, h));
  const dirs = [dc1.dir, dc2.dir];
  try {
    for (const dc of [dc1, dc2]) await waitFor('BGP session', () => dc.fed.speaker?.neighbors()[0]?.state === 'established', 30_000);
    const bytes0 = [dc1, dc2].map((dc) => dc.fed.speaker!.neighbors()[0].counters);
    await waitFor('dc2 agents connected', () => agents.every((a) => a.ackedVersion > 0), 30_000);
    const t0 = performance.now();
    let importedAt = 0;
    let hostsAt = 0;
    const progress = process.env.BENCH_PROGRESS
      ? setInterval(() => {
          const n1 = dc1.fed.speaker!.neighbors()[0].counters;
          const n2 = dc2.fed.speaker!.neighbors()[0].counters;
          console.log(
            `  t=${((performance.now() - t0) / 1000).toFixed(1)}s created~${Math.min(next, COUNT)} dc1 revision=${dc1.ctl.controller.engine.revision} advertised=${dc1.fed.stats.advertised} ` +
              `dc1 adj-out=${n1.routesAdvertised} dc2 adj-in=${n2.routesReceived} dc2 imported=${dc2.fed.remote.size} hosts min=${Math.min(...agents.map((a) => a.state.remoteEndpoints.size))}`,
          );
        }, 1000)
      : null;
    const watch = setInterval(() => {
      const now = performance.now();
      if (!importedAt && dc2.fed.remote.size >= COUNT) importedAt = now;
      if (!hostsAt && agents.every((a) => a.state.remoteEndpoints.size >= COUNT)) hostsAt = now;
    }, 10);
    let next = 0;
    // the same load generator as npm run bench: undici's request on 64 kept-alive connections
    const dispatcher = new Agent({ connections: CLIENTS, pipelining: 1, keepAliveTimeout: 60_000 });
    const create = async () => {
      for (;;) {
        const i = next++;
        if (i >= COUNT) return;
        const r = await request(`${dc1.dir.url}/api/v1/subnets/${dc1.subnet.id}/endpoints`, {
          method: 'POST',
          dispatcher,
          headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name: `e${i}`, hostId: dc1.hosts[i % dc1.hosts.length].id, policyGroupIds: [dc1.group.id] }),
        });
        const text = await r.body.text();
        if (r.statusCode !== 201) throw new Error(`create -> ${r.statusCode} ${text}`);
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, () => create()));
    await dispatcher.close();
    const created = performance.now();
    await waitFor(`every dc2 host holding the ${COUNT} endpoints`, () => hostsAt > 0, 180_000, 50);
    clearInterval(watch);
    if (progress) clearInterval(progress);
    const seconds = (hostsAt - t0) / 1000;
    const [c1, c2] = [dc1, dc2].map((dc) => dc.fed.speaker!.neighbors()[0].counters);
    const sent = c1.bytesSent - bytes0[0].bytesSent;
    const received = c2.bytesReceived - bytes0[1].bytesReceived;
    console.log(`federation benchmark: two datacenters, ${path === 'direct' ? 'their controllers peering directly' : 'through a gobgpd route reflector'}`);
    console.log(`  endpoints created in dc1        ${COUNT} (REST, ${CLIENTS} clients, 20 hosts)`);
    console.log(`  API creation done after         ${((created - t0) / 1000).toFixed(2)} s`);
    console.log(`  imported by dc2's controller    ${((importedAt - t0) / 1000).toFixed(2)} s`);
    console.log(`  held by all ${DC2_HOSTS} dc2 hosts after   ${seconds.toFixed(2)} s   (target <= 10 s: ratio ${(seconds / 10).toFixed(2)})`);
    console.log(`  routes per second (end to end)  ${(COUNT / seconds).toFixed(0)}`);
    console.log(`  BGP bytes sent by dc1           ${sent}  (${(sent / COUNT).toFixed(1)} per endpoint, type-2 and type-3/5 included)`);
    console.log(`  BGP bytes received by dc2       ${received}`);
  } finally {
    for (const a of agents) await a.stop();
    for (const dc of [dc1, dc2]) {
      await dc.fed.stop();
      await dc.ctl.close();
    }
    for (const d of dirs) await d.stop();
    await rr.stop();
  }
}

/** BENCH_FED_PATH=direct|gobgp-rr|both (default both). gobgpd's EVPN intake (a few hundred type-2 routes/s here) bounds the second. */
async function main() {
  const which = process.env.BENCH_FED_PATH ?? 'both';
  if (which === 'direct' || which === 'both') await scenario('direct', 21880);
  if (which === 'gobgp-rr' || which === 'both') await scenario('gobgp-rr', 21890);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
