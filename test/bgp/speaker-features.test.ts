import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { BgpSpeaker, encode, policy, parseCommunity, type Notification } from '#sdn/bgp';
import { RawPeer } from './support/raw-peer.js';
import { waitFor } from './support/wait.js';

const stopAll: (() => Promise<void>)[] = [];
after(async () => {
  for (const s of stopAll) await s();
});

function ours(asn: number, routerId: string, address: string, port: number | false): BgpSpeaker {
  const s = new BgpSpeaker({ asn, routerId, listen: port === false ? false : { address, port }, holdTime: 30 });
  stopAll.push(() => s.stop());
  return s;
}

describe('route reflection (RFC 4456)', () => {
  it('reflects client routes to clients and non-clients with ORIGINATOR_ID and CLUSTER_LIST, and non-client routes to clients only', async () => {
    const rr = ours(65010, '10.0.1.1', '127.0.7.1', 21850);
    const c1 = ours(65010, '10.0.1.2', '127.0.7.2', false);
    const c2 = ours(65010, '10.0.1.3', '127.0.7.3', false);
    const n1 = ours(65010, '10.0.1.4', '127.0.7.4', false);
    const n2 = ours(65010, '10.0.1.5', '127.0.7.5', false);
    await rr.start();
    for (const [s, addr] of [[c1, '127.0.7.2'], [c2, '127.0.7.3'], [n1, '127.0.7.4'], [n2, '127.0.7.5']] as const) {
      rr.addNeighbor({ address: addr, asn: 65010, passive: true, routeReflectorClient: addr === '127.0.7.2' || addr === '127.0.7.3' });
      s.addNeighbor({ address: '127.0.7.1', port: 21850, asn: 65010, localAddress: addr, connectRetryTime: 1 });
      await s.start();
    }
    await waitFor('all sessions', () => rr.neighbors().every((n) => n.state === 'established'));
    c1.addRoute({ family: 'ipv4-unicast', prefix: '10.120.0.0/16', nextHop: '10.255.1.2' });
    n1.addRoute({ family: 'ipv4-unicast', prefix: '10.121.0.0/16', nextHop: '10.255.1.4' });
    const atC2 = await waitFor('client route at the other client', () => c2.route('ipv4-unicast', '10.120.0.0/16'));
    assert.equal(atC2.attributes.originatorId, '10.0.1.2');
    assert.deepEqual(atC2.attributes.clusterList, ['10.0.1.1']);
    assert.equal(atC2.attributes.localPref, 100);
    assert.equal(atC2.nextHop, '10.255.1.2', 'iBGP keeps the next hop');
    await waitFor('client route at a non-client', () => n2.route('ipv4-unicast', '10.120.0.0/16'));
    await waitFor('non-client route at a client', () => c1.route('ipv4-unicast', '10.121.0.0/16'));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(n2.route('ipv4-unicast', '10.121.0.0/16'), undefined, 'non-client routes are not reflected to non-clients');
    assert.equal(c1.adjRibIn('127.0.7.1', 'ipv4-unicast').some((r) => r.key === '10.120.0.0/16'), false, 'not reflected back to the originator');
  });
});

describe('eBGP transit', () => {
  it('passes routes on with its AS prepended, next-hop-self for unicast, the EVPN next hop unchanged, MED and LOCAL_PREF stripped', async () => {
    const a = ours(65070, '10.0.7.1', '127.0.13.1', false);
    const b = ours(65071, '10.0.7.2', '127.0.13.2', 21910);
    const c = ours(65072, '10.0.7.3', '127.0.13.3', false);
    await b.start();
    b.addNeighbor({ address: '127.0.13.1', asn: 65070, passive: true });
    b.addNeighbor({ address: '127.0.13.3', asn: 65072, passive: true });
    a.addNeighbor({ address: '127.0.13.2', port: 21910, asn: 65071, localAddress: '127.0.13.1', connectRetryTime: 1 });
    c.addNeighbor({ address: '127.0.13.2', port: 21910, asn: 65071, localAddress: '127.0.13.3', connectRetryTime: 1 });
    await a.start();
    await c.start();
    a.addRoute({ family: 'ipv4-unicast', prefix: '10.170.0.0/16', nextHop: '10.255.7.1', attributes: { med: 50, localPref: 300 } });
    const evpn = { routeType: 3 as const, rd: '10.0.7.1:1', ethernetTag: 0, originatorIp: '10.255.7.1' };
    a.addRoute({ family: 'l2vpn-evpn', route: evpn, nextHop: '10.255.7.1', attributes: { extendedCommunities: [{ kind: 'route-target', value: '65070:1' }] } });
    const r = await waitFor('route at c', () => c.route('ipv4-unicast', '10.170.0.0/16'));
    assert.deepEqual(r.attributes.asPath, [{ type: 'sequence', asns: [65071, 65070] }]);
    assert.equal(r.nextHop, '127.0.13.2');
    assert.equal(r.attributes.med, undefined);
    assert.equal(r.attributes.localPref, undefined);
    const e = await waitFor('EVPN route at c', () => c.route('l2vpn-evpn', evpn));
    assert.equal(e.nextHop, '10.255.7.1');
    assert.deepEqual(e.attributes.extendedCommunities, [{ kind: 'route-target', value: '65070:1' }]);
    a.withdrawRoute({ family: 'ipv4-unicast', prefix: '10.170.0.0/16' });
    await waitFor('withdrawal reaches c', () => c.route('ipv4-unicast', '10.170.0.0/16') === undefined);
  });
});

// Containers without IPv6 on loopback skip this one.
const hasIpv6Loopback = Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address === '::1'));

describe('IPv6 transport', () => {
  it('runs a session between IPv6 addresses and carries IPv4 and IPv6 routes over it', { skip: !hasIpv6Loopback && 'no ::1 on this host' }, async () => {
    const a = ours(65090, '10.0.9.1', '::1', 21940);
    const b = ours(65091, '10.0.9.2', '::1', false);
    await a.start();
    a.addNeighbor({ address: '::1', asn: 65091, passive: true });
    b.addNeighbor({ address: '0:0:0:0:0:0:0:1', port: 21940, asn: 65090, connectRetryTime: 1 });
    await b.start();
    await waitFor('session over ::1', () => a.neighbor('::1')?.state === 'established' && b.neighbor('::1')?.state === 'established');
    b.addRoute({ family: 'ipv6-unicast', prefix: '2001:DB8:195::/48', nextHop: '2001:db8::9:2' });
    b.addRoute({ family: 'ipv4-unicast', prefix: '10.195.0.0/16', nextHop: '10.255.9.2' });
    const v6 = await waitFor('IPv6 route', () => a.route('ipv6-unicast', '2001:db8:195::/48'));
    assert.equal(v6.nextHop, '2001:db8::9:2');
    await waitFor('IPv4 route', () => a.route('ipv4-unicast', '10.195.0.0/16'));
  });
});

describe('policy hooks', () => {
  it('applies import and export policies: reject by prefix, match route targets, set communities, local preference and next hop', async () => {
    const a = ours(65020, '10.0.2.1', '127.0.8.1', 21860);
    const b = ours(65021, '10.0.2.2', '127.0.8.2', false);
    await a.start();
    a.addNeighbor({
      address: '127.0.8.2',
      asn: 65021,
      passive: true,
      importPolicy: policy([
        { match: { prefixes: ['10.130.0.0/16'] }, action: 'reject' },
        { match: { routeTargets: ['65021:1'] }, action: 'accept', set: { addCommunities: [parseCommunity('65020:1')], localPref: 200 } },
      ]),
      exportPolicy: policy([{ match: { communities: ['65020:9'] }, action: 'accept', set: { nextHop: '10.255.2.99', addCommunities: [parseCommunity('65020:10')] } }], 'reject'),
    });
    b.addNeighbor({ address: '127.0.8.1', port: 21860, asn: 65020, localAddress: '127.0.8.2', connectRetryTime: 1 });
    await b.start();
    await waitFor('session', () => a.neighbor('127.0.8.2')?.state === 'established');
    b.addRoute({ family: 'ipv4-unicast', prefix: '10.130.1.0/24', nextHop: '10.255.2.2' });
    b.addRoute({ family: 'ipv4-unicast', prefix: '10.131.0.0/16', nextHop: '10.255.2.2', attributes: { extendedCommunities: [{ kind: 'route-target', value: '65021:1' }] } });
    b.addRoute({ family: 'ipv4-unicast', prefix: '10.132.0.0/16', nextHop: '10.255.2.2' });
    const r = await waitFor('accepted routes', () => a.route('ipv4-unicast', '10.131.0.0/16'));
    await waitFor('plain route', () => a.route('ipv4-unicast', '10.132.0.0/16'));
    assert.equal(a.route('ipv4-unicast', '10.130.1.0/24'), undefined, 'rejected by prefix');
    assert.deepEqual(r.attributes.communities, [parseCommunity('65020:1')]);
    assert.equal(r.attributes.localPref, 200);

    a.addRoute({ family: 'ipv4-unicast', prefix: '10.133.0.0/16', nextHop: '10.255.2.1', attributes: { communities: [parseCommunity('65020:9')] } });
    a.addRoute({ family: 'ipv4-unicast', prefix: '10.134.0.0/16', nextHop: '10.255.2.1' });
    const out = await waitFor('exported route at b', () => b.route('ipv4-unicast', '10.133.0.0/16'));
    assert.equal(out.nextHop, '10.255.2.99');
    assert.deepEqual(out.attributes.communities, [parseCommunity('65020:9'), parseCommunity('65020:10')]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(b.route('ipv4-unicast', '10.134.0.0/16'), undefined, 'export default is reject');
    assert.deepEqual(a.adjRibOut('127.0.8.2', 'ipv4-unicast').map((x) => x.key), ['10.133.0.0/16']);
  });
});

describe('revised error handling (RFC 7606) and session errors', () => {
  it('treats an UPDATE with a malformed attribute as withdraw and keeps the session; an overrunning attribute gets NOTIFICATION 3/5', async () => {
    const s = ours(65030, '10.0.3.1', '127.0.9.1', 21870);
    await s.start();
    s.addNeighbor({ address: '127.0.9.2', asn: 65031, passive: true });
    const p = await RawPeer.establish({ host: '127.0.9.1', port: 21870, localAddress: '127.0.9.2', asn: 65031, routerId: '10.0.3.2' });
    const good = (prefix: string, communities?: number[]) =>
      encode({ type: 'update', withdrawn: [], nlri: [prefix], attributes: { origin: 0, asPath: [{ type: 'sequence', asns: [65031] }], nextHop: '10.255.3.2', communities } });
    p.send(good('10.140.0.0/16', [1]));
    await waitFor('route in', () => s.route('ipv4-unicast', '10.140.0.0/16'));
    // Same route again, COMMUNITIES cut to 3 bytes: RFC 7606 §7.8 treat-as-withdraw.
    const bad = Buffer.from(good('10.140.0.0/16', [1]));
    const at = bad.indexOf(Buffer.from([0xc0, 8, 4]));
    const cut = Buffer.concat([bad.subarray(0, at + 2), Buffer.from([3]), bad.subarray(at + 3, at + 6), bad.subarray(at + 7)]);
    cut.writeUInt16BE(cut.length, 16);
    cut.writeUInt16BE(cut.readUInt16BE(21) - 1, 21);
    p.send(cut);
    await waitFor('treated as withdraw', () => s.route('ipv4-unicast', '10.140.0.0/16') === undefined);
    p.send(good('10.141.0.0/16'));
    await waitFor('session still takes routes', () => s.route('ipv4-unicast', '10.141.0.0/16'));
    assert.equal(s.neighbor('127.0.9.2')!.state, 'established');

    // An attribute whose length runs past the UPDATE cannot be skipped: session reset.
    const overrun = Buffer.from(good('10.142.0.0/16'));
    const o = overrun.indexOf(Buffer.from([0x40, 3, 4]));
    overrun[o + 2] = 200;
    p.send(overrun);
    await waitFor('NOTIFICATION', () => p.received.find((m) => m.type === 'notification'));
    const n = p.received.find((m) => m.type === 'notification') as Notification;
    assert.deepEqual([n.code, n.subcode], [3, 5]);
    await waitFor('peer routes flushed', () => s.route('ipv4-unicast', '10.141.0.0/16') === undefined);
    p.close();
  });

  it('sweeps what a neighbour did not re-advertise between BoRR and EoRR (RFC 7313)', async () => {
    const s = ours(65035, '10.0.3.5', '127.0.9.5', 21875);
    await s.start();
    s.addNeighbor({ address: '127.0.9.6', asn: 65036, passive: true });
    const p = await RawPeer.establish({ host: '127.0.9.5', port: 21875, localAddress: '127.0.9.6', asn: 65036, routerId: '10.0.3.6' });
    const route = (prefix: string) => encode({ type: 'update', withdrawn: [], nlri: [prefix], attributes: { origin: 0, asPath: [{ type: 'sequence', asns: [65036] }], nextHop: '10.255.3.6' } });
    p.send(Buffer.concat([route('10.143.0.0/16'), route('10.144.0.0/16')]));
    await waitFor('both routes', () => s.route('ipv4-unicast', '10.143.0.0/16') && s.route('ipv4-unicast', '10.144.0.0/16'));
    p.send(encode({ type: 'route-refresh', afi: 1, safi: 1, subtype: 1 }));
    p.send(route('10.143.0.0/16'));
    await waitFor('re-advertised route is fresh', () => s.route('ipv4-unicast', '10.143.0.0/16')?.stale === false && s.route('ipv4-unicast', '10.144.0.0/16')?.stale);
    p.send(encode({ type: 'route-refresh', afi: 1, safi: 1, subtype: 2 }));
    await waitFor('stale route swept at EoRR', () => s.route('ipv4-unicast', '10.144.0.0/16') === undefined);
    assert.ok(s.route('ipv4-unicast', '10.143.0.0/16'));
    p.close();
  });

  it('talks to a 2-octet-AS neighbour with AS_TRANS and AS4_PATH both ways (RFC 6793)', async () => {
    const s = ours(4200000001, '10.0.3.7', '127.0.9.7', 21876);
    await s.start();
    s.addNeighbor({ address: '127.0.9.8', asn: 65037, passive: true });
    const p = await RawPeer.establish({ host: '127.0.9.7', port: 21876, localAddress: '127.0.9.8', asn: 65037, routerId: '10.0.3.8', as4: false });
    const open = p.received.find((m) => m.type === 'open');
    assert.equal(open?.type === 'open' && open.myAs, 23456);
    p.send(
      encode(
        { type: 'update', withdrawn: [], nlri: ['10.145.0.0/16'], attributes: { origin: 0, asPath: [{ type: 'sequence', asns: [65037, 4200000000] }], nextHop: '10.255.3.8', as4Path: [{ type: 'sequence', asns: [4200000000] }] } },
        { as4: false },
      ),
    );
    const r = await waitFor('route from the 2-octet neighbour', () => s.route('ipv4-unicast', '10.145.0.0/16'));
    assert.deepEqual(r.attributes.asPath, [{ type: 'sequence', asns: [65037, 4200000000] }]);
    assert.equal(r.attributes.as4Path, undefined);
    s.addRoute({ family: 'ipv4-unicast', prefix: '10.146.0.0/16', nextHop: '10.255.3.7' });
    const u = await waitFor('our route at the 2-octet neighbour', () => p.received.find((m) => m.type === 'update' && m.nlri.includes('10.146.0.0/16')));
    assert.ok(u.type === 'update');
    assert.deepEqual(u.attributes.asPath, [{ type: 'sequence', asns: [23456] }]);
    assert.deepEqual(u.attributes.as4Path, [{ type: 'sequence', asns: [4200000001] }]);
    p.close();
  });

  it('sends NOTIFICATION 4/0 when a neighbour goes silent past the negotiated hold time', async () => {
    const s = ours(65039, '10.0.3.9', '127.0.9.9', 21877);
    await s.start();
    s.addNeighbor({ address: '127.0.9.10', asn: 65040, passive: true });
    const p = await RawPeer.establish({ host: '127.0.9.9', port: 21877, localAddress: '127.0.9.10', asn: 65040, routerId: '10.0.3.10', holdTime: 3 });
    await waitFor('established', () => s.neighbor('127.0.9.10')?.state === 'established');
    assert.equal(s.neighbor('127.0.9.10')!.negotiated!.holdTime, 3);
    const n = await waitFor('hold timer NOTIFICATION', () => p.received.find((m) => m.type === 'notification'), 10000);
    assert.deepEqual([n.type === 'notification' && n.code, n.type === 'notification' && n.subcode], [4, 0]);
    assert.ok(p.received.filter((m) => m.type === 'keepalive').length >= 2, 'we sent KEEPALIVEs every hold/3 meanwhile');
    p.close();
  });

  it('refuses an OPEN with the wrong AS with NOTIFICATION 2/2', async () => {
    const s = ours(65040, '10.0.4.1', '127.0.10.1', 21880);
    await s.start();
    s.addNeighbor({ address: '127.0.10.2', asn: 65041, passive: true });
    const sock = await import('node:net').then((net) => net.connect({ host: '127.0.10.1', port: 21880, localAddress: '127.0.10.2' }));
    const got: Buffer[] = [];
    sock.on('data', (c: Buffer) => got.push(c));
    await new Promise((r) => sock.once('connect', r));
    sock.write(encode({ type: 'open', version: 4, myAs: 65999, holdTime: 90, bgpId: '10.0.4.2', capabilities: [{ kind: 'four-octet-as', asn: 65999 }] }));
    await new Promise((r) => sock.once('close', r));
    const all = Buffer.concat(got);
    const first = all.readUInt16BE(16);
    const second = all.subarray(first, first + all.readUInt16BE(first + 16));
    assert.deepEqual([second[18], second[19], second[20]], [3, 2, 2]);
  });

  it('resolves a connection collision to one session when both sides connect at once (RFC 4271 §6.8)', async () => {
    const a = ours(65050, '10.0.5.1', '127.0.11.1', 21890);
    const b = ours(65051, '10.0.5.2', '127.0.11.2', 21891);
    await a.start();
    await b.start();
    a.addNeighbor({ address: '127.0.11.2', port: 21891, asn: 65051, localAddress: '127.0.11.1', connectRetryTime: 1 });
    b.addNeighbor({ address: '127.0.11.1', port: 21890, asn: 65050, localAddress: '127.0.11.2', connectRetryTime: 1 });
    await waitFor('established both sides', () => a.neighbor('127.0.11.2')?.state === 'established' && b.neighbor('127.0.11.1')?.state === 'established');
    a.addRoute({ family: 'ipv4-unicast', prefix: '10.150.0.0/16', nextHop: '10.255.5.1' });
    await waitFor('route over the surviving session', () => b.route('ipv4-unicast', '10.150.0.0/16'));
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(a.neighbor('127.0.11.2')!.state, 'established');
    assert.equal(b.neighbor('127.0.11.1')!.state, 'established');
    assert.equal(a.neighbor('127.0.11.2')!.counters.establishedTransitions, 1);
  });
});
