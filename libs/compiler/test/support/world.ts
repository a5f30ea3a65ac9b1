/**
 * A small stand-in for the directory in tests: it keeps a model, validates
 * operations the way the directory does (non-overlapping subnets per domain,
 * unique VTEPs and VNIs, IPAM per subnet, groups of the endpoint's domain) and
 * emits the change-log entries the directory would write.
 */
import { randomUUID } from 'node:crypto';
import type {
  AclRule,
  Change,
  Domain,
  Endpoint,
  Enterprise,
  Host,
  ModelSnapshot,
  NetworkMacro,
  NetworkMacroGroup,
  PolicyGroup,
  ResourceByKind,
  ResourceKind,
  Subnet,
  Zone,
} from '#sdn/model';
import { SNAPSHOT_COLLECTION } from '#sdn/model';


export class World {
  revision = 0;
  readonly objects: { [K in ResourceKind]: Map<string, ResourceByKind[K]> } = {
    enterprise: new Map(),
    domain: new Map(),
    zone: new Map(),
    subnet: new Map(),
    host: new Map(),
    bgpSpeaker: new Map(),
    bgpNeighbor: new Map(),
    endpoint: new Map(),
    policyGroup: new Map(),
    networkMacro: new Map(),
    networkMacroGroup: new Map(),
    aclRule: new Map(),
  };
  readonly log: Change[] = [];
  private nextVni = 1000;
  private nextNet = 1;
  private nextHost = 1;
  private readonly used = new Map<string, Set<number>>();
  private idSeq = 0;

  constructor(private readonly deterministicIds = false) {}

  private id(): string {
    if (!this.deterministicIds) return randomUUID();
    const n = (++this.idSeq).toString(16).padStart(12, '0');
    return `00000000-0000-4000-8000-${n}`;
  }

  private meta() {
    const now = new Date(1_700_000_000_000 + this.revision * 1000).toISOString();
    return { id: this.id(), createdAt: now, updatedAt: now, revision: this.revision + 1 };
  }

  private emit<K extends ResourceKind>(kind: K, op: Change['op'], id: string, state: ResourceByKind[K] | null, enterpriseId: string | null): Change {
    this.revision++;
    const ch = { revision: this.revision, kind, op, id, enterpriseId, state, committedAt: new Date().toISOString() } as Change;
    const m = this.objects[kind] as Map<string, ResourceByKind[K]>;
    if (state === null) m.delete(id);
    else m.set(id, { ...state, revision: this.revision });
    if (state !== null) (ch as { state: unknown }).state = m.get(id);
    this.log.push(ch);
    return ch;
  }

  list<K extends ResourceKind>(kind: K): ResourceByKind[K][] {
    return [...(this.objects[kind] as Map<string, ResourceByKind[K]>).values()];
  }

  snapshot(): ModelSnapshot {
    const snap = { revision: this.revision } as ModelSnapshot;
    for (const k of Object.keys(SNAPSHOT_COLLECTION) as ResourceKind[]) (snap as unknown as Record<string, unknown[]>)[SNAPSHOT_COLLECTION[k]] = this.list(k).map((x) => ({ ...x }));
    return snap;
  }

  // ------------------------------------------------------------------ tenancy

  enterprise(name = 'ent'): Enterprise {
    const e: Enterprise = { ...this.meta(), name, description: '' };
    this.emit('enterprise', 'create', e.id, e, e.id);
    return this.objects.enterprise.get(e.id)!;
  }

  domain(ent: Enterprise, over: Partial<Domain> = {}): Domain {
    const d: Domain = {
      ...this.meta(),
      enterpriseId: ent.id,
      name: 'dom',
      description: '',
      routeDistinguisher: null,
      importRouteTargets: [],
      exportRouteTargets: [],
      l3Vni: this.nextVni++,
      defaultIngressAction: 'deny',
      defaultEgressAction: 'allow',
      ...over,
    };
    this.emit('domain', 'create', d.id, d, ent.id);
    return this.objects.domain.get(d.id)!;
  }

  updateDomain(d: Domain, over: Partial<Domain>): void {
    this.emit('domain', 'update', d.id, { ...this.objects.domain.get(d.id)!, ...over }, d.enterpriseId);
  }

  zone(d: Domain, name = 'zone'): Zone {
    const z: Zone = { ...this.meta(), enterpriseId: d.enterpriseId, domainId: d.id, name, description: '' };
    this.emit('zone', 'create', z.id, z, d.enterpriseId);
    return this.objects.zone.get(z.id)!;
  }

  /** A fresh /24 (or /64 for v6) that overlaps no other subnet anywhere. */
  subnet(z: Zone, version: 4 | 6 = 4): Subnet {
    const n = this.nextNet++;
    const cidr = version === 4 ? `10.${n >> 8}.${n & 255}.0/24` : `fd00:${n.toString(16)}::/64`;
    const gateway = version === 4 ? `10.${n >> 8}.${n & 255}.1` : `fd00:${n.toString(16)}::1`;
    const s: Subnet = {
      ...this.meta(),
      enterpriseId: z.enterpriseId,
      domainId: z.domainId,
      zoneId: z.id,
      name: `net${n}`,
      description: '',
      cidr,
      ipVersion: version,
      gateway,
      l2Vni: this.nextVni++,
      reservedRanges: [],
    };
    this.emit('subnet', 'create', s.id, s, z.enterpriseId);
    return this.objects.subnet.get(s.id)!;
  }

  updateSubnet(s: Subnet, over: Partial<Subnet>): void {
    this.emit('subnet', 'update', s.id, { ...this.objects.subnet.get(s.id)!, ...over }, s.enterpriseId);
  }

  /** Deletes a subnet with its endpoints and the rules that reference it (the directory's cascade). */
  deleteSubnet(s: Subnet): void {
    for (const e of this.list('endpoint')) if (e.subnetId === s.id) this.deleteEndpoint(e);
    for (const r of this.list('aclRule')) if (r.peer.id === s.id || r.appliesTo.id === s.id) this.deleteRule(r);
    this.emit('subnet', 'delete', s.id, null, s.enterpriseId);
  }

  host(vtepIp?: string): Host {
    const n = this.nextHost++;
    const h: Host = {
      ...this.meta(),
      name: `host${n}`,
      description: '',
      vtepIp: vtepIp ?? `192.168.${n >> 8}.${n & 255}`,
      status: 'unknown',
      lastSeenAt: null,
    };
    this.emit('host', 'create', h.id, h, null);
    return this.objects.host.get(h.id)!;
  }

  updateHost(h: Host, over: Partial<Host>): void {
    this.emit('host', 'update', h.id, { ...this.objects.host.get(h.id)!, ...over }, null);
  }

  newVtep(): string {
    const n = this.nextHost++;
    return `192.168.${n >> 8}.${n & 255}`;
  }

  deleteHost(h: Host): void {
    this.emit('host', 'delete', h.id, null, null);
  }

  // ---------------------------------------------------------------- endpoints

  private allocate(s: Subnet): string {
    const used = this.used.get(s.id) ?? new Set<number>();
    this.used.set(s.id, used);
    let n = 2;
    while (used.has(n)) n++;
    used.add(n);
    const base = s.gateway.replace(/(\.|::)1$/, '');
    return s.ipVersion === 4 ? `${base}.${n}` : `${base}::${n.toString(16)}`;
  }

  endpoint(s: Subnet, host: Host | null, groups: PolicyGroup[] = [], name = 'ep'): Endpoint {
    const m = this.meta();
    const mac = `02:00:${m.id.slice(-8).match(/../g)!.join(':')}`;
    const e: Endpoint = {
      ...m,
      enterpriseId: s.enterpriseId,
      domainId: s.domainId,
      zoneId: s.zoneId,
      subnetId: s.id,
      hostId: host?.id ?? null,
      kind: 'container',
      name,
      externalId: `ext-${m.id.slice(0, 8)}`,
      mac,
      ip: this.allocate(s),
      policyGroupIds: groups.map((g) => g.id),
      status: 'pending',
    };
    this.emit('endpoint', 'create', e.id, e, e.enterpriseId);
    return this.objects.endpoint.get(e.id)!;
  }

  updateEndpoint(e: Endpoint, over: Partial<Pick<Endpoint, 'hostId' | 'policyGroupIds' | 'name'>>): void {
    this.emit('endpoint', 'update', e.id, { ...this.objects.endpoint.get(e.id)!, ...over }, e.enterpriseId);
  }

  deleteEndpoint(e: Endpoint): void {
    for (const r of this.list('aclRule')) if (r.peer.id === e.id || r.appliesTo.id === e.id) this.deleteRule(r);
    const s = this.objects.subnet.get(e.subnetId);
    if (s) {
      const last = Number.parseInt(e.ip.split(/[.:]/).pop()!, s.ipVersion === 4 ? 10 : 16);
      this.used.get(s.id)?.delete(last);
    }
    this.emit('endpoint', 'delete', e.id, null, e.enterpriseId);
  }

  // ------------------------------------------------------------------- policy

  group(d: Domain, name = 'grp'): PolicyGroup {
    const g: PolicyGroup = { ...this.meta(), enterpriseId: d.enterpriseId, domainId: d.id, name, description: '', communityTag: null };
    this.emit('policyGroup', 'create', g.id, g, d.enterpriseId);
    return this.objects.policyGroup.get(g.id)!;
  }

  /** Deletes a group, the rules naming it, and removes it from endpoints (the directory's cascade). */
  deleteGroup(g: PolicyGroup): void {
    for (const r of this.list('aclRule')) if (r.peer.id === g.id || r.appliesTo.id === g.id) this.deleteRule(r);
    for (const e of this.list('endpoint'))
      if (e.policyGroupIds.includes(g.id)) this.updateEndpoint(e, { policyGroupIds: e.policyGroupIds.filter((x) => x !== g.id) });
    this.emit('policyGroup', 'delete', g.id, null, g.enterpriseId);
  }

  macro(ent: Enterprise, cidr: string): NetworkMacro {
    const m: NetworkMacro = { ...this.meta(), enterpriseId: ent.id, name: 'm', description: '', cidr, ipVersion: cidr.includes(':') ? 6 : 4 };
    this.emit('networkMacro', 'create', m.id, m, ent.id);
    return this.objects.networkMacro.get(m.id)!;
  }

  updateMacro(m: NetworkMacro, cidr: string): void {
    this.emit('networkMacro', 'update', m.id, { ...this.objects.networkMacro.get(m.id)!, cidr, ipVersion: cidr.includes(':') ? 6 : 4 }, m.enterpriseId);
  }

  deleteMacro(m: NetworkMacro): void {
    for (const r of this.list('aclRule')) if (r.peer.id === m.id) this.deleteRule(r);
    for (const g of this.list('networkMacroGroup'))
      if (g.networkMacroIds.includes(m.id)) this.updateMacroGroup(g, g.networkMacroIds.filter((x) => x !== m.id));
    this.emit('networkMacro', 'delete', m.id, null, m.enterpriseId);
  }

  macroGroup(ent: Enterprise, macros: NetworkMacro[]): NetworkMacroGroup {
    const g: NetworkMacroGroup = { ...this.meta(), enterpriseId: ent.id, name: 'mg', description: '', networkMacroIds: macros.map((m) => m.id) };
    this.emit('networkMacroGroup', 'create', g.id, g, ent.id);
    return this.objects.networkMacroGroup.get(g.id)!;
  }

  updateMacroGroup(g: NetworkMacroGroup, ids: string[]): void {
    this.emit('networkMacroGroup', 'update', g.id, { ...this.objects.networkMacroGroup.get(g.id)!, networkMacroIds: ids }, g.enterpriseId);
  }

  rule(d: Domain, r: Partial<AclRule>): AclRule {
    const used = new Set(this.list('aclRule').filter((x) => x.domainId === d.id && x.direction === (r.direction ?? 'ingress')).map((x) => x.priority));
    let priority = r.priority ?? 100;
    while (used.has(priority)) priority++;
    const rule: AclRule = {
      ...this.meta(),
      enterpriseId: d.enterpriseId,
      domainId: d.id,
      priority,
      direction: 'ingress',
      action: 'allow',
      appliesTo: { type: 'any', id: null },
      peer: { type: 'any', id: null },
      etherType: 'ipv4',
      protocol: 'tcp',
      sourcePorts: [],
      destinationPorts: [],
      stateful: true,
      description: '',
      ...r,
    };
    rule.priority = priority;
    this.emit('aclRule', 'create', rule.id, rule, d.enterpriseId);
    return this.objects.aclRule.get(rule.id)!;
  }

  updateRule(r: AclRule, over: Partial<AclRule>): void {
    const cur = this.objects.aclRule.get(r.id)!;
    const next = { ...cur, ...over };
    const clash = this.list('aclRule').some((x) => x.id !== r.id && x.domainId === next.domainId && x.direction === next.direction && x.priority === next.priority);
    if (clash) {
      next.priority = cur.priority;
      next.direction = cur.direction;
    }
    this.emit('aclRule', 'update', r.id, next, r.enterpriseId);
  }

  deleteRule(r: AclRule): void {
    if (this.objects.aclRule.has(r.id)) this.emit('aclRule', 'delete', r.id, null, r.enterpriseId);
  }
}
