/**
 * Byte-level codec of the agent protocol: a growable writer, a bounds-checked
 * reader, and the encoding of HostState entries driven by the compiler's
 * SCHEMA (so both ends agree on field order by construction).
 *
 * Strings of one message go into a string table at its start and fields refer
 * to them by index: a subnet id, a domain id or a VTEP address repeated over
 * thousands of entries is stored once and costs one or two bytes per use
 * (values that occur once per message, like an endpoint's id, are appended
 * without looking for an earlier copy). Table strings that look
 * like a UUID, an IPv4 address, a MAC or an IPv4 prefix are stored in binary
 * (16, 4, 6, 5 bytes) when the text round-trips exactly.
 * Pure: no sockets, timers or logging.
 */
import {
  FINGERPRINT_NULL,
  FINGERPRINT_SEPARATOR,
  hashFeed,
  hashFeedCodes,
  hashFinishInto,
  hashStart,
  KEY_FIELDS,
  KEY_SEPARATOR,
  perTable,
  portsText,
  TABLES,
  type AnyEntry,
  type FieldType,
  type TableName,
} from '#sdn/compiler';

/** Every decoding failure; the receiver closes the connection with it. */
export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

export class Writer {
  /** @internal */ buf: Buffer;
  /** @internal */ pos = 0;
  constructor(initial = 1024) {
    this.buf = Buffer.allocUnsafe(initial);
  }
  /** @internal makes room for n more bytes */
  room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.pos++] = v;
  }
  /** unsigned LEB128, up to 2^53 */
  varuint(v: number): void {
    if (v >>> 0 === v) {
      // the common case (indexes, counts, versions): 32-bit arithmetic
      this.room(5);
      while (v >= 0x80) {
        this.buf[this.pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      this.buf[this.pos++] = v;
      return;
    }
    if (!Number.isSafeInteger(v) || v < 0) throw new WireError(`not an unsigned integer: ${v}`);
    this.room(8);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }
  utf8(s: string): void {
    const n = Buffer.byteLength(s);
    this.varuint(n);
    this.room(n);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new WireError(`truncated message: need ${n} bytes at offset ${this.pos} of ${this.buf.length}`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++];
  }
  varuint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.u8();
      v += (b & 0x7f) * mul;
      if (b < 0x80) {
        // eight bytes hold 56 bits: past 2^53 - 1 a number no longer counts exactly (the writer refuses such values too)
        if (i === 7 && v > Number.MAX_SAFE_INTEGER) throw new WireError(`varint beyond 2^53 - 1 at offset ${this.pos}`);
        return v;
      }
      mul *= 0x80;
    }
    throw new WireError(`varint too long at offset ${this.pos}`);
  }
  /** Moves past n bytes and returns where they start (no Buffer view made: the hot path reads them from buf). */
  skip(n: number): number {
    this.need(n);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  utf8(): string {
    const n = this.varuint();
    const at = this.skip(n);
    return this.buf.toString('utf8', at, at + n);
  }
  get done(): boolean {
    return this.pos === this.buf.length;
  }
}

// ------------------------------------------------------------ string table

const KIND_UTF8 = 0;
const KIND_UUID = 1;
const KIND_IPV4 = 2;
const KIND_MAC = 3;
const KIND_IPV4_CIDR = 4;

/** hex digit value of a lower-case hex character code, or -1 (upper case would not round-trip) */
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = 10 + i;

/** Writes `count` hex pairs of s starting at `from`, skipping separator positions; false when a character is not lower-case hex. */
function writeHex(w: Writer, s: string, kind: number, count: number, positions: readonly number[]): boolean {
  w.room(1 + count);
  const buf = w.buf;
  let at = w.pos + 1;
  for (let k = 0; k < count; k++) {
    const p = positions[k];
    const c1 = s.charCodeAt(p);
    const c2 = s.charCodeAt(p + 1);
    const hi = c1 < 128 ? HEX[c1] : -1;
    const lo = c2 < 128 ? HEX[c2] : -1;
    if (hi < 0 || lo < 0) return false;
    buf[at++] = (hi << 4) | lo;
  }
  buf[w.pos] = kind;
  w.pos = at;
  return true;
}

const UUID_PAIRS = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
const MAC_PAIRS = [0, 3, 6, 9, 12, 15];

const v4 = new Int32Array(5);

/** Parses canonical dotted IPv4 (no leading zeros) with an optional /len into `v4`; returns 4, 5 (with a prefix length) or 0 when s is not exactly that. */
function parseV4(s: string): number {
  let count = 0;
  let n = 0;
  let digits = 0;
  let lead0 = false;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : -1;
    if (c >= 48 && c <= 57) {
      if (digits === 0) lead0 = c === 48;
      else if (lead0) return 0;
      n = n * 10 + (c - 48);
      if (++digits > 3) return 0;
      continue;
    }
    if (digits === 0) return 0;
    v4[count++] = n;
    n = 0;
    digits = 0;
    if (c === 46 /* . */) {
      if (count >= 4) return 0;
    } else if (c === 47 /* / */) {
      if (count !== 4) return 0;
    } else if (c === -1) break;
    else return 0;
  }
  if (count !== 4 && count !== 5) return 0;
  if (v4[0] > 255 || v4[1] > 255 || v4[2] > 255 || v4[3] > 255) return 0;
  if (count === 5 && v4[4] > 32) return 0;
  return count;
}

function writeTableString(w: Writer, s: string): void {
  const len = s.length;
  if (len === 36 && s.charCodeAt(8) === 45 && s.charCodeAt(13) === 45 && s.charCodeAt(18) === 45 && s.charCodeAt(23) === 45) {
    if (writeHex(w, s, KIND_UUID, 16, UUID_PAIRS)) return;
  } else if (len === 17 && s.charCodeAt(2) === 58 && s.charCodeAt(5) === 58 && s.charCodeAt(8) === 58 && s.charCodeAt(11) === 58 && s.charCodeAt(14) === 58) {
    if (writeHex(w, s, KIND_MAC, 6, MAC_PAIRS)) return;
  } else if (len >= 7 && len <= 18) {
    const count = parseV4(s);
    if (count > 0) {
      w.room(1 + count);
      w.buf[w.pos++] = count === 4 ? KIND_IPV4 : KIND_IPV4_CIDR;
      for (let i = 0; i < count; i++) w.buf[w.pos++] = v4[i];
      return;
    }
  }
  w.u8(KIND_UTF8);
  w.utf8(s);
}

// Strings are assembled as ASCII in a scratch buffer and read out once: a flat
// string, where concatenation would leave a rope that every hash-map lookup of
// the key (the agent's tables) must first flatten.
const scratch = Buffer.alloc(64);
const HEX_ASCII = Buffer.from('0123456789abcdef', 'latin1');

/** Where a binary-form string's text is written: a byte scratch (then read out as a string) or a TableText's character codes. */
type Chars = Uint8Array | Uint16Array;

function hexPair(out: Chars, at: number, v: number): number {
  out[at] = HEX_ASCII[v >> 4];
  out[at + 1] = HEX_ASCII[v & 15];
  return at + 2;
}

function decimal(out: Chars, at: number, v: number): number {
  if (v >= 100) out[at++] = 48 + Math.floor(v / 100);
  if (v >= 10) out[at++] = 48 + (Math.floor(v / 10) % 10);
  out[at++] = 48 + (v % 10);
  return at;
}

/** Per byte, whether a separator precedes its hex pair in the text: where the text positions (UUID_PAIRS, MAC_PAIRS) skip a character. */
const breaksOf = (pairs: readonly number[]) => pairs.map((p, i) => i > 0 && p !== pairs[i - 1] + 2);
const UUID_BREAKS = breaksOf(UUID_PAIRS);
const MAC_BREAKS = breaksOf(MAC_PAIRS);

/** Writes `count` bytes as lower-case hex pairs, with `sep` before the positions marked in `breaks`; returns the end. */
function hexText(r: Reader, count: number, sep: number, breaks: readonly boolean[], out: Chars, at: number): number {
  const b = r.buf;
  const from = r.skip(count);
  for (let i = 0; i < count; i++) {
    if (breaks[i]) out[at++] = sep;
    at = hexPair(out, at, b[from + i]);
  }
  return at;
}

/** Writes the text of a table string stored in a binary form (`kind` other than KIND_UTF8) into `out` at `at`; returns the end (at most 36 characters). */
function binaryText(r: Reader, kind: number, out: Chars, at: number): number {
  switch (kind) {
    case KIND_UUID:
      return hexText(r, 16, 45 /* - */, UUID_BREAKS, out, at);
    case KIND_MAC:
      return hexText(r, 6, 58 /* : */, MAC_BREAKS, out, at);
    case KIND_IPV4:
    case KIND_IPV4_CIDR: {
      const b = r.buf;
      const from = r.skip(kind === KIND_IPV4 ? 4 : 5);
      for (let i = 0; i < 4; i++) {
        if (i > 0) out[at++] = 46; // .
        at = decimal(out, at, b[from + i]);
      }
      if (kind === KIND_IPV4_CIDR) {
        const len = b[from + 4];
        if (len > 32) throw new WireError(`bad IPv4 prefix length ${len}`);
        out[at++] = 47; // /
        at = decimal(out, at, len);
      }
      return at;
    }
    default:
      throw new WireError(`unknown string kind ${kind} at offset ${r.pos - 1}`);
  }
}

function readTableString(r: Reader): string {
  const kind = r.u8();
  if (kind === KIND_UTF8) return r.utf8();
  return scratch.toString('latin1', 0, binaryText(r, kind, scratch, 0));
}

/** A string table's length, checked against the message's (each string takes at least one byte). */
function tableLength(r: Reader): number {
  const n = r.varuint();
  if (n > r.buf.length) throw new WireError(`string table of ${n} entries in a ${r.buf.length}-byte message`);
  return n;
}

/** The longest text binaryText writes (a UUID) */
const BINARY_TEXT_MAX = 36;

/**
 * A message's string table as character codes in one array: string i is
 * `codes[start[i] .. end[i])`, the same text StringTable.read returns, but
 * without making a string. For a holder that hashes entries straight from
 * the wire (DigestMirror); the arrays are reused from message to message.
 */
export class TableText {
  codes = new Uint16Array(4096);
  start = new Int32Array(256);
  end = new Int32Array(256);
  count = 0;

  read(r: Reader): void {
    const n = tableLength(r);
    if (n > this.start.length) {
      this.start = new Int32Array(2 * n);
      this.end = new Int32Array(2 * n);
    }
    const b = r.buf;
    let at = 0;
    for (let i = 0; i < n; i++) {
      this.start[i] = at;
      const kind = r.u8();
      if (kind === KIND_UTF8) {
        const len = r.varuint();
        const from = r.skip(len);
        this.room(at + len);
        const codes = this.codes;
        let j = 0;
        while (j < len && b[from + j] < 0x80) codes[at++] = b[from + j++];
        if (j < len) {
          // not ASCII: the characters UTF-8 decoding gives (replacement characters included), as StringTable.read
          at -= j;
          const text = b.toString('utf8', from, from + len);
          this.room(at + text.length);
          for (let k = 0; k < text.length; k++) this.codes[at++] = text.charCodeAt(k);
        }
      } else {
        this.room(at + BINARY_TEXT_MAX);
        at = binaryText(r, kind, this.codes, at);
      }
      this.end[i] = at;
    }
    this.count = n;
  }

  private room(n: number): void {
    if (n <= this.codes.length) return;
    const next = new Uint16Array(Math.max(n, 2 * this.codes.length));
    next.set(this.codes);
    this.codes = next;
  }
}

/** Collects the strings of a message and gives each an index. */
export class StringTable {
  readonly index = new Map<string, number>();
  readonly list: string[] = [];
  /** Appends a string without looking for an earlier copy (for values that occur once per message). */
  add(s: string): number {
    this.list.push(s);
    return this.list.length - 1;
  }
  ref(s: string): number {
    let i = this.index.get(s);
    if (i === undefined) {
      i = this.list.length;
      this.index.set(s, i);
      this.list.push(s);
    }
    return i;
  }
  write(w: Writer): void {
    w.varuint(this.list.length);
    for (const s of this.list) writeTableString(w, s);
  }
  static read(r: Reader): string[] {
    const n = tableLength(r);
    const out = new Array<string>(n);
    for (let i = 0; i < n; i++) out[i] = readTableString(r);
    return out;
  }
}

// ------------------------------------------------------------------ entries

/**
 * Fields whose value occurs once per message (an endpoint's id, address, MAC:
 * an endpoint is one entry per table on a host) go into the string table
 * without a lookup for an earlier copy; the others (domain, subnet, VTEP, set
 * names) repeat over many entries and are shared. Decoding is the same either way.
 */
const ONCE_PER_MESSAGE = new Set(['endpointId', 'mac', 'ip', 'cidr', 'ifName']);

/** An enum field's index on the wire; an unknown value is a WireError naming the field. */
function enumIndex(values: readonly string[], v: unknown, what: string): number {
  const i = values.indexOf(v as string);
  if (i < 0) throw new WireError(`${what}: ${String(v)} is not one of ${values.join(', ')}`);
  return i;
}

function writePorts(w: Writer, ps: { from: number; to: number }[]): void {
  w.varuint(ps.length);
  for (const p of ps) {
    w.varuint(p.from);
    w.varuint(p.to);
  }
}

/** Per table: the field loops of collectEntries and writeEntries written out (perTable). */
const COLLECT = perTable(
  (names, types, field) =>
    new Function(
      `return function (st, e, refs) {
        let v;
        ${names
          .map((n, k) => {
            if (types[k].t === 'str') return `refs.push(st.${ONCE_PER_MESSAGE.has(n) ? 'add' : 'ref'}(e${field(n)}));`;
            if (types[k].t === 'nstr') return `v = e${field(n)}; refs.push(v === null ? -1 : st.ref(v));`;
            return '';
          })
          .join('\n')}
      };`,
    )() as (st: StringTable, e: AnyEntry, refs: number[]) => void,
);

const WRITE = perTable((names, types, field, table) => {
  const enums: Array<readonly string[]> = [];
  const code = names.map((n, k) => {
    const type = types[k];
    const get = `e${field(n)}`;
    switch (type.t) {
      case 'str':
        return 'w.varuint(refs[at++]);';
      case 'nstr':
        return 'w.varuint(refs[at++] + 1);'; // null (-1) is 0
      case 'uint':
        return `w.varuint(${get});`;
      case 'nuint':
        return `v = ${get}; w.varuint(v === null ? 0 : v + 1);`;
      case 'bool':
        return `w.u8(${get} ? 1 : 0);`;
      case 'family':
        return `w.u8(${get});`;
      case 'enum':
        enums.push(type.values);
        return `w.u8(enumIndex(enums[${enums.length - 1}], ${get}, ${JSON.stringify(`${table}.${n}`)}));`;
      case 'ports':
        return `writePorts(w, ${get});`;
      default: {
        const _: never = type;
        throw new WireError(`unknown field type ${JSON.stringify(_)}`);
      }
    }
  });
  return new Function(
    'enumIndex',
    'writePorts',
    'enums',
    `return function (w, e, refs, at) {
      let v;
      ${code.join('\n')}
      return at;
    };`,
  )(enumIndex, writePorts, enums) as (w: Writer, e: AnyEntry, refs: number[], at: number) => number;
});

/**
 * First pass: registers the strings of a table's entries, appending the index
 * of each string field (in field order) to `refs`, which writeEntries then
 * consumes: one string-table lookup per string instead of two.
 */
export function collectEntries(st: StringTable, table: TableName, entries: readonly AnyEntry[], refs: number[]): void {
  const collect = COLLECT[table];
  for (let i = 0; i < entries.length; i++) collect(st, entries[i], refs);
}

/** Second pass: writes a table's entries, reading their string indexes from `refs` at `at`; returns the next position in refs. */
export function writeEntries(w: Writer, table: TableName, entries: readonly AnyEntry[], refs: number[], at: number): number {
  const write = WRITE[table];
  for (let i = 0; i < entries.length; i++) at = write(w, entries[i], refs, at);
  return at;
}

function readPorts(r: Reader, what: string): { from: number; to: number }[] {
  const n = r.varuint();
  if (n > 65536) throw new WireError(`${what}: ${n} port ranges`);
  const ps: { from: number; to: number }[] = [];
  for (let j = 0; j < n; j++) ps.push({ from: r.varuint(), to: r.varuint() });
  return ps;
}

/**
 * Per field of a table, the statement that reads the field into the local
 * `f<k>` and checks it. A string field's local is its string-table index
 * (-1 for a null `nstr`), `count` being the table's length; an enum's is its
 * value. The two readers below share it, so a frame one of them accepts the
 * other accepts too.
 */
function fieldReads(names: readonly string[], types: readonly FieldType[], table: TableName, enums: Array<readonly string[]>): string[] {
  const what = (n: string) => JSON.stringify(`${table}.${n}`);
  return names.map((n, k) => {
    const type = types[k];
    const f = `f${k}`;
    switch (type.t) {
      case 'str':
        return `i = r.varuint(); if (i >= count) throw new WireError(${JSON.stringify(table)} + ': string index ' + i + ' out of ' + count); const ${f} = i;`;
      case 'nstr':
        return `i = r.varuint(); if (i > count) throw new WireError(${JSON.stringify(table)} + ': string index ' + (i - 1) + ' out of ' + count); const ${f} = i - 1;`;
      case 'uint':
        return `const ${f} = r.varuint();`;
      case 'nuint':
        return `i = r.varuint(); const ${f} = i === 0 ? null : i - 1;`;
      case 'bool':
        return `const ${f} = r.u8() === 1;`;
      case 'family':
        return `const ${f} = r.u8(); if (${f} !== 4 && ${f} !== 6) throw new WireError(${what(n)} + ': bad address family ' + ${f});`;
      case 'enum':
        enums.push(type.values);
        return `i = r.u8(); if (i >= enums[${enums.length - 1}].length) throw new WireError(${what(n)} + ': enum index ' + i + ' out of range'); const ${f} = enums[${enums.length - 1}][i];`;
      case 'ports':
        return `const ${f} = readPorts(r, ${what(n)});`;
      default: {
        const _: never = type;
        throw new WireError(`unknown field type ${JSON.stringify(_)}`);
      }
    }
  });
}

/**
 * Per table, the reader of one entry: its fields read in schema order into
 * locals, checked, and returned as one object literal, so that every decoded
 * entry of a table has one shape (fields assigned by name in a loop would
 * leave the stores megamorphic and each object migrating through shapes).
 * Generated from LAYOUT (perTable); no wire data reaches the generated text.
 */
const READ = perTable((names, types, _field, table) => {
  const enums: Array<readonly string[]> = [];
  const reads = fieldReads(names, types, table, enums);
  const value = (k: number) => (types[k].t === 'str' ? `strings[f${k}]` : types[k].t === 'nstr' ? `(f${k} < 0 ? null : strings[f${k}])` : `f${k}`);
  return new Function(
    'WireError',
    'readPorts',
    'enums',
    `return function (r, strings) {
      const count = strings.length;
      let i;
      ${reads.join('\n')}
      return { ${names.map((n, k) => `${JSON.stringify(n)}: ${value(k)}`).join(', ')} };
    };`,
  )(WireError, readPorts, enums) as (r: Reader, strings: string[]) => AnyEntry;
});

/**
 * Per table, the hashing reader of one entry: the fields read and checked as
 * READ does, then hash64 of the entry's fingerprint (digest.ts: the table name
 * and each field's text, each after the separator) and of its key (KEY_FIELDS
 * joined by KEY_SEPARATOR, seeded with the table's index + 1) written into
 * `out[o+2], out[o+3]` and `out[o], out[o+1]`, fed from the string table's
 * character codes: no string or object is made for an entry.
 */
const HASH = perTable((names, types, _field, table) => {
  const enums: Array<readonly string[]> = [];
  const reads = fieldReads(names, types, table, enums);
  const text = (k: number): string => {
    switch (types[k].t) {
      case 'str':
        return `hashFeedCodes(codes, start[f${k}], end[f${k}]);`;
      case 'nstr':
        return `if (f${k} < 0) hashFeed(NULL); else hashFeedCodes(codes, start[f${k}], end[f${k}]);`;
      case 'nuint':
        return `hashFeed(f${k} === null ? NULL : String(f${k}));`;
      case 'ports':
        return `hashFeed(portsText(f${k}));`;
      default:
        // uint, family, bool, enum: String() of the value, as the fingerprint writes it
        return `hashFeed(String(f${k}));`;
    }
  };
  const keyText = KEY_FIELDS[table].map((n) => {
    const k = names.indexOf(n);
    if (k < 0 || (types[k].t !== 'str' && types[k].t !== 'uint')) throw new Error(`key field ${table}.${n} must be a str or uint field`);
    return text(k);
  });
  return new Function(
    'WireError',
    'readPorts',
    'enums',
    'hashStart',
    'hashFeed',
    'hashFeedCodes',
    'hashFinishInto',
    'portsText',
    'SEP',
    'NULL',
    `return function (r, t, out, o) {
      const count = t.count, codes = t.codes, start = t.start, end = t.end;
      let i;
      ${reads.join('\n')}
      hashStart(0);
      hashFeed(${JSON.stringify(table)});
      ${names.map((_n, k) => `hashFeed(SEP); ${text(k)}`).join('\n')}
      hashFinishInto(out, o + 2);
      hashStart(${TABLES.indexOf(table) + 1});
      ${keyText.join(` hashFeed(${JSON.stringify(KEY_SEPARATOR)});\n`)}
      hashFinishInto(out, o);
    };`,
  )(WireError, readPorts, enums, hashStart, hashFeed, hashFeedCodes, hashFinishInto, portsText, FINGERPRINT_SEPARATOR, FINGERPRINT_NULL) as (
    r: Reader,
    t: TableText,
    out: Uint32Array,
    o: number,
  ) => void;
});

/** Reads one entry of `table` and writes its key hash and entry hash into `out` at `o` (4 words; see HASH). */
export function hashEntryFrom(r: Reader, t: TableText, table: TableName, out: Uint32Array, o: number): void {
  HASH[table](r, t, out, o);
}

/** hash64 of string i of `t` as a key of table `tableIndex` (seeded with tableIndex + 1, as HASH hashes an entry's key), into `out` at `o`. */
export function hashKeyFrom(t: TableText, i: number, tableIndex: number, out: Uint32Array, o: number): void {
  hashStart(tableIndex + 1);
  hashFeedCodes(t.codes, t.start[i], t.end[i]);
  hashFinishInto(out, o);
}

/** Reads n entries of one table. */
export function readEntries(r: Reader, strings: string[], table: TableName, n: number): AnyEntry[] {
  const read = READ[table];
  const out: AnyEntry[] = new Array(n);
  for (let j = 0; j < n; j++) out[j] = read(r, strings);
  return out;
}

export const tableIndex = (t: TableName) => TABLES.indexOf(t);
export function tableAt(i: number): TableName {
  const t = TABLES[i];
  if (t === undefined) throw new WireError(`unknown table ${i}`);
  return t;
}
