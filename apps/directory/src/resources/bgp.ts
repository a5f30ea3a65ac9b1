/**
 * The BGP speaker a controller runs and its neighbours. Operator-only: they
 * decide what this datacenter tells its routers and other datacenters. Every
 * change goes through the change log, so a running controller applies it
 * without a restart.
 */
import { z } from 'zod';
import type { BgpNeighbor, BgpSpeaker } from '#sdn/model';
import { parseIp } from '#sdn/model';
import { requireOperator } from '../common/auth';
import { Conflict } from '../common/errors';
import { description, ipAddress, name } from '../common/validation';
import type { Tx } from '../db/database';
import { meta, ResourceDef, Row } from './engine';
import { modelSchema } from './schemas';

const hostText = (inet: string) => inet.replace(/\/(32|128)$/, '');

const asn = z.number().int('must be an integer').min(1, 'must be from 1 to 4294967295').max(4294967295, 'must be from 1 to 4294967295');
const routerId = z.string().refine((s) => parseIp(s)?.version === 4 && !s.includes(':'), 'must be an IPv4 address (BGP identifier, RFC 6286)');
const port = z.number().int('must be an integer').min(1, 'must be from 1 to 65535').max(65535, 'must be from 1 to 65535');
const rdAdmin = z.number().int('must be an integer').min(0, 'must be from 0 to 65535').max(65535, 'must be from 0 to 65535');
const families = z
  .array(z.enum(['ipv4-unicast', 'ipv6-unicast', 'l2vpn-evpn'], { message: 'must be ipv4-unicast, ipv6-unicast or l2vpn-evpn' }))
  .min(1, 'must name at least one address family')
  .max(3)
  .transform((f) => [...new Set(f)]);
const holdTime = z
  .number()
  .int('must be an integer')
  .refine((h) => h === 0 || (h >= 3 && h <= 65535), 'must be 0 (no keepalives) or from 3 to 65535 seconds (RFC 4271 §4.2)');
const restartTime = z.number().int('must be an integer').min(0).max(4095, 'must be at most 4095 seconds (RFC 4724 §3)');
const datacenter = z.string().trim().min(1, 'must not be empty').max(64).regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, dot, dash and underscore only');

// ------------------------------------------------------------------ speaker

const speakerCreate = z.strictObject({
  name,
  description: description.default(''),
  datacenter,
  asn,
  routerId,
  listenAddress: ipAddress.default('0.0.0.0'),
  listenPort: port.default(179),
  rdAdmin: rdAdmin.nullable().default(null),
  enabled: z.boolean().default(true),
});
const speakerUpdate = z.strictObject({
  name: name.optional(),
  description: description.optional(),
  datacenter: datacenter.optional(),
  asn: asn.optional(),
  routerId: routerId.optional(),
  listenAddress: ipAddress.optional(),
  listenPort: port.optional(),
  rdAdmin: rdAdmin.nullable().optional(),
  enabled: z.boolean().optional(),
});

async function uniqueSpeakerName(tx: Tx, value: string | undefined, exceptId: string | null) {
  if (value === undefined) return;
  const rows = await tx.query('SELECT id FROM bgp_speakers WHERE name = $1 AND ($2::uuid IS NULL OR id <> $2)', [value, exceptId]);
  if (rows.length > 0) throw new Conflict('name-in-use', `a BGP speaker named "${value}" already exists (${rows[0].id})`, 'name');
}

export const bgpSpeakerDef: ResourceDef<BgpSpeaker, z.infer<typeof speakerCreate>, z.infer<typeof speakerUpdate>> = {
  kind: 'bgpSpeaker',
  label: 'BGP speaker',
  table: 'bgp_speakers',
  path: 'bgp-speakers',
  scoped: false,
  operatorWrites: true,
  operatorOnly: true,
  parent: null,
  children: [{ kind: 'bgpNeighbor', column: 'speaker_id' }],
  filters: { name: 'name', datacenter: 'datacenter' },
  createSchema: speakerCreate,
  updateSchema: speakerUpdate,
  modelSchema: modelSchema(speakerCreate),
  toModel: (r: Row): BgpSpeaker => ({
    ...meta(r),
    name: r.name,
    description: r.description,
    datacenter: r.datacenter,
    asn: Number(r.asn),
    routerId: hostText(r.router_id),
    listenAddress: hostText(r.listen_address),
    listenPort: r.listen_port,
    rdAdmin: r.rd_admin,
    enabled: r.enabled,
  }),
  async create(tx, { caller, input, id }) {
    requireOperator(caller, 'configuring BGP');
    await uniqueSpeakerName(tx, input.name, null);
    const revision = tx.nextRevision();
    const [row] = await tx.query(
      `INSERT INTO bgp_speakers (id, name, description, datacenter, asn, router_id, listen_address, listen_port, rd_admin, enabled,
         created_at, updated_at, revision)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12) RETURNING *`,
      [id, input.name, input.description, input.datacenter, input.asn, input.routerId, input.listenAddress, input.listenPort, input.rdAdmin, input.enabled, tx.now, revision],
    );
    return row;
  },
  async update(tx, { caller, row, input, revision }) {
    requireOperator(caller, 'configuring BGP');
    await uniqueSpeakerName(tx, input.name, row.id);
    const [u] = await tx.query(
      `UPDATE bgp_speakers SET name = COALESCE($2, name), description = COALESCE($3, description), datacenter = COALESCE($4, datacenter),
         asn = COALESCE($5, asn), router_id = COALESCE($6, router_id), listen_address = COALESCE($7, listen_address),
         listen_port = COALESCE($8, listen_port), rd_admin = CASE WHEN $9 THEN $10 ELSE rd_admin END, enabled = COALESCE($11, enabled),
         updated_at = $12, revision = $13
       WHERE id = $1 RETURNING *`,
      [
        row.id,
        input.name ?? null,
        input.description ?? null,
        input.datacenter ?? null,
        input.asn ?? null,
        input.routerId ?? null,
        input.listenAddress ?? null,
        input.listenPort ?? null,
        input.rdAdmin !== undefined,
        input.rdAdmin ?? null,
        input.enabled ?? null,
        tx.now,
        revision,
      ],
    );
    return u;
  },
  async beforeDelete(tx, row) {
    await tx.query('DELETE FROM remote_endpoints WHERE speaker_id = $1', [row.id]);
  },
};

// ------------------------------------------------------------------ neighbour

const neighborCreate = z.strictObject({
  name,
  description: description.default(''),
  address: ipAddress,
  port: port.default(179),
  asn,
  families: families.default(['l2vpn-evpn']),
  passive: z.boolean().default(false),
  routeReflectorClient: z.boolean().default(false),
  holdTime: holdTime.default(90),
  gracefulRestart: z.boolean().default(true),
  restartTime: restartTime.default(120),
  datacenter: datacenter.nullable().default(null),
  maxPrefixes: z.number().int('must be an integer').min(1, 'must be at least 1').max(100_000_000).nullable().default(null),
});
const neighborUpdate = z.strictObject({
  name: name.optional(),
  description: description.optional(),
  port: port.optional(),
  asn: asn.optional(),
  families: families.optional(),
  passive: z.boolean().optional(),
  routeReflectorClient: z.boolean().optional(),
  holdTime: holdTime.optional(),
  gracefulRestart: z.boolean().optional(),
  restartTime: restartTime.optional(),
  datacenter: datacenter.nullable().optional(),
  maxPrefixes: z.number().int('must be an integer').min(1, 'must be at least 1').max(100_000_000).nullable().optional(),
});

async function uniqueNeighbor(tx: Tx, speakerId: string, field: 'name' | 'address', value: string | undefined, exceptId: string | null) {
  if (value === undefined) return;
  const rows = await tx.query(`SELECT id FROM bgp_neighbors WHERE speaker_id = $1 AND ${field} = $2 AND ($3::uuid IS NULL OR id <> $3)`, [
    speakerId,
    value,
    exceptId,
  ]);
  if (rows.length > 0) throw new Conflict(`${field}-in-use`, `the speaker already has a neighbour with ${field} ${value} (${rows[0].id})`, field);
}

export const bgpNeighborDef: ResourceDef<BgpNeighbor, z.infer<typeof neighborCreate>, z.infer<typeof neighborUpdate>> = {
  kind: 'bgpNeighbor',
  label: 'BGP neighbour',
  table: 'bgp_neighbors',
  path: 'bgp-neighbors',
  scoped: false,
  operatorWrites: true,
  operatorOnly: true,
  parent: { kind: 'bgpSpeaker', path: 'bgp-speakers', column: 'speaker_id' },
  children: [],
  filters: { name: 'name', address: 'host(address)', speakerId: 'speaker_id', state: 'state' },
  createSchema: neighborCreate,
  updateSchema: neighborUpdate,
  modelSchema: modelSchema(neighborCreate, {
    status: {
      type: 'object',
      description: 'as the controller last reported it',
      properties: {
        state: { type: 'string' },
        receivedRoutes: { type: 'integer' },
        advertisedRoutes: { type: 'integer' },
        lastError: { type: ['string', 'null'] },
        updatedAt: { type: ['string', 'null'], format: 'date-time' },
      },
    },
  }),
  toModel: (r: Row): BgpNeighbor => ({
    ...meta(r),
    speakerId: r.speaker_id,
    name: r.name,
    description: r.description,
    address: hostText(r.address),
    port: r.port,
    asn: Number(r.asn),
    families: r.families,
    passive: r.passive,
    routeReflectorClient: r.route_reflector_client,
    holdTime: r.hold_time,
    gracefulRestart: r.graceful_restart,
    restartTime: r.restart_time,
    datacenter: r.datacenter,
    maxPrefixes: r.max_prefixes,
    status: {
      state: r.state,
      receivedRoutes: r.received_routes,
      advertisedRoutes: r.advertised_routes,
      lastError: r.last_error,
      updatedAt: r.status_updated_at ? (r.status_updated_at as Date).toISOString() : null,
    },
  }),
  async create(tx, { caller, parent, input, id }) {
    requireOperator(caller, 'configuring BGP');
    await uniqueNeighbor(tx, parent!.id, 'name', input.name, null);
    await uniqueNeighbor(tx, parent!.id, 'address', input.address, null);
    const revision = tx.nextRevision();
    const [row] = await tx.query(
      `INSERT INTO bgp_neighbors (id, speaker_id, name, description, address, asn, families, passive, route_reflector_client,
         hold_time, graceful_restart, restart_time, datacenter, created_at, updated_at, revision, port, max_prefixes)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, $16, $17) RETURNING *`,
      [
        id,
        parent!.id,
        input.name,
        input.description,
        input.address,
        input.asn,
        input.families,
        input.passive,
        input.routeReflectorClient,
        input.holdTime,
        input.gracefulRestart,
        input.restartTime,
        input.datacenter,
        tx.now,
        revision,
        input.port,
        input.maxPrefixes,
      ],
    );
    return row;
  },
  async update(tx, { caller, row, input, revision }) {
    requireOperator(caller, 'configuring BGP');
    await uniqueNeighbor(tx, row.speaker_id, 'name', input.name, row.id);
    const [u] = await tx.query(
      `UPDATE bgp_neighbors SET name = COALESCE($2, name), description = COALESCE($3, description), asn = COALESCE($4, asn),
         families = COALESCE($5, families), passive = COALESCE($6, passive), route_reflector_client = COALESCE($7, route_reflector_client),
         hold_time = COALESCE($8, hold_time), graceful_restart = COALESCE($9, graceful_restart), restart_time = COALESCE($10, restart_time),
         datacenter = CASE WHEN $11 THEN $12 ELSE datacenter END, updated_at = $13, revision = $14, port = COALESCE($15, port),
         max_prefixes = CASE WHEN $16 THEN $17 ELSE max_prefixes END
       WHERE id = $1 RETURNING *`,
      [
        row.id,
        input.name ?? null,
        input.description ?? null,
        input.asn ?? null,
        input.families ?? null,
        input.passive ?? null,
        input.routeReflectorClient ?? null,
        input.holdTime ?? null,
        input.gracefulRestart ?? null,
        input.restartTime ?? null,
        input.datacenter !== undefined,
        input.datacenter ?? null,
        tx.now,
        revision,
        input.port ?? null,
        input.maxPrefixes !== undefined,
        input.maxPrefixes ?? null,
      ],
    );
    return u;
  },
};
