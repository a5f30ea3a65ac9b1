/**
 * The fast path of a delta that only changes endpoint-churn tables (local and
 * remote endpoints, routes, peer VTEPs, and host members of address sets):
 * the old entries' pieces are removed and the new entries' pieces added, and
 * the commands come straight from those few pieces, so the cost follows the
 * size of the delta, not of the state. Anything else (a domain, subnet, set
 * definition, rule or the host changes; a set with prefixes that fold) goes
 * the full way: render the touched domains and diff them.
 */
import type { HostDelta, HostState } from '#sdn/compiler';
import {
  DatapathConfig,
  domainNs,
  DomainModel,
  entryPieces,
  NFT_TABLE,
  Piece,
  PIECE_TABLES,
  PieceTable,
  ROUTE_PROTO,
  shortPrefix,
  stateLookup,
  ZERO_MAC,
} from './model';
import type { DomainPlan } from './plan';

const FAST_TABLES = new Set<string>([...PIECE_TABLES, 'setElements']);
const isHost = (cidr: string) => cidr.endsWith('/32') || cidr.endsWith('/128');
const isV6 = (ip: string) => ip.includes(':');

export interface FastDelta {
  /** namespace -> pieces to remove and to add (net: an unchanged piece is in neither) */
  byNs: Map<string, { removed: Piece[]; added: Piece[] }>;
}

/** The pieces a delta removes and adds, or null when it needs the full path. */
export function fastDelta(state: HostState, delta: HostDelta, model: Map<string, DomainModel>, cfg: DatapathConfig): FastDelta | null {
  for (const [t, c] of Object.entries(delta)) {
    if (c && (c.upsert.length || c.remove.length) && !FAST_TABLES.has(t)) return null;
  }
  const look = stateLookup(state);
  const byNs = new Map<string, { removed: Map<string, Piece>; added: Map<string, Piece> }>();
  const nsOf = (domainId: string) => {
    const d = state.domains.get(domainId);
    if (!d) return null;
    const ns = domainNs(cfg, d.l3Vni);
    if (!model.has(ns)) return null;
    let x = byNs.get(ns);
    if (!x) byNs.set(ns, (x = { removed: new Map(), added: new Map() }));
    return x;
  };
  const pieceKey = (p: Piece) => `${p.kind}|${p.key}`;
  for (const t of PIECE_TABLES) {
    const c = delta[t];
    if (!c) continue;
    const tab = state[t] as Map<string, any>;
    const keyOfEntry = (e: any) => (t === 'peerVteps' ? `${e.vni}|${e.vtep}` : e.endpointId);
    const olds = [...c.remove.map((k) => tab.get(k)), ...c.upsert.map((e: any) => tab.get(keyOfEntry(e)))].filter((e) => e !== undefined);
    for (const e of olds) {
      const r = entryPieces(t as PieceTable, e, look);
      if (!r) return null;
      const x = nsOf(r.domainId);
      if (!x) return null;
      for (const p of r.pieces) x.removed.set(pieceKey(p), p);
    }
    for (const e of c.upsert as any[]) {
      const r = entryPieces(t as PieceTable, e, look);
      if (!r) return null;
      const x = nsOf(r.domainId);
      if (!x) return null;
      for (const p of r.pieces) x.added.set(pieceKey(p), p);
    }
  }
  const se = delta.setElements;
  if (se) {
    const old = state.setElements;
    const touched = [...se.remove.map((k) => old.get(k)).filter((e) => e !== undefined), ...se.upsert.map((e) => old.get(`${e.set}|${e.cidr}`))].filter(
      (e) => e !== undefined,
    );
    const elem = (set: string, cidr: string, into: 'removed' | 'added') => {
      const a = state.addressSets.get(set);
      if (!a || !isHost(cidr)) return false;
      const x = nsOf(a.domainId);
      if (!x) return false;
      // a set holding prefixes may fold hosts into them: only the full path knows
      const cur = model.get(domainNs(cfg, state.domains.get(a.domainId)!.l3Vni))!.nft.elements.get(set);
      if (!cur || [...cur].some((m) => m.includes('/'))) return false;
      const v = shortPrefix(cidr);
      const p: Piece = { kind: 'elem', key: `${set}|${v}`, set, v };
      x[into].set(pieceKey(p), p);
      return true;
    };
    for (const e of touched) if (!elem(e!.set, e!.cidr, 'removed')) return null;
    for (const e of se.upsert) if (!elem(e.set, e.cidr, 'added')) return null;
  }
  const out: FastDelta = { byNs: new Map() };
  for (const [ns, x] of byNs) {
    const removed: Piece[] = [];
    const added: Piece[] = [];
    for (const [k, p] of x.removed) {
      const n = x.added.get(k);
      if (n && JSON.stringify(n) === JSON.stringify(p)) {
        x.added.delete(k);
        continue;
      }
      if (!n) removed.push(p);
    }
    // a piece replaced by a different one (same key) is an upsert: no removal, the add replaces it
    for (const p of x.added.values()) added.push(p);
    out.byNs.set(ns, { removed, added });
  }
  return out;
}

/** Commands of a fast delta for one namespace (same order and tools as planDomain). */
export function planFast(ns: string, m: DomainModel, removed: Piece[], added: Piece[], cfg: DatapathConfig): DomainPlan {
  const plan: DomainPlan = { ns, l3Vni: m.l3Vni, createNs: false, deleteNs: false, ipPre: [], hostIp: [], ipPost: [], bridge: [], nft: '', changes: removed.length + added.length };
  const selfReplaced = new Set<string>();
  const nftDel: string[] = [];
  const nftAdd: string[] = [];
  const T = `inet ${NFT_TABLE}`;
  const B = `bridge ${NFT_TABLE}`;
  for (const p of added) if (p.kind === 'fdb' && p.v.dst !== undefined && p.v.mac !== ZERO_MAC) selfReplaced.add(`${p.v.dev}|${p.v.mac}`);
  for (const p of removed) {
    switch (p.kind) {
      case 'link':
        plan.ipPre.push(`link del ${p.key}`);
        break;
      case 'neigh':
        plan.ipPre.push(`neigh del ${p.v.ip} dev ${p.v.dev}`);
        break;
      case 'route':
        plan.ipPre.push(`route del ${p.v.prefix} proto ${ROUTE_PROTO}`);
        break;
      case 'fdb':
        if (p.v.dst === undefined) plan.bridge.push(`fdb del ${p.v.mac} dev ${p.v.dev} master`);
        else if (p.v.mac === ZERO_MAC || !selfReplaced.has(`${p.v.dev}|${p.v.mac}`)) plan.bridge.push(`fdb del ${p.v.mac} dev ${p.v.dev} dst ${p.v.dst} self`);
        break;
      case 'elem':
        nftDel.push(`delete element ${T} ${p.set} { ${p.v} }`);
        break;
      case 'guard':
        nftDel.push(`delete element ${B} ${p.set} { ${p.v} }`);
        break;
    }
  }
  const ups: string[] = [];
  for (const p of added) {
    switch (p.kind) {
      case 'link': {
        const l = p.v;
        if (l.kind !== 'veth') throw new Error(`fast path cannot make a ${l.kind}`);
        // an existing device with this key is replaced only when its master changed
        if (m.links.has(p.key)) plan.ipPost.push(`link set ${l.name} master ${l.master}`);
        else {
          plan.hostIp.push(`link add ${l.name} netns ${ns} mtu ${cfg.mtu} type veth peer name ${l.peer} address ${l.peerMac} mtu ${cfg.mtu}`);
          plan.ipPost.push(`link set ${l.name} master ${l.master}`);
          ups.push(`link set ${l.name} up`);
        }
        break;
      }
      case 'neigh':
        plan.ipPost.push(`neigh replace ${p.v.ip} lladdr ${p.v.mac} dev ${p.v.dev} nud permanent`);
        break;
      case 'route': {
        const via = isV6(p.v.via) !== isV6(p.v.prefix) ? `via inet6 ${p.v.via}` : `via ${p.v.via}`;
        plan.ipPost.push(`route replace ${p.v.prefix} ${via} dev ${p.v.dev} onlink proto ${ROUTE_PROTO}`);
        break;
      }
      case 'fdb': {
        const f = p.v;
        if (f.dst === undefined) plan.bridge.push(`fdb replace ${f.mac} dev ${f.dev} master static`);
        else if (f.mac === ZERO_MAC) plan.bridge.push(`fdb append ${f.mac} dev ${f.dev} dst ${f.dst} self permanent`);
        else plan.bridge.push(`fdb replace ${f.mac} dev ${f.dev} dst ${f.dst} self permanent`);
        break;
      }
      case 'elem':
        nftAdd.push(`add element ${T} ${p.set} { ${p.v} }`);
        break;
      case 'guard':
        nftAdd.push(`add element ${B} ${p.set} { ${p.v} }`);
        break;
    }
  }
  plan.ipPost.push(...ups);
  const nft = [...nftDel, ...nftAdd];
  plan.nft = nft.length ? nft.join('\n') + '\n' : '';
  return plan;
}
