/**
 * Export: the EVPN routes a datacenter's speaker advertises for its local
 * endpoints (ARCHITECTURE.md, data flow step 6).
 *
 * - type 2 (MAC/IP) per endpoint placed on a host: labels [l2Vni, l3Vni]
 *   (symmetric IRB, RFC 9135), next hop = the host's VTEP, router MAC of that
 *   host, one community per policy group from the group's communityTag, MAC
 *   mobility sequence when the endpoint has moved (RFC 7432 §15);
 * - type 3 (inclusive multicast) per (host, subnet with endpoints on that host),
 *   with an ingress-replication PMSI tunnel (RFC 8365 §5.1.3): label = l2Vni,
 *   tunnel id = originator = the host's VTEP;
 * - type 5 (IP prefix, RFC 9136) per subnet that has endpoints, label = l3Vni,
 *   next hop = the VTEP of one host of the subnet (chosen deterministically).
 *
 * Every route carries the domain's export route targets and the VXLAN
 * encapsulation community (RFC 9012, tunnel type 8); receivers assume MPLS
 * without it (FIELD-NOTES trap 4).
 *
 * Route distinguishers: VLAN-based service, so type-2 and type-3 routes of a
 * subnet use `rdAdmin:l2Vni` and type-5 routes the domain's
 * routeDistinguisher or `rdAdmin:l3Vni` (type-0 RDs). VNIs are unique in a
 * deployment, so two tenants' identical prefixes never share an RD; give each
 * datacenter its own rdAdmin (the default is the low 16 bits of the router id).
 */
import type { EvpnRoute, ExtendedCommunity, LargeCommunity, PmsiTunnel } from '#sdn/bgp';
import { evpnKey, ZERO_ESI } from '#sdn/bgp';
import type { Change, Domain, Endpoint, ModelSnapshot, Uuid } from '#sdn/model';
import { routerMacOf } from '#sdn/compiler';
import { parseCommunityTag } from './communities';
import { emptyTouched, FederationModel, Touched } from './model';

export interface FederationConfig {
  /** local AS number: default route targets are `asn:l3Vni` (asn taken modulo 2^16 when it is a 4-octet AS) */
  asn: number;
  /** the speaker's router id (dotted quad) */
  routerId: string;
  /** administrator field of the type-0 RDs made here; default: the low 16 bits of routerId */
  rdAdmin?: number;
}

/** One route to advertise, with what it carries. */
export interface EvpnAdvert {
  key: string;
  route: EvpnRoute;
  nextHop: string;
  extendedCommunities: ExtendedCommunity[];
  communities: number[];
  largeCommunities: LargeCommunity[];
  pmsiTunnel?: PmsiTunnel;
}

export interface ExportUpdates {
  advertise: EvpnAdvert[];
  /** routes no longer advertised (only `key` and `route` matter) */
  withdraw: EvpnAdvert[];
}

export const VXLAN_TUNNEL_TYPE = 8;
/** RFC 6514 §5: ingress replication */
export const PMSI_INGRESS_REPLICATION = 6;

function rdAdminOf(cfg: FederationConfig): number {
  if (cfg.rdAdmin !== undefined) return cfg.rdAdmin;
  const last = cfg.routerId.split('.').map(Number);
  return ((last[2] << 8) | last[3]) & 0xffff;
}

/** The domain's route targets: configured, or `asn:l3Vni` on both sides when none are. */
export function exportTargets(d: Domain, asn: number): string[] {
  return d.exportRouteTargets.length > 0 ? d.exportRouteTargets : [`${asn & 0xffff}:${d.l3Vni}`];
}
export function importTargets(d: Domain, asn: number): string[] {
  return d.importRouteTargets.length > 0 ? d.importRouteTargets : [`${asn & 0xffff}:${d.l3Vni}`];
}

/** Maintains the set of local EVPN routes; `apply` a change, then `takeUpdates`. */
export class EvpnExporter {
  readonly model = new FederationModel();
  private readonly adverts = new Map<string, { advert: EvpnAdvert; digest: string }>();
  /** keys advertised per owner (endpoint id, host/subnet pair, subnet id) */
  private readonly owned = new Map<string, string[]>();
  /** MAC mobility: last VTEP and sequence per (domain, mac) */
  private readonly mobility = new Map<string, { vtep: string; sequence: number }>();
  private readonly mobilityKeys = new Map<Uuid, string>();
  private pending = new Map<string, { advert: EvpnAdvert; withdrawn: boolean }>();
  private readonly rdAdmin: number;

  /**
   * `remoteSequence` tells the highest MAC mobility sequence currently learned
   * from other datacenters for a MAC, so that an endpoint that arrives here
   * after leaving another datacenter is advertised with a higher one.
   */
  constructor(
    private readonly cfg: FederationConfig,
    private readonly remoteSequence: (domainId: Uuid, mac: string) => number | undefined = () => undefined,
  ) {
    this.rdAdmin = rdAdminOf(cfg);
  }

  load(s: ModelSnapshot): void {
    this.recompute(this.model.load(s));
  }

  apply(c: Change): void {
    this.recompute(this.model.apply(c, emptyTouched()));
  }

  applyAll(changes: Iterable<Change>): void {
    const t = emptyTouched();
    for (const c of changes) this.model.apply(c, t);
    this.recompute(t);
  }

  /** How many routes are advertised. */
  get routeCount(): number {
    return this.adverts.size;
  }

  /** Every route currently advertised. */
  routes(): EvpnAdvert[] {
    return [...this.adverts.values()].map((a) => a.advert);
  }

  /** Advertisements and withdrawals since the last call, coalesced by route key. */
  takeUpdates(): ExportUpdates {
    const out: ExportUpdates = { advertise: [], withdraw: [] };
    for (const { advert, withdrawn } of this.pending.values()) (withdrawn ? out.withdraw : out.advertise).push(advert);
    this.pending = new Map();
    return out;
  }

  private recompute(t: Touched): void {
    for (const id of t.endpoints) this.setOwned(`ep:${id}`, this.endpointRoutes(id));
    for (const k of t.hostSubnets) this.setOwned(`t3:${k}`, this.inclusiveMulticast(k));
    for (const id of t.subnets) this.setOwned(`t5:${id}`, this.prefixRoutes(id));
  }

  private setOwned(owner: string, next: EvpnAdvert[]): void {
    const before = this.owned.get(owner) ?? [];
    const keep = new Set(next.map((a) => a.key));
    for (const key of before) {
      if (keep.has(key)) continue;
      const old = this.adverts.get(key);
      if (old) {
        this.adverts.delete(key);
        this.pending.set(key, { advert: old.advert, withdrawn: true });
      }
    }
    for (const a of next) {
      const digest = JSON.stringify(a);
      if (this.adverts.get(a.key)?.digest === digest) continue;
      this.adverts.set(a.key, { advert: a, digest });
      this.pending.set(a.key, { advert: a, withdrawn: false });
    }
    if (next.length > 0) this.owned.set(owner, [...keep]);
    else this.owned.delete(owner);
  }

  private common(d: Domain, vtep: string): ExtendedCommunity[] {
    return [
      ...exportTargets(d, this.cfg.asn).map((value): ExtendedCommunity => ({ kind: 'route-target', value })),
      { kind: 'encapsulation', tunnelType: VXLAN_TUNNEL_TYPE },
      { kind: 'router-mac', mac: routerMacOf(vtep) },
    ];
  }

  private endpointRoutes(id: Uuid): EvpnAdvert[] {
    const m = this.model;
    const e = m.endpoints.get(id);
    if (!e) {
      // gone: its sequence is history (a return from another datacenter is handled by remoteSequence)
      const k = this.mobilityKeys.get(id);
      if (k !== undefined) this.mobility.delete(k);
      this.mobilityKeys.delete(id);
      return [];
    }
    if (e.hostId === null) return [];
    const host = m.hosts.get(e.hostId);
    const subnet = m.subnets.get(e.subnetId);
    const domain = subnet && m.domains.get(subnet.domainId);
    if (!host || !subnet || !domain) return [];
    const sequence = this.sequenceFor(e, host.vtepIp);
    const ext = this.common(domain, host.vtepIp);
    if (sequence > 0) ext.push({ kind: 'mac-mobility', sticky: false, sequence });
    const communities: number[] = [];
    const large: LargeCommunity[] = [];
    for (const gid of e.policyGroupIds) {
      const tag = m.groups.get(gid)?.communityTag;
      const c = tag ? parseCommunityTag(tag) : null;
      if (c?.kind === 'standard') communities.push(c.value);
      else if (c?.kind === 'large') large.push(c.value);
    }
    communities.sort((a, b) => a - b);
    large.sort((a, b) => a.global - b.global || a.local1 - b.local1 || a.local2 - b.local2);
    const route: EvpnRoute = {
      routeType: 2,
      rd: `${this.rdAdmin}:${subnet.l2Vni}`,
      esi: ZERO_ESI,
      ethernetTag: 0,
      mac: e.mac,
      ip: e.ip,
      labels: [subnet.l2Vni, domain.l3Vni],
    };
    return [{ key: evpnKey(route), route, nextHop: host.vtepIp, extendedCommunities: ext, communities, largeCommunities: large }];
  }

  /** RFC 7432 §15: a MAC seen behind a new VTEP gets a higher sequence than any it had. */
  private sequenceFor(e: Endpoint, vtep: string): number {
    const k = `${e.domainId}|${e.mac}`;
    this.mobilityKeys.set(e.id, k);
    const known = this.mobility.get(k);
    const remote = this.remoteSequence(e.domainId, e.mac);
    let sequence = known?.sequence ?? 0;
    if (known && known.vtep !== vtep) sequence++;
    if (remote !== undefined && remote >= sequence) sequence = remote + 1;
    this.mobility.set(k, { vtep, sequence });
    return sequence;
  }

  private inclusiveMulticast(k: string): EvpnAdvert[] {
    const m = this.model;
    if (!m.hostSubnetCount.has(k)) return [];
    const [hostId, subnetId] = k.split('/');
    const host = m.hosts.get(hostId);
    const subnet = m.subnets.get(subnetId);
    const domain = subnet && m.domains.get(subnet.domainId);
    if (!host || !subnet || !domain) return [];
    const route: EvpnRoute = { routeType: 3, rd: `${this.rdAdmin}:${subnet.l2Vni}`, ethernetTag: 0, originatorIp: host.vtepIp };
    return [
      {
        key: evpnKey(route),
        route,
        nextHop: host.vtepIp,
        extendedCommunities: this.common(domain, host.vtepIp).filter((c) => c.kind !== 'router-mac'),
        communities: [],
        largeCommunities: [],
        pmsiTunnel: { flags: 0, tunnelType: PMSI_INGRESS_REPLICATION, label: subnet.l2Vni, tunnelId: host.vtepIp },
      },
    ];
  }

  private prefixRoutes(subnetId: Uuid): EvpnAdvert[] {
    const m = this.model;
    const subnet = m.subnets.get(subnetId);
    const domain = subnet && m.domains.get(subnet.domainId);
    const hosts = m.hostsBySubnet.get(subnetId);
    if (!subnet || !domain || !hosts) return [];
    // the lowest host id that has endpoints in the subnet: stable while it keeps them
    let chosen: string | null = null;
    for (const h of hosts.keys()) if (m.hosts.has(h) && (chosen === null || h < chosen)) chosen = h;
    if (chosen === null) return [];
    const vtep = m.hosts.get(chosen)!.vtepIp;
    const route: EvpnRoute = {
      routeType: 5,
      rd: domain.routeDistinguisher ?? `${this.rdAdmin}:${domain.l3Vni}`,
      esi: ZERO_ESI,
      ethernetTag: 0,
      prefix: subnet.cidr,
      gateway: subnet.ipVersion === 4 ? '0.0.0.0' : '::',
      label: domain.l3Vni,
    };
    return [{ key: evpnKey(route), route, nextHop: vtep, extendedCommunities: this.common(domain, vtep), communities: [], largeCommunities: [] }];
  }
}

