/**
 * Host agent entry point: `npm run start:agent` with AGENT_CONTROLLER_URL,
 * AGENT_HOST_ID, AGENT_CREDENTIAL, AGENT_VTEP_IP (and optionally AGENT_NETNS,
 * AGENT_NS_PREFIX, AGENT_MTU, AGENT_HTTP_HOST, AGENT_HTTP_PORT, LOG_LEVEL).
 * SIGTERM/SIGINT stop the agent and leave the kernel as it is.
 */
import { Agent } from './agent';
import { ConfigError, loadAgentConfig } from './config';

async function main(): Promise<void> {
  let cfg;
  try {
    cfg = loadAgentConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`agent: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const agent = new Agent(cfg);
  await agent.start();
  const stop = async () => {
    await agent.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
}

void main();
