/**
 * Whole messages: header (RFC 4271 §4.1), OPEN with capabilities
 * (RFC 5492, RFC 9072), UPDATE, NOTIFICATION, KEEPALIVE, ROUTE-REFRESH
 * (RFC 2918, RFC 7313).
 */
import { prepareAttributes, decodeAttributes } from './attributes.js';
import { BgpError, ErrorCode, HeaderSubcode, OpenSubcode, UpdateSubcode } from './errors.js';
import { copyBytes, readIpv4, writeIpv4 } from './ip.js';
import { prefixSize, readPrefixes, writePrefix } from './nlri.js';
import {
  AttrCode,
  MessageType,
  type AttributeIssue,
  type Capability,
  type CodecContext,
  type Message,
  type Open,
  type Update,
} from './types.js';

export const HEADER_SIZE = 19;
export const MAX_MESSAGE = 4096;
export const MAX_EXTENDED_MESSAGE = 65535;

function maxSize(type: number, ctx: CodecContext): number {
  // RFC 8654 §4: OPEN and KEEPALIVE stay within 4096 bytes.
  return ctx.extendedMessages && type !== MessageType.OPEN && type !== MessageType.KEEPALIVE ? MAX_EXTENDED_MESSAGE : MAX_MESSAGE;
}

/**
 * Checks the header at `off`. Returns the message length when the whole
 * message is in [off, end), 0 when more bytes are needed. Throws a
 * message header error (RFC 4271 §6.1) for a bad marker, length or type.
 */
export function frameLength(b: Uint8Array, off: number, end: number, ctx: CodecContext): number {
  if (end - off < HEADER_SIZE) return 0;
  for (let i = 0; i < 16; i++) {
    if (b[off + i] !== 0xff) throw new BgpError(ErrorCode.MessageHeader, HeaderSubcode.NotSynchronized, 'header marker is not all ones');
  }
  const len = (b[off + 16] << 8) | b[off + 17];
  const type = b[off + 18];
  const badLen = () =>
    new BgpError(ErrorCode.MessageHeader, HeaderSubcode.BadLength, `bad message length ${len} for type ${type}`, copyBytes(b, off + 16, off + 18));
  if (len < HEADER_SIZE || len > maxSize(type, ctx)) throw badLen();
  switch (type) {
    case MessageType.OPEN:
      if (len < 29) throw badLen();
      break;
    case MessageType.UPDATE:
      if (len < 23) throw badLen();
      break;
    case MessageType.NOTIFICATION:
      if (len < 21) throw badLen();
      break;
    case MessageType.KEEPALIVE:
      if (len !== 19) throw badLen();
      break;
    case MessageType.ROUTE_REFRESH:
      if (len < 23) throw badLen();
      break;
    default:
      throw new BgpError(ErrorCode.MessageHeader, HeaderSubcode.BadType, `bad message type ${type}`, Uint8Array.of(type));
  }
  return end - off >= len ? len : 0;
}

/** Decodes one whole message [off, off+len) whose header frameLength accepted. */
export function decodeMessage(b: Uint8Array, off: number, len: number, ctx: CodecContext): Message {
  const type = b[off + 18];
  const o = off + HEADER_SIZE;
  const end = off + len;
  switch (type) {
    case MessageType.OPEN:
      return decodeOpen(b, o, end);
    case MessageType.UPDATE:
      return decodeUpdate(b, o, end, ctx);
    case MessageType.NOTIFICATION:
      return { type: 'notification', code: b[o], subcode: b[o + 1], data: copyBytes(b, o + 2, end) };
    case MessageType.KEEPALIVE:
      return { type: 'keepalive' };
    case MessageType.ROUTE_REFRESH:
      if (len !== 23) {
        // RFC 7313 §5: Invalid Message Length.
        throw new BgpError(ErrorCode.RouteRefresh, 1, `ROUTE-REFRESH of length ${len}`, copyBytes(b, off, end));
      }
      return { type: 'route-refresh', afi: (b[o] << 8) | b[o + 1], subtype: b[o + 2], safi: b[o + 3] };
    default:
      throw new BgpError(ErrorCode.MessageHeader, HeaderSubcode.BadType, `bad message type ${type}`, Uint8Array.of(type));
  }
}

/** Decodes a buffer holding exactly one message. */
export function decode(b: Uint8Array, ctx: CodecContext = { as4: true, extendedMessages: true }): Message {
  const len = frameLength(b, 0, b.length, ctx);
  if (len === 0 || len !== b.length) {
    throw new BgpError(ErrorCode.MessageHeader, HeaderSubcode.BadLength, `buffer of ${b.length} bytes is not one message`);
  }
  return decodeMessage(b, 0, len, ctx);
}

// ---------------------------------------------------------------- OPEN

function decodeCapability(code: number, b: Uint8Array, o: number, len: number): Capability {
  const unknown = (): Capability => ({ kind: 'unknown', code, value: copyBytes(b, o, o + len) });
  switch (code) {
    case 1:
      return len === 4 ? { kind: 'multiprotocol', afi: (b[o] << 8) | b[o + 1], safi: b[o + 3] } : unknown();
    case 2:
      return len === 0 ? { kind: 'route-refresh' } : unknown();
    case 70:
      return len === 0 ? { kind: 'enhanced-route-refresh' } : unknown();
    case 6:
      return len === 0 ? { kind: 'extended-message' } : unknown();
    case 65:
      return len === 4 ? { kind: 'four-octet-as', asn: ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0 } : unknown();
    case 64: {
      if (len < 2 || (len - 2) % 4 !== 0) return unknown();
      const families = [];
      for (let i = o + 2; i < o + len; i += 4) {
        families.push({ afi: (b[i] << 8) | b[i + 1], safi: b[i + 2], forwardingPreserved: (b[i + 3] & 0x80) !== 0 });
      }
      return {
        kind: 'graceful-restart',
        restarting: (b[o] & 0x80) !== 0,
        notification: (b[o] & 0x40) !== 0,
        restartTime: ((b[o] & 0x0f) << 8) | b[o + 1],
        families,
      };
    }
    default:
      return unknown();
  }
}

function decodeOpen(b: Uint8Array, o: number, end: number): Open {
  const version = b[o];
  if (version !== 4) throw new BgpError(ErrorCode.Open, OpenSubcode.UnsupportedVersion, `BGP version ${version}`, Uint8Array.of(0, 4));
  const myAs = (b[o + 1] << 8) | b[o + 2];
  const holdTime = (b[o + 3] << 8) | b[o + 4];
  const bgpId = readIpv4(b, o + 5);
  let optLen = b[o + 9];
  let p = o + 10;
  let extended = false;
  // RFC 9072 §2: optional parameters length 255 and type 255 mean the extended format.
  if (optLen === 255 && p < end && b[p] === 255) {
    if (p + 3 > end) throw new BgpError(ErrorCode.Open, 0, 'truncated extended optional parameters length');
    optLen = (b[p + 1] << 8) | b[p + 2];
    p += 3;
    extended = true;
  }
  const optEnd = p + optLen;
  if (optEnd !== end) throw new BgpError(ErrorCode.MessageHeader, HeaderSubcode.BadLength, `OPEN optional parameters length ${optLen} does not match the message`);
  const capabilities: Capability[] = [];
  while (p < optEnd) {
    const hdr = extended ? 3 : 2;
    if (p + hdr > optEnd) throw new BgpError(ErrorCode.Open, 0, 'truncated optional parameter');
    const ptype = b[p];
    const plen = extended ? (b[p + 1] << 8) | b[p + 2] : b[p + 1];
    const vo = p + hdr;
    const ve = vo + plen;
    if (ve > optEnd) throw new BgpError(ErrorCode.Open, 0, 'optional parameter overruns the OPEN');
    if (ptype !== 2) throw new BgpError(ErrorCode.Open, OpenSubcode.UnsupportedOptionalParameter, `optional parameter type ${ptype}`);
    let c = vo;
    while (c < ve) {
      if (c + 2 > ve) throw new BgpError(ErrorCode.Open, 0, 'truncated capability');
      const code = b[c];
      const clen = b[c + 1];
      if (c + 2 + clen > ve) throw new BgpError(ErrorCode.Open, 0, `capability ${code} overruns its parameter`);
      capabilities.push(decodeCapability(code, b, c + 2, clen));
      c += 2 + clen;
    }
    p = ve;
  }
  return { type: 'open', version, myAs, holdTime, bgpId, capabilities };
}

function capabilitySize(c: Capability): number {
  switch (c.kind) {
    case 'multiprotocol':
    case 'four-octet-as':
      return 4;
    case 'route-refresh':
    case 'enhanced-route-refresh':
    case 'extended-message':
      return 0;
    case 'graceful-restart':
      return 2 + 4 * c.families.length;
    case 'unknown':
      return c.value.length;
    default: {
      const never: never = c;
      throw new Error(`unknown capability ${String(never)}`);
    }
  }
}

function capabilityCode(c: Capability): number {
  switch (c.kind) {
    case 'multiprotocol':
      return 1;
    case 'route-refresh':
      return 2;
    case 'extended-message':
      return 6;
    case 'graceful-restart':
      return 64;
    case 'four-octet-as':
      return 65;
    case 'enhanced-route-refresh':
      return 70;
    case 'unknown':
      return c.code;
    default: {
      const never: never = c;
      throw new Error(`unknown capability ${String(never)}`);
    }
  }
}

function writeCapability(b: Uint8Array, o: number, c: Capability): number {
  const size = capabilitySize(c);
  if (size > 255) throw new Error('capability too long');
  b[o] = capabilityCode(c);
  b[o + 1] = size;
  o += 2;
  switch (c.kind) {
    case 'multiprotocol':
      b[o] = c.afi >>> 8;
      b[o + 1] = c.afi & 255;
      b[o + 2] = 0;
      b[o + 3] = c.safi;
      return o + 4;
    case 'four-octet-as':
      b[o] = c.asn >>> 24;
      b[o + 1] = (c.asn >>> 16) & 255;
      b[o + 2] = (c.asn >>> 8) & 255;
      b[o + 3] = c.asn & 255;
      return o + 4;
    case 'route-refresh':
    case 'enhanced-route-refresh':
    case 'extended-message':
      return o;
    case 'graceful-restart':
      b[o] = (c.restarting ? 0x80 : 0) | (c.notification ? 0x40 : 0) | ((c.restartTime >>> 8) & 0x0f);
      b[o + 1] = c.restartTime & 255;
      o += 2;
      for (const f of c.families) {
        b[o] = f.afi >>> 8;
        b[o + 1] = f.afi & 255;
        b[o + 2] = f.safi;
        b[o + 3] = f.forwardingPreserved ? 0x80 : 0;
        o += 4;
      }
      return o;
    case 'unknown':
      b.set(c.value, o);
      return o + c.value.length;
    default: {
      const never: never = c;
      throw new Error(`unknown capability ${String(never)}`);
    }
  }
}

// ---------------------------------------------------------------- UPDATE

function decodeUpdate(b: Uint8Array, o: number, end: number, ctx: CodecContext): Update {
  const malformed = (why: string) => new BgpError(ErrorCode.Update, UpdateSubcode.MalformedAttributeList, why);
  const wLen = (b[o] << 8) | b[o + 1];
  const wEnd = o + 2 + wLen;
  if (wEnd + 2 > end) throw malformed(`withdrawn routes length ${wLen} overruns the UPDATE`);
  const withdrawn = readPrefixes(b, o + 2, wEnd, false);
  const aLen = (b[wEnd] << 8) | b[wEnd + 1];
  const aStart = wEnd + 2;
  const aEnd = aStart + aLen;
  if (aEnd > end) throw malformed(`total path attribute length ${aLen} overruns the UPDATE`);
  const issues: AttributeIssue[] = [];
  const attributes = decodeAttributes(b, aStart, aEnd, ctx, issues);
  const nlri = readPrefixes(b, aEnd, end, false);
  // RFC 7606 §3.d: missing well-known mandatory attributes -> treat-as-withdraw.
  if (nlri.length > 0 || attributes.mpReach !== undefined) {
    const missing: number[] = [];
    if (attributes.origin === undefined && !issues.some((i) => i.code === AttrCode.ORIGIN)) missing.push(AttrCode.ORIGIN);
    if (attributes.asPath === undefined && !issues.some((i) => i.code === AttrCode.AS_PATH)) missing.push(AttrCode.AS_PATH);
    if (nlri.length > 0 && attributes.nextHop === undefined && !issues.some((i) => i.code === AttrCode.NEXT_HOP)) {
      missing.push(AttrCode.NEXT_HOP);
    }
    for (const code of missing) issues.push({ code, action: 'treat-as-withdraw', reason: `missing well-known attribute ${code}` });
  }
  const u: Update = { type: 'update', withdrawn, attributes, nlri };
  if (issues.length > 0) u.issues = issues;
  return u;
}

// ---------------------------------------------------------------- encoding

function writeHeader(b: Uint8Array, len: number, type: number): number {
  b.fill(0xff, 0, 16);
  b[16] = len >>> 8;
  b[17] = len & 255;
  b[18] = type;
  return HEADER_SIZE;
}

function checkSize(len: number, type: number, ctx: CodecContext): void {
  if (len > maxSize(type, ctx)) throw new Error(`message of ${len} bytes exceeds the ${maxSize(type, ctx)}-byte limit`);
}

/** Bytes the UPDATE will take; lets callers pack routes up to the limit. */
export function updateSize(u: Update, ctx: CodecContext): number {
  let n = HEADER_SIZE + 4 + prepareAttributes(u.attributes, ctx).size;
  for (const p of u.withdrawn) n += prefixSize(p);
  for (const p of u.nlri) n += prefixSize(p);
  return n;
}

/** Encodes a message into one freshly allocated buffer. */
export function encode(m: Message, ctx: CodecContext = { as4: true, extendedMessages: true }): Buffer {
  switch (m.type) {
    case 'keepalive': {
      const b = Buffer.alloc(HEADER_SIZE);
      writeHeader(b, HEADER_SIZE, MessageType.KEEPALIVE);
      return b;
    }
    case 'notification': {
      const len = HEADER_SIZE + 2 + m.data.length;
      checkSize(len, MessageType.NOTIFICATION, ctx);
      const b = Buffer.alloc(len);
      const o = writeHeader(b, len, MessageType.NOTIFICATION);
      b[o] = m.code;
      b[o + 1] = m.subcode;
      b.set(m.data, o + 2);
      return b;
    }
    case 'route-refresh': {
      const b = Buffer.alloc(23);
      const o = writeHeader(b, 23, MessageType.ROUTE_REFRESH);
      b[o] = m.afi >>> 8;
      b[o + 1] = m.afi & 255;
      b[o + 2] = m.subtype;
      b[o + 3] = m.safi;
      return b;
    }
    case 'open': {
      let capLen = 0;
      for (const c of m.capabilities) capLen += 2 + capabilitySize(c);
      // All capabilities in one optional parameter (RFC 5492 allows either form).
      const optLen = m.capabilities.length > 0 ? 2 + capLen : 0;
      if (optLen > 255) throw new Error('OPEN optional parameters exceed 255 bytes');
      const len = HEADER_SIZE + 10 + optLen;
      const b = Buffer.alloc(len);
      let o = writeHeader(b, len, MessageType.OPEN);
      b[o] = m.version;
      b[o + 1] = m.myAs >>> 8;
      b[o + 2] = m.myAs & 255;
      b[o + 3] = m.holdTime >>> 8;
      b[o + 4] = m.holdTime & 255;
      writeIpv4(b, o + 5, m.bgpId);
      b[o + 9] = optLen;
      o += 10;
      if (optLen > 0) {
        b[o] = 2;
        b[o + 1] = capLen;
        o += 2;
        for (const c of m.capabilities) o = writeCapability(b, o, c);
      }
      return b;
    }
    case 'update': {
      const attrs = prepareAttributes(m.attributes, ctx);
      let wLen = 0;
      for (const p of m.withdrawn) wLen += prefixSize(p);
      let nLen = 0;
      for (const p of m.nlri) nLen += prefixSize(p);
      const len = HEADER_SIZE + 4 + wLen + attrs.size + nLen;
      checkSize(len, MessageType.UPDATE, ctx);
      const b = Buffer.alloc(len);
      let o = writeHeader(b, len, MessageType.UPDATE);
      b[o] = wLen >>> 8;
      b[o + 1] = wLen & 255;
      o += 2;
      for (const p of m.withdrawn) o = writePrefix(b, o, p, false);
      b[o] = attrs.size >>> 8;
      b[o + 1] = attrs.size & 255;
      o = attrs.write(b, o + 2);
      for (const p of m.nlri) o = writePrefix(b, o, p, false);
      if (o !== len) throw new Error(`UPDATE encoder wrote ${o} of ${len} bytes`);
      return b;
    }
    default: {
      const never: never = m;
      throw new Error(`unknown message ${String(never)}`);
    }
  }
}
