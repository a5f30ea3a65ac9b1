/**
 * Import: what a route learned from another datacenter (or a DC router)
 * means for this one. The route targets choose the domain (RFC 4364 §4.3.5
 * semantics: a route is imported into every VRF whose import targets it
 * carries), the VNI or the address chooses the subnet, and the communities
 * choose the local policy groups the remote endpoint belongs to, so that
 * local ACLs written against a group match its members wherever they run.
 *
 * Tenant isolation: a route whose targets match domains of more than one
 * enterprise is imported nowhere; it is reported instead.
 */
import { evpnKey } from '#sdn/bgp';
import type { Domain, Subnet, Uuid } from '#sdn/model';
import { cidrContains, parseCidr, parseIp } from '#sdn/model';
import { tagOfCommunity } from './communities';
import { EvpnAdvert, importTargets, VXLAN_TUNNEL_TYPE } from './export';
import type { FederationModel } from './model';

/** A best path learned over BGP, as the speaker hands it over: what an advert carries, and where it came from. */
export type ReceivedRoute = Omit<EvpnAdvert, 'key'> & {
  /** address of the peer it was learned from */
  peer: string;
};

export interface RemoteEndpoint {
  key: string;
  enterpriseId: Uuid;
  domainId: Uuid;
  /** the local subnet it extends, or null for a host of a subnet that exists only remotely (routed) */
  subnetId: Uuid | null;
  mac: string;
  ip: string | null;
  vtepIp: string;
  l2Vni: number;
  l3Vni: number | null;
  routerMac: string | null;
  policyGroupIds: Uuid[];
  mobilitySequence: number;
  rd: string;
  peer: string;
}

export interface RemoteVtep {
  key: string;
  enterpriseId: Uuid;
  domainId: Uuid;
  subnetId: Uuid;
  l2Vni: number;
  vtepIp: string;
  peer: string;
}

export interface RemotePrefix {
  key: string;
  enterpriseId: Uuid;
  domainId: Uuid;
  prefix: string;
  vtepIp: string;
  l3Vni: number;
  routerMac: string | null;
  peer: string;
}

export type Imported =
  | { kind: 'endpoint'; endpoint: RemoteEndpoint }
  | { kind: 'vtep'; vtep: RemoteVtep }
  | { kind: 'prefix'; prefix: RemotePrefix }
  | { kind: 'ignored'; key: string; reason: string; /** `${domainId}|${ip}` held by a local endpoint */ conflict?: string };

export class EvpnImporter {
  private indexedAt = -1;
  private domainsByTarget = new Map<string, Domain[]>();
  private subnetsByVni = new Map<number, Subnet>();

  constructor(
    private readonly model: FederationModel,
    private readonly asn: number,
    /** this datacenter's VTEPs: a route pointing at one of them is our own, come back */
    private readonly isLocalVtep: (ip: string) => boolean = () => false,
  ) {}

  private index(): void {
    if (this.indexedAt === this.model.version) return;
    this.domainsByTarget = new Map();
    for (const d of this.model.domains.values()) {
      for (const rt of importTargets(d, this.asn)) {
        const list = this.domainsByTarget.get(rt) ?? [];
        list.push(d);
        this.domainsByTarget.set(rt, list);
      }
    }
    this.subnetsByVni = new Map([...this.model.subnets.values()].map((s) => [s.l2Vni, s]));
    this.indexedAt = this.model.version;
  }

  classify(r: ReceivedRoute): Imported {
    this.index();
    const key = evpnKey(r.route);
    const ignored = (reason: string): Imported => ({ kind: 'ignored', key, reason });
    if (!r.extendedCommunities.some((c) => c.kind === 'encapsulation' && c.tunnelType === VXLAN_TUNNEL_TYPE)) {
      return ignored('no VXLAN encapsulation community (RFC 9012 tunnel type 8)');
    }
    if (this.isLocalVtep(r.nextHop)) return ignored(`next hop ${r.nextHop} is a local VTEP`);
    const found = new Map<Uuid, Domain>();
    for (const c of r.extendedCommunities) {
      if (c.kind !== 'route-target') continue;
      for (const d of this.domainsByTarget.get(c.value) ?? []) found.set(d.id, d);
    }
    if (found.size === 0) return ignored('no domain imports its route targets');
    const enterprises = new Set([...found.values()].map((d) => d.enterpriseId));
    if (enterprises.size > 1) return ignored(`route targets match domains of ${enterprises.size} enterprises`);
    const routerMac = r.extendedCommunities.find((c) => c.kind === 'router-mac');
    const rmac = routerMac?.kind === 'router-mac' ? routerMac.mac : null;
    const route = r.route;
    switch (route.routeType) {
      case 2: {
        const l2Vni = route.labels[0];
        const byVni = this.subnetsByVni.get(l2Vni);
        // a domain the route targets, holding the subnet of that VNI, else the one whose subnet contains the address
        let domain: Domain | undefined = byVni ? found.get(byVni.domainId) : undefined;
        let subnet: Subnet | undefined = domain ? byVni : undefined;
        if (!subnet && route.ip !== undefined) {
          const addr = parseIp(route.ip);
          for (const d of found.values()) {
            for (const sid of this.model.subnetsByDomain.get(d.id) ?? []) {
              const s = this.model.subnets.get(sid)!;
              const c = parseCidr(s.cidr);
              if (addr && c.ok && cidrContains(c.cidr, addr.version, addr.value)) {
                // the same subnet on both sides must be the same broadcast domain: one VNI
                return ignored(`${route.ip} is in local subnet ${s.cidr} (VNI ${s.l2Vni}) but arrives with VNI ${l2Vni}: give a stretched subnet the same l2Vni in every datacenter`);
              }
            }
          }
        }
        domain ??= found.values().next().value as Domain;
        if (!subnet && route.ip === undefined) return ignored(`MAC-only route for VNI ${l2Vni}, which no local subnet of the domain has`);
        if (route.ip !== undefined) {
          // a route may not take the address of a local endpoint (the same MAC is the endpoint moving, RFC 7432 §15)
          const conflict = `${domain.id}|${route.ip}`;
          const local = this.model.endpoints.get(this.model.endpointByAddress.get(conflict) ?? '');
          if (local && local.mac !== route.mac) {
            return { kind: 'ignored', key, reason: `${route.ip} belongs to local endpoint ${local.id} (MAC ${local.mac}), not ${route.mac}`, conflict };
          }
        }
        const mobility = r.extendedCommunities.find((c) => c.kind === 'mac-mobility');
        const tags = new Set<string>([...r.communities.map(tagOfCommunity), ...r.largeCommunities.map(tagOfCommunity)]);
        const policyGroupIds: Uuid[] = [];
        for (const gid of this.model.groupsByDomain.get(domain.id) ?? []) {
          const tag = this.model.groups.get(gid)?.communityTag;
          if (tag && tags.has(tag)) policyGroupIds.push(gid);
        }
        policyGroupIds.sort();
        return {
          kind: 'endpoint',
          endpoint: {
            key,
            enterpriseId: domain.enterpriseId,
            domainId: domain.id,
            subnetId: subnet?.id ?? null,
            mac: route.mac,
            ip: route.ip ?? null,
            vtepIp: r.nextHop,
            l2Vni,
            l3Vni: route.labels[1] ?? null,
            routerMac: rmac,
            policyGroupIds,
            mobilitySequence: mobility?.kind === 'mac-mobility' ? mobility.sequence : 0,
            rd: route.rd,
            peer: r.peer,
          },
        };
      }
      case 3: {
        const l2Vni = r.pmsiTunnel?.label;
        if (l2Vni === undefined || r.pmsiTunnel!.tunnelType !== 6) return ignored('type-3 route without an ingress-replication PMSI tunnel');
        const subnet = this.subnetsByVni.get(l2Vni);
        const domain = subnet && found.get(subnet.domainId);
        if (!subnet || !domain) return ignored(`no local subnet with VNI ${l2Vni} in the domains its route targets name`);
        return {
          kind: 'vtep',
          vtep: { key, enterpriseId: domain.enterpriseId, domainId: domain.id, subnetId: subnet.id, l2Vni, vtepIp: r.pmsiTunnel!.tunnelId, peer: r.peer },
        };
      }
      case 5: {
        if (found.size > 1) return ignored('a prefix route must name exactly one domain');
        const domain = found.values().next().value as Domain;
        return {
          kind: 'prefix',
          prefix: { key, enterpriseId: domain.enterpriseId, domainId: domain.id, prefix: route.prefix, vtepIp: r.nextHop, l3Vni: route.label, routerMac: rmac, peer: r.peer },
        };
      }
      default:
        return ignored(`route type ${route.routeType === 'unknown' ? route.type : route.routeType} carries nothing to import`);
    }
  }
}
