import { DatabaseWaitFailed } from '#sdn/store';
import { ConfigError, loadConfig } from './config';
import { startController } from './controller';
import { federate, federationSpeakerName } from './federation';
import { createLogger } from './log';

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
  const speakerName = federationSpeakerName();
  // with federation, agents from before this start keep their state until the imported routes are back
  const running = await startController(config, { deferResyncMs: speakerName ? config.bgpSelectDeferSeconds * 1000 : 0 });
  const federation = speakerName
    ? federate(running.controller, { databaseUrl: config.databaseUrl, dbTimeoutMs: config.dbTimeoutSeconds * 1000, speakerName, log: createLogger(config.logLevel, 'federation') })
    : null;
  await federation?.start();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    // a stop is most often a restart (an upgrade, a rescheduled pod): the BGP sessions close without a Cease, so
    // neighbours that negotiated graceful restart keep our routes for its restart time (RFC 4724) and the other
    // datacenters' hosts keep reaching ours. To withdraw them at once, disable the speaker in the API first.
    await federation?.stop({ graceful: true });
    await running.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // started by the directory (`npm start`): when the directory goes, even killed, so does its controller
  if (process.send !== undefined) process.on('disconnect', () => void stop());
}

main().catch((e) => {
  // a database that never came up, or refused us: the message says which; anything else with its stack
  console.error(e instanceof DatabaseWaitFailed ? `error: ${e.message}` : e);
  process.exit(1);
});
