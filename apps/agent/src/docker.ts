/**
 * Docker remote network driver and IPAM driver (libnetwork plugin protocol:
 * JSON over HTTP on a unix socket under /run/docker/plugins).
 *
 *   docker network create -d <name> --ipam-driver <name> --subnet 10.0.0.0/24 \
 *     -o zone=<zone id> -o policyGroup=<policy group id> net1
 *
 * maps the network onto a subnet of that zone in the directory (created if the
 * zone has none with that CIDR), and every container attached to it onto an
 * endpoint on this host, in that policy group, with the directory's address
 * and MAC. The host agent makes the veth pair (its container side `ec<hash>`
 * waits in the host namespace); Join hands that interface to Docker, which
 * moves it into the container. Docker asks the IPAM driver for an address
 * before it tells the network driver about the endpoint, so the endpoint is
 * created at RequestAddress and claimed by CreateEndpoint.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import { execFile } from 'node:child_process';
import { endpointIfName } from '#sdn/compiler';
import { directoryRequest, DirectoryUnreachable, type DirectoryReply } from './directory-request';

export interface DockerPluginConfig {
  /** e.g. /run/docker/plugins/sdn.sock */
  socketPath: string;
  directoryUrl: string;
  apiKey: string;
  hostId: string;
  /** namespace the agent programs (where the veths wait); null = the plugin's own */
  hostNetns: string | null;
  /** JSON file keeping networks and pools across plugin restarts */
  stateFile: string;
  readyTimeoutMs: number;
  /** how long one request to the directory may take (default 60000; the directory answers 503 within ~SDN_DB_TIMEOUT_SECONDS when its database hangs) */
  directoryTimeoutMs?: number;
}

interface NetworkRecord {
  subnetId: string;
  cidr: string;
  gateway: string;
  policyGroupIds: string[];
  createdSubnet: boolean;
}

interface PluginState {
  networks: Record<string, NetworkRecord>;
  /** poolId -> its CIDR and, once CreateNetwork has come, the network it serves */
  pools: Record<string, { cidr: string; networkId: string | null }>;
  /** endpoints made at RequestAddress, not yet claimed: `${poolId}|${ip}` -> endpoint id */
  pending: Record<string, string>;
  /** docker endpoint id -> directory endpoint id */
  endpoints: Record<string, string>;
  seq: number;
}

class PluginError extends Error {}

export class DockerPlugin {
  private server: Server | null = null;
  private state: PluginState = { networks: {}, pools: {}, pending: {}, endpoints: {}, seq: 0 };
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly cfg: DockerPluginConfig) {
    if (existsSync(cfg.stateFile)) this.state = JSON.parse(readFileSync(cfg.stateFile, 'utf8'));
  }

  async start(): Promise<void> {
    mkdirSync(dirname(this.cfg.socketPath), { recursive: true });
    rmSync(this.cfg.socketPath, { force: true });
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.cfg.socketPath, () => resolve());
    });
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections?.();
    rmSync(this.cfg.socketPath, { force: true });
  }

  private save(): void {
    mkdirSync(dirname(this.cfg.stateFile), { recursive: true });
    writeFileSync(this.cfg.stateFile, JSON.stringify(this.state));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString();
    let body: any = {};
    try {
      body = text ? JSON.parse(text) : {};
    } catch {
      /* docker sends JSON; an empty body is {} */
    }
    const path = (req.url ?? '').split('?')[0];
    // one request at a time: Docker's calls for one network depend on each other's effects
    const run = this.queue.then(() => this.dispatch(path, body));
    this.queue = run.catch(() => undefined);
    let status = 200;
    let out: unknown;
    try {
      out = await run;
    } catch (e) {
      // libnetwork reads {"Err": "..."} as the failure of the call
      out = { Err: (e as Error).message };
      status = e instanceof PluginError ? 400 : 500;
    }
    res.writeHead(status, { 'content-type': 'application/vnd.docker.plugins.v1.2+json' });
    res.end(JSON.stringify(out));
  }

  private async dispatch(path: string, b: any): Promise<unknown> {
    switch (path) {
      case '/Plugin.Activate':
        return { Implements: ['NetworkDriver', 'IpamDriver'] };
      // --- IPAM
      case '/IpamDriver.GetCapabilities':
        return { RequiresMACAddress: false, RequiresRequestReplay: false };
      case '/IpamDriver.GetDefaultAddressSpaces':
        return { LocalDefaultAddressSpace: 'sdn-local', GlobalDefaultAddressSpace: 'sdn-global' };
      case '/IpamDriver.RequestPool': {
        if (!b.Pool) throw new PluginError('this IPAM driver needs --subnet: the address plan belongs to the directory');
        if (b.V6) throw new PluginError('IPv6 pools are not supported by this driver yet');
        const poolId = `${b.Pool}#${++this.state.seq}`;
        this.state.pools[poolId] = { cidr: b.Pool, networkId: null };
        this.save();
        return { PoolID: poolId, Pool: b.Pool, Data: {} };
      }
      case '/IpamDriver.ReleasePool':
        delete this.state.pools[b.PoolID];
        this.save();
        return {};
      case '/IpamDriver.RequestAddress':
        return this.requestAddress(b);
      case '/IpamDriver.ReleaseAddress':
        return this.releaseAddress(b);
      // --- network driver
      case '/NetworkDriver.GetCapabilities':
        return { Scope: 'local', ConnectivityScope: 'global' };
      case '/NetworkDriver.CreateNetwork':
        return this.createNetwork(b);
      case '/NetworkDriver.DeleteNetwork':
        return this.deleteNetwork(b);
      case '/NetworkDriver.CreateEndpoint':
        return this.createEndpoint(b);
      case '/NetworkDriver.DeleteEndpoint':
        return this.deleteEndpoint(b);
      case '/NetworkDriver.EndpointOperInfo':
        return { Value: { endpointId: this.state.endpoints[b.EndpointID] ?? null } };
      case '/NetworkDriver.Join':
        return this.join(b);
      case '/NetworkDriver.Leave':
        return {};
      case '/NetworkDriver.DiscoverNew':
      case '/NetworkDriver.DiscoverDelete':
      case '/NetworkDriver.ProgramExternalConnectivity':
      case '/NetworkDriver.RevokeExternalConnectivity':
        return {};
      default:
        throw new PluginError(`unknown call ${path}`);
    }
  }

  private async api(method: string, path: string, body?: unknown): Promise<DirectoryReply> {
    // Docker's calls are answered one at a time: a directory that never answers would hold every later call
    let r: DirectoryReply;
    try {
      r = await directoryRequest({ ...this.cfg, timeoutMs: this.cfg.directoryTimeoutMs ?? 60_000 }, method, path, body);
    } catch (e) {
      throw e instanceof DirectoryUnreachable ? new PluginError(`${e.message}${e.details ? `: ${e.details}` : ''}`) : e;
    }
    if (r.status === 503) throw new PluginError(`the directory is unavailable (503${r.body?.type ? ` ${r.body.type}` : ''}); try again`);
    return r;
  }

  private async createNetwork(b: any): Promise<unknown> {
    const opts = b.Options?.['com.docker.network.generic'] ?? {};
    const zoneId: string | undefined = opts.zone;
    if (!zoneId) throw new PluginError('option zone=<zone id> is required (docker network create -o zone=...)');
    const v4 = b.IPv4Data?.[0];
    if (!v4?.Pool) throw new PluginError('an IPv4 subnet is required (--subnet)');
    const cidr: string = v4.Pool;
    const zone = await this.api('GET', `/api/v1/zones/${zoneId}`);
    if (zone.status !== 200) throw new PluginError(`zone ${zoneId}: directory answers ${zone.status}`);
    const found = await this.api('GET', `/api/v1/zones/${zoneId}/subnets?cidr=${encodeURIComponent(cidr)}`);
    let subnet = found.body?.items?.[0];
    let createdSubnet = false;
    if (!subnet) {
      const made = await this.api('POST', `/api/v1/zones/${zoneId}/subnets`, { name: `docker-${String(b.NetworkID).slice(0, 12)}`, cidr });
      if (made.status !== 201) throw new PluginError(`directory refused subnet ${cidr}: ${made.body?.detail ?? made.status}`);
      subnet = made.body;
      createdSubnet = true;
    }
    const gw = String(v4.Gateway ?? '').split('/')[0];
    if (gw && gw !== subnet.gateway) throw new PluginError(`the subnet's gateway is ${subnet.gateway}, not ${gw}`);
    const groups = opts.policyGroup ? String(opts.policyGroup).split(',').filter(Boolean) : [];
    this.state.networks[b.NetworkID] = { subnetId: subnet.id, cidr, gateway: subnet.gateway, policyGroupIds: groups, createdSubnet };
    // Docker asks for the pool right before it creates the network, and CreateNetwork does not name the
    // pool: bind the newest unbound pool of this CIDR (two tenants' networks may share a CIDR)
    const pool = Object.keys(this.state.pools)
      .filter((id) => this.state.pools[id].cidr === cidr && this.state.pools[id].networkId === null)
      .pop();
    if (!pool) throw new PluginError(`no pool of ${cidr} waits for network ${b.NetworkID}`);
    this.state.pools[pool].networkId = b.NetworkID;
    this.save();
    return {};
  }

  private async deleteNetwork(b: any): Promise<unknown> {
    const n = this.state.networks[b.NetworkID];
    if (n?.createdSubnet) await this.api('DELETE', `/api/v1/subnets/${n.subnetId}`);
    delete this.state.networks[b.NetworkID];
    this.save();
    return {};
  }

  private networkOfPool(poolId: string): NetworkRecord | null {
    const id = this.state.pools[poolId]?.networkId;
    return id ? this.state.networks[id] ?? null : null;
  }

  private async requestAddress(b: any): Promise<unknown> {
    const cidr = this.state.pools[b.PoolID]?.cidr;
    if (!cidr) throw new PluginError(`unknown pool ${b.PoolID}`);
    const len = cidr.split('/')[1];
    if (b.Options?.RequestAddressType === 'com.docker.network.gateway') {
      // the anycast gateway is the directory's first usable address; the network does not exist yet
      const first = cidr.split('/')[0].split('.').map(Number);
      first[3] += 1;
      return { Address: `${first.join('.')}/${len}`, Data: {} };
    }
    const n = this.networkOfPool(b.PoolID);
    if (!n) throw new PluginError(`pool ${b.PoolID} has no network`);
    const made = await this.api('POST', `/api/v1/subnets/${n.subnetId}/endpoints`, {
      name: `docker-pending-${++this.state.seq}`,
      kind: 'container',
      externalId: `docker:${this.cfg.hostId}:${this.state.seq}`,
      hostId: this.cfg.hostId,
      policyGroupIds: n.policyGroupIds,
      ...(b.Address ? { ip: b.Address } : {}),
    });
    if (made.status !== 201 && made.status !== 200) throw new PluginError(`directory refused the endpoint: ${made.body?.detail ?? made.status}`);
    this.state.pending[`${b.PoolID}|${made.body.ip}`] = made.body.id;
    this.save();
    return { Address: `${made.body.ip}/${len}`, Data: {} };
  }

  private async releaseAddress(b: any): Promise<unknown> {
    const key = `${b.PoolID}|${b.Address}`;
    const id = this.state.pending[key];
    if (id) {
      await this.api('DELETE', `/api/v1/endpoints/${id}`);
      delete this.state.pending[key];
      this.save();
    }
    return {};
  }

  private async createEndpoint(b: any): Promise<unknown> {
    const n = this.state.networks[b.NetworkID];
    if (!n) throw new PluginError(`unknown network ${b.NetworkID}`);
    const ip = String(b.Interface?.Address ?? '').split('/')[0];
    const key = Object.keys(this.state.pending).find((k) => k.endsWith(`|${ip}`) && this.state.pools[k.split('|')[0]]?.networkId === b.NetworkID);
    if (!key) throw new PluginError(`no address ${ip} was handed out for network ${b.NetworkID}`);
    const id = this.state.pending[key];
    delete this.state.pending[key];
    // the endpoint is named after Docker's endpoint (externalId was set at RequestAddress and never changes)
    const r = await this.api('PATCH', `/api/v1/endpoints/${id}`, { name: `docker-${String(b.EndpointID).slice(0, 12)}` });
    if (r.status !== 200) throw new PluginError(`directory: endpoint ${id} -> ${r.status}`);
    this.state.endpoints[b.EndpointID] = id;
    this.save();
    // Docker sets the MAC we return on the interface; the agent made the veth with the same one
    return b.Interface?.MacAddress ? {} : { Interface: { MacAddress: r.body.mac } };
  }

  private async deleteEndpoint(b: any): Promise<unknown> {
    const id = this.state.endpoints[b.EndpointID];
    if (id) {
      const r = await this.api('DELETE', `/api/v1/endpoints/${id}`);
      if (r.status !== 204 && r.status !== 404) throw new PluginError(`directory refused the delete of ${id}: ${r.status}`);
      delete this.state.endpoints[b.EndpointID];
      this.save();
    }
    return {};
  }

  private async join(b: any): Promise<unknown> {
    const n = this.state.networks[b.NetworkID];
    const id = this.state.endpoints[b.EndpointID];
    if (!n || !id) throw new PluginError(`unknown endpoint ${b.EndpointID}`);
    const peer = `ec${endpointIfName(id).slice(2)}`;
    const deadline = Date.now() + this.cfg.readyTimeoutMs;
    while (!(await this.linkExists(peer))) {
      if (Date.now() > deadline) throw new PluginError(`the host agent has not made interface ${peer} for endpoint ${id}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return { InterfaceName: { SrcName: peer, DstPrefix: 'eth' }, Gateway: n.gateway, DisableGatewayService: true };
  }

  private linkExists(name: string): Promise<boolean> {
    const argv = this.cfg.hostNetns ? ['-n', this.cfg.hostNetns, 'link', 'show', 'dev', name] : ['link', 'show', 'dev', name];
    return new Promise((resolve) => execFile('ip', argv, (err) => resolve(!err)));
  }
}
