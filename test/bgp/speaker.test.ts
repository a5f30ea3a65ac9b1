import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { BgpSpeaker, decode, type EvpnRoute, type PeerStateChange } from '#sdn/bgp';
import { waitFor } from './support/wait.js';

const PORT_A = 21790;
const PORT_B = 21791;

describe('BgpSpeaker against itself', () => {
  const speakers: BgpSpeaker[] = [];
  after(async () => {
    for (const s of speakers) await s.stop();
  });

  it('establishes an eBGP session and exchanges unicast and EVPN routes both ways', async () => {
    const a = new BgpSpeaker({ asn: 65001, routerId: '10.0.0.1', listen: { address: '127.0.1.1', port: PORT_A } });
    const b = new BgpSpeaker({ asn: 65002, routerId: '10.0.0.2', listen: { address: '127.0.1.2', port: PORT_B } });
    speakers.push(a, b);
    const states: PeerStateChange[] = [];
    a.peerStateChanges$.subscribe((s) => states.push(s));
    await a.start();
    await b.start();
    a.addNeighbor({ address: '127.0.1.2', port: PORT_B, asn: 65002, localAddress: '127.0.1.1', connectRetryTime: 1 });
    b.addNeighbor({ address: '127.0.1.1', port: PORT_A, asn: 65001, localAddress: '127.0.1.2', connectRetryTime: 1 });
    await waitFor('session up', () => a.neighbor('127.0.1.2')?.state === 'established' && b.neighbor('127.0.1.1')?.state === 'established');
    assert.ok(states.some((s) => s.state === 'established'));

    const mac: EvpnRoute = { routeType: 2, rd: '10.0.0.1:100', esi: '00:00:00:00:00:00:00:00:00:00', ethernetTag: 0, mac: 'AA:BB:CC:00:00:01', ip: '192.168.1.10', labels: [10100, 50000] };
    a.addRoute({ family: 'ipv4-unicast', prefix: '10.10.0.0/16', nextHop: '10.255.0.1', attributes: { communities: [65001 * 65536 + 7] } });
    a.addRoute({ family: 'ipv6-unicast', prefix: '2001:db8:0::/48', nextHop: '2001:db8::1' });
    a.addRoute({
      family: 'l2vpn-evpn',
      route: mac,
      nextHop: '10.255.0.1',
      attributes: { extendedCommunities: [{ kind: 'route-target', value: '65001:100' }, { kind: 'encapsulation', tunnelType: 8 }, { kind: 'router-mac', mac: '02:00:00:00:00:01' }] },
    });
    b.addRoute({ family: 'ipv4-unicast', prefix: '10.20.0.0/16', nextHop: '10.255.0.2' });

    const got = await waitFor('routes at b', () => b.route('l2vpn-evpn', mac) && b.route('ipv4-unicast', '10.10.0.0/16') && b.route('ipv6-unicast', '2001:db8::/48') && b);
    const v4 = got.route('ipv4-unicast', '10.10.0.0/16')!;
    assert.equal(v4.nextHop, '10.255.0.1');
    assert.deepEqual(v4.attributes.asPath, [{ type: 'sequence', asns: [65001] }]);
    assert.deepEqual(v4.attributes.communities, [65001 * 65536 + 7]);
    const e = got.route('l2vpn-evpn', mac)!;
    assert.deepEqual(e.evpn, { ...mac, mac: 'aa:bb:cc:00:00:01' });
    assert.equal(e.source, '127.0.1.1');
    await waitFor('route at a', () => a.route('ipv4-unicast', '10.20.0.0/16'));
    // b does not send a's routes back to a (they would be AS-path loops anyway).
    assert.equal(a.adjRibIn('127.0.1.2', 'ipv4-unicast').length, 1);

    a.withdrawRoute({ family: 'l2vpn-evpn', route: mac });
    await waitFor('EVPN withdrawal at b', () => b.route('l2vpn-evpn', mac) === undefined);
    const st = a.neighbor('127.0.1.2')!;
    assert.ok(st.counters.updatesSent >= 3 && st.counters.routesAdvertised === 2 && st.counters.routesReceived === 1);
  });

  it('resends its Adj-RIB-Out when the neighbour asks with ROUTE-REFRESH (RFC 2918, RFC 7313)', async () => {
    const [a, b] = speakers;
    const before = a.neighbor('127.0.1.2')!.counters.updatesReceived;
    const advertised = b.adjRibOut('127.0.1.1', 'ipv4-unicast').length;
    assert.ok(advertised > 0);
    a.refresh('127.0.1.2', 'ipv4-unicast');
    await waitFor('routes sent again', () => a.neighbor('127.0.1.2')!.counters.updatesReceived > before);
    assert.equal(b.adjRibOut('127.0.1.1', 'ipv4-unicast').length, advertised);
    assert.ok(a.route('ipv4-unicast', '10.20.0.0/16'));
  });

  it('packs and withdraws tens of thousands of routes within 4096-byte UPDATEs', async () => {
    const [a, b] = speakers;
    const v4: string[] = [];
    for (let i = 0; i < 20000; i++) v4.push(`10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`);
    const ext = [{ kind: 'route-target' as const, value: '65001:200' }, { kind: 'encapsulation' as const, tunnelType: 8 }];
    for (const prefix of v4) a.addRoute({ family: 'ipv4-unicast', prefix, nextHop: '10.255.0.1' });
    for (let i = 0; i < 5000; i++) {
      const mac = `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
      a.addRoute({ family: 'l2vpn-evpn', nextHop: '10.255.0.1', attributes: { extendedCommunities: ext }, route: { routeType: 2, rd: '10.0.0.1:200', esi: '00:00:00:00:00:00:00:00:00:00', ethernetTag: 0, mac, ip: `172.20.${i >> 8}.${i & 255}`, labels: [10200] } });
    }
    const updatesBefore = b.neighbor('127.0.1.1')!.counters.updatesReceived;
    const v4Before = b.routeCount('ipv4-unicast');
    const evpnBefore = b.routeCount('l2vpn-evpn');
    await waitFor('all routes at b', () => b.routeCount('ipv4-unicast') === v4Before + 20000 && b.routeCount('l2vpn-evpn') === evpnBefore + 5000, 30000);
    const updates = b.neighbor('127.0.1.1')!.counters.updatesReceived - updatesBefore;
    assert.ok(updates < 200, `routes sharing attributes are packed (${updates} UPDATEs)`);
    for (const prefix of v4) a.withdrawRoute({ family: 'ipv4-unicast', prefix });
    for (const r of a.routes('l2vpn-evpn')) if (r.evpn) a.withdrawRoute({ family: 'l2vpn-evpn', route: r.evpn });
    await waitFor('all withdrawn at b', () => b.routeCount('ipv4-unicast') === v4Before && b.routeCount('l2vpn-evpn') === evpnBefore, 30000);
    assert.equal(a.neighbor('127.0.1.2')!.state, 'established');
  });

  it('refuses invalid routes at addRoute, with the offending value in the message', () => {
    const [a] = speakers;
    assert.throws(() => a.addRoute({ family: 'ipv4-unicast', prefix: '10.0.0.0/33', nextHop: '10.255.0.1' }), /10.0.0.0\/33/);
    assert.throws(() => a.addRoute({ family: 'ipv4-unicast', prefix: '10.0.0.0/8', nextHop: 'router-1' }), /router-1/);
    assert.throws(
      () => a.addRoute({ family: 'l2vpn-evpn', nextHop: '10.255.0.1', route: { routeType: 2, rd: 'x:1', esi: '00:00:00:00:00:00:00:00:00:00', ethernetTag: 0, mac: 'aa:bb:cc:00:00:09', labels: [1] } }),
      /x:1/,
    );
    assert.throws(() => a.addRoute({ family: 'ipv4-unicast', prefix: '10.0.0.0/8', nextHop: '10.255.0.1', attributes: { extendedCommunities: [{ kind: 'route-target', value: '70000:99999' }] } }), /70000:99999/);
  });

  it('answers a garbage-sending peer with NOTIFICATION 1/1 and keeps the other session', async () => {
    const [a, b] = speakers;
    a.addNeighbor({ address: '127.0.1.9', asn: 65009, passive: true });
    const sock = net.connect({ host: '127.0.1.1', port: PORT_A, localAddress: '127.0.1.9' });
    const chunks: Buffer[] = [];
    sock.on('data', (c) => chunks.push(c));
    await new Promise((r) => sock.once('connect', r));
    sock.write(Buffer.alloc(40, 0x41));
    await new Promise((r) => sock.once('close', r));
    const all = Buffer.concat(chunks);
    // OPEN first, then NOTIFICATION Message Header Error / Connection Not Synchronized.
    const openLen = all.readUInt16BE(16);
    const n = decode(all.subarray(openLen, openLen + all.readUInt16BE(openLen + 16)));
    assert.deepEqual({ type: n.type, code: (n as { code: number }).code, subcode: (n as { subcode: number }).subcode }, { type: 'notification', code: 1, subcode: 1 });
    assert.equal(a.neighbor('127.0.1.2')!.state, 'established');
    b.addRoute({ family: 'ipv4-unicast', prefix: '10.21.0.0/16', nextHop: '10.255.0.2' });
    await waitFor('route after garbage', () => a.route('ipv4-unicast', '10.21.0.0/16'));
  });
});
