/**
 * Imported routes as model objects, so that the compiler gives local hosts
 * the entries of endpoints that live in another datacenter with no code of
 * its own: a remote VTEP is an *external host* and a remote endpoint an
 * endpoint placed on it. The compiler then computes, for every local host of
 * the domain, the FDB and neighbour entries (stretched subnet), the flood
 * list (the external host shares the VNI), and the address-set members of the
 * local policy groups the endpoint's communities named, exactly as for a
 * local endpoint on another host.
 *
 * External hosts have no agent: the controller neither streams to them nor
 * waits for their acknowledgement. Their ids and the endpoints' ids are
 * derived from the VTEP and the route (name-based UUIDs), so the same route
 * always maps to the same object.
 *
 * Type-5 prefixes become external routes of their domain (Engine
 * setExternalRoutes): every host of the domain routes the prefix over the
 * l3Vni to the VTEP, with the router MAC the route carried. A prefix inside
 * a local subnet of the domain is not installed: the local subnet (stretched
 * or not) is reached by its own entries.
 *
 * Not bridged yet: remote endpoints of subnets that exist only remotely
 * (routed hosts, reachable through their subnet's type-5 route); they stay in
 * the API (remote-endpoints).
 */
import { createHash } from 'node:crypto';
import { routerMacOf, type ExternalRoute } from '#sdn/compiler';
import type { Imported, RemoteEndpoint, RemotePrefix } from '#sdn/federation';
import type { Change, Endpoint, Host, Subnet } from '#sdn/model';
import { cidrsOverlap, parseCidr } from '#sdn/model';

/** A name-based UUID (RFC 9562 §5.5 layout, SHA-1). */
export function nameUuid(name: string): string {
  const h = createHash('sha1').update(`sdn-federation:${name}`).digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

const EPOCH = '1970-01-01T00:00:00.000Z';

export class RemoteBridge {
  /** external hosts by id (a name-based UUID of the VTEP), with the number of bridged endpoints behind each */
  private readonly hosts = new Map<string, { host: Host; endpoints: number }>();
  /** bridged endpoints by route key */
  private readonly endpoints = new Map<string, Endpoint>();
  readonly externalHostIds = new Set<string>();
  readonly externalEndpointIds = new Set<string>();
  /** imported prefixes by domain, then by route key */
  private readonly prefixes = new Map<string, Map<string, RemotePrefix>>();

  constructor(
    private readonly subnetOf: (id: string) => Subnet | undefined,
    private readonly subnetsOfDomain: (domainId: string) => Iterable<Subnet> = () => [],
  ) {}

  /** The external routes of a domain, from its imported prefixes. */
  routesOf(domainId: string): ExternalRoute[] {
    const out: ExternalRoute[] = [];
    const locals = [...this.subnetsOfDomain(domainId)].map((s) => parseCidr(s.cidr)).flatMap((c) => (c.ok ? [c.cidr] : []));
    for (const p of this.prefixes.get(domainId)?.values() ?? []) {
      const c = parseCidr(p.prefix);
      // inside a local subnet (the stretched subnet's own type-5 from the other side): its entries reach it;
      // a covering prefix (a default route) is fine, the connected subnet is more specific
      if (!c.ok || locals.some((l) => cidrsOverlap(l, c.cidr) && c.cidr.prefixLength >= l.prefixLength)) continue;
      out.push({ key: nameUuid(`prefix/${domainId}/${p.key}`), prefix: p.prefix, vtep: p.vtepIp, routerMac: p.routerMac ?? routerMacOf(p.vtepIp) });
    }
    return out;
  }

  /** Domains with imported prefixes. */
  prefixDomains(): string[] {
    return [...this.prefixes.keys()];
  }

  /** The model changes that turn the previous imported state into the new one, and the domains whose prefixes changed. */
  update(changed: Imported[], removed: Imported[]): { changes: Change[]; prefixDomains: string[] } {
    const out: Change[] = [];
    const domains = new Set<string>();
    const dropPrefix = (p: RemotePrefix) => {
      const m = this.prefixes.get(p.domainId);
      if (m?.delete(p.key)) domains.add(p.domainId);
      if (m && m.size === 0) this.prefixes.delete(p.domainId);
    };
    for (const r of removed) {
      if (r.kind === 'endpoint') this.remove(r.endpoint.key, out);
      else if (r.kind === 'prefix') dropPrefix(r.prefix);
    }
    for (const c of changed) {
      if (c.kind === 'prefix') {
        // the same route may have moved to another domain: drop it everywhere first
        for (const m of this.prefixes.values()) {
          const old = m.get(c.prefix.key);
          if (old) dropPrefix(old);
        }
        let m = this.prefixes.get(c.prefix.domainId);
        if (!m) this.prefixes.set(c.prefix.domainId, (m = new Map()));
        m.set(c.prefix.key, c.prefix);
        domains.add(c.prefix.domainId);
        continue;
      }
      if (c.kind !== 'endpoint') continue;
      const e = c.endpoint;
      this.remove(e.key, out);
      const subnet = e.subnetId ? this.subnetOf(e.subnetId) : undefined;
      if (!subnet || e.ip === null) continue; // see the header: routed remote hosts are not bridged yet
      this.add(e, subnet, out);
    }
    return { changes: out, prefixDomains: [...domains] };
  }

  /** Every bridged object, as creations (after the controller rebuilt its model from the database). */
  all(): Change[] {
    const out: Change[] = [];
    for (const { host } of this.hosts.values()) out.push(change('host', host.id, host));
    for (const e of this.endpoints.values()) out.push(change('endpoint', e.id, e));
    return out;
  }

  private add(r: RemoteEndpoint, subnet: Subnet, out: Change[]): void {
    const hostId = nameUuid(`vtep/${r.vtepIp}`);
    let h = this.hosts.get(hostId);
    if (!h) {
      const host: Host = {
        id: hostId,
        createdAt: EPOCH,
        updatedAt: EPOCH,
        revision: 0,
        name: `remote-vtep-${r.vtepIp}`,
        description: `learned over BGP from ${r.peer}`,
        vtepIp: r.vtepIp,
        status: 'up',
        lastSeenAt: null,
      };
      h = { host, endpoints: 0 };
      this.hosts.set(hostId, h);
      this.externalHostIds.add(host.id);
      out.push(change('host', host.id, host));
    }
    h.endpoints++;
    const e: Endpoint = {
      id: nameUuid(`endpoint/${r.domainId}/${r.key}`),
      createdAt: EPOCH,
      updatedAt: EPOCH,
      revision: 0,
      enterpriseId: subnet.enterpriseId,
      domainId: subnet.domainId,
      zoneId: subnet.zoneId,
      subnetId: subnet.id,
      hostId: h.host.id,
      kind: 'vm',
      name: `remote-${r.mac}`,
      externalId: null,
      mac: r.mac,
      ip: r.ip!,
      policyGroupIds: r.policyGroupIds,
      status: 'active',
    };
    this.endpoints.set(r.key, e);
    this.externalEndpointIds.add(e.id);
    out.push(change('endpoint', e.id, e));
  }

  private remove(key: string, out: Change[]): void {
    const e = this.endpoints.get(key);
    if (!e) return;
    this.endpoints.delete(key);
    this.externalEndpointIds.delete(e.id);
    out.push(change('endpoint', e.id, null, e.enterpriseId));
    const h = this.hosts.get(e.hostId!);
    if (h && --h.endpoints === 0) {
      this.hosts.delete(h.host.id);
      this.externalHostIds.delete(h.host.id);
      out.push(change('host', h.host.id, null));
    }
  }
}

function change(kind: 'host' | 'endpoint', id: string, state: Host | Endpoint | null, enterpriseId: string | null = null): Change {
  // revision 0: a bridged object is not a directory change; the engine keeps its own revision
  return {
    revision: 0,
    kind,
    op: state ? 'update' : 'delete',
    id,
    enterpriseId: state && 'enterpriseId' in state ? state.enterpriseId : enterpriseId,
    state,
    committedAt: new Date().toISOString(),
  } as Change;
}
