/**
 * A simulated host agent: speaks the real protocol (libs/wire) over loopback,
 * applies snapshots and deltas to a StateMirror (or, with `keep: 'digest'`, a
 * DigestMirror: every entry checked, only its hash kept) and acks them. Its own module,
 * with no directory or controller imports, so that the benchmark's agent
 * processes load only the wire and compiler libraries.
 */
import { stateSize, type HostState } from '#sdn/compiler';
import { AgentClient, DeltaEvent, DigestMirror, FrameEvent, SnapshotEvent, StateMirror, WireError, type ApplyResult } from '#sdn/wire';

export interface SimHost {
  id: string;
  credential: string;
  vtepIp: string;
}

export interface SimOptions {
  /** return a reason to reject (nack) a version instead of applying it */
  reject?: (m: { type: 'snapshot' | 'delta'; version: number }) => string | null;
  /** resume point at the first connection (an agent that kept its state) */
  resumeFrom?: SimulatedAgent;
  minBackoffMs?: number;
  /**
   * 'state' (default): hold every entry (`state`). 'digest': hold each entry's
   * hash only; every snapshot and delta is still decoded and checked against
   * the controller's digest, but `state` is not available (the scale
   * benchmark's many hosts in one process).
   */
  keep?: 'state' | 'digest';
  /** with keep: 'digest', how many entries the host is expected to hold at most (DigestMirror's table starts that large) */
  expectedEntries?: number;
}

/** One simulated host agent: applies snapshots and deltas to a StateMirror and acks. */
export class SimulatedAgent {
  mirror = new StateMirror();
  /** with keep: 'digest', what is held instead of `mirror` */
  digests: DigestMirror | null = null;
  readonly client: AgentClient;
  snapshots = 0;
  deltas = 0;
  nacks = 0;
  connects = 0;
  rejectedWith: string | null = null;
  /** while stalled, received messages wait unapplied and unacknowledged (a slow agent) */
  private stalled: Array<() => void> | null = null;

  constructor(
    url: string,
    readonly host: SimHost,
    private readonly opts: SimOptions = {},
  ) {
    const prev = opts.resumeFrom;
    if (prev) this.mirror = prev.mirror;
    if (opts.keep === 'digest') this.digests = prev?.digests ?? new DigestMirror(opts.expectedEntries);
    this.client = new AgentClient(url, host.id, host.credential, host.vtepIp, {
      minBackoffMs: opts.minBackoffMs ?? 50,
      maxBackoffMs: 1000,
      resume: prev ? prev.client.lastAcked : undefined,
      // a DigestMirror reads the bodies itself, straight into hashes
      frames: this.digests !== null,
    });
    this.client.on('connected', () => this.connects++);
    this.client.on('rejected', (r) => (this.rejectedWith = r));
    this.client.on('error', () => undefined);
    this.client.on('snapshot', (m) => this.receive('snapshot', m, () => this.mirror.applySnapshot(m)));
    this.client.on('delta', (m) => this.receive('delta', m, () => this.mirror.applyDelta(m)));
    this.client.on('frame', (m) => this.receive(m.type, m, () => this.applyFrame(m)));
    this.client.start();
  }

  get state(): HostState {
    if (this.digests) throw new Error('a simulated agent that keeps digests only holds no state');
    return this.mirror.state;
  }

  /** the digest of what it holds */
  digest(): string {
    return (this.digests ?? this.mirror).digest.value();
  }

  /** entries held */
  entryCount(): number {
    return this.digests ? this.digests.size : stateSize(this.mirror.state);
  }

  get ackedVersion(): number {
    return this.client.lastAcked.version;
  }

  stall(): void {
    this.stalled ??= [];
  }

  /** Applies what arrived while stalled, in order, and acks it. */
  unstall(): void {
    const held = this.stalled ?? [];
    this.stalled = null;
    for (const f of held) f();
  }

  get held(): number {
    return this.stalled?.length ?? 0;
  }

  /** A frame into the DigestMirror; a malformed body is refused (nack) like a wrong digest. */
  private applyFrame(m: FrameEvent): ApplyResult {
    try {
      return this.digests!.applyFrame(m);
    } catch (e) {
      if (e instanceof WireError) return { ok: false, reason: `malformed ${m.type}: ${e.message}` };
      throw e;
    }
  }

  /** Holds a message while stalled; otherwise counts it, applies it (unless told to reject it) and acks or nacks. */
  private receive(type: 'snapshot' | 'delta', m: SnapshotEvent | DeltaEvent | FrameEvent, apply: () => ApplyResult): void {
    if (this.stalled) return void this.stalled.push(() => this.receive(type, m, apply));
    if (type === 'snapshot') this.snapshots++;
    else this.deltas++;
    const why = this.opts.reject?.({ type, version: m.version }) ?? null;
    if (why !== null) return this.refuse(m, why);
    const r = apply();
    if (r.ok) m.ack();
    else this.refuse(m, r.reason);
  }

  private refuse(m: { nack(reason: string): void }, reason: string): void {
    this.nacks++;
    m.nack(reason);
  }

  stop(): Promise<void> {
    return this.client.close();
  }
}
