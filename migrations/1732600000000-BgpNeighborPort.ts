import { MigrationInterface, QueryRunner } from 'typeorm';

/** The TCP port a neighbour listens on (179 unless a lab or a sidecar says otherwise). */
export class BgpNeighborPort1732600000000 implements MigrationInterface {
  name = 'BgpNeighborPort1732600000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE bgp_neighbors ADD COLUMN port integer NOT NULL DEFAULT 179 CHECK (port BETWEEN 1 AND 65535)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE bgp_neighbors DROP COLUMN port');
  }
}
