/**
 * Address arithmetic on bigint, for IPv4 and IPv6 alike. Pure functions; the
 * parsers return null on bad input so callers can say what was wrong.
 */

export interface Cidr {
  version: 4 | 6;
  /** network address (host bits zero) */
  network: bigint;
  prefixLength: number;
}

const V4_BITS = 32;
const V6_BITS = 128;

export function bitsOf(version: 4 | 6): number {
  return version === 4 ? V4_BITS : V6_BITS;
}

export function parseIpv4(text: string): bigint | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let value = 0n;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return null;
    const n = Number(part);
    if (n > 255) return null;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

export function parseIpv6(text: string): bigint | null {
  if (text.length === 0 || text.length > 45) return null;
  let head = text;
  let tailV4: bigint | null = null;
  // embedded IPv4 in the last 32 bits (::ffff:1.2.3.4)
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.indexOf('.', lastColon) > 0) {
    tailV4 = parseIpv4(text.slice(lastColon + 1));
    if (tailV4 === null) return null;
    head = text.slice(0, lastColon + 1) + '0:0';
  }
  const doubleColon = head.indexOf('::');
  if (doubleColon !== head.lastIndexOf('::')) return null;
  let groups: string[];
  if (doubleColon >= 0) {
    const left = head.slice(0, doubleColon);
    const right = head.slice(doubleColon + 2);
    const l = left === '' ? [] : left.split(':');
    const r = right === '' ? [] : right.split(':');
    const missing = 8 - l.length - r.length;
    if (missing < 1) return null;
    groups = [...l, ...Array<string>(missing).fill('0'), ...r];
  } else {
    groups = head.split(':');
  }
  if (groups.length !== 8) return null;
  let value = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    value = (value << 16n) | BigInt(parseInt(g, 16));
  }
  if (tailV4 !== null) value = (value & ~0xffffffffn) | tailV4;
  return value;
}

export function parseIp(text: string): { version: 4 | 6; value: bigint } | null {
  if (text.includes(':')) {
    const v = parseIpv6(text);
    return v === null ? null : { version: 6, value: v };
  }
  const v = parseIpv4(text);
  return v === null ? null : { version: 4, value: v };
}

export function formatIp(version: 4 | 6, value: bigint): string {
  if (version === 4) {
    return [24n, 16n, 8n, 0n].map((s) => ((value >> s) & 0xffn).toString()).join('.');
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (>= 2) of zero groups, leftmost on ties
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}

/** Canonical text of an address (lower-case, RFC 5952 for IPv6), or null. */
export function canonicalIp(text: string): string | null {
  const p = parseIp(text);
  return p === null ? null : formatIp(p.version, p.value);
}

export type CidrParse = { ok: true; cidr: Cidr } | { ok: false; reason: string };

/**
 * Parses "a.b.c.d/len" or "v6/len". Host bits must be zero: "10.0.0.1/24"
 * is refused (an operator typing that almost always meant something else).
 */
export function parseCidr(text: string): CidrParse {
  const slash = text.indexOf('/');
  if (slash < 0) return { ok: false, reason: 'missing /prefix-length' };
  const addr = parseIp(text.slice(0, slash));
  if (addr === null) return { ok: false, reason: 'not an IPv4 or IPv6 address' };
  const lenText = text.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(lenText)) return { ok: false, reason: 'prefix length is not a number' };
  const prefixLength = Number(lenText);
  const bits = bitsOf(addr.version);
  if (prefixLength > bits) return { ok: false, reason: `prefix length exceeds ${bits}` };
  const hostMask = (1n << BigInt(bits - prefixLength)) - 1n;
  if ((addr.value & hostMask) !== 0n) {
    const net = formatIp(addr.version, addr.value & ~hostMask);
    return { ok: false, reason: `host bits are set (did you mean ${net}/${prefixLength}?)` };
  }
  return { ok: true, cidr: { version: addr.version, network: addr.value, prefixLength } };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.version, c.network)}/${c.prefixLength}`;
}

export function lastAddress(c: Cidr): bigint {
  return c.network | ((1n << BigInt(bitsOf(c.version) - c.prefixLength)) - 1n);
}

export function cidrContains(c: Cidr, version: 4 | 6, value: bigint): boolean {
  return version === c.version && value >= c.network && value <= lastAddress(c);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.version === b.version && a.network <= lastAddress(b) && b.network <= lastAddress(a);
}

/**
 * Addresses an endpoint may never get: for IPv4 the network and broadcast
 * addresses (except in /31 and /32), for IPv6 the subnet-router anycast
 * address (RFC 4291 §2.6.1) of prefixes shorter than /127.
 */
export function usableRange(c: Cidr): { first: bigint; last: bigint } {
  const bits = bitsOf(c.version);
  const last = lastAddress(c);
  if (c.version === 4) {
    if (c.prefixLength >= 31) return { first: c.network, last };
    return { first: c.network + 1n, last: last - 1n };
  }
  if (c.prefixLength >= bits - 1) return { first: c.network, last };
  return { first: c.network + 1n, last };
}

/**
 * Ranges no subnet may overlap: their addresses are not unicast addresses a
 * host can own and route. The kernel refuses some outright (an IPv6
 * multicast or loopback gateway), and a refused address in a host's state
 * fails the agent's whole version, for every tenant on that host.
 * (Network macros may name any prefix: they only fill firewall sets.)
 */
const NOT_FOR_SUBNETS: ReadonlyArray<{ cidr: Cidr; what: string }> = [
  ['0.0.0.0/8', '"this network" (RFC 1122)'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local (RFC 3927: never routed)'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved (RFC 1112), with the broadcast address'],
  ['::/8', 'reserved by the IETF (the unspecified, loopback and IPv4-mapped addresses)'],
  ['fe80::/10', 'link-local (every interface has its own)'],
  ['ff00::/8', 'multicast'],
].map(([text, what]) => ({ cidr: (parseCidr(text) as { ok: true; cidr: Cidr }).cidr, what }));

/** Why no subnet may have this prefix (it overlaps a special-purpose range), or null. */
export function specialPurposeOverlap(c: Cidr): string | null {
  for (const r of NOT_FOR_SUBNETS) if (cidrsOverlap(c, r.cidr)) return `overlaps ${formatCidr(r.cidr)}, ${r.what}`;
  return null;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Accepts aa:bb:cc:dd:ee:ff or aa-bb-..., any case; returns lower-case colon form. */
export function canonicalMac(text: string): string | null {
  const t = text.toLowerCase().replace(/-/g, ':');
  return MAC_RE.test(t) ? t : null;
}

export function isMulticastMac(mac: string): boolean {
  return (parseInt(mac.slice(0, 2), 16) & 1) === 1;
}
