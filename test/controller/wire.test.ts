import { strict as assert } from 'node:assert';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import {
  cloneState,
  compileAll,
  describeDifference,
  diffStates,
  digestOf,
  emptyHostState,
  entryHashInto,
  hashInto,
  keyOf,
  LAYOUT,
  stateSize,
  TABLES,
  type AnyEntry,
  type FieldType,
  type HostDelta,
  type HostState,
  type TableName,
} from '#sdn/compiler';
import {
  AgentClient,
  AgentServer,
  type AgentServerOptions,
  AgentSession,
  BodyHashes,
  decode,
  decodeStateFrame,
  DigestMirror,
  encodeDelta,
  encodeHello,
  encodeNack,
  encodeSnapshot,
  hashFrameBody,
  MAX_AGENT_MESSAGE,
  MAX_HELLO_VERSION,
  Reader,
  StateMirror,
  StringTable,
  type StateFrame,
  stateLists,
  WireError,
  Writer,
} from '#sdn/wire';
import fc from 'fast-check';
import WebSocket from 'ws';
import { World } from '../../libs/compiler/test/support/world';

function smallWorld() {
  const w = new World();
  const ent = w.enterprise();
  const d = w.domain(ent);
  const z = w.zone(d);
  const s4 = w.subnet(z);
  const s6 = w.subnet(z, 6);
  const hosts = [w.host(), w.host(), w.host()];
  const web = w.group(d, 'web');
  const db = w.group(d, 'db');
  const m = w.macro(ent, '198.51.100.0/24');
  w.rule(d, { appliesTo: { type: 'policyGroup', id: db.id }, peer: { type: 'policyGroup', id: web.id }, destinationPorts: ['5432', '8000-8080'] });
  w.rule(d, { direction: 'egress', peer: { type: 'networkMacro', id: m.id }, protocol: 'any' });
  for (let i = 0; i < 12; i++) w.endpoint(i % 3 ? s4 : s6, hosts[i % 3], [i % 2 ? web : db]);
  return { w, hosts, s4, web };
}

/** A snapshot or delta frame as a client with option `frames` delivers it. */
function frameOf(frame: Buffer): StateFrame {
  const f = decodeStateFrame(frame);
  if (!f) throw new Error('not a snapshot or delta');
  return f;
}

/** A DigestMirror fed one delta per version, each checked against the digest and size of `held` (what it must hold by then). */
function checkedMirror(held: HostState): (delta: HostDelta) => void {
  // one with the smallest table, one that starts larger (expecting 3,000 entries: 8,192 slots, which up to 5,000 keys still outgrow)
  const mirrors = [new DigestMirror(), new DigestMirror(3000)];
  let version = 0;
  return (delta) => {
    version++;
    const frame = encodeDelta({ epoch: 'e', fromVersion: version - 1, version, revision: version, digest: digestOf(held) }, delta);
    for (const lean of mirrors) {
      assert.deepEqual(lean.applyFrame(frameOf(frame)), { ok: true });
      assert.equal(lean.size, stateSize(held));
    }
  };
}

describe('wire codec', () => {
  it('round-trips every host state of a compiled model as a snapshot, with the same digest', () => {
    const { w } = smallWorld();
    for (const [hostId, state] of compileAll(w.snapshot())) {
      const frame = encodeSnapshot({ epoch: 'e1', version: 7, revision: 70, digest: digestOf(state) }, stateLists(state));
      const m = decode(frame);
      assert.equal(m.type, 'snapshot');
      if (m.type !== 'snapshot') return;
      assert.deepEqual(describeDifference(m.state, state), [], `host ${hostId}`);
      assert.equal(digestOf(m.state), m.digest);
      assert.equal(m.version, 7);
      assert.equal(m.revision, 70);
    }
  });

  it('round-trips a delta with removals and is compact (binary ids and addresses)', () => {
    const { w, hosts, s4, web } = smallWorld();
    const before = compileAll(w.snapshot());
    w.endpoint(s4, hosts[0], [web]);
    const gone = w.list('endpoint')[0];
    w.deleteEndpoint(gone);
    const after = compileAll(w.snapshot());
    const h = hosts[1].id;
    const delta = diffStates(before.get(h)!, after.get(h)!);
    const frame = encodeDelta({ epoch: 'e1', fromVersion: 3, version: 4, revision: 40, digest: digestOf(after.get(h)!) }, delta);
    const m = decode(frame);
    assert.equal(m.type, 'delta');
    if (m.type !== 'delta') return;
    const mirror = new StateMirror();
    assert.deepEqual(mirror.applySnapshot({ epoch: 'e1', version: 3, revision: 30, digest: digestOf(before.get(h)!), state: cloneState(before.get(h)!) }), { ok: true });
    assert.deepEqual(mirror.applyDelta(m), { ok: true });
    assert.deepEqual(describeDifference(mirror.state, after.get(h)!), []);
    // one new remote endpoint + set element + one removal: well under the size of the same as JSON
    assert.ok(frame.length < JSON.stringify(delta).length / 2, `${frame.length} bytes`);
  });

  it('keeps every key of a DigestMirror findable through growth and removals', () => {
    // thousands of keys of one table: the open-addressing table grows several times, and removals shift runs back;
    // a key lost by either would be added twice on its next upsert or not subtracted on its removal: a wrong digest
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.array(fc.nat(4999), { minLength: 200, maxLength: 2000 })), { minLength: 4, maxLength: 12 }), (steps) => {
        const held = emptyHostState();
        const step = checkedMirror(held);
        for (const [upsert, keys] of steps) {
          const delta: HostDelta = { setElements: { upsert: [], remove: [] } };
          for (const k of new Set(keys)) {
            const e = { set: `s${k % 7}`, cidr: `10.${k >> 8}.${k & 255}.0/32` };
            const key = `${e.set}|${e.cidr}`;
            if (upsert) {
              delta.setElements!.upsert.push(e);
              held.setElements.set(key, e);
            } else {
              delta.setElements!.remove.push(key);
              held.setElements.delete(key);
            }
          }
          step(delta);
        }
      }),
      { numRuns: 20 },
    );
  });

  it("keeps a DigestMirror's keys findable where a run of slots wraps past the table's end", () => {
    // keys whose home slots are the last three and the first two of the smallest table (1,024 slots):
    // they form one run that wraps around; every removal order must leave the others findable
    const seed = TABLES.indexOf('setElements') + 1;
    const lanes = new Uint32Array(2);
    const byHome = new Map<number, Array<{ set: string; cidr: string }>>();
    for (let k = 0; byHome.size < 5 || [...byHome.values()].some((l) => l.length < 2); k++) {
      const e = { set: 'wrap', cidr: `10.${k >> 16}.${(k >> 8) & 255}.${k & 255}/32` };
      hashInto(`${e.set}|${e.cidr}`, seed, lanes, 0);
      const home = lanes[0] & 1023;
      if (home >= 1021 || home <= 1) {
        const l = byHome.get(home) ?? [];
        if (l.length < 2) byHome.set(home, [...l, e]);
      }
    }
    const entries = [...byHome.values()].flat();
    fc.assert(
      fc.property(fc.shuffledSubarray(entries, { minLength: entries.length, maxLength: entries.length }), fc.shuffledSubarray(entries, { minLength: entries.length, maxLength: entries.length }), (ins, del) => {
        const held = emptyHostState();
        const step = checkedMirror(held);
        for (const e of ins) {
          held.setElements.set(`${e.set}|${e.cidr}`, e);
          step({ setElements: { upsert: [e], remove: [] } });
        }
        for (const e of del) {
          held.setElements.delete(`${e.set}|${e.cidr}`);
          step({ setElements: { upsert: [], remove: [`${e.set}|${e.cidr}`] } });
          // what is left is still found: upserting it again changes nothing
          step({ setElements: { upsert: [...held.setElements.values()], remove: [] } });
        }
      }),
      { numRuns: 50 },
    );
  });

  it('holds hashes only in a DigestMirror, which accepts and refuses exactly what a StateMirror does', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(5), fc.nat(20)), { minLength: 1, maxLength: 25 }), (steps) => {
        const { w, hosts, s4, web } = smallWorld();
        const h = hosts[0].id;
        let prev = compileAll(w.snapshot()).get(h)!;
        const full = new StateMirror();
        const lean = new DigestMirror();
        const snapFrame = encodeSnapshot({ epoch: 'e', version: 1, revision: 1, digest: digestOf(prev) }, stateLists(prev));
        const snap = decode(snapFrame);
        if (snap.type !== 'snapshot') throw new Error('not a snapshot');
        assert.deepEqual(full.applySnapshot(snap), { ok: true });
        assert.deepEqual(lean.applyFrame(frameOf(snapFrame)), { ok: true });
        let version = 1;
        for (const [op, pick] of steps) {
          const eps = w.list('endpoint');
          const e = eps[pick % Math.max(1, eps.length)];
          if (op === 0 || !e) w.endpoint(s4, hosts[pick % 3], pick % 2 ? [web] : []);
          else if (op === 1) w.deleteEndpoint(e);
          else if (op === 2) w.updateEndpoint(e, { hostId: hosts[pick % 3].id });
          else if (op === 3) w.updateEndpoint(e, { policyGroupIds: pick % 2 ? [web.id] : [] });
          else w.updateEndpoint(e, { name: `n${pick}` });
          const next = compileAll(w.snapshot()).get(h) ?? prev;
          const delta = diffStates(prev, next);
          const header = { epoch: 'e', fromVersion: version, version: version + 1, revision: version + 1, digest: digestOf(next) };
          // a delta announcing another digest is refused by both
          if (pick % 7 === 0) {
            const bad = frameOf(encodeDelta({ ...header, digest: '0123456789abcdef' }, delta));
            if (Object.keys(delta).length > 0) {
              assert.equal(new DigestMirror().applyFrame(bad).ok, false);
            }
          }
          const frame = encodeDelta(header, delta);
          const m = decode(frame);
          if (m.type !== 'delta') throw new Error('not a delta');
          assert.deepEqual(full.applyDelta(m), { ok: true });
          assert.deepEqual(lean.applyFrame(frameOf(frame)), { ok: true });
          assert.equal(lean.digest.value(), full.digest.value());
          assert.equal(lean.size, Object.values(full.state).reduce((n, t) => n + (t as Map<string, unknown>).size, 0));
          prev = next;
          version++;
        }
        // a snapshot whose content does not match its digest is refused, and what was held stays
        const held = { digest: lean.digest.value(), size: lean.size, version: lean.version };
        const wrong = frameOf(encodeSnapshot({ epoch: 'f', version: version + 1, revision: 0, digest: 'ffffffffffffffff' }, stateLists(prev)));
        assert.equal(lean.applyFrame(wrong).ok, false);
        assert.deepEqual({ digest: lean.digest.value(), size: lean.size, version: lean.version }, held);
      }),
      { numRuns: 40 },
    );
  });

  it('round-trips any string exactly, using the binary forms only where the text comes back the same', () => {
    const roundTrip = (xs: string[]) => {
      const st = new StringTable();
      for (const x of xs) st.ref(x);
      const w = new Writer(16);
      st.write(w);
      return StringTable.read(new Reader(w.finish()));
    };
    const special = [
      '0a1b2c3d-0000-4000-8000-00000000abcd', '0A1B2C3D-0000-4000-8000-00000000ABCD', '0a1b2c3d-0000-4000-8000-00000000abcg',
      '02:00:0a:ff:00:01', '02:00:0A:FF:00:01', '10.0.0.1', '010.0.0.1', '10.0.0.1/32', '10.0.0.0/08', '10.0.0.0/33', '256.1.1.1',
      '0.0.0.0/0', '255.255.255.255', '1.2.3', '1.2.3.4.5', '1.2.3.4/', '.1.2.3', 'fd00::1/128', '', 'ép', '10|192.0.2.1',
    ];
    assert.deepEqual(roundTrip(special), special);
    const mac = fc
      .tuple(fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }), fc.boolean())
      .map(([b, upper]) => ((m) => (upper ? m.toUpperCase() : m))(b.map((x) => x.toString(16).padStart(2, '0')).join(':')));
    fc.assert(fc.property(fc.array(fc.oneof(fc.string(), fc.uuid(), fc.ipV4(), mac, fc.tuple(fc.ipV4(), fc.nat(40)).map(([ip, n]) => `${ip}/${n}`))), (xs) => {
      const uniq = [...new Set(xs)];
      assert.deepEqual(roundTrip(uniq), uniq);
    }));
    // the binary forms are what makes entries small
    const w = new Writer(16);
    const st = new StringTable();
    st.ref('0a1b2c3d-0000-4000-8000-00000000abcd');
    st.ref('10.0.0.1/32');
    st.write(w);
    assert.equal(w.finish().length, 1 + 17 + 6);
  });

  it('reads every varuint the writer writes and refuses one past 2^53 - 1', () => {
    for (const v of [0, 127, 128, 2 ** 32, 2 ** 49 - 1, 2 ** 49, Number.MAX_SAFE_INTEGER]) {
      const w = new Writer(16);
      w.varuint(v);
      assert.equal(new Reader(w.finish()).varuint(), v);
    }
    // 2^53 in eight LEB128 bytes: seven 0x80 and a final 0x10 (16 * 2^49)
    const past = Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    assert.throws(() => new Reader(past).varuint(), (e) => e instanceof WireError && /beyond 2\^53/.test((e as Error).message));
  });
  it('rejects truncated and unknown frames with a WireError', () => {
    const { w } = smallWorld();
    const state = [...compileAll(w.snapshot()).values()][0];
    const frame = encodeSnapshot({ epoch: 'e', version: 1, revision: 1, digest: digestOf(state) }, stateLists(state));
    assert.throws(() => decode(frame.subarray(0, frame.length - 3)), WireError);
    assert.throws(() => decode(Buffer.from([99])), WireError);
    assert.throws(() => decodeStateFrame(Buffer.from([99])), WireError);
    assert.throws(() => hashFrameBody(frameOf(frame.subarray(0, frame.length - 3)), new BodyHashes()), WireError);
    assert.throws(() => hashFrameBody(frameOf(Buffer.concat([frame, Buffer.from([0])])), new BodyHashes()), WireError);
    assert.throws(() => decode(Buffer.concat([frame, Buffer.from([0])])), WireError);
  });

  it('decodes a corrupted frame to a WireError or to entries whose every field has its schema type, never to another error', () => {
    const { w } = smallWorld();
    const state = [...compileAll(w.snapshot()).values()][0];
    const frame = encodeSnapshot({ epoch: 'e', version: 1, revision: 1, digest: digestOf(state) }, stateLists(state));
    const typed = (v: unknown, t: FieldType): boolean => {
      switch (t.t) {
        case 'str':
          return typeof v === 'string';
        case 'nstr':
          return v === null || typeof v === 'string';
        case 'uint':
          return Number.isSafeInteger(v) && (v as number) >= 0;
        case 'nuint':
          return v === null || (Number.isSafeInteger(v) && (v as number) >= 0);
        case 'bool':
          return typeof v === 'boolean';
        case 'family':
          return v === 4 || v === 6;
        case 'enum':
          return t.values.includes(v as string);
        case 'ports':
          return Array.isArray(v) && v.every((p) => Number.isSafeInteger(p.from) && Number.isSafeInteger(p.to));
      }
    };
    let refused = 0;
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(frame.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (edits) => {
        const bad = Buffer.from(frame);
        for (const [at, byte] of edits) bad[at] = byte;
        // the hashing reader (DigestMirror) refuses exactly the snapshots and deltas decode refuses
        const hashed = (() => {
          try {
            const f = decodeStateFrame(bad);
            if (!f) return 'another type';
            hashFrameBody(f, new BodyHashes());
            return null;
          } catch (e) {
            if (!(e instanceof WireError)) throw e;
            return e;
          }
        })();
        let m;
        try {
          m = decode(bad);
        } catch (e) {
          if (!(e instanceof WireError)) throw e;
          assert.ok(hashed !== null, `decode refused (${e.message}) what the hashing reader accepts`);
          refused++;
          return;
        }
        if (m.type !== 'snapshot' && m.type !== 'delta') return;
        assert.equal(hashed, null, `the hashing reader refused (${String(hashed)}) what decode accepts`);
        if (m.type !== 'snapshot') return;
        // and what both accept, a DigestMirror holds as decode's entries say
        const lean = new DigestMirror();
        assert.deepEqual(lean.applyFrame({ ...frameOf(bad), digest: digestOf(m.state) }), { ok: true });
        assert.equal(lean.size, stateSize(m.state));
        for (const t of TABLES) {
          const { names, types } = LAYOUT[t];
          for (const e of m.state[t].values()) {
            assert.deepEqual(Object.keys(e), names);
            names.forEach((n, k) => assert.ok(typed((e as unknown as Record<string, unknown>)[n], types[k]), `${t}.${n} = ${JSON.stringify((e as never)[n])}`));
          }
        }
      }),
      { numRuns: 3000 },
    );
    // most corruptions are caught (string indexes, enums, families, lengths); the rest decode to other values
    assert.ok(refused > 1000, `only ${refused} of 3000 corruptions refused`);
  });

  it("hashes every entry straight from the wire to what the decoded entry's key and fingerprint hash to", () => {
    // any field values the schema allows, in every table: binary forms, other text, non-ASCII, nulls, numbers, port lists
    const lowerMac = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }).map((b) => b.map((x) => x.toString(16).padStart(2, '0')).join(':'));
    const text = fc.oneof(fc.string(), fc.string({ unit: 'grapheme', maxLength: 8 }), fc.uuid(), fc.ipV4(), lowerMac, fc.tuple(fc.ipV4(), fc.nat(40)).map(([ip, n]) => `${ip}/${n}`));
    const value = (t: FieldType): fc.Arbitrary<unknown> => {
      switch (t.t) {
        case 'str':
          return text;
        case 'nstr':
          return fc.option(text, { nil: null });
        case 'uint':
          return fc.oneof(fc.nat(), fc.maxSafeNat());
        case 'nuint':
          return fc.option(fc.nat(), { nil: null });
        case 'bool':
          return fc.boolean();
        case 'family':
          return fc.constantFrom(4, 6);
        case 'enum':
          return fc.constantFrom(...t.values);
        case 'ports':
          return fc.array(fc.record({ from: fc.nat(65535), to: fc.nat(65535) }), { maxLength: 3 });
      }
    };
    const entry = (t: TableName) => fc.tuple(...LAYOUT[t].types.map(value)).map((vs) => Object.fromEntries(LAYOUT[t].names.map((n, k) => [n, vs[k]])) as unknown as AnyEntry);
    const lists = fc.record(Object.fromEntries(TABLES.map((t) => [t, fc.array(entry(t), { maxLength: 4 })])) as { [T in TableName]: fc.Arbitrary<AnyEntry[]> });
    const removed = fc.array(fc.tuple(fc.constantFrom(...TABLES), text), { maxLength: 6 });
    fc.assert(
      fc.property(lists, removed, (ls, rm) => {
        const delta: HostDelta = {};
        for (const t of TABLES) (delta as Record<string, unknown>)[t] = { upsert: ls[t], remove: rm.filter(([u]) => u === t).map(([, k]) => k) };
        const h = new BodyHashes();
        hashFrameBody(frameOf(encodeDelta({ epoch: 'e', fromVersion: 1, version: 2, revision: 2, digest: '' }, delta)), h);
        // the frame lists each table's upserts, then its removals, in table order; BodyHashes keeps the two apart in that order
        const want = { upserts: [] as number[], removals: [] as number[] };
        const lanes = new Uint32Array(4);
        TABLES.forEach((t, i) => {
          for (const e of ls[t]) {
            hashInto((keyOf[t] as (x: AnyEntry) => string)(e), i + 1, lanes, 0);
            entryHashInto(t, e, lanes, 2);
            want.upserts.push(...lanes);
          }
          for (const k of delta[t]!.remove) {
            hashInto(k, i + 1, lanes, 0);
            want.removals.push(lanes[0], lanes[1]);
          }
        });
        assert.deepEqual([...h.upserts.subarray(0, 4 * h.upsertCount)], want.upserts);
        assert.deepEqual([...h.removals.subarray(0, 2 * h.removalCount)], want.removals);
      }),
      { numRuns: 300 },
    );
  });
});


async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}/agent`;
}

/** An AgentServer on a loopback HTTP server: its agents' URL, and close() for both. */
async function serveAgents(opts: AgentServerOptions): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer();
  const agents = new AgentServer(opts);
  agents.attach(server);
  const url = await listen(server);
  return {
    url,
    async close() {
      await agents.close();
      server.close();
    },
  };
}

describe('wire loopback', () => {
  it('authenticates, streams a snapshot and a delta, and resumes from the last ack after a reconnect', async () => {
    const { w, hosts } = smallWorld();
    const state = compileAll(w.snapshot()).get(hosts[0].id)!;
    const sessions: AgentSession[] = [];
    const acks: number[] = [];
    const agents = await serveAgents({
      authenticate: async (h) => (h.credential === 'good' ? true : 'bad credential'),
      onSession: (s) => {
        sessions.push(s);
        s.on('ack', (a) => acks.push(a.version));
        if (s.hello.version === 0) s.sendSnapshot({ epoch: 'E', version: 1, revision: 5, digest: digestOf(state) }, stateLists(state));
        else s.sendDelta({ epoch: 'E', fromVersion: s.hello.version, version: s.hello.version + 1, revision: 6, digest: digestOf(state) }, {});
      },
    });
    const url = agents.url;

    const rejected = AgentClient.connect(url, hosts[1].id, 'nope', hosts[1].vtepIp, { minBackoffMs: 5000 });
    const reason = await new Promise<string>((r) => rejected.once('rejected', r));
    assert.equal(reason, 'bad credential');
    await rejected.close();

    const mirror = new StateMirror();
    const client = AgentClient.connect(url, hosts[0].id, 'good', hosts[0].vtepIp, { minBackoffMs: 20 });
    const snap = await new Promise<Parameters<typeof mirror.applySnapshot>[0] & { ack(): boolean }>((r) => client.once('snapshot', r));
    assert.deepEqual(mirror.applySnapshot(snap), { ok: true });
    snap.ack();
    await until(() => acks.includes(1));
    assert.deepEqual(client.lastAcked, { epoch: 'E', version: 1, revision: 5, digest: digestOf(state) });

    // the controller side drops the connection: the client reconnects and says where it is
    const delta = new Promise<{ fromVersion: number; ack(): boolean }>((r) => client.once('delta', r));
    sessions[0].close(1001, 'going away');
    const d = await delta;
    assert.equal(sessions.length, 2);
    assert.equal(sessions[1].hello.version, 1);
    assert.equal(sessions[1].hello.revision, 5);
    assert.equal(d.fromVersion, 1);
    assert.equal(d.ack(), true);
    assert.equal(client.ack(2), false, 'a version is answered once');
    assert.equal(client.ack(99), false, 'an unknown version is refused without throwing');
    await until(() => acks.includes(2));
    await client.close();
    await agents.close();
  });
  it('hands undecoded frames to a holder that reads them itself (option frames), which acks them as any agent does', async () => {
    const { w, hosts, s4, web } = smallWorld();
    const h = hosts[0];
    const before = compileAll(w.snapshot()).get(h.id)!;
    w.endpoint(s4, h, [web]);
    const after = compileAll(w.snapshot()).get(h.id)!;
    const acks: string[] = [];
    const agents = await serveAgents({
      authenticate: async () => true,
      onSession: (s) => {
        s.on('ack', (a) => {
          acks.push(a.digest);
          if (a.version === 1) s.sendDelta({ epoch: 'E', fromVersion: 1, version: 2, revision: 6, digest: digestOf(after) }, diffStates(before, after));
        });
        s.sendSnapshot({ epoch: 'E', version: 1, revision: 5, digest: digestOf(before) }, stateLists(before));
      },
    });
    const url = agents.url;
    const lean = new DigestMirror();
    const decoded: string[] = [];
    const client = AgentClient.connect(url, h.id, 'good', h.vtepIp, { frames: true });
    client.on('snapshot', () => decoded.push('snapshot'));
    client.on('delta', () => decoded.push('delta'));
    client.on('frame', (f) => {
      const r = lean.applyFrame(f);
      if (r.ok) f.ack();
      else f.nack(r.reason);
    });
    await until(() => acks.length === 2);
    assert.deepEqual(acks, [digestOf(before), digestOf(after)]);
    assert.equal(lean.digest.value(), digestOf(after));
    assert.equal(lean.size, stateSize(after));
    assert.deepEqual(decoded, [], 'no decoded events with option frames');
    assert.equal(client.lastAcked.version, 2);
    await client.close();
    await agents.close();
  });
  it('refuses an oversized frame before reading it and a controller message from a peer, and still serves agents', async () => {
    const { w, hosts } = smallWorld();
    const state = compileAll(w.snapshot()).get(hosts[0].id)!;
    const errors: string[] = [];
    const nacks: string[] = [];
    const agents = await serveAgents({
      authenticate: async (h) => (h.credential === 'good' ? true : 'bad credential'),
      onSession: (s) => {
        s.on('nack', (n) => nacks.push(n.reason));
        s.sendSnapshot({ epoch: 'E', version: 1, revision: 5, digest: digestOf(state) }, stateLists(state));
      },
      onError: (e) => errors.push(e.message),
    });
    const url = agents.url;
    let client: AgentClient | null = null;
    try {
      /** what a raw peer is told when it sends `frames` (closing code and reason; [0, 'still open'] when nothing closes it within 5 s) */
      const closedAfter = async (...frames: Buffer[]) => {
        const ws = new WebSocket(url);
        await new Promise((r, j) => ws.once('open', r).once('error', j));
        const closed = new Promise<[number, string]>((r) => ws.once('close', (code, reason) => r([code, reason.toString()])));
        ws.on('error', () => undefined);
        for (const f of frames) ws.send(f);
        let timer: NodeJS.Timeout | undefined;
        const open = new Promise<[number, string]>((r) => (timer = setTimeout(() => r([0, 'still open']), 5000)));
        const outcome = await Promise.race([closed, open]);
        clearTimeout(timer);
        ws.terminate();
        return outcome;
      };

      // before any hello: a frame just over the bound is refused from its header (1009: message too big)
      const [big] = await closedAfter(Buffer.alloc(MAX_AGENT_MESSAGE + 1, 1));
      assert.equal(big, 1009);
      assert.match(errors.join('|'), /max payload/i);
      // a snapshot sent to the controller is named and refused, before and after the hello
      const snapshot = encodeSnapshot({ epoch: 'E', version: 1, revision: 1, digest: digestOf(state) }, stateLists(state));
      assert.deepEqual(await closedAfter(snapshot), [4002, "a snapshot is the controller's message, not an agent's"]);
      const hello = encodeHello({ hostId: hosts[0].id, credential: 'good', vtepIp: hosts[0].vtepIp, epoch: '', version: 0, revision: 0, digest: '' });
      const [code, why] = await closedAfter(hello, encodeDelta({ epoch: 'E', fromVersion: 0, version: 1, revision: 1, digest: '' }, {}));
      assert.deepEqual([code, why], [4002, "a delta is the controller's message, not an agent's"]);

      // a hello claiming a version beyond any a controller issues (one near 2^53 would stop counting exactly)
      const [vcode, vwhy] = await closedAfter(encodeHello({ hostId: hosts[0].id, credential: 'good', vtepIp: hosts[0].vtepIp, epoch: 'E', version: MAX_HELLO_VERSION + 1, revision: 1, digest: 'x' }));
      assert.deepEqual([vcode, vwhy], [4002, `hello claims version ${MAX_HELLO_VERSION + 1}, beyond any a controller issues`]);

      // the bound leaves room for the longest message an agent sends: a nack of 4,000 three-byte characters
      const longest = '\u20ac'.repeat(4000);
      assert.ok(encodeNack(1, longest).length < MAX_AGENT_MESSAGE);
      client = AgentClient.connect(url, hosts[0].id, 'good', hosts[0].vtepIp, { minBackoffMs: 20 });
      const snap = await new Promise<{ nack(reason: string): boolean }>((r) => client!.once('snapshot', r));
      assert.equal(snap.nack(longest + 'x'), true);
      await until(() => nacks.length === 1);
      assert.equal(nacks[0], longest);
    } finally {
      await client?.close();
      await agents.close();
    }
  });
});

describe('wire client liveness', () => {
  /**
   * A controller stand-in that accepts WebSocket connections and does with each
   * only what `onConnection` says, and a client with a 150 ms idle timeout
   * connected to it; `body` gets the connection count and the client's close codes.
   */
  async function againstController(
    onConnection: (ws: import('ws').WebSocket) => (() => void) | void,
    body: (seen: { connections: () => number; closes: number[] }) => Promise<void>,
  ): Promise<void> {
    const { WebSocketServer } = await import('ws');
    const server = createServer();
    const wss = new WebSocketServer({ server });
    let connections = 0;
    const stops: Array<() => void> = [];
    wss.on('connection', (ws) => {
      connections++;
      const stop = onConnection(ws);
      if (stop) stops.push(stop);
    });
    const url = await listen(server);
    const client = AgentClient.connect(url, 'h', 'c', '192.0.2.1', { idleTimeoutMs: 150, minBackoffMs: 10 });
    const closes: number[] = [];
    client.on('disconnected', (d) => closes.push(d.code));
    try {
      await body({ connections: () => connections, closes });
    } finally {
      for (const stop of stops) stop();
      await client.close();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.close();
    }
  }

  it('drops and reopens a connection on which the controller went silent', async () => {
    // accepts, never answers, never pings
    await againstController(
      () => undefined,
      async ({ connections, closes }) => {
        await until(() => connections() >= 2);
        assert.ok(closes.length >= 1, 'the silent connection was dropped');
      },
    );
  });

  it('keeps a connection on which the controller keeps talking, however long it lasts', async () => {
    await againstController(
      (ws) => {
        const pinger = setInterval(() => ws.ping(), 40); // each ping re-arms the client's 150 ms idle timer
        return () => clearInterval(pinger);
      },
      async ({ connections, closes }) => {
        await until(() => connections() >= 1);
        await new Promise((r) => setTimeout(r, 750)); // five idle timeouts
        assert.deepEqual(closes, [], 'a connection with traffic was dropped');
        assert.equal(connections(), 1);
      },
    );
  });
});

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
