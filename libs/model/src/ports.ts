/** "80" or "8000-8080" -> inclusive range, or null when malformed. */
export function parsePortSpec(spec: string): { from: number; to: number } | null {
  const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(spec);
  if (!m) return null;
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from > 65535 || to > 65535 || from > to) return null;
  return { from, to };
}

/** IANA protocol numbers of the named ACL protocols. */
export const PROTOCOL_NUMBERS = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 } as const;
