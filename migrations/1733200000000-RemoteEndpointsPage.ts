import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The remote-endpoints list pages a domain's rows by (route key, speaker)
 * (apps/directory/src/resources/remote.ts). An index in that order reads one
 * page's rows instead of sorting every row of the domain for each page. It
 * replaces the index on domain_id alone, whose lookups (a domain's deletion
 * cascading here) its first column serves.
 */
export class RemoteEndpointsPage1733200000000 implements MigrationInterface {
  name = 'RemoteEndpointsPage1733200000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('CREATE INDEX remote_endpoints_page ON remote_endpoints (domain_id, route_key, speaker_id)');
    await q.query('DROP INDEX remote_endpoints_domain');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('CREATE INDEX remote_endpoints_domain ON remote_endpoints (domain_id)');
    await q.query('DROP INDEX remote_endpoints_page');
  }
}
