import { runMigrations } from './app';
import { loadConfig } from './config';
import { startEmbeddedPostgres } from './db/embedded';

/** npm run migrate: applies pending migrations to DATABASE_URL (or the embedded database). */
async function main(): Promise<void> {
  const config = loadConfig();
  const embedded = config.databaseUrl ? null : await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort, persistent: true, settings: config.embeddedPgSettings });
  try {
    const applied = await runMigrations(config.databaseUrl ?? embedded!.url);
    console.log(applied.length ? `applied: ${applied.join(', ')}` : 'schema is up to date');
  } finally {
    await embedded?.stop();
  }
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
