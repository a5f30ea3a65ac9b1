/** Runs a directory in this process and reports its URL to the parent over IPC. */
import { Client } from 'pg';
import { startDirectory } from '../../apps/directory/src/app';
import { loadConfig } from '../../apps/directory/src/config';

startDirectory({ ...loadConfig(), host: '127.0.0.1' })
  .then(async (dir) => {
    // an experiment's schema change, run before any load (BENCH_SQL; not for figures reported as the product's)
    if (process.env.BENCH_SQL) {
      const c = new Client({ connectionString: dir.databaseUrl });
      await c.connect();
      await c.query(process.env.BENCH_SQL);
      await c.end();
    }
    process.send?.({ url: dir.url, databaseUrl: dir.databaseUrl });
    const stop = () => void dir.close().then(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  })
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });
