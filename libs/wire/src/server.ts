/**
 * The controller's side of the protocol: accepts WebSocket upgrades on one
 * path of an HTTP server, waits for the hello, asks the controller to
 * authenticate it, and hands out an AgentSession that sends snapshots and
 * deltas and reports acks, nacks and the end of the connection. What to send
 * and when (versions, coalescing) is the controller's business, not this file's.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import type { HostDelta } from '#sdn/compiler';
import {
  CLOSE_AUTH_FAILED,
  CLOSE_PROTOCOL_ERROR,
  decodeFromAgent,
  encodeDelta,
  encodeSnapshot,
  EntryLists,
  Hello,
  MAX_AGENT_MESSAGE,
  PROTOCOL_VERSION,
} from './messages';

export interface AgentSessionEvents {
  ack: [{ version: number; digest: string }];
  nack: [{ version: number; reason: string }];
  close: [{ code: number; reason: string }];
}

export class AgentSession extends EventEmitter<AgentSessionEvents> {
  bytesSent = 0;
  messagesSent = 0;
  private open = true;
  constructor(
    readonly hello: Hello,
    readonly remoteAddress: string,
    private readonly ws: WebSocket,
  ) {
    super();
  }

  get hostId(): string {
    return this.hello.hostId;
  }

  get isOpen(): boolean {
    return this.open && this.ws.readyState === WebSocket.OPEN;
  }

  /** Bytes queued in the socket and not yet written (a slow reader shows here). */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  sendSnapshot(h: { epoch: string; version: number; revision: number; digest: string }, lists: EntryLists): number {
    return this.sendFrame(encodeSnapshot(h, lists));
  }

  sendDelta(h: { epoch: string; fromVersion: number; version: number; revision: number; digest: string }, delta: HostDelta): number {
    return this.sendFrame(encodeDelta(h, delta));
  }

  sendFrame(frame: Buffer): number {
    if (!this.isOpen) return 0;
    this.ws.send(frame, { binary: true });
    this.bytesSent += frame.length;
    this.messagesSent++;
    return frame.length;
  }

  close(code = 1000, reason = ''): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code, reason);
  }

  /** @internal */
  closed(code: number, reason: string): void {
    if (!this.open) return;
    this.open = false;
    this.emit('close', { code, reason });
  }
}

export interface AgentServerOptions {
  /** URL path agents connect to; default /agent */
  path?: string;
  /** ms to wait for the hello */
  helloTimeoutMs?: number;
  /** ms between WebSocket pings; a peer that misses one is dropped */
  pingIntervalMs?: number;
  /** true to accept; a string is the reason of a refusal (sent in the close frame, never with the credential) */
  authenticate(hello: Hello): Promise<true | string>;
  onSession(session: AgentSession): void;
  onError?(e: Error, context: { remoteAddress: string; hostId?: string }): void;
}

export class AgentServer {
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_AGENT_MESSAGE });
  private readonly path: string;
  private readonly sockets = new Set<WebSocket>();
  private pinger: NodeJS.Timeout | null = null;
  private readonly alive = new WeakSet<WebSocket>();

  constructor(private readonly opts: AgentServerOptions) {
    this.path = opts.path ?? '/agent';
    const every = opts.pingIntervalMs ?? 15_000;
    this.pinger = setInterval(() => {
      for (const ws of this.sockets) {
        if (!this.alive.has(ws)) {
          ws.terminate();
          continue;
        }
        this.alive.delete(ws);
        ws.ping();
      }
    }, every);
    this.pinger.unref();
  }

  /** Serves agents on `server` (upgrade requests to the path). */
  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== this.path) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, req.socket.remoteAddress ?? ''));
    });
  }

  get connections(): number {
    return this.sockets.size;
  }

  async close(): Promise<void> {
    if (this.pinger) clearInterval(this.pinger);
    for (const ws of this.sockets) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  private accept(ws: WebSocket, remoteAddress: string): void {
    this.sockets.add(ws);
    this.alive.add(ws);
    ws.on('pong', () => this.alive.add(ws));
    let session: AgentSession | null = null;
    const timer = setTimeout(() => ws.close(CLOSE_PROTOCOL_ERROR, 'no hello'), this.opts.helloTimeoutMs ?? 10_000);
    ws.on('close', (code, reason) => {
      clearTimeout(timer);
      this.sockets.delete(ws);
      session?.closed(code, reason.toString());
    });
    ws.on('error', (e) => this.opts.onError?.(e, { remoteAddress, hostId: session?.hostId }));
    let helloSeen = false;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.alive.add(ws);
      let m;
      try {
        if (!isBinary) throw new Error('text frame');
        m = decodeFromAgent(data);
      } catch (e) {
        this.opts.onError?.(e as Error, { remoteAddress, hostId: session?.hostId });
        ws.close(CLOSE_PROTOCOL_ERROR, (e as Error).message.slice(0, 100));
        return;
      }
      if (!helloSeen) {
        if (m.type !== 'hello') {
          ws.close(CLOSE_PROTOCOL_ERROR, `expected hello, got ${m.type}`);
          return;
        }
        helloSeen = true;
        clearTimeout(timer);
        if (m.protocol !== PROTOCOL_VERSION) {
          ws.close(CLOSE_PROTOCOL_ERROR, `protocol ${m.protocol} not supported (want ${PROTOCOL_VERSION})`);
          return;
        }
        const hello = m;
        this.opts.authenticate(hello).then(
          (ok) => {
            if (ok !== true) {
              ws.close(CLOSE_AUTH_FAILED, ok.slice(0, 100));
              return;
            }
            if (ws.readyState !== WebSocket.OPEN) return;
            session = new AgentSession(hello, remoteAddress, ws);
            this.opts.onSession(session);
          },
          (e: Error) => {
            this.opts.onError?.(e, { remoteAddress, hostId: hello.hostId });
            ws.close(1011, 'authentication unavailable');
          },
        );
        return;
      }
      if (!session) return; // still authenticating: the agent sends nothing else before its first message
      if (m.type === 'ack') session.emit('ack', { version: m.version, digest: m.digest });
      else if (m.type === 'nack') session.emit('nack', { version: m.version, reason: m.reason });
      else ws.close(CLOSE_PROTOCOL_ERROR, `unexpected ${m.type}`);
    });
  }
}
