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
import { collectEntries, readEntries, Reader, StringTable, tableAt, tableIndex, WireError, writeEntries, Writer } from './codec';

export const PROTOCOL_VERSION = 1;

/** WebSocket close codes the controller uses (4000-4999 are the application's). */
export const CLOSE_AUTH_FAILED = 4001;
export const CLOSE_PROTOCOL_ERROR = 4002;
export const CLOSE_REPLACED = 4003;
export const CLOSE_SHUTDOWN = 4004;

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

function readBody(r: Reader): Section[] {
  const strings = StringTable.read(r);
  const n = r.varuint();
  if (n > TABLES.length) throw new WireError(`${n} table sections`);
  const out: Section[] = [];
  const seen = new Set<TableName>();
  for (let i = 0; i < n; i++) {
    const table = tableAt(r.u8());
    if (seen.has(table)) throw new WireError(`table ${table} twice`);
    seen.add(table);
    const nu = r.varuint();
    if (nu > r.buf.length) throw new WireError(`${table}: ${nu} entries in a ${r.buf.length}-byte message`);
    const upsert = readEntries(r, strings, table, nu);
    const nr = r.varuint();
    if (nr > r.buf.length) throw new WireError(`${table}: ${nr} removals in a ${r.buf.length}-byte message`);
    const remove: string[] = new Array(nr);
    for (let k = 0; k < nr; k++) {
      const idx = r.varuint();
      if (idx >= strings.length) throw new WireError(`${table}: key index ${idx} out of ${strings.length}`);
      remove[k] = strings[idx];
    }
    out.push({ table, upsert, remove });
  }
  return out;
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
      const epoch = r.utf8();
      const version = r.varuint();
      const revision = r.varuint();
      const digest = r.utf8();
      const state = emptyHostState();
      for (const s of readBody(r)) {
        if (s.remove.length) throw new WireError('a snapshot removes nothing');
        const m = state[s.table] as Map<string, AnyEntry>;
        const key = keyOf[s.table] as (e: AnyEntry) => string;
        for (const e of s.upsert) m.set(key(e), e);
      }
      m = { type: 'snapshot', epoch, version, revision, digest, state };
      break;
    }
    case T_DELTA: {
      const epoch = r.utf8();
      const fromVersion = r.varuint();
      const version = r.varuint();
      const revision = r.varuint();
      const digest = r.utf8();
      const delta: HostDelta = {};
      for (const s of readBody(r)) (delta as Record<string, unknown>)[s.table] = { upsert: s.upsert, remove: s.remove };
      m = { type: 'delta', epoch, fromVersion, version, revision, digest, delta };
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
