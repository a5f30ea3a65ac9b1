/**
 * Field layout of every HostState table: one list per table, in a fixed order.
 * It defines the canonical fingerprint of an entry (digest.ts) and the binary
 * layout of an entry on the wire (libs/wire), so both ends agree by construction.
 */
import { TABLES, type EntryByTable, type TableName } from './state';

export type FieldType =
  | { t: 'str' }
  | { t: 'nstr' }
  | { t: 'uint' }
  | { t: 'nuint' }
  | { t: 'bool' }
  | { t: 'ports' }
  | { t: 'enum'; values: readonly string[] }
  | { t: 'family' };

const str: FieldType = { t: 'str' };
const nstr: FieldType = { t: 'nstr' };
const uint: FieldType = { t: 'uint' };
const nuint: FieldType = { t: 'nuint' };
const bool: FieldType = { t: 'bool' };
const ports: FieldType = { t: 'ports' };
const family: FieldType = { t: 'family' };
const enumOf = (...values: string[]): FieldType => ({ t: 'enum', values });
const action = enumOf('allow', 'deny');

export type TableSchema<T extends TableName> = ReadonlyArray<readonly [keyof EntryByTable[T] & string, FieldType]>;

export const SCHEMA: { [T in TableName]: TableSchema<T> } = {
  host: [
    ['hostId', str],
    ['vtepIp', str],
    ['routerMac', str],
    ['gatewayMac', str],
  ],
  domains: [
    ['domainId', str],
    ['l3Vni', uint],
    ['vrfName', str],
    ['vrfTable', uint],
    ['bridgeName', str],
    ['vxlanName', str],
    ['defaultIngressAction', action],
    ['defaultEgressAction', action],
  ],
  subnets: [
    ['subnetId', str],
    ['domainId', str],
    ['l2Vni', uint],
    ['cidr', str],
    ['ipVersion', family],
    ['gateway', str],
    ['bridgeName', str],
    ['vxlanName', str],
  ],
  localEndpoints: [
    ['endpointId', str],
    ['subnetId', str],
    ['domainId', str],
    ['mac', str],
    ['ip', str],
    ['ifName', str],
    ['externalId', nstr],
    ['kind', enumOf('container', 'vm', 'baremetal')],
  ],
  remoteEndpoints: [
    ['endpointId', str],
    ['subnetId', str],
    ['mac', str],
    ['ip', str],
    ['vtep', str],
  ],
  routes: [
    ['endpointId', str],
    ['domainId', str],
    ['prefix', str],
    ['vtep', str],
  ],
  peerVteps: [
    ['vni', uint],
    ['kind', enumOf('l2', 'l3')],
    ['domainId', str],
    ['subnetId', nstr],
    ['vtep', str],
    ['routerMac', str],
  ],
  addressSets: [
    ['name', str],
    ['family', family],
    ['domainId', str],
    ['sourceType', enumOf('policyGroup', 'zone', 'subnet', 'networkMacro', 'networkMacroGroup', 'endpoint')],
    ['sourceId', str],
  ],
  setElements: [
    ['set', str],
    ['cidr', str],
  ],
  rules: [
    ['ruleId', str],
    ['domainId', str],
    ['direction', enumOf('ingress', 'egress')],
    ['priority', uint],
    ['action', action],
    ['etherType', enumOf('ipv4', 'ipv6')],
    ['protocol', nuint],
    ['appliesToSet', nstr],
    ['peerSet', nstr],
    ['sourcePorts', ports],
    ['destinationPorts', ports],
    ['stateful', bool],
  ],
};

/**
 * SCHEMA as parallel arrays per table (names, types): what the hot loops over
 * every field of every entry (digest, wire codec) read, instead of tuples.
 */
export const LAYOUT: Readonly<Record<TableName, { readonly names: readonly string[]; readonly types: readonly FieldType[] }>> = Object.fromEntries(
  (Object.keys(SCHEMA) as TableName[]).map((t) => [
    t,
    { names: (SCHEMA[t] as TableSchema<TableName>).map((f) => f[0] as string), types: (SCHEMA[t] as TableSchema<TableName>).map((f) => f[1]) },
  ]),
) as Record<TableName, { names: string[]; types: FieldType[] }>;

/**
 * Per table, a function generated from LAYOUT with the fields written out as
 * named property reads (`field("vtep")` is `["vtep"]`): every entry of a
 * table has one shape, so each read is monomorphic, where a loop over the
 * field names (`e[names[k]]`) makes a megamorphic keyed load per field. For
 * the loops that run over every field of every entry (digest, equality, wire
 * encoding). Field names are the schema's own identifiers, never data.
 */
export function perTable<F>(
  make: (names: readonly string[], types: readonly FieldType[], field: (name: string) => string, table: TableName) => F,
): Record<TableName, F> {
  return Object.fromEntries(TABLES.map((t) => [t, make(LAYOUT[t].names, LAYOUT[t].types, (n) => `[${JSON.stringify(n)}]`, t)])) as Record<TableName, F>;
}
