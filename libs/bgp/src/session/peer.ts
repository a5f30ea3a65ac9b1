/**
 * One neighbour: the RFC 4271 §8 finite state machine over one or two TCP
 * connections (two while a collision is being resolved, §6.8).
 */
import * as net from 'node:net';
import {
  BgpError,
  CeaseSubcode,
  decodeMessage,
  encode,
  ErrorCode,
  frameLength,
  OpenSubcode,
  ipv4ToNumber,
  familyOf,
  afiSafiOf,
  AS_TRANS,
  type Capability,
  type CodecContext,
  type Family,
  type Message,
  type Open,
  type Update,
  type RouteRefresh,
} from '../codec/index.js';
import type { PolicyHook } from '../rib/policy.js';

export type PeerState = 'idle' | 'connect' | 'active' | 'open-sent' | 'open-confirm' | 'established';

export interface NeighborConfig {
  /** Neighbour's IP address (IPv4 or IPv6). */
  address: string;
  /** TCP port to connect to (default 179). */
  port?: number;
  asn: number;
  /** Local address to bind outgoing connections to. */
  localAddress?: string;
  /** Only accept connections, never initiate (RFC 4271 §8.1.1 PassiveTcpEstablishment). */
  passive?: boolean;
  /** Proposed hold time in seconds (default: the speaker's). */
  holdTime?: number;
  /** Seconds between connection attempts (default 10). */
  connectRetryTime?: number;
  /** Families to negotiate (default: all three). */
  families?: Family[];
  /** This iBGP neighbour is a route-reflector client of ours (RFC 4456). */
  routeReflectorClient?: boolean;
  importPolicy?: PolicyHook;
  exportPolicy?: PolicyHook;
  /** Force our address as next hop for unicast routes sent to this neighbour. */
  nextHopSelf?: boolean;
  /** Next hop for IPv6 unicast routes when we must set ourselves (default: unchanged). */
  localAddressV6?: string;
  /**
   * Most routes accepted from this neighbour (all families): one more closes
   * the session with Cease/Maximum Number of Prefixes Reached (RFC 4486 §4).
   */
  maxPrefixes?: number;
  /** Seconds after which a session closed for too many prefixes is tried again (default: not until reconfigured). */
  maxPrefixesRestart?: number;
}

export interface PeerCounters {
  messagesReceived: number;
  messagesSent: number;
  updatesReceived: number;
  updatesSent: number;
  bytesReceived: number;
  bytesSent: number;
  notificationsReceived: number;
  notificationsSent: number;
  establishedTransitions: number;
}

export interface Negotiated {
  families: Family[];
  as4: boolean;
  extendedMessages: boolean;
  routeRefresh: boolean;
  enhancedRouteRefresh: boolean;
  holdTime: number;
  keepaliveTime: number;
  remoteAsn: number;
  remoteRouterId: string;
  /** The neighbour's graceful-restart capability, when it sent one. */
  gracefulRestart?: Extract<Capability, { kind: 'graceful-restart' }>;
  localAddress: string;
}

/** What a peer needs from the speaker that hosts it. */
export interface PeerHost {
  readonly localAsn: number;
  readonly routerId: string;
  readonly holdTime: number;
  readonly gracefulRestart: { enabled: boolean; restartTime: number; restarting: boolean };
  onEstablished(peer: Peer): void;
  /** `keepStale`: the session ended in a way that lets us act as GR helper (RFC 4724 §4.2). */
  onDown(peer: Peer, keepStale: boolean, reason: string): void;
  onUpdate(peer: Peer, update: Update): void;
  onRouteRefresh(peer: Peer, rr: RouteRefresh): void;
  onStateChange(peer: Peer, previous: PeerState, state: PeerState, reason: string): void;
  log(level: 'debug' | 'info' | 'warn', event: string, fields: Record<string, unknown>): void;
}

const LARGE_HOLD = 240; // RFC 4271 §8.2.2: hold timer in OpenSent "large value" (4 minutes)

class Connection {
  state: 'connecting' | 'open-sent' | 'open-confirm' | 'established' = 'connecting';
  ctx: CodecContext = { as4: false };
  remoteOpen?: Open;
  private pending: Buffer | undefined;
  lastReceived = Date.now();
  holdTime = LARGE_HOLD;
  closed = false;

  constructor(
    readonly peer: Peer,
    readonly socket: net.Socket,
    readonly outgoing: boolean,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e) => this.peer.connectionClosed(this, `socket error: ${e.message}`));
    socket.on('close', () => this.peer.connectionClosed(this, 'connection closed'));
  }

  write(b: Buffer): boolean {
    if (this.closed) return false;
    this.peer.counters.bytesSent += b.length;
    this.peer.counters.messagesSent++;
    return this.socket.write(b);
  }

  /** Sends a NOTIFICATION and closes (RFC 4271 §6). */
  notifyAndClose(code: number, subcode: number, data: Uint8Array = new Uint8Array(0)): void {
    if (this.closed) return;
    const b = encode({ type: 'notification', code, subcode, data });
    this.peer.counters.notificationsSent++;
    this.peer.counters.bytesSent += b.length;
    this.peer.counters.messagesSent++;
    this.closed = true;
    this.socket.end(b);
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.lastReceived = Date.now();
    this.peer.counters.bytesReceived += chunk.length;
    let b = chunk;
    if (this.pending !== undefined) {
      b = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let off = 0;
    const end = b.length;
    try {
      while (!this.closed) {
        const len = frameLength(b, off, end, this.ctx);
        if (len === 0) break;
        const m = decodeMessage(b, off, len, this.ctx);
        off += len;
        this.peer.counters.messagesReceived++;
        this.peer.onMessage(this, m);
      }
    } catch (e) {
      if (e instanceof BgpError) {
        this.peer.host.log('warn', 'bgp.peer.bad-message', { peer: this.peer.address, code: e.code, subcode: e.subcode, reason: e.message });
        this.peer.lastError = { direction: 'sent', code: e.code, subcode: e.subcode, reason: e.message };
        this.notifyAndClose(e.code, e.subcode, e.data);
        this.peer.connectionClosed(this, `sent NOTIFICATION ${e.code}/${e.subcode}: ${e.message}`, false);
        return;
      }
      // A bug of ours must not take the other sessions down with the process:
      // reset this one (Cease, no subcode) and say why.
      this.peer.host.log('warn', 'bgp.peer.internal-error', { peer: this.peer.address, error: String((e as Error)?.stack ?? e) });
      this.peer.lastError = { direction: 'sent', code: ErrorCode.Cease, subcode: 0, reason: `internal error: ${String(e)}` };
      this.notifyAndClose(ErrorCode.Cease, 0);
      this.peer.connectionClosed(this, 'internal error', false);
      return;
    }
    if (off < end && !this.closed) this.pending = Buffer.from(b.subarray(off, end));
  }
}

export class Peer {
  state: PeerState = 'idle';
  readonly counters: PeerCounters = {
    messagesReceived: 0,
    messagesSent: 0,
    updatesReceived: 0,
    updatesSent: 0,
    bytesReceived: 0,
    bytesSent: 0,
    notificationsReceived: 0,
    notificationsSent: 0,
    establishedTransitions: 0,
  };
  negotiated?: Negotiated;
  /** The last NOTIFICATION received or sent, for operators. */
  lastError?: { direction: 'sent' | 'received'; code: number; subcode: number; reason: string };
  private connections: Connection[] = [];
  private established?: Connection;
  private enabled = false;
  private retryTimer?: NodeJS.Timeout;
  private holdTimer?: NodeJS.Timeout;
  private keepaliveTimer?: NodeJS.Timeout;
  /** True until our first session comes up: the GR R bit (RFC 4724 §3) is set then. */
  private firstSession = true;

  constructor(
    readonly config: NeighborConfig,
    readonly host: PeerHost,
  ) {}

  get address(): string {
    return this.config.address;
  }
  get ibgp(): boolean {
    return this.config.asn === this.host.localAsn;
  }
  get families(): Family[] {
    return this.config.families ?? ['ipv4-unicast', 'ipv6-unicast', 'l2vpn-evpn'];
  }
  get isEstablished(): boolean {
    return this.state === 'established';
  }

  start(): void {
    if (this.enabled) return;
    this.enabled = true;
    if (this.config.passive) this.setState('active', 'start (passive)');
    else this.connect();
  }

  /** Stops the peer. `notify` false drops TCP without a NOTIFICATION (used to simulate a restart). */
  stop(notify = true, subcode: number = CeaseSubcode.AdministrativeShutdown): void {
    this.enabled = false;
    clearTimeout(this.retryTimer);
    for (const c of [...this.connections]) {
      if (notify && c.state !== 'connecting') c.notifyAndClose(ErrorCode.Cease, subcode);
      else c.destroy();
      this.connectionClosed(c, 'stopped', !notify);
    }
    this.setState('idle', 'stopped');
  }

  /** Writes an encoded message on the established connection; false when the socket wants a drain. */
  send(b: Buffer, isUpdate = true): boolean {
    const c = this.established;
    if (c === undefined) return true;
    if (isUpdate) this.counters.updatesSent++;
    return c.write(b);
  }

  /** Waits until the established socket has drained. */
  drained(): Promise<void> {
    const c = this.established;
    if (c === undefined || !c.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        c.socket.off('drain', done);
        c.socket.off('close', done);
        resolve();
      };
      c.socket.once('drain', done);
      c.socket.once('close', done);
    });
  }

  get codecContext(): CodecContext {
    return this.established?.ctx ?? { as4: true };
  }

  acceptIncoming(socket: net.Socket): void {
    if (!this.enabled) {
      socket.destroy();
      return;
    }
    if (this.established !== undefined) {
      // RFC 4271 §6.8: a connection colliding with an Established one is closed.
      const c = new Connection(this, socket, false);
      this.connections.push(c);
      c.notifyAndClose(ErrorCode.Cease, CeaseSubcode.ConnectionCollision);
      return;
    }
    clearTimeout(this.retryTimer);
    const c = new Connection(this, socket, false);
    this.connections.push(c);
    this.sendOpen(c);
  }

  private connect(): void {
    if (!this.enabled) return;
    this.setState('connect', 'connecting');
    const socket = net.connect({ host: this.config.address, port: this.config.port ?? 179, localAddress: this.config.localAddress });
    const c = new Connection(this, socket, true);
    this.connections.push(c);
    socket.once('connect', () => {
      if (c.closed) return;
      this.sendOpen(c);
    });
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    clearTimeout(this.retryTimer);
    if (!this.enabled || this.config.passive) return;
    this.retryTimer = setTimeout(() => {
      if (this.enabled && this.connections.length === 0 && this.established === undefined) this.connect();
      else if (this.enabled && this.established === undefined) this.scheduleRetry();
    }, (this.config.connectRetryTime ?? 10) * 1000);
    this.retryTimer.unref();
  }

  private buildOpen(): Open {
    const caps: Capability[] = [];
    for (const f of this.families) caps.push({ kind: 'multiprotocol', ...afiSafiOf(f) });
    caps.push({ kind: 'route-refresh' }, { kind: 'enhanced-route-refresh' }, { kind: 'four-octet-as', asn: this.host.localAsn });
    const gr = this.host.gracefulRestart;
    if (gr.enabled) {
      caps.push({
        kind: 'graceful-restart',
        restarting: gr.restarting && this.firstSession,
        notification: false,
        restartTime: gr.restartTime,
        // F bit: we keep forwarding state across our restart (we are control plane only).
        families: this.families.map((f) => ({ ...afiSafiOf(f), forwardingPreserved: true })),
      });
    }
    return {
      type: 'open',
      version: 4,
      myAs: this.host.localAsn > 0xffff ? AS_TRANS : this.host.localAsn,
      holdTime: this.config.holdTime ?? this.host.holdTime,
      bgpId: this.host.routerId,
      capabilities: caps,
    };
  }

  private sendOpen(c: Connection): void {
    c.write(encode(this.buildOpen()));
    c.state = 'open-sent';
    c.lastReceived = Date.now();
    c.holdTime = LARGE_HOLD;
    if (this.state !== 'open-confirm' && this.state !== 'established') this.setState('open-sent', c.outgoing ? 'connected' : 'accepted');
    this.armHold();
  }

  onMessage(c: Connection, m: Message): void {
    switch (m.type) {
      case 'notification':
        this.counters.notificationsReceived++;
        this.lastError = { direction: 'received', code: m.code, subcode: m.subcode, reason: Buffer.from(m.data).toString('hex') };
        this.host.log('warn', 'bgp.peer.notification-received', { peer: this.address, code: m.code, subcode: m.subcode });
        c.destroy();
        // RFC 4724 §4: after a NOTIFICATION the routes are flushed (no RFC 8538 here).
        this.connectionClosed(c, `received NOTIFICATION ${m.code}/${m.subcode}`, false);
        return;
      case 'open':
        if (c.state !== 'open-sent') return this.fsmError(c);
        this.onOpen(c, m);
        return;
      case 'keepalive':
        if (c.state === 'open-confirm') this.becomeEstablished(c);
        else if (c.state !== 'established') this.fsmError(c);
        return;
      case 'update':
        if (c.state !== 'established') return this.fsmError(c);
        this.counters.updatesReceived++;
        this.host.onUpdate(this, m);
        return;
      case 'route-refresh':
        if (c.state !== 'established') return this.fsmError(c);
        this.host.onRouteRefresh(this, m);
        return;
      default: {
        const never: never = m;
        throw new Error(`unknown message ${String(never)}`);
      }
    }
  }

  private fsmError(c: Connection): void {
    // RFC 6608 subcodes: 1 in OpenSent, 2 in OpenConfirm, 3 in Established.
    const sub = c.state === 'open-sent' ? 1 : c.state === 'open-confirm' ? 2 : c.state === 'established' ? 3 : 0;
    this.closeWithError(c, ErrorCode.Fsm, sub, 'unexpected message');
  }

  private closeWithError(c: Connection, code: number, subcode: number, reason: string, data?: Uint8Array): void {
    this.lastError = { direction: 'sent', code, subcode, reason };
    this.host.log('warn', 'bgp.peer.notification-sent', { peer: this.address, code, subcode, reason });
    c.notifyAndClose(code, subcode, data);
    this.connectionClosed(c, `sent NOTIFICATION ${code}/${subcode}: ${reason}`, false);
  }

  private onOpen(c: Connection, m: Open): void {
    const as4cap = m.capabilities.find((x) => x.kind === 'four-octet-as');
    const remoteAsn = as4cap?.kind === 'four-octet-as' ? as4cap.asn : m.myAs;
    if (remoteAsn !== this.config.asn) {
      return this.closeWithError(c, ErrorCode.Open, OpenSubcode.BadPeerAs, `peer AS ${remoteAsn}, expected ${this.config.asn}`, Uint8Array.of(m.myAs >> 8, m.myAs & 255));
    }
    const rid = ipv4ToNumber(m.bgpId);
    if (rid === 0 || (this.ibgp && m.bgpId === this.host.routerId)) {
      return this.closeWithError(c, ErrorCode.Open, OpenSubcode.BadBgpId, `bad BGP identifier ${m.bgpId}`);
    }
    if (m.holdTime === 1 || m.holdTime === 2) {
      return this.closeWithError(c, ErrorCode.Open, OpenSubcode.UnacceptableHoldTime, `hold time ${m.holdTime}`);
    }
    // RFC 4271 §6.8 collision detection: keep the connection opened by the higher BGP identifier.
    for (const other of this.connections) {
      if (other === c || other.closed || other.state === 'connecting') continue;
      if (other.state === 'established') {
        return this.closeWithError(c, ErrorCode.Cease, CeaseSubcode.ConnectionCollision, 'collision with established session');
      }
      const localWins = ipv4ToNumber(this.host.routerId) > rid;
      const keepOutgoing = localWins;
      const loser = c.outgoing === keepOutgoing ? other : c;
      this.host.log('info', 'bgp.peer.collision', { peer: this.address, kept: loser === c ? 'other' : 'this', localWins });
      loser.notifyAndClose(ErrorCode.Cease, CeaseSubcode.ConnectionCollision);
      this.connections = this.connections.filter((x) => x !== loser);
      if (loser === c) return;
    }
    c.remoteOpen = m;
    const has = (k: Capability['kind']) => m.capabilities.some((x) => x.kind === k);
    const mp = m.capabilities.flatMap((x) => (x.kind === 'multiprotocol' ? [familyOf(x.afi, x.safi)] : []));
    const remoteFamilies = mp.length === 0 ? ['ipv4-unicast'] : mp; // RFC 4760 §8: no MP capability = IPv4 unicast
    const holdTime = Math.min(this.config.holdTime ?? this.host.holdTime, m.holdTime);
    const gr = m.capabilities.find((x) => x.kind === 'graceful-restart');
    const local = c.socket.localAddress ?? '0.0.0.0';
    this.negotiated = {
      families: this.families.filter((f) => remoteFamilies.includes(f)),
      as4: as4cap !== undefined,
      // We do not announce extended messages (RFC 8654), so they are never in use.
      extendedMessages: false,
      routeRefresh: has('route-refresh'),
      enhancedRouteRefresh: has('enhanced-route-refresh'),
      holdTime,
      keepaliveTime: Math.floor(holdTime / 3),
      remoteAsn,
      remoteRouterId: m.bgpId,
      gracefulRestart: gr?.kind === 'graceful-restart' ? gr : undefined,
      localAddress: local.startsWith('::ffff:') ? local.slice(7) : local,
    };
    // We do not announce extended messages ourselves, so keep to 4096 bytes.
    c.ctx = { as4: this.negotiated.as4, extendedMessages: false };
    c.state = 'open-confirm';
    c.holdTime = holdTime;
    c.write(encode({ type: 'keepalive' }));
    this.setState('open-confirm', 'OPEN received');
    this.armHold();
  }

  private becomeEstablished(c: Connection): void {
    c.state = 'established';
    this.established = c;
    for (const other of this.connections) {
      if (other !== c) other.notifyAndClose(ErrorCode.Cease, CeaseSubcode.ConnectionCollision);
    }
    this.connections = [c];
    clearTimeout(this.retryTimer);
    this.counters.establishedTransitions++;
    this.firstSession = false;
    this.setState('established', 'KEEPALIVE received');
    const ka = this.negotiated!.keepaliveTime;
    clearInterval(this.keepaliveTimer);
    if (ka > 0) {
      this.keepaliveTimer = setInterval(() => c.write(encode({ type: 'keepalive' })), ka * 1000);
      this.keepaliveTimer.unref();
    }
    this.host.onEstablished(this);
  }

  /** Hold timer (RFC 4271 §4.4): checked against the last bytes received. */
  private armHold(): void {
    clearTimeout(this.holdTimer);
    const live = this.connections.filter((c) => !c.closed && c.state !== 'connecting' && c.holdTime > 0);
    if (live.length === 0) return;
    const now = Date.now();
    let next = Infinity;
    for (const c of live) {
      const due = c.lastReceived + c.holdTime * 1000;
      if (due <= now) {
        this.closeWithError(c, ErrorCode.HoldTimerExpired, 0, 'hold timer expired');
        continue;
      }
      next = Math.min(next, due);
    }
    if (next !== Infinity) {
      this.holdTimer = setTimeout(() => this.armHold(), next - now + 5);
      this.holdTimer.unref();
    }
  }

  /** Called when a connection goes away; `keepStale` false when a NOTIFICATION was involved. */
  connectionClosed(c: Connection, reason: string, keepStale = true): void {
    if (!this.connections.includes(c)) return;
    this.connections = this.connections.filter((x) => x !== c);
    c.closed = true;
    c.socket.destroy();
    if (this.established === c) {
      this.established = undefined;
      clearInterval(this.keepaliveTimer);
      clearTimeout(this.holdTimer);
      const gr = this.negotiated?.gracefulRestart !== undefined && this.host.gracefulRestart.enabled;
      this.setState('idle', reason);
      this.host.onDown(this, keepStale && gr, reason);
    } else if (this.connections.length === 0) {
      this.setState(this.enabled ? 'active' : 'idle', reason);
    }
    if (this.enabled && this.connections.length === 0) {
      if (this.state === 'idle') this.setState('active', 'waiting to reconnect');
      this.scheduleRetry();
    }
  }

  private setState(s: PeerState, reason: string): void {
    if (s === this.state) return;
    const prev = this.state;
    this.state = s;
    this.host.log('info', 'bgp.peer.state', { peer: this.address, from: prev, to: s, reason });
    this.host.onStateChange(this, prev, s, reason);
  }
}
