/**
 * The README's first command: `npm start` runs the system. Here its process
 * (dist/apps/directory/src/main.js, what `npm start` runs after building) on
 * a fresh data folder, with its embedded Postgres and its controller child.
 */
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SimulatedAgent, waitUntil } from '../support/controller';
import { Api, freePort, makeTree } from '../support/directory';

const MAIN = join(__dirname, '..', '..', 'apps', 'directory', 'src', 'main.js');

/** pids of a process's controller children (its embedded Postgres is a child too) */
function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid), '-f', 'controller/src/main.js'], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when there is none
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const isUp = async (url: string) => {
  try {
    return (await fetch(url)).status === 200;
  } catch {
    return false;
  }
};

describe('npm start', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'sdn-start-'));
  let proc: ChildProcess | null = null;
  after(() => {
    // the whole group: the directory, its controller child, its Postgres
    if (proc && proc.exitCode === null) process.kill(-proc.pid!, 'SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs the directory on embedded Postgres and the controller, which agents reach, restarts a controller that died, and stops both', async () => {
    const [port, pgPort, controllerPort] = [await freePort(), await freePort(), await freePort()];
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      SDN_DATA_DIR: dataDir,
      HOST: '127.0.0.1',
      PORT: String(port),
      SDN_EMBEDDED_PG_PORT: String(pgPort),
      CONTROLLER_HOST: '127.0.0.1',
      CONTROLLER_PORT: String(controllerPort),
      LOG_LEVEL: 'warn',
    };
    delete env.DATABASE_URL;
    delete env.SDN_OPERATOR_KEY;
    const launch = () => {
      const p = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      proc = p;
      const run = { p, output: '', exited: new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code))) };
      p.stderr!.on('data', (d) => (run.output += d));
      p.stdout!.on('data', (d) => (run.output += d));
      return run;
    };
    const first = launch();
    const p = first.p;
    const base = `http://127.0.0.1:${port}`;
    const controller = `http://127.0.0.1:${controllerPort}`;
    await waitUntil(() => isUp(`${base}/readyz`), `the directory serves (${first.output})`, 90_000);
    await waitUntil(() => isUp(`${controller}/healthz`), 'the controller serves', 60_000);
    const keyFile = join(dataDir, 'operator.key');
    assert.ok(existsSync(keyFile), 'the operator key was saved');
    assert.match(first.output, /First start: an operator API key was generated/);
    const api = new Api(base, readFileSync(keyFile, 'utf8').trim());

    // an agent of a host made through the API gets its state from the controller child
    const h = await api.make('/api/v1/hosts', { name: 'h1', vtepIp: '192.0.2.41' });
    const agent = new SimulatedAgent(`ws://127.0.0.1:${controllerPort}/agent`, { id: h.id, credential: h.credential, vtepIp: h.vtepIp }, { minBackoffMs: 50 });
    try {
      const { subnet } = await makeTree(api, 'start', '10.44.0.0/24');
      const e = await api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'e1', hostId: h.id });
      await waitUntil(() => agent.state.localEndpoints.has(e.id), 'the agent holds its endpoint');
      await waitUntil(async () => (await api.get(`/api/v1/endpoints/${e.id}`)).body.status === 'active', 'the endpoint is active');

      // the controller dies: the directory starts it again, and the agent comes back to it
      const [dead] = childrenOf(p.pid!);
      assert.ok(dead, 'the controller runs as a child of the directory');
      process.kill(dead, 'SIGKILL');
      await waitUntil(() => childrenOf(p.pid!).some((c) => c !== dead), 'a new controller child', 30_000);
      await waitUntil(() => agent.connects >= 2, 'the agent reconnected');
      const e2 = await api.make(`/api/v1/subnets/${subnet.id}/endpoints`, { name: 'e2', hostId: h.id });
      await waitUntil(() => agent.state.localEndpoints.has(e2.id), 'the agent holds the endpoint made after the restart');
    } finally {
      await agent.stop();
    }

    // SIGTERM stops the directory and its controller
    const child = childrenOf(p.pid!);
    p.kill('SIGTERM');
    assert.equal(await first.exited, 0, first.output);
    for (const c of child) assert.throws(() => process.kill(c, 0), 'the controller child is gone');
    assert.equal(await isUp(`${controller}/healthz`), false);

    // killed outright (kill -9, the OOM killer): its controller goes by itself, its Postgres stays behind,
    // and the next start stops that Postgres and comes up on the same data
    const second = launch();
    await waitUntil(() => isUp(`${controller}/healthz`), `the system serves again (${second.output})`, 90_000);
    assert.doesNotMatch(second.output, /First start/);
    const orphan = childrenOf(second.p.pid!);
    second.p.kill('SIGKILL');
    await second.exited;
    await waitUntil(() => orphan.every((c) => !alive(c)), 'the controller left by itself', 15_000);
    const third = launch();
    await waitUntil(() => isUp(`${base}/readyz`), `the directory serves after a kill -9 (${third.output})`, 90_000);
    assert.match(third.output, /stopping the embedded Postgres a previous run left running/);
    assert.equal((await api.get(`/api/v1/hosts/${h.id}`)).status, 200, 'the data is still there');
    await waitUntil(() => isUp(`${controller}/healthz`), 'and its controller', 60_000);
    third.p.kill('SIGTERM');
    assert.equal(await third.exited, 0, third.output);
    proc = null;
  });
});
