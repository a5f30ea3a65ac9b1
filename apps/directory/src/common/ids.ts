import { randomBytes } from 'node:crypto';

/**
 * UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit counter that
 * orders the ids made in one millisecond (seeded at random each millisecond,
 * the RFC's "fixed-length dedicated counter" method), then 62 random bits.
 * The directory names new objects with them: ids made one after the other
 * sort one after the other, so a primary key index takes each new row at its
 * right edge instead of at a random leaf (fewer pages touched and split per
 * insert), and listing by id lists in creation order. The timestamp is no
 * secret: every object shows its createdAt anyway.
 */
let pool = Buffer.alloc(0);
let at = 0;
let lastMs = 0;
let counter = 0;
const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** `n` random bytes from a pool refilled 4 KiB at a time (one CSPRNG call per ~500 ids) */
function take(n: number): number {
  if (at + n > pool.length) {
    pool = randomBytes(4096);
    at = 0;
  }
  const i = at;
  at += n;
  return i;
}

export function uuidv7(now = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    const r = take(2);
    counter = ((pool[r] << 8) | pool[r + 1]) & 0x7ff; // below half the range: room to count up
  } else if (++counter > 0xfff) {
    // 2,048+ ids in one millisecond (or the clock went back): borrow the next millisecond
    lastMs++;
    counter = 0;
  }
  const ms = lastMs;
  const hi = Math.floor(ms / 0x1000000); // top 24 bits of the 48
  const lo = ms % 0x1000000; // low 24 bits
  const b = take(8);
  const p = pool;
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
