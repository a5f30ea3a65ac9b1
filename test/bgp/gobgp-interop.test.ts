/**
 * Interop with a real gobgpd (Debian package gobgpd 3.10) on loopback.
 * gobgpd listens in passive mode; our speaker connects to it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BgpSpeaker, type EvpnRoute, type LocalAttributes, type RibRoute } from '#sdn/bgp';
import { Gobgpd } from './support/gobgp.js';
import { waitFor } from './support/wait.js';

const OURS = '127.0.2.1';
const THEIRS = '127.0.2.2';
const GOBGP_PORT = 21801;
const API_PORT = 50071;
const ZERO_ESI = '00:00:00:00:00:00:00:00:00:00';

interface GobgpPath {
  nlri: { type?: number; value?: Record<string, unknown>; prefix?: string };
  attrs: { type: number; value?: unknown; nexthop?: string; [k: string]: unknown }[];
  stale?: boolean;
}
type GobgpRib = Record<string, GobgpPath[]> | null;

function attr(p: GobgpPath, type: number) {
  return p.attrs.find((a) => a.type === type);
}
function findEvpn(rib: GobgpRib, pred: (v: Record<string, unknown>, type: number) => boolean): GobgpPath | undefined {
  for (const paths of Object.values(rib ?? {})) for (const p of paths) if (p.nlri.value && pred(p.nlri.value, p.nlri.type ?? 0)) return p;
  return undefined;
}

function speaker(extra: { restarting?: boolean } = {}): BgpSpeaker {
  const s = new BgpSpeaker({ asn: 65001, routerId: '10.0.0.1', listen: false, holdTime: 30, gracefulRestart: { restartTime: 60, restarting: extra.restarting } });
  s.addNeighbor({ address: THEIRS, port: GOBGP_PORT, asn: 65002, localAddress: OURS, connectRetryTime: 1 });
  return s;
}

const evpnAttrs = (rt: string, extra: LocalAttributes = {}): LocalAttributes => ({
  communities: [65001 * 65536 + 10],
  largeCommunities: [{ global: 65001, local1: 1, local2: 2 }],
  ...extra,
  extendedCommunities: [{ kind: 'route-target', value: rt }, { kind: 'encapsulation', tunnelType: 8 }, ...(extra.extendedCommunities ?? [])],
});

const ourMacIp: EvpnRoute = { routeType: 2, rd: '10.0.0.1:100', esi: ZERO_ESI, ethernetTag: 0, mac: 'aa:bb:cc:00:01:01', ip: '192.168.1.11', labels: [10100, 50000] };
const ourMacOnly: EvpnRoute = { routeType: 2, rd: '10.0.0.1:100', esi: '00:11:22:33:44:55:66:77:88:99', ethernetTag: 7, mac: 'aa:bb:cc:00:01:02', labels: [10100] };
const ourImet: EvpnRoute = { routeType: 3, rd: '10.0.0.1:100', ethernetTag: 0, originatorIp: '10.255.0.1' };
const ourPrefix: EvpnRoute = { routeType: 5, rd: '65001:5', esi: ZERO_ESI, ethernetTag: 0, prefix: '10.70.0.0/24', gateway: '0.0.0.0', label: 50000 };

describe('interop with gobgpd', { timeout: 120000 }, () => {
  const g = new Gobgpd({ asn: 65002, routerId: '10.0.0.2', address: THEIRS, apiPort: API_PORT, port: GOBGP_PORT, neighbors: [{ address: OURS, asn: 65001, gracefulRestart: true }] });
  let s: BgpSpeaker;

  before(async () => {
    await g.start();
    s = speaker();
    await s.start();
    await waitFor('session with gobgpd', () => s.neighbor(THEIRS)?.state === 'established');
  });
  after(async () => {
    await s?.stop();
    await g.stop();
  });

  it('advertises EVPN types 1-5 (type 2 MAC/IP, MAC only and IPv6; type 5 IPv4 and IPv6) that gobgpd shows field for field', async () => {
    s.addRoute({ family: 'l2vpn-evpn', route: ourMacIp, nextHop: '10.255.0.1', attributes: evpnAttrs('65001:100', { extendedCommunities: [{ kind: 'router-mac', mac: '02:00:00:00:00:01' }] }) });
    s.addRoute({ family: 'l2vpn-evpn', route: ourMacOnly, nextHop: '10.255.0.1', attributes: evpnAttrs('65001:100', { extendedCommunities: [{ kind: 'mac-mobility', sticky: false, sequence: 3 }] }) });
    s.addRoute({ family: 'l2vpn-evpn', route: ourImet, nextHop: '10.255.0.1', attributes: evpnAttrs('65001:100', { pmsiTunnel: { flags: 0, tunnelType: 6, label: 10100, tunnelId: '10.255.0.1' } }) });
    s.addRoute({ family: 'l2vpn-evpn', route: ourPrefix, nextHop: '10.255.0.1', attributes: evpnAttrs('65001:5', { extendedCommunities: [{ kind: 'router-mac', mac: '02:00:00:00:00:01' }] }) });

    const vx = evpnAttrs('65001:100');
    s.addRoute({ family: 'l2vpn-evpn', route: { routeType: 1, rd: '10.0.0.1:1', esi: '00:11:22:33:44:55:66:77:88:99', ethernetTag: 0, label: 10100 }, nextHop: '10.255.0.1', attributes: vx });
    s.addRoute({ family: 'l2vpn-evpn', route: { routeType: 4, rd: '10.0.0.1:1', esi: '00:11:22:33:44:55:66:77:88:99', originatorIp: '10.255.0.1' }, nextHop: '10.255.0.1', attributes: vx });
    s.addRoute({ family: 'l2vpn-evpn', route: { ...ourMacIp, mac: 'aa:bb:cc:00:01:03', ip: '2001:db8::13' }, nextHop: '10.255.0.1', attributes: vx });
    s.addRoute({ family: 'l2vpn-evpn', route: { ...ourPrefix, prefix: '2001:db8:70::/64', gateway: '::' }, nextHop: '10.255.0.1', attributes: vx });
    const rib = await waitFor('our EVPN routes in gobgpd', async () => {
      const r = await g.json<GobgpRib>(['global', 'rib', '-a', 'evpn']);
      return Object.keys(r ?? {}).length >= 8 ? r : undefined;
    });
    const ad = findEvpn(rib, (_v, t) => t === 1)!;
    assert.deepEqual(ad.nlri.value, { rd: { type: 1, admin: '10.0.0.1', assigned: 1 }, esi: 'ESI_ARBITRARY | 11:22:33:44:55:66:77:88:99', etag: 0, label: 10100 });
    const es = findEvpn(rib, (_v, t) => t === 4)!;
    assert.equal(es.nlri.value!.ip, '10.255.0.1');
    assert.equal(findEvpn(rib, (v, t) => t === 2 && v.mac === 'aa:bb:cc:00:01:03')!.nlri.value!.ip, '2001:db8::13');
    assert.equal(findEvpn(rib, (v, t) => t === 5 && v.prefix === '2001:db8:70::/64')!.nlri.value!.gateway, '::');
    const macIp = findEvpn(rib, (v, t) => t === 2 && v.mac === 'aa:bb:cc:00:01:01')!;
    assert.deepEqual(macIp.nlri.value, { rd: { type: 1, admin: '10.0.0.1', assigned: 100 }, esi: 'single-homed', etag: 0, mac: 'aa:bb:cc:00:01:01', ip: '192.168.1.11', labels: [10100, 50000] });
    assert.equal(attr(macIp, 14)!.nexthop, '10.255.0.1');
    assert.deepEqual(attr(macIp, 8)!.communities, [65001 * 65536 + 10]);
    assert.deepEqual(attr(macIp, 32)!.value, [{ ASN: 65001, LocalData1: 1, LocalData2: 2 }]);
    assert.deepEqual(attr(macIp, 2)!.as_paths, [{ segment_type: 2, num: 1, asns: [65001] }]);
    assert.deepEqual(attr(macIp, 16)!.value, [
      { type: 0, subtype: 2, value: '65001:100' },
      { type: 3, subtype: 12, tunnel_type: 8 },
      { type: 6, subtype: 3, mac: '02:00:00:00:00:01' },
    ]);
    const macOnly = findEvpn(rib, (v, t) => t === 2 && v.mac === 'aa:bb:cc:00:01:02')!;
    assert.equal(macOnly.nlri.value!.etag, 7);
    assert.deepEqual(macOnly.nlri.value!.labels, [10100]);
    assert.equal(macOnly.nlri.value!.esi, 'ESI_ARBITRARY | 11:22:33:44:55:66:77:88:99');
    assert.equal(macOnly.nlri.value!.ip, '<nil>');
    assert.deepEqual((attr(macOnly, 16)!.value as unknown[])[2], { type: 6, subtype: 0, sequence: 3, is_sticky: false });
    const imet = findEvpn(rib, (_v, t) => t === 3)!;
    assert.equal(imet.nlri.value!.ip, '10.255.0.1');
    const pmsi = attr(imet, 22)!;
    assert.equal(pmsi['tunnel-type'], 6);
    assert.equal(pmsi.label, 10100);
    assert.equal(pmsi['tunnel-id'], '10.255.0.1');
    const pfx = findEvpn(rib, (_v, t) => t === 5)!;
    assert.deepEqual(pfx.nlri.value, { rd: { type: 0, admin: 65001, assigned: 5 }, esi: 'single-homed', etag: 0, prefix: '10.70.0.0/24', gateway: '0.0.0.0', label: 50000 });
  });

  it('receives EVPN types 1-5 injected with the gobgp CLI, with communities and large communities, every field right', async () => {
    await g.cli(['global', 'rib', '-a', 'evpn', 'add', 'macadv', 'aa:bb:cc:00:02:01', '192.168.1.21', 'etag', '0', 'label', '10100,50000', 'rd', '10.0.0.2:100', 'rt', '65002:100', '65002:200', 'encap', 'vxlan', 'router-mac', '02:00:00:00:00:02', 'nexthop', '10.255.0.2', 'community', '65002:10', 'large-community', '65002:1:2']);
    await g.cli(['global', 'rib', '-a', 'evpn', 'add', 'macadv', 'aa:bb:cc:00:02:02', '2001:db8::21', 'etag', '0', 'label', '10100', 'rd', '10.0.0.2:100', 'rt', '65002:100', 'encap', 'vxlan', 'nexthop', '10.255.0.2']);
    await g.cli(['global', 'rib', '-a', 'evpn', 'add', 'a-d', 'esi', 'ARBITRARY', '11:22:33:44:55:66:77:88:99', 'etag', '0', 'label', '10100', 'rd', '10.0.0.2:1', 'rt', '65002:100', 'encap', 'vxlan', 'nexthop', '10.255.0.2']);
    await g.cli(['global', 'rib', '-a', 'evpn', 'add', 'esi', '10.255.0.2', 'esi', 'ARBITRARY', '11:22:33:44:55:66:77:88:99', 'rd', '10.0.0.2:1', 'nexthop', '10.255.0.2']);
    await g.cli(['global', 'rib', '-a', 'evpn', 'add', 'multicast', '10.255.0.2', 'etag', '0', 'rd', '10.0.0.2:100', 'rt', '65002:100', 'encap', 'vxlan', 'pmsi', 'ingress-repl', '10100', '10.255.0.2', 'nexthop', '10.255.0.2']);
    await g.cli(['global', 'rib', '-a', 'evpn', 'add', 'prefix', '10.80.0.0/24', 'gw', '0.0.0.0', 'etag', '0', 'label', '50000', 'rd', '10.0.0.2:5', 'rt', '65002:5', 'encap', 'vxlan', 'router-mac', '02:00:00:00:00:02', 'nexthop', '10.255.0.2']);
    const mac: EvpnRoute = { routeType: 2, rd: '10.0.0.2:100', esi: ZERO_ESI, ethernetTag: 0, mac: 'aa:bb:cc:00:02:01', ip: '192.168.1.21', labels: [10100, 50000] };
    const imet: EvpnRoute = { routeType: 3, rd: '10.0.0.2:100', ethernetTag: 0, originatorIp: '10.255.0.2' };
    const pfx: EvpnRoute = { routeType: 5, rd: '10.0.0.2:5', esi: ZERO_ESI, ethernetTag: 0, prefix: '10.80.0.0/24', gateway: '0.0.0.0', label: 50000 };
    await waitFor('gobgpd EVPN routes in our RIB', () => s.route('l2vpn-evpn', mac) && s.route('l2vpn-evpn', imet) && s.route('l2vpn-evpn', pfx));
    const m = s.route('l2vpn-evpn', mac)!;
    assert.deepEqual(m.evpn, mac);
    assert.equal(m.nextHop, '10.255.0.2');
    assert.equal(m.source, THEIRS);
    assert.deepEqual(m.attributes.asPath, [{ type: 'sequence', asns: [65002] }]);
    assert.deepEqual(m.attributes.extendedCommunities, [
      { kind: 'route-target', value: '65002:100' },
      { kind: 'route-target', value: '65002:200' },
      { kind: 'encapsulation', tunnelType: 8 },
      { kind: 'router-mac', mac: '02:00:00:00:00:02' },
    ]);
    assert.deepEqual(m.attributes.communities, [65002 * 65536 + 10]);
    assert.deepEqual(m.attributes.largeCommunities, [{ global: 65002, local1: 1, local2: 2 }]);
    const mac6: EvpnRoute = { routeType: 2, rd: '10.0.0.2:100', esi: ZERO_ESI, ethernetTag: 0, mac: 'aa:bb:cc:00:02:02', ip: '2001:db8::21', labels: [10100] };
    assert.deepEqual((await waitFor('IPv6 MAC/IP route', () => s.route('l2vpn-evpn', mac6))).evpn, mac6);
    const esi = '11:22:33:44:55:66:77:88:99';
    const ad = await waitFor('type-1 route', () => s.routes('l2vpn-evpn').find((r) => r.evpn?.routeType === 1 && r.source === THEIRS));
    assert.equal(ad.evpn?.routeType === 1 && ad.evpn.esi, `00:${esi}`);
    assert.equal(ad.evpn?.routeType === 1 && ad.evpn.label, 10100);
    const es = await waitFor('type-4 route', () => s.routes('l2vpn-evpn').find((r) => r.evpn?.routeType === 4 && r.source === THEIRS));
    assert.deepEqual(es.evpn, { routeType: 4, rd: '10.0.0.2:1', esi: `00:${esi}`, originatorIp: '10.255.0.2' });
    const i = s.route('l2vpn-evpn', imet)!;
    assert.deepEqual(i.attributes.pmsiTunnel, { flags: 0, tunnelType: 6, label: 10100, tunnelId: '10.255.0.2' });
    const p = s.route('l2vpn-evpn', pfx)!;
    assert.deepEqual(p.evpn, pfx);
    assert.ok(p.attributes.extendedCommunities?.some((e) => e.kind === 'router-mac' && e.mac === '02:00:00:00:00:02'));

    await g.cli(['global', 'rib', '-a', 'evpn', 'del', 'macadv', 'aa:bb:cc:00:02:01', '192.168.1.21', 'etag', '0', 'label', '10100,50000', 'rd', '10.0.0.2:100']);
    await waitFor('EVPN withdrawal from gobgpd', () => s.route('l2vpn-evpn', mac) === undefined);
    assert.ok(s.route('l2vpn-evpn', imet));
  });

  it('exchanges IPv4 and IPv6 unicast with communities and large communities, and withdrawals, both ways', async () => {
    s.addRoute({ family: 'ipv4-unicast', prefix: '10.90.0.0/16', nextHop: '10.255.0.1', attributes: { communities: [65001 * 65536 + 20], largeCommunities: [{ global: 65001, local1: 3, local2: 4 }], med: 5 } });
    s.addRoute({ family: 'ipv6-unicast', prefix: '2001:db8:90::/48', nextHop: '2001:db8::1' });
    await g.cli(['global', 'rib', '-a', 'ipv4', 'add', '10.91.0.0/16', 'nexthop', '10.255.0.2', 'community', '65002:30', 'large-community', '65002:5:6', 'med', '7']);
    await g.cli(['global', 'rib', '-a', 'ipv6', 'add', '2001:db8:91::/48', 'nexthop', '2001:db8::2']);
    const v4 = await waitFor('IPv4 from gobgpd', () => s.route('ipv4-unicast', '10.91.0.0/16'));
    assert.equal(v4.nextHop, '10.255.0.2');
    assert.deepEqual(v4.attributes.communities, [65002 * 65536 + 30]);
    assert.deepEqual(v4.attributes.largeCommunities, [{ global: 65002, local1: 5, local2: 6 }]);
    assert.equal(v4.attributes.med, 7);
    const v6 = await waitFor('IPv6 from gobgpd', () => s.route('ipv6-unicast', '2001:db8:91::/48'));
    assert.equal(v6.nextHop, '2001:db8::2');

    const rib4 = await waitFor('IPv4 at gobgpd', async () => {
      const r = await g.json<GobgpRib>(['global', 'rib', '-a', 'ipv4']);
      return r?.['10.90.0.0/16'] ? r : undefined;
    });
    const p4 = rib4!['10.90.0.0/16'][0];
    assert.equal(attr(p4, 3)!.nexthop, '10.255.0.1');
    assert.deepEqual(attr(p4, 8)!.communities, [65001 * 65536 + 20]);
    assert.deepEqual(attr(p4, 32)!.value, [{ ASN: 65001, LocalData1: 3, LocalData2: 4 }]);
    assert.equal(attr(p4, 4)!.metric, 5);
    const rib6 = await waitFor('IPv6 at gobgpd', async () => {
      const r = await g.json<GobgpRib>(['global', 'rib', '-a', 'ipv6']);
      return r?.['2001:db8:90::/48'] ? r : undefined;
    });
    assert.equal(attr(rib6!['2001:db8:90::/48'][0], 14)!.nexthop, '2001:db8::1');

    s.withdrawRoute({ family: 'ipv4-unicast', prefix: '10.90.0.0/16' });
    s.withdrawRoute({ family: 'ipv6-unicast', prefix: '2001:db8:90::/48' });
    s.withdrawRoute({ family: 'l2vpn-evpn', route: ourMacIp });
    await waitFor('withdrawals at gobgpd', async () => {
      const r4 = await g.json<GobgpRib>(['global', 'rib', '-a', 'ipv4']);
      const r6 = await g.json<GobgpRib>(['global', 'rib', '-a', 'ipv6']);
      const re = await g.json<GobgpRib>(['global', 'rib', '-a', 'evpn']);
      return !r4?.['10.90.0.0/16'] && !r6?.['2001:db8:90::/48'] && !findEvpn(re, (v) => v.mac === 'aa:bb:cc:00:01:01');
    });
    await g.cli(['global', 'rib', '-a', 'ipv4', 'del', '10.91.0.0/16']);
    await waitFor('IPv4 withdrawal from gobgpd', () => s.route('ipv4-unicast', '10.91.0.0/16') === undefined);
  });

  it('keeps gobgpd routes as stale while gobgpd restarts (helper), then converges', async () => {
    await g.cli(['global', 'rib', '-a', 'ipv4', 'add', '10.92.0.0/16', 'nexthop', '10.255.0.2']);
    await g.cli(['global', 'rib', '-a', 'ipv4', 'add', '10.93.0.0/16', 'nexthop', '10.255.0.2']);
    await waitFor('routes before restart', () => s.route('ipv4-unicast', '10.92.0.0/16') && s.route('ipv4-unicast', '10.93.0.0/16'));
    await g.kill('SIGKILL');
    await waitFor('session down', () => s.neighbor(THEIRS)?.state !== 'established');
    const stale = s.route('ipv4-unicast', '10.92.0.0/16');
    assert.equal(stale?.stale, true, 'kept as stale');
    assert.ok(s.route('l2vpn-evpn', { routeType: 3, rd: '10.0.0.2:100', ethernetTag: 0, originatorIp: '10.255.0.2' })?.stale);
    await g.start(true);
    await waitFor('session back', () => s.neighbor(THEIRS)?.state === 'established');
    await g.cli(['global', 'rib', '-a', 'ipv4', 'add', '10.92.0.0/16', 'nexthop', '10.255.0.2']);
    await waitFor('converged: re-announced route fresh, the other swept', () => {
      const a = s.route('ipv4-unicast', '10.92.0.0/16');
      return a && !a.stale && s.route('ipv4-unicast', '10.93.0.0/16') === undefined && s.neighbor(THEIRS)!.counters.staleRoutes === 0;
    });
  });

  it('has gobgpd keep our routes as stale while we restart (restarting speaker), then converges', async () => {
    s.addRoute({ family: 'ipv4-unicast', prefix: '10.94.0.0/16', nextHop: '10.255.0.1' });
    s.addRoute({ family: 'ipv4-unicast', prefix: '10.95.0.0/16', nextHop: '10.255.0.1' });
    await waitFor('our routes at gobgpd', async () => {
      const r = await g.json<GobgpRib>(['global', 'rib', '-a', 'ipv4']);
      return r?.['10.94.0.0/16'] && r?.['10.95.0.0/16'];
    });
    await s.stop({ graceful: true });
    await waitFor('gobgpd sees us down', async () => !/establ/i.test(await g.neighborState(OURS)));
    const during = await g.json<GobgpRib>(['global', 'rib', '-a', 'ipv4']);
    assert.equal(during?.['10.94.0.0/16']?.[0].stale, true, 'gobgpd keeps our route as stale');
    s = speaker({ restarting: true });
    s.addRoute({ family: 'ipv4-unicast', prefix: '10.94.0.0/16', nextHop: '10.255.0.1' });
    await s.start();
    await waitFor('converged at gobgpd', async () => {
      const r = await g.json<GobgpRib>(['global', 'rib', '-a', 'ipv4']);
      return r?.['10.94.0.0/16'] && !r['10.94.0.0/16'][0].stale && !r['10.95.0.0/16'];
    });
  });
});
