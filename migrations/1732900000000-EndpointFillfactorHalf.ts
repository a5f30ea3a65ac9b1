import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * 80% was not enough room. The controller activates endpoints in batches, and
 * the endpoints of one page were created together, so one status UPDATE
 * rewrites most rows of a page at once: with 20% free, only ~4 of a page's ~18
 * rows found room for their new version (measured: 35% heap-only updates); the
 * others were full updates with a new entry in each of the 8 endpoint indexes
 * (~25 µs of Postgres CPU per endpoint, and index bloat). With half of each
 * page free every row's new version fits: all updates are heap-only, ~8 µs.
 * The heap takes twice the pages (~70 MB at 100K endpoints); the indexes do not
 * grow. Applies to pages written from now on.
 */
export class EndpointFillfactorHalf1732900000000 implements MigrationInterface {
  name = 'EndpointFillfactorHalf1732900000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE endpoints SET (fillfactor = 50)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE endpoints SET (fillfactor = 80)');
  }
}
