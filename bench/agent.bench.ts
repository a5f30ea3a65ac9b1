/**
 * npm run bench:agent — how fast the agent puts a state into the kernel.
 *
 * A model with one domain, one /16 subnet, 101 hosts and 10,001 endpoints (one
 * local, 10,000 on the 100 other hosts), a policy group of 1,000 of them and a
 * rule that references it, compiled by the real compiler for the local host:
 * 10,000 remote endpoints (FDB + neighbour entries), 100 flood entries and a
 * set of 1,000 members. Measures, in a scratch network namespace:
 *   - the snapshot apply into an empty kernel (start of a fresh host),
 *   - a restart reconcile (read the kernel back, diff, nothing to apply),
 *   - single-endpoint deltas (one remote endpoint in the group added / removed).
 * Run as root.
 */
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { compileHost, diffStates, stateSize } from '#sdn/compiler';
import { Datapath, defaultDatapathConfig } from '#sdn/datapath';
import type { AclRule, Domain, Endpoint, Host, ModelSnapshot, PolicyGroup, Subnet } from '#sdn/model';

const REMOTE = Number(process.env.BENCH_REMOTE ?? 10_000);
const MEMBERS = Number(process.env.BENCH_MEMBERS ?? 1_000);
const HOSTS = 100;
const DELTAS = 20;

const meta = () => ({ id: randomUUID(), createdAt: '', updatedAt: '', revision: 1 });
const sh = (argv: string[]) => execFileSync(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const ms = (x: number) => `${x.toFixed(1)} ms`;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

function model(): { snap: ModelSnapshot; local: Host; subnet: Subnet; group: PolicyGroup; hosts: Host[] } {
  const ent = { ...meta(), name: 'bench', description: '' };
  const dom: Domain = {
    ...meta(),
    enterpriseId: ent.id,
    name: 'bench',
    description: '',
    routeDistinguisher: null,
    importRouteTargets: [],
    exportRouteTargets: [],
    l3Vni: 70001,
    defaultIngressAction: 'deny',
    defaultEgressAction: 'allow',
  };
  const zone = { ...meta(), enterpriseId: ent.id, domainId: dom.id, name: 'z', description: '' };
  const subnet: Subnet = {
    ...meta(),
    enterpriseId: ent.id,
    domainId: dom.id,
    zoneId: zone.id,
    name: 's',
    description: '',
    cidr: '10.20.0.0/16',
    ipVersion: 4,
    gateway: '10.20.0.1',
    l2Vni: 70002,
    reservedRanges: [],
  };
  const group: PolicyGroup = { ...meta(), enterpriseId: ent.id, domainId: dom.id, name: 'db', description: '', communityTag: null };
  const hosts: Host[] = [];
  for (let i = 0; i <= HOSTS; i++)
    hosts.push({ ...meta(), name: `h${i}`, description: '', vtepIp: `198.18.${(i >> 8) & 255}.${(i & 255) + 1}`, status: 'up', lastSeenAt: null });
  const endpoints: Endpoint[] = [];
  const ep = (n: number, host: Host, groups: string[]): Endpoint => ({
    ...meta(),
    enterpriseId: ent.id,
    domainId: dom.id,
    zoneId: zone.id,
    subnetId: subnet.id,
    hostId: host.id,
    kind: 'container',
    name: `e${n}`,
    externalId: null,
    mac: `02:aa:00:${((n >> 16) & 255).toString(16).padStart(2, '0')}:${((n >> 8) & 255).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`,
    ip: `10.20.${(n + 2) >> 8}.${(n + 2) & 255}`,
    policyGroupIds: groups,
    status: 'active',
  });
  endpoints.push(ep(0, hosts[0], []));
  for (let n = 1; n <= REMOTE; n++) endpoints.push(ep(n, hosts[1 + (n % HOSTS)], n <= MEMBERS ? [group.id] : []));
  const rule: AclRule = {
    ...meta(),
    enterpriseId: ent.id,
    domainId: dom.id,
    priority: 10,
    direction: 'ingress',
    action: 'allow',
    appliesTo: { type: 'any', id: null },
    peer: { type: 'policyGroup', id: group.id },
    etherType: 'ipv4',
    protocol: 'tcp',
    sourcePorts: [],
    destinationPorts: ['5432'],
    stateful: true,
    description: '',
  };
  const snap: ModelSnapshot = {
    revision: 1,
    enterprises: [ent],
    domains: [dom],
    zones: [zone],
    subnets: [subnet],
    hosts,
    endpoints,
    policyGroups: [group],
    networkMacros: [],
    networkMacroGroups: [],
    aclRules: [rule],
    bgpSpeakers: [],
    bgpNeighbors: [],
  };
  return { snap, local: hosts[0], subnet, group, hosts };
}

async function main(): Promise<void> {
  const prefix = `ab${(process.pid % 0xffff).toString(36)}`;
  const hostNs = `${prefix}h`;
  const cfg = { ...defaultDatapathConfig(), hostNetns: hostNs, nsPrefix: `${prefix}d` };
  const { snap, local, group, hosts } = model();
  const t0 = performance.now();
  let state = compileHost(snap, local.id);
  const compileMs = performance.now() - t0;
  console.log(
    `state of the local host: ${stateSize(state)} entries (${state.remoteEndpoints.size} remote endpoints, ${state.peerVteps.size} peer VTEPs, ${state.setElements.size} set members), compiled in ${ms(compileMs)}`,
  );
  sh(['ip', 'netns', 'add', hostNs]);
  try {
    sh(['ip', '-n', hostNs, 'link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'uplink2']);
    sh(['ip', '-n', hostNs, 'addr', 'add', `${local.vtepIp}/16`, 'dev', 'uplink']);
    sh(['ip', '-n', hostNs, 'link', 'set', 'uplink', 'up']);
    const dp = new Datapath(cfg);
    const snapRun = await dp.reconcile(state);
    console.log(`snapshot apply into an empty kernel: ${ms(snapRun.durationMs)} (${snapRun.changes} kernel objects)`);

    const again = new Datapath(cfg);
    const rec = await again.reconcile(state);
    console.log(`restart reconcile (read the kernel, diff, apply nothing): ${ms(rec.durationMs)} (${rec.changes} differences)`);

    // single-endpoint deltas: a new remote endpoint in the policy group (FDB, neighbour, set member), then its removal
    const add: number[] = [];
    const del: number[] = [];
    for (let i = 0; i < DELTAS; i++) {
      const n = REMOTE + 1 + i;
      const e: Endpoint = {
        ...snap.endpoints[1],
        id: randomUUID(),
        name: `x${n}`,
        mac: `02:bb:00:00:${(n >> 8 & 255).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`,
        ip: `10.20.250.${i + 2}`,
        hostId: hosts[1 + (i % HOSTS)].id,
        policyGroupIds: [group.id],
      };
      snap.endpoints.push(e);
      let next = compileHost(snap, local.id);
      let d = diffStates(state, next);
      let r = await again.applyDelta(d);
      add.push(r.durationMs);
      state = next;
      snap.endpoints.pop();
      next = compileHost(snap, local.id);
      d = diffStates(state, next);
      r = await again.applyDelta(d);
      del.push(r.durationMs);
      state = next;
    }
    console.log(`single-endpoint delta, add (FDB + neighbour + set member): p50 ${ms(pct(add, 50))}, p95 ${ms(pct(add, 95))} over ${DELTAS}`);
    console.log(`single-endpoint delta, remove: p50 ${ms(pct(del, 50))}, p95 ${ms(pct(del, 95))} over ${DELTAS}`);
    const drift = again.selfCheck();
    console.log(`fast-path deltas: ${again.fastApplies} of ${2 * DELTAS}; model vs full render: ${drift.length ? drift.join('; ') : 'equal'}`);
    const fdb = sh(['ip', 'netns', 'exec', `${cfg.nsPrefix}70001`, 'bridge', 'fdb', 'show', 'dev', 'vx70002']).split('\n').filter((l) => l.includes('dst')).length;
    console.log(`kernel check: ${fdb} VXLAN FDB entries with a remote VTEP on vx70002`);
    await again.destroy();
  } finally {
    for (const ns of [hostNs, `${cfg.nsPrefix}70001`]) {
      try {
        sh(['ip', 'netns', 'del', ns]);
      } catch {
        /* gone */
      }
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
