import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Federation: the BGP speaker a controller runs and its neighbours (operator
 * configuration, in the change log like every resource), the neighbours' live
 * state and the endpoints learned from other datacenters (both written by the
 * controller, read through the API, not in the change log).
 */
export class Bgp1732500000000 implements MigrationInterface {
  name = 'Bgp1732500000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE bgp_speakers (
        id uuid PRIMARY KEY,
        name text NOT NULL UNIQUE,
        description text NOT NULL DEFAULT '',
        datacenter text NOT NULL,
        asn bigint NOT NULL CHECK (asn BETWEEN 1 AND 4294967295),
        router_id inet NOT NULL CHECK (family(router_id) = 4 AND masklen(router_id) = 32),
        listen_address inet NOT NULL,
        listen_port integer NOT NULL CHECK (listen_port BETWEEN 1 AND 65535),
        rd_admin integer CHECK (rd_admin BETWEEN 0 AND 65535),
        enabled boolean NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL
      );

      CREATE TABLE bgp_neighbors (
        id uuid PRIMARY KEY,
        speaker_id uuid NOT NULL REFERENCES bgp_speakers(id),
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        address inet NOT NULL,
        asn bigint NOT NULL CHECK (asn BETWEEN 1 AND 4294967295),
        families text[] NOT NULL CHECK (cardinality(families) > 0),
        passive boolean NOT NULL,
        route_reflector_client boolean NOT NULL,
        hold_time integer NOT NULL CHECK (hold_time = 0 OR hold_time BETWEEN 3 AND 65535),
        graceful_restart boolean NOT NULL,
        restart_time integer NOT NULL CHECK (restart_time BETWEEN 0 AND 4095),
        datacenter text,
        state text NOT NULL DEFAULT 'idle',
        received_routes integer NOT NULL DEFAULT 0,
        advertised_routes integer NOT NULL DEFAULT 0,
        last_error text,
        status_updated_at timestamptz,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL,
        UNIQUE (speaker_id, name),
        UNIQUE (speaker_id, address)
      );

      CREATE TABLE remote_endpoints (
        speaker_id uuid NOT NULL REFERENCES bgp_speakers(id) ON DELETE CASCADE,
        route_key text NOT NULL,
        enterprise_id uuid NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
        domain_id uuid NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
        subnet_id uuid REFERENCES subnets(id) ON DELETE SET NULL,
        mac text NOT NULL,
        ip inet,
        vtep_ip inet NOT NULL,
        l2_vni integer NOT NULL,
        l3_vni integer,
        policy_group_ids uuid[] NOT NULL DEFAULT '{}',
        mobility_sequence bigint NOT NULL DEFAULT 0,
        route_distinguisher text NOT NULL,
        peer inet NOT NULL,
        datacenter text,
        learned_at timestamptz NOT NULL,
        PRIMARY KEY (speaker_id, domain_id, route_key)
      );
      CREATE INDEX remote_endpoints_domain ON remote_endpoints (domain_id);
      CREATE INDEX remote_endpoints_enterprise ON remote_endpoints (enterprise_id);
    `);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE remote_endpoints, bgp_neighbors, bgp_speakers');
  }
}
