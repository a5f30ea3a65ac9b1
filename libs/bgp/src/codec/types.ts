/**
 * Typed values of BGP-4 messages (RFC 4271), multiprotocol extensions
 * (RFC 4760) and BGP MPLS/VXLAN EVPN (RFC 7432, RFC 8365, RFC 9136).
 * Everything here is plain data: decode(encode(m)) deep-equals m.
 */
import type { Ipv4Address, IpAddress, MacAddress } from './ip.js';

/** Address families this speaker understands. */
export type Family = 'ipv4-unicast' | 'ipv6-unicast' | 'l2vpn-evpn';
export const FAMILIES: readonly Family[] = ['ipv4-unicast', 'ipv6-unicast', 'l2vpn-evpn'];

export const AFI = { ipv4: 1, ipv6: 2, l2vpn: 25 } as const;
export const SAFI = { unicast: 1, evpn: 70 } as const;

export function familyOf(afi: number, safi: number): Family | undefined {
  if (afi === 1 && safi === 1) return 'ipv4-unicast';
  if (afi === 2 && safi === 1) return 'ipv6-unicast';
  if (afi === 25 && safi === 70) return 'l2vpn-evpn';
  return undefined;
}
export function afiSafiOf(f: Family): { afi: number; safi: number } {
  switch (f) {
    case 'ipv4-unicast':
      return { afi: 1, safi: 1 };
    case 'ipv6-unicast':
      return { afi: 2, safi: 1 };
    case 'l2vpn-evpn':
      return { afi: 25, safi: 70 };
    default: {
      const never: never = f;
      throw new Error(`unknown family ${String(never)}`);
    }
  }
}

/** Autonomous system number (0..2^32-1). */
export type Asn = number;
/**
 * Route distinguisher / route target in text form (RFC 4364 §4.2):
 * type 0 `65000:100`, type 1 `10.0.0.1:100`, type 2 `4200000000:100`
 * (a type-2 value with a 16-bit AS is written `65000L:100`).
 */
export type RouteDistinguisher = string & { readonly __brand?: 'RouteDistinguisher' };
/** Ethernet Segment Identifier, 10 bytes as colon-separated hex. */
export type Esi = string & { readonly __brand?: 'Esi' };
export const ZERO_ESI: Esi = '00:00:00:00:00:00:00:00:00:00';
/** A unicast prefix in text form: `10.0.0.0/24`, `2001:db8::/32`. */
export type Prefix = string & { readonly __brand?: 'Prefix' };

// ---------------------------------------------------------------- capabilities

export interface FamilyFlags {
  afi: number;
  safi: number;
}
export type Capability =
  | { kind: 'multiprotocol'; afi: number; safi: number }
  | { kind: 'route-refresh' }
  | { kind: 'enhanced-route-refresh' }
  | { kind: 'extended-message' }
  | { kind: 'four-octet-as'; asn: Asn }
  | {
      kind: 'graceful-restart';
      /** R bit: the sender has restarted (RFC 4724 §3). */
      restarting: boolean;
      /** N bit (RFC 8538). */
      notification: boolean;
      restartTime: number;
      families: { afi: number; safi: number; forwardingPreserved: boolean }[];
    }
  | { kind: 'unknown'; code: number; value: Uint8Array };

// ---------------------------------------------------------------- EVPN NLRI

/** RFC 7432 §7.1 Ethernet Auto-discovery route. */
export interface EvpnEthernetAd {
  routeType: 1;
  rd: RouteDistinguisher;
  esi: Esi;
  ethernetTag: number;
  /** Raw 24-bit label field: with VXLAN the VNI (RFC 8365 §5.1.3). */
  label: number;
}
/** RFC 7432 §7.2 MAC/IP Advertisement route. */
export interface EvpnMacIp {
  routeType: 2;
  rd: RouteDistinguisher;
  esi: Esi;
  ethernetTag: number;
  mac: MacAddress;
  /** Absent when the route carries a MAC only. */
  ip?: IpAddress;
  /** L2 VNI, then optionally the L3 VNI (raw 24-bit fields). */
  labels: [number] | [number, number];
}
/** RFC 7432 §7.3 Inclusive Multicast Ethernet Tag route. */
export interface EvpnInclusiveMulticast {
  routeType: 3;
  rd: RouteDistinguisher;
  ethernetTag: number;
  originatorIp: IpAddress;
}
/** RFC 7432 §7.4 Ethernet Segment route. */
export interface EvpnEthernetSegment {
  routeType: 4;
  rd: RouteDistinguisher;
  esi: Esi;
  originatorIp: IpAddress;
}
/** RFC 9136 §3 IP Prefix route. */
export interface EvpnIpPrefix {
  routeType: 5;
  rd: RouteDistinguisher;
  esi: Esi;
  ethernetTag: number;
  prefix: Prefix;
  gateway: IpAddress;
  label: number;
}
/** A route type we do not know, kept as bytes (RFC 7432 §7: ignore it). */
export interface EvpnUnknown {
  routeType: 'unknown';
  type: number;
  value: Uint8Array;
}
export type EvpnRoute = EvpnEthernetAd | EvpnMacIp | EvpnInclusiveMulticast | EvpnEthernetSegment | EvpnIpPrefix | EvpnUnknown;

// ---------------------------------------------------------------- path attributes

export type Origin = 0 | 1 | 2; // IGP, EGP, INCOMPLETE
export type AsPathSegmentType = 'set' | 'sequence' | 'confed-sequence' | 'confed-set';
export interface AsPathSegment {
  type: AsPathSegmentType;
  asns: Asn[];
}
export interface Aggregator {
  asn: Asn;
  address: Ipv4Address;
}
export type ExtendedCommunity =
  | { kind: 'route-target'; value: string }
  | { kind: 'route-origin'; value: string }
  /** RFC 9012 §4.1 (0x03/0x0c); tunnel type 8 = VXLAN. */
  | { kind: 'encapsulation'; tunnelType: number }
  /** RFC 9135 §8.1 (0x06/0x03). */
  | { kind: 'router-mac'; mac: MacAddress }
  /** RFC 7432 §7.7 (0x06/0x00). */
  | { kind: 'mac-mobility'; sticky: boolean; sequence: number }
  /** RFC 7432 §7.5 (0x06/0x01). */
  | { kind: 'esi-label'; singleActive: boolean; label: number }
  /** RFC 7432 §7.8 (0x03/0x0d). */
  | { kind: 'default-gateway' }
  /** Anything else, 8 bytes as 16 hex digits. */
  | { kind: 'raw'; hex: string };

export interface LargeCommunity {
  global: number;
  local1: number;
  local2: number;
}
/** RFC 6514 §5; for EVPN ingress replication (type 6) the label is the VNI and the id the VTEP. */
export interface PmsiTunnel {
  flags: number;
  tunnelType: number;
  label: number;
  /** An IP address for 4- or 16-byte ids, otherwise hex. */
  tunnelId: string;
}
export interface UnknownAttribute {
  flags: number;
  code: number;
  value: Uint8Array;
}

export type MpReach =
  | { family: 'ipv4-unicast' | 'ipv6-unicast'; nextHops: IpAddress[]; nlri: Prefix[] }
  | { family: 'l2vpn-evpn'; nextHops: IpAddress[]; nlri: EvpnRoute[] }
  | { family: 'other'; afi: number; safi: number; value: Uint8Array };
export type MpUnreach =
  | { family: 'ipv4-unicast' | 'ipv6-unicast'; withdrawn: Prefix[] }
  | { family: 'l2vpn-evpn'; withdrawn: EvpnRoute[] }
  | { family: 'other'; afi: number; safi: number; value: Uint8Array };

export interface PathAttributes {
  origin?: Origin;
  asPath?: AsPathSegment[];
  nextHop?: Ipv4Address;
  med?: number;
  localPref?: number;
  atomicAggregate?: true;
  aggregator?: Aggregator;
  communities?: number[];
  originatorId?: Ipv4Address;
  clusterList?: Ipv4Address[];
  mpReach?: MpReach;
  mpUnreach?: MpUnreach;
  extendedCommunities?: ExtendedCommunity[];
  as4Path?: AsPathSegment[];
  as4Aggregator?: Aggregator;
  pmsiTunnel?: PmsiTunnel;
  largeCommunities?: LargeCommunity[];
  /** Optional attributes we do not interpret, carried through when transitive. */
  unknown?: UnknownAttribute[];
}

export const AttrCode = {
  ORIGIN: 1,
  AS_PATH: 2,
  NEXT_HOP: 3,
  MED: 4,
  LOCAL_PREF: 5,
  ATOMIC_AGGREGATE: 6,
  AGGREGATOR: 7,
  COMMUNITIES: 8,
  ORIGINATOR_ID: 9,
  CLUSTER_LIST: 10,
  MP_REACH_NLRI: 14,
  MP_UNREACH_NLRI: 15,
  EXTENDED_COMMUNITIES: 16,
  AS4_PATH: 17,
  AS4_AGGREGATOR: 18,
  PMSI_TUNNEL: 22,
  LARGE_COMMUNITY: 32,
} as const;

export const AttrFlag = { Optional: 0x80, Transitive: 0x40, Partial: 0x20, ExtendedLength: 0x10 } as const;

// ---------------------------------------------------------------- messages

export interface Open {
  type: 'open';
  version: number;
  /** The 2-octet "My Autonomous System" field (AS_TRANS 23456 for large ASNs). */
  myAs: number;
  holdTime: number;
  bgpId: Ipv4Address;
  capabilities: Capability[];
}

/** What went wrong in an UPDATE that the session survives (RFC 7606). */
export interface AttributeIssue {
  code: number;
  action: 'treat-as-withdraw' | 'attribute-discard';
  reason: string;
}

export interface Update {
  type: 'update';
  withdrawn: Prefix[];
  attributes: PathAttributes;
  nlri: Prefix[];
  /** Set by the decoder only: RFC 7606 handling applied. */
  issues?: AttributeIssue[];
}
export interface Notification {
  type: 'notification';
  code: number;
  subcode: number;
  data: Uint8Array;
}
export interface Keepalive {
  type: 'keepalive';
}
/** RFC 2918; RFC 7313 subtype 1 = BoRR, 2 = EoRR. */
export interface RouteRefresh {
  type: 'route-refresh';
  afi: number;
  safi: number;
  subtype: number;
}
export type Message = Open | Update | Notification | Keepalive | RouteRefresh;

export const MessageType = { OPEN: 1, UPDATE: 2, NOTIFICATION: 3, KEEPALIVE: 4, ROUTE_REFRESH: 5 } as const;

/** Per-session decoding/encoding context, fixed once OPENs are exchanged. */
export interface CodecContext {
  /** 4-octet AS numbers negotiated (RFC 6793). */
  as4: boolean;
  /** Extended messages negotiated (RFC 8654): up to 65535 bytes. */
  extendedMessages?: boolean;
}
export const DEFAULT_CONTEXT: CodecContext = { as4: true };
