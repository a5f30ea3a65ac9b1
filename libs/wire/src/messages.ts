/**
 * Messages of the controller <-> agent protocol (one per WebSocket binary
 * frame) and their encoding. Layout of every frame:
 *
 *   u8 type | fields of the type (below)
 *
 *   hello    (agent -> controller) u8 protocol | str hostId | str credential | str vtepIp
 *                                  | str epoch | varuint version | varuint revision | str digest
 *   snapshot (controller -> agent) str epoch | varuint version | varuint revision | str digest | body
 *   delta    (controller -> agent) str epoch | varuint fromVersion | varuint version | varuint revision | str digest | body
 *   ack      (agent -> controller) varuint version | str digest
 *   nack     (agent -> controller) varuint version | str reason
 *
 *   str  = varuint byte length + UTF-8
 *   body = string table | varuint number of table sections | per section:
 *          u8 table index (TABLES order) | varuint n | n entries | varuint m | m removed keys (string indexes)
 *
 * An entry is its SCHEMA fields in order (strings as string-table indexes,
 * nullable values shifted by one so that 0 means null). A snapshot has no
 * removed keys.
 */
import { emptyHostState, keyOf, TABLES, type AnyEntry, type HostDelta, type HostState, type TableName } from '#sdn/compiler';
import { collectEntries, hashEntryFrom, hashKeyFrom, readEntries, Reader, StringTable, tableAt, tableIndex, TableText, WireError, writeEntries, Writer } from './codec';

export const PROTOCOL_VERSION = 1;

/** WebSocket close codes the controller uses (4000-4999 are the application's). */
export const CLOSE_AUTH_FAILED = 4001;
export const CLOSE_PROTOCOL_ERROR = 4002;
export const CLOSE_REPLACED = 4003;
export const CLOSE_SHUTDOWN = 4004;

/**
 * The largest message an agent sends: a hello (five short strings), an ack
 * (a version and a digest) or a nack (a reason of at most 4,000 characters,
 * encodeNack, so at most 12 KB of UTF-8). The controller refuses larger
 * frames before reading them (WebSocket close 1009), so that a peer that has
 * not even said hello cannot make it buffer megabytes.
 */
export const MAX_AGENT_MESSAGE = 64 * 1024;

/**
 * The largest version a hello may claim (2^48). The controller continues a
 * host's versions from the one its agent last acknowledged, so a claim near
 * 2^53 would leave too little room for exact increments; no controller issues
 * anywhere near this many versions (at 1,000 a second, ~9,000 years).
 */
export const MAX_HELLO_VERSION = 2 ** 48;

export interface Hello {
  type: 'hello';
  protocol: number;
  hostId: string;
  credential: string;
  vtepIp: string;
  /** epoch of the controller that sent the last acknowledged version; '' when none */
  epoch: string;
  /** last acknowledged version; 0 when none */
  version: number;
  /** directory revision the acknowledged state was computed at; 0 when none */
  revision: number;
  /** digest of the state the agent holds (its last acknowledged one); '' when none */
  digest: string;
}

export interface Snapshot {
  type: 'snapshot';
  epoch: string;
  version: number;
  /** directory revision the state was computed at (lets a restarted controller rebuild it and send a delta) */
  revision: number;
  /** digest of `state` (compiler's digestOf) */
  digest: string;
  state: HostState;
}

export interface Delta {
  type: 'delta';
  epoch: string;
  /** the version the delta applies to (the agent's last acknowledged or the one in flight) */
  fromVersion: number;
  version: number;
  /** directory revision of the resulting state */
  revision: number;
  /** digest of the state after applying the delta */
  digest: string;
  delta: HostDelta;
}

export interface Ack {
  type: 'ack';
  version: number;
  digest: string;
}

export interface Nack {
  type: 'nack';
  version: number;
  reason: string;
}

export type Message = Hello | Snapshot | Delta | Ack | Nack;

const T_HELLO = 1;
const T_SNAPSHOT = 2;
const T_DELTA = 3;
const T_ACK = 4;
const T_NACK = 5;

/** Entries per table: what a snapshot or the upsert side of a delta carries. */
export type EntryLists = { [T in TableName]?: readonly AnyEntry[] };
type Section = { table: TableName; upsert: readonly AnyEntry[]; remove: readonly string[] };

function writeBody(w: Writer, sections: Section[]): void {
  const st = new StringTable();
  const refs: number[] = [];
  for (const s of sections) {
    collectEntries(st, s.table, s.upsert, refs);
    for (const k of s.remove) refs.push(st.ref(k));
  }
  st.write(w);
  w.varuint(sections.length);
  let at = 0;
  for (const s of sections) {
    w.u8(tableIndex(s.table));
    w.varuint(s.upsert.length);
    at = writeEntries(w, s.table, s.upsert, refs, at);
    w.varuint(s.remove.length);
    for (let k = 0; k < s.remove.length; k++) w.varuint(refs[at++]);
  }
}

/**
 * Walks a body's table sections after its string table (of `count` strings),
 * checking their number, order and sizes; per section `entries(table, n)`
 * must read the n entries and `removals(table, n)` the n removed keys.
 */
function readSections(r: Reader, entries: (table: TableName, n: number) => void, removals: (table: TableName, n: number) => void): void {
  const n = r.varuint();
  if (n > TABLES.length) throw new WireError(`${n} table sections`);
  const seen = new Set<TableName>();
  for (let i = 0; i < n; i++) {
    const table = tableAt(r.u8());
    if (seen.has(table)) throw new WireError(`table ${table} twice`);
    seen.add(table);
    const nu = r.varuint();
    if (nu > r.buf.length) throw new WireError(`${table}: ${nu} entries in a ${r.buf.length}-byte message`);
    entries(table, nu);
    const nr = r.varuint();
    if (nr > r.buf.length) throw new WireError(`${table}: ${nr} removals in a ${r.buf.length}-byte message`);
    removals(table, nr);
  }
}

/** A removed key's string index, checked against the table's `count` strings. */
function keyIndex(r: Reader, table: TableName, count: number): number {
  const idx = r.varuint();
  if (idx >= count) throw new WireError(`${table}: key index ${idx} out of ${count}`);
  return idx;
}

function readBody(r: Reader): Section[] {
  const strings = StringTable.read(r);
  const out: Section[] = [];
  let upsert: AnyEntry[] = [];
  readSections(
    r,
    (table, n) => (upsert = readEntries(r, strings, table, n)),
    (table, n) => {
      const remove: string[] = new Array(n);
      for (let k = 0; k < n; k++) remove[k] = strings[keyIndex(r, table, strings.length)];
      out.push({ table, upsert, remove });
    },
  );
  return out;
}

/**
 * What a body hashes to, for a holder that keeps hashes (DigestMirror): per
 * upserted entry its key hash and entry hash (4 words), per removed key its
 * key hash (2 words); the same values hashInto(keyOf(e), table index + 1) and
 * entryHashInto give for the decoded entries. Reused from frame to frame.
 */
export class BodyHashes {
  upserts: Uint32Array = new Uint32Array(4 * 256);
  upsertCount = 0;
  removals: Uint32Array = new Uint32Array(2 * 64);
  removalCount = 0;
  readonly text = new TableText();
}

function readBodyHashes(r: Reader, into: BodyHashes): void {
  const text = into.text;
  text.read(r);
  into.upsertCount = 0;
  into.removalCount = 0;
  readSections(
    r,
    (table, n) => {
      let o = 4 * into.upsertCount;
      if (o + 4 * n > into.upserts.length) into.upserts = grown(into.upserts, o + 4 * n);
      for (let k = 0; k < n; k++, o += 4) hashEntryFrom(r, text, table, into.upserts, o);
      into.upsertCount += n;
    },
    (table, n) => {
      const ti = tableIndex(table);
      let o = 2 * into.removalCount;
      if (o + 2 * n > into.removals.length) into.removals = grown(into.removals, o + 2 * n);
      for (let k = 0; k < n; k++, o += 2) hashKeyFrom(text, keyIndex(r, table, text.count), ti, into.removals, o);
      into.removalCount += n;
    },
  );
}

function grown(a: Uint32Array, n: number): Uint32Array {
  const next = new Uint32Array(Math.max(n, 2 * a.length));
  next.set(a);
  return next;
}

const sectionsOfLists = (lists: EntryLists): Section[] =>
  TABLES.filter((t) => (lists[t]?.length ?? 0) > 0).map((t) => ({ table: t, upsert: lists[t]!, remove: [] }));

const sectionsOfDelta = (d: HostDelta): Section[] =>
  TABLES.filter((t) => d[t] && (d[t]!.upsert.length || d[t]!.remove.length)).map((t) => ({
    table: t,
    upsert: d[t]!.upsert as AnyEntry[],
    remove: d[t]!.remove,
  }));

export function encodeHello(m: Omit<Hello, 'type' | 'protocol'> & { protocol?: number }): Buffer {
  const w = new Writer(256);
  w.u8(T_HELLO);
  w.u8(m.protocol ?? PROTOCOL_VERSION);
  w.utf8(m.hostId);
  w.utf8(m.credential);
  w.utf8(m.vtepIp);
  w.utf8(m.epoch);
  w.varuint(m.version);
  w.varuint(m.revision);
  w.utf8(m.digest);
  return w.finish();
}

/** A snapshot from entry lists (the controller encodes without building a HostState). */
export function encodeSnapshot(h: { epoch: string; version: number; revision: number; digest: string }, lists: EntryLists): Buffer {
  const w = new Writer(64 * 1024);
  w.u8(T_SNAPSHOT);
  w.utf8(h.epoch);
  w.varuint(h.version);
  w.varuint(h.revision);
  w.utf8(h.digest);
  writeBody(w, sectionsOfLists(lists));
  return w.finish();
}

export function stateLists(s: HostState): EntryLists {
  const out: EntryLists = {};
  for (const t of TABLES) if (s[t].size) out[t] = [...(s[t] as Map<string, AnyEntry>).values()];
  return out;
}

export function encodeDelta(h: { epoch: string; fromVersion: number; version: number; revision: number; digest: string }, delta: HostDelta): Buffer {
  const w = new Writer(2048);
  w.u8(T_DELTA);
  w.utf8(h.epoch);
  w.varuint(h.fromVersion);
  w.varuint(h.version);
  w.varuint(h.revision);
  w.utf8(h.digest);
  writeBody(w, sectionsOfDelta(delta));
  return w.finish();
}

export function encodeAck(version: number, digest: string): Buffer {
  const w = new Writer(32);
  w.u8(T_ACK);
  w.varuint(version);
  w.utf8(digest);
  return w.finish();
}

export function encodeNack(version: number, reason: string): Buffer {
  const w = new Writer(64 + reason.length * 3);
  w.u8(T_NACK);
  w.varuint(version);
  w.utf8(reason.slice(0, 4000));
  return w.finish();
}

export function encode(m: Message): Buffer {
  switch (m.type) {
    case 'hello':
      return encodeHello(m);
    case 'snapshot':
      return encodeSnapshot(m, stateLists(m.state));
    case 'delta':
      return encodeDelta(m, m.delta);
    case 'ack':
      return encodeAck(m.version, m.digest);
    case 'nack':
      return encodeNack(m.version, m.reason);
    default: {
      const _: never = m;
      throw new WireError(`unknown message ${JSON.stringify(_)}`);
    }
  }
}

/** The header fields of a snapshot or delta (a snapshot has no fromVersion on the wire: 0). */
export interface StateHeader {
  type: 'snapshot' | 'delta';
  epoch: string;
  fromVersion: number;
  version: number;
  revision: number;
  digest: string;
}

function readStateHeader(r: Reader, type: 'snapshot' | 'delta'): StateHeader {
  const epoch = r.utf8();
  const fromVersion = type === 'delta' ? r.varuint() : 0;
  const version = r.varuint();
  const revision = r.varuint();
  const digest = r.utf8();
  return { type, epoch, fromVersion, version, revision, digest };
}

/**
 * A snapshot or delta as received with its body not decoded: for a holder
 * that reads the body itself (DigestMirror.applyFrame, through hashFrameBody).
 */
export interface StateFrame extends StateHeader {
  frame: Buffer;
  /** where the body starts in `frame` */
  bodyAt: number;
}

/** The header of a snapshot or delta frame; null for a hello, ack or nack; a WireError for an unknown type or a malformed header. */
export function decodeStateFrame(frame: Buffer): StateFrame | null {
  const r = new Reader(frame);
  const type = r.u8();
  if (type === T_HELLO || type === T_ACK || type === T_NACK) return null;
  if (type !== T_SNAPSHOT && type !== T_DELTA) throw new WireError(`unknown message type ${type}`);
  const h = readStateHeader(r, type === T_SNAPSHOT ? 'snapshot' : 'delta');
  return { ...h, frame, bodyAt: r.pos };
}

/**
 * Reads a StateFrame's body into hashes (BodyHashes), checking it as decode
 * does: a frame decode refuses with a WireError is refused here with one too.
 */
export function hashFrameBody(f: StateFrame, into: BodyHashes): void {
  const r = new Reader(f.frame);
  r.pos = f.bodyAt;
  readBodyHashes(r, into);
  if (f.type === 'snapshot' && into.removalCount > 0) throw new WireError('a snapshot removes nothing');
  if (!r.done) throw new WireError(`${f.frame.length - r.pos} trailing bytes after ${f.type}`);
}

/**
 * What the controller accepts from an agent: a hello, an ack or a nack. A
 * snapshot or delta (the controller's own messages) is refused from its type
 * byte, before its body is read.
 */
export function decodeFromAgent(buf: Buffer): Hello | Ack | Nack {
  const type = buf.length > 0 ? buf[0] : -1;
  if (type === T_SNAPSHOT || type === T_DELTA) throw new WireError(`a ${type === T_SNAPSHOT ? 'snapshot' : 'delta'} is the controller's message, not an agent's`);
  const m = decode(buf) as Hello | Ack | Nack;
  if (m.type === 'hello' && m.version > MAX_HELLO_VERSION) throw new WireError(`hello claims version ${m.version}, beyond any a controller issues`);
  return m;
}

export function decode(buf: Buffer): Message {
  const r = new Reader(buf);
  const type = r.u8();
  let m: Message;
  switch (type) {
    case T_HELLO:
      m = {
        type: 'hello',
        protocol: r.u8(),
        hostId: r.utf8(),
        credential: r.utf8(),
        vtepIp: r.utf8(),
        epoch: r.utf8(),
        version: r.varuint(),
        revision: r.varuint(),
        digest: r.utf8(),
      };
      break;
    case T_SNAPSHOT: {
      const h = readStateHeader(r, 'snapshot');
      const state = emptyHostState();
      for (const s of readBody(r)) {
        if (s.remove.length) throw new WireError('a snapshot removes nothing');
        const m = state[s.table] as Map<string, AnyEntry>;
        const key = keyOf[s.table] as (e: AnyEntry) => string;
        for (const e of s.upsert) m.set(key(e), e);
      }
      m = { type: 'snapshot', epoch: h.epoch, version: h.version, revision: h.revision, digest: h.digest, state };
      break;
    }
    case T_DELTA: {
      const h = readStateHeader(r, 'delta');
      const delta: HostDelta = {};
      for (const s of readBody(r)) (delta as Record<string, unknown>)[s.table] = { upsert: s.upsert, remove: s.remove };
      m = { ...h, type: 'delta', delta };
      break;
    }
    case T_ACK:
      m = { type: 'ack', version: r.varuint(), digest: r.utf8() };
      break;
    case T_NACK:
      m = { type: 'nack', version: r.varuint(), reason: r.utf8() };
      break;
    default:
      throw new WireError(`unknown message type ${type}`);
  }
  if (!r.done) throw new WireError(`${buf.length - r.pos} trailing bytes after ${m.type}`);
  return m;
}
