import { Injectable } from '@nestjs/common';
import { AddressRange, Cidr, cidrContains, formatIp, parseCidr, parseIp, usableRange } from '#sdn/model';
import { NotFound } from '../common/errors';
import type { Tx } from '../db/database';

/**
 * Address allocation. The database is the authority (UNIQUE (subnet_id, ip)
 * on endpoints); this keeps, per subnet, the set of used addresses so that an
 * allocation is a scan in memory instead of a query. Allocations happen inside
 * the serial writer, so one process never hands out an address twice; another
 * directory process sharing the database can make our view stale, which the
 * unique constraint turns into a failed statement: the batch is replayed and
 * the pool, dropped on rollback, is reloaded from the database.
 */
export class SubnetPool {
  readonly used = new Set<bigint>();
  private cursor: bigint;
  private readonly first: bigint;
  private readonly last: bigint;
  private readonly reserved: Array<{ start: bigint; end: bigint }>;
  readonly loadedAt = Date.now();

  constructor(
    readonly cidr: Cidr,
    readonly gateway: bigint,
    reserved: AddressRange[],
  ) {
    const r = usableRange(cidr);
    this.first = r.first;
    this.last = r.last;
    this.cursor = r.first;
    this.reserved = reserved
      .map((x) => ({ start: parseIp(x.start)!.value, end: parseIp(x.end)!.value }))
      .sort((a, b) => (a.start < b.start ? -1 : 1));
  }

  /** why `value` cannot be given to an endpoint, or null */
  refusal(value: bigint): string | null {
    if (!cidrContains(this.cidr, this.cidr.version, value)) return 'is outside the subnet';
    if (value < this.first || value > this.last) {
      return this.cidr.version === 4 ? 'is the network or broadcast address' : 'is the subnet-router anycast address';
    }
    if (value === this.gateway) return 'is the gateway address';
    return null;
  }

  private reservedEnd(value: bigint): bigint | null {
    for (const r of this.reserved) if (value >= r.start && value <= r.end) return r.end;
    return null;
  }

  /** lowest free address at or after the cursor, wrapping once; null when none */
  allocate(): bigint | null {
    const size = this.last - this.first + 1n;
    if (BigInt(this.used.size) >= size) return null;
    let v = this.cursor;
    let steps = 0n;
    let wrapped = false;
    for (;;) {
      if (v > this.last) {
        if (wrapped) return null;
        wrapped = true;
        v = this.first;
      }
      const rEnd = this.reservedEnd(v);
      if (rEnd !== null) {
        steps += rEnd - v + 1n;
        v = rEnd + 1n;
      } else if (v === this.gateway || this.used.has(v)) {
        v++;
        steps++;
      } else {
        this.used.add(v);
        this.cursor = v + 1n;
        return v;
      }
      if (steps > size + 1n) return null;
    }
  }

  release(v: bigint): void {
    this.used.delete(v);
  }
}

const POOL_MAX_AGE_MS = 60_000;

@Injectable()
export class Ipam {
  private pools = new Map<string, SubnetPool>();
  allocations = 0;
  exhaustions = 0;

  private async pool(tx: Tx, subnetId: string): Promise<SubnetPool> {
    const cached = this.pools.get(subnetId);
    if (cached && Date.now() - cached.loadedAt < POOL_MAX_AGE_MS) return cached;
    // read inside the writer's transaction: the subnet's current reserved ranges
    const [subnet] = await tx.query<{ id: string; cidr: string; gateway: string; reserved_ranges: AddressRange[] }>(
      'SELECT id, cidr::text AS cidr, host(gateway) AS gateway, reserved_ranges FROM subnets WHERE id = $1',
      [subnetId],
    );
    // deleted by another directory process since the request read it
    if (!subnet) throw new NotFound('subnet', subnetId);
    const c = parseCidr(subnet.cidr);
    if (!c.ok) throw new Error(`stored CIDR ${subnet.cidr} of subnet ${subnet.id} is invalid`);
    const pool = new SubnetPool(c.cidr, parseIp(subnet.gateway)!.value, subnet.reserved_ranges);
    const rows = await tx.query<{ ip: string }>('SELECT host(ip) AS ip FROM endpoints WHERE subnet_id = $1', [subnet.id]);
    for (const r of rows) pool.used.add(parseIp(r.ip)!.value);
    this.pools.set(subnet.id, pool);
    return pool;
  }

  /** Allocates the next free address of the subnet, or returns null when it is exhausted. */
  async allocate(tx: Tx, subnetId: string): Promise<string | null> {
    const pool = await this.pool(tx, subnetId);
    const v = pool.allocate();
    if (v === null) {
      this.exhaustions++;
      return null;
    }
    this.allocations++;
    tx.onRollback(() => this.forget(subnetId));
    return formatIp(pool.cidr.version, v);
  }

  /** Claims a requested static address: returns why it cannot be had, or null when claimed. */
  async claim(tx: Tx, subnetId: string, ip: string): Promise<string | null> {
    const pool = await this.pool(tx, subnetId);
    const p = parseIp(ip);
    if (p === null || p.version !== pool.cidr.version) return `is not an IPv${pool.cidr.version} address`;
    const why = pool.refusal(p.value);
    if (why) return why;
    if (pool.used.has(p.value)) return 'is already in use by another endpoint';
    pool.used.add(p.value);
    this.allocations++;
    tx.onRollback(() => this.forget(subnetId));
    return null;
  }

  /** Frees an address once the deleting transaction commits. */
  free(tx: Tx, subnetId: string, ip: string): void {
    tx.onCommit(() => {
      const pool = this.pools.get(subnetId);
      const p = parseIp(ip);
      if (pool && p) pool.release(p.value);
    });
  }

  /** gives back an address taken in this transaction but not used */
  release(subnetId: string, ip: string): void {
    const pool = this.pools.get(subnetId);
    const p = parseIp(ip);
    if (pool && p) pool.release(p.value);
  }

  forget(subnetId: string): void {
    this.pools.delete(subnetId);
  }
}
