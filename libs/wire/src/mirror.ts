/**
 * What an agent holds: the state of its last applied version, with a running
 * digest. The simulator uses it as is; the real agent can use it as its
 * desired state and diff it against the kernel.
 */
import { applyDelta, emptyHostState, StateDigest, type HostDelta, type HostState } from '#sdn/compiler';
import { BodyHashes, hashFrameBody, type StateFrame } from './messages';

export type ApplyResult = { ok: true } | { ok: false; reason: string };

/** The nack reasons of both holders: a snapshot or the state after a delta whose digest is not the one announced. */
const snapshotRefused = (got: string, announced: string): ApplyResult => ({ ok: false, reason: `snapshot digest ${got} != announced ${announced}` });
const deltaRefused = (got: string, version: number, announced: string): ApplyResult => ({
  ok: false,
  reason: `state digest ${got} after version ${version} != announced ${announced}`,
});

export class StateMirror {
  state: HostState = emptyHostState();
  digest = new StateDigest(false);
  version = 0;
  epoch = '';
  revision = 0;

  /** Replaces the state; fails when the content does not match the announced digest. */
  applySnapshot(m: { epoch: string; version: number; revision: number; digest: string; state: HostState }): ApplyResult {
    const d = StateDigest.of(m.state, false);
    if (d.value() !== m.digest) return snapshotRefused(d.value(), m.digest);
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
    if (got !== m.digest) return deltaRefused(got, m.version, m.digest);
    this.version = m.version;
    this.epoch = m.epoch;
    this.revision = m.revision;
    return { ok: true };
  }
}

/**
 * What a verifying holder keeps when it does not need the entries: per key,
 * the entry's hash, and the running digest. Snapshots and deltas are checked
 * exactly as StateMirror checks them (the digest covers every field of every
 * entry), in a fraction of the memory and time. The scale benchmark's
 * simulated agents use it: their 200 hosts stand for 200 machines, and
 * keeping 1.7M decoded entries on this one cost a third of the run's page
 * faults and most of the agents' old-generation garbage collection.
 *
 * Keys are held as 64-bit hashes (seeded by table) in one open-addressing
 * table of 32-bit words, not as strings in Maps: V8 interns a fresh string
 * used as a Map key, and for keys that arrive in every frame that lookup in
 * the process-wide string table, with the Map's own, was a fifth of an
 * agent's CPU. Two keys of one host with the same 64-bit hash would be taken
 * for one (about 10^-12 for a host's ~10^4 keys): the same bet the digest
 * itself makes, which is a sum of 64-bit hashes.
 */
export class DigestMirror {
  /** the table's smallest size (slots; a power of two) */
  private readonly minSlots: number;
  /** 4 words per slot: key hash (2 lanes; 0,0 = empty), entry hash (2 lanes); linear probing, at most half full */
  private slots: Uint32Array;
  private mask: number;
  private count = 0;
  /** the running digest of what is held (the entry hashes' lane sums) */
  digest = new StateDigest(false);
  version = 0;
  epoch = '';
  revision = 0;

  /**
   * `expectedEntries`: how many entries the holder expects to hold at most.
   * The table starts that large instead of doubling its way there: each
   * doubling re-places every key held, at scattered addresses (for the scale
   * benchmark's agents, about a third of their frame reading).
   */
  constructor(expectedEntries = 0) {
    const n = slotsFor(MIN_SLOTS, expectedEntries);
    this.minSlots = n;
    this.slots = new Uint32Array(4 * n);
    this.mask = n - 1;
  }

  /** entries held */
  get size(): number {
    return this.count;
  }

  /**
   * Applies a snapshot or delta frame (decodeStateFrame), reading its body
   * straight into hashes. A malformed body is a WireError thrown before
   * anything changes. A snapshot whose content does not match its digest is
   * refused and what was held stays; after a delta whose result does not
   * match, what is held is no longer trustworthy (nack, and a snapshot follows).
   */
  applyFrame(f: StateFrame): ApplyResult {
    const h = BODY;
    hashFrameBody(f, h);
    const u = h.upserts;
    if (f.type === 'snapshot') {
      const before = { slots: this.slots, mask: this.mask, count: this.count, digest: this.digest };
      const n = slotsFor(this.minSlots, h.upsertCount);
      this.slots = new Uint32Array(4 * n);
      this.mask = n - 1;
      this.count = 0;
      this.digest = new StateDigest(false);
      for (let o = 0; o < 4 * h.upsertCount; o += 4) this.put(u[o], u[o + 1], u[o + 2], u[o + 3]);
      const got = this.digest.value();
      if (got !== f.digest) {
        Object.assign(this, before);
        return snapshotRefused(got, f.digest);
      }
    } else {
      // removals first: a key removed and upserted by one delta ends upserted (keys of different tables never meet: seeded by table)
      const x = h.removals;
      for (let o = 0; o < 2 * h.removalCount; o += 2) this.drop(x[o], x[o + 1]);
      for (let o = 0; o < 4 * h.upsertCount; o += 4) this.put(u[o], u[o + 1], u[o + 2], u[o + 3]);
      const got = this.digest.value();
      if (got !== f.digest) return deltaRefused(got, f.version, f.digest);
    }
    this.version = f.version;
    this.epoch = f.epoch;
    this.revision = f.revision;
    return { ok: true };
  }

  /** The slot holding the key hash (ka, kb), or the empty slot where it would go (linear probing from its home). */
  private slotOf(ka: number, kb: number): number {
    const slots = this.slots;
    const mask = this.mask;
    for (let s = ka & mask; ; s = (s + 1) & mask) {
      const o = s << 2;
      const x = slots[o];
      const y = slots[o + 1];
      if ((x === ka && y === kb) || (x === 0 && y === 0)) return s;
    }
  }

  private isEmpty(s: number): boolean {
    return this.slots[s << 2] === 0 && this.slots[(s << 2) + 1] === 0;
  }

  /** Holds entry hash (ha, hb) under key hash (ka, kb), replacing what the key held. */
  private put(ka: number, kb: number, ha: number, hb: number): void {
    // (0,0) marks an empty slot
    if (ka === 0 && kb === 0) kb = 1;
    let s = this.slotOf(ka, kb);
    if (!this.isEmpty(s)) this.subtract(s);
    else {
      if (2 * (this.count + 1) > this.mask + 1) {
        this.grow();
        s = this.slotOf(ka, kb);
      }
      this.slots[s << 2] = ka;
      this.slots[(s << 2) + 1] = kb;
      this.count++;
    }
    const o = s << 2;
    this.slots[o + 2] = ha;
    this.slots[o + 3] = hb;
    this.digest.addLanes(ha, hb);
  }

  private drop(ka: number, kb: number): void {
    if (ka === 0 && kb === 0) kb = 1;
    const s = this.slotOf(ka, kb);
    if (this.isEmpty(s)) return;
    this.subtract(s);
    this.count--;
    // backward-shift deletion: every later slot of the run that may sit in the hole moves into it, so no probe sequence breaks
    const slots = this.slots;
    const mask = this.mask;
    let hole = s;
    for (let j = (s + 1) & mask; !this.isEmpty(j); j = (j + 1) & mask) {
      const o = j << 2;
      const home = slots[o] & mask;
      // the entry at j may move into the hole unless its home lies cyclically in (hole, j]
      const between = hole < j ? home > hole && home <= j : home > hole || home <= j;
      if (!between) {
        slots.copyWithin(hole << 2, o, o + 4);
        hole = j;
      }
    }
    slots.fill(0, hole << 2, (hole << 2) + 4);
  }

  private subtract(s: number): void {
    this.digest.removeLanes(this.slots[(s << 2) + 2], this.slots[(s << 2) + 3]);
  }

  /** Twice the slots; every held key re-placed from its hash. */
  private grow(): void {
    const old = this.slots;
    const n = 2 * (this.mask + 1);
    this.slots = new Uint32Array(4 * n);
    this.mask = n - 1;
    const slots = this.slots;
    for (let o = 0; o < old.length; o += 4) {
      if (old[o] === 0 && old[o + 1] === 0) continue;
      const to = this.slotOf(old[o], old[o + 1]) << 2;
      slots[to] = old[o];
      slots[to + 1] = old[o + 1];
      slots[to + 2] = old[o + 2];
      slots[to + 3] = old[o + 3];
    }
  }
}

/** a DigestMirror's smallest table (slots; a power of two) */
const MIN_SLOTS = 1024;

/** The smallest power-of-two table of at least `min` slots that holds `entries` at most half full. */
function slotsFor(min: number, entries: number): number {
  let n = min;
  while (n < 2 * entries) n *= 2;
  return n;
}
/** the hashes of the frame being applied (one at a time: applyFrame is synchronous) */
const BODY = new BodyHashes();
