/** fast-check arbitraries producing canonical BGP messages. */
import fc from 'fast-check';
import type {
  AsPathSegment,
  Capability,
  EvpnRoute,
  ExtendedCommunity,
  Message,
  MpReach,
  MpUnreach,
  PathAttributes,
  Update,
} from '#sdn/bgp';

const u32 = fc.nat({ max: 0xffffffff });
const u24 = fc.nat({ max: 0xffffff });
const u16 = fc.nat({ max: 0xffff });
const byte = fc.nat({ max: 255 });
export const arbIpv4 = fc.tuple(byte, byte, byte, byte).map((a) => a.join('.'));
const arbIpv6Plain = fc.array(u16, { minLength: 8, maxLength: 8 }).map((g) => {
  const b = new Uint8Array(16);
  g.forEach((x, i) => {
    b[2 * i] = x >> 8;
    b[2 * i + 1] = x & 255;
  });
  return fmt6(b);
});
export const arbIpv6 = fc.oneof({ arbitrary: arbIpv6Plain, weight: 4 }, { arbitrary: arbIpv4.map((a) => `::ffff:${a}`), weight: 1 });
function fmt6(b: Uint8Array): string {
  // same algorithm as the codec's readIpv6, written again from RFC 5952
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[2 * i] << 8) | b[2 * i + 1]);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
  }
  const h = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  return best < 0 ? h(g) : `${h(g.slice(0, best))}::${h(g.slice(best + bestLen))}`;
}
const arbIp = fc.oneof(arbIpv4, arbIpv6);
const hex2 = byte.map((x) => x.toString(16).padStart(2, '0'));
export const arbMac = fc.array(hex2, { minLength: 6, maxLength: 6 }).map((a) => a.join(':'));
export const arbEsi = fc.array(hex2, { minLength: 10, maxLength: 10 }).map((a) => a.join(':'));
export const arbRd = fc.oneof(
  fc.tuple(u16, u32).map(([a, n]) => `${a}:${n}`),
  fc.tuple(arbIpv4, u16).map(([a, n]) => `${a}:${n}`),
  fc.tuple(u32, u16).map(([a, n]) => (a > 0xffff ? `${a}:${n}` : `${a}L:${n}`)),
);

function maskedPrefix(bytes: number[], len: number, v6: boolean): string {
  const b = new Uint8Array(v6 ? 16 : 4);
  const n = (len + 7) >> 3;
  for (let i = 0; i < n; i++) b[i] = bytes[i];
  return `${v6 ? fmt6(b) : Array.from(b).join('.')}/${len}`;
}
export const arbPrefix4 = fc
  .tuple(fc.array(byte, { minLength: 4, maxLength: 4 }), fc.integer({ min: 0, max: 32 }))
  .map(([b, l]) => maskedPrefix(b, l, false));
export const arbPrefix6 = fc
  .tuple(fc.array(byte, { minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 128 }))
  .map(([b, l]) => maskedPrefix(b, l, true));

export const arbEvpn: fc.Arbitrary<EvpnRoute> = fc.oneof(
  fc.record({ routeType: fc.constant(1 as const), rd: arbRd, esi: arbEsi, ethernetTag: u32, label: u24 }),
  fc
    .record({
      routeType: fc.constant(2 as const),
      rd: arbRd,
      esi: arbEsi,
      ethernetTag: u32,
      mac: arbMac,
      ip: fc.option(arbIp, { nil: undefined }),
      labels: fc.oneof(fc.tuple(u24), fc.tuple(u24, u24)),
    })
    .map((r) => {
      const { ip, ...rest } = r;
      return ip === undefined ? rest : { ...rest, ip };
    }) as fc.Arbitrary<EvpnRoute>,
  fc.record({ routeType: fc.constant(3 as const), rd: arbRd, ethernetTag: u32, originatorIp: arbIp }),
  fc.record({ routeType: fc.constant(4 as const), rd: arbRd, esi: arbEsi, originatorIp: arbIp }),
  fc.oneof(
    fc.record({ routeType: fc.constant(5 as const), rd: arbRd, esi: arbEsi, ethernetTag: u32, prefix: fc.tuple(arbIpv4, fc.integer({ min: 0, max: 32 })).map(([a, l]) => `${a}/${l}`), gateway: arbIpv4, label: u24 }),
    fc.record({ routeType: fc.constant(5 as const), rd: arbRd, esi: arbEsi, ethernetTag: u32, prefix: fc.tuple(arbIpv6, fc.integer({ min: 0, max: 128 })).map(([a, l]) => `${a}/${l}`), gateway: arbIpv6, label: u24 }),
  ),
  fc.record({ routeType: fc.constant('unknown' as const), type: fc.integer({ min: 6, max: 255 }), value: fc.uint8Array({ maxLength: 40 }) }),
);

const arbSegment: fc.Arbitrary<AsPathSegment> = fc.record({
  type: fc.constantFrom('set', 'sequence', 'confed-sequence', 'confed-set'),
  asns: fc.array(u32, { minLength: 1, maxLength: 6 }),
});
const arbExt: fc.Arbitrary<ExtendedCommunity> = fc.oneof(
  fc.record({ kind: fc.constant('route-target' as const), value: arbRd }),
  fc.record({ kind: fc.constant('route-origin' as const), value: arbRd }),
  fc.record({ kind: fc.constant('encapsulation' as const), tunnelType: u16 }),
  fc.record({ kind: fc.constant('router-mac' as const), mac: arbMac }),
  fc.record({ kind: fc.constant('mac-mobility' as const), sticky: fc.boolean(), sequence: u32 }),
  fc.record({ kind: fc.constant('esi-label' as const), singleActive: fc.boolean(), label: u24 }),
  fc.constant({ kind: 'default-gateway' as const }),
  // raw: an experimental type (0x80+) so it never collides with a decoded kind
  fc.tuple(fc.integer({ min: 0x80, max: 0xbf }), fc.array(hex2, { minLength: 7, maxLength: 7 })).map(([t, r]) => ({
    kind: 'raw' as const,
    hex: t.toString(16) + r.join(''),
  })),
);

const arbMpReach: fc.Arbitrary<MpReach> = fc.oneof(
  fc.record({ family: fc.constant('ipv4-unicast' as const), nextHops: fc.oneof(fc.tuple(arbIpv4), fc.tuple(arbIpv6)), nlri: fc.array(arbPrefix4, { maxLength: 5 }) }),
  fc.record({ family: fc.constant('ipv6-unicast' as const), nextHops: fc.oneof(fc.tuple(arbIpv6), fc.tuple(arbIpv6, arbIpv6)), nlri: fc.array(arbPrefix6, { maxLength: 5 }) }),
  fc.record({ family: fc.constant('l2vpn-evpn' as const), nextHops: fc.oneof(fc.tuple(arbIpv4), fc.tuple(arbIpv6)), nlri: fc.array(arbEvpn, { maxLength: 5 }) }),
  fc.record({ family: fc.constant('other' as const), afi: fc.constant(1), safi: fc.constant(128), value: fc.uint8Array({ maxLength: 20 }) }),
) as fc.Arbitrary<MpReach>;
const arbMpUnreach: fc.Arbitrary<MpUnreach> = fc.oneof(
  fc.record({ family: fc.constant('ipv4-unicast' as const), withdrawn: fc.array(arbPrefix4, { maxLength: 5 }) }),
  fc.record({ family: fc.constant('ipv6-unicast' as const), withdrawn: fc.array(arbPrefix6, { maxLength: 5 }) }),
  fc.record({ family: fc.constant('l2vpn-evpn' as const), withdrawn: fc.array(arbEvpn, { maxLength: 5 }) }),
) as fc.Arbitrary<MpUnreach>;

const KNOWN = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 22, 32]);
const arbUnknownAttrs = fc
  .uniqueArray(
    fc.record({
      flags: fc.constantFrom(0x80, 0xc0, 0xe0),
      code: fc.integer({ min: 0, max: 255 }).filter((c) => !KNOWN.has(c)),
      value: fc.uint8Array({ maxLength: 300 }),
    }),
    { selector: (u) => u.code, maxLength: 3 },
  );

const aggregator = fc.record({ asn: u32, address: arbIpv4 });
export const arbAttributes: fc.Arbitrary<PathAttributes> = fc.record(
  {
    origin: fc.constantFrom(0 as const, 1 as const, 2 as const),
    asPath: fc.array(arbSegment, { maxLength: 3 }),
    nextHop: arbIpv4,
    med: u32,
    localPref: u32,
    atomicAggregate: fc.constant(true as const),
    aggregator,
    communities: fc.array(u32, { maxLength: 5 }),
    originatorId: arbIpv4,
    clusterList: fc.array(arbIpv4, { maxLength: 3 }),
    mpReach: arbMpReach,
    mpUnreach: arbMpUnreach,
    extendedCommunities: fc.array(arbExt, { maxLength: 6 }),
    as4Path: fc.array(arbSegment, { maxLength: 2 }),
    as4Aggregator: aggregator,
    pmsiTunnel: fc.record({ flags: byte, tunnelType: byte, label: u24, tunnelId: fc.oneof(arbIpv4, arbIpv6, fc.array(hex2, { maxLength: 7 }).filter((a) => a.length !== 4).map((a) => '0x' + a.join(''))) }),
    largeCommunities: fc.array(fc.record({ global: u32, local1: u32, local2: u32 }), { maxLength: 3 }),
    unknown: arbUnknownAttrs.filter((a) => a.length > 0),
  },
  { requiredKeys: [] },
);

export const arbUpdate: fc.Arbitrary<Update> = fc
  .record({
    withdrawn: fc.array(arbPrefix4, { maxLength: 5 }),
    attributes: arbAttributes,
    nlri: fc.array(arbPrefix4, { maxLength: 5 }),
  })
  .map(({ withdrawn, attributes, nlri }) => {
    // Keep to what decodes without RFC 7606 issues: mandatory attributes with NLRI.
    if (nlri.length > 0 || attributes.mpReach !== undefined) {
      attributes = { origin: 0, asPath: [], ...attributes };
      if (nlri.length > 0 && attributes.nextHop === undefined) attributes.nextHop = '10.255.0.1';
    }
    return { type: 'update' as const, withdrawn, attributes, nlri };
  });

const arbCapability: fc.Arbitrary<Capability> = fc.oneof(
  fc.record({ kind: fc.constant('multiprotocol' as const), afi: u16, safi: byte }),
  fc.constant({ kind: 'route-refresh' as const }),
  fc.constant({ kind: 'enhanced-route-refresh' as const }),
  fc.constant({ kind: 'extended-message' as const }),
  fc.record({ kind: fc.constant('four-octet-as' as const), asn: u32 }),
  fc.record({
    kind: fc.constant('graceful-restart' as const),
    restarting: fc.boolean(),
    notification: fc.boolean(),
    restartTime: fc.nat({ max: 4095 }),
    families: fc.array(fc.record({ afi: u16, safi: byte, forwardingPreserved: fc.boolean() }), { maxLength: 3 }),
  }),
  fc.record({
    kind: fc.constant('unknown' as const),
    code: fc.integer({ min: 0, max: 255 }).filter((c) => ![1, 2, 6, 64, 65, 70].includes(c)),
    value: fc.uint8Array({ maxLength: 10 }),
  }),
);

export const arbMessage: fc.Arbitrary<Message> = fc.oneof(
  fc.record({
    type: fc.constant('open' as const),
    version: fc.constant(4),
    myAs: u16,
    holdTime: u16,
    bgpId: arbIpv4,
    capabilities: fc.array(arbCapability, { maxLength: 8 }),
  }),
  arbUpdate,
  fc.record({ type: fc.constant('notification' as const), code: byte, subcode: byte, data: fc.uint8Array({ maxLength: 30 }) }),
  fc.constant({ type: 'keepalive' as const }),
  fc.record({ type: fc.constant('route-refresh' as const), afi: u16, safi: byte, subtype: byte }),
);
