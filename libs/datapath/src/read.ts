/**
 * Reads what the kernel holds in the agent's namespaces, as the same model
 * `renderState` produces. Only objects the agent could have made are read:
 * devices named like ours, permanent neighbours, static FDB entries on VXLAN
 * ports, routes with our protocol number, and the `sdn` nftables table.
 */
import { CommandError, inNetns, run, runJson } from './exec';
import {
  BASE_COMMENTS,
  GUARD_COMMENTS,
  emptyNft,
  GUARD_SETS,
  guardElement,
  DatapathConfig,
  DomainModel,
  emptyDomainModel,
  fdbKey,
  FdbSpec,
  NFT_TABLE,
  NftRule,
  peerIfName,
  ROUTE_PROTO,
  shortPrefix,
} from './model';

const VXLAN_LINK = /^(l3vx|vx)\d+$/;
const BRIDGE_LINK = /^(l3br|br)\d+$/;
const VETH_LINK = /^ep[0-9a-f]{12}$/;

/** Names of the domain namespaces the agent owns (by prefix), with their l3Vni. */
export async function listDomainNamespaces(cfg: DatapathConfig): Promise<Map<string, number>> {
  const list = await runJson<{ name: string }[]>(['ip', '-j', 'netns', 'list']).catch(() => []);
  const out = new Map<string, number>();
  for (const { name } of list) {
    if (!name.startsWith(cfg.nsPrefix)) continue;
    const rest = name.slice(cfg.nsPrefix.length);
    if (/^\d+$/.test(rest)) out.set(name, Number(rest));
  }
  return out;
}

export async function readDomain(ns: string, l3Vni: number): Promise<DomainModel> {
  const m = emptyDomainModel(ns, l3Vni);
  const [links, addrs, fdb, neigh, routes4, routes6, nft] = await Promise.all([
    runJson<any[]>(inNetns(ns, ['ip', '-d', '-j', 'link', 'show'])),
    runJson<any[]>(inNetns(ns, ['ip', '-j', 'addr', 'show'])),
    runJson<any[]>(inNetns(ns, ['bridge', '-j', 'fdb', 'show'])),
    runJson<any[]>(inNetns(ns, ['ip', '-j', 'neigh', 'show', 'nud', 'permanent'])),
    runJson<any[]>(inNetns(ns, ['ip', '-4', '-j', 'route', 'show', 'proto', String(ROUTE_PROTO)])),
    runJson<any[]>(inNetns(ns, ['ip', '-6', '-j', 'route', 'show', 'proto', String(ROUTE_PROTO)])),
    readNft(ns),
  ]);
  for (const l of links) {
    const name: string = l.ifname;
    const kind = l.linkinfo?.info_kind;
    // a device of ours that is down (left by an interrupted apply) is marked, so the plan recreates it
    const down = !(l.flags as string[]).includes('UP') ? { down: true as const } : {};
    if (kind === 'bridge' && BRIDGE_LINK.test(name)) m.links.set(name, { kind, name, mac: l.address, ...down });
    else if (kind === 'vxlan' && VXLAN_LINK.test(name))
      m.links.set(name, {
        kind,
        name,
        vni: l.linkinfo.info_data.id,
        local: l.linkinfo.info_data.local ?? l.linkinfo.info_data.local6 ?? '',
        master: l.master ?? '',
        ...down,
      });
    else if (kind === 'veth' && VETH_LINK.test(name)) m.links.set(name, { kind, name, master: l.master ?? '', peer: peerIfName(name), peerMac: '', ...down });
  }
  for (const a of addrs) {
    if (!m.links.has(a.ifname)) continue;
    for (const ai of a.addr_info ?? []) {
      if (ai.scope !== 'global') continue;
      const cidr = `${ai.local}/${ai.prefixlen}`;
      m.addrs.set(`${a.ifname}|${cidr}`, { dev: a.ifname, cidr });
    }
  }
  for (const f of fdb) {
    if (!VXLAN_LINK.test(f.ifname)) continue;
    const flags: string[] = f.flags ?? [];
    let spec: FdbSpec | null = null;
    if (flags.includes('self') && f.dst) spec = { dev: f.ifname, mac: f.mac, dst: f.dst };
    else if (f.master && f.state === 'static') spec = { dev: f.ifname, mac: f.mac };
    if (spec) m.fdb.set(fdbKey(spec), spec);
  }
  for (const n of neigh) {
    if (!m.links.has(n.dev) || !n.lladdr) continue;
    m.neigh.set(`${n.dev}|${n.dst}`, { dev: n.dev, ip: n.dst, mac: n.lladdr });
  }
  for (const r of [...routes4, ...routes6]) {
    const prefix = r.dst.includes('/') ? r.dst : r.dst.includes(':') ? `${r.dst}/128` : `${r.dst}/32`;
    m.routes.set(prefix, { prefix, via: r.gateway ?? r.via?.host ?? '', dev: r.dev });
  }
  m.nft = nft;
  return m;
}

function elementText(e: any): string | null {
  if (typeof e === 'string') return e;
  if (e?.prefix) return shortPrefix(`${e.prefix.addr}/${e.prefix.len}`);
  if (e?.elem) return elementText(e.elem.val);
  if (e?.range) return `${e.range[0]}-${e.range[1]}`;
  return null;
}

async function readGuard(ns: string): Promise<DomainModel['nft']['guard']> {
  const guard: DomainModel['nft']['guard'] = { base: false, src4: new Set(), src6: new Set(), srcmac: new Set() };
  let doc: any;
  try {
    const { stdout } = await run(inNetns(ns, ['nft', '-j', 'list', 'table', 'bridge', NFT_TABLE]));
    doc = JSON.parse(stdout);
  } catch (e) {
    if (e instanceof CommandError && /No such file|does not exist/i.test(e.stderr)) return guard;
    throw e;
  }
  const comments: string[] = [];
  const sets = new Set<string>();
  for (const item of doc.nftables as any[]) {
    if (item.set && (GUARD_SETS as readonly string[]).includes(item.set.name)) {
      const name = item.set.name as (typeof GUARD_SETS)[number];
      sets.add(name);
      for (const e of item.set.elem ?? []) {
        const c = e?.concat ?? e?.elem?.val?.concat;
        if (Array.isArray(c) && c.length === 2) guard[name].add(guardElement(String(c[0]), String(c[1])));
      }
    } else if (item.rule?.chain === 'guard') comments.push(item.rule.comment ?? '');
  }
  guard.base = sets.size === GUARD_SETS.length && comments.join(',') === GUARD_COMMENTS.join(',');
  return guard;
}

async function readNft(ns: string): Promise<DomainModel['nft']> {
  const nft: DomainModel['nft'] = emptyNft();
  nft.guard = await readGuard(ns);
  let doc: any;
  try {
    const { stdout } = await run(inNetns(ns, ['nft', '-j', 'list', 'table', 'inet', NFT_TABLE]));
    doc = JSON.parse(stdout);
  } catch (e) {
    if (e instanceof CommandError && /No such file|does not exist/i.test(e.stderr)) return nft;
    throw e;
  }
  const forward: string[] = [];
  for (const item of doc.nftables as any[]) {
    if (item.set) {
      const s = item.set;
      nft.sets.set(s.name, s.type === 'ipv6_addr' ? 6 : 4);
      const els = new Set<string>();
      for (const e of s.elem ?? []) {
        const t = elementText(e);
        if (t) els.add(t);
      }
      nft.elements.set(s.name, els);
    } else if (item.rule) {
      const r = item.rule;
      const rule: NftRule = { text: '', comment: r.comment ?? '' };
      if (r.chain === 'egress') nft.egress.push(rule);
      else if (r.chain === 'ingress') nft.ingress.push(rule);
      else if (r.chain === 'forward') forward.push(rule.comment);
    }
  }
  nft.base = forward.join(',') === BASE_COMMENTS.join(',');
  return nft;
}
