import { HEX2, randomPool } from '../common/ids';
import { z } from 'zod';
import {
  AddressRange,
  cidrContains,
  cidrsOverlap,
  Endpoint,
  formatIp,
  Host,
  parseCidr,
  parseIp,
  Subnet,
  specialPurposeOverlap,
  usableRange,
} from '#sdn/model';
import { hashKey, newApiKey, requireOperator, scopeOf } from '../common/auth';
import { Conflict, invalid, NotFound, ReferenceNotFound, ReferenceOutOfScope, SubnetExhausted } from '../common/errors';
import { cidr, description, ipAddress, mac, name, uuid, vni } from '../common/validation';
import type { BulkHandler, Tx } from '../db/database';
import { Ipam } from '../ipam/allocator';
import { BulkCreate, meta, ResourceDef, Row, rulesReferencing } from './engine';
import { modelSchema } from './schemas';
import { claimVni, uniqueName } from './tenancy';

const hostText = (inet: string) => inet.replace(/\/(32|128)$/, '');

// -------------------------------------------------------------------- subnet

const range = z.strictObject({ start: ipAddress, end: ipAddress });

const subnetCreate = z.strictObject({
  name,
  description: description.default(''),
  cidr,
  gateway: ipAddress.optional(),
  l2Vni: vni.optional(),
  reservedRanges: z.array(range).max(256).default([]),
});
const subnetUpdate = z.strictObject({
  name: name.optional(),
  description: description.optional(),
  reservedRanges: z.array(range).max(256).optional(),
});

function checkRanges(c: ReturnType<typeof parseCidrOk>, ranges: AddressRange[]): void {
  ranges.forEach((r, i) => {
    const s = parseIp(r.start)!;
    const e = parseIp(r.end)!;
    if (!cidrContains(c, s.version, s.value)) throw invalid(`reservedRanges[${i}].start`, `${r.start} is outside ${formatCidrText(c)}`);
    if (!cidrContains(c, e.version, e.value)) throw invalid(`reservedRanges[${i}].end`, `${r.end} is outside ${formatCidrText(c)}`);
    if (e.value < s.value) throw invalid(`reservedRanges[${i}]`, `end ${r.end} is before start ${r.start}`);
  });
}

function parseCidrOk(text: string) {
  const p = parseCidr(text);
  if (!p.ok) throw new Error(`invalid stored cidr ${text}`);
  return p.cidr;
}

function formatCidrText(c: ReturnType<typeof parseCidrOk>): string {
  return `${formatIp(c.version, c.network)}/${c.prefixLength}`;
}

export function subnetDef(ipam: Ipam): ResourceDef<Subnet, z.infer<typeof subnetCreate>, z.infer<typeof subnetUpdate>> {
  return {
    kind: 'subnet',
    label: 'subnet',
    table: 'subnets',
    path: 'subnets',
    scoped: true,
    parent: { kind: 'zone', path: 'zones', column: 'zone_id' },
    children: [{ kind: 'endpoint', column: 'subnet_id' }],
    filters: { name: 'name', zoneId: 'zone_id', domainId: 'domain_id', enterpriseId: 'enterprise_id', cidr: 'cidr', l2Vni: 'l2_vni' },
    createSchema: subnetCreate,
    updateSchema: subnetUpdate,
    modelSchema: modelSchema(subnetCreate, { ipVersion: { type: 'integer', enum: [4, 6] } }),
    toModel: (r: Row): Subnet => ({
      ...meta(r),
      enterpriseId: r.enterprise_id,
      domainId: r.domain_id,
      zoneId: r.zone_id,
      name: r.name,
      description: r.description,
      cidr: r.cidr,
      ipVersion: r.cidr.includes(':') ? 6 : 4,
      gateway: hostText(r.gateway),
      l2Vni: r.l2_vni,
      reservedRanges: r.reserved_ranges,
    }),
    async create(tx, { parent, input, id }) {
      const c = parseCidrOk(input.cidr);
      const special = specialPurposeOverlap(c);
      if (special !== null) throw invalid('cidr', `${input.cidr} ${special}: a subnet's addresses must be unicast addresses hosts can own`);
      const usable = usableRange(c);
      if (usable.last - usable.first < 1n) throw invalid('cidr', `${input.cidr} is too small to hold a gateway and an endpoint`);
      let gateway = input.gateway;
      if (gateway === undefined) gateway = formatIp(c.version, usable.first);
      else {
        const g = parseIp(gateway)!;
        if (!cidrContains(c, g.version, g.value)) throw invalid('gateway', `${gateway} is outside ${input.cidr}`);
        if (g.value < usable.first || g.value > usable.last) throw invalid('gateway', `${gateway} is not a usable address of ${input.cidr}`);
      }
      checkRanges(c, input.reservedRanges);
      // RFC 1918 reuse across tenants is fine; inside one domain (one routing table) it is not.
      const others = await tx.query<{ id: string; cidr: string }>('SELECT id, cidr::text AS cidr FROM subnets WHERE domain_id = $1', [
        parent!.domain_id,
      ]);
      for (const o of others) {
        if (cidrsOverlap(c, parseCidrOk(o.cidr))) {
          throw new Conflict('overlapping-subnet', `${input.cidr} overlaps subnet ${o.id} (${o.cidr}) in the same domain`, 'cidr', {
            overlapsSubnetId: o.id,
          });
        }
      }
      await uniqueName(tx, 'subnets', 'zone_id', parent!.id, input.name, null, 'a subnet of this zone');
      const l2Vni = await claimVni(tx, input.l2Vni, 'subnet', id, 'l2Vni');
      const revision = tx.nextRevision();
      const [row] = await tx.query(
        `INSERT INTO subnets (id, enterprise_id, domain_id, zone_id, name, description, cidr, gateway, l2_vni, reserved_ranges,
           created_at, updated_at, revision)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12) RETURNING *`,
        [
          id,
          parent!.enterprise_id,
          parent!.domain_id,
          parent!.id,
          input.name,
          input.description,
          input.cidr,
          gateway,
          l2Vni,
          JSON.stringify(input.reservedRanges),
          tx.now,
          revision,
        ],
      );
      return row;
    },
    async update(tx, { row, input, revision }) {
      if (input.name !== undefined) await uniqueName(tx, 'subnets', 'zone_id', row.zone_id, input.name, row.id, 'a subnet of this zone');
      if (input.reservedRanges !== undefined) {
        checkRanges(parseCidrOk(row.cidr), input.reservedRanges);
        tx.onCommit(() => ipam.forget(row.id));
      }
      const [u] = await tx.query(
        `UPDATE subnets SET name = COALESCE($2, name), description = COALESCE($3, description),
           reserved_ranges = COALESCE($4, reserved_ranges), updated_at = $5, revision = $6 WHERE id = $1 RETURNING *`,
        [row.id, input.name ?? null, input.description ?? null, input.reservedRanges ? JSON.stringify(input.reservedRanges) : null, tx.now, revision],
      );
      return u;
    },
    async beforeDelete(tx, row, cascade, engine) {
      await rulesReferencing(tx, engine, 'subnet', row.id, cascade);
      await tx.query('DELETE FROM vnis WHERE owner_id = $1', [row.id]);
      tx.onCommit(() => ipam.forget(row.id));
    },
  };
}

// ---------------------------------------------------------------------- host

const hostCreate = z.strictObject({ name, description: description.default(''), vtepIp: ipAddress });
const hostUpdate = z.strictObject({ name: name.optional(), description: description.optional(), vtepIp: ipAddress.optional() });

async function uniqueVtep(tx: Tx, vtep: string | undefined, exceptId: string | null) {
  if (vtep === undefined) return;
  const rows = await tx.query('SELECT id, name FROM hosts WHERE vtep_ip = $1 AND ($2::uuid IS NULL OR id <> $2)', [vtep, exceptId]);
  if (rows.length > 0) throw new Conflict('vtep-in-use', `VTEP address ${vtep} is already used by host ${rows[0].name} (${rows[0].id})`, 'vtepIp');
}

export const hostDef: ResourceDef<Host, z.infer<typeof hostCreate>, z.infer<typeof hostUpdate>> = {
  kind: 'host',
  label: 'host',
  table: 'hosts',
  path: 'hosts',
  scoped: false,
  parent: null,
  children: [{ kind: 'endpoint', column: 'host_id' }],
  filters: { name: 'name', vtepIp: 'host(vtep_ip)', status: 'status' },
  createSchema: hostCreate,
  updateSchema: hostUpdate,
  modelSchema: modelSchema(hostCreate, {
    status: { type: 'string', enum: ['unknown', 'up', 'down'] },
    lastSeenAt: { type: ['string', 'null'], format: 'date-time' },
    credential: { type: 'string', description: 'the agent credential; returned once, on creation only' },
  }),
  operatorWrites: true,
  toModel: (r: Row): Host => ({
    ...meta(r),
    name: r.name,
    description: r.description,
    vtepIp: hostText(r.vtep_ip),
    status: r.status,
    lastSeenAt: r.last_seen_at ? (r.last_seen_at as Date).toISOString() : null,
  }),
  async create(tx, { caller, input, id }) {
    requireOperator(caller, 'registering a host');
    await uniqueName(tx, 'hosts', null, null, input.name, null, 'a host');
    await uniqueVtep(tx, input.vtepIp, null);
    const credential = newApiKey().replace(/^sdn_/, 'sdnh_');
    const revision = tx.nextRevision();
    const [row] = await tx.query(
      `INSERT INTO hosts (id, name, description, vtep_ip, credential_hash, created_at, updated_at, revision)
       VALUES ($1, $2, $3, $4, $5, $6, $6, $7) RETURNING *`,
      [id, input.name, input.description, input.vtepIp, hashKey(credential), tx.now, revision],
    );
    return { ...row, credential };
  },
  createExtras: (row) => ({ credential: row.credential }),
  async update(tx, { caller, row, input, revision }) {
    requireOperator(caller, 'changing a host');
    if (input.name !== undefined) await uniqueName(tx, 'hosts', null, null, input.name, row.id, 'a host');
    await uniqueVtep(tx, input.vtepIp, row.id);
    const [u] = await tx.query(
      `UPDATE hosts SET name = COALESCE($2, name), description = COALESCE($3, description), vtep_ip = COALESCE($4, vtep_ip),
         updated_at = $5, revision = $6 WHERE id = $1 RETURNING *`,
      [row.id, input.name ?? null, input.description ?? null, input.vtepIp ?? null, tx.now, revision],
    );
    return u;
  },
};

// ------------------------------------------------------------------ endpoint

const endpointCreate = z.strictObject({
  name,
  kind: z.enum(['container', 'vm', 'baremetal'], { message: 'must be container, vm or baremetal' }).default('container'),
  externalId: z.string().min(1).max(255).nullable().default(null),
  hostId: uuid.nullable().default(null),
  mac: mac.optional(),
  ip: ipAddress.optional(),
  policyGroupIds: z.array(uuid).max(64).default([]),
});
const endpointUpdate = z.strictObject({
  name: name.optional(),
  hostId: uuid.nullable().optional(),
  policyGroupIds: z.array(uuid).max(64).optional(),
});

async function findByExternalId(tx: Tx, subnetId: string, externalId: string | null): Promise<Row | null> {
  if (externalId === null) return null;
  const rows = await tx.query('SELECT * FROM endpoints WHERE subnet_id = $1 AND external_id = $2', [subnetId, externalId]);
  return rows[0] ?? null;
}

/** A random locally administered unicast MAC (first octet x2, x6, xA or xE). */
function generateMac(): string {
  const i = randomPool.take(6);
  const b = randomPool.bytes;
  return `${HEX2[(b[i] & 0xfc) | 0x02]}:${HEX2[b[i + 1]]}:${HEX2[b[i + 2]]}:${HEX2[b[i + 3]]}:${HEX2[b[i + 4]]}:${HEX2[b[i + 5]]}`;
}

type Read = (sql: string, params: unknown[]) => Promise<Row[]>;
const readIn = (tx: Tx): Read => (sql, params) => tx.query(sql, params);

async function checkHost(read: Read, hostId: string | null | undefined): Promise<void> {
  if (!hostId) return;
  const rows = await read('SELECT 1 FROM hosts WHERE id = $1', [hostId]);
  if (rows.length === 0) throw new ReferenceNotFound('hostId', 'host', hostId);
}

async function checkGroups(read: Read, ids: string[] | undefined, domainId: string, enterpriseId: string): Promise<string[] | undefined> {
  if (ids === undefined || ids.length === 0) return ids;
  const rows = await read('SELECT id, domain_id, enterprise_id FROM policy_groups WHERE id = ANY($1::uuid[])', [[...new Set(ids)]]);
  return judgeGroups(rows, ids, domainId, enterpriseId);
}

function judgeGroups(rows: Row[], ids: string[], domainId: string, enterpriseId: string): string[] {
  const unique = [...new Set(ids)];
  const byId = new Map(rows.map((r) => [r.id as string, r]));
  unique.forEach((id, i) => {
    const g = byId.get(id);
    // a group of another enterprise is reported exactly like a missing one
    if (!g || g.enterprise_id !== enterpriseId) throw new ReferenceNotFound(`policyGroupIds[${i}]`, 'policy group', id);
    if (g.domain_id !== domainId) throw new ReferenceOutOfScope(`policyGroupIds[${i}]`, 'policy group', id, 'domain');
  });
  return unique;
}

type EndpointInput = z.infer<typeof endpointCreate>;

/**
 * The guard of an endpoint INSERT: every one of its policy groups (`groups`,
 * deduplicated) still exists in its domain, so a group deleted since the
 * check in prepare() makes the row insert nothing. One primary-key lookup per
 * group. The count(*) form this replaced was planned as a bitmap heap scan
 * on the (domain_id, name) index, and every rescan of a bitmap heap scan asks
 * the kernel for the table's size (one lseek per row): it was ~7% of the
 * writer backend's CPU in bench:scale.
 */
const groupsInDomain = (groups: string, domain: string) =>
  `NOT EXISTS (SELECT 1 FROM unnest(${groups}) AS gid WHERE (SELECT g.domain_id FROM policy_groups g WHERE g.id = gid) IS DISTINCT FROM ${domain})`;

// Rows travel as one JSON document (serialised natively by V8) rather than as
// thirteen array parameters: the driver builds an array's text in JavaScript
// element by element, and Postgres took longer over the arrays too (pgbench,
// 27 rows: 0.52-0.67 ms against 0.33-0.45 ms for the document, which it
// validates on the cast and then splits into records).
const INSERT_ENDPOINTS = `
  INSERT INTO endpoints (id, enterprise_id, domain_id, zone_id, subnet_id, host_id, kind, name, external_id, mac, ip,
    policy_group_ids, created_at, updated_at, revision)
  SELECT t.id, t.ent, t.dom, t.zone, t.sub, t.host, t.kind, t.name, t.ext, t.mac, t.ip::inet, t.groups, $2, $2, t.rev
  FROM json_to_recordset($1::json)
    AS t(id uuid, ent uuid, dom uuid, zone uuid, sub uuid, host uuid, kind text, name text, ext text, mac text, ip text, groups uuid[], rev bigint)
  WHERE ${groupsInDomain('t.groups', 't.dom')}
  ON CONFLICT (subnet_id, external_id) WHERE external_id IS NOT NULL DO NOTHING
  RETURNING id`;

/**
 * Creates a batch of endpoints (no explicit MAC) in one INSERT. Each payload
 * gets its address from the in-memory pool first; rows the guard or the
 * externalId conflict kept out are then explained one by one (the existing
 * endpoint for a retry, or the reason for a refusal).
 */
function bulkCreateEndpoints(ipam: Ipam, toModel: (r: Row) => Endpoint): BulkHandler {
  return async (tx, payloads) => {
    const items = payloads as BulkCreate<EndpointInput>[];
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = new Array(items.length);
    const fail = (k: number, error: unknown) => (results[k] = { ok: false, error });
    const candidates: Array<{ k: number; ip: string; mac: string }> = [];
    const unexplained: number[] = [];
    for (let k = 0; k < items.length; k++) {
      const { parent: subnet, input } = items[k];
      if (input.ip !== undefined) {
        const why = await ipam.claim(tx, subnet.id, input.ip);
        if (why === null) candidates.push({ k, ip: input.ip, mac: generateMac() });
        else if (why.includes('in use')) unexplained.push(k);
        else fail(k, invalid('ip', `${input.ip} ${why} (${subnet.cidr})`));
      } else {
        const ip = await ipam.allocate(tx, subnet.id);
        if (ip === null) unexplained.push(k);
        else candidates.push({ k, ip, mac: generateMac() });
      }
    }
    const base = tx.peekRevision();
    // every column is known here: the row is not read back, only which ids went in
    const rows = candidates.map((c, i) => {
      const p = items[c.k];
      return {
        id: p.id,
        enterprise_id: p.parent.enterprise_id,
        domain_id: p.parent.domain_id,
        zone_id: p.parent.zone_id,
        subnet_id: p.parent.id,
        host_id: p.input.hostId ?? null,
        kind: p.input.kind,
        name: p.input.name,
        external_id: p.input.externalId ?? null,
        mac: c.mac,
        ip: c.ip,
        policy_group_ids: (p.prepared as string[] | undefined) ?? [],
        status: 'pending',
        created_at: tx.now,
        updated_at: tx.now,
        revision: base + i,
      };
    });
    const json = JSON.stringify(
      rows.map((r) => ({
        id: r.id,
        ent: r.enterprise_id,
        dom: r.domain_id,
        zone: r.zone_id,
        sub: r.subnet_id,
        host: r.host_id,
        kind: r.kind,
        name: r.name,
        ext: r.external_id,
        mac: r.mac,
        ip: r.ip,
        groups: r.policy_group_ids,
        rev: r.revision,
      })),
    );
    // which rows went in (the guard or the externalId conflict may keep some out)
    const went = new Set(
      candidates.length
        ? await tx.insertIds(
            INSERT_ENDPOINTS,
            [json, tx.now],
            rows.map((r) => r.id),
          )
        : [],
    );
    const byId = new Map<string, Row>();
    // revisions must stay gap-free: renumber when some rows were kept out
    const fix: Array<[string, number]> = [];
    candidates.forEach((c, i) => {
      const row = rows[i];
      if (!went.has(row.id)) {
        ipam.release(items[c.k].parent.id, c.ip);
        unexplained.push(c.k);
        return;
      }
      const revision = tx.nextRevision();
      if (row.revision !== revision) {
        fix.push([row.id, revision]);
        row.revision = revision;
      }
      byId.set(row.id, row);
    });
    if (fix.length) {
      await tx.query('UPDATE endpoints e SET revision = v.r FROM unnest($1::uuid[], $2::bigint[]) AS v(id, r) WHERE e.id = v.id', [
        fix.map((f) => f[0]),
        fix.map((f) => f[1]),
      ]);
    }
    for (const c of candidates) {
      const row = byId.get(items[c.k].id);
      if (!row) continue;
      const model = toModel(row);
      tx.log({ revision: model.revision, kind: 'endpoint', op: 'create', id: model.id, enterpriseId: model.enterpriseId, state: model });
      results[c.k] = { ok: true, value: { model, created: true, extras: {} } };
    }
    for (const k of unexplained) {
      const { parent: subnet, input, prepared } = items[k];
      const existing = await findByExternalId(tx, subnet.id, input.externalId);
      if (existing) {
        results[k] = { ok: true, value: { model: toModel(existing), created: false, extras: {} } };
        continue;
      }
      try {
        if (input.ip !== undefined) {
          const why = await ipam.claim(tx, subnet.id, input.ip);
          if (why !== null) throw new Conflict('address-in-use', `${input.ip} ${why} in subnet ${subnet.id}`, 'ip');
          ipam.release(subnet.id, input.ip);
        }
        await checkGroups(readIn(tx), prepared as string[] | undefined, subnet.domain_id, subnet.enterprise_id);
        if (input.ip === undefined) throw new SubnetExhausted(subnet.id, subnet.cidr);
        throw new Conflict('retry', 'the endpoint could not be created because of a concurrent change; retry');
      } catch (e) {
        fail(k, e);
      }
    }
    return results;
  };
}

export function endpointDef(ipam: Ipam): ResourceDef<Endpoint, EndpointInput, z.infer<typeof endpointUpdate>> {
  const toModel = (r: Row): Endpoint => ({
    ...meta(r),
    enterpriseId: r.enterprise_id,
    domainId: r.domain_id,
    zoneId: r.zone_id,
    subnetId: r.subnet_id,
    hostId: r.host_id,
    kind: r.kind,
    name: r.name,
    externalId: r.external_id,
    mac: r.mac,
    ip: hostText(r.ip),
    policyGroupIds: r.policy_group_ids,
    status: r.status,
  });
  const bulk = bulkCreateEndpoints(ipam, toModel);
  return {
    bulkCreate: (input) => (input.mac === undefined ? bulk : null),
    kind: 'endpoint',
    label: 'endpoint',
    table: 'endpoints',
    path: 'endpoints',
    scoped: true,
    parent: { kind: 'subnet', path: 'subnets', column: 'subnet_id' },
    children: [],
    filters: {
      name: 'name',
      externalId: 'external_id',
      hostId: 'host_id',
      subnetId: 'subnet_id',
      zoneId: 'zone_id',
      domainId: 'domain_id',
      enterpriseId: 'enterprise_id',
      ip: 'host(ip)',
      mac: 'mac',
      status: 'status',
      policyGroupId: 'policy_group_ids',
    },
    createSchema: endpointCreate,
    updateSchema: endpointUpdate,
    modelSchema: modelSchema(endpointCreate, { status: { type: 'string', enum: ['pending', 'active', 'error'] } }),
    toModel,
    async loadForCreate(read, { caller, parentId, input, cache }) {
      const groupIds = [...new Set(input.policyGroupIds)];
      const scope = scopeOf(caller);
      // everything in the cache: no query at all (see parent-cache.ts for why staleness is safe)
      // each row read once, at one time: a second look could find it expired in between
      const now = Date.now();
      const cached = cache.get(parentId, now);
      const groups = groupIds.map((g) => cache.get(g, now));
      if (cached && (!input.hostId || cache.get(input.hostId, now)) && groups.every((g) => g !== undefined)) {
        if (scope !== null && cached.enterprise_id !== scope) throw new NotFound('subnet', parentId);
        return { parent: cached, prepared: judgeGroups(groups as Row[], input.policyGroupIds, cached.domain_id, cached.enterprise_id) };
      }
      // subnet, host and groups in one round trip
      const [row] = await read(
        `SELECT s.*,
           (SELECT count(*) FROM hosts WHERE id = $2::uuid) AS host_found,
           (SELECT coalesce(json_agg(json_build_object('id', g.id, 'domain_id', g.domain_id, 'enterprise_id', g.enterprise_id)), '[]')
              FROM policy_groups g WHERE g.id = ANY($3::uuid[])) AS groups_found
         FROM subnets s WHERE s.id = $1`,
        [parentId, input.hostId, groupIds],
      );
      if (!row || (scope !== null && row.enterprise_id !== scope)) throw new NotFound('subnet', parentId);
      const { host_found: hostFound, groups_found: groupsFound, ...parent } = row;
      cache.put(parentId, parent);
      for (const g of groupsFound as Row[]) cache.put(g.id, g);
      if (input.hostId) {
        if (Number(hostFound) === 0) throw new ReferenceNotFound('hostId', 'host', input.hostId);
        cache.put(input.hostId, { id: input.hostId });
      }
      return { parent, prepared: judgeGroups(groupsFound, input.policyGroupIds, row.domain_id, row.enterprise_id) };
    },
    async create(tx, { parent, input, id, prepared }) {
      const subnet = parent!;
      const groups = (prepared as string[] | undefined) ?? [];
      let ip: string;
      let release = () => undefined as void;
      if (input.ip !== undefined) {
        const why = await ipam.claim(tx, subnet.id, input.ip);
        if (why !== null) {
          if (why.includes('in use')) {
            const existing = await findByExternalId(tx, subnet.id, input.externalId);
            if (existing) return { existing };
            throw new Conflict('address-in-use', `${input.ip} ${why} in subnet ${subnet.id}`, 'ip');
          }
          throw invalid('ip', `${input.ip} ${why} (${subnet.cidr})`);
        }
        ip = input.ip;
      } else {
        const got = await ipam.allocate(tx, subnet.id);
        if (got === null) {
          const existing = await findByExternalId(tx, subnet.id, input.externalId);
          if (existing) return { existing };
          throw new SubnetExhausted(subnet.id, subnet.cidr);
        }
        ip = got;
      }
      release = () => ipam.release(subnet.id, ip);
      let macAddr = input.mac;
      if (macAddr !== undefined) {
        const taken = await tx.query('SELECT id FROM endpoints WHERE subnet_id = $1 AND mac = $2', [subnet.id, macAddr]);
        if (taken.length > 0) {
          release();
          const existing = await findByExternalId(tx, subnet.id, input.externalId);
          if (existing) return { existing };
          throw new Conflict('mac-in-use', `MAC ${macAddr} is already used by endpoint ${taken[0].id} in this subnet`, 'mac');
        }
      } else macAddr = generateMac();
      // One statement: the group check done in prepare() is repeated as a guard
      // (a group deleted since makes it insert nothing), and an endpoint that
      // already has this externalId makes it insert nothing (idempotent attach).
      const revision = tx.peekRevision();
      const rows = await tx.query(
        `INSERT INTO endpoints (id, enterprise_id, domain_id, zone_id, subnet_id, host_id, kind, name, external_id, mac, ip,
           policy_group_ids, created_at, updated_at, revision)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::uuid[], $13, $13, $14
         WHERE ${groupsInDomain('$12::uuid[]', '$3')}
         ON CONFLICT (subnet_id, external_id) WHERE external_id IS NOT NULL DO NOTHING
         RETURNING *`,
        [
          id,
          subnet.enterprise_id,
          subnet.domain_id,
          subnet.zone_id,
          subnet.id,
          input.hostId,
          input.kind,
          input.name,
          input.externalId,
          macAddr,
          ip,
          groups,
          tx.now,
          revision,
        ],
      );
      if (rows.length === 1) {
        tx.nextRevision();
        return rows[0];
      }
      release();
      const existing = await findByExternalId(tx, subnet.id, input.externalId);
      if (existing) return { existing };
      await checkGroups(readIn(tx), groups, subnet.domain_id, subnet.enterprise_id); // throws with the reason
      throw new Error('endpoint insert was refused for no known reason');
    },
    async update(tx, { row, input, revision }) {
      await checkHost(readIn(tx), input.hostId);
      const groups = await checkGroups(readIn(tx), input.policyGroupIds, row.domain_id, row.enterprise_id);
      // a change the hosts must program shows as pending until the controller saw every host acknowledge it
      const moved = input.hostId !== undefined && input.hostId !== row.host_id;
      const before = new Set(row.policy_group_ids as string[]);
      const regrouped = groups !== undefined && (groups.length !== before.size || groups.some((g) => !before.has(g)));
      const [u] = await tx.query(
        `UPDATE endpoints SET name = COALESCE($2, name), host_id = CASE WHEN $3 THEN $4::uuid ELSE host_id END,
           policy_group_ids = COALESCE($5, policy_group_ids),
           status = CASE WHEN $6 THEN 'pending' ELSE status END, updated_at = $7, revision = $8
         WHERE id = $1 RETURNING *`,
        [row.id, input.name ?? null, input.hostId !== undefined, input.hostId ?? null, groups ?? null, moved || regrouped, tx.now, revision],
      );
      return u;
    },
    async beforeDelete(tx, row, cascade, engine) {
      await rulesReferencing(tx, engine, 'endpoint', row.id, cascade);
      ipam.free(tx, row.subnet_id, hostText(row.ip));
    },
  };
}
