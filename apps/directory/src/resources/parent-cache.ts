/**
 * Rows that endpoint creation reads before it queues its write (the subnet,
 * the host, the policy groups), kept for a short time so that the hot path
 * does not ask Postgres for them on every request.
 *
 * Why staleness is safe: the cache only saves a read that the write does not
 * depend on for correctness. The insert itself is guarded by the database:
 * the endpoint's composite foreign key to its subnet's lineage, the foreign
 * key to its host, and the group guard in the statement. A subnet, host or
 * group deleted by another directory process within the TTL makes that one
 * write fail with a clear error instead of creating a dangling endpoint.
 * Changes made by this process evict their rows at commit.
 */
import type { Row } from './engine';

const TTL_MS = 10_000;
const MAX_ENTRIES = 200_000;

export class ParentCache {
  private readonly rows = new Map<string, { row: Row; at: number }>();
  hits = 0;
  misses = 0;

  get(id: string, now = Date.now()): Row | undefined {
    const e = this.rows.get(id);
    if (e === undefined) return undefined;
    if (now - e.at > TTL_MS) {
      this.rows.delete(id);
      return undefined;
    }
    return e.row;
  }

  put(id: string, row: Row, now = Date.now()): void {
    if (this.rows.size >= MAX_ENTRIES) this.rows.clear();
    this.rows.set(id, { row, at: now });
  }

  evict(id: string): void {
    this.rows.delete(id);
  }
}
