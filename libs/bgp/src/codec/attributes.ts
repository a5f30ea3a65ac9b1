/**
 * Path attributes (RFC 4271 §4.3, §5) with revised error handling
 * (RFC 7606). Decoding never throws for an error that RFC 7606 lets the
 * session survive: it records an AttributeIssue instead.
 */
import { BgpError, ErrorCode, UpdateSubcode } from './errors.js';
import type { IpAddress as IpAddressLike } from './ip.js';
import { copyBytes, isIpv4, readIpv4, readIpv6, readMac, toHex, fromHex, writeIpv4, writeIpv6, writeMac } from './ip.js';
import { evpnSize, prefixSize, readEvpnRoutes, readPrefixes, readRdValue, writeEvpn, writePrefix, writeRdValue } from './nlri.js';
import {
  AttrCode,
  AttrFlag,
  familyOf,
  afiSafiOf,
  type Aggregator,
  type AsPathSegment,
  type AsPathSegmentType,
  type AttributeIssue,
  type CodecContext,
  type EvpnRoute,
  type ExtendedCommunity,
  type MpReach,
  type MpUnreach,
  type PathAttributes,
} from './types.js';

const SEGMENT_CODES: Record<AsPathSegmentType, number> = { set: 1, sequence: 2, 'confed-sequence': 3, 'confed-set': 4 };
const SEGMENT_TYPES: Record<number, AsPathSegmentType> = { 1: 'set', 2: 'sequence', 3: 'confed-sequence', 4: 'confed-set' };

export const AS_TRANS = 23456;

/** Thrown inside attribute parsers; converted to an issue or a BgpError by the caller. */
class AttrProblem extends Error {
  constructor(
    readonly subcode: number,
    message: string,
  ) {
    super(message);
  }
}

type Action = 'treat-as-withdraw' | 'attribute-discard' | 'session-reset';

/** RFC 7606 §7: what to do when each attribute is malformed. */
function actionFor(code: number): Action {
  switch (code) {
    case AttrCode.ATOMIC_AGGREGATE:
    case AttrCode.AGGREGATOR:
    case AttrCode.AS4_PATH: // RFC 6793 §6 / RFC 7606 §7.2
    case AttrCode.AS4_AGGREGATOR:
      return 'attribute-discard';
    case AttrCode.MP_REACH_NLRI:
    case AttrCode.MP_UNREACH_NLRI:
      return 'session-reset'; // RFC 7606 §7.11 (we do not do AFI/SAFI disable)
    default:
      return 'treat-as-withdraw';
  }
}

/** Expected Optional/Transitive flag bits for the attributes we know. */
function expectedFlags(code: number): number | undefined {
  switch (code) {
    case AttrCode.ORIGIN:
    case AttrCode.AS_PATH:
    case AttrCode.NEXT_HOP:
    case AttrCode.LOCAL_PREF:
    case AttrCode.ATOMIC_AGGREGATE:
      return AttrFlag.Transitive;
    case AttrCode.MED:
    case AttrCode.ORIGINATOR_ID:
    case AttrCode.CLUSTER_LIST:
    case AttrCode.MP_REACH_NLRI:
    case AttrCode.MP_UNREACH_NLRI:
      return AttrFlag.Optional;
    case AttrCode.AGGREGATOR:
    case AttrCode.COMMUNITIES:
    case AttrCode.EXTENDED_COMMUNITIES:
    case AttrCode.AS4_PATH:
    case AttrCode.AS4_AGGREGATOR:
    case AttrCode.PMSI_TUNNEL:
    case AttrCode.LARGE_COMMUNITY:
      return AttrFlag.Optional | AttrFlag.Transitive;
    default:
      return undefined;
  }
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}
function w32(b: Uint8Array, o: number, v: number): number {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 255;
  b[o + 2] = (v >>> 8) & 255;
  b[o + 3] = v & 255;
  return o + 4;
}

function readAsPath(b: Uint8Array, o: number, end: number, width: 2 | 4): AsPathSegment[] {
  const segs: AsPathSegment[] = [];
  while (o < end) {
    if (o + 2 > end) throw new AttrProblem(UpdateSubcode.MalformedAsPath, 'truncated AS_PATH segment');
    const type = SEGMENT_TYPES[b[o]];
    const count = b[o + 1];
    if (type === undefined) throw new AttrProblem(UpdateSubcode.MalformedAsPath, `AS_PATH segment type ${b[o]}`);
    if (count === 0) throw new AttrProblem(UpdateSubcode.MalformedAsPath, 'empty AS_PATH segment');
    o += 2;
    if (o + count * width > end) throw new AttrProblem(UpdateSubcode.MalformedAsPath, 'AS_PATH segment overruns');
    const asns: number[] = new Array(count);
    for (let i = 0; i < count; i++) {
      asns[i] = width === 4 ? u32(b, o) : (b[o] << 8) | b[o + 1];
      o += width;
    }
    segs.push({ type, asns });
  }
  return segs;
}

function asPathSize(segs: AsPathSegment[], width: number): number {
  let n = 0;
  for (const s of segs) n += 2 + s.asns.length * width;
  return n;
}
function writeAsPath(b: Uint8Array, o: number, segs: AsPathSegment[], width: number): number {
  for (const s of segs) {
    if (s.asns.length === 0 || s.asns.length > 255) throw new Error('AS_PATH segment must hold 1..255 ASNs');
    b[o++] = SEGMENT_CODES[s.type];
    b[o++] = s.asns.length;
    for (const a of s.asns) {
      if (width === 4) o = w32(b, o, a);
      else {
        const v = a > 0xffff ? AS_TRANS : a;
        b[o++] = v >>> 8;
        b[o++] = v & 255;
      }
    }
  }
  return o;
}

function readNextHops(b: Uint8Array, o: number, len: number): IpAddressLike[] {
  switch (len) {
    case 4:
      return [readIpv4(b, o)];
    case 16:
      return [readIpv6(b, o)];
    case 32:
      return [readIpv6(b, o), readIpv6(b, o + 16)];
    default:
      throw new AttrProblem(UpdateSubcode.OptionalAttribute, `MP_REACH_NLRI next hop of length ${len}`);
  }
}
function nextHopsSize(nhs: string[]): number {
  let n = 0;
  for (const h of nhs) n += h.includes(':') ? 16 : 4;
  return n;
}
function writeNextHops(b: Uint8Array, o: number, nhs: string[]): number {
  for (const h of nhs) o = h.includes(':') ? writeIpv6(b, o, h) : writeIpv4(b, o, h);
  return o;
}

function readExtCommunity(b: Uint8Array, o: number): ExtendedCommunity {
  const type = b[o];
  const sub = b[o + 1];
  if (sub === 0x02 && type <= 0x02) return { kind: 'route-target', value: readRdValue(type, b, o + 2) };
  if (sub === 0x03 && type <= 0x02) return { kind: 'route-origin', value: readRdValue(type, b, o + 2) };
  if (type === 0x03 && sub === 0x0c && b[o + 2] === 0 && b[o + 3] === 0 && b[o + 4] === 0 && b[o + 5] === 0) {
    return { kind: 'encapsulation', tunnelType: (b[o + 6] << 8) | b[o + 7] };
  }
  if (type === 0x03 && sub === 0x0d && b[o + 2] === 0 && b[o + 3] === 0 && b[o + 4] === 0 && b[o + 5] === 0 && b[o + 6] === 0 && b[o + 7] === 0) {
    return { kind: 'default-gateway' };
  }
  if (type === 0x06 && sub === 0x03) return { kind: 'router-mac', mac: readMac(b, o + 2) };
  if (type === 0x06 && sub === 0x00 && (b[o + 2] & 0xfe) === 0 && b[o + 3] === 0) {
    return { kind: 'mac-mobility', sticky: (b[o + 2] & 1) === 1, sequence: u32(b, o + 4) };
  }
  if (type === 0x06 && sub === 0x01 && (b[o + 2] & 0xfe) === 0 && b[o + 3] === 0 && b[o + 4] === 0) {
    return { kind: 'esi-label', singleActive: (b[o + 2] & 1) === 1, label: (b[o + 5] << 16) | (b[o + 6] << 8) | b[o + 7] };
  }
  return { kind: 'raw', hex: toHex(b.subarray(o, o + 8)) };
}

function writeExtCommunity(b: Uint8Array, o: number, c: ExtendedCommunity): number {
  b.fill(0, o, o + 8);
  switch (c.kind) {
    case 'route-target':
      b[o] = writeRdValue(b, o + 2, c.value);
      b[o + 1] = 0x02;
      break;
    case 'route-origin':
      b[o] = writeRdValue(b, o + 2, c.value);
      b[o + 1] = 0x03;
      break;
    case 'encapsulation':
      b[o] = 0x03;
      b[o + 1] = 0x0c;
      b[o + 6] = c.tunnelType >>> 8;
      b[o + 7] = c.tunnelType & 255;
      break;
    case 'default-gateway':
      b[o] = 0x03;
      b[o + 1] = 0x0d;
      break;
    case 'router-mac':
      b[o] = 0x06;
      b[o + 1] = 0x03;
      writeMac(b, o + 2, c.mac);
      break;
    case 'mac-mobility':
      b[o] = 0x06;
      b[o + 1] = 0x00;
      b[o + 2] = c.sticky ? 1 : 0;
      w32(b, o + 4, c.sequence);
      break;
    case 'esi-label':
      b[o] = 0x06;
      b[o + 1] = 0x01;
      b[o + 2] = c.singleActive ? 1 : 0;
      b[o + 5] = (c.label >>> 16) & 255;
      b[o + 6] = (c.label >>> 8) & 255;
      b[o + 7] = c.label & 255;
      break;
    case 'raw': {
      const v = fromHex(c.hex);
      if (v.length !== 8) throw new Error(`extended community must be 8 bytes: ${c.hex}`);
      b.set(v, o);
      break;
    }
    default: {
      const never: never = c;
      throw new Error(`unknown extended community ${String(never)}`);
    }
  }
  return o + 8;
}

function readMpReach(b: Uint8Array, o: number, end: number): MpReach {
  if (end - o < 3) throw new AttrProblem(UpdateSubcode.OptionalAttribute, 'MP_REACH_NLRI too short');
  const afi = (b[o] << 8) | b[o + 1];
  const safi = b[o + 2];
  const family = familyOf(afi, safi);
  if (family === undefined) return { family: 'other', afi, safi, value: copyBytes(b, o + 3, end) };
  if (end - o < 5) throw new AttrProblem(UpdateSubcode.OptionalAttribute, 'MP_REACH_NLRI too short');
  const nhLen = b[o + 3];
  if (o + 5 + nhLen > end) throw new AttrProblem(UpdateSubcode.OptionalAttribute, 'MP_REACH_NLRI next hop overruns');
  const nextHops = readNextHops(b, o + 4, nhLen);
  const nlriStart = o + 5 + nhLen; // one reserved byte (RFC 4760 §3)
  if (family === 'l2vpn-evpn') return { family, nextHops, nlri: readEvpnRoutes(b, nlriStart, end) };
  return { family, nextHops, nlri: readPrefixes(b, nlriStart, end, family === 'ipv6-unicast') };
}

function readMpUnreach(b: Uint8Array, o: number, end: number): MpUnreach {
  if (end - o < 3) throw new AttrProblem(UpdateSubcode.OptionalAttribute, 'MP_UNREACH_NLRI too short');
  const afi = (b[o] << 8) | b[o + 1];
  const safi = b[o + 2];
  const family = familyOf(afi, safi);
  if (family === undefined) return { family: 'other', afi, safi, value: copyBytes(b, o + 3, end) };
  if (family === 'l2vpn-evpn') return { family, withdrawn: readEvpnRoutes(b, o + 3, end) };
  return { family, withdrawn: readPrefixes(b, o + 3, end, family === 'ipv6-unicast') };
}

function readAggregator(b: Uint8Array, o: number, len: number, as4: boolean): Aggregator {
  const want = as4 ? 8 : 6;
  if (len !== want) throw new AttrProblem(UpdateSubcode.AttributeLength, `AGGREGATOR of length ${len}`);
  return as4 ? { asn: u32(b, o), address: readIpv4(b, o + 4) } : { asn: (b[o] << 8) | b[o + 1], address: readIpv4(b, o + 2) };
}

function lengthIs(len: number, want: number, name: string): void {
  if (len !== want) throw new AttrProblem(UpdateSubcode.AttributeLength, `${name} of length ${len}`);
}
function lengthMultiple(len: number, unit: number, name: string): void {
  if (len % unit !== 0) throw new AttrProblem(UpdateSubcode.AttributeLength, `${name} of length ${len}`);
}

/**
 * Decodes the path attribute block [off, end). Errors that RFC 7606 lets
 * the session survive go to `issues`; others throw BgpError.
 */
export function decodeAttributes(b: Uint8Array, off: number, end: number, ctx: CodecContext, issues: AttributeIssue[]): PathAttributes {
  const attrs: PathAttributes = {};
  const seen = new Set<number>();
  let o = off;
  while (o < end) {
    if (o + 3 > end) throw new BgpError(ErrorCode.Update, UpdateSubcode.MalformedAttributeList, 'truncated attribute header');
    const flags = b[o];
    const code = b[o + 1];
    const ext = (flags & AttrFlag.ExtendedLength) !== 0;
    if (ext && o + 4 > end) throw new BgpError(ErrorCode.Update, UpdateSubcode.MalformedAttributeList, 'truncated attribute header');
    const len = ext ? (b[o + 2] << 8) | b[o + 3] : b[o + 2];
    const vo = o + (ext ? 4 : 3);
    const ve = vo + len;
    // RFC 7606 §4: an attribute length that overruns the block cannot be
    // recovered from reliably; reset.
    if (ve > end) {
      throw new BgpError(ErrorCode.Update, UpdateSubcode.AttributeLength, `attribute ${code} of length ${len} overruns the UPDATE`, copyBytes(b, o, end));
    }
    o = ve;
    if (seen.has(code)) {
      // RFC 7606 §3.g: duplicates are discarded, except MP_(UN)REACH.
      if (code === AttrCode.MP_REACH_NLRI || code === AttrCode.MP_UNREACH_NLRI) {
        throw new BgpError(ErrorCode.Update, UpdateSubcode.MalformedAttributeList, `duplicate attribute ${code}`);
      }
      issues.push({ code, action: 'attribute-discard', reason: `duplicate attribute ${code}` });
      continue;
    }
    seen.add(code);
    const want = expectedFlags(code);
    try {
      if (want === undefined) {
        if ((flags & AttrFlag.Optional) === 0) {
          throw new BgpError(ErrorCode.Update, UpdateSubcode.UnrecognizedWellKnown, `unrecognized well-known attribute ${code}`, copyBytes(b, vo - (ext ? 4 : 3), ve));
        }
        (attrs.unknown ??= []).push({ flags: flags & ~AttrFlag.ExtendedLength, code, value: copyBytes(b, vo, ve) });
        continue;
      }
      if ((flags & (AttrFlag.Optional | AttrFlag.Transitive)) !== want) {
        throw new AttrProblem(UpdateSubcode.AttributeFlags, `attribute ${code} with flags 0x${flags.toString(16)}`);
      }
      decodeKnown(attrs, code, b, vo, len, ctx);
    } catch (e) {
      if (!(e instanceof AttrProblem)) throw e;
      const action = actionFor(code);
      if (action === 'session-reset') throw new BgpError(ErrorCode.Update, e.subcode, e.message);
      issues.push({ code, action, reason: e.message });
    }
  }
  return attrs;
}

function decodeKnown(attrs: PathAttributes, code: number, b: Uint8Array, o: number, len: number, ctx: CodecContext): void {
  const end = o + len;
  switch (code) {
    case AttrCode.ORIGIN:
      lengthIs(len, 1, 'ORIGIN');
      if (b[o] > 2) throw new AttrProblem(UpdateSubcode.InvalidOrigin, `ORIGIN ${b[o]}`);
      attrs.origin = b[o] as 0 | 1 | 2;
      return;
    case AttrCode.AS_PATH:
      attrs.asPath = readAsPath(b, o, end, ctx.as4 ? 4 : 2);
      return;
    case AttrCode.NEXT_HOP:
      lengthIs(len, 4, 'NEXT_HOP');
      attrs.nextHop = readIpv4(b, o);
      return;
    case AttrCode.MED:
      lengthIs(len, 4, 'MULTI_EXIT_DISC');
      attrs.med = u32(b, o);
      return;
    case AttrCode.LOCAL_PREF:
      lengthIs(len, 4, 'LOCAL_PREF');
      attrs.localPref = u32(b, o);
      return;
    case AttrCode.ATOMIC_AGGREGATE:
      lengthIs(len, 0, 'ATOMIC_AGGREGATE');
      attrs.atomicAggregate = true;
      return;
    case AttrCode.AGGREGATOR:
      attrs.aggregator = readAggregator(b, o, len, ctx.as4);
      return;
    case AttrCode.COMMUNITIES: {
      lengthMultiple(len, 4, 'COMMUNITIES');
      const c: number[] = [];
      for (let i = o; i < end; i += 4) c.push(u32(b, i));
      attrs.communities = c;
      return;
    }
    case AttrCode.ORIGINATOR_ID:
      lengthIs(len, 4, 'ORIGINATOR_ID');
      attrs.originatorId = readIpv4(b, o);
      return;
    case AttrCode.CLUSTER_LIST: {
      lengthMultiple(len, 4, 'CLUSTER_LIST');
      const c: string[] = [];
      for (let i = o; i < end; i += 4) c.push(readIpv4(b, i));
      attrs.clusterList = c;
      return;
    }
    case AttrCode.MP_REACH_NLRI:
      try {
        attrs.mpReach = readMpReach(b, o, end);
      } catch (e) {
        if (e instanceof BgpError) throw new AttrProblem(e.subcode, e.message);
        throw e;
      }
      return;
    case AttrCode.MP_UNREACH_NLRI:
      try {
        attrs.mpUnreach = readMpUnreach(b, o, end);
      } catch (e) {
        if (e instanceof BgpError) throw new AttrProblem(e.subcode, e.message);
        throw e;
      }
      return;
    case AttrCode.EXTENDED_COMMUNITIES: {
      lengthMultiple(len, 8, 'EXTENDED_COMMUNITIES');
      const c: ExtendedCommunity[] = [];
      for (let i = o; i < end; i += 8) {
        try {
          c.push(readExtCommunity(b, i));
        } catch {
          c.push({ kind: 'raw', hex: toHex(b.subarray(i, i + 8)) });
        }
      }
      attrs.extendedCommunities = c;
      return;
    }
    case AttrCode.AS4_PATH:
      attrs.as4Path = readAsPath(b, o, end, 4);
      return;
    case AttrCode.AS4_AGGREGATOR:
      attrs.as4Aggregator = readAggregator(b, o, len, true);
      return;
    case AttrCode.PMSI_TUNNEL: {
      if (len < 5) throw new AttrProblem(UpdateSubcode.AttributeLength, `PMSI_TUNNEL of length ${len}`);
      const idLen = len - 5;
      const id = b.subarray(o + 5, end);
      attrs.pmsiTunnel = {
        flags: b[o],
        tunnelType: b[o + 1],
        label: (b[o + 2] << 16) | (b[o + 3] << 8) | b[o + 4],
        tunnelId: idLen === 4 ? readIpv4(id, 0) : idLen === 16 ? readIpv6(id, 0) : `0x${toHex(id)}`,
      };
      return;
    }
    case AttrCode.LARGE_COMMUNITY: {
      lengthMultiple(len, 12, 'LARGE_COMMUNITY');
      const c = [];
      for (let i = o; i < end; i += 12) c.push({ global: u32(b, i), local1: u32(b, i + 4), local2: u32(b, i + 8) });
      attrs.largeCommunities = c;
      return;
    }
    default:
      throw new Error(`no decoder for attribute ${code}`);
  }
}

// ---------------------------------------------------------------- encoding

interface EncodedAttr {
  flags: number;
  code: number;
  size: number;
  write(b: Uint8Array, o: number): number;
}

function pmsiIdBytes(id: string): Uint8Array {
  if (id.startsWith('0x')) return fromHex(id.slice(2));
  const out = new Uint8Array(id.includes(':') ? 16 : 4);
  if (id.includes(':')) writeIpv6(out, 0, id);
  else writeIpv4(out, 0, id);
  return out;
}

type Nlri = { family: 'ipv4-unicast' | 'ipv6-unicast'; list: string[] } | { family: 'l2vpn-evpn'; list: EvpnRoute[] };

function nlriSize(n: Nlri): number {
  let size = 0;
  if (n.family === 'l2vpn-evpn') for (const r of n.list) size += evpnSize(r);
  else for (const p of n.list) size += prefixSize(p);
  return size;
}
function writeNlri(b: Uint8Array, o: number, n: Nlri): number {
  if (n.family === 'l2vpn-evpn') for (const r of n.list) o = writeEvpn(b, o, r);
  else for (const p of n.list) o = writePrefix(b, o, p, n.family === 'ipv6-unicast');
  return o;
}
function nlriOf(m: MpReach | MpUnreach): Nlri | undefined {
  if (m.family === 'other') return undefined;
  if ('nlri' in m) return m.family === 'l2vpn-evpn' ? { family: m.family, list: m.nlri } : { family: m.family, list: m.nlri };
  return m.family === 'l2vpn-evpn' ? { family: m.family, list: m.withdrawn } : { family: m.family, list: m.withdrawn };
}

/** MP_REACH_NLRI (RFC 4760 §3): AFI, SAFI, next hop length, next hops, reserved byte, NLRI. */
function mpSize(m: MpReach | MpUnreach): number {
  const n = nlriOf(m);
  if (n === undefined) return 3 + (m as { value: Uint8Array }).value.length;
  return 'nextHops' in m ? 5 + nextHopsSize(m.nextHops) + nlriSize(n) : 3 + nlriSize(n);
}
function writeMp(b: Uint8Array, o: number, m: MpReach | MpUnreach): number {
  const { afi, safi } = m.family === 'other' ? m : afiSafiOf(m.family);
  b[o] = afi >>> 8;
  b[o + 1] = afi & 255;
  b[o + 2] = safi;
  o += 3;
  if (m.family === 'other') {
    b.set(m.value, o);
    return o + m.value.length;
  }
  if ('nextHops' in m) {
    b[o++] = nextHopsSize(m.nextHops);
    o = writeNextHops(b, o, m.nextHops);
    b[o++] = 0;
  }
  return writeNlri(b, o, nlriOf(m)!);
}

function listAttributes(a: PathAttributes, ctx: CodecContext): EncodedAttr[] {
  const out: EncodedAttr[] = [];
  const T = AttrFlag.Transitive;
  const O = AttrFlag.Optional;
  const add = (flags: number, code: number, size: number, write: (b: Uint8Array, o: number) => number) =>
    out.push({ flags, code, size, write });
  const width = ctx.as4 ? 4 : 2;
  if (a.origin !== undefined) add(T, AttrCode.ORIGIN, 1, (b, o) => ((b[o] = a.origin!), o + 1));
  if (a.asPath !== undefined) add(T, AttrCode.AS_PATH, asPathSize(a.asPath, width), (b, o) => writeAsPath(b, o, a.asPath!, width));
  if (a.nextHop !== undefined) {
    if (!isIpv4(a.nextHop)) throw new Error(`NEXT_HOP must be IPv4: ${a.nextHop}`);
    add(T, AttrCode.NEXT_HOP, 4, (b, o) => writeIpv4(b, o, a.nextHop!));
  }
  if (a.med !== undefined) add(O, AttrCode.MED, 4, (b, o) => w32(b, o, a.med!));
  if (a.localPref !== undefined) add(T, AttrCode.LOCAL_PREF, 4, (b, o) => w32(b, o, a.localPref!));
  if (a.atomicAggregate) add(T, AttrCode.ATOMIC_AGGREGATE, 0, (_b, o) => o);
  if (a.aggregator !== undefined) {
    const g = a.aggregator;
    add(O | T, AttrCode.AGGREGATOR, ctx.as4 ? 8 : 6, (b, o) => {
      if (ctx.as4) o = w32(b, o, g.asn);
      else {
        const v = g.asn > 0xffff ? AS_TRANS : g.asn;
        b[o++] = v >>> 8;
        b[o++] = v & 255;
      }
      return writeIpv4(b, o, g.address);
    });
  }
  if (a.communities !== undefined) {
    const c = a.communities;
    add(O | T, AttrCode.COMMUNITIES, 4 * c.length, (b, o) => {
      for (const x of c) o = w32(b, o, x);
      return o;
    });
  }
  if (a.originatorId !== undefined) add(O, AttrCode.ORIGINATOR_ID, 4, (b, o) => writeIpv4(b, o, a.originatorId!));
  if (a.clusterList !== undefined) {
    const c = a.clusterList;
    add(O, AttrCode.CLUSTER_LIST, 4 * c.length, (b, o) => {
      for (const x of c) o = writeIpv4(b, o, x);
      return o;
    });
  }
  if (a.mpReach !== undefined) add(O, AttrCode.MP_REACH_NLRI, mpSize(a.mpReach), (b, o) => writeMp(b, o, a.mpReach!));
  if (a.mpUnreach !== undefined) add(O, AttrCode.MP_UNREACH_NLRI, mpSize(a.mpUnreach), (b, o) => writeMp(b, o, a.mpUnreach!));
  if (a.extendedCommunities !== undefined) {
    const c = a.extendedCommunities;
    add(O | T, AttrCode.EXTENDED_COMMUNITIES, 8 * c.length, (b, o) => {
      for (const x of c) o = writeExtCommunity(b, o, x);
      return o;
    });
  }
  if (a.as4Path !== undefined) add(O | T, AttrCode.AS4_PATH, asPathSize(a.as4Path, 4), (b, o) => writeAsPath(b, o, a.as4Path!, 4));
  if (a.as4Aggregator !== undefined) {
    const g = a.as4Aggregator;
    add(O | T, AttrCode.AS4_AGGREGATOR, 8, (b, o) => writeIpv4(b, w32(b, o, g.asn), g.address));
  }
  if (a.pmsiTunnel !== undefined) {
    const p = a.pmsiTunnel;
    const id = pmsiIdBytes(p.tunnelId);
    add(O | T, AttrCode.PMSI_TUNNEL, 5 + id.length, (b, o) => {
      b[o] = p.flags;
      b[o + 1] = p.tunnelType;
      b[o + 2] = (p.label >>> 16) & 255;
      b[o + 3] = (p.label >>> 8) & 255;
      b[o + 4] = p.label & 255;
      b.set(id, o + 5);
      return o + 5 + id.length;
    });
  }
  if (a.largeCommunities !== undefined) {
    const c = a.largeCommunities;
    add(O | T, AttrCode.LARGE_COMMUNITY, 12 * c.length, (b, o) => {
      for (const x of c) o = w32(b, w32(b, w32(b, o, x.global), x.local1), x.local2);
      return o;
    });
  }
  for (const u of a.unknown ?? []) {
    add(u.flags & ~AttrFlag.ExtendedLength, u.code, u.value.length, (b, o) => (b.set(u.value, o), o + u.value.length));
  }
  return out;
}

export interface AttributesEncoder {
  size: number;
  write(b: Uint8Array, o: number): number;
}

/** Prepares the attribute block: its size is known before anything is written. */
export function prepareAttributes(a: PathAttributes, ctx: CodecContext): AttributesEncoder {
  const list = listAttributes(a, ctx);
  let size = 0;
  for (const x of list) {
    if (x.size > 0xffff) throw new Error(`attribute ${x.code} too long (${x.size} bytes)`);
    size += (x.size > 255 ? 4 : 3) + x.size;
  }
  return {
    size,
    write(b, o) {
      for (const x of list) {
        const ext = x.size > 255;
        b[o] = x.flags | (ext ? AttrFlag.ExtendedLength : 0);
        b[o + 1] = x.code;
        if (ext) {
          b[o + 2] = x.size >>> 8;
          b[o + 3] = x.size & 255;
          o += 4;
        } else {
          b[o + 2] = x.size;
          o += 3;
        }
        const e = x.write(b, o);
        if (e !== o + x.size) throw new Error(`attribute ${x.code}: wrote ${e - o} bytes, announced ${x.size}`);
        o = e;
      }
      return o;
    },
  };
}
