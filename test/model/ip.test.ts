import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import fc from 'fast-check';
import {
  canonicalIp,
  canonicalMac,
  cidrsOverlap,
  formatIp,
  parseCidr,
  parseIp,
  parsePortSpec,
  usableRange,
} from '#sdn/model';
import { SubnetPool } from '../../apps/directory/src/ipam/allocator';

const v4 = fc.bigInt({ min: 0n, max: (1n << 32n) - 1n });
const v6 = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n });

describe('address arithmetic', () => {
  it('formats and parses every IPv4 and IPv6 value back to itself, in text Node also accepts', () => {
    fc.assert(
      fc.property(v4, (v) => {
        const text = formatIp(4, v);
        assert.equal(isIP(text), 4);
        assert.deepEqual(parseIp(text), { version: 4, value: v });
      }),
    );
    fc.assert(
      fc.property(v6, (v) => {
        const text = formatIp(6, v);
        assert.equal(isIP(text), 6, text);
        assert.deepEqual(parseIp(text), { version: 6, value: v });
      }),
    );
  });

  it('writes IPv6 in the RFC 5952 canonical form', () => {
    assert.equal(canonicalIp('2001:0DB8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
    assert.equal(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1'); // first of two equal runs
    assert.equal(canonicalIp('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1'); // one 0 field is not shortened
    assert.equal(canonicalIp('::'), '::');
    assert.equal(canonicalIp('::ffff:10.0.0.1'), '::ffff:a00:1');
    assert.equal(canonicalIp('fe80::1%eth0'), null);
  });

  it('refuses malformed addresses', () => {
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1.2.3.-4', ':::', '1::2::3', 'g::1', '1:2:3:4:5:6:7:8:9', ' 1.2.3.4']) {
      assert.equal(parseIp(bad), null, bad);
    }
  });

  it('refuses CIDRs with host bits set, and says which network was meant', () => {
    const r = parseCidr('10.0.0.1/24');
    assert.equal(r.ok, false);
    assert.match((r as { reason: string }).reason, /10\.0\.0\.0\/24/);
    assert.equal(parseCidr('10.0.0.0/33').ok, false);
    assert.equal(parseCidr('10.0.0.0').ok, false);
    assert.equal(parseCidr('2001:db8::/64').ok, true);
  });

  it('decides overlap exactly like comparing the address ranges', () => {
    const cidr = fc.tuple(fc.integer({ min: 0, max: 32 }), v4).map(([len, v]) => {
      const mask = len === 0 ? 0n : ((1n << 32n) - 1n) ^ ((1n << BigInt(32 - len)) - 1n);
      return { version: 4 as const, network: v & mask, prefixLength: len };
    });
    fc.assert(
      fc.property(cidr, cidr, (a, b) => {
        const end = (c: typeof a) => c.network + (1n << BigInt(32 - c.prefixLength)) - 1n;
        const expected = !(end(a) < b.network || end(b) < a.network);
        assert.equal(cidrsOverlap(a, b), expected);
      }),
    );
  });

  it('keeps network and broadcast out of IPv4 pools, except in /31 and /32; the anycast address out of IPv6', () => {
    const c24 = parseCidr('10.0.0.0/24') as { ok: true; cidr: any };
    assert.deepEqual(usableRange(c24.cidr), { first: parseIp('10.0.0.1')!.value, last: parseIp('10.0.0.254')!.value });
    const c31 = parseCidr('10.0.0.0/31') as { ok: true; cidr: any };
    assert.deepEqual(usableRange(c31.cidr), { first: parseIp('10.0.0.0')!.value, last: parseIp('10.0.0.1')!.value });
    const c64 = parseCidr('2001:db8::/64') as { ok: true; cidr: any };
    assert.equal(usableRange(c64.cidr).first, parseIp('2001:db8::1')!.value);
  });

  it('canonicalises MACs and port ranges, refusing nonsense', () => {
    assert.equal(canonicalMac('AA-BB-CC-00-11-22'), 'aa:bb:cc:00:11:22');
    assert.equal(canonicalMac('aa:bb:cc:00:11'), null);
    assert.deepEqual(parsePortSpec('80'), { from: 80, to: 80 });
    assert.deepEqual(parsePortSpec('1000-2000'), { from: 1000, to: 2000 });
    assert.equal(parsePortSpec('2000-1000'), null);
    assert.equal(parsePortSpec('70000'), null);
  });
});

describe('subnet address pool', () => {
  const pool = (cidr: string, gateway: string, reserved: Array<{ start: string; end: string }> = []) => {
    const c = parseCidr(cidr) as { ok: true; cidr: any };
    return new SubnetPool(c.cidr, parseIp(gateway)!.value, reserved);
  };

  it('hands out every usable address exactly once, never the gateway or a reserved one, then reports exhaustion', () => {
    const p = pool('10.1.0.0/26', '10.1.0.1', [{ start: '10.1.0.10', end: '10.1.0.19' }]);
    const seen = new Set<string>();
    for (;;) {
      const v = p.allocate();
      if (v === null) break;
      const text = formatIp(4, v);
      assert.ok(!seen.has(text), `duplicate ${text}`);
      seen.add(text);
    }
    // 62 usable - gateway - 10 reserved
    assert.equal(seen.size, 51);
    assert.ok(!seen.has('10.1.0.1') && !seen.has('10.1.0.0') && !seen.has('10.1.0.63'));
    for (let i = 10; i <= 19; i++) assert.ok(!seen.has(`10.1.0.${i}`));
  });

  it('reuses a released address after wrapping, and agrees with a model under random allocate/release', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 40 })), { maxLength: 200 }), (ops) => {
        const p = pool('10.2.0.0/27', '10.2.0.1');
        const held: bigint[] = [];
        for (const op of ops) {
          if (op === -1) {
            const v = p.allocate();
            if (v !== null) {
              assert.ok(!held.includes(v));
              assert.equal(p.refusal(v), null);
              held.push(v);
            } else {
              assert.equal(held.length, 29); // a /27 has 30 usable addresses, one is the gateway
            }
          } else if (held.length > 0) {
            const [v] = held.splice(op % held.length, 1);
            p.release(v);
          }
        }
      }),
    );
  });

  it('explains why a static address is refused', () => {
    const p = pool('10.3.0.0/24', '10.3.0.1');
    assert.match(p.refusal(parseIp('10.3.0.1')!.value)!, /gateway/);
    assert.match(p.refusal(parseIp('10.3.0.0')!.value)!, /network or broadcast/);
    assert.match(p.refusal(parseIp('10.4.0.9')!.value)!, /outside/);
    assert.equal(p.refusal(parseIp('10.3.0.9')!.value), null);
  });
});
