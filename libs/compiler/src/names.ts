/**
 * Derived names and addresses. Pure functions of ids and VNIs, so every
 * controller (and every restart) derives the same names.
 */
import { parseIp } from '#sdn/model';
import type { AddressSetSource } from './state';
import { hash64, shortHash } from './digest';

/** VRF routing tables start here so that l3Vni + base never hits local/main/default (253..255). */
export const L3_TABLE_BASE = 0x10000;

export const vrfName = (l3Vni: number) => `vrf${l3Vni}`;
export const l3BridgeName = (l3Vni: number) => `l3br${l3Vni}`;
export const l3VxlanName = (l3Vni: number) => `l3vx${l3Vni}`;
export const bridgeName = (l2Vni: number) => `br${l2Vni}`;
export const vxlanName = (l2Vni: number) => `vx${l2Vni}`;
/** `ep` + 12 hex: 14 characters, within IFNAMSIZ. */
export const endpointIfName = (endpointId: string) => `ep${shortHash(`ep/${endpointId}`)}`;

const SET_PREFIX: Record<AddressSetSource, string> = {
  policyGroup: 'pg',
  zone: 'zn',
  subnet: 'sn',
  networkMacro: 'nm',
  networkMacroGroup: 'ng',
  endpoint: 'ep',
};

/** e.g. pg4_1a2b3c4d5e6f (16 characters, a valid nftables set name); the domain is part of the hash. */
export function setName(source: AddressSetSource, family: 4 | 6, domainId: string, sourceId: string): string {
  return `${SET_PREFIX[source]}${family}_${shortHash(`${domainId}/${source}/${sourceId}`)}`;
}

/**
 * Router MAC of a VTEP (EVPN symmetric IRB): locally administered, derived from
 * the address so that every host computes its peers' MACs without a lookup:
 * 02:00:a:b:c:d for IPv4, 02: + 40 bits of a hash for IPv6.
 */
export function routerMacOf(vtep: string): string {
  const p = parseIp(vtep);
  if (p !== null && p.version === 4) {
    const v = Number(p.value);
    return ['02', '00', ...[24, 16, 8, 0].map((s) => ((v >>> s) & 0xff).toString(16).padStart(2, '0'))].join(':');
  }
  const [a, b] = hash64(`rmac/${vtep}`);
  const hex = (a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0')).slice(0, 10);
  return ['02', ...hex.match(/../g)!].join(':');
}

/** ip -> ip/32 or ip/128 */
export const hostPrefix = (ip: string) => (ip.includes(':') ? `${ip}/128` : `${ip}/32`);
export const familyOf = (ip: string): 4 | 6 => (ip.includes(':') ? 6 : 4);
