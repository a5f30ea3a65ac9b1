import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AnyEntry, applyDelta, compileAll, describeDifference, digestOf, emptyHostState, Engine, entryHash, fingerprint, hash64, HostState, peerKey, sameEntry, StateDigest, TABLES } from '#sdn/compiler';
import { World } from '../../libs/compiler/test/support/world';

/** Random operations on an in-memory stand-in of the directory. Each op picks its targets from the world by index. */
type Op = { op: string; a: number; b: number; c: number };
const opArb = fc.record({
  op: fc.constantFrom(
    'endpoint', 'endpoint', 'endpoint', 'endpoint', 'moveEndpoint', 'unplaceEndpoint', 'deleteEndpoint', 'regroupEndpoint',
    'host', 'moveVtep', 'deleteHost', 'subnet', 'subnet6', 'deleteSubnet', 'rule', 'updateRule', 'deleteRule', 'group',
    'deleteGroup', 'macro', 'updateMacro', 'macroGroup', 'updateDomain', 'domain',
  ),
  a: fc.nat(1000),
  b: fc.nat(1000),
  c: fc.nat(1000),
});

function pick<T>(xs: T[], i: number): T | undefined {
  return xs.length ? xs[i % xs.length] : undefined;
}

function step(w: World, o: Op): void {
  const hosts = w.list('host');
  const subnets = w.list('subnet');
  const endpoints = w.list('endpoint');
  const domains = w.list('domain');
  const groupsOf = (domainId: string) => w.list('policyGroup').filter((g) => g.domainId === domainId);
  switch (o.op) {
    case 'endpoint': {
      const s = pick(subnets, o.a);
      if (!s) return;
      const gs = groupsOf(s.domainId);
      w.endpoint(s, pick(hosts, o.b) ?? null, gs.filter((_, i) => (o.c >> i) & 1));
      return;
    }
    case 'moveEndpoint': {
      const e = pick(endpoints, o.a);
      const h = pick(hosts, o.b);
      if (e && h) w.updateEndpoint(e, { hostId: h.id });
      return;
    }
    case 'unplaceEndpoint': {
      const e = pick(endpoints, o.a);
      if (e) w.updateEndpoint(e, { hostId: null });
      return;
    }
    case 'deleteEndpoint': {
      const e = pick(endpoints, o.a);
      if (e) w.deleteEndpoint(e);
      return;
    }
    case 'regroupEndpoint': {
      const e = pick(endpoints, o.a);
      if (e) w.updateEndpoint(e, { policyGroupIds: groupsOf(e.domainId).filter((_, i) => (o.b >> i) & 1).map((g) => g.id) });
      return;
    }
    case 'host':
      w.host();
      return;
    case 'moveVtep': {
      const h = pick(hosts, o.a);
      if (h) w.updateHost(h, { vtepIp: w.newVtep() });
      return;
    }
    case 'deleteHost': {
      const h = pick(hosts, o.a);
      // the directory refuses to delete a host with endpoints
      if (h && !endpoints.some((e) => e.hostId === h.id)) w.deleteHost(h);
      return;
    }
    case 'subnet':
    case 'subnet6': {
      const z = pick(w.list('zone'), o.a);
      if (z) w.subnet(z, o.op === 'subnet6' ? 6 : 4);
      return;
    }
    case 'deleteSubnet': {
      const s = pick(subnets, o.a);
      if (s) w.deleteSubnet(s);
      return;
    }
    case 'rule': {
      const d = pick(domains, o.a);
      if (!d) return;
      const gs = groupsOf(d.id);
      const ds = subnets.filter((s) => s.domainId === d.id);
      const macros = w.list('networkMacro').filter((m) => m.enterpriseId === d.enterpriseId);
      const mgs = w.list('networkMacroGroup').filter((m) => m.enterpriseId === d.enterpriseId);
      const zs = w.list('zone').filter((z) => z.domainId === d.id);
      const eps = endpoints.filter((e) => e.domainId === d.id);
      const target = (k: number): { type: any; id: string | null } => {
        const choices: Array<{ type: any; id: string | null } | undefined> = [
          { type: 'any', id: null },
          pick(gs, k) && { type: 'policyGroup', id: pick(gs, k)!.id },
          pick(ds, k) && { type: 'subnet', id: pick(ds, k)!.id },
          pick(zs, k) && { type: 'zone', id: pick(zs, k)!.id },
          pick(eps, k) && { type: 'endpoint', id: pick(eps, k)!.id },
        ];
        return choices[k % choices.length] ?? { type: 'any', id: null };
      };
      const peerChoices = [target(o.c), pick(macros, o.c) && { type: 'networkMacro', id: pick(macros, o.c)!.id }, pick(mgs, o.c) && { type: 'networkMacroGroup', id: pick(mgs, o.c)!.id }];
      w.rule(d, {
        direction: o.b % 2 ? 'ingress' : 'egress',
        etherType: o.b % 5 === 0 ? 'ipv6' : 'ipv4',
        appliesTo: target(o.b),
        peer: (peerChoices[o.b % 3] as any) ?? { type: 'any', id: null },
        priority: o.c,
        action: o.a % 2 ? 'allow' : 'deny',
      });
      return;
    }
    case 'updateRule': {
      const r = pick(w.list('aclRule'), o.a);
      if (r) w.updateRule(r, { priority: o.b, action: o.c % 2 ? 'allow' : 'deny', destinationPorts: o.c % 3 ? ['80'] : [] });
      return;
    }
    case 'deleteRule': {
      const r = pick(w.list('aclRule'), o.a);
      if (r) w.deleteRule(r);
      return;
    }
    case 'group': {
      const d = pick(domains, o.a);
      if (d) w.group(d);
      return;
    }
    case 'deleteGroup': {
      const g = pick(w.list('policyGroup'), o.a);
      if (g) w.deleteGroup(g);
      return;
    }
    case 'macro': {
      const ent = pick(w.list('enterprise'), o.a);
      if (ent) w.macro(ent, o.b % 4 === 0 ? `2001:db8:${o.c.toString(16)}::/48` : `198.51.${o.c % 256}.0/24`);
      return;
    }
    case 'updateMacro': {
      const m = pick(w.list('networkMacro'), o.a);
      if (m) w.updateMacro(m, `203.0.${o.b % 256}.0/24`);
      return;
    }
    case 'macroGroup': {
      const ent = pick(w.list('enterprise'), o.a);
      if (ent) w.macroGroup(ent, w.list('networkMacro').filter((m, i) => m.enterpriseId === ent.id && (o.b >> i) & 1));
      return;
    }
    case 'updateDomain': {
      const d = pick(domains, o.a);
      if (d) w.updateDomain(d, { defaultIngressAction: o.b % 2 ? 'allow' : 'deny' });
      return;
    }
    case 'domain': {
      const ent = pick(w.list('enterprise'), o.a);
      if (!ent) return;
      const d = w.domain(ent);
      w.subnet(w.zone(d));
      return;
    }
  }
}

function seedWorld(): World {
  const w = new World();
  for (const name of ['a', 'b']) {
    const ent = w.enterprise(name);
    const d = w.domain(ent);
    const z = w.zone(d);
    w.subnet(z);
    w.subnet(z);
    w.group(d, 'web');
    w.group(d, 'db');
  }
  for (let i = 0; i < 4; i++) w.host();
  return w;
}

describe('entry hashing and equality', () => {
  it('hashes an entry as its fingerprint would hash, and compares entries as their fingerprints would', () => {
    const w = seedWorld();
    for (let i = 0; i < 40; i++) step(w, { op: ['endpoint', 'rule', 'macro', 'macroGroup', 'subnet6'][i % 5], a: i * 7, b: i * 13, c: i * 31 });
    const entries: Array<[(typeof TABLES)[number], AnyEntry]> = [];
    for (const state of compileAll(w.snapshot()).values()) for (const t of TABLES) for (const e of (state[t] as Map<string, AnyEntry>).values()) entries.push([t, e]);
    assert.ok(entries.length > 100);
    for (const [t, e] of entries) {
      const copy = JSON.parse(JSON.stringify(e)) as AnyEntry; // a fresh object: no cache
      assert.deepEqual(entryHash(t, copy), hash64(fingerprint(t, e as never)));
    }
    for (let i = 0; i < entries.length; i++) {
      const [t, a] = entries[i];
      const [u, b] = entries[(i * 7919) % entries.length];
      if (t === u) assert.equal(sameEntry(t, a as never, b as never), fingerprint(t, a as never) === fingerprint(t, b as never));
      assert.ok(sameEntry(t, a as never, JSON.parse(JSON.stringify(a))));
    }
  });
});

describe('incremental engine (in memory)', () => {
  it('equals the full compile after any operation sequence, and streamed deltas rebuild the same states', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 120 }), fc.boolean(), (ops, loadFirst) => {
        const w = seedWorld();
        const engine = new Engine();
        // either load the seed as a snapshot or stream it
        let consumed = 0;
        if (loadFirst) {
          engine.load(w.snapshot());
          consumed = w.log.length;
        }
        const agents = new Map<string, { state: HostState; digest: StateDigest }>();
        if (loadFirst) for (const h of engine.hostIds()) agents.set(h, { state: engine.stateOf(h), digest: StateDigest.of(engine.stateOf(h)) });
        const drain = () => {
          for (; consumed < w.log.length; consumed++) engine.apply(w.log[consumed]);
          for (const [h, d] of engine.takeDeltas()) {
            const a = agents.get(h) ?? { state: emptyHostState(), digest: new StateDigest() };
            agents.set(h, a);
            applyDelta(a.state, d, a.digest);
          }
        };
        drain();
        for (const o of ops) {
          step(w, o);
          if (o.c % 3 === 0) drain(); // sometimes several changes per batch
        }
        drain();
        const ref = compileAll(w.snapshot());
        for (const [h, want] of ref) {
          assert.deepEqual(describeDifference(engine.stateOf(h), want), [], `engine, host ${h}`);
          assert.equal(engine.digestOf(h), digestOf(want), `digest, host ${h}`);
          const a = agents.get(h) ?? { state: emptyHostState(), digest: new StateDigest() };
          assert.deepEqual(describeDifference(a.state, want), [], `agent, host ${h}`);
          assert.equal(a.digest.value(), digestOf(want));
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('entries every host of a network holds alike', () => {
  it('are one object for all of them (built and hashed once), and a changed domain brings a new one', () => {
    const w = new World(true);
    const d = w.domain(w.enterprise());
    const s = w.subnet(w.zone(d));
    const [a, b, c] = [w.host(), w.host(), w.host()];
    for (const h of [a, b, c]) w.endpoint(s, h);
    const engine = new Engine();
    for (const ch of w.log) engine.apply(ch);
    const peerOf = (holder: string, vni: number, of: string) => engine.stateOf(holder).peerVteps.get(peerKey(vni, of));
    const l3 = peerOf(b.id, d.l3Vni, a.vtepIp);
    const l2 = peerOf(b.id, s.l2Vni, a.vtepIp);
    assert.ok(l3 && l2, 'b holds peer entries for a');
    assert.equal(peerOf(c.id, d.l3Vni, a.vtepIp), l3, 'the same l3 peer object on b and c');
    assert.equal(peerOf(c.id, s.l2Vni, a.vtepIp), l2, 'the same l2 peer object on b and c');
    const domainOf = (h: string) => [...engine.stateOf(h).domains.values()][0];
    const subnetOf = (h: string) => [...engine.stateOf(h).subnets.values()][0];
    assert.equal(domainOf(a.id), domainOf(c.id));
    assert.equal(subnetOf(a.id), subnetOf(b.id));
    // a changed domain is a new object: its hosts get entries built from it
    w.updateDomain(d, { defaultIngressAction: 'allow' });
    engine.apply(w.log[w.log.length - 1]);
    assert.equal(domainOf(a.id).defaultIngressAction, 'allow');
    assert.equal(domainOf(a.id), domainOf(b.id));
    // its peer entries did not change: the hosts keep the ones they hold
    assert.equal(peerOf(b.id, d.l3Vni, a.vtepIp), l3);
  });
});
