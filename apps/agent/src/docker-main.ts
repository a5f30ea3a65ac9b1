/**
 * Docker plugin entry point: `node dist/apps/agent/src/docker-main.js` with
 * SDN_DOCKER_PLUGIN (name, default sdn -> /run/docker/plugins/sdn.sock),
 * DIRECTORY_URL, DIRECTORY_API_KEY, AGENT_HOST_ID, optional AGENT_NETNS and
 * SDN_DOCKER_STATE (default /var/lib/sdn/docker-<name>.json).
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
  });
  await plugin.start();
  process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), level: 'info', component: 'docker-plugin', msg: 'listening', socket: plugin.cfg.socketPath }) + '\n');
  const stop = () => void plugin.stop().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

void main();
