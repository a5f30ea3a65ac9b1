/**
 * The invariant everything rests on: after any sequence of directory
 * operations through the real REST API, every host's state kept
 * incrementally by the controller equals the state compiled from scratch from
 * the database, and equals what a simulated agent holds after applying the
 * stream it received.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { compileAll, describeDifference, digestOf } from '#sdn/compiler';
import type { ModelSnapshot } from '#sdn/model';
import { createModelStore, ModelStore } from '#sdn/store';
import { Api, startTestDirectory, TestDirectory } from '../support/directory';
import { settled, SimulatedAgent, startTestController, waitUntil } from '../support/controller';
import type { RunningController } from '../../apps/controller/src/controller';

let t: TestDirectory;
let store: ModelStore;
let c: RunningController;
const agents: SimulatedAgent[] = [];

const OPS = [
  'endpoint', 'endpoint', 'endpoint', 'endpoint', 'move', 'move', 'unplace', 'delete', 'regroup', 'regroup',
  'rule', 'rule', 'updateRule', 'deleteRule', 'group', 'deleteGroup', 'subnet', 'deleteSubnet', 'macro', 'updateMacro',
  'macroGroup', 'updateDomain', 'vtep',
] as const;
type Op = { op: (typeof OPS)[number]; a: number; b: number; c: number };
const opArb: fc.Arbitrary<Op> = fc.record({ op: fc.constantFrom(...OPS), a: fc.nat(10_000), b: fc.nat(10_000), c: fc.nat(10_000) });
const pick = <T>(xs: T[], i: number): T | undefined => (xs.length ? xs[i % xs.length] : undefined);

let subnetSeq = 0;
let vtepSeq = 50;

/** One operation through the API; refusals by the directory (409, 422) are part of the game. */
export const statuses = new Map<string, number>();
async function run(api0: Api, snap: ModelSnapshot, o: Op): Promise<void> {
  const api = counting(api0, o.op);
  const groupsOf = (d: string) => snap.policyGroups.filter((g) => g.domainId === d);
  const bits = <T>(xs: T[], mask: number) => xs.filter((_, i) => (mask >> i) & 1);
  switch (o.op) {
    case 'endpoint': {
      const s = pick(snap.subnets, o.a);
      if (!s) return;
      const host = o.b % 7 === 0 ? null : pick(snap.hosts, o.b)!.id;
      await api.post(`/api/v1/subnets/${s.id}/endpoints`, { name: `e${o.c}`, hostId: host, policyGroupIds: bits(groupsOf(s.domainId), o.c).map((g) => g.id) });
      return;
    }
    case 'move': {
      const e = pick(snap.endpoints, o.a);
      if (e) await api.patch(`/api/v1/endpoints/${e.id}`, { hostId: pick(snap.hosts, o.b)!.id });
      return;
    }
    case 'unplace': {
      const e = pick(snap.endpoints, o.a);
      if (e) await api.patch(`/api/v1/endpoints/${e.id}`, { hostId: null });
      return;
    }
    case 'delete': {
      const e = pick(snap.endpoints, o.a);
      if (e) await api.del(`/api/v1/endpoints/${e.id}?cascade=true`);
      return;
    }
    case 'regroup': {
      const e = pick(snap.endpoints, o.a);
      if (e) await api.patch(`/api/v1/endpoints/${e.id}`, { policyGroupIds: bits(groupsOf(e.domainId), o.b).map((g) => g.id) });
      return;
    }
    case 'rule': {
      const d = pick(snap.domains, o.a);
      if (!d) return;
      const inD = <X extends { domainId: string; id: string }>(xs: X[]) => xs.filter((x) => x.domainId === d.id);
      const macros = snap.networkMacros.filter((m) => m.enterpriseId === d.enterpriseId);
      const mgs = snap.networkMacroGroups.filter((m) => m.enterpriseId === d.enterpriseId);
      const targets = (k: number, peer: boolean) => {
        const xs: Array<{ type: string; id: string | null } | null | undefined> = [
          { type: 'any', id: null },
          ((g) => g && { type: 'policyGroup', id: g.id })(pick(inD(snap.policyGroups), k)),
          ((s) => s && { type: 'subnet', id: s.id })(pick(inD(snap.subnets), k)),
          ((z) => z && { type: 'zone', id: z.id })(pick(inD(snap.zones), k)),
          ((e) => e && { type: 'endpoint', id: e.id })(pick(inD(snap.endpoints), k)),
          peer ? ((m) => m && { type: 'networkMacro', id: m.id })(pick(macros, k)) : null,
          peer ? ((m) => m && { type: 'networkMacroGroup', id: m.id })(pick(mgs, k)) : null,
        ];
        return xs[k % xs.length] ?? { type: 'any', id: null };
      };
      const v6 = o.b % 5 === 0;
      await api.post(`/api/v1/domains/${d.id}/acl-rules`, {
        priority: o.c % 1000,
        direction: o.b % 2 ? 'ingress' : 'egress',
        action: o.a % 2 ? 'allow' : 'deny',
        etherType: v6 ? 'ipv6' : 'ipv4',
        protocol: o.c % 3 ? 'tcp' : 'any',
        destinationPorts: o.c % 3 ? [`${1 + (o.b % 1000)}`] : [],
        appliesTo: targets(o.b >> 3, false),
        peer: targets(o.c >> 3, true),
      });
      return;
    }
    case 'updateRule': {
      const r = pick(snap.aclRules, o.a);
      if (r) await api.patch(`/api/v1/acl-rules/${r.id}`, { action: o.b % 2 ? 'allow' : 'deny', priority: o.c % 1000 });
      return;
    }
    case 'deleteRule': {
      const r = pick(snap.aclRules, o.a);
      if (r) await api.del(`/api/v1/acl-rules/${r.id}`);
      return;
    }
    case 'group': {
      const d = pick(snap.domains, o.a);
      if (d) await api.post(`/api/v1/domains/${d.id}/policy-groups`, { name: `g${o.b}` });
      return;
    }
    case 'deleteGroup': {
      const g = pick(snap.policyGroups, o.a);
      if (g) await api.del(`/api/v1/policy-groups/${g.id}?cascade=true`);
      return;
    }
    case 'subnet': {
      const z = pick(snap.zones, o.a);
      subnetSeq++;
      if (z) await api.post(`/api/v1/zones/${z.id}/subnets`, { name: `s${subnetSeq}`, cidr: o.b % 4 ? `10.${100 + (subnetSeq >> 8)}.${subnetSeq & 255}.0/24` : `fd00:${subnetSeq.toString(16)}::/64` });
      return;
    }
    case 'deleteSubnet': {
      const s = pick(snap.subnets, o.a);
      if (s && o.b % 3 === 0) await api.del(`/api/v1/subnets/${s.id}?cascade=true`);
      return;
    }
    case 'macro': {
      const e = pick(snap.enterprises, o.a);
      if (e) await api.post(`/api/v1/enterprises/${e.id}/network-macros`, { name: `m${o.b}-${o.c}`, cidr: o.c % 4 ? `198.51.${o.b % 256}.0/24` : `2001:db8:${(o.b % 65536).toString(16)}::/48` });
      return;
    }
    case 'updateMacro': {
      const m = pick(snap.networkMacros, o.a);
      if (m) await api.patch(`/api/v1/network-macros/${m.id}`, { cidr: `203.0.${o.b % 256}.0/24` });
      return;
    }
    case 'macroGroup': {
      const e = pick(snap.enterprises, o.a);
      if (e) await api.post(`/api/v1/enterprises/${e.id}/network-macro-groups`, { name: `mg${o.b}-${o.c}`, networkMacroIds: bits(snap.networkMacros.filter((m) => m.enterpriseId === e.id), o.b).map((m) => m.id) });
      return;
    }
    case 'updateDomain': {
      const d = pick(snap.domains, o.a);
      if (d) await api.patch(`/api/v1/domains/${d.id}`, { defaultIngressAction: o.b % 2 ? 'allow' : 'deny', defaultEgressAction: o.c % 2 ? 'allow' : 'deny' });
      return;
    }
    case 'vtep': {
      // moves a host's VTEP; the simulated agent stays connected through it
      const h = pick(snap.hosts, o.a);
      vtepSeq++;
      if (h && o.b % 2 === 0) await api.patch(`/api/v1/hosts/${h.id}`, { vtepIp: `192.0.2.${vtepSeq % 250}` });
      return;
    }
    default: {
      const _: never = o.op;
      return _;
    }
  }
}

function counting(api: Api, op: string) {
  const note = async <R extends { status: number }>(p: Promise<R>) => {
    const r = await p;
    const k = `${op} ${r.status}`;
    statuses.set(k, (statuses.get(k) ?? 0) + 1);
    return r;
  };
  return {
    post: (p: string, b: unknown) => note(api.post(p, b)),
    patch: (p: string, b: unknown) => note(api.patch(p, b)),
    del: (p: string) => note(api.del(p)),
  };
}

before(async () => {
  t = await startTestDirectory();
  store = createModelStore(t.db.url);
  // two enterprises, the second with two domains; four hosts
  for (const name of ['pa', 'pb']) {
    const ent = await t.api.make('/api/v1/enterprises', { name });
    for (const dn of name === 'pb' ? ['d1', 'd2'] : ['d1']) {
      const d = await t.api.make(`/api/v1/enterprises/${ent.id}/domains`, { name: `${name}-${dn}` });
      const z = await t.api.make(`/api/v1/domains/${d.id}/zones`, { name: 'z' });
      subnetSeq++;
      await t.api.make(`/api/v1/zones/${z.id}/subnets`, { name: `s${subnetSeq}`, cidr: `10.${100 + (subnetSeq >> 8)}.${subnetSeq & 255}.0/24` });
      await t.api.make(`/api/v1/domains/${d.id}/policy-groups`, { name: 'web' });
      await t.api.make(`/api/v1/domains/${d.id}/policy-groups`, { name: 'db' });
    }
  }
  c = await startTestController(t.db.url);
  for (let i = 1; i <= 4; i++) {
    const h = await t.api.make('/api/v1/hosts', { name: `ph${i}`, vtepIp: `192.0.2.${i}` });
    agents.push(new SimulatedAgent(c.agentUrl, { id: h.id, credential: h.credential, vtepIp: h.vtepIp }));
  }
});
after(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await c?.close();
  await store.close();
  await t.stop();
});

describe('controller invariant (property, real API and database)', () => {
  it('incremental state == compiled from the database == what each agent holds, after any operation sequence', async () => {
    let checks = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 15 }), async (ops) => {
        for (const o of ops) await run(t.api, await store.loadSnapshot(), o);
        const snap = await store.loadSnapshot();
        await waitUntil(() => settled(c, snap.revision, agents), `settled at revision ${snap.revision}`);
        const ref = compileAll(snap, c.controller.engine.opts);
        for (const a of agents) {
          const want = ref.get(a.host.id)!;
          assert.deepEqual(describeDifference(c.controller.engine.stateOf(a.host.id), want), [], `controller vs database, host ${a.host.id}`);
          assert.deepEqual(describeDifference(a.state, want), [], `agent vs database, host ${a.host.id}`);
          assert.equal(a.mirror.digest.value(), digestOf(want));
        }
        checks++;
      }),
      { numRuns: 60 },
    );
    assert.ok(checks >= 60);
    if (process.env.SDN_TEST_VERBOSE) console.log([...statuses].sort().join('\n'));
    // the sequences did build things (the directory accepted most operations)
    assert.ok((statuses.get('endpoint 201') ?? 0) > 20 && (statuses.get('rule 201') ?? 0) > 5 && (statuses.get('move 200') ?? 0) > 5, [...statuses].join(', '));
  });
});
