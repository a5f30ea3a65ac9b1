/**
 * The agent's side of the protocol: connects, says hello with its host id,
 * credential, VTEP and last acknowledged version, delivers snapshots and
 * deltas in order, sends acks and nacks, and reconnects with exponential
 * backoff, resuming from the last acknowledged version.
 *
 * The controller keeps at most one message unacknowledged per agent, so an
 * agent that applies asynchronously simply acks (or nacks) when done.
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { CLOSE_AUTH_FAILED, decode, decodeStateFrame, encodeAck, encodeHello, encodeNack, PROTOCOL_VERSION, type Delta, type Snapshot, type StateFrame } from './messages';

export interface ResumePoint {
  /** epoch of the controller that sent `version` ('' when unknown) */
  epoch: string;
  version: number;
  /** directory revision of the state at `version` */
  revision: number;
  /** digest of the state at `version` */
  digest: string;
}

export interface AgentClientOptions {
  /** first reconnect delay (ms); doubles up to maxBackoffMs, with jitter */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** where to resume from at the first connection (an agent that kept its state across a restart) */
  resume?: ResumePoint;
  /** ws options (e.g. TLS) */
  ws?: WebSocket.ClientOptions;
  /**
   * ms without any frame or ping from the controller after which the
   * connection is considered dead and reopened (the controller pings every
   * 15 s by default); 0 disables. Default 45000.
   */
  idleTimeoutMs?: number;
  /**
   * Deliver snapshots and deltas as `frame` events, their bodies not decoded
   * (StateFrame), instead of `snapshot` and `delta` events: for a holder that
   * reads the body itself (DigestMirror.applyFrame), which then also checks it.
   */
  frames?: boolean;
}

interface Replyable {
  ack(): boolean;
  nack(reason: string): boolean;
}

/** A snapshot as received, with its answer. */
export interface SnapshotEvent extends Snapshot, Replyable {}

/** A delta as received, with its answer. */
export interface DeltaEvent extends Delta, Replyable {}

/** A snapshot or delta as received with its body not decoded (option `frames`), with its answer. */
export interface FrameEvent extends StateFrame, Replyable {}

export interface AgentClientEvents {
  connected: [];
  disconnected: [{ code: number; reason: string }];
  /** the controller refused the hello (bad credential); the client keeps retrying with backoff */
  rejected: [string];
  snapshot: [SnapshotEvent];
  delta: [DeltaEvent];
  /** with option `frames`, instead of snapshot and delta */
  frame: [FrameEvent];
  error: [Error];
}

export class AgentClient extends EventEmitter<AgentClientEvents> {
  private ws: WebSocket | null = null;
  private closed = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | null = null;
  private resume: ResumePoint;
  /** digest and epoch of the versions received but not yet answered */
  private readonly received = new Map<number, { epoch: string; revision: number; digest: string; connection: number }>();
  /** counts connections, so that an answer to a message of an earlier connection is not sent on a later one */
  private connection = 0;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;

  constructor(
    readonly url: string,
    readonly hostId: string,
    private readonly credential: string,
    readonly vtepIp: string,
    private readonly opts: AgentClientOptions = {},
  ) {
    super();
    this.resume = opts.resume ?? { epoch: '', version: 0, revision: 0, digest: '' };
    this.minBackoffMs = opts.minBackoffMs ?? 200;
    this.maxBackoffMs = opts.maxBackoffMs ?? 10_000;
  }

  /** Creates a client and starts connecting. */
  static connect(url: string, hostId: string, credential: string, vtepIp: string, opts?: AgentClientOptions): AgentClient {
    const c = new AgentClient(url, hostId, credential, vtepIp, opts);
    c.start();
    return c;
  }

  start(): void {
    if (this.ws || this.closed) return;
    this.open();
  }

  /** The last acknowledged version: what the next hello resumes from. */
  get lastAcked(): ResumePoint {
    return { ...this.resume };
  }

  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /**
   * Acknowledges a received version: the agent holds exactly that state now.
   * Safe at any time: after a reconnect it only moves the resume point (the
   * controller's newer deltas still apply on top: they are idempotent).
   * Returns false for a version that was not received or was answered already.
   */
  ack(version: number): boolean {
    const r = this.received.get(version);
    if (!r) return false;
    for (const v of [...this.received.keys()]) if (v <= version) this.received.delete(v);
    if (version >= this.resume.version || r.epoch !== this.resume.epoch) this.resume = { epoch: r.epoch, version, revision: r.revision, digest: r.digest };
    if (r.connection === this.connection) this.sendFrame(encodeAck(version, r.digest));
    return true;
  }

  /** Rejects a received version; the agent keeps its last good state (the controller then sends a snapshot). */
  nack(version: number, reason: string): boolean {
    const r = this.received.get(version);
    if (!r) return false;
    this.received.delete(version);
    if (r.connection === this.connection) this.sendFrame(encodeNack(version, reason));
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close(1000, 'agent closing');
    });
  }

  private sendFrame(b: Buffer): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(b, { binary: true });
    // when disconnected, the hello of the next connection carries the last ack
  }

  private open(): void {
    const ws = new WebSocket(this.url, { perMessageDeflate: false, ...this.opts.ws });
    this.ws = ws;
    ws.binaryType = 'nodebuffer';
    const connection = ++this.connection;
    // a controller that vanished without closing (host down, half-open TCP) is noticed by its silence
    const idleMs = this.opts.idleTimeoutMs ?? 45_000;
    let idle: NodeJS.Timeout | null = null;
    const alive = () => {
      if (idleMs <= 0) return;
      // every frame re-arms the one timer (no new timer object per frame)
      if (idle) idle.refresh();
      else {
        idle = setTimeout(() => ws.terminate(), idleMs);
        idle.unref();
      }
    };
    ws.on('ping', alive);
    ws.on('message', alive);
    ws.on('close', () => {
      if (idle) clearTimeout(idle);
    });
    ws.on('open', () => {
      alive();
      ws.send(
        encodeHello({
          protocol: PROTOCOL_VERSION,
          hostId: this.hostId,
          credential: this.credential,
          vtepIp: this.vtepIp,
          ...this.resume,
        }),
        { binary: true },
      );
      this.emit('connected');
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      this.attempt = 0; // a working session resets the backoff
      let m;
      try {
        m = this.opts.frames ? decodeStateFrame(data) : decode(data);
      } catch (e) {
        this.emit('error', e as Error);
        ws.terminate();
        return;
      }
      if (m === null || (m.type !== 'snapshot' && m.type !== 'delta')) return;
      this.received.set(m.version, { epoch: m.epoch, revision: m.revision, digest: m.digest, connection });
      const v = m.version;
      const answer = { ack: () => this.ack(v), nack: (reason: string) => this.nack(v, reason) };
      if ('frame' in m) this.emit('frame', { ...m, ...answer });
      else if (m.type === 'snapshot') this.emit('snapshot', { ...m, ...answer });
      else this.emit('delta', { ...m, ...answer });
    });
    ws.on('error', (e) => {
      if (this.listenerCount('error') > 0) this.emit('error', e);
    });
    ws.on('close', (code, reason) => {
      if (this.ws === ws) this.ws = null;
      const text = reason.toString();
      if (code === CLOSE_AUTH_FAILED) this.emit('rejected', text);
      this.emit('disconnected', { code, reason: text });
      if (!this.closed) this.schedule();
    });
  }

  private schedule(): void {
    const base = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** Math.min(this.attempt, 16));
    this.attempt++;
    const delay = base / 2 + Math.random() * (base / 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.closed) this.open();
    }, delay);
  }
}
