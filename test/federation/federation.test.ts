import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { decode, encode, type Update } from '#sdn/bgp';
import type { Change, Domain, Endpoint, Host, ModelSnapshot, PolicyGroup, Subnet } from '#sdn/model';
import { EvpnAdvert, EvpnExporter, EvpnImporter, FederationModel, parseCommunityTag, ReceivedRoute } from '#sdn/federation';

// A small model world: plain objects as the directory would return them.
let rev = 0;
const meta = () => ({ id: randomUUID(), createdAt: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:00Z', revision: ++rev });

function world() {
  const s: ModelSnapshot = {
    revision: 0, enterprises: [], domains: [], zones: [], subnets: [], hosts: [], endpoints: [],
    policyGroups: [], networkMacros: [], networkMacroGroups: [], aclRules: [], bgpSpeakers: [], bgpNeighbors: [],
  };
  const domain = (enterpriseId: string, l3Vni: number, rts: string[] = []): Domain => {
    const d: Domain = { ...meta(), enterpriseId, name: `d${l3Vni}`, description: '', routeDistinguisher: null, importRouteTargets: rts, exportRouteTargets: rts, l3Vni, defaultIngressAction: 'deny', defaultEgressAction: 'allow' };
    s.domains.push(d);
    return d;
  };
  const subnet = (d: Domain, cidr: string, l2Vni: number): Subnet => {
    const sn: Subnet = { ...meta(), enterpriseId: d.enterpriseId, domainId: d.id, zoneId: randomUUID(), name: cidr, description: '', cidr, ipVersion: cidr.includes(':') ? 6 : 4, gateway: '', l2Vni, reservedRanges: [] };
    s.subnets.push(sn);
    return sn;
  };
  const host = (vtepIp: string): Host => {
    const h: Host = { ...meta(), name: vtepIp, description: '', vtepIp, status: 'up', lastSeenAt: null };
    s.hosts.push(h);
    return h;
  };
  const group = (d: Domain, name: string, communityTag: string | null): PolicyGroup => {
    const g: PolicyGroup = { ...meta(), enterpriseId: d.enterpriseId, domainId: d.id, name, description: '', communityTag };
    s.policyGroups.push(g);
    return g;
  };
  let n = 0;
  const endpoint = (sn: Subnet, h: Host | null, groups: PolicyGroup[] = []): Endpoint => {
    n++;
    const e: Endpoint = {
      ...meta(), enterpriseId: sn.enterpriseId, domainId: sn.domainId, zoneId: sn.zoneId, subnetId: sn.id, hostId: h?.id ?? null,
      kind: 'container', name: `e${n}`, externalId: null, mac: `02:00:00:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`,
      ip: sn.ipVersion === 4 ? sn.cidr.replace(/0\/\d+$/, String(10 + n)) : sn.cidr.replace(/\/\d+$/, (10 + n).toString(16)),
      policyGroupIds: groups.map((g) => g.id), status: 'active',
    };
    s.endpoints.push(e);
    return e;
  };
  return { s, domain, subnet, host, group, endpoint };
}

const change = <K extends Change['kind']>(kind: K, op: Change['op'], id: string, state: any): Change =>
  ({ revision: ++rev, kind, op, id, enterpriseId: state?.enterpriseId ?? null, state, committedAt: '' }) as Change;

const received = (a: EvpnAdvert, peer = '10.255.0.9'): ReceivedRoute => ({
  route: a.route, nextHop: a.nextHop, extendedCommunities: a.extendedCommunities, communities: a.communities,
  largeCommunities: a.largeCommunities, pmsiTunnel: a.pmsiTunnel, peer,
});

/** The advert as a BGP UPDATE, encoded and decoded by the speaker's codec. */
function overTheWire(a: EvpnAdvert): ReceivedRoute {
  const u: Update = {
    type: 'update', withdrawn: [], nlri: [],
    attributes: {
      origin: 0, asPath: [], localPref: 100,
      mpReach: { family: 'l2vpn-evpn', nextHops: [a.nextHop], nlri: [a.route] },
      extendedCommunities: a.extendedCommunities,
      ...(a.communities.length ? { communities: a.communities } : {}),
      ...(a.largeCommunities.length ? { largeCommunities: a.largeCommunities } : {}),
      ...(a.pmsiTunnel ? { pmsiTunnel: a.pmsiTunnel } : {}),
    },
  };
  const m = decode(encode(u)) as Update;
  assert.equal(m.type, 'update');
  assert.deepEqual(m.issues ?? [], []);
  const reach = m.attributes.mpReach!;
  assert.equal(reach.family, 'l2vpn-evpn');
  return {
    route: (reach as { nlri: any[] }).nlri[0], nextHop: (reach as { nextHops: string[] }).nextHops[0],
    extendedCommunities: m.attributes.extendedCommunities ?? [], communities: m.attributes.communities ?? [],
    largeCommunities: m.attributes.largeCommunities ?? [], pmsiTunnel: m.attributes.pmsiTunnel, peer: '10.255.0.9',
  };
}

describe('federation: community tags', () => {
  it('reads standard and large communities and refuses out-of-range parts', () => {
    assert.deepEqual(parseCommunityTag('65000:100'), { kind: 'standard', value: 65000 * 65536 + 100 });
    assert.deepEqual(parseCommunityTag('4200000000:1:2'), { kind: 'large', value: { global: 4200000000, local1: 1, local2: 2 } });
    for (const bad of ['65536:1', '1:65536', 'a:b', '1:2:3:4', '4294967296:1:1', '', ':1']) assert.equal(parseCommunityTag(bad), null, bad);
  });
});

describe('federation: export', () => {
  it('advertises each placed endpoint as a type-2 route with its VNIs, VTEP, router MAC, targets and group communities', () => {
    const w = world();
    const d = w.domain('ent-a', 50001, ['65000:50001']);
    const sn = w.subnet(d, '10.0.0.0/24', 10001);
    const h = w.host('10.255.0.1');
    const web = w.group(d, 'web', '65000:10');
    const db = w.group(d, 'db', '65000:1:20');
    const e = w.endpoint(sn, h, [web, db]);
    w.endpoint(sn, null); // not placed: nothing to advertise
    const x = new EvpnExporter({ asn: 65000, routerId: '10.255.0.100' });
    x.load(w.s);
    const t2 = x.routes().filter((a) => a.route.routeType === 2);
    assert.equal(t2.length, 1);
    const a = t2[0];
    assert.deepEqual(a.route, { routeType: 2, rd: '100:10001', esi: '00:00:00:00:00:00:00:00:00:00', ethernetTag: 0, mac: e.mac, ip: e.ip, labels: [10001, 50001] });
    assert.equal(a.nextHop, '10.255.0.1');
    assert.deepEqual(a.extendedCommunities, [
      { kind: 'route-target', value: '65000:50001' },
      { kind: 'encapsulation', tunnelType: 8 },
      { kind: 'router-mac', mac: '02:00:0a:ff:00:01' },
    ]);
    assert.deepEqual(a.communities, [65000 * 65536 + 10]);
    assert.deepEqual(a.largeCommunities, [{ global: 65000, local1: 1, local2: 20 }]);
  });

  it('advertises one type-3 route per host and subnet while the host has endpoints there, and a type-5 per subnet', () => {
    const w = world();
    const d = w.domain('ent-a', 50001);
    const sn = w.subnet(d, '10.0.0.0/24', 10001);
    const h1 = w.host('10.255.0.1');
    const h2 = w.host('10.255.0.2');
    const e1 = w.endpoint(sn, h1);
    const e2 = w.endpoint(sn, h1);
    const x = new EvpnExporter({ asn: 65000, routerId: '10.255.0.100' });
    x.load(w.s);
    const t3 = () => x.routes().filter((a) => a.route.routeType === 3).map((a) => a.nextHop).sort();
    assert.deepEqual(t3(), ['10.255.0.1']);
    const a3 = x.routes().find((a) => a.route.routeType === 3)!;
    assert.deepEqual(a3.pmsiTunnel, { flags: 0, tunnelType: 6, label: 10001, tunnelId: '10.255.0.1' });
    assert.ok(a3.extendedCommunities.some((c) => c.kind === 'route-target' && c.value === '65000:50001'), 'default RT asn:l3Vni');
    x.takeUpdates();
    x.apply(change('endpoint', 'update', e2.id, { ...e2, hostId: h2.id }));
    assert.deepEqual(t3(), ['10.255.0.1', '10.255.0.2']);
    x.apply(change('endpoint', 'delete', e1.id, null));
    assert.deepEqual(t3(), ['10.255.0.2']);
    const u = x.takeUpdates();
    assert.ok(u.withdraw.some((a) => a.route.routeType === 3 && a.nextHop === '10.255.0.1'));
    assert.ok(u.withdraw.some((a) => a.route.routeType === 2 && a.route.mac === e1.mac));
    const t5 = x.routes().filter((a) => a.route.routeType === 5);
    assert.equal(t5.length, 1);
    assert.deepEqual(t5[0].route, { routeType: 5, rd: '100:50001', esi: '00:00:00:00:00:00:00:00:00:00', ethernetTag: 0, prefix: '10.0.0.0/24', gateway: '0.0.0.0', label: 50001 });
    assert.equal(t5[0].nextHop, '10.255.0.2', 'the only host left with endpoints');
    x.apply(change('endpoint', 'delete', e2.id, null));
    assert.deepEqual(x.routes(), [], 'no endpoints, no routes');
  });

  it('gives two tenants with the same prefix distinct route distinguishers and targets', () => {
    const w = world();
    const h = w.host('10.255.0.1');
    for (const [ent, l3, l2] of [['a', 50001, 10001], ['b', 50002, 10002]] as const) {
      const d = w.domain(ent, l3);
      w.endpoint(w.subnet(d, '10.0.0.0/24', l2), h);
    }
    const x = new EvpnExporter({ asn: 65000, routerId: '10.255.0.100' });
    x.load(w.s);
    const keys = x.routes().map((a) => a.key);
    assert.equal(new Set(keys).size, keys.length);
    assert.equal(x.routes().filter((a) => a.route.routeType === 5).length, 2);
  });

  it('raises the MAC mobility sequence when an endpoint moves, and above the one learned from another datacenter', () => {
    const w = world();
    const d = w.domain('ent-a', 50001);
    const sn = w.subnet(d, '10.0.0.0/24', 10001);
    const h1 = w.host('10.255.0.1');
    const h2 = w.host('10.255.0.2');
    const e = w.endpoint(sn, h1);
    const remote = new Map<string, number>();
    const x = new EvpnExporter({ asn: 65000, routerId: '10.255.0.100' }, (_d, mac) => remote.get(mac));
    x.load(w.s);
    const seq = () => {
      const a = x.routes().find((r) => r.route.routeType === 2)!;
      const m = a.extendedCommunities.find((c) => c.kind === 'mac-mobility');
      return m?.kind === 'mac-mobility' ? m.sequence : 0;
    };
    assert.equal(seq(), 0);
    x.apply(change('endpoint', 'update', e.id, { ...e, hostId: h2.id }));
    assert.equal(seq(), 1);
    x.apply(change('endpoint', 'update', e.id, { ...e, hostId: h1.id }));
    assert.equal(seq(), 2);
    // the endpoint left, then came back from another datacenter that advertised it with sequence 7
    x.apply(change('endpoint', 'delete', e.id, null));
    remote.set(e.mac, 7);
    x.apply(change('endpoint', 'create', e.id, { ...e, hostId: h2.id }));
    assert.equal(seq(), 8);
  });

  it('keeps the incrementally maintained routes equal to a fresh export, and its update stream equal to both', () => {
    const op = fc.oneof(
      fc.record({ t: fc.constant('place' as const), ep: fc.nat(11), host: fc.nat(3) }),
      fc.record({ t: fc.constant('unplace' as const), ep: fc.nat(11) }),
      fc.record({ t: fc.constant('delete' as const), ep: fc.nat(11) }),
      fc.record({ t: fc.constant('groups' as const), ep: fc.nat(11), mask: fc.nat(3) }),
      fc.record({ t: fc.constant('tag' as const), g: fc.nat(1), v: fc.nat(5) }),
      fc.record({ t: fc.constant('vtep' as const), host: fc.nat(3), v: fc.nat(200) }),
      fc.record({ t: fc.constant('rt' as const), v: fc.nat(3) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const w = world();
        const d = w.domain('ent-a', 50001);
        const subnets = [w.subnet(d, '10.0.0.0/24', 10001), w.subnet(d, '10.0.1.0/24', 10002)];
        const hosts = [0, 1, 2, 3].map((i) => w.host(`10.255.0.${i + 1}`));
        const groups = [w.group(d, 'g0', '65000:1'), w.group(d, 'g1', '65000:2:3')];
        const eps = Array.from({ length: 12 }, (_, i) => w.endpoint(subnets[i % 2], i % 3 === 0 ? null : hosts[i % 4]));
        const x = new EvpnExporter({ asn: 65000, routerId: '10.255.0.100' });
        x.load(w.s);
        const seen = new Map(x.takeUpdates().advertise.map((a) => [a.key, a]));
        const cur = { eps: new Map(eps.map((e) => [e.id, e])), hosts: [...hosts], groups: [...groups], d };
        for (const o of ops) {
          if (o.t === 'place' || o.t === 'unplace' || o.t === 'groups') {
            const e0 = eps[o.ep];
            const e = cur.eps.get(e0.id) ?? e0;
            const next: Endpoint =
              o.t === 'place' ? { ...e, hostId: cur.hosts[o.host].id }
              : o.t === 'unplace' ? { ...e, hostId: null }
              : { ...e, policyGroupIds: cur.groups.filter((_, i) => (o.mask >> i) & 1).map((g) => g.id) };
            x.apply(change('endpoint', cur.eps.has(e.id) ? 'update' : 'create', e.id, next));
            cur.eps.set(e.id, next);
          } else if (o.t === 'delete') {
            const id = eps[o.ep].id;
            if (!cur.eps.has(id)) continue;
            x.apply(change('endpoint', 'delete', id, null));
            cur.eps.delete(id);
          } else if (o.t === 'tag') {
            const g = { ...cur.groups[o.g], communityTag: `65000:${o.v}` };
            cur.groups[o.g] = g;
            x.apply(change('policyGroup', 'update', g.id, g));
          } else if (o.t === 'vtep') {
            const h = { ...cur.hosts[o.host], vtepIp: `10.254.${o.host}.${o.v}` };
            cur.hosts[o.host] = h;
            x.apply(change('host', 'update', h.id, h));
          } else {
            cur.d = { ...cur.d, exportRouteTargets: [`65000:${o.v}`], importRouteTargets: [`65000:${o.v}`] };
            x.apply(change('domain', 'update', cur.d.id, cur.d));
          }
          const u = x.takeUpdates();
          for (const a of u.withdraw) seen.delete(a.key);
          for (const a of u.advertise) seen.set(a.key, a);
        }
        const fresh = new EvpnExporter({ asn: 65000, routerId: '10.255.0.100' });
        fresh.load({ ...w.s, domains: [cur.d], hosts: cur.hosts, policyGroups: cur.groups, endpoints: [...cur.eps.values()] });
        // sequences are history, which a fresh export does not have
        const strip = (a: EvpnAdvert) => ({ ...a, extendedCommunities: a.extendedCommunities.filter((c) => c.kind !== 'mac-mobility') });
        const norm = (l: EvpnAdvert[]) => l.map(strip).sort((p, q) => (p.key < q.key ? -1 : 1));
        assert.deepEqual(norm(x.routes()), norm(fresh.routes()));
        assert.deepEqual(norm([...seen.values()]), norm(x.routes()));
      }),
      { numRuns: 150 },
    );
  });
});

describe('federation: import', () => {
  function twoDatacenters() {
    // datacenter 1 exports; datacenter 2 has the same domain (same targets, same stretched subnet VNI)
    // and its own policy groups with the same community tags
    const w1 = world();
    const d1 = w1.domain('ent-a-dc1', 50001, ['65000:7001']);
    const sn1 = w1.subnet(d1, '10.0.0.0/24', 10001);
    const only1 = w1.subnet(d1, '10.9.0.0/24', 10009);
    const db1 = w1.group(d1, 'db', '65000:20');
    const app1 = w1.group(d1, 'app', '65000:1:30');
    const h1 = w1.host('10.255.1.1');
    const e = w1.endpoint(sn1, h1, [db1, app1]);
    const routed = w1.endpoint(only1, h1, []);
    const w2 = world();
    const d2 = w2.domain('ent-a-dc2', 50077, ['65000:7001']);
    const sn2 = w2.subnet(d2, '10.0.0.0/24', 10001);
    const db2 = w2.group(d2, 'db', '65000:20');
    const app2 = w2.group(d2, 'app', '65000:1:30');
    w2.group(d2, 'web', '65000:10');
    const other = w2.domain('ent-b', 50099, ['65000:9999']);
    w2.subnet(other, '10.0.0.0/24', 10099);
    const x = new EvpnExporter({ asn: 65000, routerId: '10.255.1.100' });
    x.load(w1.s);
    const m2 = new FederationModel();
    m2.load(w2.s);
    return { x, m2, e, routed, d2, sn2, db2, app2, other };
  }

  it('turns routes from another datacenter, sent through the BGP codec, into remote endpoints, VTEPs and prefixes of the right domain and groups', () => {
    const { x, m2, e, routed, d2, sn2, db2, app2 } = twoDatacenters();
    const imp = new EvpnImporter(m2, 65000);
    const got = x.routes().map((a) => imp.classify(overTheWire(a)));
    const eps = got.filter((g) => g.kind === 'endpoint').map((g) => (g as any).endpoint);
    const stretched = eps.find((r) => r.mac === e.mac)!;
    assert.deepEqual(
      { domainId: stretched.domainId, subnetId: stretched.subnetId, ip: stretched.ip, vtepIp: stretched.vtepIp, l2Vni: stretched.l2Vni, l3Vni: stretched.l3Vni, routerMac: stretched.routerMac, groups: stretched.policyGroupIds },
      { domainId: d2.id, subnetId: sn2.id, ip: e.ip, vtepIp: '10.255.1.1', l2Vni: 10001, l3Vni: 50001, routerMac: '02:00:0a:ff:01:01', groups: [db2.id, app2.id].sort() },
    );
    const r = eps.find((x2) => x2.mac === routed.mac)!;
    assert.equal(r.subnetId, null, 'a subnet that exists only in datacenter 1 is reached by routing');
    assert.equal(r.domainId, d2.id);
    const vteps = got.filter((g) => g.kind === 'vtep').map((g) => (g as any).vtep);
    assert.deepEqual(vteps.map((v) => [v.subnetId, v.vtepIp]), [[sn2.id, '10.255.1.1']]);
    const ignored = got.filter((g) => g.kind === 'ignored');
    assert.equal(ignored.length, 1, 'the type-3 of a subnet datacenter 2 does not have');
    const prefixes = got.filter((g) => g.kind === 'prefix').map((g) => (g as any).prefix.prefix).sort();
    assert.deepEqual(prefixes, ['10.0.0.0/24', '10.9.0.0/24']);
    // nothing landed in the other tenant, which has the same CIDR
    assert.ok(got.every((g) => g.kind === 'ignored' || (g as any)[g.kind].domainId === d2.id));
  });

  it('imports nothing when route targets name domains of two enterprises, nor routes without VXLAN encapsulation, nor its own', () => {
    const { x, m2, other } = twoDatacenters();
    const imp = new EvpnImporter(m2, 65000, (ip) => ip === '10.255.1.1');
    const a = x.routes().find((r) => r.route.routeType === 2)!;
    assert.match((imp.classify(received(a)) as any).reason, /local VTEP/);
    const imp2 = new EvpnImporter(m2, 65000);
    const both = { ...a, extendedCommunities: [...a.extendedCommunities, { kind: 'route-target' as const, value: '65000:9999' }] };
    assert.match((imp2.classify(received(both)) as any).reason, /2 enterprises/);
    const mpls = { ...a, extendedCommunities: a.extendedCommunities.filter((c) => c.kind !== 'encapsulation') };
    assert.match((imp2.classify(received(mpls)) as any).reason, /VXLAN/);
    // a route may not take a local endpoint's address with another MAC (the same MAC is a move)
    const m3 = new FederationModel();
    const w3 = world();
    const d3 = w3.domain('ent-a-dc2', 50077, ['65000:7001']);
    const s3 = w3.subnet(d3, '10.0.0.0/24', 10001);
    const mine = w3.endpoint(s3, w3.host('10.255.2.1'));
    m3.load(w3.s);
    const imp3 = new EvpnImporter(m3, 65000);
    const steal = { ...a, route: { ...(a.route as any), ip: mine.ip, mac: '02:66:66:66:66:66' } };
    const refused = imp3.classify(received(steal)) as any;
    assert.equal(refused.kind, 'ignored');
    assert.match(refused.reason, /belongs to local endpoint/);
    assert.equal(refused.conflict, `${d3.id}|${mine.ip}`);
    const moving = { ...a, route: { ...(a.route as any), ip: mine.ip, mac: mine.mac } };
    assert.equal(imp3.classify(received(moving)).kind, 'endpoint', 'the same MAC elsewhere is the endpoint moving');
    // an address of a local subnet arriving with another VNI would be bridged into the wrong segment
    const otherVni = { ...a, route: { ...(a.route as any), labels: [10555, 50001] } };
    assert.match((imp2.classify(received(otherVni)) as any).reason, /same l2Vni/);
    void other;
  });
});
