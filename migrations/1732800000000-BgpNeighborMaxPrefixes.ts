import { MigrationInterface, QueryRunner } from 'typeorm';

/** A neighbour may send at most this many routes (RFC 4486 Cease 6/1 beyond); null: no limit. */
export class BgpNeighborMaxPrefixes1732800000000 implements MigrationInterface {
  name = 'BgpNeighborMaxPrefixes1732800000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE bgp_neighbors ADD COLUMN max_prefixes integer CHECK (max_prefixes > 0)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE bgp_neighbors DROP COLUMN max_prefixes');
  }
}
