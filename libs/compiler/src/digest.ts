/**
 * Canonical fingerprints of entries and an order-independent digest of a
 * HostState. The digest is a sum (mod 2^32, two lanes) of a 64-bit hash of
 * every entry's fingerprint, so it is maintained in O(1) per upsert/remove on
 * both ends; a delta carries the digest its result must have, and the agent
 * rejects a delta whose result differs (it then gets a snapshot).
 */
import { LAYOUT, perTable } from './schema';
import { AnyEntry, EntryByTable, HostState, TABLES, TableName } from './state';

// The two 32-bit lanes of the hash being computed (cyrb53 mixing, both halves
// kept): hashStart, hashFeed, finish. Module state, so that the per-entry hash
// allocates nothing and shares one definition with hash64.
let laneA = 0;
let laneB = 0;

/**
 * A hash is computed in pieces: hashStart(seed), then hashFeed (a string) or
 * hashFeedCodes (character codes, for a reader that holds the text that way:
 * an agent hashing entries straight from the wire) in order, then finish()
 * or hashFinishInto gives hash64(the pieces concatenated, seed).
 */
export function hashStart(seed: number): void {
  laneA = 0xdeadbeef ^ seed;
  laneB = 0x41c6ce57 ^ seed;
}

export function hashFeed(text: string): void {
  let h1 = laneA;
  let h2 = laneB;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  laneA = h1;
  laneB = h2;
}

function finish(): void {
  let h1 = laneA;
  let h2 = laneB;
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  laneA = h1 >>> 0;
  laneB = h2 >>> 0;
}

/** The fingerprint's field separator and its text for null. */
export const FINGERPRINT_SEPARATOR = '\u001f';
export const FINGERPRINT_NULL = '\u0000';

/** Feeds the character codes `codes[from..to)`, as hashFeed does a string's (the same mixing, over an array instead of a string). */
export function hashFeedCodes(codes: Uint16Array, from: number, to: number): void {
  let h1 = laneA;
  let h2 = laneB;
  for (let i = from; i < to; i++) {
    const ch = codes[i];
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  laneA = h1;
  laneB = h2;
}

export function hashFinishInto(out: Uint32Array, at: number): void {
  finish();
  out[at] = laneA;
  out[at + 1] = laneB;
}

/** 64-bit string hash (cyrb53 mixing, both 32-bit halves kept). */
export function hash64(text: string, seed = 0): [number, number] {
  hashStart(seed);
  hashFeed(text);
  finish();
  return [laneA, laneB];
}

/** hash64(text, seed) written into `out[at]` and `out[at + 1]`, without allocating. */
export function hashInto(text: string, seed: number, out: Uint32Array, at: number): void {
  hashStart(seed);
  hashFeed(text);
  hashFinishInto(out, at);
}

/** 12 lower-case hex digits (48 bits) of the hash of a text: for derived names. */
export function shortHash(text: string): string {
  const [a, b] = hash64(text);
  return (a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0')).slice(0, 12);
}

/** A port list's text in a fingerprint: "from-to" ranges joined by commas. */
export function portsText(ps: { from: number; to: number }[]): string {
  return ps.map((p) => `${p.from}-${p.to}`).join(',');
}

/**
 * Canonical text of an entry: its fields in schema order. The definition the
 * digest hashes (hashEntry feeds the same characters without building the
 * text); kept as the reference the tests check hashEntry and sameEntry against.
 */
export function fingerprint<T extends TableName>(table: T, entry: EntryByTable[T]): string {
  const parts: string[] = [table];
  const e = entry as unknown as Record<string, unknown>;
  const { names, types } = LAYOUT[table];
  for (let k = 0; k < names.length; k++) {
    const v = e[names[k]];
    if (types[k].t === 'ports') parts.push(portsText(v as { from: number; to: number }[]));
    else parts.push(v === null ? FINGERPRINT_NULL : String(v));
  }
  return parts.join(FINGERPRINT_SEPARATOR);
}

/** Port lists equal range by range. */
function samePorts(p: { from: number; to: number }[], q: { from: number; to: number }[]): boolean {
  if (p.length !== q.length) return false;
  for (let i = 0; i < p.length; i++) if (p[i].from !== q[i].from || p[i].to !== q[i].to) return false;
  return true;
}

const SAME = perTable(
  (names, types, field) =>
    new Function(
      'samePorts',
      `return function (x, y) {
        let u, v;
        ${names
          .map((n, k) =>
            types[k].t === 'ports'
              ? `if (!samePorts(x${field(n)}, y${field(n)})) return false;`
              : `u = x${field(n)}; v = y${field(n)}; if (u !== v && (u === null || v === null || String(u) !== String(v))) return false;`,
          )
          .join('\n')}
        return true;
      };`,
    )(samePorts) as (a: AnyEntry, b: AnyEntry) => boolean,
);

/** Field-by-field equality in schema terms (what the fingerprints would say, without building them). */
export function sameEntry<T extends TableName>(table: T, a: EntryByTable[T] | undefined, b: EntryByTable[T] | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  return SAME[table](a as AnyEntry, b as AnyEntry);
}

const entryHashes = new WeakMap<object, [number, number]>();

/** A field value that is not a string, fed as the fingerprint writes it. */
function feedOther(v: unknown, isPorts: boolean): void {
  if (v === null) hashFeed(FINGERPRINT_NULL);
  else if (isPorts) hashFeed(portsText(v as { from: number; to: number }[]));
  else hashFeed(String(v));
}

/** Per table: feeds an entry's fields, each after the separator, as the fingerprint lists them. */
const FEED_FIELDS = perTable(
  (names, types, field) =>
    new Function(
      'hashFeed',
      'feedOther',
      'SEPARATOR',
      `return function (e) {
        let v;
        ${names
          .map((n, k) => `hashFeed(SEPARATOR); v = e${field(n)}; if (typeof v === 'string') hashFeed(v); else feedOther(v, ${types[k].t === 'ports'});`)
          .join('\n')}
      };`,
    )(hashFeed, feedOther, FINGERPRINT_SEPARATOR) as (e: AnyEntry) => void,
);

/**
 * hash64(fingerprint(table, entry)) into laneA/laneB, computed by feeding the
 * fingerprint's characters to the hash without building the string, and
 * without allocating: agents hash every entry they receive.
 */
function hashEntry(table: TableName, entry: AnyEntry): void {
  hashStart(0);
  hashFeed(table);
  FEED_FIELDS[table](entry);
  finish();
}

/**
 * hash64(fingerprint(table, entry)) written into `out[at]` and `out[at + 1]`
 * (the two lanes a StateDigest adds up), without allocating: for a holder
 * that keeps each key's hash instead of the entry.
 */
export function entryHashInto(table: TableName, entry: AnyEntry, out: Uint32Array, at: number): void {
  hashEntry(table, entry);
  out[at] = laneA;
  out[at + 1] = laneB;
}

/**
 * hash64(fingerprint(table, entry)) as a new pair, not remembered: for a
 * holder that keeps the hash beside the entry itself (the engine's per-endpoint
 * entries), where a weak-map lookup per use would cost more than the hash.
 */
export function entryHashOf(table: TableName, entry: AnyEntry): [number, number] {
  hashEntry(table, entry);
  return [laneA, laneB];
}

/** hash64(fingerprint(table, entry)), cached per entry object (the controller shares entry objects between hosts). */
export function entryHash(table: TableName, entry: AnyEntry): [number, number] {
  let h = entryHashes.get(entry);
  if (h === undefined) entryHashes.set(entry, (h = entryHashOf(table, entry)));
  return h;
}

/**
 * Order-independent running digest of a set of entries.
 *
 * `cached` (default): entry hashes are remembered per entry object, which
 * pays when one object is added to many digests (the controller's hosts share
 * entries). An agent sees each decoded object once: it hashes without the
 * cache (no weak-map entry per object for the garbage collector to trace).
 */
export class StateDigest {
  /**
   * The two lane sums. A typed array, not two number fields: a sum above 2^30
   * is no small integer, and a field that starts as one and later holds such
   * a sum changes its representation, which deprecates the object's map and
   * kept V8 from optimizing the agents' frame reader (its compilations were
   * aborted over and over). A Uint32Array also wraps the sums by itself.
   */
  private readonly lanes = new Uint32Array(2);

  constructor(private readonly cached = true) {}

  add(table: TableName, entry: AnyEntry): void {
    this.hash(table, entry);
    this.lanes[0] += laneA;
    this.lanes[1] += laneB;
  }

  /** Adds an entry by its hash (entryHashOf or entryHash of it). */
  addHash(h: readonly [number, number]): void {
    this.addLanes(h[0], h[1]);
  }

  /** Adds an entry by the two lanes of its hash (for a holder that keeps hashes in a typed array). */
  addLanes(a: number, b: number): void {
    this.lanes[0] += a;
    this.lanes[1] += b;
  }

  /** Removes an entry by the two lanes of its hash. */
  removeLanes(a: number, b: number): void {
    this.lanes[0] -= a;
    this.lanes[1] -= b;
  }

  remove(table: TableName, entry: AnyEntry): void {
    this.hash(table, entry);
    this.lanes[0] -= laneA;
    this.lanes[1] -= laneB;
  }

  /** The entry's hash into laneA/laneB, from the per-object cache when this digest uses it. */
  private hash(table: TableName, entry: AnyEntry): void {
    if (!this.cached) return hashEntry(table, entry);
    const h = entryHash(table, entry);
    laneA = h[0];
    laneB = h[1];
  }

  /** 16 hex digits */
  value(): string {
    return this.lanes[0].toString(16).padStart(8, '0') + this.lanes[1].toString(16).padStart(8, '0');
  }

  /** A copy (same running value, same caching). */
  clone(): StateDigest {
    const d = new StateDigest(this.cached);
    d.lanes.set(this.lanes);
    return d;
  }

  static of(state: HostState, cached = true): StateDigest {
    const d = new StateDigest(cached);
    for (const t of TABLES) for (const e of state[t].values()) d.add(t, e);
    return d;
  }
}

export function digestOf(state: HostState): string {
  return StateDigest.of(state).value();
}
