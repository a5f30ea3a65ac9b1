/**
 * A TCP proxy in front of a real Postgres that can lose a connection at a
 * chosen point of the protocol, for tests of what a client does when its
 * connection fails while a commit is on its way.
 *
 * It reads the frontend's messages (type byte, int32 length, body) after the
 * startup packet. When armed, the first message that commits (a simple
 * query `COMMIT`, or the Bind of a prepared statement whose text contains
 * `commitsIf`) ends that connection: either before the message reaches the
 * server (`before`: nothing is committed) or after it has (`after`: the
 * server commits, and its answer never comes back). With `refuseMs`, the
 * database then goes away: every other connection is lost, and new ones are
 * refused for that long.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * before: the committing message never reaches the server; after: it does, and the server's answer is lost;
 * late: the client loses the connection at once, and the message reaches the server only 300 ms later (a server
 * still busy with a session whose client is gone)
 */
export type CutAt = 'before' | 'after' | 'late';

export class PgProxy {
  private server: Server | null = null;
  private armed: CutAt | null = null;
  private refuseUntil = 0;
  private refuseMs = 0;
  private readonly sockets = new Set<Socket>();
  /** connections cut so far */
  cuts = 0;
  port = 0;

  constructor(
    private readonly target: { host: string; port: number },
    /** text found in a prepared statement that commits by itself (autocommitted) */
    private readonly commitsIf: string,
  ) {}

  /** A started proxy in front of the server of `databaseUrl`, and the URL that reaches the same database through it. */
  static async inFrontOf(databaseUrl: string, commitsIf: string): Promise<{ proxy: PgProxy; url: string }> {
    const u = new URL(databaseUrl);
    const proxy = new PgProxy({ host: u.hostname === 'localhost' ? '127.0.0.1' : u.hostname, port: Number(u.port || 5432) }, commitsIf);
    await proxy.start();
    return { proxy, url: `postgres://${u.username}:${u.password}@127.0.0.1:${proxy.port}${u.pathname}` };
  }

  async start(): Promise<void> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** the next committing message ends its connection at `at`; then new connections are refused for `refuseMs` */
  arm(at: CutAt, refuseMs = 0): void {
    this.armed = at;
    this.refuseMs = refuseMs;
  }

  /** the database goes away for `ms`: every connection is lost now, new ones are refused until then */
  refuse(ms: number): void {
    this.refuseUntil = Date.now() + ms;
    for (const s of this.sockets) s.destroy();
  }

  /** takes back an arm that has not cut yet */
  disarm(): void {
    this.armed = null;
  }

  get isArmed(): boolean {
    return this.armed !== null;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(client: Socket): void {
    if (Date.now() < this.refuseUntil) {
      client.destroy();
      return;
    }
    const server = createConnection(this.target);
    let cutAt: CutAt | null = null;
    /** what goes to the server after a cut (after: at once, late: 300 ms later) */
    const held: Buffer[] = [];
    this.sockets.add(client);
    this.sockets.add(server);
    const end = () => {
      client.destroy();
      server.destroy();
      this.sockets.delete(client);
      this.sockets.delete(server);
    };
    // a late cut loses the client at once and keeps the server's side a while
    const clientGone = () => (cutAt === 'late' ? client.destroy() : end());
    client.on('error', clientGone);
    server.on('error', end);
    client.on('close', clientGone);
    server.on('close', end);
    let relaying = true;
    server.on('data', (d) => {
      if (relaying) client.write(d);
    });

    // frontend message parsing
    let buf = Buffer.alloc(0);
    let started = false;
    const statements = new Map<string, string>();
    client.on('data', (d) => {
      // the rest of the committing message's pipeline (Execute, Sync)
      if (cutAt === 'after') {
        server.write(d);
        return;
      }
      if (cutAt === 'late') {
        held.push(d);
        return;
      }
      if (cutAt === 'before') return;
      buf = Buffer.concat([buf, d]);
      let forward = 0; // bytes of buf that may go to the server
      let cut = false;
      for (;;) {
        if (!started) {
          if (buf.length - forward < 4) break;
          const len = buf.readInt32BE(forward);
          if (buf.length - forward < len) break;
          forward += len;
          started = true;
          continue;
        }
        if (buf.length - forward < 5) break;
        const type = String.fromCharCode(buf[forward]);
        const len = buf.readInt32BE(forward + 1);
        if (buf.length - forward < 1 + len) break;
        const body = buf.subarray(forward + 5, forward + 1 + len);
        let commits = false;
        if (type === 'Q') commits = /^\s*COMMIT\b/i.test(cstring(body, 0)[0]);
        else if (type === 'P') {
          const [name, next] = cstring(body, 0);
          statements.set(name, cstring(body, next)[0]);
        } else if (type === 'B') {
          const [, next] = cstring(body, 0);
          commits = (statements.get(cstring(body, next)[0]) ?? '').includes(this.commitsIf);
        }
        if (commits && this.armed) {
          cutAt = this.armed;
          cut = true;
          break;
        }
        forward += 1 + len;
      }
      if (forward > 0) {
        server.write(buf.subarray(0, forward));
        buf = buf.subarray(forward);
      }
      if (cut) {
        this.armed = null;
        this.cuts++;
        relaying = false;
        // after and late: the committing message and what came with it go to the server
        if (cutAt !== 'before') held.push(buf);
        buf = Buffer.alloc(0);
        const flush = () => {
          for (const h of held.splice(0)) if (!server.destroyed) server.write(h);
        };
        if (cutAt === 'late') {
          client.destroy(); // the directory sees the connection gone now
          setTimeout(flush, 300);
          setTimeout(end, 800);
          return;
        }
        if (cutAt === 'after') flush();
        if (this.refuseMs > 0) {
          // the database goes away: every other connection is lost now, new ones are refused for a while
          this.refuseUntil = Date.now() + this.refuseMs;
          for (const s of this.sockets) if (s !== client && s !== server) s.destroy();
        }
        // the server has the message (or not); give it time to commit, then both ends are lost
        setTimeout(end, 200);
      }
    });
  }
}

function cstring(b: Buffer, at: number): [string, number] {
  const z = b.indexOf(0, at);
  return [b.toString('utf8', at, z), z + 1];
}
