/**
 * NLRI codecs: unicast prefixes (RFC 4271 §4.3, RFC 4760 §5), route
 * distinguishers (RFC 4364 §4.2) and EVPN routes (RFC 7432 §7, RFC 9136 §3).
 */
import { BgpError, ErrorCode, UpdateSubcode } from './errors.js';
import {
  copyBytes,
  flatString,
  ipv4PrefixText,
  ipv4ToNumber,
  readHexColon,
  readIpv4,
  readIpv6,
  readMac,
  writeHexColon,
  writeIpv4,
  writeIpv6,
  writeMac,
} from './ip.js';
import type { EvpnRoute, Prefix, RouteDistinguisher } from './types.js';

function nlriError(msg: string): BgpError {
  // RFC 7606 §5.3: an NLRI that cannot be parsed resets the session.
  return new BgpError(ErrorCode.Update, UpdateSubcode.MalformedAttributeList, msg);
}

// ---------------------------------------------------------------- RD / RT text

/**
 * Reads an 8-byte RD, or the 6-byte value of a route-target/route-origin
 * extended community when `typeByte` is given separately.
 */
export function readRdValue(type: number, b: Uint8Array, off: number): RouteDistinguisher {
  switch (type) {
    case 0: {
      const admin = (b[off] << 8) | b[off + 1];
      const assigned = ((b[off + 2] << 24) | (b[off + 3] << 16) | (b[off + 4] << 8) | b[off + 5]) >>> 0;
      return `${admin}:${assigned}`;
    }
    case 1:
      return `${readIpv4(b, off)}:${(b[off + 4] << 8) | b[off + 5]}`;
    case 2: {
      const admin = ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
      const assigned = (b[off + 4] << 8) | b[off + 5];
      return admin > 0xffff ? `${admin}:${assigned}` : `${admin}L:${assigned}`;
    }
    default:
      throw nlriError(`route distinguisher of unknown type ${type}`);
  }
}

/** Parses `A:N` text into its type and writes the 6-byte value; returns the type. */
export function writeRdValue(b: Uint8Array, off: number, text: string): number {
  const colon = text.lastIndexOf(':');
  const admin = text.slice(0, colon);
  const assignedText = text.slice(colon + 1);
  if (colon <= 0 || !/^\d+$/.test(assignedText)) throw new Error(`not a route distinguisher: ${text}`);
  const assigned = Number(assignedText);
  if (admin.includes('.')) {
    if (assigned > 0xffff) throw new Error(`assigned number too large in ${text}`);
    writeIpv4(b, off, admin);
    b[off + 4] = assigned >>> 8;
    b[off + 5] = assigned & 255;
    return 1;
  }
  const forced4 = admin.endsWith('L');
  const asText = forced4 ? admin.slice(0, -1) : admin;
  if (!/^\d+$/.test(asText)) throw new Error(`not a route distinguisher: ${text}`);
  const as = Number(asText);
  if (as > 0xffffffff) throw new Error(`AS too large in ${text}`);
  if (forced4 || as > 0xffff) {
    if (assigned > 0xffff) throw new Error(`assigned number too large in ${text}`);
    b[off] = as >>> 24;
    b[off + 1] = (as >>> 16) & 255;
    b[off + 2] = (as >>> 8) & 255;
    b[off + 3] = as & 255;
    b[off + 4] = assigned >>> 8;
    b[off + 5] = assigned & 255;
    return 2;
  }
  if (assigned > 0xffffffff) throw new Error(`assigned number too large in ${text}`);
  b[off] = as >>> 8;
  b[off + 1] = as & 255;
  b[off + 2] = assigned >>> 24;
  b[off + 3] = (assigned >>> 16) & 255;
  b[off + 4] = (assigned >>> 8) & 255;
  b[off + 5] = assigned & 255;
  return 0;
}

export function readRd(b: Uint8Array, off: number): RouteDistinguisher {
  const type = (b[off] << 8) | b[off + 1];
  return readRdValue(type, b, off + 2);
}
export function writeRd(b: Uint8Array, off: number, rd: string): number {
  const type = writeRdValue(b, off + 2, rd);
  b[off] = 0;
  b[off + 1] = type;
  return off + 8;
}
/** Validates and canonicalises an RD / RT text. */
export function canonicalRd(rd: string): RouteDistinguisher {
  const b = new Uint8Array(8);
  writeRd(b, 0, rd);
  return readRd(b, 0);
}

// ---------------------------------------------------------------- unicast prefixes

export function prefixFamilyIsV6(p: string): boolean {
  return p.includes(':');
}

/** Bytes a prefix takes in NLRI encoding: 1 length byte + ceil(len/8). */
export function prefixSize(p: Prefix): number {
  const slash = p.indexOf('/');
  const len = Number(p.slice(slash + 1));
  return 1 + ((len + 7) >> 3);
}

const scratch16 = new Uint8Array(16);

export function writePrefix(b: Uint8Array, off: number, p: Prefix, v6: boolean): number {
  const slash = p.indexOf('/');
  if (slash < 0) throw new Error(`not a prefix: ${p}`);
  const len = Number(p.slice(slash + 1));
  const max = v6 ? 128 : 32;
  if (!Number.isInteger(len) || len < 0 || len > max) throw new Error(`bad prefix length in ${p}`);
  const addr = p.slice(0, slash);
  const n = (len + 7) >> 3;
  b[off] = len;
  if (v6) {
    writeIpv6(scratch16, 0, addr);
    for (let i = 0; i < n; i++) b[off + 1 + i] = scratch16[i];
  } else {
    const v = ipv4ToNumber(addr);
    for (let i = 0; i < n; i++) b[off + 1 + i] = (v >>> (24 - 8 * i)) & 255;
  }
  return off + 1 + n;
}

/** Reads a list of prefixes filling exactly [off, end). */
export function readPrefixes(b: Uint8Array, off: number, end: number, v6: boolean, out: Prefix[] = []): Prefix[] {
  const max = v6 ? 128 : 32;
  while (off < end) {
    const len = b[off];
    const n = (len + 7) >> 3;
    if (len > max || off + 1 + n > end) {
      throw new BgpError(ErrorCode.Update, UpdateSubcode.InvalidNetworkField, `bad prefix length ${len} at ${off}`);
    }
    if (v6) {
      scratch16.fill(0);
      for (let i = 0; i < n; i++) scratch16[i] = b[off + 1 + i];
      out.push(flatString(`${readIpv6(scratch16, 0)}/${len}`));
    } else {
      const a = n > 0 ? b[off + 1] : 0;
      const c = n > 1 ? b[off + 2] : 0;
      const d = n > 2 ? b[off + 3] : 0;
      const e = n > 3 ? b[off + 4] : 0;
      out.push(ipv4PrefixText(a, c, d, e, len));
    }
    off += 1 + n;
  }
  return out;
}

// ---------------------------------------------------------------- EVPN

function ipSize(ip: string): number {
  return ip.includes(':') ? 16 : 4;
}
function writeIp(b: Uint8Array, off: number, ip: string): number {
  return ip.includes(':') ? writeIpv6(b, off, ip) : writeIpv4(b, off, ip);
}
function readIpBits(b: Uint8Array, off: number, bits: number): string {
  if (bits === 32) return readIpv4(b, off);
  if (bits === 128) return readIpv6(b, off);
  throw nlriError(`bad IP length ${bits} in EVPN route`);
}
function write24(b: Uint8Array, off: number, v: number): number {
  b[off] = (v >>> 16) & 255;
  b[off + 1] = (v >>> 8) & 255;
  b[off + 2] = v & 255;
  return off + 3;
}
function read24(b: Uint8Array, off: number): number {
  return (b[off] << 16) | (b[off + 1] << 8) | b[off + 2];
}
function write32(b: Uint8Array, off: number, v: number): number {
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 255;
  b[off + 2] = (v >>> 8) & 255;
  b[off + 3] = v & 255;
  return off + 4;
}
function read32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}
export function readEsi(b: Uint8Array, off: number): string {
  return readHexColon(b, off, 10);
}
export function writeEsi(b: Uint8Array, off: number, esi: string): number {
  return writeHexColon(b, off, esi, 10, 'ESI');
}

/** Length of the route body (without the type and length bytes). */
export function evpnBodySize(r: EvpnRoute): number {
  switch (r.routeType) {
    case 1:
      return 25;
    case 2:
      return 30 + (r.ip === undefined ? 0 : ipSize(r.ip)) + 3 * r.labels.length;
    case 3:
      return 13 + ipSize(r.originatorIp);
    case 4:
      return 19 + ipSize(r.originatorIp);
    case 5: {
      const v6 = r.prefix.includes(':');
      return 23 + (v6 ? 32 : 8) + 3;
    }
    case 'unknown':
      return r.value.length;
    default: {
      const never: never = r;
      throw new Error(`unknown EVPN route ${String(never)}`);
    }
  }
}

export function evpnSize(r: EvpnRoute): number {
  return 2 + evpnBodySize(r);
}

export function writeEvpn(b: Uint8Array, off: number, r: EvpnRoute): number {
  const len = evpnBodySize(r);
  if (len > 255) throw new Error('EVPN route too long');
  b[off] = r.routeType === 'unknown' ? r.type : r.routeType;
  b[off + 1] = len;
  let o = off + 2;
  switch (r.routeType) {
    case 1:
      o = writeRd(b, o, r.rd);
      o = writeEsi(b, o, r.esi);
      o = write32(b, o, r.ethernetTag);
      o = write24(b, o, r.label);
      break;
    case 2:
      o = writeRd(b, o, r.rd);
      o = writeEsi(b, o, r.esi);
      o = write32(b, o, r.ethernetTag);
      b[o++] = 48;
      o = writeMac(b, o, r.mac);
      if (r.ip === undefined) b[o++] = 0;
      else {
        b[o++] = ipSize(r.ip) * 8;
        o = writeIp(b, o, r.ip);
      }
      for (const l of r.labels) o = write24(b, o, l);
      break;
    case 3:
      o = writeRd(b, o, r.rd);
      o = write32(b, o, r.ethernetTag);
      b[o++] = ipSize(r.originatorIp) * 8;
      o = writeIp(b, o, r.originatorIp);
      break;
    case 4:
      o = writeRd(b, o, r.rd);
      o = writeEsi(b, o, r.esi);
      b[o++] = ipSize(r.originatorIp) * 8;
      o = writeIp(b, o, r.originatorIp);
      break;
    case 5: {
      const slash = r.prefix.indexOf('/');
      const addr = r.prefix.slice(0, slash);
      const plen = Number(r.prefix.slice(slash + 1));
      const v6 = addr.includes(':');
      if (!Number.isInteger(plen) || plen < 0 || plen > (v6 ? 128 : 32)) throw new Error(`bad prefix ${r.prefix}`);
      if (r.gateway.includes(':') !== v6) throw new Error('EVPN type-5 gateway and prefix of different families');
      o = writeRd(b, o, r.rd);
      o = writeEsi(b, o, r.esi);
      o = write32(b, o, r.ethernetTag);
      b[o++] = plen;
      o = writeIp(b, o, addr);
      o = writeIp(b, o, r.gateway);
      o = write24(b, o, r.label);
      break;
    }
    case 'unknown':
      b.set(r.value, o);
      o += r.value.length;
      break;
    default: {
      const never: never = r;
      throw new Error(`unknown EVPN route ${String(never)}`);
    }
  }
  return o;
}

/** Reads EVPN routes filling exactly [off, end). */
export function readEvpnRoutes(b: Uint8Array, off: number, end: number, out: EvpnRoute[] = []): EvpnRoute[] {
  while (off < end) {
    if (off + 2 > end) throw nlriError('truncated EVPN route header');
    const type = b[off];
    const len = b[off + 1];
    const o = off + 2;
    const e = o + len;
    if (e > end) throw nlriError(`EVPN route of length ${len} overruns the attribute`);
    out.push(readEvpnBody(type, b, o, len));
    off = e;
  }
  return out;
}

function readEvpnBody(type: number, b: Uint8Array, o: number, len: number): EvpnRoute {
  const bad = () => nlriError(`EVPN route type ${type} with bad length ${len}`);
  switch (type) {
    case 1:
      if (len !== 25) throw bad();
      return { routeType: 1, rd: readRd(b, o), esi: readEsi(b, o + 8), ethernetTag: read32(b, o + 18), label: read24(b, o + 22) };
    case 2: {
      if (len < 33) throw bad();
      if (b[o + 22] !== 48) throw nlriError(`EVPN MAC length ${b[o + 22]} is not 48`);
      const ipBits = b[o + 29];
      const ipBytes = ipBits / 8;
      if (ipBits !== 0 && ipBits !== 32 && ipBits !== 128) throw bad();
      const rest = len - 30 - ipBytes;
      if (rest !== 3 && rest !== 6) throw bad();
      const route: EvpnRoute = {
        routeType: 2,
        rd: readRd(b, o),
        esi: readEsi(b, o + 8),
        ethernetTag: read32(b, o + 18),
        mac: readMac(b, o + 23),
        labels: [0],
      };
      if (ipBits !== 0) route.ip = readIpBits(b, o + 30, ipBits);
      const lo = o + 30 + ipBytes;
      route.labels = rest === 3 ? [read24(b, lo)] : [read24(b, lo), read24(b, lo + 3)];
      return route;
    }
    case 3: {
      if (len !== 17 && len !== 29) throw bad();
      const bits = b[o + 12];
      if (bits / 8 !== len - 13) throw bad();
      return { routeType: 3, rd: readRd(b, o), ethernetTag: read32(b, o + 8), originatorIp: readIpBits(b, o + 13, bits) };
    }
    case 4: {
      if (len !== 23 && len !== 35) throw bad();
      const bits = b[o + 18];
      if (bits / 8 !== len - 19) throw bad();
      return { routeType: 4, rd: readRd(b, o), esi: readEsi(b, o + 8), originatorIp: readIpBits(b, o + 19, bits) };
    }
    case 5: {
      if (len !== 34 && len !== 58) throw bad();
      const v6 = len === 58;
      const plen = b[o + 22];
      if (plen > (v6 ? 128 : 32)) throw bad();
      const addr = v6 ? readIpv6(b, o + 23) : readIpv4(b, o + 23);
      const gw = v6 ? readIpv6(b, o + 39) : readIpv4(b, o + 27);
      return {
        routeType: 5,
        rd: readRd(b, o),
        esi: readEsi(b, o + 8),
        ethernetTag: read32(b, o + 18),
        prefix: `${addr}/${plen}`,
        gateway: gw,
        label: read24(b, v6 ? o + 55 : o + 31),
      };
    }
    default:
      return { routeType: 'unknown', type, value: copyBytes(b, o, o + len) };
  }
}

/**
 * The route key: the fields that identify a route for BGP route key
 * processing (RFC 7432 §7.1-7.4, RFC 9136 §3.1). Labels, and the ESI of
 * type-2 and type-5, are route data, not key.
 */
export function evpnKey(r: EvpnRoute): string {
  return flatString(evpnKeyText(r));
}
function evpnKeyText(r: EvpnRoute): string {
  switch (r.routeType) {
    case 1:
      return `1|${r.rd}|${r.esi}|${r.ethernetTag}`;
    case 2:
      return `2|${r.rd}|${r.ethernetTag}|${r.mac}|${r.ip ?? ''}`;
    case 3:
      return `3|${r.rd}|${r.ethernetTag}|${r.originatorIp}`;
    case 4:
      return `4|${r.rd}|${r.esi}|${r.originatorIp}`;
    case 5:
      return `5|${r.rd}|${r.ethernetTag}|${r.prefix}`;
    case 'unknown': {
      let h = '';
      for (const x of r.value) h += x.toString(16).padStart(2, '0');
      return `u${r.type}|${h}`;
    }
    default: {
      const never: never = r;
      throw new Error(`unknown EVPN route ${String(never)}`);
    }
  }
}
