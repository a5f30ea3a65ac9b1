/**
 * Endpoints learned from other datacenters over BGP, read-only: the
 * controller writes them as it imports routes; the API shows them to the
 * tenant that owns the domain, with the peer and datacenter they came from.
 */
import { Controller, Get, Param, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Caller, CurrentCaller, scopeOf } from '../common/auth';
import { NotFound, ValidationFailed } from '../common/errors';
import { unstorable } from '../common/validation';
import { Database } from '../db/database';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const hostText = (inet: string | null) => (inet === null ? null : inet.replace(/\/(32|128)$/, ''));

/**
 * A page ends at a (route key, speaker) pair: two speakers of one deployment
 * may hold a route under the same key, so the key alone would skip one of
 * them at a page boundary. The cursor is that pair as base64url JSON; null
 * for a first page, undefined for anything this API did not return.
 */
function readCursor(raw: unknown): [string, string] | null | undefined {
  if (raw === undefined || raw === '') return null;
  if (typeof raw !== 'string' || raw.length > 4096) return undefined;
  try {
    const v: unknown = JSON.parse(Buffer.from(raw, 'base64url').toString());
    if (!Array.isArray(v) || v.length !== 2) return undefined;
    const [key, speaker] = v;
    if (typeof key !== 'string' || unstorable(key) || typeof speaker !== 'string' || !UUID_RE.test(speaker)) return undefined;
    return [key, speaker];
  } catch {
    return undefined;
  }
}
const cursorOf = (r: { route_key: string; speaker_id: string }) => Buffer.from(JSON.stringify([r.route_key, r.speaker_id])).toString('base64url');

export interface RemoteEndpointView {
  domainId: string;
  subnetId: string | null;
  mac: string;
  ip: string | null;
  vtepIp: string;
  l2Vni: number;
  l3Vni: number | null;
  policyGroupIds: string[];
  mobilitySequence: number;
  routeDistinguisher: string;
  peer: string;
  datacenter: string | null;
  learnedAt: string;
  /**
   * learned by a controller that has since stopped or restarted, and not
   * learned again yet: kept, like a graceful-restart neighbour's routes, until
   * the running controller's route selection is complete
   */
  stale: boolean;
}

@ApiTags('remote-endpoints')
@Controller('api/v1')
export class RemoteEndpointsController {
  constructor(private readonly db: Database) {}

  @Get('domains/:id/remote-endpoints')
  @ApiOperation({ summary: 'Endpoints of this domain learned from other datacenters over BGP (read-only)' })
  async list(@CurrentCaller() caller: Caller, @Param('id') domainId: string, @Query() query: Record<string, unknown>) {
    if (!UUID_RE.test(domainId)) throw new NotFound('domain', domainId);
    const scope = scopeOf(caller);
    const d = await this.db.read('SELECT 1 FROM domains WHERE id = $1 AND ($2::uuid IS NULL OR enterprise_id = $2)', [domainId, scope]);
    if (d.length === 0) throw new NotFound('domain', domainId);
    const limit = query.limit === undefined ? 1000 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10000) {
      throw new ValidationFailed([{ field: 'limit', message: `must be an integer from 1 to 10000, got "${query.limit}"` }]);
    }
    const after = readCursor(query.cursor);
    if (after === undefined) throw new ValidationFailed([{ field: 'cursor', message: 'is not a cursor this API returned' }]);
    const rows = await this.db.read(
      `SELECT *, host(vtep_ip) AS vtep, host(ip) AS addr, host(peer) AS peer_addr FROM remote_endpoints
        WHERE domain_id = $1 AND ($2::text IS NULL OR (route_key, speaker_id) > ($2, $3::uuid))
        ORDER BY route_key, speaker_id LIMIT $4`,
      [domainId, after?.[0] ?? null, after?.[1] ?? null, limit + 1],
    );
    const more = rows.length > limit;
    const page = more ? rows.slice(0, limit) : rows;
    return {
      items: page.map(
        (r): RemoteEndpointView => ({
          domainId: r.domain_id,
          subnetId: r.subnet_id,
          mac: r.mac,
          ip: hostText(r.addr),
          vtepIp: r.vtep,
          l2Vni: r.l2_vni,
          l3Vni: r.l3_vni,
          policyGroupIds: r.policy_group_ids,
          mobilitySequence: Number(r.mobility_sequence),
          routeDistinguisher: r.route_distinguisher,
          peer: r.peer_addr,
          datacenter: r.datacenter,
          learnedAt: (r.learned_at as Date).toISOString(),
          stale: r.stale,
        }),
      ),
      nextCursor: more ? cursorOf(page[page.length - 1]) : null,
    };
  }
}
