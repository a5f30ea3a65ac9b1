import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * An endpoint's enterprise, domain and zone are those of its subnet. One
 * composite foreign key says exactly that, and replaces four single-column
 * keys: it is stronger (the copied ids can no longer disagree with the
 * subnet) and cheaper (one referential check per inserted endpoint instead
 * of four; endpoint insertion is the directory's hot path).
 */
export class EndpointParentKey1732400000000 implements MigrationInterface {
  name = 'EndpointParentKey1732400000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE subnets ADD CONSTRAINT subnets_lineage UNIQUE (id, zone_id, domain_id, enterprise_id);
      ALTER TABLE endpoints
        DROP CONSTRAINT endpoints_enterprise_id_fkey,
        DROP CONSTRAINT endpoints_domain_id_fkey,
        DROP CONSTRAINT endpoints_zone_id_fkey,
        DROP CONSTRAINT endpoints_subnet_id_fkey,
        ADD CONSTRAINT endpoints_subnet_lineage FOREIGN KEY (subnet_id, zone_id, domain_id, enterprise_id)
          REFERENCES subnets (id, zone_id, domain_id, enterprise_id) ON UPDATE CASCADE;
    `);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE endpoints
        DROP CONSTRAINT endpoints_subnet_lineage,
        ADD CONSTRAINT endpoints_enterprise_id_fkey FOREIGN KEY (enterprise_id) REFERENCES enterprises(id),
        ADD CONSTRAINT endpoints_domain_id_fkey FOREIGN KEY (domain_id) REFERENCES domains(id),
        ADD CONSTRAINT endpoints_zone_id_fkey FOREIGN KEY (zone_id) REFERENCES zones(id),
        ADD CONSTRAINT endpoints_subnet_id_fkey FOREIGN KEY (subnet_id) REFERENCES subnets(id);
      ALTER TABLE subnets DROP CONSTRAINT subnets_lineage;
    `);
  }
}
