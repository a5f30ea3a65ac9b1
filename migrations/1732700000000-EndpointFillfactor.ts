import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The controller turns every endpoint from pending to active right after it
 * is created. status is in no index, so that update can be a heap-only tuple
 * update (no change to any of the endpoint indexes), but only when the row's
 * page has room for the new version: leave 20% of each page free.
 */
export class EndpointFillfactor1732700000000 implements MigrationInterface {
  name = 'EndpointFillfactor1732700000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE endpoints SET (fillfactor = 80)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE endpoints RESET (fillfactor)');
  }
}
