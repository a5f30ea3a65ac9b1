/**
 * The topology of bench:scale, which bench:pipeline computes without I/O:
 * one definition, so that the two always measure the same thing.
 *
 * Sizes come from the environment: SCALE_NETWORKS (500), SCALE_HOSTS (200),
 * SCALE_ENDPOINTS (100000), SCALE_CLIENTS (64), SCALE_HOSTS_PER_NETWORK (8),
 * SCALE_AGENT_PROCESSES (2).
 */

/** An integer environment variable that must be positive, or its default. */
export function positiveInt(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer`);
  return v;
}

export interface ScaleSize {
  networks: number;
  hosts: number;
  endpoints: number;
  clients: number;
  /** hosts each network's endpoints are spread over */
  perNetwork: number;
  agentProcesses: number;
}

export function scaleSize(): ScaleSize {
  const hosts = positiveInt('SCALE_HOSTS', 200);
  return {
    networks: positiveInt('SCALE_NETWORKS', 500),
    hosts,
    endpoints: positiveInt('SCALE_ENDPOINTS', 100_000),
    clients: positiveInt('SCALE_CLIENTS', 64),
    perNetwork: Math.min(hosts, positiveInt('SCALE_HOSTS_PER_NETWORK', 8)),
    agentProcesses: Math.min(hosts, positiveInt('SCALE_AGENT_PROCESSES', 2)),
  };
}

/**
 * An upper estimate of the entries one host holds at the end of the run, for
 * the simulated agents' tables: each endpoint reaches its network's
 * perNetwork hosts with about two entries on each (measured: 1.70M entries
 * for 100K endpoints on 8 hosts each, 2.1 per endpoint and host: its FDB and
 * neighbour entries or its local entry, and its set membership); three
 * leaves room for the rules, sets and uneven placement.
 */
export function expectedEntriesPerHost(size: ScaleSize): number {
  return Math.ceil((3 * size.endpoints * size.perNetwork) / size.hosts);
}

/** The policy groups of every network, by index. */
export const GROUPS = ['web', 'app', 'db'] as const;

/** A rule's appliesTo / peer: a group index of GROUPS, or any. */
type Side = number | 'any';

/** The 7-rule policy of every network, referencing its groups. */
export const POLICY: ReadonlyArray<{
  priority: number;
  direction: 'ingress' | 'egress';
  action: 'allow' | 'deny';
  appliesTo: Side;
  peer: Side;
  protocol: 'tcp' | 'udp' | 'any';
  destinationPorts?: string[];
}> = [
  { priority: 10, direction: 'ingress', action: 'allow', appliesTo: 0, peer: 'any', protocol: 'tcp', destinationPorts: ['80', '443'] },
  { priority: 20, direction: 'ingress', action: 'allow', appliesTo: 1, peer: 0, protocol: 'tcp', destinationPorts: ['8080'] },
  { priority: 30, direction: 'ingress', action: 'allow', appliesTo: 2, peer: 1, protocol: 'tcp', destinationPorts: ['5432'] },
  { priority: 40, direction: 'ingress', action: 'deny', appliesTo: 2, peer: 0, protocol: 'any' },
  { priority: 10, direction: 'egress', action: 'allow', appliesTo: 0, peer: 1, protocol: 'tcp', destinationPorts: ['8080'] },
  { priority: 20, direction: 'egress', action: 'allow', appliesTo: 1, peer: 2, protocol: 'tcp', destinationPorts: ['5432'] },
  { priority: 30, direction: 'egress', action: 'allow', appliesTo: 'any', peer: 'any', protocol: 'udp', destinationPorts: ['53'] },
];

/** A rule of POLICY with its sides resolved against one network's group ids (the REST API's shape). */
export function policyRule(r: (typeof POLICY)[number], groupIds: readonly string[]) {
  const side = (s: Side) => (s === 'any' ? { type: 'any' as const, id: null } : { type: 'policyGroup' as const, id: groupIds[s] });
  return { ...r, appliesTo: side(r.appliesTo), peer: side(r.peer) };
}

/**
 * Where endpoint i goes: network i mod N, one of the network's `perNetwork`
 * hosts by turn (networks round-robin over all hosts), group web/app/db by turn.
 */
export function placement(i: number, size: ScaleSize): { network: number; host: number; group: number } {
  const stride = Math.max(1, Math.floor(size.hosts / size.perNetwork));
  const network = i % size.networks;
  const round = Math.floor(i / size.networks);
  return { network, host: (network + (round % size.perNetwork) * stride) % size.hosts, group: i % GROUPS.length };
}
