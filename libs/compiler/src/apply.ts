/**
 * Operations on states and deltas that both ends need: apply a delta, diff two
 * states, and coalesce deltas (what the controller does for a slow agent).
 */
import { sameEntry, StateDigest } from './digest';
import { AnyEntry, EntryByTable, emptyHostState, HostDelta, HostState, keyOf, TableName, TABLES } from './state';

/** Applies a delta in place (removes, then upserts), keeping `digest` current when given. */
export function applyDelta(state: HostState, delta: HostDelta, digest?: StateDigest): void {
  for (const t of TABLES) {
    const c = delta[t];
    if (!c) continue;
    const tab = state[t] as Map<string, AnyEntry>;
    for (const key of c.remove) {
      const cur = tab.get(key);
      if (cur === undefined) continue;
      digest?.remove(t, cur);
      tab.delete(key);
    }
    const keyFn = keyOf[t] as (x: AnyEntry) => string;
    for (const e of c.upsert as AnyEntry[]) {
      const key = keyFn(e);
      const cur = tab.get(key);
      if (cur !== undefined) digest?.remove(t, cur);
      digest?.add(t, e);
      tab.set(key, e);
    }
  }
}

/** The delta that turns `from` into `to`. */
export function diffStates(from: HostState, to: HostState): HostDelta {
  const d: HostDelta = {};
  for (const t of TABLES) {
    const a = from[t] as Map<string, AnyEntry>;
    const b = to[t] as Map<string, AnyEntry>;
    const upsert: AnyEntry[] = [];
    const remove: string[] = [];
    for (const [k, e] of b) if (!sameEntry(t, a.get(k) as never, e as never)) upsert.push(e);
    for (const k of a.keys()) if (!b.has(k)) remove.push(k);
    if (upsert.length || remove.length) (d as Record<string, unknown>)[t] = { upsert, remove };
  }
  return d;
}

/** Describes how two states differ (for test failures); empty when equal. */
export function describeDifference(a: HostState, b: HostState, limit = 10): string[] {
  const out: string[] = [];
  for (const t of TABLES) {
    const x = a[t] as Map<string, AnyEntry>;
    const y = b[t] as Map<string, AnyEntry>;
    for (const [k, e] of x) {
      if (!y.has(k)) out.push(`${t} ${k}: only in first`);
      else if (!sameEntry(t, e as never, y.get(k) as never)) out.push(`${t} ${k}: ${JSON.stringify(e)} != ${JSON.stringify(y.get(k))}`);
    }
    for (const k of y.keys()) if (!x.has(k)) out.push(`${t} ${k}: only in second`);
  }
  return out.slice(0, limit);
}

export function statesEqual(a: HostState, b: HostState): boolean {
  return describeDifference(a, b, 1).length === 0;
}

export function cloneState(s: HostState): HostState {
  const out = emptyHostState();
  for (const t of TABLES) for (const [k, e] of s[t] as Map<string, AnyEntry>) (out[t] as Map<string, AnyEntry>).set(k, e);
  return out;
}

/**
 * Coalesced changes: per table, key -> the entry's latest value, or null when
 * removed. Merging deltas in order and reading the result gives one delta with
 * the same effect, whatever the number of deltas merged.
 */
export class PendingChanges {
  private readonly tables = new Map<TableName, Map<string, AnyEntry | null>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  merge(delta: HostDelta): void {
    for (const t of TABLES) {
      const c = delta[t];
      if (!c) continue;
      const m = this.table(t);
      for (const key of c.remove) this.record(m, key, null);
      for (const e of c.upsert as AnyEntry[]) this.record(m, (keyOf[t] as (x: AnyEntry) => string)(e), e);
    }
  }

  mergePending(other: PendingChanges): void {
    for (const [t, om] of other.tables) {
      const m = this.table(t);
      for (const [k, v] of om) this.record(m, k, v);
    }
  }

  /** The buffer of one table (created on demand), to write with `record`. */
  table(t: TableName): Map<string, AnyEntry | null> {
    let m = this.tables.get(t);
    if (!m) {
      m = new Map();
      this.tables.set(t, m);
    }
    return m;
  }

  /** Records the newest value of a key (null: removed) in a table buffer from `table()`. */
  record(m: Map<string, AnyEntry | null>, key: string, v: AnyEntry | null): void {
    // one map operation: the size says whether the key was new
    const n = m.size;
    m.set(key, v);
    this.count += m.size - n;
  }

  toDelta(): HostDelta {
    const d: HostDelta = {};
    for (const [t, m] of this.tables) {
      const upsert: AnyEntry[] = [];
      const remove: string[] = [];
      for (const [k, v] of m) {
        if (v === null) remove.push(k);
        else upsert.push(v);
      }
      (d as Record<string, unknown>)[t] = { upsert, remove };
    }
    return d;
  }

  clear(): void {
    this.tables.clear();
    this.count = 0;
  }
}

/** A snapshot as a delta from the empty state (every entry an upsert). */
export function stateAsDelta(s: HostState): HostDelta {
  const d: HostDelta = {};
  for (const t of TABLES) {
    const m = s[t] as Map<string, AnyEntry>;
    if (m.size) (d as Record<string, unknown>)[t] = { upsert: [...m.values()], remove: [] };
  }
  return d;
}

export type { EntryByTable };
