import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Client } from 'pg';
import { ConfigError, loadConfig } from '../../apps/directory/src/config';
import { startEmbeddedPostgres } from '../../apps/directory/src/db/embedded';
import { freePort } from '../support/directory';

describe('embedded Postgres settings (SDN_EMBEDDED_PG_SETTINGS)', () => {
  it('reads name=value pairs, and refuses anything else by name', () => {
    assert.deepEqual(loadConfig({}).embeddedPgSettings, []);
    assert.deepEqual(loadConfig({ SDN_EMBEDDED_PG_SETTINGS: ' work_mem=7MB, pg_stat_statements.max=500 ' }).embeddedPgSettings, [
      'work_mem=7MB',
      'pg_stat_statements.max=500',
    ]);
    // a list value keeps its commas
    assert.deepEqual(loadConfig({ SDN_EMBEDDED_PG_SETTINGS: 'shared_preload_libraries=pg_stat_statements,auto_explain,work_mem=8MB' }).embeddedPgSettings, [
      'shared_preload_libraries=pg_stat_statements,auto_explain',
      'work_mem=8MB',
    ]);
    for (const bad of ['work_mem', 'work_mem=', '=7MB', 'work_mem=7 MB', ',work_mem=7MB', "x=1' -c fsync=off"]) {
      assert.throws(
        () => loadConfig({ SDN_EMBEDDED_PG_SETTINGS: bad }),
        (e: unknown) => e instanceof ConfigError && /SDN_EMBEDDED_PG_SETTINGS/.test(e.message),
        bad,
      );
    }
  });

  const dir = mkdtempSync(join(tmpdir(), 'sdn-pg-settings-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('starts the embedded server with them', async () => {
    const pg = await startEmbeddedPostgres({ dataDir: dir, port: await freePort(), persistent: false, settings: loadConfig({ SDN_EMBEDDED_PG_SETTINGS: 'work_mem=7MB,search_path=public,pg_catalog' }).embeddedPgSettings });
    try {
      const c = new Client({ connectionString: pg.url });
      await c.connect();
      try {
        assert.equal((await c.query('SHOW work_mem')).rows[0].work_mem, '7MB');
        assert.equal((await c.query('SHOW search_path')).rows[0].search_path, 'public,pg_catalog');
      } finally {
        await c.end();
      }
    } finally {
      await pg.stop();
    }
  });
});
