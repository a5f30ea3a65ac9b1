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
 * Not bridged yet: remote endpoints of subnets that exist only remotely
 * (routed hosts) and type-5 prefixes; they stay in the API (remote-endpoints).
 */
import { createHash } from 'node:crypto';
import type { Imported, RemoteEndpoint } from '#sdn/federation';
import type { Change, Endpoint, Host, Subnet } from '#sdn/model';

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
  /** external hosts by VTEP, with the number of bridged endpoints behind each */
  private readonly hosts = new Map<string, { host: Host; endpoints: number }>();
  /** bridged endpoints by route key */
  private readonly endpoints = new Map<string, Endpoint>();
  readonly externalHostIds = new Set<string>();
  readonly externalEndpointIds = new Set<string>();

  constructor(private readonly subnetOf: (id: string) => Subnet | undefined) {}

  /** The model changes that turn the previous imported state into the new one. */
  update(changed: Imported[], removed: Imported[]): Change[] {
    const out: Change[] = [];
    for (const r of removed) if (r.kind === 'endpoint') this.remove(r.endpoint.key, out);
    for (const c of changed) {
      if (c.kind !== 'endpoint') continue;
      const e = c.endpoint;
      this.remove(e.key, out);
      const subnet = e.subnetId ? this.subnetOf(e.subnetId) : undefined;
      if (!subnet || e.ip === null) continue; // see the header: routed remote hosts are not bridged yet
      this.add(e, subnet, out);
    }
    return out;
  }

  /** Every bridged object, as creations (after the controller rebuilt its model from the database). */
  all(): Change[] {
    const out: Change[] = [];
    for (const { host } of this.hosts.values()) out.push(change('host', host.id, host));
    for (const e of this.endpoints.values()) out.push(change('endpoint', e.id, e));
    return out;
  }

  private add(r: RemoteEndpoint, subnet: Subnet, out: Change[]): void {
    let h = this.hosts.get(r.vtepIp);
    if (!h) {
      const host: Host = {
        id: nameUuid(`vtep/${r.vtepIp}`),
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
      this.hosts.set(r.vtepIp, h);
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
    for (const [vtep, h] of this.hosts) {
      if (h.host.id !== e.hostId) continue;
      if (--h.endpoints === 0) {
        this.hosts.delete(vtep);
        this.externalHostIds.delete(h.host.id);
        out.push(change('host', h.host.id, null));
      }
      break;
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
