/**
 * npm run bench:pipeline — the controller's and the agents' computation for
 * the bench:scale topology, without processes, sockets or Postgres: what
 * each endpoint costs in the engine (apply + collect changes), in encoding
 * the agents' deltas, and in decoding + applying them on the agents' side.
 * Deterministic work, so that a change to the hot path can be measured
 * without the noise of the full system (bench:scale is the figure that counts).
 *
 * Same shape as bench:scale: SCALE_NETWORKS (500) networks with groups
 * web/app/db and the 7-rule policy, SCALE_HOSTS (200) hosts,
 * SCALE_ENDPOINTS (100000) endpoints, SCALE_HOSTS_PER_NETWORK (8); changes are
 * applied in batches of PIPELINE_BATCH (32, what the controller sees per
 * flush under load) and each host's changes are encoded every
 * PIPELINE_WINDOW (150) endpoints (50 ms at 3,000 endpoints/s).
 */
import { Engine, PendingChanges } from '#sdn/compiler';
import type { Change, PolicyGroup, Subnet } from '#sdn/model';
import { decode, encodeDelta, StateMirror } from '#sdn/wire';
import { World } from '../libs/compiler/test/support/world';
import { calibrate } from './support/cpu';

const env = (name: string, fallback: number) => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer`);
  return v;
};
const NETWORKS = env('SCALE_NETWORKS', 500);
const HOSTS = env('SCALE_HOSTS', 200);
const ENDPOINTS = env('SCALE_ENDPOINTS', 100_000);
const PER_NETWORK = Math.min(HOSTS, env('SCALE_HOSTS_PER_NETWORK', 8));
const BATCH = env('PIPELINE_BATCH', 32);
const WINDOW = env('PIPELINE_WINDOW', 150);

function topology(): { world: World; subnets: Subnet[]; groups: PolicyGroup[][] } {
  const w = new World(true);
  const hosts = Array.from({ length: HOSTS }, () => w.host());
  const subnets: Subnet[] = [];
  const groups: PolicyGroup[][] = [];
  for (let i = 0; i < NETWORKS; i++) {
    const d = w.domain(w.enterprise(`e${i}`));
    subnets.push(w.subnet(w.zone(d)));
    const [web, app, db] = ['web', 'app', 'db'].map((n) => w.group(d, n));
    groups.push([web, app, db]);
    const pg = (g: PolicyGroup) => ({ type: 'policyGroup' as const, id: g.id });
    const any = { type: 'any' as const, id: null };
    w.rule(d, { priority: 10, direction: 'ingress', action: 'allow', appliesTo: pg(web), peer: any, protocol: 'tcp', destinationPorts: ['80', '443'] });
    w.rule(d, { priority: 20, direction: 'ingress', action: 'allow', appliesTo: pg(app), peer: pg(web), protocol: 'tcp', destinationPorts: ['8080'] });
    w.rule(d, { priority: 30, direction: 'ingress', action: 'allow', appliesTo: pg(db), peer: pg(app), protocol: 'tcp', destinationPorts: ['5432'] });
    w.rule(d, { priority: 40, direction: 'ingress', action: 'deny', appliesTo: pg(db), peer: pg(web), protocol: 'any' });
    w.rule(d, { priority: 10, direction: 'egress', action: 'allow', appliesTo: pg(web), peer: pg(app), protocol: 'tcp', destinationPorts: ['8080'] });
    w.rule(d, { priority: 20, direction: 'egress', action: 'allow', appliesTo: pg(app), peer: pg(db), protocol: 'tcp', destinationPorts: ['5432'] });
    w.rule(d, { priority: 30, direction: 'egress', action: 'allow', appliesTo: any, peer: any, protocol: 'udp', destinationPorts: ['53'] });
  }
  return { world: w, subnets, groups };
}

function main() {
  const speed = [calibrate(), calibrate(), calibrate()].sort((a, b) => a - b)[1];
  const { world, subnets, groups } = topology();
  const hosts = world.list('host');
  const engine = new Engine();
  engine.load(world.snapshot());
  const stride = Math.max(1, Math.floor(HOSTS / PER_NETWORK));
  const first = world.log.length;
  for (let i = 0; i < ENDPOINTS; i++) {
    const net = i % NETWORKS;
    const round = Math.floor(i / NETWORKS);
    world.endpoint(subnets[net], hosts[(net + (round % PER_NETWORK) * stride) % HOSTS], [groups[net][i % 3]], `ep-${i}`);
  }
  const changes: Change[] = world.log.slice(first);

  // the agents start from the state before the endpoints (as after their snapshot)
  const mirrors = new Map<string, StateMirror>();
  for (const h of hosts) {
    const m = new StateMirror();
    const r = m.applySnapshot({ epoch: 'e', version: 1, revision: engine.revision, digest: engine.digestOf(h.id), state: engine.stateOf(h.id) });
    if (!r.ok) throw new Error(r.reason);
    mirrors.set(h.id, m);
  }
  const pending = new Map<string, PendingChanges>(hosts.map((h) => [h.id, new PendingChanges()]));
  const versions = new Map<string, number>(hosts.map((h) => [h.id, 1]));
  let engineMs = 0;
  let encodeMs = 0;
  let agentMs = 0;
  let frames = 0;
  let bytes = 0;
  let entries = 0;
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  for (let at = 0; at < changes.length; at += WINDOW) {
    // the controller: batches of changes, then the window's deltas
    let t = performance.now();
    const end = Math.min(changes.length, at + WINDOW);
    for (let b = at; b < end; b += BATCH) {
      for (let k = b; k < Math.min(end, b + BATCH); k++) engine.apply(changes[k]);
      engine.takeChanges((hostId, c) => {
        const p = pending.get(hostId)!;
        if (p.size === 0) pending.set(hostId, c);
        else p.mergePending(c);
      });
    }
    engineMs += performance.now() - t;
    t = performance.now();
    const out: Array<[string, Buffer]> = [];
    for (const [hostId, p] of pending) {
      if (p.size === 0) continue;
      const v = versions.get(hostId)!;
      versions.set(hostId, v + 1);
      entries += p.size;
      out.push([hostId, encodeDelta({ epoch: 'e', fromVersion: v, version: v + 1, revision: engine.revision, digest: engine.digestOf(hostId) }, p.toDelta())]);
      pending.set(hostId, new PendingChanges());
    }
    encodeMs += performance.now() - t;
    // the agents
    t = performance.now();
    for (const [hostId, frame] of out) {
      frames++;
      bytes += frame.length;
      const m = decode(frame);
      if (m.type !== 'delta') throw new Error('not a delta');
      const r = mirrors.get(hostId)!.applyDelta(m);
      if (!r.ok) throw new Error(r.reason);
    }
    agentMs += performance.now() - t;
  }
  const us = (ms: number) => `${((ms * 1000) / ENDPOINTS).toFixed(1)} µs`;
  const line = (k: string, v: string) => console.log(`${k.padEnd(40)} ${v}`);
  console.log(`\npipeline benchmark: ${NETWORKS} networks, ${HOSTS} hosts, ${ENDPOINTS} endpoints, ${PER_NETWORK} hosts per network, batches of ${BATCH}, deltas every ${WINDOW}`);
  line('machine speed (bench:scale\'s; lower = faster)', `${speed.toFixed(0)} ms`);
  line('controller: engine (apply + changes)', `${(engineMs / 1000).toFixed(2)} s, ${us(engineMs)} per endpoint`);
  line('controller: encoding deltas', `${(encodeMs / 1000).toFixed(2)} s, ${us(encodeMs)} per endpoint`);
  line('agents: decode + apply + digest', `${(agentMs / 1000).toFixed(2)} s, ${us(agentMs)} per endpoint`);
  line('deltas / entries / bytes', `${frames} / ${entries} / ${(bytes / 1024 ** 2).toFixed(1)} MiB (${(bytes / ENDPOINTS).toFixed(0)} B per endpoint)`);
  let mismatched = 0;
  for (const h of hosts) if (mirrors.get(h.id)!.digest.value() !== engine.digestOf(h.id)) mismatched++;
  line('agents whose digest != engine', String(mismatched));
  if (mismatched) process.exitCode = 1;
}

main();
