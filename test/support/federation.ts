/**
 * Federation test worlds: a gobgpd route reflector, and per datacenter the
 * same domain (same route targets, a stretched subnet with the same VNI and
 * its addresses split between the datacenters, groups with the same
 * community tags) plus a BGP speaker configured through the directory API.
 */
import type { RunningController } from '../../apps/controller/src/controller';
import { federate, type Federation } from '../../apps/controller/src/federation';
import { createLogger } from '../../apps/controller/src/log';
import { Gobgpd } from '../bgp/support/gobgp.js';
import { testLogLevel } from './controller';
import { Api, makeTree } from './directory';

export const FED_ASN = 65000;

/** The federation of a test controller, wired as main.ts wires it (federate): reconnects every second, status every 200 ms. */
export function testFederation(ctl: RunningController, speakerName: string): Federation {
  const log = createLogger(testLogLevel(), 'federation');
  return federate(ctl.controller, { databaseUrl: ctl.controller.config.databaseUrl, speakerName, log, connectRetryTime: 1, statusIntervalMs: 200 });
}

/** gobgpd reflecting EVPN routes between the given iBGP clients. */
export function routeReflector(opts: { address: string; port: number; apiPort: number; clients: string[]; gracefulRestart?: boolean }): Gobgpd {
  return new Gobgpd({
    asn: FED_ASN,
    routerId: '10.0.0.250',
    address: opts.address,
    apiPort: opts.apiPort,
    port: opts.port,
    neighbors: opts.clients.map((address) => ({
      address,
      asn: FED_ASN,
      families: ['l2vpn-evpn'],
      routeReflectorClient: true,
      gracefulRestart: opts.gracefulRestart ?? false,
    })),
  });
}

export interface StretchedDomain {
  enterprise: any;
  domain: any;
  zone: any;
  subnet: any;
  groups: Record<string, any>;
}

/**
 * The datacenter's copy of a stretched domain. `half` picks the addresses
 * this datacenter allocates: 'low' keeps .2-.127 of the subnet's first /24
 * for itself (reserving the rest of it), 'high' the rest.
 */
export async function stretchedDomain(
  api: Api,
  name: string,
  opts: { cidr: string; l2Vni: number; routeTarget: string; half: 'low' | 'high'; groups: Record<string, string>; domain?: Record<string, unknown> },
): Promise<StretchedDomain> {
  const tree = await makeTree(api, `${name}-t`, '10.199.0.0/16');
  const domain = (await api.patch(`/api/v1/domains/${tree.domain.id}`, { importRouteTargets: [opts.routeTarget], exportRouteTargets: [opts.routeTarget], ...opts.domain })).body;
  await api.del(`/api/v1/subnets/${tree.subnet.id}`);
  const base = opts.cidr.split('/')[0].split('.').slice(0, 3).join('.');
  const reservedRanges = [opts.half === 'low' ? { start: `${base}.128`, end: `${base}.254` } : { start: `${base}.2`, end: `${base}.127` }];
  const subnet = await api.make(`/api/v1/zones/${tree.zone.id}/subnets`, { name: 'stretched', cidr: opts.cidr, l2Vni: opts.l2Vni, reservedRanges });
  const groups: Record<string, any> = {};
  for (const [g, tag] of Object.entries(opts.groups)) groups[g] = await api.make(`/api/v1/domains/${domain.id}/policy-groups`, { name: g, communityTag: tag });
  return { enterprise: tree.enterprise, domain, zone: tree.zone, subnet, groups };
}

/** A speaker named `name` with one neighbour, through the API. */
export async function bgpSpeaker(
  api: Api,
  name: string,
  opts: { address: string; port: number; routerId: string; neighbor: { address: string; port: number; asn?: number; datacenter?: string; passive?: boolean } },
): Promise<{ speaker: any; neighbor: any }> {
  const speaker = await api.make('/api/v1/bgp-speakers', { name, datacenter: name, asn: FED_ASN, routerId: opts.routerId, listenAddress: opts.address, listenPort: opts.port });
  const n = opts.neighbor;
  const neighbor = await api.make(`/api/v1/bgp-speakers/${speaker.id}/bgp-neighbors`, {
    name: 'peer',
    address: n.address,
    port: n.port,
    asn: n.asn ?? FED_ASN,
    passive: n.passive ?? false,
    ...(n.datacenter ? { datacenter: n.datacenter } : {}),
  });
  return { speaker, neighbor };
}
