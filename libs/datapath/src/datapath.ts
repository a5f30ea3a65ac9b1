/**
 * The datapath of one host: keeps the kernel equal to the last HostState it
 * accepted. A snapshot or a delta is rendered into kernel objects, diffed
 * against what the kernel holds (read at start, then the model of the last
 * good state), and only the difference is applied. When the kernel refuses a
 * command, the error carries its message, and the touched domains are brought
 * back to the last good state (read from the kernel, then diffed again).
 */
import { applyDelta as applyStateDelta, cloneState, emptyHostState, HostDelta, HostState } from '#sdn/compiler';
import { CommandError, inNetns, run, runJson } from './exec';
import { addPiece, DatapathConfig, domainNs, DomainModel, modelDifferences, removePiece, renderState, touchedDomains } from './model';
import { fastDelta, planFast } from './incremental';
import { DomainPlan, planDomain, planIsEmpty } from './plan';
import { listDomainNamespaces, readDomain } from './read';

export interface ApplyReport {
  /** objects added, changed or removed in the kernel */
  changes: number;
  durationMs: number;
}

export class ApplyError extends Error {
  constructor(
    message: string,
    readonly rolledBack: boolean,
  ) {
    super(message);
    this.name = 'ApplyError';
  }
}

const SYSCTLS = [
  'net.ipv4.ip_forward=1',
  'net.ipv6.conf.all.forwarding=1',
  'net.ipv4.conf.all.rp_filter=0',
  'net.ipv4.conf.default.rp_filter=0',
  // bridged IP traffic goes through the inet hooks, so the domain's firewall (with conntrack) sees it too
  'net.bridge.bridge-nf-call-iptables=1',
  'net.bridge.bridge-nf-call-ip6tables=1',
];

export class Datapath {
  private good: HostState = emptyHostState();
  private model = new Map<string, DomainModel>();
  private queue: Promise<unknown> = Promise.resolve();
  private started = false;
  /** deltas applied by the fast path (incremental.ts) */
  fastApplies = 0;

  constructor(readonly cfg: DatapathConfig) {}

  /** the last state applied without error */
  get state(): HostState {
    return this.good;
  }

  /** One operation at a time: applies are serialized. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /**
   * Makes the kernel equal to `desired`, reading what it holds first (every
   * domain namespace with our prefix, including ones the state no longer has).
   * Nothing is flushed: what already matches is left alone.
   */
  reconcile(desired: HostState): Promise<ApplyReport> {
    return this.serial(async () => {
      const t0 = performance.now();
      const kernel = await this.readKernel(null);
      const want = renderState(desired, this.cfg);
      const changes = await this.execute(kernel, want);
      this.good = cloneState(desired);
      this.model = want;
      this.started = true;
      return { changes, durationMs: performance.now() - t0 };
    }).catch((e) => {
      throw new ApplyError(message(e), false);
    });
  }

  /** A full state from the controller: the difference to the current kernel is applied. */
  applySnapshot(desired: HostState): Promise<ApplyReport> {
    if (!this.started) return this.reconcile(desired);
    return this.serial(async () => {
      const t0 = performance.now();
      const want = renderState(desired, this.cfg);
      try {
        const changes = await this.execute(this.model, want);
        this.good = cloneState(desired);
        this.model = want;
        return { changes, durationMs: performance.now() - t0 };
      } catch (e) {
        throw await this.rollback(e, null);
      }
    });
  }

  /** A delta against the last good state. */
  applyDelta(delta: HostDelta): Promise<ApplyReport> {
    return this.serial(async () => {
      const t0 = performance.now();
      const fast = fastDelta(this.good, delta, this.model, this.cfg);
      if (fast) {
        let changes = 0;
        try {
          for (const [ns, { removed, added }] of fast.byNs) {
            const m = this.model.get(ns)!;
            const plan = planFast(ns, m, removed, added, this.cfg);
            changes += plan.changes;
            if (!planIsEmpty(plan)) await this.executePlan(plan);
            for (const p of removed) removePiece(m, p);
            for (const p of added) addPiece(m, p);
          }
        } catch (e) {
          const domains = touchedDomains(this.good, this.good, delta) ?? undefined;
          throw await this.rollback(e, domains ?? null);
        }
        applyStateDelta(this.good, delta);
        this.fastApplies++;
        return { changes, durationMs: performance.now() - t0 };
      }
      const next = cloneState(this.good);
      applyStateDelta(next, delta);
      const domains = touchedDomains(this.good, next, delta);
      const before = domains === null ? this.model : pick(this.model, this.good, domains, this.cfg);
      const want = renderState(next, this.cfg, domains ?? undefined);
      // a domain that leaves is in `before` but not in `want`
      try {
        const changes = await this.execute(before, want);
        this.good = next;
        if (domains === null) this.model = want;
        else {
          for (const ns of before.keys()) this.model.delete(ns);
          for (const [ns, m] of want) this.model.set(ns, m);
        }
        return { changes, durationMs: performance.now() - t0 };
      } catch (e) {
        throw await this.rollback(e, domains);
      }
    });
  }

  /** Differences between the model the datapath keeps and a full render of its state (tests: must be none). */
  selfCheck(): string[] {
    return modelDifferences(this.model, renderState(this.good, this.cfg));
  }

  /** Removes every domain namespace of this agent (tests and decommissioning; never done at start). */
  destroy(): Promise<void> {
    return this.serial(async () => {
      for (const ns of (await listDomainNamespaces(this.cfg)).keys()) await run(['ip', 'netns', 'del', ns]).catch(() => undefined);
      this.good = emptyHostState();
      this.model = new Map();
    });
  }

  private async readKernel(only: Set<string> | null): Promise<Map<string, DomainModel>> {
    const out = new Map<string, DomainModel>();
    for (const [ns, vni] of await listDomainNamespaces(this.cfg)) {
      if (only && !only.has(ns)) continue;
      out.set(ns, await readDomain(ns, vni));
    }
    return out;
  }

  /** After a refused command: the touched domains go back to the last good state, as read from the kernel. */
  private async rollback(e: unknown, domains: Set<string> | null): Promise<ApplyError> {
    const reason = message(e);
    try {
      const want = domains === null ? renderState(this.good, this.cfg) : renderState(this.good, this.cfg, domains);
      const namespaces = domains === null ? null : new Set([...want.keys(), ...this.namespacesOf(domains)]);
      const kernel = await this.readKernel(namespaces);
      await this.execute(kernel, want, namespaces === null);
      // the model follows the kernel again (a fast delta may have updated some namespaces before the failure)
      if (namespaces === null) this.model = want;
      else {
        for (const ns of namespaces) this.model.delete(ns);
        for (const [ns, m] of want) this.model.set(ns, m);
      }
      return new ApplyError(reason, true);
    } catch (e2) {
      return new ApplyError(`${reason}; rollback failed: ${message(e2)}`, false);
    }
  }

  private namespacesOf(domainIds: Set<string>): string[] {
    const out: string[] = [];
    for (const id of domainIds) {
      const d = this.good.domains.get(id);
      if (d) out.push(domainNs(this.cfg, d.l3Vni));
    }
    return out;
  }

  /** Applies the difference between two sets of domain models; returns the number of changed objects. */
  private async execute(from: Map<string, DomainModel>, to: Map<string, DomainModel>, removeUnknown = true): Promise<number> {
    const plans: DomainPlan[] = [];
    for (const [ns, m] of to) plans.push(planDomain(from.get(ns) ?? null, m, this.cfg));
    if (removeUnknown) for (const [ns, m] of from) if (!to.has(ns)) plans.push(planDomain(m, null, this.cfg));
    let changes = 0;
    for (const p of plans) {
      changes += p.changes;
      if (!planIsEmpty(p)) await this.executePlan(p);
    }
    return changes;
  }

  private async executePlan(p: DomainPlan): Promise<void> {
    if (p.deleteNs) {
      await run(['ip', 'netns', 'del', p.ns]);
      return;
    }
    if (p.createNs) {
      await run(['ip', 'netns', 'add', p.ns]).catch((e) => {
        if (!(e instanceof CommandError && /File exists/.test(e.stderr))) throw e;
      });
      await run(inNetns(p.ns, ['ip', 'link', 'set', 'lo', 'up']));
      await run(inNetns(p.ns, ['sysctl', '-q', '-w', ...SYSCTLS]));
    }
    const devicesChange = p.createNs || p.hostIp.length > 0 || [...p.ipPre, ...p.ipPost].some((l) => l.startsWith('link '));
    if (!devicesChange) {
      // neighbours and routes, the FDB and the firewall are independent objects: one batch each, at once
      const ip = async () => {
        if (p.ipPre.length) await batch(inNetns(p.ns, ['ip', '-batch', '-']), p.ipPre);
        if (p.ipPost.length) await batch(inNetns(p.ns, ['ip', '-batch', '-']), p.ipPost);
      };
      const results = await Promise.allSettled([
        ip(),
        p.bridge.length ? batch(inNetns(p.ns, ['bridge', '-batch', '-']), p.bridge) : Promise.resolve(),
        p.nft ? batch(inNetns(p.ns, ['nft', '-f', '-']), p.nft.trimEnd().split('\n')) : Promise.resolve(),
      ]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      return;
    }
    if (p.ipPre.some((l) => l.startsWith('link del '))) {
      // an endpoint's veth pair vanishes with its container's namespace: a device already gone is not an error
      const present = new Set((await runJson<{ ifname: string }[]>(inNetns(p.ns, ['ip', '-j', 'link', 'show']))).map((l) => l.ifname));
      p.ipPre = p.ipPre.filter((l) => !l.startsWith('link del ') || present.has(l.slice('link del '.length)));
    }
    if (p.ipPre.length) await batch(inNetns(p.ns, ['ip', '-batch', '-']), p.ipPre);
    if (p.hostIp.length) await batch(inNetns(this.cfg.hostNetns, ['ip', '-batch', '-']), p.hostIp);
    if (p.ipPost.length) await batch(inNetns(p.ns, ['ip', '-batch', '-']), p.ipPost);
    if (p.bridge.length) await batch(inNetns(p.ns, ['bridge', '-batch', '-']), p.bridge);
    if (p.nft) await batch(inNetns(p.ns, ['nft', '-f', '-']), p.nft.trimEnd().split('\n'));
  }
}

async function batch(argv: string[], lines: string[]): Promise<void> {
  try {
    await run(argv, lines.join('\n') + '\n');
  } catch (e) {
    if (e instanceof CommandError) {
      // name the refused line: iproute2 says "Command failed -:N", nft "-:N:..." / "/dev/stdin:N:..."
      const m = /(?:-|stdin):(\d+)/.exec(e.stderr);
      const line = m ? lines[Number(m[1]) - 1] : undefined;
      throw new CommandError(e.argv, e.code, line ? `${e.stderr.trim()} [line: ${line}]` : e.stderr);
    }
    throw e;
  }
}

function pick(model: Map<string, DomainModel>, state: HostState, domainIds: Set<string>, cfg: DatapathConfig): Map<string, DomainModel> {
  const out = new Map<string, DomainModel>();
  for (const id of domainIds) {
    const d = state.domains.get(id);
    if (!d) continue;
    const ns = domainNs(cfg, d.l3Vni);
    const m = model.get(ns);
    if (m) out.set(ns, m);
  }
  return out;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
