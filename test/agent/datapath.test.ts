/**
 * Real traffic through states compiled by the real compiler from a model held
 * by a real directory: three hosts on an underlay bridge, each with its own
 * datapath; two enterprises with the same 10.0.0.0/24.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HostState } from '#sdn/compiler';
import { Datapath, domainNs, listDomainNamespaces, ApplyError } from '#sdn/datapath';
import { Api, startTestDirectory, TestDirectory } from '../support/directory';
import { CompiledModel, datapathFor, deltaBetween } from '../support/agent';
import { greeting, inNs, NetnsWorld, ping, runPrefix, sh, startGreeter, TestHost, waitForLine } from '../support/netns';

interface Ep {
  id: string;
  ip: string;
  mac: string;
  name: string;
  ifName: string;
  ns: string;
  host: TestHost;
}

describe('datapath: states from the real compiler into real namespaces', () => {
  const world = new NetnsWorld(runPrefix('dp'));
  let t: TestDirectory;
  let api: Api;
  let model: CompiledModel;
  const hostIds = new Map<string, string>(); // h1 -> host id
  const paths = new Map<string, Datapath>();
  let states = new Map<string, HostState>();
  const eps = new Map<string, Ep>();
  const ids: Record<string, any> = {};

  /** recompiles every host and applies the difference as a delta (what the controller would stream) */
  async function sync(): Promise<void> {
    const next = await model.states([...hostIds.values()]);
    for (const [name, id] of hostIds) {
      const prev = states.get(id)!;
      const dp = paths.get(name)!;
      await dp.applyDelta(deltaBetween(prev, next.get(id)!));
      assert.deepEqual(dp.selfCheck(), [], `${name}: the datapath's model equals a full render of its state`);
    }
    states = next;
  }

  async function endpoint(name: string, subnet: any, host: string, groups: string[] = []): Promise<any> {
    return api.make(`/api/v1/subnets/${subnet.id}/endpoints`, {
      name,
      kind: 'container',
      hostId: hostIds.get(host),
      externalId: `${world.prefix}-${name}`,
      policyGroupIds: groups,
    });
  }

  /** plugs the endpoint's veth into a container namespace (what the CNI plugin does) */
  function plug(name: string, e: any, subnet: any, host: string): Ep {
    const h = world.host(host);
    const st = states.get(hostIds.get(host)!)!;
    const local = st.localEndpoints.get(e.id);
    assert.ok(local, `${name} is local on ${host}`);
    const ns = world.attachContainer(name, h, { ifName: local.ifName, ip: e.ip, prefixLength: Number(subnet.cidr.split('/')[1]), gateway: subnet.gateway });
    const ep = { id: e.id, ip: e.ip, mac: e.mac, name, ifName: local.ifName, ns, host: h };
    eps.set(name, ep);
    return ep;
  }

  before(async () => {
    world.setup(3);
    t = await startTestDirectory();
    api = t.api;
    model = new CompiledModel(t.db.url);
    for (const h of world.hosts) {
      const made = await api.make('/api/v1/hosts', { name: `${world.prefix}-${h.name}`, vtepIp: h.vtep });
      hostIds.set(h.name, made.id);
      paths.set(h.name, datapathFor(h));
    }
    // enterprise A: two subnets of one domain, web/app/db groups, a partner network
    const entA = await api.make('/api/v1/enterprises', { name: 'ent-a' });
    const domA = await api.make(`/api/v1/enterprises/${entA.id}/domains`, { name: 'a', defaultIngressAction: 'deny', defaultEgressAction: 'allow' });
    const zoneA = await api.make(`/api/v1/domains/${domA.id}/zones`, { name: 'a-z' });
    const a1 = await api.make(`/api/v1/zones/${zoneA.id}/subnets`, { name: 'a-front', cidr: '10.0.0.0/24' });
    const a2 = await api.make(`/api/v1/zones/${zoneA.id}/subnets`, { name: 'a-back', cidr: '10.0.1.0/24' });
    const a3 = await api.make(`/api/v1/zones/${zoneA.id}/subnets`, { name: 'a-partner', cidr: '10.0.2.0/24' });
    const web = await api.make(`/api/v1/domains/${domA.id}/policy-groups`, { name: 'web' });
    const app = await api.make(`/api/v1/domains/${domA.id}/policy-groups`, { name: 'app' });
    const db = await api.make(`/api/v1/domains/${domA.id}/policy-groups`, { name: 'db' });
    // enterprise B: the same 10.0.0.0/24, everything allowed
    const entB = await api.make('/api/v1/enterprises', { name: 'ent-b' });
    const domB = await api.make(`/api/v1/enterprises/${entB.id}/domains`, { name: 'b', defaultIngressAction: 'allow', defaultEgressAction: 'allow' });
    const zoneB = await api.make(`/api/v1/domains/${domB.id}/zones`, { name: 'b-z' });
    const b1s = await api.make(`/api/v1/zones/${zoneB.id}/subnets`, { name: 'b-front', cidr: '10.0.0.0/24' });
    Object.assign(ids, { entA, domA, a1, a2, a3, web, app, db, entB, domB, b1s });

    const rule = (body: any) => api.make(`/api/v1/domains/${domA.id}/acl-rules`, { direction: 'ingress', action: 'allow', ...body });
    await rule({ priority: 100, appliesTo: { type: 'policyGroup', id: db.id }, peer: { type: 'policyGroup', id: app.id }, protocol: 'tcp', destinationPorts: ['5432'] });
    await rule({ priority: 200, protocol: 'icmp' });
    await rule({ priority: 210, appliesTo: { type: 'policyGroup', id: app.id }, protocol: 'tcp', destinationPorts: ['8080'] });

    const e = {
      web1: await endpoint('web1', a1, 'h1', [web.id]),
      app1: await endpoint('app1', a1, 'h2', [app.id]),
      app2: await endpoint('app2', a1, 'h3', [app.id]),
      db1: await endpoint('db1', a2, 'h3', [db.id]),
      p1: await endpoint('p1', a3, 'h1'),
      p2: await endpoint('p2', a3, 'h2'),
      b1: await endpoint('b1', b1s, 'h1'),
      b2: await endpoint('b2', b1s, 'h2'),
    };
    Object.assign(ids, e);
    // a network macro: an address range outside the policy groups (here the partner p1's address)
    const partner = await api.make(`/api/v1/enterprises/${entA.id}/network-macros`, { name: 'partner', cidr: `${e.p1.ip}/32` });
    await rule({ priority: 110, appliesTo: { type: 'policyGroup', id: db.id }, peer: { type: 'networkMacro', id: partner.id }, protocol: 'tcp', destinationPorts: ['5432'] });
    ids.partner = partner;
    states = await model.states([...hostIds.values()]);
    for (const [name, id] of hostIds) await paths.get(name)!.reconcile(states.get(id)!);
    plug('web1', e.web1, a1, 'h1');
    plug('app1', e.app1, a1, 'h2');
    plug('app2', e.app2, a1, 'h3');
    plug('db1', e.db1, a2, 'h3');
    plug('p1', e.p1, a3, 'h1');
    plug('p2', e.p2, a3, 'h2');
    plug('b1', e.b1, b1s, 'h1');
    plug('b2', e.b2, b1s, 'h2');
    for (const [name, port] of [['db1', 5432], ['app1', 8080], ['app2', 8080], ['b2', 8080], ['app1', 5432]] as const) {
      const ep = eps.get(name)!;
      await waitForLine(startGreeter(world, ep.ns, port, name), 'up');
    }
  });

  after(async () => {
    world.cleanup();
    await model?.close();
    await t?.stop();
  });

  it('gives both enterprises the same addresses, in separate domain namespaces', () => {
    assert.equal(ids.web1.ip, ids.b1.ip, 'IPAM gives the first address of 10.0.0.0/24 to both tenants');
    const h1 = world.host('h1');
    assert.deepEqual(
      [...new Set(sh(['ip', '-j', 'netns', 'list']).match(new RegExp(`${h1.domainPrefix}\\d+`, 'g')))].sort(),
      [domainNs({ nsPrefix: h1.domainPrefix } as any, ids.domA.l3Vni), domainNs({ nsPrefix: h1.domainPrefix } as any, ids.domB.l3Vni)].sort(),
    );
  });

  it('carries ping and TCP between hosts in one subnet over VXLAN', () => {
    assert.ok(ping(eps.get('web1')!.ns, ids.app1.ip), 'web1 (h1) pings app1 (h2)');
    assert.ok(ping(eps.get('app1')!.ns, ids.app2.ip), 'app1 (h2) pings app2 (h3)');
    assert.equal(greeting(eps.get('web1')!.ns, ids.app1.ip, 8080), 'hello from app1', 'web1 -> app1 tcp/8080 is allowed by a rule');
  });

  it('answers ARP for remote endpoints on the local bridge (neighbour suppression)', () => {
    const web1 = eps.get('web1')!;
    const app1 = eps.get('app1')!;
    // app1 answers no ARP at all (and knows web1 statically): only h1's bridge can tell web1 app1's MAC
    sh(['ip', '-n', app1.ns, 'neigh', 'replace', web1.ip, 'lladdr', web1.mac, 'dev', 'eth0', 'nud', 'permanent']);
    inNs(app1.ns, ['nft', 'add table arp noarp; add chain arp noarp in { type filter hook input priority 0; policy drop; }']);
    sh(['ip', '-n', web1.ns, 'neigh', 'flush', 'dev', 'eth0']);
    try {
      assert.ok(ping(web1.ns, app1.ip), 'web1 learns app1 from the suppression answer and pings it');
      assert.match(sh(['ip', '-n', web1.ns, 'neigh', 'show', app1.ip]), new RegExp(app1.mac));
    } finally {
      inNs(app1.ns, ['nft', 'delete table arp noarp']);
      sh(['ip', '-n', app1.ns, 'neigh', 'del', web1.ip, 'dev', 'eth0']);
    }
  });

  it('routes between subnets of a domain over the l3Vni', () => {
    assert.ok(ping(eps.get('web1')!.ns, ids.db1.ip), 'web1 (10.0.0.0/24, h1) pings db1 (10.0.1.0/24, h3)');
    assert.ok(ping(eps.get('p2')!.ns, ids.db1.ip), 'p2 (10.0.2.0/24, h2) pings db1');
  });

  it('enforces the ACL: default deny, an allow rule, return traffic, a higher-priority deny, a network macro', async () => {
    const db = ids.db1.ip;
    assert.equal(greeting(eps.get('web1')!.ns, db, 5432), null, 'web -> db tcp/5432 is denied by default');
    assert.equal(greeting(eps.get('app1')!.ns, db, 5432), 'hello from db1', 'app -> db tcp/5432 is allowed; the greeting is return traffic');
    assert.equal(greeting(eps.get('p1')!.ns, db, 5432), 'hello from db1', 'the partner network macro allows p1');
    assert.equal(greeting(eps.get('p2')!.ns, db, 5432), null, 'p2 is outside the macro');
    assert.equal(greeting(eps.get('db1')!.ns, ids.app1.ip, 5432), null, 'the rule admits app -> db, not db -> app');

    // a deny of higher priority (lower number) for app2 wins over the app allow
    await api.make(`/api/v1/domains/${ids.domA.id}/acl-rules`, {
      priority: 50,
      direction: 'ingress',
      action: 'deny',
      appliesTo: { type: 'policyGroup', id: ids.db.id },
      peer: { type: 'endpoint', id: ids.app2.id },
      protocol: 'tcp',
      destinationPorts: ['5432'],
    });
    await sync();
    assert.equal(greeting(eps.get('app2')!.ns, db, 5432), null, 'app2 is denied by the priority-50 rule');
    assert.equal(greeting(eps.get('app1')!.ns, db, 5432), 'hello from db1', 'app1 is still allowed');
  });

  it('lets return traffic of a stateful allow pass a deny, and checks a stateless allow again', async () => {
    const db1 = eps.get('db1')!;
    await waitForLine(startGreeter(world, db1.ns, 6000, 'db1'), 'up');
    await waitForLine(startGreeter(world, db1.ns, 6001, 'db1'), 'up');
    const rule = (body: any) => api.make(`/api/v1/domains/${ids.domA.id}/acl-rules`, { action: 'allow', appliesTo: { type: 'policyGroup', id: ids.db.id }, peer: { type: 'policyGroup', id: ids.app.id }, protocol: 'tcp', ...body });
    await rule({ priority: 130, direction: 'ingress', destinationPorts: ['6000'], stateful: true });
    await rule({ priority: 131, direction: 'ingress', destinationPorts: ['6001'], stateful: false });
    // db may not send anything to app by itself
    await rule({ priority: 132, direction: 'egress', action: 'deny' });
    await sync();
    assert.equal(greeting(eps.get('app1')!.ns, db1.ip, 6000), 'hello from db1', 'stateful: the reply is established traffic');
    assert.equal(greeting(eps.get('app1')!.ns, db1.ip, 6001), null, 'stateless: the reply meets the egress deny');
  });

  it('guards sources: an endpoint cannot borrow the address of another to get its policy', async () => {
    await api.make(`/api/v1/domains/${ids.domA.id}/acl-rules`, {
      priority: 120,
      direction: 'ingress',
      action: 'allow',
      appliesTo: { type: 'policyGroup', id: ids.db.id },
      peer: { type: 'policyGroup', id: ids.app.id },
      protocol: 'udp',
      destinationPorts: ['5433'],
    });
    await sync();
    const db1 = eps.get('db1')!;
    const sink = world.spawnIn(db1.ns, [process.execPath, '-e', `const s=require('dgram').createSocket('udp4');s.on('message',(m)=>console.log('got '+m));s.bind(5433,()=>console.log('up'))`]);
    const heard: string[] = [];
    sink.stdout!.on('data', (d: Buffer) => heard.push(d.toString()));
    await waitForLine(sink, 'up');
    const send = (ns: string, from: string, text: string) =>
      inNs(ns, [process.execPath, '-e', `const s=require('dgram').createSocket('udp4');s.bind({address:'${from}'},()=>s.send('${text}',5433,'${db1.ip}',()=>s.close()))`]);
    const web1 = eps.get('web1')!;
    const app1 = eps.get('app1')!;
    // web1 takes app1's address as a second one and sends from it: the guard on web1's port drops it
    sh(['ip', '-n', web1.ns, 'addr', 'add', `${app1.ip}/32`, 'dev', 'eth0']);
    send(web1.ns, app1.ip, 'spoofed');
    sh(['ip', '-n', web1.ns, 'addr', 'del', `${app1.ip}/32`, 'dev', 'eth0']);
    // the genuine app1 is allowed; its datagram arrives after the spoofed one would have (one path, in order)
    const genuine = waitForLine(sink, 'got genuine');
    send(app1.ns, app1.ip, 'genuine');
    await genuine;
    world.kill(sink);
    assert.ok(!heard.join('').includes('spoofed'), `the spoofed datagram never reached db1: ${heard.join('')}`);
  });

  it('isolates the tenants, overlapping addresses included', () => {
    const b1 = eps.get('b1')!;
    assert.ok(ping(b1.ns, ids.b2.ip), 'b1 (h1) pings b2 (h2) in enterprise B');
    assert.equal(greeting(b1.ns, ids.b2.ip, 8080), 'hello from b2', "B's 10.0.0.x reaches B's endpoint");
    // app1 has B's b2 address? both tenants allocate in order: b2 has app1's address
    assert.equal(ids.b2.ip, ids.app1.ip);
    assert.equal(greeting(eps.get('web1')!.ns, ids.b2.ip, 8080), 'hello from app1', "A's web1 reaches A's app1 at the same address, never B's b2");
    assert.ok(!ping(b1.ns, ids.db1.ip, 1), "B cannot reach A's other subnet");
    assert.ok(!ping(b1.ns, ids.p1.ip, 1), "nor A's partner subnet");
  });

  it('carries IPv6 too: same subnet over VXLAN (ND answered locally) and routed, with neighbour discovery through the firewall', async () => {
    const zoneId = ids.a1.zoneId;
    const v6a = await api.make(`/api/v1/zones/${zoneId}/subnets`, { name: 'a-v6-front', cidr: 'fd00:a::/64' });
    const v6b = await api.make(`/api/v1/zones/${zoneId}/subnets`, { name: 'a-v6-back', cidr: 'fd00:b::/64' });
    await api.make(`/api/v1/domains/${ids.domA.id}/acl-rules`, { priority: 220, direction: 'ingress', action: 'allow', etherType: 'ipv6', protocol: 'icmpv6' });
    const x1 = await endpoint('x1', v6a, 'h1');
    const x2 = await endpoint('x2', v6a, 'h2');
    const x3 = await endpoint('x3', v6b, 'h1');
    await sync();
    plug('x1', x1, v6a, 'h1');
    plug('x2', x2, v6a, 'h2');
    plug('x3', x3, v6b, 'h1');
    assert.ok(ping(eps.get('x1')!.ns, x2.ip), `x1 (h1) pings x2 (h2) at ${x2.ip}`);
    // neighbour solicitations for x2 are answered by h1's bridge: x2 ignores them and still gets pinged
    const n1 = eps.get('x1')!;
    const n2 = eps.get('x2')!;
    sh(['ip', '-n', n2.ns, 'neigh', 'replace', n1.ip, 'lladdr', n1.mac, 'dev', 'eth0', 'nud', 'permanent']);
    inNs(n2.ns, ['nft', 'add table ip6 nond; add chain ip6 nond in { type filter hook input priority 0; icmpv6 type nd-neighbor-solicit drop; }']);
    sh(['ip', '-n', n1.ns, 'neigh', 'flush', 'dev', 'eth0']);
    try {
      assert.ok(ping(n1.ns, x2.ip), 'x1 learns x2 from the suppression answer');
      assert.match(sh(['ip', '-n', n1.ns, 'neigh', 'show', x2.ip]), new RegExp(x2.mac));
    } finally {
      inNs(n2.ns, ['nft', 'delete table ip6 nond']);
      sh(['ip', '-n', n2.ns, 'neigh', 'del', n1.ip, 'dev', 'eth0']);
    }
    assert.ok(ping(eps.get('x2')!.ns, x3.ip), `x2 (h2) pings x3 (h1, another subnet: over the l3Vni) at ${x3.ip}`);
  });

  it('folds nested prefixes of a macro group into one interval set, and unfolds them when the outer one goes', async () => {
    const wide = await api.make(`/api/v1/enterprises/${ids.entA.id}/network-macros`, { name: 'wide', cidr: '172.16.0.0/12' });
    const narrow = await api.make(`/api/v1/enterprises/${ids.entA.id}/network-macros`, { name: 'narrow', cidr: '172.17.0.0/16' });
    const group = await api.make(`/api/v1/enterprises/${ids.entA.id}/network-macro-groups`, { name: 'nested', networkMacroIds: [wide.id, narrow.id] });
    await api.make(`/api/v1/domains/${ids.domA.id}/acl-rules`, { priority: 300, direction: 'egress', action: 'allow', peer: { type: 'networkMacroGroup', id: group.id } });
    await sync(); // nft refuses overlapping intervals: only the /12 goes in
    const h1 = world.host('h1');
    const nft = () => inNs(domainNs({ nsPrefix: h1.domainPrefix } as any, ids.domA.l3Vni), ['nft', 'list', 'table', 'inet', 'sdn']);
    assert.match(nft(), /172\.16\.0\.0\/12/);
    assert.doesNotMatch(nft(), /172\.17\.0\.0\/16/);
    const g = (await api.get(`/api/v1/network-macro-groups/${group.id}`)).body;
    const r = await api.patch(`/api/v1/network-macro-groups/${group.id}`, { networkMacroIds: [narrow.id] }, { 'if-match': `"${g.revision}"` });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await sync();
    assert.match(nft(), /172\.17\.0\.0\/16/);
    assert.doesNotMatch(nft(), /172\.16\.0\.0\/12/);
  });

  it('moves an endpoint: FDB, neighbours and sets follow it to its new host', async () => {
    const app2 = eps.get('app2')!;
    const r = await api.patch(`/api/v1/endpoints/${app2.id}`, { hostId: hostIds.get('h2') });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await sync();
    const h1 = world.host('h1');
    const fdb = kernelText(h1, ids.domA.l3Vni);
    assert.match(fdb, new RegExp(`${app2.mac} dev vx\\d+ dst ${world.host('h2').vtep}`), 'h1 sends app2 to h2 now');
    assert.doesNotMatch(fdb, new RegExp(`${app2.mac} dev vx\\d+ dst ${world.host('h3').vtep}`), 'and no longer to h3');
    // the container follows: its old veth went with the local endpoint on h3, a new one waits on h2
    sh(['ip', 'netns', 'del', app2.ns]);
    eps.delete('app2');
    plug('app2', { id: app2.id, ip: app2.ip, mac: app2.mac }, ids.a1, 'h2');
    assert.ok(ping(eps.get('web1')!.ns, app2.ip), 'web1 (h1) pings app2 at h2');
  });

  it('deletes an endpoint: its FDB, neighbour, route and set entries leave every host', async () => {
    const db1 = eps.get('db1')!;
    const before = world.hosts.map((h) => kernelText(h, ids.domA.l3Vni));
    assert.ok(before.every((text) => text.includes(db1.ip)), 'every host knows db1 before');
    assert.equal((await api.del(`/api/v1/endpoints/${db1.id}`)).status, 204);
    await sync();
    for (const h of world.hosts) {
      const text = kernelText(h, ids.domA.l3Vni);
      assert.ok(!text.includes(db1.ip) && !text.includes(db1.mac), `${h.name} forgot db1: ${text.split('\n').filter((l) => l.includes(db1.ip) || l.includes(db1.mac)).join(' / ')}`);
    }
    // h3 had only db1 (app2 moved away): enterprise A's namespace is gone from h3
    const h3 = world.host('h3');
    const left = await listDomainNamespaces({ nsPrefix: h3.domainPrefix } as any);
    assert.ok(![...left.values()].includes(ids.domA.l3Vni), 'the domain left h3');
    assert.ok(ping(eps.get('web1')!.ns, ids.app1.ip), 'the others still talk');
  });

  it('restarts without disturbing an established TCP connection; a second reconcile finds nothing to do', async () => {
    const app1 = eps.get('app1')!;
    const web1 = eps.get('web1')!;
    const conn = world.spawnIn(web1.ns, [process.execPath, '-e', LINE_CLIENT(app1.ip, 8080)]);
    await waitForLine(conn, 'hello from app1');
    for (const h of world.hosts) {
      const fresh = datapathFor(h); // a new agent process: knows nothing, reads the kernel
      const r = await fresh.reconcile(states.get(hostIds.get(h.name)!)!);
      assert.equal(r.changes, 0, `${h.name}: the kernel already holds the state`);
      paths.set(h.name, fresh);
    }
    const echoed = waitForLine(conn, 'still-here');
    conn.stdin!.write('still-here\n');
    await echoed;
    world.kill(conn);
  });

  it('repairs drift: what was removed behind its back comes back at the next reconcile, nothing else changes', async () => {
    const h1 = world.host('h1');
    const dp = paths.get('h1')!;
    const ns = domainNs({ nsPrefix: h1.domainPrefix } as any, ids.domA.l3Vni);
    const app1 = eps.get('app1')!;
    sh(['bridge', '-n', ns, 'fdb', 'del', app1.mac, 'dev', `vx${ids.a1.l2Vni}`, 'master']);
    sh(['ip', '-n', ns, 'neigh', 'del', app1.ip, 'dev', `br${ids.a1.l2Vni}`]);
    const r = await dp.reconcile(dp.state);
    assert.equal(r.changes, 2, 'two objects were missing');
    assert.match(sh(['bridge', '-n', ns, 'fdb', 'show', 'dev', `vx${ids.a1.l2Vni}`]), new RegExp(`${app1.mac} master br${ids.a1.l2Vni} static`));
    assert.equal((await dp.reconcile(dp.state)).changes, 0);
    assert.ok(ping(eps.get('web1')!.ns, app1.ip));
  });

  it('rejects a version the kernel refuses with its message, and keeps the last good state', async () => {
    const h1 = world.host('h1');
    const dp = paths.get('h1')!;
    const good = dp.state;
    // something in the way: a device with the name the next subnet's bridge needs
    const a4 = await api.make(`/api/v1/zones/${(await api.get(`/api/v1/subnets/${ids.a1.id}`)).body.zoneId}/subnets`, { name: 'a-extra', cidr: '10.0.3.0/24' });
    const ns = domainNs({ nsPrefix: h1.domainPrefix } as any, ids.domA.l3Vni);
    sh(['ip', '-n', ns, 'link', 'add', `br${a4.l2Vni}`, 'type', 'veth', 'peer', 'name', 'blocker']);
    const extra = await endpoint('extra', a4, 'h1');
    const next = await model.states([...hostIds.values()]);
    await assert.rejects(dp.applyDelta(deltaBetween(states.get(hostIds.get('h1')!)!, next.get(hostIds.get('h1')!)!)), (e: unknown) => {
      assert.ok(e instanceof ApplyError);
      assert.match(e.message, /File exists/, 'the kernel says why');
      assert.ok(e.rolledBack);
      return true;
    });
    assert.equal(dp.state, good, 'the last good state is kept');
    assert.ok(ping(eps.get('web1')!.ns, ids.app1.ip), 'and forwards');
    // once the obstacle is gone the same version applies
    sh(['ip', '-n', ns, 'link', 'del', 'blocker']);
    await sync();
    assert.ok(paths.get('h1')!.state.localEndpoints.has(extra.id));
  });
});

/** a client that keeps one connection open and echoes what the server sends back for each stdin line */
const LINE_CLIENT = (ip: string, port: number) =>
  `const s=require('net').connect(${port},'${ip}');s.on('data',(d)=>process.stdout.write(d));s.on('error',(e)=>{console.log('error '+e.message);process.exit(1)});` +
  `process.stdin.on('data',(d)=>s.write(d));`;

/** FDB, permanent neighbours, routes and nftables of a host's domain namespace, as text ('' when the domain is not there); learned neighbours age on their own */
function kernelText(h: TestHost, l3Vni: number): string {
  const ns = domainNs({ nsPrefix: h.domainPrefix } as any, l3Vni);
  try {
    return [
      sh(['bridge', '-n', ns, 'fdb', 'show']),
      sh(['ip', '-n', ns, 'neigh', 'show', 'nud', 'permanent']),
      sh(['ip', '-n', ns, 'route', 'show']),
      inNs(ns, ['nft', 'list', 'table', 'inet', 'sdn']),
    ].join('\n');
  } catch {
    return '';
  }
}
