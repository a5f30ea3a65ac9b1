/**
 * Interop with a real FRR 8.4 bgpd (Debian package frr), run without zebra
 * on loopback. FRR cannot originate EVPN without zebra and VXLAN devices,
 * so EVPN is checked in our -> FRR direction; unicast both ways.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BgpSpeaker, type EvpnRoute } from '#sdn/bgp';
import { FrrBgpd } from './support/frr.js';
import { waitFor } from './support/wait.js';

const OURS = '127.0.3.1';
const FRR = '127.0.3.3';
const FRR_PORT = 21812;
const ZERO_ESI = '00:00:00:00:00:00:00:00:00:00';

const frrConfig = `frr defaults traditional
hostname frr-interop
!
router bgp 65003
 bgp router-id 10.0.0.3
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 no bgp network import-check
 neighbor ${OURS} remote-as 65001
 neighbor ${OURS} passive
 neighbor ${OURS} timers 10 30
 !
 address-family ipv4 unicast
  network 10.100.0.0/16
  neighbor ${OURS} activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:100::/48
  neighbor ${OURS} activate
 exit-address-family
 address-family l2vpn evpn
  neighbor ${OURS} activate
 exit-address-family
!
`;

interface FrrPath {
  vni?: string;
  esi?: string;
  aspath?: { segments: { type: string; list: number[] }[] };
  community?: { list: string[] };
  largeCommunity?: { list: string[] };
  extendedCommunity?: { string: string };
  pmsi?: { tunnelType: string; label: number };
  nexthops: { ip: string }[];
}
type FrrEvpnDetail = Record<string, Record<string, { routeType?: number; mac?: string; ip?: string; ethTag?: number; paths?: FrrPath[][] }> | number>;

function evpnEntry(j: FrrEvpnDetail, rd: string, prefix: string): FrrPath | undefined {
  const byRd = j[rd];
  if (typeof byRd !== 'object') return undefined;
  return byRd[prefix]?.paths?.[0]?.[0];
}

describe('interop with FRR bgpd', { timeout: 120000 }, () => {
  const frr = new FrrBgpd(FRR, FRR_PORT, frrConfig);
  let s: BgpSpeaker;

  before(async () => {
    await frr.start();
    s = new BgpSpeaker({ asn: 65001, routerId: '10.0.0.1', listen: false, holdTime: 30 });
    s.addNeighbor({ address: FRR, port: FRR_PORT, asn: 65003, localAddress: OURS, connectRetryTime: 1 });
    await s.start();
    await waitFor('session with FRR', () => s.neighbor(FRR)?.state === 'established');
  });
  after(async () => {
    await s?.stop();
    await frr.stop();
  });

  const macIp: EvpnRoute = { routeType: 2, rd: '10.0.0.1:100', esi: '00:11:22:33:44:55:66:77:88:99', ethernetTag: 5, mac: 'aa:bb:cc:00:03:01', ip: '192.168.3.11', labels: [10100, 50000] };
  const macIpKey = '[2]:[5]:[48]:[aa:bb:cc:00:03:01]:[32]:[192.168.3.11]';
  const imet: EvpnRoute = { routeType: 3, rd: '10.0.0.1:100', ethernetTag: 0, originatorIp: '10.255.0.1' };
  const prefix: EvpnRoute = { routeType: 5, rd: '65001:5', esi: ZERO_ESI, ethernetTag: 0, prefix: '10.71.0.0/24', gateway: '0.0.0.0', label: 50000 };

  it('shows our EVPN type 2, 3 and 5 routes in show bgp l2vpn evpn with RD, MAC, IP, VNIs, RTs, encapsulation, router MAC, communities and PMSI', async () => {
    const rt = { kind: 'route-target' as const, value: '65001:100' };
    const vxlan = { kind: 'encapsulation' as const, tunnelType: 8 };
    const rmac = { kind: 'router-mac' as const, mac: '02:00:00:00:00:01' };
    s.addRoute({
      family: 'l2vpn-evpn',
      route: macIp,
      nextHop: '10.255.0.1',
      attributes: { communities: [65001 * 65536 + 7], largeCommunities: [{ global: 65001, local1: 1, local2: 2 }], extendedCommunities: [rt, vxlan, rmac] },
    });
    s.addRoute({ family: 'l2vpn-evpn', route: imet, nextHop: '10.255.0.1', attributes: { pmsiTunnel: { flags: 0, tunnelType: 6, label: 10100, tunnelId: '10.255.0.1' }, extendedCommunities: [rt, vxlan] } });
    s.addRoute({ family: 'l2vpn-evpn', route: prefix, nextHop: '10.255.0.1', attributes: { extendedCommunities: [{ kind: 'route-target', value: '65001:5' }, vxlan, rmac] } });

    const j = await waitFor('EVPN routes in FRR', async () => {
      const d = await frr.json<FrrEvpnDetail>('show bgp l2vpn evpn route detail json');
      return d.numPrefix === 3 ? d : undefined;
    });
    const m = evpnEntry(j, '10.0.0.1:100', macIpKey)!;
    assert.ok(m, 'type-2 present under its RD, with its Ethernet tag, MAC and IP');
    const entry = (j['10.0.0.1:100'] as Record<string, { ethTag?: number; mac?: string; ip?: string }>)[macIpKey];
    assert.deepEqual([entry.ethTag, entry.mac, entry.ip], [5, 'aa:bb:cc:00:03:01', '192.168.3.11']);
    assert.equal(m.esi, '00:11:22:33:44:55:66:77:88:99');
    assert.equal(m.vni, '10100/50000');
    assert.deepEqual(m.community?.list, ['65001:7']);
    assert.deepEqual(m.largeCommunity?.list, ['65001:1:2']);
    assert.equal(m.extendedCommunity?.string, 'RT:65001:100 ET:8 Rmac:02:00:00:00:00:01');
    assert.equal(m.nexthops[0].ip, '10.255.0.1');
    assert.deepEqual(m.aspath?.segments, [{ type: 'as-sequence', list: [65001] }]);
    const i = evpnEntry(j, '10.0.0.1:100', '[3]:[0]:[32]:[10.255.0.1]')!;
    assert.deepEqual(i.pmsi, { tunnelType: 'Ingress Replication', label: 10100 });
    assert.equal(i.extendedCommunity?.string, 'RT:65001:100 ET:8');
    const p = evpnEntry(j, '65001:5', '[5]:[0]:[24]:[10.71.0.0]')!;
    assert.equal(p.vni, '50000');
    assert.equal(p.extendedCommunity?.string, 'RT:65001:5 ET:8 Rmac:02:00:00:00:00:01');
  });

  it('withdraws EVPN routes from FRR', async () => {
    s.withdrawRoute({ family: 'l2vpn-evpn', route: macIp });
    const j = await waitFor('EVPN withdrawal in FRR', async () => {
      const d = await frr.json<FrrEvpnDetail>('show bgp l2vpn evpn route detail json');
      return d.numPrefix === 2 ? d : undefined;
    });
    assert.equal(evpnEntry(j, '10.0.0.1:100', macIpKey), undefined);
    assert.ok(evpnEntry(j, '10.0.0.1:100', '[3]:[0]:[32]:[10.255.0.1]'));
  });

  it('exchanges IPv4 and IPv6 unicast with FRR both ways, and drops our own routes FRR sends back (AS-path loop)', async () => {
    s.addRoute({ family: 'ipv4-unicast', prefix: '10.101.0.0/16', nextHop: '10.255.0.1', attributes: { communities: [65001 * 65536 + 9] } });
    s.addRoute({ family: 'ipv6-unicast', prefix: '2001:db8:101::/48', nextHop: '2001:db8::1' });
    const v4 = await waitFor('FRR IPv4 route', () => s.route('ipv4-unicast', '10.100.0.0/16'));
    assert.deepEqual(v4.attributes.asPath, [{ type: 'sequence', asns: [65003] }]);
    assert.equal(v4.nextHop, FRR);
    const v6 = await waitFor('FRR IPv6 route', () => s.route('ipv6-unicast', '2001:db8:100::/48'));
    assert.equal(v6.source, FRR);
    type FrrUnicast = { routes: Record<string, { nexthops: { ip: string }[]; path: string }[]> };
    const t4 = await waitFor('our IPv4 route in FRR', async () => {
      const r = await frr.json<FrrUnicast>('show bgp ipv4 unicast json');
      return r.routes['10.101.0.0/16'] ? r : undefined;
    });
    assert.equal(t4.routes['10.101.0.0/16'][0].nexthops[0].ip, '10.255.0.1');
    assert.equal(t4.routes['10.101.0.0/16'][0].path, '65001');
    await waitFor('our IPv6 route in FRR', async () => (await frr.json<FrrUnicast>('show bgp ipv6 unicast json')).routes['2001:db8:101::/48']);
    // Ours again via FRR would carry AS 65001: never in our Adj-RIB-In.
    assert.equal(s.adjRibIn(FRR, 'ipv4-unicast').some((r) => r.key === '10.101.0.0/16'), false);

    s.withdrawRoute({ family: 'ipv4-unicast', prefix: '10.101.0.0/16' });
    await frr.vtysh(['configure terminal', 'router bgp 65003', 'address-family ipv4 unicast', 'no network 10.100.0.0/16']);
    await waitFor('withdrawn both ways', async () => {
      const r = await frr.json<FrrUnicast>('show bgp ipv4 unicast json');
      return !r.routes['10.101.0.0/16'] && s.route('ipv4-unicast', '10.100.0.0/16') === undefined;
    });
    assert.equal(s.neighbor(FRR)!.state, 'established');
  });

  it('has FRR keep our IPv4 routes as stale while we restart (FRR as GR helper), then converge', async () => {
    type FrrUnicast = { routes: Record<string, { stale?: boolean }[]> };
    s.addRoute({ family: 'ipv4-unicast', prefix: '10.102.0.0/16', nextHop: '10.255.0.1' });
    s.addRoute({ family: 'ipv4-unicast', prefix: '10.103.0.0/16', nextHop: '10.255.0.1' });
    await waitFor('routes in FRR', async () => {
      const r = await frr.json<FrrUnicast>('show bgp ipv4 unicast json');
      return r.routes['10.102.0.0/16'] && r.routes['10.103.0.0/16'];
    });
    await s.stop({ graceful: true });
    const during = await waitFor('FRR marks them stale', async () => {
      const r = await frr.json<FrrUnicast>('show bgp ipv4 unicast json');
      return r.routes['10.102.0.0/16']?.[0].stale ? r : undefined;
    });
    assert.equal(during.routes['10.103.0.0/16']?.[0].stale, true);
    s = new BgpSpeaker({ asn: 65001, routerId: '10.0.0.1', listen: false, holdTime: 30, gracefulRestart: { restarting: true } });
    s.addNeighbor({ address: FRR, port: FRR_PORT, asn: 65003, localAddress: OURS, connectRetryTime: 1 });
    s.addRoute({ family: 'ipv4-unicast', prefix: '10.102.0.0/16', nextHop: '10.255.0.1' });
    await s.start();
    await waitFor('converged in FRR', async () => {
      const r = await frr.json<FrrUnicast>('show bgp ipv4 unicast json');
      return r.routes['10.102.0.0/16'] && !r.routes['10.102.0.0/16'][0].stale && !r.routes['10.103.0.0/16'];
    });
  });
});
