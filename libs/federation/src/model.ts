/**
 * The slice of the policy model that federation needs, kept current from a
 * snapshot plus change-log entries, with the indexes that make one change
 * cost work in proportion to what it touches.
 */
import type { Change, Domain, Endpoint, Host, ModelSnapshot, PolicyGroup, Subnet, Uuid } from '#sdn/model';

function addTo<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  let s = m.get(k);
  if (s === undefined) m.set(k, (s = new Set()));
  s.add(v);
}
function removeFrom<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (s === undefined) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}

/** What a change touched, so the exporter knows which routes to recompute. */
export interface Touched {
  endpoints: Set<Uuid>;
  subnets: Set<Uuid>;
  /** (host, subnet) pairs whose type-3 route may have changed */
  hostSubnets: Set<string>;
}

export const hostSubnetKey = (hostId: Uuid, subnetId: Uuid) => `${hostId}/${subnetId}`;

export class FederationModel {
  readonly domains = new Map<Uuid, Domain>();
  readonly subnets = new Map<Uuid, Subnet>();
  readonly hosts = new Map<Uuid, Host>();
  readonly endpoints = new Map<Uuid, Endpoint>();
  readonly groups = new Map<Uuid, PolicyGroup>();

  readonly subnetsByDomain = new Map<Uuid, Set<Uuid>>();
  readonly endpointsBySubnet = new Map<Uuid, Set<Uuid>>();
  readonly endpointsByHost = new Map<Uuid, Set<Uuid>>();
  readonly endpointsByGroup = new Map<Uuid, Set<Uuid>>();
  readonly groupsByDomain = new Map<Uuid, Set<Uuid>>();
  /** local endpoints by `${domainId}|${ip}`: an imported route may not claim their addresses */
  readonly endpointByAddress = new Map<string, Uuid>();
  /** endpoints per (host, subnet): a type-3 route exists while the count is positive */
  readonly hostSubnetCount = new Map<string, number>();
  /** hosts with endpoints per subnet: the type-5 next hop is chosen among them */
  readonly hostsBySubnet = new Map<Uuid, Map<Uuid, number>>();

  /** bumped when domains, subnets or groups change: importers rebuild their indexes */
  version = 0;

  load(s: ModelSnapshot): Touched {
    this.version++;
    const t = emptyTouched();
    for (const d of s.domains) this.domains.set(d.id, d);
    for (const h of s.hosts) this.hosts.set(h.id, h);
    for (const g of s.policyGroups) this.putGroup(g);
    for (const sn of s.subnets) this.putSubnet(sn, t);
    for (const e of s.endpoints) this.putEndpoint(e, t);
    return t;
  }

  /** Applies one change-log entry; returns what must be recomputed. */
  apply(c: Change, t: Touched = emptyTouched()): Touched {
    if (c.kind === 'domain' || c.kind === 'subnet' || c.kind === 'policyGroup') this.version++;
    switch (c.kind) {
      case 'domain':
        if (c.state) this.domains.set(c.id, c.state);
        else this.domains.delete(c.id);
        for (const sid of this.subnetsByDomain.get(c.id) ?? []) this.touchSubnet(sid, t);
        return t;
      case 'subnet':
        if (c.state) this.putSubnet(c.state, t);
        else this.deleteSubnet(c.id, t);
        return t;
      case 'host':
        if (c.state) this.hosts.set(c.id, c.state);
        else this.hosts.delete(c.id);
        for (const eid of this.endpointsByHost.get(c.id) ?? []) {
          const e = this.endpoints.get(eid)!;
          t.endpoints.add(eid);
          t.hostSubnets.add(hostSubnetKey(c.id, e.subnetId));
          t.subnets.add(e.subnetId);
        }
        return t;
      case 'endpoint':
        this.deleteEndpoint(c.id, t);
        if (c.state) this.putEndpoint(c.state, t);
        return t;
      case 'policyGroup': {
        const before = this.groups.get(c.id);
        if (before) removeFrom(this.groupsByDomain, before.domainId, c.id);
        if (c.state) this.putGroup(c.state);
        else this.groups.delete(c.id);
        if (before?.communityTag !== c.state?.communityTag) {
          for (const eid of this.endpointsByGroup.get(c.id) ?? []) t.endpoints.add(eid);
        }
        return t;
      }
      case 'enterprise':
      case 'zone':
      case 'networkMacro':
      case 'networkMacroGroup':
      case 'aclRule':
      case 'bgpSpeaker':
      case 'bgpNeighbor':
        return t; // no route depends on these
      default: {
        const never: never = c;
        throw new Error(`unknown change kind ${(never as Change).kind}`);
      }
    }
  }

  private putGroup(g: PolicyGroup): void {
    this.groups.set(g.id, g);
    addTo(this.groupsByDomain, g.domainId, g.id);
  }

  private putSubnet(s: Subnet, t: Touched): void {
    const before = this.subnets.get(s.id);
    if (before && before.domainId !== s.domainId) removeFrom(this.subnetsByDomain, before.domainId, s.id);
    this.subnets.set(s.id, s);
    addTo(this.subnetsByDomain, s.domainId, s.id);
    this.touchSubnet(s.id, t);
  }

  private deleteSubnet(id: Uuid, t: Touched): void {
    const s = this.subnets.get(id);
    if (!s) return;
    this.touchSubnet(id, t);
    this.subnets.delete(id);
    removeFrom(this.subnetsByDomain, s.domainId, id);
  }

  private touchSubnet(id: Uuid, t: Touched): void {
    t.subnets.add(id);
    for (const eid of this.endpointsBySubnet.get(id) ?? []) t.endpoints.add(eid);
    for (const hostId of this.hostsBySubnet.get(id)?.keys() ?? []) t.hostSubnets.add(hostSubnetKey(hostId, id));
  }

  private putEndpoint(e: Endpoint, t: Touched): void {
    this.endpoints.set(e.id, e);
    this.endpointByAddress.set(`${e.domainId}|${e.ip}`, e.id);
    addTo(this.endpointsBySubnet, e.subnetId, e.id);
    for (const g of e.policyGroupIds) addTo(this.endpointsByGroup, g, e.id);
    t.endpoints.add(e.id);
    if (e.hostId !== null) {
      addTo(this.endpointsByHost, e.hostId, e.id);
      this.count(e.hostId, e.subnetId, +1, t);
    }
  }

  private deleteEndpoint(id: Uuid, t: Touched): void {
    const e = this.endpoints.get(id);
    if (!e) return;
    this.endpoints.delete(id);
    if (this.endpointByAddress.get(`${e.domainId}|${e.ip}`) === id) this.endpointByAddress.delete(`${e.domainId}|${e.ip}`);
    removeFrom(this.endpointsBySubnet, e.subnetId, id);
    for (const g of e.policyGroupIds) removeFrom(this.endpointsByGroup, g, id);
    t.endpoints.add(id);
    if (e.hostId !== null) {
      removeFrom(this.endpointsByHost, e.hostId, id);
      this.count(e.hostId, e.subnetId, -1, t);
    }
  }

  private count(hostId: Uuid, subnetId: Uuid, delta: number, t: Touched): void {
    const k = hostSubnetKey(hostId, subnetId);
    const n = (this.hostSubnetCount.get(k) ?? 0) + delta;
    if (n > 0) this.hostSubnetCount.set(k, n);
    else this.hostSubnetCount.delete(k);
    let hosts = this.hostsBySubnet.get(subnetId);
    if (hosts === undefined) this.hostsBySubnet.set(subnetId, (hosts = new Map()));
    if (n > 0) hosts.set(hostId, n);
    else hosts.delete(hostId);
    if (hosts.size === 0) this.hostsBySubnet.delete(subnetId);
    if ((n === 0 && delta < 0) || (n === 1 && delta > 0)) {
      t.hostSubnets.add(k);
      t.subnets.add(subnetId); // the type-5 next hop may change
    }
  }
}

export function emptyTouched(): Touched {
  return { endpoints: new Set(), subnets: new Set(), hostSubnets: new Set() };
}
