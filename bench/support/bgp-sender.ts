/**
 * A replaying BGP sender for benchmarks: every UPDATE is encoded before the
 * clock starts, so the receiver, not the sender, is measured.
 */
import * as net from 'node:net';
import { decode, encode, frameLength, type EvpnRoute, type PathAttributes } from '#sdn/bgp';

export interface Workload {
  ipv4Routes: number;
  evpnRoutes: number;
}

const MAX = 4096;

/** Pre-encodes the UPDATEs: IPv4 /32s packed up to 4096 bytes, then EVPN type-2 MAC/IP routes. */
export function encodeWorkload(w: Workload, senderAs: number): Buffer[] {
  const out: Buffer[] = [];
  const v4attrs: PathAttributes = { origin: 0, asPath: [{ type: 'sequence', asns: [senderAs] }], nextHop: '10.255.0.100' };
  const perV4 = Math.floor((MAX - 19 - 4 - 40) / 5);
  for (let i = 0; i < w.ipv4Routes; i += perV4) {
    const nlri: string[] = [];
    for (let j = i; j < Math.min(w.ipv4Routes, i + perV4); j++) {
      const a = (0x10000000 + j) >>> 0; // from 16.0.0.0 upwards
      nlri.push(`${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/32`);
    }
    out.push(encode({ type: 'update', withdrawn: [], attributes: v4attrs, nlri }, { as4: true }));
  }
  const evpnBase: PathAttributes = {
    origin: 0,
    asPath: [{ type: 'sequence', asns: [senderAs] }],
    extendedCommunities: [{ kind: 'route-target', value: `${senderAs}:100` }, { kind: 'encapsulation', tunnelType: 8 }],
  };
  const perEvpn = Math.floor((MAX - 19 - 4 - 80) / 41);
  for (let i = 0; i < w.evpnRoutes; i += perEvpn) {
    const nlri: EvpnRoute[] = [];
    for (let j = i; j < Math.min(w.evpnRoutes, i + perEvpn); j++) {
      const h = (n: number) => n.toString(16).padStart(2, '0');
      nlri.push({
        routeType: 2,
        rd: '10.255.0.100:100',
        esi: '00:00:00:00:00:00:00:00:00:00',
        ethernetTag: 0,
        mac: `02:00:${h((j >>> 24) & 255)}:${h((j >>> 16) & 255)}:${h((j >>> 8) & 255)}:${h(j & 255)}`,
        ip: `172.${16 + ((j >>> 16) & 15)}.${(j >>> 8) & 255}.${j & 255}`,
        labels: [10100],
      });
    }
    out.push(encode({ type: 'update', withdrawn: [], nlri: [], attributes: { ...evpnBase, mpReach: { family: 'l2vpn-evpn', nextHops: ['10.255.0.100'], nlri } } }, { as4: true }));
  }
  return out;
}

/** Connects, exchanges OPEN/KEEPALIVE, and replays the buffers; keeps the session alive until closed. */
export class ReplaySender {
  private socket?: net.Socket;
  private keepalive?: NodeJS.Timeout;
  constructor(
    readonly opts: { host: string; port: number; localAddress: string; asn: number; routerId: string },
  ) {}

  async connect(): Promise<void> {
    const s = net.connect({ host: this.opts.host, port: this.opts.port, localAddress: this.opts.localAddress });
    this.socket = s;
    s.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    s.write(
      encode({
        type: 'open',
        version: 4,
        myAs: this.opts.asn,
        holdTime: 90,
        bgpId: this.opts.routerId,
        capabilities: [
          { kind: 'multiprotocol', afi: 1, safi: 1 },
          { kind: 'multiprotocol', afi: 25, safi: 70 },
          { kind: 'four-octet-as', asn: this.opts.asn },
        ],
      }),
    );
    // Wait for the peer's OPEN and KEEPALIVE.
    await new Promise<void>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      let gotOpen = false;
      const onData = (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        for (;;) {
          const len = frameLength(buf, 0, buf.length, { as4: true });
          if (len === 0) break;
          const m = decode(buf.subarray(0, len));
          buf = buf.subarray(len);
          if (m.type === 'open') {
            gotOpen = true;
            s.write(encode({ type: 'keepalive' }));
          } else if (m.type === 'keepalive' && gotOpen) {
            s.off('data', onData);
            s.on('data', () => undefined); // drain the rest (its KEEPALIVEs, EoRs)
            resolve();
            return;
          } else if (m.type === 'notification') {
            reject(new Error(`NOTIFICATION ${m.code}/${m.subcode}`));
          }
        }
      };
      s.on('data', onData);
      s.once('error', reject);
    });
    this.keepalive = setInterval(() => s.write(encode({ type: 'keepalive' })), 30000);
  }

  /** Writes every buffer, in 1 MB batches, honouring backpressure. */
  async replay(buffers: Buffer[]): Promise<void> {
    const s = this.socket!;
    let batch: Buffer[] = [];
    let size = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      const ok = s.write(Buffer.concat(batch, size));
      batch = [];
      size = 0;
      if (!ok) await new Promise((r) => s.once('drain', r));
    };
    for (const b of buffers) {
      batch.push(b);
      size += b.length;
      if (size >= 1 << 20) await flush();
    }
    await flush();
  }

  close(): void {
    clearInterval(this.keepalive);
    this.socket?.destroy();
  }
}
