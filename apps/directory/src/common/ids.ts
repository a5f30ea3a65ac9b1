import { randomBytes } from 'node:crypto';

/** Random bytes drawn from the CSPRNG 4 KiB at a time (one call per ~400 ids or ~680 MACs) and handed out a few at a time. */
class RandomPool {
  bytes = Buffer.alloc(0);
  private at = 0;

  /** The offset in `bytes` of `n` fresh random bytes (read `bytes` after this call: it may refill). */
  take(n: number): number {
    if (this.at + n > this.bytes.length) {
      this.bytes = randomBytes(4096);
      this.at = 0;
    }
    const i = this.at;
    this.at += n;
    return i;
  }
}

/** the directory's random bytes for ids and MACs */
export const randomPool = new RandomPool();
/** two lowercase hex digits per byte value */
export const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

let lastMs = 0;
let counter = 0;

/**
 * UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit counter that
 * orders the ids made in one millisecond (seeded at random each millisecond,
 * the RFC's "fixed-length dedicated counter" method), then 62 random bits.
 * The directory names everything it creates with them: ids made one after the
 * other sort one after the other, so a primary key index takes each new row at
 * its right edge instead of at a random leaf (fewer pages touched and split
 * per insert), and listing by id lists in creation order. The timestamp is no
 * secret: every object shows its createdAt anyway.
 */
export function uuidv7(now = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    const r = randomPool.take(2);
    counter = ((randomPool.bytes[r] << 8) | randomPool.bytes[r + 1]) & 0x7ff; // below half the range: room to count up
  } else if (++counter > 0xfff) {
    // 2,048+ ids in one millisecond (or the clock went back): borrow the next millisecond
    lastMs++;
    counter = 0;
  }
  const ms = lastMs;
  const hi = Math.floor(ms / 0x1000000); // top 24 bits of the 48
  const lo = ms % 0x1000000; // low 24 bits
  const b = randomPool.take(8);
  const p = randomPool.bytes;
  return (
    HEX2[(hi >>> 16) & 0xff] +
    HEX2[(hi >>> 8) & 0xff] +
    HEX2[hi & 0xff] +
    HEX2[(lo >>> 16) & 0xff] +
    '-' +
    HEX2[(lo >>> 8) & 0xff] +
    HEX2[lo & 0xff] +
    '-' +
    HEX2[0x70 | (counter >>> 8)] +
    HEX2[counter & 0xff] +
    '-' +
    HEX2[0x80 | (p[b] & 0x3f)] +
    HEX2[p[b + 1]] +
    '-' +
    HEX2[p[b + 2]] +
    HEX2[p[b + 3]] +
    HEX2[p[b + 4]] +
    HEX2[p[b + 5]] +
    HEX2[p[b + 6]] +
    HEX2[p[b + 7]]
  );
}
