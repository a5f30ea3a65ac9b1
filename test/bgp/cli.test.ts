import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BgpSpeaker } from '#sdn/bgp';
import { waitFor } from './support/wait.js';

describe('the runnable speaker (npm run bgp -- --config file)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bgp-cli-'));
  const s = new BgpSpeaker({ asn: 65081, routerId: '10.0.8.2', listen: false });
  after(async () => {
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts from a JSON config, peers, announces its routes, logs JSON lines, and stops with a Cease on SIGTERM', async () => {
    const config = join(dir, 'speaker.json');
    writeFileSync(
      config,
      JSON.stringify({
        asn: 65080,
        routerId: '10.0.8.1',
        listen: { address: '127.0.14.1', port: 21920 },
        neighbors: [{ address: '127.0.14.2', asn: 65081, passive: true }],
        routes: [{ family: 'ipv4-unicast', prefix: '10.180.0.0/16', nextHop: '10.255.8.1', attributes: { communities: ['65080:5'], largeCommunities: ['65080:1:2'] } }],
      }),
    );
    const cli = spawn(process.execPath, [join(__dirname, '..', '..', 'libs', 'bgp', 'src', 'cli.js'), '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    cli.stdout.on('data', (c: Buffer) => (out += c.toString()));
    try {
      await waitFor('cli started', () => out.includes('"event":"started"'));
      s.addNeighbor({ address: '127.0.14.1', port: 21920, asn: 65080, localAddress: '127.0.14.2', connectRetryTime: 1 });
      const r = await waitFor('route from the cli speaker', () => s.route('ipv4-unicast', '10.180.0.0/16'));
      assert.deepEqual(r.attributes.communities, [65080 * 65536 + 5]);
      assert.deepEqual(r.attributes.largeCommunities, [{ global: 65080, local1: 1, local2: 2 }]);
      const exited = new Promise((res) => cli.once('exit', res));
      cli.kill('SIGTERM');
      assert.equal(await exited, 0);
      await waitFor('session closed with Cease', () => s.neighbor('127.0.14.1')?.lastError?.code === 6);
      const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { event: string });
      assert.ok(lines.some((l) => l.event === 'peer-state'));
    } finally {
      if (cli.exitCode === null) cli.kill('SIGKILL');
    }
  });
});
