/**
 * npm run bench:pipeline — the controller's and the agents' computation for
 * the bench:scale topology, without processes, sockets or Postgres: what
 * each endpoint costs in the engine (apply + collect changes), in encoding
 * the agents' deltas, and in decoding + applying them on the agents' side.
 * Deterministic work, so that a change to the hot path can be measured
 * without the noise of the full system (bench:scale is the figure that counts).
 *
 * The topology, placement and SCALE_* sizes are bench:scale's
 * (support/scale-topology.ts); changes are applied in batches of
 * PIPELINE_BATCH (32, what the controller sees per flush under load) and each
 * host's changes are encoded every PIPELINE_WINDOW (150) endpoints (50 ms at
 * 3,000 endpoints/s).
 */
import { Engine, PendingChanges } from '#sdn/compiler';
import type { Change, PolicyGroup, Subnet } from '#sdn/model';
import { decode, decodeStateFrame, DigestMirror, encodeDelta, encodeSnapshot, StateMirror, stateLists } from '#sdn/wire';
import { World } from '../libs/compiler/test/support/world';
import { calibrate } from './support/cpu';
import { expectedEntriesPerHost, GROUPS, placement, POLICY, policyRule, positiveInt, scaleSize } from './support/scale-topology';

const SIZE = scaleSize();
const BATCH = positiveInt('PIPELINE_BATCH', 32);
const WINDOW = positiveInt('PIPELINE_WINDOW', 150);
/** PIPELINE_AGENTS_KEEP=digest: the agents keep each entry's hash, as bench:scale's do (default: every entry, as the tests' agents do) */
const KEEP = process.env.PIPELINE_AGENTS_KEEP === 'digest' ? 'digest' : 'state';

function topology(): { world: World; subnets: Subnet[]; groups: PolicyGroup[][] } {
  const w = new World(true);
  for (let i = 0; i < SIZE.hosts; i++) w.host();
  const subnets: Subnet[] = [];
  const groups: PolicyGroup[][] = [];
  for (let i = 0; i < SIZE.networks; i++) {
    const d = w.domain(w.enterprise(`e${i}`));
    subnets.push(w.subnet(w.zone(d)));
    const gs = GROUPS.map((n) => w.group(d, n));
    groups.push(gs);
    for (const r of POLICY) w.rule(d, policyRule(r, gs.map((g) => g.id)));
  }
  return { world: w, subnets, groups };
}

function main() {
  const speed = [calibrate(), calibrate(), calibrate()].sort((a, b) => a - b)[1];
  const { world, subnets, groups } = topology();
  const hosts = world.list('host');
  const engine = new Engine();
  engine.load(world.snapshot());
  const first = world.log.length;
  for (let i = 0; i < SIZE.endpoints; i++) {
    const { network, host, group } = placement(i, SIZE);
    world.endpoint(subnets[network], hosts[host], [groups[network][group]], `ep-${i}`);
  }
  const changes: Change[] = world.log.slice(first);

  // the agents start from the state before the endpoints (as after their snapshot)
  const mirrors = new Map<string, StateMirror | DigestMirror>();
  for (const h of hosts) {
    const snapshot = { epoch: 'e', version: 1, revision: engine.revision, digest: engine.digestOf(h.id), state: engine.stateOf(h.id) };
    const m = KEEP === 'digest' ? new DigestMirror(expectedEntriesPerHost(SIZE)) : new StateMirror();
    const r = m instanceof DigestMirror ? m.applyFrame(decodeStateFrame(encodeSnapshot(snapshot, stateLists(snapshot.state)))!) : m.applySnapshot(snapshot);
    if (!r.ok) throw new Error(r.reason);
    mirrors.set(h.id, m);
  }
  const pending = new Map<string, PendingChanges>(hosts.map((h) => [h.id, new PendingChanges()]));
  const versions = new Map<string, number>(hosts.map((h) => [h.id, 1]));
  let engineMs = 0;
  let encodeMs = 0;
  let agentMs = 0;
  let decodeMs = 0;
  let frames = 0;
  let bytes = 0;
  let entries = 0;
  // the first 10K endpoints, while the hosts join their networks (a host's first endpoint of a network brings it the network's peers, rules and sets)
  const tenK = Math.min(10_000, SIZE.endpoints);
  let early: { engineMs: number; encodeMs: number; agentMs: number; endpoints: number } | null = null;
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
      const mirror = mirrors.get(hostId)!;
      let r;
      if (mirror instanceof DigestMirror) {
        // the body is read straight into hashes: its decoding is part of applying
        r = mirror.applyFrame(decodeStateFrame(frame)!);
      } else {
        const d = performance.now();
        const m = decode(frame);
        decodeMs += performance.now() - d;
        if (m.type !== 'delta') throw new Error('not a delta');
        r = mirror.applyDelta(m);
      }
      if (!r.ok) throw new Error(r.reason);
    }
    agentMs += performance.now() - t;
    // taken after the whole window, so that the three figures cover the same endpoints
    if (early === null && end >= tenK) early = { engineMs, encodeMs, agentMs, endpoints: end };
  }
  const us = (ms: number) => `${((ms * 1000) / SIZE.endpoints).toFixed(1)} µs`;
  const line = (k: string, v: string) => console.log(`${k.padEnd(40)} ${v}`);
  console.log(`\npipeline benchmark: ${SIZE.networks} networks, ${SIZE.hosts} hosts, ${SIZE.endpoints} endpoints, ${SIZE.perNetwork} hosts per network, batches of ${BATCH}, deltas every ${WINDOW}`);
  line('machine speed (bench:scale\'s; lower = faster)', `${speed.toFixed(0)} ms`);
  line('controller: engine (apply + changes)', `${(engineMs / 1000).toFixed(2)} s, ${us(engineMs)} per endpoint`);
  line('controller: encoding deltas', `${(encodeMs / 1000).toFixed(2)} s, ${us(encodeMs)} per endpoint`);
  line(`agents (keeping ${KEEP}): decode + apply + digest`, `${(agentMs / 1000).toFixed(2)} s, ${us(agentMs)} per endpoint${KEEP === 'digest' ? ' (frames read straight into hashes)' : ` (decode ${us(decodeMs)})`}`);
  if (early && early.endpoints < SIZE.endpoints) {
    const per = (ms: number) => `${((ms * 1000) / early!.endpoints).toFixed(1)}`;
    line(`  the first ${early.endpoints} endpoints`, `engine ${per(early.engineMs)}, encoding ${per(early.encodeMs)}, agents ${per(early.agentMs)} µs per endpoint`);
  }
  line('deltas / entries / bytes', `${frames} / ${entries} / ${(bytes / 1024 ** 2).toFixed(1)} MiB (${(bytes / SIZE.endpoints).toFixed(0)} B per endpoint)`);
  let mismatched = 0;
  for (const h of hosts) if (mirrors.get(h.id)!.digest.value() !== engine.digestOf(h.id)) mismatched++;
  line('agents whose digest != engine', String(mismatched));
  if (mismatched) process.exitCode = 1;
}

main();
