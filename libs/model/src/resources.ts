/**
 * The policy model as the directory serves it (JSON, camelCase) and as the
 * change log carries it. Plain types: no Nest, no TypeORM.
 *
 * `revision` of a resource is the change-log revision of the last change
 * that touched it; it is what `If-Match` compares against.
 */

export type Uuid = string;

export interface ResourceMeta {
  id: Uuid;
  createdAt: string;
  updatedAt: string;
  revision: number;
}

export type Action = 'allow' | 'deny';

export interface Enterprise extends ResourceMeta {
  name: string;
  description: string;
}

export interface Domain extends ResourceMeta {
  enterpriseId: Uuid;
  name: string;
  description: string;
  /** e.g. "65000:100" or "10.0.0.1:5" (RFC 4364 type 0/1/2 in text form) */
  routeDistinguisher: string | null;
  importRouteTargets: string[];
  exportRouteTargets: string[];
  /** L3 VNI used for symmetric routing between the domain's subnets */
  l3Vni: number;
  defaultIngressAction: Action;
  defaultEgressAction: Action;
}

export interface Zone extends ResourceMeta {
  enterpriseId: Uuid;
  domainId: Uuid;
  name: string;
  description: string;
}

export interface AddressRange {
  /** first address, inclusive */
  start: string;
  /** last address, inclusive */
  end: string;
}

export interface Subnet extends ResourceMeta {
  enterpriseId: Uuid;
  domainId: Uuid;
  zoneId: Uuid;
  name: string;
  description: string;
  /** canonical CIDR, e.g. "10.0.0.0/24" or "2001:db8::/64" */
  cidr: string;
  ipVersion: 4 | 6;
  gateway: string;
  l2Vni: number;
  reservedRanges: AddressRange[];
}

export type HostStatus = 'unknown' | 'up' | 'down';

export interface Host extends ResourceMeta {
  name: string;
  description: string;
  vtepIp: string;
  status: HostStatus;
  lastSeenAt: string | null;
}

export type EndpointKind = 'container' | 'vm' | 'baremetal';
export type EndpointStatus = 'pending' | 'active' | 'error';

export interface Endpoint extends ResourceMeta {
  enterpriseId: Uuid;
  domainId: Uuid;
  zoneId: Uuid;
  subnetId: Uuid;
  hostId: Uuid | null;
  kind: EndpointKind;
  name: string;
  externalId: string | null;
  /** lower-case, colon separated */
  mac: string;
  ip: string;
  policyGroupIds: Uuid[];
  /** operational state, written by the controller; not part of the change log */
  status: EndpointStatus;
}

export interface PolicyGroup extends ResourceMeta {
  enterpriseId: Uuid;
  domainId: Uuid;
  name: string;
  description: string;
  /** BGP standard community "ASN:value" or large community "ASN:x:y" */
  communityTag: string | null;
}

export interface NetworkMacro extends ResourceMeta {
  enterpriseId: Uuid;
  name: string;
  description: string;
  cidr: string;
  ipVersion: 4 | 6;
}

export interface NetworkMacroGroup extends ResourceMeta {
  enterpriseId: Uuid;
  name: string;
  description: string;
  networkMacroIds: Uuid[];
}

export type AclDirection = 'ingress' | 'egress';
export type AppliesToType = 'any' | 'zone' | 'subnet' | 'policyGroup' | 'endpoint';
export type PeerType = 'any' | 'zone' | 'subnet' | 'policyGroup' | 'networkMacro' | 'networkMacroGroup' | 'endpoint';
export type EtherType = 'ipv4' | 'ipv6';
/** a named protocol or an IP protocol number 0..255 */
export type AclProtocol = 'any' | 'tcp' | 'udp' | 'icmp' | 'icmpv6' | number;

export interface AppliesTo {
  type: AppliesToType;
  /** null exactly when type is 'any' */
  id: Uuid | null;
}

export interface AclPeer {
  type: PeerType;
  id: Uuid | null;
}

/** "80" or "8000-8080" */
export type PortSpec = string;

export interface AclRule extends ResourceMeta {
  enterpriseId: Uuid;
  domainId: Uuid;
  /** lower number = evaluated first; unique per (domain, direction) */
  priority: number;
  direction: AclDirection;
  action: Action;
  appliesTo: AppliesTo;
  peer: AclPeer;
  etherType: EtherType;
  protocol: AclProtocol;
  sourcePorts: PortSpec[];
  destinationPorts: PortSpec[];
  stateful: boolean;
  description: string;
}

/** An address family a BGP session carries. */
export type BgpFamily = 'ipv4-unicast' | 'ipv6-unicast' | 'l2vpn-evpn';

/**
 * The MP-BGP speaker a controller runs (one per controller, chosen by name
 * in the controller's configuration). Operator-only.
 */
export interface BgpSpeaker extends ResourceMeta {
  name: string;
  description: string;
  /** this datacenter's name, shown on the routes other datacenters learn from it */
  datacenter: string;
  asn: number;
  routerId: string;
  listenAddress: string;
  listenPort: number;
  /** administrator field of the type-0 route distinguishers made here; null: the low 16 bits of routerId */
  rdAdmin: number | null;
  enabled: boolean;
}

/** The live state of a neighbour, as its controller last reported it (not part of the change log). */
export interface BgpNeighborStatus {
  state: string;
  receivedRoutes: number;
  advertisedRoutes: number;
  lastError: string | null;
  updatedAt: string | null;
}

/** A BGP neighbour of a speaker. Operator-only. */
export interface BgpNeighbor extends ResourceMeta {
  speakerId: Uuid;
  name: string;
  description: string;
  address: string;
  /** TCP port the neighbour listens on */
  port: number;
  asn: number;
  families: BgpFamily[];
  /** wait for the neighbour to connect instead of connecting to it */
  passive: boolean;
  routeReflectorClient: boolean;
  holdTime: number;
  gracefulRestart: boolean;
  restartTime: number;
  /** the datacenter behind this neighbour (another controller), if any */
  datacenter: string | null;
  /** most routes accepted from it (beyond: Cease 6/1 and the session stays down until reconfigured); null = no limit */
  maxPrefixes: number | null;
  status: BgpNeighborStatus;
}

export interface ResourceByKind {
  enterprise: Enterprise;
  domain: Domain;
  zone: Zone;
  subnet: Subnet;
  host: Host;
  endpoint: Endpoint;
  policyGroup: PolicyGroup;
  networkMacro: NetworkMacro;
  networkMacroGroup: NetworkMacroGroup;
  aclRule: AclRule;
  bgpSpeaker: BgpSpeaker;
  bgpNeighbor: BgpNeighbor;
}

export type ResourceKind = keyof ResourceByKind;

export const RESOURCE_KINDS: readonly ResourceKind[] = [
  'enterprise',
  'domain',
  'zone',
  'subnet',
  'host',
  'endpoint',
  'policyGroup',
  'networkMacro',
  'networkMacroGroup',
  'aclRule',
  'bgpSpeaker',
  'bgpNeighbor',
] as const;

export type ChangeOp = 'create' | 'update' | 'delete';

/**
 * One entry of the directory's change log. Revisions are gap-free and
 * strictly increasing; a transaction that changes several objects (a cascade
 * delete) writes one entry per object, with consecutive revisions, all
 * committed together.
 */
export type Change = {
  [K in ResourceKind]: {
    revision: number;
    kind: K;
    op: ChangeOp;
    id: Uuid;
    /** owning enterprise, null for hosts */
    enterpriseId: Uuid | null;
    /** the new state; null for a delete */
    state: ResourceByKind[K] | null;
    committedAt: string;
  };
}[ResourceKind];

/** Where each kind of resource lives in a ModelSnapshot. */
export const SNAPSHOT_COLLECTION: Record<ResourceKind, keyof Omit<ModelSnapshot, 'revision'>> = {
  enterprise: 'enterprises',
  domain: 'domains',
  zone: 'zones',
  subnet: 'subnets',
  host: 'hosts',
  endpoint: 'endpoints',
  policyGroup: 'policyGroups',
  networkMacro: 'networkMacros',
  networkMacroGroup: 'networkMacroGroups',
  aclRule: 'aclRules',
  bgpSpeaker: 'bgpSpeakers',
  bgpNeighbor: 'bgpNeighbors',
};

/** The whole model at one revision: what a controller loads at start. */
export interface ModelSnapshot {
  revision: number;
  enterprises: Enterprise[];
  domains: Domain[];
  zones: Zone[];
  subnets: Subnet[];
  hosts: Host[];
  endpoints: Endpoint[];
  policyGroups: PolicyGroup[];
  networkMacros: NetworkMacro[];
  networkMacroGroups: NetworkMacroGroup[];
  aclRules: AclRule[];
  bgpSpeakers: BgpSpeaker[];
  bgpNeighbors: BgpNeighbor[];
}
