import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A remote endpoint learned by a controller that has since stopped or
 * restarted, and not learned again yet, is kept and marked stale, like the
 * routes a graceful-restart neighbour keeps (RFC 4724): the controller marks
 * its speaker's rows when it stops and when it starts, unmarks each row it
 * learns again, and deletes the rows still stale once its route selection
 * is complete (apps/controller/src/federation.ts). A constant default: no
 * table rewrite.
 */
export class RemoteEndpointsStale1733300000000 implements MigrationInterface {
  name = 'RemoteEndpointsStale1733300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE remote_endpoints ADD COLUMN stale boolean NOT NULL DEFAULT false');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE remote_endpoints DROP COLUMN stale');
  }
}
