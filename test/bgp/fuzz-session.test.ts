import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BgpSpeaker, encode } from '#sdn/bgp';
import { arbUpdate } from './support/arbitraries.js';
import { RawPeer } from './support/raw-peer.js';
import { waitFor } from './support/wait.js';

describe('a live session under random and mutated input', () => {
  const s = new BgpSpeaker({ asn: 65060, routerId: '10.0.6.1', listen: { address: '127.0.12.1', port: 21900 } });
  const friend = new BgpSpeaker({ asn: 65062, routerId: '10.0.6.3', listen: false });
  after(async () => {
    await s.stop();
    await friend.stop();
  });

  it('never crashes the speaker, answers with NOTIFICATIONs or treat-as-withdraw, and keeps serving another peer', async () => {
    await s.start();
    s.addNeighbor({ address: '127.0.12.2', asn: 65061, passive: true });
    s.addNeighbor({ address: '127.0.12.3', asn: 65062, passive: true });
    friend.addNeighbor({ address: '127.0.12.1', port: 21900, asn: 65060, localAddress: '127.0.12.3', connectRetryTime: 1 });
    await friend.start();
    await waitFor('friend session', () => s.neighbor('127.0.12.3')?.state === 'established');
    let sessions = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(arbUpdate, { minLength: 1, maxLength: 3 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.uint8Array({ maxLength: 64 }),
        async (updates, flips, tail) => {
          await waitFor('peer ready for a new session', () => s.neighbor('127.0.12.2')?.state === 'active', 5000, 5);
          const p = await RawPeer.establish({ host: '127.0.12.1', port: 21900, localAddress: '127.0.12.2', asn: 65061, routerId: '10.0.6.2' });
          sessions++;
          const bytes = Buffer.concat([...updates.map((u) => encode(u, { as4: true })), Buffer.from(tail)]);
          for (const [pos, v] of flips) bytes[pos % bytes.length] = v;
          p.send(bytes);
          // Either the speaker resets us (NOTIFICATION) or it is still up and answers a KEEPALIVE round.
          await new Promise((r) => setTimeout(r, 15));
          p.close();
          await waitFor('speaker saw the close', () => s.neighbor('127.0.12.2')?.state !== 'established', 5000, 5);
        },
      ),
      { numRuns: 60 },
    );
    assert.ok(sessions >= 60);
    assert.equal(s.neighbor('127.0.12.3')!.state, 'established');
    friend.addRoute({ family: 'ipv4-unicast', prefix: '10.160.0.0/16', nextHop: '10.255.6.3' });
    await waitFor('friend route after the storm', () => s.route('ipv4-unicast', '10.160.0.0/16'));
    // The garbage peer's routes are all gone with its sessions.
    assert.equal(s.adjRibIn('127.0.12.2', 'ipv4-unicast').length, 0);
  });
});
