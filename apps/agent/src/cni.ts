/**
 * CNI plugin (spec 1.0.0 / 1.1.0): `type: "sdn"`. Install as an executable
 * named `sdn` in CNI_PATH that runs `node dist/apps/agent/src/cni.js`.
 *
 * ADD creates (idempotently: externalId = `cni:<container id>/<ifname>`) the
 * endpoint in the directory, waits until the host's agent has made its veth
 * pair (host side on the subnet bridge inside the domain namespace, container
 * side `ec<hash>` in the host namespace, with the endpoint's MAC and the
 * overlay MTU), moves the container side into the container, names it
 * CNI_IFNAME, and sets the address and the default route via the anycast
 * gateway. The agent owns the datapath; the plugin only plugs.
 *
 * Network configuration fields:
 *   directoryUrl, apiKey, subnetId, hostId  (required)
 *   policyGroupIds: string[]                (optional)
 *   readyTimeoutMs: number                  (optional, default 30000: how long ADD waits for the agent)
 *   directoryTimeoutMs: number              (optional, default 60000: how long one request to the directory may
 *                                            take before the plugin answers "try again later" (11); the
 *                                            directory itself answers 503 within ~SDN_DB_TIMEOUT_SECONDS when
 *                                            its database hangs)
 *   hostNetns: string                       (optional: named namespace the agent programs, when it is
 *                                            not the plugin's own, as in tests where a host is a namespace)
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { endpointIfName } from '#sdn/compiler';
import { directoryRequest, DirectoryUnreachable, type DirectoryReply } from './directory-request';

export const SUPPORTED_VERSIONS = ['1.0.0', '1.1.0'];

/** CNI spec error codes (SPEC.md "Error"); 100+ are ours */
export const CNI_ERR = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  io: 5,
  decode: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  notAvailable: 50,
  directory: 101,
  agentNotReady: 102,
} as const;

export class CniError extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details = '',
  ) {
    super(msg);
  }
}

interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  directoryUrl: string;
  apiKey: string;
  subnetId: string;
  hostId: string;
  policyGroupIds?: string[];
  readyTimeoutMs?: number;
  directoryTimeoutMs?: number;
  hostNetns?: string;
  prevResult?: unknown;
  'cni.dev/valid-attachments'?: { containerID: string; ifname: string }[];
  [k: string]: unknown;
}

interface Env {
  command: string;
  containerId: string;
  netns: string;
  ifName: string;
}

function exec(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(argv[0], argv.slice(1), { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new CniError(CNI_ERR.io, `${argv.join(' ')}: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    }),
  );
}

/** a command inside the container's namespace (CNI_NETNS is a path) */
const inContainer = (netns: string, argv: string[]) => exec(['nsenter', `--net=${netns}`, ...argv]);

const externalIdOf = (containerId: string, ifName: string) => `cni:${containerId}/${ifName}`;

async function directory(conf: NetConf, method: string, path: string, body?: unknown): Promise<DirectoryReply> {
  let r: DirectoryReply;
  try {
    r = await directoryRequest({ ...conf, timeoutMs: conf.directoryTimeoutMs ?? 60_000 }, method, path, body);
  } catch (e) {
    if (e instanceof DirectoryUnreachable) throw new CniError(CNI_ERR.tryAgainLater, e.message, e.details);
    throw e;
  }
  // the directory is up but its database is not (or a commit's outcome is unknown): a transient condition the runtime
  // retries; a retried ADD finds its endpoint by external id, so it never makes a second one
  if (r.status === 503) throw new CniError(CNI_ERR.tryAgainLater, `directory unavailable (503 ${r.body?.type ?? ''})`.trim(), r.body?.detail ?? r.text);
  return r;
}

async function findEndpoint(conf: NetConf, externalId: string): Promise<any | null> {
  const r = await directory(conf, 'GET', `/api/v1/subnets/${conf.subnetId}/endpoints?externalId=${encodeURIComponent(externalId)}`);
  if (r.status !== 200) throw new CniError(CNI_ERR.directory, `directory: listing endpoints -> ${r.status}`, JSON.stringify(r.body));
  return r.body.items?.[0] ?? null;
}

/** `ip` in the host namespace the agent programs */
const hostIp = (conf: NetConf, args: string[]) => (conf.hostNetns ? ['ip', '-n', conf.hostNetns, ...args] : ['ip', ...args]);

async function linkOf(netns: string | null, name: string, conf?: NetConf): Promise<any | null> {
  try {
    const argv = ['ip', '-j', 'link', 'show', 'dev', name];
    const out = netns ? await inContainer(netns, argv) : await exec(hostIp(conf!, argv.slice(1)));
    return JSON.parse(out)[0] ?? null;
  } catch {
    return null;
  }
}

function result(conf: NetConf, env: Env, ep: any, subnet: any, mac: string): object {
  const len = subnet.cidr.split('/')[1];
  const v6 = ep.ip.includes(':');
  return {
    cniVersion: conf.cniVersion,
    interfaces: [{ name: env.ifName, mac, sandbox: env.netns }],
    ips: [{ address: `${ep.ip}/${len}`, gateway: subnet.gateway, interface: 0 }],
    routes: [{ dst: v6 ? '::/0' : '0.0.0.0/0', gw: subnet.gateway }],
    dns: {},
  };
}

async function add(conf: NetConf, env: Env): Promise<object> {
  if (!env.netns) throw new CniError(CNI_ERR.invalidEnv, 'CNI_NETNS is required for ADD');
  if (!existsSync(env.netns)) throw new CniError(CNI_ERR.unknownContainer, `network namespace ${env.netns} does not exist`);
  const externalId = externalIdOf(env.containerId, env.ifName);
  const made = await directory(conf, 'POST', `/api/v1/subnets/${conf.subnetId}/endpoints`, {
    name: `cni-${env.containerId.slice(0, 12)}-${env.ifName}`.slice(0, 63),
    kind: 'container',
    hostId: conf.hostId,
    externalId,
    policyGroupIds: conf.policyGroupIds ?? [],
  });
  if (made.status !== 201 && made.status !== 200) throw new CniError(CNI_ERR.directory, `directory refused the endpoint (${made.status})`, JSON.stringify(made.body));
  let ep = made.body;
  if (ep.hostId !== conf.hostId) {
    // an existing endpoint of this attachment (unplaced by an earlier DEL, or placed elsewhere) comes here
    const moved = await directory(conf, 'PATCH', `/api/v1/endpoints/${ep.id}`, { hostId: conf.hostId });
    if (moved.status !== 200) throw new CniError(CNI_ERR.directory, `directory refused to place endpoint ${ep.id} here (${moved.status})`, JSON.stringify(moved.body));
    ep = moved.body;
  }
  const subnet = (await directory(conf, 'GET', `/api/v1/subnets/${conf.subnetId}`)).body;
  const peer = `ec${endpointIfName(ep.id).slice(2)}`;

  // already plugged (a repeated ADD): the interface is in the container with the endpoint's MAC
  const inside = await linkOf(env.netns, env.ifName);
  if (inside && inside.address === ep.mac) return result(conf, env, ep, subnet, ep.mac);
  if (inside) throw new CniError(CNI_ERR.invalidConfig, `interface ${env.ifName} already exists in the container`);

  // the agent makes the veth pair when the controller has sent it the endpoint
  const deadline = Date.now() + (conf.readyTimeoutMs ?? 30000);
  while (!(await linkOf(null, peer, conf))) {
    if (Date.now() > deadline) throw new CniError(CNI_ERR.agentNotReady, `the host agent has not made interface ${peer} for endpoint ${ep.id}`, 'is the agent running and connected?');
    await new Promise((r) => setTimeout(r, 50));
  }
  await exec(hostIp(conf, ['link', 'set', 'dev', peer, 'netns', env.netns]));
  const v6 = ep.ip.includes(':');
  const len = subnet.cidr.split('/')[1];
  await inContainer(env.netns, ['ip', 'link', 'set', 'dev', peer, 'name', env.ifName]);
  await inContainer(env.netns, ['ip', 'addr', 'add', `${ep.ip}/${len}`, 'dev', env.ifName, ...(v6 ? ['nodad'] : [])]);
  await inContainer(env.netns, ['ip', 'link', 'set', 'dev', env.ifName, 'up']);
  await inContainer(env.netns, ['ip', ...(v6 ? ['-6'] : []), 'route', 'replace', 'default', 'via', subnet.gateway, 'dev', env.ifName]);
  return result(conf, env, ep, subnet, ep.mac);
}

async function del(conf: NetConf, env: Env): Promise<void> {
  const ep = await findEndpoint(conf, externalIdOf(env.containerId, env.ifName));
  if (ep) {
    const r = await directory(conf, 'DELETE', `/api/v1/endpoints/${ep.id}`);
    if (r.status === 409 && r.body?.type === '/problems/in-use') {
      // an ACL rule names this endpoint: the container is gone, the policy stays; unplaced, it leaves every host
      const u = await directory(conf, 'PATCH', `/api/v1/endpoints/${ep.id}`, { hostId: null });
      if (u.status !== 200) throw new CniError(CNI_ERR.directory, `directory refused to unplace endpoint ${ep.id} (${u.status})`, JSON.stringify(u.body));
    } else if (r.status !== 204 && r.status !== 404) throw new CniError(CNI_ERR.directory, `directory refused the delete (${r.status})`, JSON.stringify(r.body));
  }
  // the agent removes the veth pair when the endpoint leaves its state; a vanished namespace is fine
  if (env.netns && existsSync(env.netns)) await inContainer(env.netns, ['ip', 'link', 'del', 'dev', env.ifName]).catch(() => undefined);
}

async function check(conf: NetConf, env: Env): Promise<void> {
  const ep = await findEndpoint(conf, externalIdOf(env.containerId, env.ifName));
  if (!ep) throw new CniError(CNI_ERR.unknownContainer, `no endpoint for ${env.containerId}/${env.ifName}`);
  if (ep.hostId !== conf.hostId) throw new CniError(CNI_ERR.invalidConfig, `endpoint ${ep.id} is placed on host ${ep.hostId}, not ${conf.hostId}`);
  const link = await linkOf(env.netns, env.ifName);
  if (!link) throw new CniError(CNI_ERR.io, `interface ${env.ifName} is missing in the container`);
  if (link.address !== ep.mac) throw new CniError(CNI_ERR.io, `interface ${env.ifName} has MAC ${link.address}, the endpoint ${ep.mac}`);
  const addrs = JSON.parse(await inContainer(env.netns, ['ip', '-j', 'addr', 'show', 'dev', env.ifName]))[0]?.addr_info ?? [];
  if (!addrs.some((a: any) => a.local === ep.ip)) throw new CniError(CNI_ERR.io, `interface ${env.ifName} lacks ${ep.ip}`);
}

/** GC (1.1): removes our endpoints on this host and subnet that are not among the valid attachments. */
async function gc(conf: NetConf): Promise<void> {
  const valid = new Set((conf['cni.dev/valid-attachments'] ?? []).map((a) => externalIdOf(a.containerID, a.ifname)));
  let cursor: string | null = null;
  const stale: string[] = [];
  do {
    const q: string = `hostId=${conf.hostId}&limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const r = await directory(conf, 'GET', `/api/v1/subnets/${conf.subnetId}/endpoints?${q}`);
    if (r.status !== 200) throw new CniError(CNI_ERR.directory, `directory: listing endpoints -> ${r.status}`, JSON.stringify(r.body));
    for (const e of r.body.items) if (typeof e.externalId === 'string' && e.externalId.startsWith('cni:') && !valid.has(e.externalId)) stale.push(e.id);
    cursor = r.body.nextCursor ?? null;
  } while (cursor);
  for (const id of stale) await directory(conf, 'DELETE', `/api/v1/endpoints/${id}`);
}

async function status(conf: NetConf): Promise<void> {
  let r;
  try {
    r = await directory(conf, 'GET', `/api/v1/subnets/${conf.subnetId}`);
  } catch (e) {
    // STATUS has one code for all of it: not available (unreachable, or up without its database)
    throw new CniError(CNI_ERR.notAvailable, e instanceof CniError ? e.message : 'the directory is not reachable', e instanceof CniError ? e.details : (e as Error).message);
  }
  if (r.status !== 200) throw new CniError(CNI_ERR.notAvailable, `the directory answers ${r.status} for subnet ${conf.subnetId}`);
}

function parseConf(text: string): NetConf {
  let conf: NetConf;
  try {
    conf = JSON.parse(text);
  } catch (e) {
    throw new CniError(CNI_ERR.decode, 'network configuration is not JSON', (e as Error).message);
  }
  if (!SUPPORTED_VERSIONS.includes(conf.cniVersion))
    throw new CniError(CNI_ERR.incompatibleVersion, `cniVersion ${conf.cniVersion} is not supported`, `supported: ${SUPPORTED_VERSIONS.join(', ')}`);
  for (const f of ['directoryUrl', 'apiKey', 'subnetId', 'hostId'] as const) {
    if (typeof conf[f] !== 'string' || !conf[f]) throw new CniError(CNI_ERR.invalidConfig, `network configuration lacks "${f}"`);
  }
  for (const f of ['readyTimeoutMs', 'directoryTimeoutMs'] as const) {
    const v = conf[f];
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 3_600_000))
      throw new CniError(CNI_ERR.invalidConfig, `"${f}" must be a whole number of milliseconds from 1 to 3600000, got ${JSON.stringify(v)}`);
  }
  return conf;
}

export async function cniMain(envIn: NodeJS.ProcessEnv, stdin: string): Promise<{ code: number; stdout: string }> {
  const command = envIn.CNI_COMMAND ?? '';
  let version = '1.1.0';
  try {
    if (command === 'VERSION') {
      let asked = '1.1.0';
      try {
        asked = JSON.parse(stdin || '{}').cniVersion ?? asked;
      } catch {
        /* VERSION needs no configuration */
      }
      return { code: 0, stdout: JSON.stringify({ cniVersion: SUPPORTED_VERSIONS.includes(asked) ? asked : '1.1.0', supportedVersions: SUPPORTED_VERSIONS }) };
    }
    const conf = parseConf(stdin);
    version = conf.cniVersion;
    const env: Env = { command, containerId: envIn.CNI_CONTAINERID ?? '', netns: envIn.CNI_NETNS ?? '', ifName: envIn.CNI_IFNAME ?? '' };
    const needsContainer = ['ADD', 'DEL', 'CHECK'].includes(command);
    if (needsContainer && (!env.containerId || !env.ifName)) throw new CniError(CNI_ERR.invalidEnv, 'CNI_CONTAINERID and CNI_IFNAME are required');
    switch (command) {
      case 'ADD':
        return { code: 0, stdout: JSON.stringify(await add(conf, env)) };
      case 'DEL':
        await del(conf, env);
        return { code: 0, stdout: '' };
      case 'CHECK':
        if (version === '1.0.0' || version === '1.1.0') await check(conf, env);
        return { code: 0, stdout: '' };
      case 'GC':
        await gc(conf);
        return { code: 0, stdout: '' };
      case 'STATUS':
        await status(conf);
        return { code: 0, stdout: '' };
      default:
        throw new CniError(CNI_ERR.invalidEnv, `unknown CNI_COMMAND "${command}"`);
    }
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(CNI_ERR.io, (e as Error).message);
    return { code: 1, stdout: JSON.stringify({ cniVersion: version, code: err.code, msg: err.message, details: err.details }) };
  }
}

if (require.main === module) {
  const stdin = (() => {
    try {
      return readFileSync(0, 'utf8');
    } catch {
      return '';
    }
  })();
  void cniMain(process.env, stdin).then((r) => {
    if (r.stdout) process.stdout.write(r.stdout + '\n');
    process.exitCode = r.code;
  });
}
