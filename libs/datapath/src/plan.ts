/**
 * The difference between two models of one domain namespace, as the commands
 * that turn the first into the second: an `ip -batch` in the domain namespace
 * for removals, one in the host namespace that creates VXLAN and veth devices
 * directly inside the domain namespace, an `ip -batch` for bridges, ports,
 * addresses, neighbours and routes, a `bridge -batch` for the FDB, and one
 * `nft -f` transaction for the firewall.
 */
import {
  BASE_COMMENTS,
  GUARD_COMMENTS,
  DatapathConfig,
  DomainModel,
  fdbKey,
  FdbSpec,
  LOCAL_SET,
  LinkSpec,
  NFT_TABLE,
  NftRule,
  ROUTE_PROTO,
  STATELESS_MARK,
  ZERO_MAC,
  emptyNft,
  GUARD_SETS,
} from './model';

export interface DomainPlan {
  ns: string;
  l3Vni: number;
  createNs: boolean;
  deleteNs: boolean;
  /** domain namespace, before anything is created: removals */
  ipPre: string[];
  /** host namespace: devices created inside the domain namespace */
  hostIp: string[];
  /** domain namespace: bridges, ports, up, addresses, neighbours, routes */
  ipPost: string[];
  /** domain namespace: FDB removals then additions */
  bridge: string[];
  /** one nft transaction, or '' */
  nft: string;
  /** objects added, changed or removed */
  changes: number;
}

const linkRecreate = (a: LinkSpec, b: LinkSpec) =>
  a.kind !== b.kind ||
  a.down === true || (a.kind === 'vxlan' && b.kind === 'vxlan' && (a.vni !== b.vni || a.local !== b.local));

const isV6 = (ip: string) => ip.includes(':');

export function planDomain(from: DomainModel | null, to: DomainModel | null, cfg: DatapathConfig): DomainPlan {
  const ref = (to ?? from)!;
  const plan: DomainPlan = { ns: ref.ns, l3Vni: ref.l3Vni, createNs: false, deleteNs: false, ipPre: [], hostIp: [], ipPost: [], bridge: [], nft: '', changes: 0 };
  if (to === null) {
    plan.deleteNs = from !== null;
    plan.changes = from ? 1 : 0;
    return plan;
  }
  if (from === null) plan.createNs = true;
  const cur = from ?? { ...to, links: new Map(), addrs: new Map(), fdb: new Map(), neigh: new Map(), routes: new Map(), nft: emptyNft() };

  // devices: recreate on a change of kind/VNI/VTEP; a device that goes takes its addresses, FDB and neighbours with it
  const gone = new Set<string>();
  for (const [name, l] of cur.links) {
    const want = to.links.get(name);
    if (!want || linkRecreate(l, want)) gone.add(name);
  }
  const removedDev = (dev: string) => gone.has(dev) || !to.links.has(dev);
  for (const [k, r] of cur.routes) {
    const w = to.routes.get(k);
    if (w && w.via === r.via && w.dev === r.dev && !removedDev(r.dev)) continue;
    if (!w) plan.changes++;
    if (!removedDev(r.dev) && !w) plan.ipPre.push(`route del ${r.prefix} proto ${ROUTE_PROTO}`);
  }
  for (const [k, n] of cur.neigh) {
    if (to.neigh.has(k) || removedDev(n.dev)) continue;
    plan.changes++;
    plan.ipPre.push(`neigh del ${n.ip} dev ${n.dev}`);
  }
  for (const [k, a] of cur.addrs) {
    if (to.addrs.has(k) || removedDev(a.dev)) continue;
    plan.changes++;
    plan.ipPre.push(`addr del ${a.cidr} dev ${a.dev}`);
  }
  for (const name of gone) {
    plan.changes++;
    plan.ipPre.push(`link del ${name}`);
  }

  // creations
  const created = new Set<string>();
  const bridges: string[] = [];
  const ports: string[] = [];
  for (const [name, l] of to.links) {
    const have = gone.has(name) ? undefined : cur.links.get(name);
    if (!have) {
      plan.changes++;
      created.add(name);
      switch (l.kind) {
        case 'bridge':
          bridges.push(`link add ${name} address ${l.mac} type bridge`);
          break;
        case 'vxlan':
          plan.hostIp.push(
            `link add ${name} netns ${to.ns} mtu ${cfg.mtu} type vxlan id ${l.vni} ${isV6(l.local) ? 'local6' : 'local'} ${l.local} dstport ${cfg.vxlanPort} nolearning`,
          );
          ports.push(`link set ${name} master ${l.master}`, `link set ${name} type bridge_slave neigh_suppress on learning off`);
          break;
        case 'veth':
          plan.hostIp.push(`link add ${name} netns ${to.ns} mtu ${cfg.mtu} type veth peer name ${l.peer} address ${l.peerMac} mtu ${cfg.mtu}`);
          ports.push(`link set ${name} master ${l.master}`);
          break;
        default: {
          const _: never = l;
          return _;
        }
      }
    } else {
      if (l.kind === 'bridge' && have.kind === 'bridge' && have.mac !== l.mac) {
        plan.changes++;
        ports.push(`link set ${name} address ${l.mac}`);
      }
      if ((l.kind === 'vxlan' || l.kind === 'veth') && have.kind === l.kind && have.master !== l.master) {
        plan.changes++;
        ports.push(`link set ${name} master ${l.master}`);
      }
    }
  }
  const ups = [...created].sort((a, b) => Number(to.links.get(a)!.kind !== 'bridge') - Number(to.links.get(b)!.kind !== 'bridge')).map((n) => `link set ${n} up`);
  plan.ipPost.push(...bridges, ...ports, ...ups);
  for (const [k, a] of to.addrs) {
    if (cur.addrs.has(k) && !removedDev(a.dev)) continue;
    plan.changes++;
    plan.ipPost.push(`addr add ${a.cidr} dev ${a.dev}${isV6(a.cidr) ? ' nodad' : ''}`);
  }
  for (const [k, n] of to.neigh) {
    const h = cur.neigh.get(k);
    if (h && h.mac === n.mac && !removedDev(n.dev)) continue;
    plan.changes++;
    plan.ipPost.push(`neigh replace ${n.ip} lladdr ${n.mac} dev ${n.dev} nud permanent`);
  }
  for (const [k, r] of to.routes) {
    const h = cur.routes.get(k);
    if (h && h.via === r.via && h.dev === r.dev && !removedDev(r.dev)) continue;
    plan.changes++;
    const via = isV6(r.via) !== isV6(r.prefix) ? `via inet6 ${r.via}` : `via ${r.via}`;
    plan.ipPost.push(`route replace ${r.prefix} ${via} dev ${r.dev} onlink proto ${ROUTE_PROTO}`);
  }

  // FDB: removals first (a moved MAC is deleted at its old VTEP before it is added at the new one)
  const dels: string[] = [];
  const adds: string[] = [];
  for (const [k, f] of cur.fdb) {
    if (to.fdb.has(k) && !removedDev(f.dev)) continue;
    if (removedDev(f.dev)) continue;
    plan.changes++;
    dels.push(f.dst === undefined ? `fdb del ${f.mac} dev ${f.dev} master` : `fdb del ${f.mac} dev ${f.dev} dst ${f.dst} self`);
  }
  const addFdb = (f: FdbSpec) => {
    if (f.dst === undefined) return `fdb replace ${f.mac} dev ${f.dev} master static`;
    if (f.mac === ZERO_MAC) return `fdb append ${f.mac} dev ${f.dev} dst ${f.dst} self permanent`;
    return `fdb replace ${f.mac} dev ${f.dev} dst ${f.dst} self permanent`;
  };
  // a moved MAC: its VXLAN entry is replaced in place, so the old one is not deleted separately
  const selfMacsAdded = new Set<string>();
  for (const [k, f] of to.fdb) {
    if (cur.fdb.has(k) && !removedDev(f.dev)) continue;
    plan.changes++;
    adds.push(addFdb(f));
    if (f.dst !== undefined && f.mac !== ZERO_MAC) selfMacsAdded.add(`${f.dev}|${f.mac}`);
  }
  plan.bridge = [
    ...dels.filter((d) => {
      const m = /^fdb del (\S+) dev (\S+) dst \S+ self$/.exec(d);
      return !(m && m[1] !== ZERO_MAC && selfMacsAdded.has(`${m[2]}|${m[1]}`));
    }),
    ...adds,
  ];

  plan.nft = planNft(cur.nft, to.nft, plan);
  return plan;
}

const T = `inet ${NFT_TABLE}`;

function baseScript(): string[] {
  const [est, inv, nd, e4, e6, i4, i6] = BASE_COMMENTS;
  return [
    `add table ${T}`,
    `add set ${T} ${LOCAL_SET[4]} { type ipv4_addr; flags interval; }`,
    `add set ${T} ${LOCAL_SET[6]} { type ipv6_addr; flags interval; }`,
    `add chain ${T} egress`,
    `add chain ${T} ingress`,
    `add chain ${T} forward { type filter hook forward priority 0; policy accept; }`,
    `flush chain ${T} forward`,
    // a connection admitted by a stateful decision: its later packets and its return traffic pass
    `add rule ${T} forward ct state established,related ct mark != ${STATELESS_MARK} accept comment "${est}"`,
    `add rule ${T} forward ct state invalid drop comment "${inv}"`,
    // neighbour discovery between endpoints (bridged through br_netfilter) is infrastructure, like ARP
    `add rule ${T} forward icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept comment "${nd}"`,
    // leaving a local endpoint: egress policy (an allow returns here), then, toward a local endpoint: ingress policy
    `add rule ${T} forward ip saddr @${LOCAL_SET[4]} jump egress comment "${e4}"`,
    `add rule ${T} forward ip6 saddr @${LOCAL_SET[6]} jump egress comment "${e6}"`,
    `add rule ${T} forward ip daddr @${LOCAL_SET[4]} jump ingress comment "${i4}"`,
    `add rule ${T} forward ip6 daddr @${LOCAL_SET[6]} jump ingress comment "${i6}"`,
  ];
}

const sameRules = (a: NftRule[], b: NftRule[]) => a.length === b.length && a.every((r, i) => r.comment === b[i].comment);

const B = `bridge ${NFT_TABLE}`;

function guardScript(): string[] {
  const [other, mac, v4, v6, arp] = GUARD_COMMENTS;
  return [
    `add table ${B}`,
    `add set ${B} src4 { type ifname . ipv4_addr; }`,
    `add set ${B} src6 { type ifname . ipv6_addr; }`,
    `add set ${B} srcmac { type ifname . ether_addr; }`,
    `add chain ${B} guard { type filter hook prerouting priority -200; policy accept; }`,
    `flush chain ${B} guard`,
    `add rule ${B} guard iifname != "ep*" accept comment "${other}"`,
    `add rule ${B} guard iifname . ether saddr != @srcmac drop comment "${mac}"`,
    `add rule ${B} guard ether type ip iifname . ip saddr != @src4 drop comment "${v4}"`,
    // link-local and the unspecified address (DAD) are how IPv6 neighbours find each other
    `add rule ${B} guard ether type ip6 ip6 saddr != { ::/128, fe80::/10 } iifname . ip6 saddr != @src6 drop comment "${v6}"`,
    `add rule ${B} guard ether type arp arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @src4 drop comment "${arp}"`,
  ];
}

function planGuard(cur: DomainModel['nft']['guard'], to: DomainModel['nft']['guard'], plan: DomainPlan): string[] {
  const lines: string[] = [];
  if (!cur.base) {
    plan.changes++;
    lines.push(...guardScript());
  }
  const adds: string[] = [];
  for (const set of GUARD_SETS) {
    const have = cur.base ? cur[set] : new Set<string>();
    const del = [...have].filter((e) => !to[set].has(e));
    const add = [...to[set]].filter((e) => !have.has(e));
    plan.changes += add.length + del.length;
    if (del.length) lines.push(`delete element ${B} ${set} { ${del.join(', ')} }`);
    if (add.length) adds.push(`add element ${B} ${set} { ${add.join(', ')} }`);
  }
  return [...lines, ...adds];
}

function planNft(cur: DomainModel['nft'], to: DomainModel['nft'], plan: DomainPlan): string {
  const lines: string[] = planGuard(cur.guard, to.guard, plan);
  if (!cur.base) {
    plan.changes++;
    lines.push(...baseScript());
  }
  for (const [name, fam] of to.sets) {
    if (cur.sets.get(name) === fam) continue;
    if (cur.sets.has(name)) lines.push(`delete set ${T} ${name}`);
    if (name === LOCAL_SET[4] || name === LOCAL_SET[6]) {
      if (!cur.base) continue; // made by the base script
    }
    plan.changes++;
    lines.push(`add set ${T} ${name} { type ${fam === 4 ? 'ipv4_addr' : 'ipv6_addr'}; flags interval; }`);
  }
  const elementAdds: string[] = [];
  const elementDels: string[] = [];
  for (const [name, want] of to.elements) {
    const fresh = cur.sets.get(name) !== to.sets.get(name);
    const have = fresh ? new Set<string>() : cur.elements.get(name) ?? new Set<string>();
    const add = [...want].filter((e) => !have.has(e));
    const del = [...have].filter((e) => !want.has(e));
    plan.changes += add.length + del.length;
    for (let i = 0; i < add.length; i += 2000) elementAdds.push(`add element ${T} ${name} { ${add.slice(i, i + 2000).join(', ')} }`);
    for (let i = 0; i < del.length; i += 2000) elementDels.push(`delete element ${T} ${name} { ${del.slice(i, i + 2000).join(', ')} }`);
  }
  // removals of members first (a member that moves between a host and its prefix must not overlap), then additions
  lines.push(...elementDels, ...elementAdds);
  for (const chain of ['egress', 'ingress'] as const) {
    if (cur.base && sameRules(cur[chain], to[chain])) continue;
    plan.changes++;
    lines.push(`flush chain ${T} ${chain}`);
    for (const r of to[chain]) lines.push(`add rule ${T} ${chain} ${r.text} comment "${r.comment}"`);
  }
  for (const name of cur.sets.keys()) {
    if (to.sets.has(name)) continue;
    plan.changes++;
    lines.push(`delete set ${T} ${name}`);
  }
  return lines.length ? lines.join('\n') + '\n' : '';
}

export function planIsEmpty(p: DomainPlan): boolean {
  return !p.createNs && !p.deleteNs && !p.ipPre.length && !p.hostIp.length && !p.ipPost.length && !p.bridge.length && !p.nft;
}
