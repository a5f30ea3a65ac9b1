/**
 * Textual forms of addresses and identifiers used by the codec, and their
 * byte forms. Parsers throw a plain Error (bad input from our own API);
 * decoders never call them on wire data without a bounds check first.
 */

/** Dotted-quad IPv4 address, canonical (no leading zeros). */
export type Ipv4Address = string & { readonly __brand?: 'Ipv4Address' };
/** RFC 5952 canonical IPv6 address. */
export type Ipv6Address = string & { readonly __brand?: 'Ipv6Address' };
export type IpAddress = Ipv4Address | Ipv6Address;

export function ipv4ToNumber(s: string): number {
  const parts = s.split('.');
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${s}`);
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) throw new Error(`not an IPv4 address: ${s}`);
    const v = Number(p);
    if (v > 255) throw new Error(`not an IPv4 address: ${s}`);
    n = n * 256 + v;
  }
  return n;
}

export function numberToIpv4(n: number): Ipv4Address {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function readIpv4(b: Uint8Array, off: number): Ipv4Address {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

export function writeIpv4(b: Uint8Array, off: number, s: string): number {
  const n = ipv4ToNumber(s);
  b[off] = n >>> 24;
  b[off + 1] = (n >>> 16) & 255;
  b[off + 2] = (n >>> 8) & 255;
  b[off + 3] = n & 255;
  return off + 4;
}

export function isIpv4(s: string): boolean {
  try {
    ipv4ToNumber(s);
    return true;
  } catch {
    return false;
  }
}

/** Parses an IPv6 address (with optional embedded IPv4 tail) into 16 bytes. */
export function ipv6ToBytes(s: string, out: Uint8Array = new Uint8Array(16), off = 0): Uint8Array {
  const bad = () => new Error(`not an IPv6 address: ${s}`);
  let text = s;
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.indexOf('.', lastColon) > 0) {
    // Embedded IPv4 tail (RFC 4291 §2.2 form 3): rewrite as two hex groups.
    const v4 = ipv4ToNumber(text.slice(lastColon + 1));
    text = `${text.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const dbl = text.indexOf('::');
  if (dbl !== text.lastIndexOf('::')) throw bad();
  const parseGroups = (t: string): number[] => {
    if (t === '') return [];
    return t.split(':').map((g) => {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw bad();
      return parseInt(g, 16);
    });
  };
  let groups: number[];
  if (dbl >= 0) {
    const head = parseGroups(text.slice(0, dbl));
    const rest = parseGroups(text.slice(dbl + 2));
    const fill = 8 - head.length - rest.length;
    if (fill < 1) throw bad();
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    groups = parseGroups(text);
  }
  if (groups.length !== 8) throw bad();
  for (let i = 0; i < 8; i++) {
    out[off + 2 * i] = groups[i] >>> 8;
    out[off + 2 * i + 1] = groups[i] & 255;
  }
  return out;
}

/** RFC 5952 §4 canonical text: lower case, longest zero run (>1 group) compressed. */
export function readIpv6(b: Uint8Array, off: number): Ipv6Address {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[off + 2 * i] << 8) | b[off + 2 * i + 1]);
  // RFC 5952 §5: IPv4-mapped addresses keep the dotted tail.
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

export function writeIpv6(b: Uint8Array, off: number, s: string): number {
  ipv6ToBytes(s, b, off);
  return off + 16;
}

export function canonicalIpv6(s: string): Ipv6Address {
  return readIpv6(ipv6ToBytes(s), 0);
}

export function isIpv6(s: string): boolean {
  try {
    ipv6ToBytes(s);
    return true;
  } catch {
    return false;
  }
}

/** Lower-case colon-separated MAC, e.g. aa:bb:cc:00:11:22. */
export type MacAddress = string & { readonly __brand?: 'MacAddress' };

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function readHexColon(b: Uint8Array, off: number, len: number): string {
  let s = HEX[b[off]];
  for (let i = 1; i < len; i++) s += ':' + HEX[b[off + i]];
  return s;
}

export function writeHexColon(b: Uint8Array, off: number, s: string, len: number, what: string): number {
  const parts = s.split(/[:-]/);
  if (parts.length !== len || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new Error(`not a ${what}: ${s}`);
  }
  for (let i = 0; i < len; i++) b[off + i] = parseInt(parts[i], 16);
  return off + len;
}

export function readMac(b: Uint8Array, off: number): MacAddress {
  return readHexColon(b, off, 6);
}
export function writeMac(b: Uint8Array, off: number, s: string): number {
  return writeHexColon(b, off, s, 6, 'MAC address');
}
export function canonicalMac(s: string): MacAddress {
  const b = new Uint8Array(6);
  writeMac(b, 0, s);
  return readMac(b, 0);
}

export function toHex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += HEX[b[i]];
  return s;
}
export function fromHex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) throw new Error(`not hex: ${s}`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A copy of bytes [start, end) as a plain Uint8Array (never a view into a socket buffer). */
export function copyBytes(b: Uint8Array, start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start);
  out.set(b.subarray(start, end));
  return out;
}

// ---------------------------------------------------------------- flat strings
//
// Strings built by concatenation are V8 cons-string trees that keep every
// piece alive; RIB keys live long, so they are made flat (one object) here.

let flatScratch = Buffer.alloc(256);
const DECIMAL = Array.from({ length: 256 }, (_, i) => Buffer.from(String(i), 'latin1'));

/** A flat copy of an ASCII string. */
export function flatString(s: string): string {
  if (s.length > flatScratch.length) flatScratch = Buffer.alloc(s.length * 2);
  const n = flatScratch.write(s, 0, 'latin1');
  return flatScratch.toString('latin1', 0, n);
}

/** `a.b.c.d/len` as a flat string, from the bytes of an IPv4 prefix. */
export function ipv4PrefixText(a: number, b: number, c: number, d: number, len: number): string {
  const out = flatScratch;
  let o = 0;
  for (const x of [a, b, c, d]) {
    const t = DECIMAL[x];
    for (let i = 0; i < t.length; i++) out[o++] = t[i];
    out[o++] = 46; // '.'
  }
  out[o - 1] = 47; // '/'
  const t = DECIMAL[len];
  for (let i = 0; i < t.length; i++) out[o++] = t[i];
  return out.toString('latin1', 0, o);
}
