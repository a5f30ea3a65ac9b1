import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The newest change-log revision known to be on disk. The directory's writer
 * commits its batches without waiting for the WAL flush (so the next batch
 * runs while the disk syncs) and answers its clients only once a second,
 * synchronous transaction has raised this mark past their batch. Followers of
 * the change log read up to the mark, never beyond: a change they see cannot
 * be lost in a crash, so its revision number can never be reused for another
 * change. Starts at the counter: everything committed before this migration
 * was committed synchronously.
 */
export class DurableRevision1733100000000 implements MigrationInterface {
  name = 'DurableRevision1733100000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE durable_revision (
        id smallint PRIMARY KEY CHECK (id = 1),
        revision bigint NOT NULL
      )`);
    await q.query('INSERT INTO durable_revision (id, revision) SELECT 1, revision FROM revision_counter WHERE id = 1');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE durable_revision');
  }
}
