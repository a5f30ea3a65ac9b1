import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseWaitFailed } from '#sdn/store';
import { startDirectory } from './app';
import { ConfigError, loadConfig } from './config';
import { EmbeddedPostgresFailed } from './db/embedded';
import { startControllerChild } from './controller-child';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`configuration error: ${e.message}`);
      process.exit(2);
    }
    throw e;
  }
  const dir = await startDirectory(config);
  if (dir.generatedOperatorKey) {
    mkdirSync(config.dataDir, { recursive: true });
    const file = join(config.dataDir, 'operator.key');
    writeFileSync(file, dir.generatedOperatorKey + '\n', { mode: 0o600 });
    process.stderr.write(
      `\nFirst start: an operator API key was generated and saved (mode 600) in ${file}\n` +
        `  export SDN_KEY=$(cat ${file})\n  curl -H "Authorization: Bearer $SDN_KEY" ${dir.url}/api/v1/enterprises\n` +
        `API documentation: ${dir.url}/api/docs\n\n`,
    );
  }
  // the rest of the system: the controller, as a child process on the same database
  const controller = config.startController ? startControllerChild(dir.databaseUrl) : null;
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await controller?.stop();
    await dir.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((e) => {
  // a database that never came up, or refused us: the message says which; anything else with its stack
  console.error(e instanceof DatabaseWaitFailed || e instanceof EmbeddedPostgresFailed ? `error: ${e.message}` : e);
  process.exit(1);
});
