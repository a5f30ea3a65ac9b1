/**
 * FRR bgpd as a DC router (eBGP, l2vpn evpn) learns a domain's subnets as
 * EVPN type-5 prefixes from the controller's speaker, with the domain's route
 * target, its l3Vni, the VXLAN encapsulation and the router MAC of the host.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Federation } from '../../apps/controller/src/federation';
import { createLogger } from '../../apps/controller/src/log';
import { FrrBgpd } from '../bgp/support/frr.js';
import { waitFor } from '../bgp/support/wait.js';
import { makeTree, startTestDirectory, TestDirectory } from '../support/directory';

const OURS = '127.0.9.1';
const FRR = '127.0.9.2';
const FRR_PORT = 21911;
const OUR_PORT = 21912;

describe('FRR as a DC router', { timeout: 120_000 }, () => {
  let t: TestDirectory;
  let fed: Federation;
  const frr = new FrrBgpd(
    FRR,
    FRR_PORT,
    `frr defaults datacenter
hostname dc-router
!
router bgp 65010
 bgp router-id 10.0.0.10
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor ${OURS} remote-as 65000
 neighbor ${OURS} port ${OUR_PORT}
 neighbor ${OURS} passive
 neighbor ${OURS} timers connect 1
 !
 address-family l2vpn evpn
  neighbor ${OURS} activate
 exit-address-family
!
`,
  );
  const w: Record<string, any> = {};

  before(async () => {
    await frr.start();
    t = await startTestDirectory();
    const tree = await makeTree(t.api, 'frr', '10.70.0.0/24');
    Object.assign(w, tree);
    await t.api.patch(`/api/v1/domains/${tree.domain.id}`, { importRouteTargets: ['65000:9600'], exportRouteTargets: ['65000:9600'] });
    w.host = await t.api.make('/api/v1/hosts', { name: 'h1', vtepIp: '10.255.31.1' });
    w.ep = await t.api.make(`/api/v1/subnets/${tree.subnet.id}/endpoints`, { name: 'e1', hostId: w.host.id });
    const sp = await t.api.make('/api/v1/bgp-speakers', { name: 'dc1', datacenter: 'dc1', asn: 65000, routerId: '10.255.31.100', listenAddress: OURS, listenPort: OUR_PORT });
    w.peer = await t.api.make(`/api/v1/bgp-speakers/${sp.id}/bgp-neighbors`, { name: 'dc-router', address: FRR, port: FRR_PORT, asn: 65010 });
    fed = new Federation({ databaseUrl: t.dir.databaseUrl, speakerName: 'dc1', log: createLogger('error'), connectRetryTime: 1, statusIntervalMs: 200 });
    await fed.start();
  });
  after(async () => {
    await fed?.stop();
    await t?.stop();
    await frr.stop();
  });

  it("shows the domain's subnet as a type-5 route with target, VNI, encapsulation and router MAC", async () => {
    const route = await waitFor(
      'the type-5 route in FRR',
      async () => {
        const j = await frr.json<Record<string, any>>('show bgp l2vpn evpn route detail json');
        for (const [rd, byPrefix] of Object.entries(j)) {
          if (typeof byPrefix !== 'object' || byPrefix === null) continue;
          for (const [p, v] of Object.entries(byPrefix as Record<string, any>)) {
            if (p.startsWith('[5]') && p.includes('10.70.0.0')) return { rd, path: (v as any).paths[0][0] };
          }
        }
        return undefined;
      },
      30_000,
      250,
    );
    assert.equal(route.rd, `${(31 << 8) | 100}:${w.domain.l3Vni}`, 'RD rdAdmin:l3Vni (rdAdmin = low 16 bits of the router id)');
    const ext: string = route.path.extendedCommunity.string;
    assert.match(ext, /RT:65000:9600/);
    assert.match(ext, /ET:8/, 'VXLAN encapsulation');
    assert.match(ext, /Rmac:02:00:0a:ff:1f:01/, 'router MAC of the host');
    assert.equal(String(route.path.vni ?? route.path.VNI), String(w.domain.l3Vni));
    assert.equal(route.path.nexthops[0].ip, '10.255.31.1', 'next hop: the VTEP, unchanged over eBGP');
    // the API shows the session with what it carried
    await waitFor('advertised routes in the API', async () => (await t.api.get(`/api/v1/bgp-neighbors/${w.peer.id}`)).body.status.advertisedRoutes >= 3);
  });
});
