/**
 * The load generator of bench:scale, in its own process so that the
 * controller's process holds nothing but the controller: builds the topology
 * through the REST API, then creates the endpoints with CLIENTS concurrent
 * clients. IPC: parent -> {type:'setup', ...} | {type:'run'}; child -> {type:'setup', hosts} | {type:'run', apiSeconds}.
 */
import { Agent, request } from 'undici';

interface Params {
  url: string;
  key: string;
  networks: number;
  hosts: number;
  endpoints: number;
  clients: number;
  perNetwork: number;
}

let p: Params;
let dispatcher: Agent;
const subnets: string[] = [];
const groups: string[][] = [];
const hosts: { id: string; credential: string; vtepIp: string }[] = [];

async function call(method: 'POST' | 'GET', path: string, body?: unknown) {
  const r = await request(`${p.url}${path}`, {
    method,
    dispatcher,
    headers: { authorization: `Bearer ${p.key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.body.text();
  if (r.statusCode >= 300) throw new Error(`${method} ${path} -> ${r.statusCode} ${text}`);
  return JSON.parse(text);
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
    const [web, app, db] = await Promise.all(['web', 'app', 'db'].map(async (n) => (await call('POST', `/api/v1/domains/${d.id}/policy-groups`, { name: n })).id));
    groups[i] = [web, app, db];
    const pg = (id: string) => ({ type: 'policyGroup', id });
    const any = { type: 'any', id: null };
    // the 7-rule policy of every network, referencing its groups
    const rules = [
      { priority: 10, direction: 'ingress', action: 'allow', appliesTo: pg(web), peer: any, protocol: 'tcp', destinationPorts: ['80', '443'] },
      { priority: 20, direction: 'ingress', action: 'allow', appliesTo: pg(app), peer: pg(web), protocol: 'tcp', destinationPorts: ['8080'] },
      { priority: 30, direction: 'ingress', action: 'allow', appliesTo: pg(db), peer: pg(app), protocol: 'tcp', destinationPorts: ['5432'] },
      { priority: 40, direction: 'ingress', action: 'deny', appliesTo: pg(db), peer: pg(web), protocol: 'any' },
      { priority: 10, direction: 'egress', action: 'allow', appliesTo: pg(web), peer: pg(app), protocol: 'tcp', destinationPorts: ['8080'] },
      { priority: 20, direction: 'egress', action: 'allow', appliesTo: pg(app), peer: pg(db), protocol: 'tcp', destinationPorts: ['5432'] },
      { priority: 30, direction: 'egress', action: 'allow', appliesTo: any, peer: any, protocol: 'udp', destinationPorts: ['53'] },
    ];
    for (const r of rules) await call('POST', `/api/v1/domains/${d.id}/acl-rules`, r);
  });
  await parallel(p.hosts, async (i) => {
    const h = await call('POST', '/api/v1/hosts', { name: `h${i}`, vtepIp: `10.255.${i >> 8}.${(i & 255) + 1}` });
    hosts[i] = { id: h.id, credential: h.credential, vtepIp: h.vtepIp };
  });
}

/** Endpoint i goes to network i mod N, on one of the network's hosts (round-robin), in group web/app/db by turn. */
async function run(): Promise<number> {
  const stride = Math.max(1, Math.floor(p.hosts / p.perNetwork));
  const start = performance.now();
  await parallel(p.endpoints, async (i) => {
    const net = i % p.networks;
    const round = Math.floor(i / p.networks);
    const host = hosts[(net + (round % p.perNetwork) * stride) % p.hosts];
    await call('POST', `/api/v1/subnets/${subnets[net]}/endpoints`, { name: `ep-${i}`, externalId: `ext-${i}`, hostId: host.id, policyGroupIds: [groups[net][i % 3]] });
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
    dispatcher = new Agent({ connections: p.clients, pipelining: 1, keepAliveTimeout: 60_000 });
    setup().then(() => process.send!({ type: 'setup', hosts }), fail);
  } else if (m.type === 'run') {
    run().then((apiSeconds) => process.send!({ type: 'run', apiSeconds }), fail);
  }
});
