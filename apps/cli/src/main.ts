#!/usr/bin/env node
/**
 * sdn: the operator's command line over the directory's REST API.
 *
 *   sdn list subnets --under <zoneId> [--filter name=web] [--all]
 *   sdn create endpoint --under <subnetId> name=web-1 hostId=<id> 'policyGroupIds=["<id>"]'
 *   sdn get endpoint <id>          sdn update domain <id> defaultIngressAction=allow [--if-match 12]
 *   sdn delete zone <id> [--cascade]   sdn changes [--after N] [--follow]   sdn health
 *
 * Connection: --url, else $SDN_URL, else http://127.0.0.1:8080. Key: --key,
 * else $SDN_KEY, else the operator key the directory saved in
 * $SDN_DATA_DIR/operator.key (default .data). --json prints raw JSON.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface Kind {
  path: string;
  parent: string | null;
  columns: string[];
  /** written by the controller, not the API: listed under its parent only */
  listedOnly?: true;
}

const KINDS: Record<string, Kind> = {
  enterprise: { path: 'enterprises', parent: null, columns: ['id', 'name', 'revision'] },
  domain: { path: 'domains', parent: 'enterprises', columns: ['id', 'name', 'l3Vni', 'routeDistinguisher', 'defaultIngressAction', 'defaultEgressAction'] },
  zone: { path: 'zones', parent: 'domains', columns: ['id', 'name', 'domainId'] },
  subnet: { path: 'subnets', parent: 'zones', columns: ['id', 'name', 'cidr', 'gateway', 'l2Vni'] },
  host: { path: 'hosts', parent: null, columns: ['id', 'name', 'vtepIp', 'status', 'lastSeenAt'] },
  endpoint: { path: 'endpoints', parent: 'subnets', columns: ['id', 'name', 'ip', 'mac', 'hostId', 'status'] },
  'policy-group': { path: 'policy-groups', parent: 'domains', columns: ['id', 'name', 'communityTag'] },
  'acl-rule': { path: 'acl-rules', parent: 'domains', columns: ['id', 'priority', 'direction', 'action', 'protocol', 'destinationPorts'] },
  'network-macro': { path: 'network-macros', parent: 'enterprises', columns: ['id', 'name', 'cidr'] },
  'network-macro-group': { path: 'network-macro-groups', parent: 'enterprises', columns: ['id', 'name', 'networkMacroIds'] },
  'api-key': { path: 'api-keys', parent: null, columns: ['id', 'name', 'role', 'enterpriseId'] },
  'bgp-speaker': { path: 'bgp-speakers', parent: null, columns: ['id', 'name', 'datacenter', 'asn', 'routerId', 'listenAddress', 'listenPort', 'enabled'] },
  'bgp-neighbor': { path: 'bgp-neighbors', parent: 'bgp-speakers', columns: ['id', 'name', 'address', 'asn', 'families', 'datacenter'] },
  'remote-endpoint': {
    path: 'remote-endpoints',
    parent: 'domains',
    columns: ['mac', 'ip', 'vtepIp', 'l2Vni', 'datacenter', 'peer', 'policyGroupIds', 'stale', 'learnedAt'],
    listedOnly: true,
  },
};

class UsageError extends Error {}

/** "<zone id>" for a kind created or listed under zones */
const parentId = (k: Kind) => `<${k.parent!.replace(/s$/, '')} id>`;

function kindOf(word: string | undefined): Kind {
  if (!word) throw new UsageError(`missing resource kind (one of ${Object.keys(KINDS).join(', ')})`);
  const singular = word.replace(/ies$/, 'y').replace(/s$/, '');
  const k = KINDS[word] ?? KINDS[singular];
  if (!k) throw new UsageError(`unknown resource kind "${word}" (one of ${Object.keys(KINDS).join(', ')})`);
  return k;
}

/** the kind of a command on one object (get, create, update, delete): not a listed-only kind */
function objectKindOf(word: string | undefined): Kind {
  const k = kindOf(word);
  if (k.listedOnly) throw new UsageError(`${word} is read-only (learned by the controller): sdn list ${k.path} --under ${parentId(k)}`);
  return k;
}

interface Args {
  positional: string[];
  flags: Map<string, string | true>;
  filters: string[];
}

function parseArgs(argv: string[]): Args {
  const a: Args = { positional: [], flags: new Map(), filters: [] };
  const valued = new Set(['url', 'key', 'under', 'if-match', 'after', 'filter', 'limit']);
  for (let i = 0; i < argv.length; i++) {
    const w = argv[i];
    if (w.startsWith('--')) {
      const [name, inline] = w.slice(2).split(/=(.*)/s, 2);
      if (valued.has(name)) {
        const v = inline ?? argv[++i];
        if (v === undefined) throw new UsageError(`--${name} needs a value`);
        if (name === 'filter') a.filters.push(v);
        else a.flags.set(name, v);
      } else a.flags.set(name, true);
    } else a.positional.push(w);
  }
  return a;
}

/** key=value pairs; a value that parses as JSON (number, boolean, list, object, null) is taken as JSON */
function bodyOf(pairs: string[]): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`expected field=value, got "${p}"`);
    const raw = p.slice(eq + 1);
    let value: unknown = raw;
    if (/^(-?[0-9]+(\.[0-9]+)?|true|false|null|\[.*\]|\{.*\})$/s.test(raw)) {
      try {
        value = JSON.parse(raw);
      } catch {
        value = raw;
      }
    }
    body[p.slice(0, eq)] = value;
  }
  return body;
}

function keyFrom(a: Args): string | null {
  const flag = a.flags.get('key');
  if (typeof flag === 'string') return flag;
  if (process.env.SDN_KEY) return process.env.SDN_KEY;
  const file = join(process.env.SDN_DATA_DIR ?? '.data', 'operator.key');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : null;
}

function table(items: Record<string, unknown>[], columns: string[]): string {
  const cell = (v: unknown) => (v === null || v === undefined || (Array.isArray(v) && v.length === 0) ? '-' : Array.isArray(v) ? v.join(',') : String(v));
  const rows = [columns, ...items.map((it) => columns.map((c) => cell(it[c])))];
  const widths = columns.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv);
  const [verb, ...rest] = a.positional;
  const base = String(a.flags.get('url') ?? process.env.SDN_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
  const key = keyFrom(a);
  const json = a.flags.has('json');
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    let res: Response;
    try {
      res = await fetch(`${base}${path}`, {
        method,
        headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new Error(`cannot reach the directory at ${base}: ${(e as Error).cause ?? (e as Error).message}`);
    }
    const text = await res.text();
    const parsed = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const fields = Array.isArray(parsed?.errors) ? parsed.errors.map((e: any) => `\n  ${e.field}: ${e.message}`).join('') : '';
      throw new Error(`${res.status} ${parsed?.title ?? res.statusText}: ${parsed?.detail ?? text}${fields}`);
    }
    return parsed;
  };
  const out = (v: unknown, columns?: string[]) => {
    if (json || !columns) console.log(JSON.stringify(v, null, 2));
    else if (Array.isArray(v)) console.log(table(v, columns));
    else console.log(table([v as Record<string, unknown>], columns));
  };
  const ifMatch = a.flags.get('if-match');
  const matchHeader: Record<string, string> = typeof ifMatch === 'string' ? { 'if-match': ifMatch } : {};

  switch (verb) {
    case 'list': {
      const k = kindOf(rest[0]);
      const under = a.flags.get('under');
      if (k.listedOnly && typeof under !== 'string') throw new UsageError(`${k.path} are listed under their ${k.parent!.replace(/s$/, '')}: --under <id>`);
      const q = new URLSearchParams(a.filters.map((f) => f.split(/=(.*)/s, 2) as [string, string]));
      q.set('limit', String(a.flags.get('limit') ?? 1000));
      const prefix = typeof under === 'string' ? `/api/v1/${k.parent}/${under}/${k.path}` : `/api/v1/${k.path}`;
      const items: unknown[] = [];
      for (;;) {
        const page = await call('GET', `${prefix}?${q}`);
        items.push(...page.items);
        if (!page.nextCursor || !a.flags.has('all')) break;
        q.set('cursor', page.nextCursor);
      }
      out(items, k.columns);
      return 0;
    }
    case 'get': {
      const k = objectKindOf(rest[0]);
      if (!rest[1]) throw new UsageError('get needs an id');
      out(await call('GET', `/api/v1/${k.path}/${rest[1]}`));
      return 0;
    }
    case 'create': {
      const k = objectKindOf(rest[0]);
      const under = a.flags.get('under');
      if (k.parent && typeof under !== 'string') throw new UsageError(`a ${rest[0]} is created under its parent: --under ${parentId(k)}`);
      const path = k.parent ? `/api/v1/${k.parent}/${under}/${k.path}` : `/api/v1/${k.path}`;
      out(await call('POST', path, bodyOf(rest.slice(1))));
      return 0;
    }
    case 'update': {
      const k = objectKindOf(rest[0]);
      if (!rest[1]) throw new UsageError('update needs an id');
      out(await call('PATCH', `/api/v1/${k.path}/${rest[1]}`, bodyOf(rest.slice(2)), matchHeader));
      return 0;
    }
    case 'delete': {
      const k = objectKindOf(rest[0]);
      if (!rest[1]) throw new UsageError('delete needs an id');
      await call('DELETE', `/api/v1/${k.path}/${rest[1]}${a.flags.has('cascade') ? '?cascade=true' : ''}`, undefined, matchHeader);
      if (!json) console.log(`deleted ${rest[0]} ${rest[1]}`);
      return 0;
    }
    case 'changes': {
      let after = Number(a.flags.get('after') ?? 0);
      do {
        const page = await call('GET', `/api/v1/changes?after=${after}&limit=1000${a.flags.has('follow') ? '&waitMs=25000' : ''}`);
        for (const c of page.items) {
          console.log(json ? JSON.stringify(c) : `${c.revision}\t${c.committedAt}\t${c.op}\t${c.kind}\t${c.id}`);
          after = c.revision;
        }
      } while (a.flags.has('follow'));
      return 0;
    }
    case 'health':
      out({ ...(await call('GET', '/readyz')), url: base }, ['status', 'database', 'url']);
      return 0;
    case undefined:
    case 'help':
      console.log(
        'usage: sdn [--url URL] [--key KEY] [--json] <list|get|create|update|delete|changes|health> ...\n' +
          '  sdn list <kind> [--under <parentId>] [--filter field=value]... [--all]\n' +
          '  sdn get <kind> <id>\n' +
          '  sdn create <kind> [--under <parentId>] field=value...\n' +
          '  sdn update <kind> <id> field=value... [--if-match <revision>]\n' +
          '  sdn delete <kind> <id> [--cascade] [--if-match <revision>]\n' +
          '  sdn changes [--after <revision>] [--follow]\n' +
          `kinds: ${Object.keys(KINDS).join(', ')}`,
      );
      return verb === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${verb}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    console.error(`sdn: ${(e as Error).message}`);
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
