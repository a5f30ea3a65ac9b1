import { z } from 'zod';
import type { Domain, Enterprise, Zone } from '#sdn/model';
import { Caller, requireOperator } from '../common/auth';
import { Conflict, Forbidden } from '../common/errors';
import { action, description, name, rdOrRt, vni } from '../common/validation';
import type { Tx } from '../db/database';
import { meta, ResourceDef, Row, rulesReferencing } from './engine';
import { modelSchema } from './schemas';

/** Claims a VNI in the deployment-wide VNI space (L2 and L3 share it). */
export async function claimVni(tx: Tx, requested: number | undefined, ownerKind: string, ownerId: string, field: string): Promise<number> {
  if (requested !== undefined) {
    const taken = await tx.query('SELECT owner_kind, owner_id FROM vnis WHERE vni = $1', [requested]);
    if (taken.length > 0) {
      throw new Conflict('vni-in-use', `VNI ${requested} is already used by another ${taken[0].owner_kind}`, field);
    }
    await tx.query('INSERT INTO vnis (vni, owner_kind, owner_id) VALUES ($1, $2, $3)', [requested, ownerKind, ownerId]);
    return requested;
  }
  // lowest free VNI from the automatic range's base
  const base = ownerKind === 'domain' ? 50000 : 10000;
  const rows = await tx.query<{ vni: number }>(
    `SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM vnis WHERE vni = $1) THEN $1
            ELSE (SELECT min(v.vni) + 1 FROM vnis v WHERE v.vni >= $1
                  AND NOT EXISTS (SELECT 1 FROM vnis w WHERE w.vni = v.vni + 1)) END AS vni`,
    [base],
  );
  const chosen = Number(rows[0].vni);
  if (chosen > 16777215) throw new Conflict('vni-exhausted', 'no free VNI is left in the deployment', field);
  await tx.query('INSERT INTO vnis (vni, owner_kind, owner_id) VALUES ($1, $2, $3)', [chosen, ownerKind, ownerId]);
  return chosen;
}

// ---------------------------------------------------------------- enterprise

const enterpriseCreate = z.strictObject({ name, description: description.default('') });
const enterpriseUpdate = z.strictObject({ name: name.optional(), description: description.optional() });

async function uniqueName(tx: Tx, table: string, scopeCol: string | null, scopeVal: string | null, value: string, exceptId: string | null, what: string) {
  const rows = await tx.query(
    `SELECT id FROM ${table} WHERE name = $1 ${scopeCol ? `AND ${scopeCol} = $3` : ''} AND ($2::uuid IS NULL OR id <> $2)`,
    scopeCol ? [value, exceptId, scopeVal] : [value, exceptId],
  );
  if (rows.length > 0) throw new Conflict('name-in-use', `${what} named "${value}" already exists (${rows[0].id})`, 'name');
}

export const enterpriseDef: ResourceDef<Enterprise, z.infer<typeof enterpriseCreate>, z.infer<typeof enterpriseUpdate>> = {
  kind: 'enterprise',
  label: 'enterprise',
  table: 'enterprises',
  path: 'enterprises',
  scoped: true,
  scopeColumn: 'id',
  parent: null,
  children: [
    { kind: 'domain', column: 'enterprise_id' },
    { kind: 'networkMacroGroup', column: 'enterprise_id' },
    { kind: 'networkMacro', column: 'enterprise_id' },
  ],
  filters: { name: 'name' },
  createSchema: enterpriseCreate,
  updateSchema: enterpriseUpdate,
  modelSchema: modelSchema(enterpriseCreate),
  operatorWrites: true,
  toModel: (r: Row): Enterprise => ({ ...meta(r), name: r.name, description: r.description }),
  async create(tx, { caller, input, id }) {
    requireOperator(caller, 'creating an enterprise');
    await uniqueName(tx, 'enterprises', null, null, input.name, null, 'an enterprise');
    const revision = tx.nextRevision();
    const [row] = await tx.query(
      `INSERT INTO enterprises (id, name, description, created_at, updated_at, revision) VALUES ($1, $2, $3, $4, $4, $5) RETURNING *`,
      [id, input.name, input.description, tx.now, revision],
    );
    return row;
  },
  async update(tx, { row, input, revision }) {
    if (input.name !== undefined) await uniqueName(tx, 'enterprises', null, null, input.name, row.id, 'an enterprise');
    const [u] = await tx.query(
      `UPDATE enterprises SET name = COALESCE($2, name), description = COALESCE($3, description), updated_at = $4, revision = $5 WHERE id = $1 RETURNING *`,
      [row.id, input.name ?? null, input.description ?? null, tx.now, revision],
    );
    return u;
  },
  async beforeDelete(tx, row) {
    await tx.query('DELETE FROM api_keys WHERE enterprise_id = $1', [row.id]);
  },
};

// -------------------------------------------------------------------- domain

const domainCreate = z.strictObject({
  name,
  description: description.default(''),
  routeDistinguisher: rdOrRt.nullable().default(null),
  importRouteTargets: z.array(rdOrRt).max(64).default([]),
  exportRouteTargets: z.array(rdOrRt).max(64).default([]),
  l3Vni: vni.optional(),
  defaultIngressAction: action.default('deny'),
  defaultEgressAction: action.default('deny'),
});
const domainUpdate = z.strictObject({
  name: name.optional(),
  description: description.optional(),
  routeDistinguisher: rdOrRt.nullable().optional(),
  importRouteTargets: z.array(rdOrRt).max(64).optional(),
  exportRouteTargets: z.array(rdOrRt).max(64).optional(),
  defaultIngressAction: action.optional(),
  defaultEgressAction: action.optional(),
});

async function uniqueRd(tx: Tx, rd: string | null | undefined, exceptId: string | null) {
  if (!rd) return;
  const rows = await tx.query('SELECT id FROM domains WHERE route_distinguisher = $1 AND ($2::uuid IS NULL OR id <> $2)', [rd, exceptId]);
  if (rows.length > 0) throw new Conflict('rd-in-use', `route distinguisher ${rd} is already used by another domain`, 'routeDistinguisher');
}

/**
 * Route distinguishers and route targets name a domain to every other
 * datacenter and router: a tenant who could choose them could import another
 * tenant's routes. Like a provider's VPN, they are set by the operator only,
 * and one route target never serves two enterprises.
 */
function checkBgpIdentity(caller: Caller, input: { routeDistinguisher?: unknown; importRouteTargets?: unknown; exportRouteTargets?: unknown }) {
  if (caller.role === 'operator') return;
  for (const field of ['routeDistinguisher', 'importRouteTargets', 'exportRouteTargets'] as const) {
    if (input[field] !== undefined) {
      throw new Forbidden(`${field} is set by the operator: route distinguishers and targets name the domain to other datacenters`);
    }
  }
}

async function targetsOfOneEnterprise(tx: Tx, enterpriseId: string, targets: string[]) {
  if (targets.length === 0) return;
  const rows = await tx.query(
    `SELECT t FROM domains, unnest(import_route_targets || export_route_targets) AS t
      WHERE enterprise_id <> $1 AND t = ANY($2::text[]) LIMIT 1`,
    [enterpriseId, targets],
  );
  if (rows.length > 0) {
    throw new Conflict('route-target-in-use', `route target ${rows[0].t} is used by a domain of another enterprise`, 'importRouteTargets');
  }
}

export const domainDef: ResourceDef<Domain, z.infer<typeof domainCreate>, z.infer<typeof domainUpdate>> = {
  kind: 'domain',
  label: 'domain',
  table: 'domains',
  path: 'domains',
  scoped: true,
  parent: { kind: 'enterprise', path: 'enterprises', column: 'enterprise_id' },
  children: [
    { kind: 'aclRule', column: 'domain_id' },
    { kind: 'zone', column: 'domain_id' },
    { kind: 'policyGroup', column: 'domain_id' },
  ],
  filters: { name: 'name', enterpriseId: 'enterprise_id', l3Vni: 'l3_vni' },
  createSchema: domainCreate,
  updateSchema: domainUpdate,
  modelSchema: modelSchema(domainCreate),
  toModel: (r: Row): Domain => ({
    ...meta(r),
    enterpriseId: r.enterprise_id,
    name: r.name,
    description: r.description,
    routeDistinguisher: r.route_distinguisher,
    importRouteTargets: r.import_route_targets,
    exportRouteTargets: r.export_route_targets,
    l3Vni: r.l3_vni,
    defaultIngressAction: r.default_ingress_action,
    defaultEgressAction: r.default_egress_action,
  }),
  async create(tx, { caller, parent, input, id }) {
    checkBgpIdentity(caller, input.routeDistinguisher === null && input.importRouteTargets.length === 0 && input.exportRouteTargets.length === 0 ? {} : input);
    await uniqueName(tx, 'domains', 'enterprise_id', parent!.id, input.name, null, 'a domain of this enterprise');
    await uniqueRd(tx, input.routeDistinguisher, null);
    await targetsOfOneEnterprise(tx, parent!.id, [...input.importRouteTargets, ...input.exportRouteTargets]);
    const l3Vni = await claimVni(tx, input.l3Vni, 'domain', id, 'l3Vni');
    const revision = tx.nextRevision();
    const [row] = await tx.query(
      `INSERT INTO domains (id, enterprise_id, name, description, route_distinguisher, import_route_targets, export_route_targets,
         l3_vni, default_ingress_action, default_egress_action, created_at, updated_at, revision)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12) RETURNING *`,
      [
        id,
        parent!.id,
        input.name,
        input.description,
        input.routeDistinguisher,
        input.importRouteTargets,
        input.exportRouteTargets,
        l3Vni,
        input.defaultIngressAction,
        input.defaultEgressAction,
        tx.now,
        revision,
      ],
    );
    return row;
  },
  async update(tx, { caller, row, input, revision }) {
    checkBgpIdentity(caller, input);
    if (input.name !== undefined) await uniqueName(tx, 'domains', 'enterprise_id', row.enterprise_id, input.name, row.id, 'a domain of this enterprise');
    await uniqueRd(tx, input.routeDistinguisher, row.id);
    await targetsOfOneEnterprise(tx, row.enterprise_id, [...(input.importRouteTargets ?? []), ...(input.exportRouteTargets ?? [])]);
    const [u] = await tx.query(
      `UPDATE domains SET name = COALESCE($2, name), description = COALESCE($3, description),
         route_distinguisher = CASE WHEN $4 THEN $5 ELSE route_distinguisher END,
         import_route_targets = COALESCE($6, import_route_targets), export_route_targets = COALESCE($7, export_route_targets),
         default_ingress_action = COALESCE($8, default_ingress_action), default_egress_action = COALESCE($9, default_egress_action),
         updated_at = $10, revision = $11
       WHERE id = $1 RETURNING *`,
      [
        row.id,
        input.name ?? null,
        input.description ?? null,
        input.routeDistinguisher !== undefined,
        input.routeDistinguisher ?? null,
        input.importRouteTargets ?? null,
        input.exportRouteTargets ?? null,
        input.defaultIngressAction ?? null,
        input.defaultEgressAction ?? null,
        tx.now,
        revision,
      ],
    );
    return u;
  },
  async beforeDelete(tx, row) {
    // the domain row goes after this; the VNI reference is deferred to commit
    await tx.query('DELETE FROM vnis WHERE owner_id = $1', [row.id]);
  },
};

// ---------------------------------------------------------------------- zone

const zoneCreate = z.strictObject({ name, description: description.default('') });
const zoneUpdate = z.strictObject({ name: name.optional(), description: description.optional() });

export const zoneDef: ResourceDef<Zone, z.infer<typeof zoneCreate>, z.infer<typeof zoneUpdate>> = {
  kind: 'zone',
  label: 'zone',
  table: 'zones',
  path: 'zones',
  scoped: true,
  parent: { kind: 'domain', path: 'domains', column: 'domain_id' },
  children: [{ kind: 'subnet', column: 'zone_id' }],
  filters: { name: 'name', domainId: 'domain_id', enterpriseId: 'enterprise_id' },
  createSchema: zoneCreate,
  updateSchema: zoneUpdate,
  modelSchema: modelSchema(zoneCreate),
  toModel: (r: Row): Zone => ({ ...meta(r), enterpriseId: r.enterprise_id, domainId: r.domain_id, name: r.name, description: r.description }),
  async create(tx, { parent, input, id }) {
    await uniqueName(tx, 'zones', 'domain_id', parent!.id, input.name, null, 'a zone of this domain');
    const revision = tx.nextRevision();
    const [row] = await tx.query(
      `INSERT INTO zones (id, enterprise_id, domain_id, name, description, created_at, updated_at, revision)
       VALUES ($1, $2, $3, $4, $5, $6, $6, $7) RETURNING *`,
      [id, parent!.enterprise_id, parent!.id, input.name, input.description, tx.now, revision],
    );
    return row;
  },
  async update(tx, { row, input, revision }) {
    if (input.name !== undefined) await uniqueName(tx, 'zones', 'domain_id', row.domain_id, input.name, row.id, 'a zone of this domain');
    const [u] = await tx.query(
      `UPDATE zones SET name = COALESCE($2, name), description = COALESCE($3, description), updated_at = $4, revision = $5 WHERE id = $1 RETURNING *`,
      [row.id, input.name ?? null, input.description ?? null, tx.now, revision],
    );
    return u;
  },
  async beforeDelete(tx, row, cascade, engine) {
    await rulesReferencing(tx, engine, 'zone', row.id, cascade);
  },
};

export { uniqueName };
