/**
 * The agent stream over TLS: with SDN_TLS_CERT/SDN_TLS_KEY the controller
 * serves wss:// (the host credential is in the hello), an agent that trusts
 * the CA gets its state, one that does not never connects, and the agent's
 * configuration refuses what is not a ws:// or wss:// URL.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AgentClient, StateMirror } from '#sdn/wire';
import { ConfigError, loadAgentConfig } from '../../apps/agent/src/config';
import { loadConfig } from '../../apps/controller/src/config';
import { RunningController, startController } from '../../apps/controller/src/controller';
import { makeTree, startTestDirectory, TestDirectory } from '../support/directory';

describe('agent stream over TLS', () => {
  let t: TestDirectory;
  let ctl: RunningController;
  let dir: string;
  let host: any;
  let ep: any;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sdn-tls-'));
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    t = await startTestDirectory();
    const tree = await makeTree(t.api, 'tls', '10.0.0.0/24');
    host = await t.api.make('/api/v1/hosts', { name: 'tls-h1', vtepIp: '192.0.2.61' });
    ep = await t.api.make(`/api/v1/subnets/${tree.subnet.id}/endpoints`, { name: 'e1', hostId: host.id });
    ctl = await startController(
      { ...loadConfig({ SDN_TLS_CERT: join(dir, 'cert.pem'), SDN_TLS_KEY: join(dir, 'key.pem') }), databaseUrl: t.dir.databaseUrl, host: '127.0.0.1', port: 0, logLevel: 'error', pollMs: 100 },
      {},
    );
  });
  after(async () => {
    await ctl?.close();
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves wss:// and gives an agent that trusts the CA its state', async () => {
    assert.match(ctl.agentUrl, /^wss:\/\//);
    const { readFileSync } = await import('node:fs');
    const c = new AgentClient(ctl.agentUrl, host.id, host.credential, '192.0.2.61', { ws: { ca: readFileSync(join(dir, 'cert.pem')) } });
    c.on('error', () => undefined);
    const mirror = new StateMirror();
    await new Promise<void>((resolve) => {
      c.on('snapshot', (m) => {
        assert.ok(mirror.applySnapshot(m).ok);
        m.ack();
        resolve();
      });
      c.start();
    });
    await c.close();
    assert.equal(mirror.state.localEndpoints.get(ep.id)?.mac, ep.mac, 'the snapshot carries the local endpoint');
  });

  it('never connects an agent that does not trust the certificate', async () => {
    const c = new AgentClient(ctl.agentUrl, host.id, host.credential, '192.0.2.61', { minBackoffMs: 50, maxBackoffMs: 100 });
    const errors: string[] = [];
    c.on('error', (e) => errors.push(e.message));
    let connected = false;
    c.on('connected', () => (connected = true));
    c.start();
    await new Promise((r) => setTimeout(r, 1000));
    await c.close();
    assert.equal(connected, false);
    assert.ok(errors.some((m) => /self.signed|certificate/i.test(m)), errors.join('; '));
  });

  it('refuses configuration that would not work or would leak', () => {
    const base = { AGENT_HOST_ID: host.id, AGENT_CREDENTIAL: 'x', AGENT_VTEP_IP: '192.0.2.61' };
    assert.throws(() => loadAgentConfig({ ...base, AGENT_CONTROLLER_URL: 'http://ctl:9650/agent' }), ConfigError);
    assert.equal(loadAgentConfig({ ...base, AGENT_CONTROLLER_URL: 'wss://ctl:9650/agent', AGENT_CONTROLLER_CA: '/etc/sdn/ca.pem' }).controllerCa, '/etc/sdn/ca.pem');
    assert.throws(() => loadConfig({ SDN_TLS_CERT: '/x.pem' }), /go together/);
  });
});
