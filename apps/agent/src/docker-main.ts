/**
 * Docker plugin entry point: `node dist/apps/agent/src/docker-main.js` with
 * SDN_DOCKER_PLUGIN (name, default sdn -> /run/docker/plugins/sdn.sock),
 * DIRECTORY_URL, DIRECTORY_API_KEY, AGENT_HOST_ID, optional AGENT_NETNS and
 * SDN_DOCKER_STATE (default /var/lib/sdn/docker-<name>.json) and SDN_DOCKER_DIRECTORY_TIMEOUT_MS (60000: how
 * long one request to the directory may take; Docker's calls wait on each other).
 */
import { DockerPlugin } from './docker';

async function main(): Promise<void> {
  const need = (n: string) => {
    const v = process.env[n];
    if (!v) {
      process.stderr.write(`docker plugin: ${n} is required\n`);
      process.exit(2);
    }
    return v;
  };
  const name = process.env.SDN_DOCKER_PLUGIN ?? 'sdn';
  const plugin = new DockerPlugin({
    socketPath: `/run/docker/plugins/${name}.sock`,
    directoryUrl: need('DIRECTORY_URL'),
    apiKey: need('DIRECTORY_API_KEY'),
    hostId: need('AGENT_HOST_ID'),
    hostNetns: process.env.AGENT_NETNS || null,
    stateFile: process.env.SDN_DOCKER_STATE ?? `/var/lib/sdn/docker-${name}.json`,
    readyTimeoutMs: 30000,
    directoryTimeoutMs: timeoutFrom(process.env.SDN_DOCKER_DIRECTORY_TIMEOUT_MS),
  });
  await plugin.start();
  process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), level: 'info', component: 'docker-plugin', msg: 'listening', socket: plugin.cfg.socketPath }) + '\n');
  const stop = () => void plugin.stop().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

function timeoutFrom(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 60_000;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 3_600_000) {
    process.stderr.write(`docker plugin: SDN_DOCKER_DIRECTORY_TIMEOUT_MS must be a whole number of milliseconds from 1 to 3600000, got "${raw}"\n`);
    process.exit(2);
  }
  return n;
}

void main();
