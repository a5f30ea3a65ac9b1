/** A hand-driven BGP peer over a plain socket, for sending exactly the bytes a test wants. */
import * as net from 'node:net';
import { decode, encode, frameLength, type Message } from '#sdn/bgp';
import { waitFor } from './wait.js';

export class RawPeer {
  readonly received: Message[] = [];
  private buf = Buffer.alloc(0);
  closed = false;
  private constructor(
    readonly socket: net.Socket,
    readonly as4: boolean,
  ) {
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      for (;;) {
        const len = frameLength(this.buf, 0, this.buf.length, { as4: this.as4 });
        if (len === 0) break;
        this.received.push(decode(this.buf.subarray(0, len), { as4: this.as4 }));
        this.buf = this.buf.subarray(len);
      }
    });
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => (this.closed = true));
  }

  /** Connects and completes OPEN/KEEPALIVE as `asn` with (unless as4 is false) 4-octet AS, and IPv4 + EVPN. */
  static async establish(o: { host: string; port: number; localAddress: string; asn: number; routerId: string; as4?: boolean; holdTime?: number }): Promise<RawPeer> {
    const s = net.connect({ host: o.host, port: o.port, localAddress: o.localAddress });
    await new Promise((r, j) => (s.once('connect', r), s.once('error', j)));
    const as4 = o.as4 ?? true;
    const p = new RawPeer(s, as4);
    p.send(
      encode({
        type: 'open',
        version: 4,
        myAs: o.asn,
        holdTime: o.holdTime ?? 90,
        bgpId: o.routerId,
        capabilities: [
          { kind: 'multiprotocol', afi: 1, safi: 1 },
          { kind: 'multiprotocol', afi: 25, safi: 70 },
          ...(as4 ? [{ kind: 'four-octet-as' as const, asn: o.asn }] : []),
        ],
      }),
    );
    await waitFor('OPEN from speaker', () => p.received.some((m) => m.type === 'open'));
    p.send(encode({ type: 'keepalive' }));
    await waitFor('KEEPALIVE from speaker', () => p.received.some((m) => m.type === 'keepalive'));
    return p;
  }

  send(b: Uint8Array): void {
    this.socket.write(b);
  }

  close(): void {
    this.socket.destroy();
  }
}
