import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BgpError,
  decode,
  encode,
  type Capability,
  type EvpnRoute,
  type ExtendedCommunity,
  type Message,
  type PathAttributes,
  type Update,
} from '#sdn/bgp';
import { arbMessage, arbUpdate } from './support/arbitraries.js';

describe('BGP codec', () => {
  it('round-trips every message kind: decode(encode(m)) equals m', () => {
    fc.assert(
      fc.property(arbMessage, (m: Message) => {
        assert.deepStrictEqual(decode(encode(m)), structuredClone(m));
      }),
      { numRuns: 3000 },
    );
  });

  it('re-encodes what it decoded byte for byte', () => {
    fc.assert(
      fc.property(arbMessage, (m: Message) => {
        const bytes = encode(m);
        assert.deepStrictEqual(encode(decode(bytes)), bytes);
      }),
      { numRuns: 1000 },
    );
  });

  it('never throws anything but BgpError on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 1, max: 5 }), (body, type) => {
        const b = Buffer.alloc(19 + body.length, 0xff);
        b.writeUInt16BE(b.length, 16);
        b[18] = type;
        b.set(body, 19);
        try {
          decode(b);
        } catch (e) {
          if (!(e instanceof BgpError)) throw e;
        }
      }),
      { numRuns: 20000 },
    );
  });

  it('never throws anything but BgpError on mutated valid messages', () => {
    fc.assert(
      fc.property(
        arbUpdate,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        (m, flips, truncate) => {
          const b = Buffer.from(encode(m));
          for (const [pos, v] of flips) {
            const at = 19 + (pos % Math.max(1, b.length - 19));
            if (at < b.length) b[at] = v;
          }
          const input = truncate && b.length > 20 ? b.subarray(0, b.length - 1) : b;
          if (truncate) input.writeUInt16BE(input.length, 16);
          try {
            const d = decode(input) as Update;
            // Whatever survives must encode again.
            encode(d);
          } catch (e) {
            if (!(e instanceof BgpError)) throw e;
          }
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('decodes a GoBGP-style OPEN with all capabilities in one parameter and FRR-style one per parameter', () => {
    const caps: Capability[] = [
      { kind: 'multiprotocol', afi: 1, safi: 1 },
      { kind: 'multiprotocol', afi: 25, safi: 70 },
      { kind: 'four-octet-as', asn: 65000 },
      { kind: 'route-refresh' },
    ];
    const one = encode({ type: 'open', version: 4, myAs: 65000, holdTime: 90, bgpId: '10.0.0.1', capabilities: caps });
    // FRR form: split each capability into its own parameter.
    const parts: Buffer[] = [];
    let o = 31;
    while (o < one.length) {
      const clen = one[o + 1];
      parts.push(Buffer.concat([Buffer.from([2, clen + 2]), one.subarray(o, o + 2 + clen)]));
      o += 2 + clen;
    }
    const params = Buffer.concat(parts);
    const frr = Buffer.concat([one.subarray(0, 28), Buffer.from([params.length]), params]);
    frr.writeUInt16BE(frr.length, 16);
    assert.deepStrictEqual(decode(frr), decode(one));
    assert.deepStrictEqual((decode(frr) as { capabilities: Capability[] }).capabilities, caps);
  });

  it('encodes an EVPN type-2 route with VNI labels raw, as GoBGP and FRR do (RFC 8365)', () => {
    const route: EvpnRoute = {
      routeType: 2,
      rd: '10.0.0.1:100',
      esi: '00:00:00:00:00:00:00:00:00:00',
      ethernetTag: 0,
      mac: 'aa:bb:cc:00:00:01',
      ip: '192.168.1.10',
      labels: [10100, 50000],
    };
    const b = encode({
      type: 'update',
      withdrawn: [],
      nlri: [],
      attributes: { origin: 0, asPath: [], mpReach: { family: 'l2vpn-evpn', nextHops: ['10.255.0.1'], nlri: [route] } },
    });
    const labelAt = b.indexOf(Buffer.from([0x00, 0x27, 0x74])); // 10100
    assert.ok(labelAt > 0, 'VNI 10100 written as 0x002774');
    assert.deepStrictEqual(b.subarray(labelAt, labelAt + 6), Buffer.from([0x00, 0x27, 0x74, 0x00, 0xc3, 0x50]));
  });

  it('treats a malformed COMMUNITIES attribute as withdraw and keeps the NLRI (RFC 7606 §7.8)', () => {
    const ok = encode({
      type: 'update',
      withdrawn: [],
      nlri: ['10.1.0.0/16'],
      attributes: { origin: 0, asPath: [{ type: 'sequence', asns: [65001] }], nextHop: '10.255.0.1', communities: [1] },
    });
    const b = Buffer.from(ok);
    const at = b.indexOf(Buffer.from([0xc0, 8, 4]));
    b[at + 2] = 3; // length 3: not a multiple of 4
    const trimmed = Buffer.concat([b.subarray(0, at + 6), b.subarray(at + 7)]);
    trimmed.writeUInt16BE(trimmed.length, 16);
    trimmed.writeUInt16BE(trimmed.readUInt16BE(21) - 1, 21);
    const u = decode(trimmed) as Update;
    assert.deepStrictEqual(u.nlri, ['10.1.0.0/16']);
    assert.equal(u.issues?.[0].action, 'treat-as-withdraw');
    assert.equal(u.attributes.communities, undefined);
  });

  it('answers a bad marker, length and type with the right header error codes', () => {
    const ka = encode({ type: 'keepalive' });
    const badMarker = Buffer.from(ka);
    badMarker[3] = 0;
    assert.throws(() => decode(badMarker), (e: unknown) => e instanceof BgpError && e.code === 1 && e.subcode === 1);
    const badType = Buffer.from(ka);
    badType[18] = 9;
    assert.throws(() => decode(badType), (e: unknown) => e instanceof BgpError && e.code === 1 && e.subcode === 3);
    const longKa = Buffer.concat([ka, Buffer.from([0])]);
    longKa.writeUInt16BE(20, 16);
    assert.throws(() => decode(longKa), (e: unknown) => e instanceof BgpError && e.code === 1 && e.subcode === 2);
  });

  it('parses extended communities of every kind the issue lists', () => {
    const ext: ExtendedCommunity[] = [
      { kind: 'route-target', value: '65000:100' },
      { kind: 'route-target', value: '10.0.0.1:7' },
      { kind: 'route-target', value: '4200000000:9' },
      { kind: 'route-target', value: '65000L:9' },
      { kind: 'encapsulation', tunnelType: 8 },
      { kind: 'router-mac', mac: '02:00:00:00:00:01' },
      { kind: 'mac-mobility', sticky: true, sequence: 7 },
      { kind: 'default-gateway' },
    ];
    const attributes: PathAttributes = { origin: 0, asPath: [], extendedCommunities: ext };
    const u = decode(encode({ type: 'update', withdrawn: [], nlri: [], attributes })) as Update;
    assert.deepStrictEqual(u.attributes.extendedCommunities, ext);
  });
});
