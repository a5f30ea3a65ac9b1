import { z } from 'zod';
import type { AclRule, NetworkMacro, NetworkMacroGroup, PolicyGroup } from '#sdn/model';
import { Conflict, invalid, ReferenceNotFound, ReferenceOutOfScope } from '../common/errors';
import { action, cidr, communityTag, description, name, portSpec, uuid } from '../common/validation';
import type { Tx } from '../db/database';
import { meta, ResourceDef, Row, rulesReferencing } from './engine';
import { modelSchema } from './schemas';
import { uniqueName } from './tenancy';

// -------------------------------------------------------------- policy group

const groupCreate = z.strictObject({ name, description: description.default(''), communityTag: communityTag.nullable().default(null) });
const groupUpdate = z.strictObject({ name: name.optional(), description: description.optional(), communityTag: communityTag.nullable().optional() });

async function uniqueTag(tx: Tx, tag: string | null | undefined, exceptId: string | null) {
  if (!tag) return;
  const rows = await tx.query('SELECT id FROM policy_groups WHERE community_tag = $1 AND ($2::uuid IS NULL OR id <> $2)', [tag, exceptId]);
  // deployment-wide uniqueness: do not reveal which tenant holds it
  if (rows.length > 0) throw new Conflict('community-tag-in-use', `community tag ${tag} is already used by another policy group`, 'communityTag');
}

export const policyGroupDef: ResourceDef<PolicyGroup, z.infer<typeof groupCreate>, z.infer<typeof groupUpdate>> = {
  kind: 'policyGroup',
  label: 'policy group',
  table: 'policy_groups',
  path: 'policy-groups',
  scoped: true,
  parent: { kind: 'domain', path: 'domains', column: 'domain_id' },
  children: [],
  filters: { name: 'name', domainId: 'domain_id', enterpriseId: 'enterprise_id', communityTag: 'community_tag' },
  createSchema: groupCreate,
  updateSchema: groupUpdate,
  modelSchema: modelSchema(groupCreate),
  toModel: (r: Row): PolicyGroup => ({
    ...meta(r),
    enterpriseId: r.enterprise_id,
    domainId: r.domain_id,
    name: r.name,
    description: r.description,
    communityTag: r.community_tag,
  }),
  async create(tx, { parent, input, id }) {
    await uniqueName(tx, 'policy_groups', 'domain_id', parent!.id, input.name, null, 'a policy group of this domain');
    await uniqueTag(tx, input.communityTag, null);
    const revision = tx.nextRevision();
    const [row] = await tx.query(
      `INSERT INTO policy_groups (id, enterprise_id, domain_id, name, description, community_tag, created_at, updated_at, revision)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) RETURNING *`,
      [id, parent!.enterprise_id, parent!.id, input.name, input.description, input.communityTag, tx.now, revision],
    );
    return row;
  },
  async update(tx, { row, input, revision }) {
    if (input.name !== undefined) await uniqueName(tx, 'policy_groups', 'domain_id', row.domain_id, input.name, row.id, 'a policy group of this domain');
    await uniqueTag(tx, input.communityTag, row.id);
    const [u] = await tx.query(
      `UPDATE policy_groups SET name = COALESCE($2, name), description = COALESCE($3, description),
         community_tag = CASE WHEN $4 THEN $5 ELSE community_tag END, updated_at = $6, revision = $7 WHERE id = $1 RETURNING *`,
      [row.id, input.name ?? null, input.description ?? null, input.communityTag !== undefined, input.communityTag ?? null, tx.now, revision],
    );
    return u;
  },
  async beforeDelete(tx, row, cascade, engine) {
    await rulesReferencing(tx, engine, 'policy group', row.id, cascade);
    const members = await tx.query<{ id: string }>('SELECT id FROM endpoints WHERE policy_group_ids @> ARRAY[$1::uuid]', [row.id]);
    if (members.length === 0) return;
    if (!cascade) {
      throw new Conflict('in-use', `policy group ${row.id} still has ${members.length} member endpoint(s); remove them first or use ?cascade=true`);
    }
    await tx.query('UPDATE endpoints SET policy_group_ids = array_remove(policy_group_ids, $1::uuid) WHERE id = ANY($2::uuid[])', [
      row.id,
      members.map((m) => m.id),
    ]);
    await engine.touch(
      tx,
      engine.def('endpoint'),
      members.map((m) => m.id),
    );
  },
};

// ------------------------------------------------------------- network macro

const macroCreate = z.strictObject({ name, description: description.default(''), cidr });
const macroUpdate = z.strictObject({ name: name.optional(), description: description.optional(), cidr: cidr.optional() });

export const networkMacroDef: ResourceDef<NetworkMacro, z.infer<typeof macroCreate>, z.infer<typeof macroUpdate>> = {
  kind: 'networkMacro',
  label: 'network macro',
  table: 'network_macros',
  path: 'network-macros',
  scoped: true,
  parent: { kind: 'enterprise', path: 'enterprises', column: 'enterprise_id' },
  children: [],
  filters: { name: 'name', enterpriseId: 'enterprise_id', cidr: 'cidr' },
  createSchema: macroCreate,
  updateSchema: macroUpdate,
  modelSchema: modelSchema(macroCreate, { ipVersion: { type: 'integer', enum: [4, 6] } }),
  toModel: (r: Row): NetworkMacro => ({
    ...meta(r),
    enterpriseId: r.enterprise_id,
    name: r.name,
    description: r.description,
    cidr: r.cidr,
    ipVersion: r.cidr.includes(':') ? 6 : 4,
  }),
  async create(tx, { parent, input, id }) {
    await uniqueName(tx, 'network_macros', 'enterprise_id', parent!.id, input.name, null, 'a network macro of this enterprise');
    const revision = tx.nextRevision();
    const [row] = await tx.query(
      `INSERT INTO network_macros (id, enterprise_id, name, description, cidr, created_at, updated_at, revision)
       VALUES ($1, $2, $3, $4, $5, $6, $6, $7) RETURNING *`,
      [id, parent!.id, input.name, input.description, input.cidr, tx.now, revision],
    );
    return row;
  },
  async update(tx, { row, input, revision }) {
    if (input.name !== undefined) await uniqueName(tx, 'network_macros', 'enterprise_id', row.enterprise_id, input.name, row.id, 'a network macro of this enterprise');
    const [u] = await tx.query(
      `UPDATE network_macros SET name = COALESCE($2, name), description = COALESCE($3, description), cidr = COALESCE($4, cidr),
         updated_at = $5, revision = $6 WHERE id = $1 RETURNING *`,
      [row.id, input.name ?? null, input.description ?? null, input.cidr ?? null, tx.now, revision],
    );
    return u;
  },
  async beforeDelete(tx, row, cascade, engine) {
    await rulesReferencing(tx, engine, 'network macro', row.id, cascade);
    const groups = await tx.query<{ id: string }>('SELECT id FROM network_macro_groups WHERE network_macro_ids @> ARRAY[$1::uuid]', [row.id]);
    if (groups.length === 0) return;
    if (!cascade) throw new Conflict('in-use', `network macro ${row.id} is a member of ${groups.length} macro group(s); use ?cascade=true`);
    await tx.query('UPDATE network_macro_groups SET network_macro_ids = array_remove(network_macro_ids, $1::uuid) WHERE id = ANY($2::uuid[])', [
      row.id,
      groups.map((g) => g.id),
    ]);
    await engine.touch(
      tx,
      engine.def('networkMacroGroup'),
      groups.map((g) => g.id),
    );
  },
};

// ------------------------------------------------------- network macro group

const macroGroupCreate = z.strictObject({ name, description: description.default(''), networkMacroIds: z.array(uuid).max(1024).default([]) });
const macroGroupUpdate = z.strictObject({ name: name.optional(), description: description.optional(), networkMacroIds: z.array(uuid).max(1024).optional() });

async function checkMacros(tx: Tx, ids: string[] | undefined, enterpriseId: string): Promise<string[] | undefined> {
  if (!ids || ids.length === 0) return ids;
  const unique = [...new Set(ids)];
  const rows = await tx.query<{ id: string }>('SELECT id FROM network_macros WHERE id = ANY($1::uuid[]) AND enterprise_id = $2', [unique, enterpriseId]);
  const found = new Set(rows.map((r) => r.id));
  unique.forEach((id, i) => {
    if (!found.has(id)) throw new ReferenceNotFound(`networkMacroIds[${i}]`, 'network macro', id);
  });
  return unique;
}

export const networkMacroGroupDef: ResourceDef<NetworkMacroGroup, z.infer<typeof macroGroupCreate>, z.infer<typeof macroGroupUpdate>> = {
  kind: 'networkMacroGroup',
  label: 'network macro group',
  table: 'network_macro_groups',
  path: 'network-macro-groups',
  scoped: true,
  parent: { kind: 'enterprise', path: 'enterprises', column: 'enterprise_id' },
  children: [],
  filters: { name: 'name', enterpriseId: 'enterprise_id' },
  createSchema: macroGroupCreate,
  updateSchema: macroGroupUpdate,
  modelSchema: modelSchema(macroGroupCreate),
  toModel: (r: Row): NetworkMacroGroup => ({
    ...meta(r),
    enterpriseId: r.enterprise_id,
    name: r.name,
    description: r.description,
    networkMacroIds: r.network_macro_ids,
  }),
  async create(tx, { parent, input, id }) {
    await uniqueName(tx, 'network_macro_groups', 'enterprise_id', parent!.id, input.name, null, 'a network macro group of this enterprise');
    const macros = await checkMacros(tx, input.networkMacroIds, parent!.id);
    const revision = tx.nextRevision();
    const [row] = await tx.query(
      `INSERT INTO network_macro_groups (id, enterprise_id, name, description, network_macro_ids, created_at, updated_at, revision)
       VALUES ($1, $2, $3, $4, $5, $6, $6, $7) RETURNING *`,
      [id, parent!.id, input.name, input.description, macros ?? [], tx.now, revision],
    );
    return row;
  },
  async update(tx, { row, input, revision }) {
    if (input.name !== undefined) {
      await uniqueName(tx, 'network_macro_groups', 'enterprise_id', row.enterprise_id, input.name, row.id, 'a network macro group of this enterprise');
    }
    const macros = await checkMacros(tx, input.networkMacroIds, row.enterprise_id);
    const [u] = await tx.query(
      `UPDATE network_macro_groups SET name = COALESCE($2, name), description = COALESCE($3, description),
         network_macro_ids = COALESCE($4, network_macro_ids), updated_at = $5, revision = $6 WHERE id = $1 RETURNING *`,
      [row.id, input.name ?? null, input.description ?? null, macros ?? null, tx.now, revision],
    );
    return u;
  },
  async beforeDelete(tx, row, cascade, engine) {
    await rulesReferencing(tx, engine, 'network macro group', row.id, cascade);
  },
};

// ------------------------------------------------------------------ ACL rule

const target = <T extends readonly [string, ...string[]]>(types: T) =>
  z.strictObject({ type: z.enum(types), id: uuid.nullable().default(null) }).superRefine((v, ctx) => {
    if (v.type === 'any' && v.id !== null) ctx.addIssue({ code: 'custom', path: ['id'], message: 'must be null when type is "any"' });
    if (v.type !== 'any' && v.id === null) ctx.addIssue({ code: 'custom', path: ['id'], message: `is required when type is "${v.type}"` });
  });

const APPLIES = ['any', 'zone', 'subnet', 'policyGroup', 'endpoint'] as const;
const PEERS = ['any', 'zone', 'subnet', 'policyGroup', 'networkMacro', 'networkMacroGroup', 'endpoint'] as const;

const protocol = z.union([
  z.enum(['any', 'tcp', 'udp', 'icmp', 'icmpv6']),
  z.number().int().min(0, 'an IP protocol number is 0..255').max(255, 'an IP protocol number is 0..255'),
]);

const ruleFields = {
  description: description,
  priority: z.number().int().min(0).max(1_000_000),
  direction: z.enum(['ingress', 'egress']),
  action,
  appliesTo: target(APPLIES),
  peer: target(PEERS),
  etherType: z.enum(['ipv4', 'ipv6']),
  protocol,
  sourcePorts: z.array(portSpec).max(64),
  destinationPorts: z.array(portSpec).max(64),
  stateful: z.boolean(),
};

const ruleCreate = z
  .strictObject({
    ...ruleFields,
    description: description.default(''),
    appliesTo: target(APPLIES).default({ type: 'any', id: null }),
    peer: target(PEERS).default({ type: 'any', id: null }),
    etherType: ruleFields.etherType.default('ipv4'),
    protocol: protocol.default('any'),
    sourcePorts: ruleFields.sourcePorts.default([]),
    destinationPorts: ruleFields.destinationPorts.default([]),
    stateful: z.boolean().default(true),
  })
  .superRefine(checkRuleShape);
const ruleUpdate = z.strictObject({
  description: ruleFields.description.optional(),
  priority: ruleFields.priority.optional(),
  action: action.optional(),
  appliesTo: ruleFields.appliesTo.optional(),
  peer: ruleFields.peer.optional(),
  etherType: ruleFields.etherType.optional(),
  protocol: protocol.optional(),
  sourcePorts: ruleFields.sourcePorts.optional(),
  destinationPorts: ruleFields.destinationPorts.optional(),
  stateful: z.boolean().optional(),
});

type RuleShape = { protocol: string | number; sourcePorts: string[]; destinationPorts: string[]; etherType: string };

function checkRuleShape(v: RuleShape, ctx: z.RefinementCtx): void {
  const ports = v.sourcePorts.length > 0 || v.destinationPorts.length > 0;
  if (ports && v.protocol !== 'tcp' && v.protocol !== 'udp' && v.protocol !== 6 && v.protocol !== 17) {
    ctx.addIssue({ code: 'custom', path: ['protocol'], message: 'ports need protocol tcp or udp' });
  }
  if (v.protocol === 'icmp' && v.etherType === 'ipv6') ctx.addIssue({ code: 'custom', path: ['protocol'], message: 'icmp is IPv4; use icmpv6 with etherType ipv6' });
  if (v.protocol === 'icmpv6' && v.etherType === 'ipv4') ctx.addIssue({ code: 'custom', path: ['protocol'], message: 'icmpv6 needs etherType ipv6' });
}

const TABLE_OF: Record<string, string> = {
  zone: 'zones',
  subnet: 'subnets',
  policyGroup: 'policy_groups',
  endpoint: 'endpoints',
  networkMacro: 'network_macros',
  networkMacroGroup: 'network_macro_groups',
};
const LABEL_OF: Record<string, string> = {
  zone: 'zone',
  subnet: 'subnet',
  policyGroup: 'policy group',
  endpoint: 'endpoint',
  networkMacro: 'network macro',
  networkMacroGroup: 'network macro group',
};

/** A rule may only name objects of its own domain (macros: of its own enterprise). */
async function checkTarget(tx: Tx, field: string, t: { type: string; id: string | null }, domainId: string, enterpriseId: string) {
  if (t.type === 'any' || t.id === null) return;
  const rows = await tx.query(`SELECT * FROM ${TABLE_OF[t.type]} WHERE id = $1`, [t.id]);
  const r = rows[0];
  if (!r || r.enterprise_id !== enterpriseId) throw new ReferenceNotFound(`${field}.id`, LABEL_OF[t.type], t.id);
  if (r.domain_id !== undefined && r.domain_id !== domainId) throw new ReferenceOutOfScope(`${field}.id`, LABEL_OF[t.type], t.id, 'domain');
}

async function uniquePriority(tx: Tx, domainId: string, direction: string, priority: number, exceptId: string | null) {
  const rows = await tx.query('SELECT id FROM acl_rules WHERE domain_id = $1 AND direction = $2 AND priority = $3 AND ($4::uuid IS NULL OR id <> $4)', [
    domainId,
    direction,
    priority,
    exceptId,
  ]);
  if (rows.length > 0) {
    throw new Conflict('priority-in-use', `priority ${priority} is already used by ${direction} rule ${rows[0].id} of this domain`, 'priority');
  }
}

export const aclRuleDef: ResourceDef<AclRule, z.infer<typeof ruleCreate>, z.infer<typeof ruleUpdate>> = {
  kind: 'aclRule',
  label: 'ACL rule',
  table: 'acl_rules',
  path: 'acl-rules',
  scoped: true,
  parent: { kind: 'domain', path: 'domains', column: 'domain_id' },
  children: [],
  filters: { domainId: 'domain_id', enterpriseId: 'enterprise_id', direction: 'direction', action: 'action', priority: 'priority' },
  createSchema: ruleCreate,
  updateSchema: ruleUpdate,
  modelSchema: modelSchema(ruleCreate),
  toModel: (r: Row): AclRule => ({
    ...meta(r),
    enterpriseId: r.enterprise_id,
    domainId: r.domain_id,
    priority: r.priority,
    direction: r.direction,
    action: r.action,
    appliesTo: { type: r.applies_to_type, id: r.applies_to_id },
    peer: { type: r.peer_type, id: r.peer_id },
    etherType: r.ether_type,
    protocol: /^[0-9]+$/.test(r.protocol) ? Number(r.protocol) : r.protocol,
    sourcePorts: r.source_ports,
    destinationPorts: r.destination_ports,
    stateful: r.stateful,
    description: r.description,
  }),
  async create(tx, { parent, input, id }) {
    await checkTarget(tx, 'appliesTo', input.appliesTo, parent!.id, parent!.enterprise_id);
    await checkTarget(tx, 'peer', input.peer, parent!.id, parent!.enterprise_id);
    await uniquePriority(tx, parent!.id, input.direction, input.priority, null);
    const revision = tx.nextRevision();
    const [row] = await tx.query(
      `INSERT INTO acl_rules (id, enterprise_id, domain_id, priority, direction, action, applies_to_type, applies_to_id, peer_type, peer_id,
         ether_type, protocol, source_ports, destination_ports, stateful, description, created_at, updated_at, revision)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17, $18) RETURNING *`,
      [
        id,
        parent!.enterprise_id,
        parent!.id,
        input.priority,
        input.direction,
        input.action,
        input.appliesTo.type,
        input.appliesTo.id,
        input.peer.type,
        input.peer.id,
        input.etherType,
        String(input.protocol),
        input.sourcePorts,
        input.destinationPorts,
        input.stateful,
        input.description,
        tx.now,
        revision,
      ],
    );
    return row;
  },
  async update(tx, { row, input, revision }) {
    const current = aclRuleDef.toModel(row);
    const next = { ...current, ...Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) } as AclRule;
    const issues: string[] = [];
    checkRuleShape(next as RuleShape, { addIssue: (i: any) => issues.push(`${i.path?.[0] ?? ''}: ${i.message}`) } as any);
    if (issues.length) throw invalid(issues[0].split(':')[0], issues[0].split(': ').slice(1).join(': '));
    if (input.appliesTo) await checkTarget(tx, 'appliesTo', next.appliesTo, row.domain_id, row.enterprise_id);
    if (input.peer) await checkTarget(tx, 'peer', next.peer, row.domain_id, row.enterprise_id);
    if (input.priority !== undefined) await uniquePriority(tx, row.domain_id, row.direction, input.priority, row.id);
    const [u] = await tx.query(
      `UPDATE acl_rules SET priority = $2, action = $3, applies_to_type = $4, applies_to_id = $5, peer_type = $6, peer_id = $7,
         ether_type = $8, protocol = $9, source_ports = $10, destination_ports = $11, stateful = $12, description = $13,
         updated_at = $14, revision = $15 WHERE id = $1 RETURNING *`,
      [
        row.id,
        next.priority,
        next.action,
        next.appliesTo.type,
        next.appliesTo.id,
        next.peer.type,
        next.peer.id,
        next.etherType,
        String(next.protocol),
        next.sourcePorts,
        next.destinationPorts,
        next.stateful,
        next.description,
        tx.now,
        revision,
      ],
    );
    return u;
  },
};
