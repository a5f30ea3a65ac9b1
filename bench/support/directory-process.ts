/** Runs a directory in this process and reports its URL to the parent over IPC. */
import { startDirectory } from '../../apps/directory/src/app';
import { loadConfig } from '../../apps/directory/src/config';

startDirectory({ ...loadConfig(), host: '127.0.0.1' })
  .then((dir) => {
    process.send?.({ url: dir.url, databaseUrl: dir.databaseUrl });
    const stop = () => void dir.close().then(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  })
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });
