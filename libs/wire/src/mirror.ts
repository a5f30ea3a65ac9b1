/**
 * What an agent holds: the state of its last applied version, with a running
 * digest. The simulator uses it as is; the real agent can use it as its
 * desired state and diff it against the kernel.
 */
import {
  applyDelta,
  digestText,
  emptyHostState,
  entryHashInto,
  keyOf,
  StateDigest,
  stateSize,
  TABLES,
  type AnyEntry,
  type HostDelta,
  type HostState,
  type TableName,
} from '#sdn/compiler';

export type ApplyResult = { ok: true } | { ok: false; reason: string };

export class StateMirror {
  state: HostState = emptyHostState();
  digest = new StateDigest(false);
  version = 0;
  epoch = '';
  revision = 0;

  /** Replaces the state; fails when the content does not match the announced digest. */
  applySnapshot(m: { epoch: string; version: number; revision: number; digest: string; state: HostState }): ApplyResult {
    const d = StateDigest.of(m.state, false);
    if (d.value() !== m.digest) return { ok: false, reason: `snapshot digest ${d.value()} != announced ${m.digest}` };
    this.state = m.state;
    this.digest = d;
    this.version = m.version;
    this.epoch = m.epoch;
    this.revision = m.revision;
    return { ok: true };
  }

  /**
   * Applies a delta in place. On a digest mismatch the state is left as
   * applied (it is no longer trustworthy): nack, and the controller answers
   * with a snapshot.
   */
  applyDelta(m: { epoch: string; fromVersion: number; version: number; revision: number; digest: string; delta: HostDelta }): ApplyResult {
    applyDelta(this.state, m.delta, this.digest);
    const got = this.digest.value();
    if (got !== m.digest) return { ok: false, reason: `state digest ${got} after version ${m.version} != announced ${m.digest}` };
    this.version = m.version;
    this.epoch = m.epoch;
    this.revision = m.revision;
    return { ok: true };
  }
}

/**
 * What a verifying holder keeps when it does not need the entries: per table,
 * each key's entry hash, and the running digest. Snapshots and deltas are
 * checked exactly as StateMirror checks them (the digest covers every field
 * of every entry), in a fraction of the memory. The scale benchmark's
 * simulated agents use it: their 200 hosts stand for 200 machines, and
 * keeping 1.7M decoded entries on this one cost a third of the run's page
 * faults and most of the agents' old-generation garbage collection.
 */
export class DigestMirror {
  /** per table: key -> slot in `lanes` (two 32-bit lanes per slot) */
  private tables: Map<string, number>[] = TABLES.map(() => new Map());
  private lanes = new Uint32Array(2048);
  private free: number[] = [];
  private used = 0;
  private a = 0;
  private b = 0;
  version = 0;
  epoch = '';
  revision = 0;

  /** entries held */
  get size(): number {
    let n = 0;
    for (const m of this.tables) n += m.size;
    return n;
  }

  digest(): string {
    return digestText(this.a, this.b);
  }

  /** Replaces what is held; fails (holding the previous state) when the content does not match the announced digest. */
  applySnapshot(m: { epoch: string; version: number; revision: number; digest: string; state: HostState }): ApplyResult {
    const before = { tables: this.tables, lanes: this.lanes, free: this.free, used: this.used, a: this.a, b: this.b };
    this.tables = TABLES.map(() => new Map());
    this.lanes = new Uint32Array(Math.max(2048, 2 * stateSize(m.state)));
    this.free = [];
    this.used = 0;
    this.a = 0;
    this.b = 0;
    TABLES.forEach((t, i) => {
      const keyFn = keyOf[t] as (x: AnyEntry) => string;
      for (const e of m.state[t].values()) this.put(i, t, keyFn(e as AnyEntry), e as AnyEntry);
    });
    const got = this.digest();
    if (got !== m.digest) {
      Object.assign(this, before);
      return { ok: false, reason: `snapshot digest ${got} != announced ${m.digest}` };
    }
    this.version = m.version;
    this.epoch = m.epoch;
    this.revision = m.revision;
    return { ok: true };
  }

  /** Applies a delta; on a digest mismatch what is held is no longer trustworthy (nack, and a snapshot follows). */
  applyDelta(m: { epoch: string; fromVersion: number; version: number; revision: number; digest: string; delta: HostDelta }): ApplyResult {
    for (let i = 0; i < TABLES.length; i++) {
      const t = TABLES[i];
      const c = m.delta[t];
      if (!c) continue;
      for (const key of c.remove) this.drop(i, key);
      const keyFn = keyOf[t] as (x: AnyEntry) => string;
      for (const e of c.upsert as AnyEntry[]) this.put(i, t, keyFn(e), e);
    }
    const got = this.digest();
    if (got !== m.digest) return { ok: false, reason: `state digest ${got} after version ${m.version} != announced ${m.digest}` };
    this.version = m.version;
    this.epoch = m.epoch;
    this.revision = m.revision;
    return { ok: true };
  }

  private put(i: number, t: TableName, key: string, e: AnyEntry): void {
    const tab = this.tables[i];
    let slot = tab.get(key);
    if (slot !== undefined) this.subtract(slot);
    else {
      slot = this.free.pop() ?? this.used++;
      if (2 * slot + 2 > this.lanes.length) {
        const grown = new Uint32Array(this.lanes.length * 2);
        grown.set(this.lanes);
        this.lanes = grown;
      }
      tab.set(key, slot);
    }
    entryHashInto(t, e, this.lanes, 2 * slot);
    this.a = (this.a + this.lanes[2 * slot]) >>> 0;
    this.b = (this.b + this.lanes[2 * slot + 1]) >>> 0;
  }

  private drop(i: number, key: string): void {
    const tab = this.tables[i];
    const slot = tab.get(key);
    if (slot === undefined) return;
    this.subtract(slot);
    tab.delete(key);
    this.free.push(slot);
  }

  private subtract(slot: number): void {
    this.a = (this.a - this.lanes[2 * slot]) >>> 0;
    this.b = (this.b - this.lanes[2 * slot + 1]) >>> 0;
  }
}
