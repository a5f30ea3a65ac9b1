/**
 * A policy group's communityTag names it across datacenters: a BGP standard
 * community `ASN:value` (RFC 1997, two 16-bit halves) or a large community
 * `global:local1:local2` (RFC 8092, three 32-bit parts).
 */
import type { LargeCommunity } from '#sdn/bgp';

export type CommunityTag = { kind: 'standard'; value: number } | { kind: 'large'; value: LargeCommunity };

const U16 = 0xffff;
const U32 = 0xffffffff;

function part(text: string, max: number): number | null {
  if (!/^[0-9]{1,10}$/.test(text)) return null;
  const n = Number(text);
  return n <= max ? n : null;
}

/** Parses a communityTag; null when it is neither form (the directory refuses those at the API). */
export function parseCommunityTag(tag: string): CommunityTag | null {
  const parts = tag.split(':');
  if (parts.length === 2) {
    const hi = part(parts[0], U16);
    const lo = part(parts[1], U16);
    if (hi === null || lo === null) return null;
    return { kind: 'standard', value: ((hi << 16) | lo) >>> 0 };
  }
  if (parts.length === 3) {
    const [g, l1, l2] = parts.map((p) => part(p, U32));
    if (g === null || l1 === null || l2 === null) return null;
    return { kind: 'large', value: { global: g, local1: l1, local2: l2 } };
  }
  return null;
}

/** The text form of a standard community, as `ASN:value`. */
export function formatCommunity(value: number): string {
  return `${value >>> 16}:${value & U16}`;
}

export function formatLargeCommunity(c: LargeCommunity): string {
  return `${c.global}:${c.local1}:${c.local2}`;
}

/** The communityTag text a received community matches. */
export function tagOfCommunity(c: number | LargeCommunity): string {
  return typeof c === 'number' ? formatCommunity(c) : formatLargeCommunity(c);
}
