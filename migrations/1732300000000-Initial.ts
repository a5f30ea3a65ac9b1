import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The policy directory's schema.
 *
 * Every table carries enterprise_id (hosts excepted) so that tenant scoping is
 * one indexed predicate, and revision = the change-log revision of the row's
 * last change (used by If-Match).
 */
export class Initial1732300000000 implements MigrationInterface {
  name = 'Initial1732300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE revision_counter (
        id smallint PRIMARY KEY CHECK (id = 1),
        revision bigint NOT NULL
      );
      INSERT INTO revision_counter (id, revision) VALUES (1, 0);

      CREATE TABLE change_log (
        revision bigint PRIMARY KEY,
        kind text NOT NULL,
        op text NOT NULL CHECK (op IN ('create', 'update', 'delete')),
        object_id uuid NOT NULL,
        enterprise_id uuid,
        state jsonb,
        committed_at timestamptz NOT NULL
      );

      CREATE TABLE api_keys (
        id uuid PRIMARY KEY,
        name text NOT NULL,
        role text NOT NULL CHECK (role IN ('operator', 'enterpriseAdmin')),
        enterprise_id uuid,
        key_hash text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        CHECK ((role = 'operator') = (enterprise_id IS NULL))
      );

      CREATE TABLE enterprises (
        id uuid PRIMARY KEY,
        name text NOT NULL UNIQUE,
        description text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL
      );

      -- One VNI space for the deployment: L2 VNIs of subnets and L3 VNIs of domains.
      CREATE TABLE vnis (
        vni integer PRIMARY KEY CHECK (vni BETWEEN 1 AND 16777215),
        owner_kind text NOT NULL,
        owner_id uuid NOT NULL UNIQUE
      );

      CREATE TABLE domains (
        id uuid PRIMARY KEY,
        enterprise_id uuid NOT NULL REFERENCES enterprises(id),
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        route_distinguisher text,
        import_route_targets text[] NOT NULL DEFAULT '{}',
        export_route_targets text[] NOT NULL DEFAULT '{}',
        l3_vni integer NOT NULL UNIQUE REFERENCES vnis(vni) DEFERRABLE INITIALLY DEFERRED,
        default_ingress_action text NOT NULL CHECK (default_ingress_action IN ('allow', 'deny')),
        default_egress_action text NOT NULL CHECK (default_egress_action IN ('allow', 'deny')),
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL,
        UNIQUE (enterprise_id, name)
      );
      CREATE UNIQUE INDEX domains_rd ON domains (route_distinguisher) WHERE route_distinguisher IS NOT NULL;

      CREATE TABLE zones (
        id uuid PRIMARY KEY,
        enterprise_id uuid NOT NULL REFERENCES enterprises(id),
        domain_id uuid NOT NULL REFERENCES domains(id),
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL,
        UNIQUE (domain_id, name)
      );

      CREATE TABLE subnets (
        id uuid PRIMARY KEY,
        enterprise_id uuid NOT NULL REFERENCES enterprises(id),
        domain_id uuid NOT NULL REFERENCES domains(id),
        zone_id uuid NOT NULL REFERENCES zones(id),
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        cidr cidr NOT NULL,
        gateway inet NOT NULL,
        l2_vni integer NOT NULL UNIQUE REFERENCES vnis(vni) DEFERRABLE INITIALLY DEFERRED,
        reserved_ranges jsonb NOT NULL DEFAULT '[]',
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL,
        UNIQUE (zone_id, name),
        CHECK (gateway <<= cidr)
      );
      CREATE INDEX subnets_domain ON subnets (domain_id);

      CREATE TABLE hosts (
        id uuid PRIMARY KEY,
        name text NOT NULL UNIQUE,
        description text NOT NULL DEFAULT '',
        vtep_ip inet NOT NULL UNIQUE,
        status text NOT NULL DEFAULT 'unknown',
        last_seen_at timestamptz,
        credential_hash text NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL
      );

      CREATE TABLE policy_groups (
        id uuid PRIMARY KEY,
        enterprise_id uuid NOT NULL REFERENCES enterprises(id),
        domain_id uuid NOT NULL REFERENCES domains(id),
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        community_tag text UNIQUE,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL,
        UNIQUE (domain_id, name)
      );

      CREATE TABLE endpoints (
        id uuid PRIMARY KEY,
        enterprise_id uuid NOT NULL REFERENCES enterprises(id),
        domain_id uuid NOT NULL REFERENCES domains(id),
        zone_id uuid NOT NULL REFERENCES zones(id),
        subnet_id uuid NOT NULL REFERENCES subnets(id),
        host_id uuid REFERENCES hosts(id),
        kind text NOT NULL CHECK (kind IN ('container', 'vm', 'baremetal')),
        name text NOT NULL,
        external_id text,
        mac text NOT NULL,
        ip inet NOT NULL,
        policy_group_ids uuid[] NOT NULL DEFAULT '{}',
        status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'error')),
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL,
        -- IPAM: never one address to two endpoints, whatever the code does.
        CONSTRAINT endpoints_subnet_ip UNIQUE (subnet_id, ip),
        CONSTRAINT endpoints_subnet_mac UNIQUE (subnet_id, mac)
      );
      CREATE UNIQUE INDEX endpoints_subnet_external_id ON endpoints (subnet_id, external_id) WHERE external_id IS NOT NULL;
      CREATE INDEX endpoints_host ON endpoints (host_id);
      CREATE INDEX endpoints_enterprise ON endpoints (enterprise_id);
      CREATE INDEX endpoints_external_id ON endpoints (external_id) WHERE external_id IS NOT NULL;
      CREATE INDEX endpoints_policy_groups ON endpoints USING gin (policy_group_ids);

      CREATE TABLE network_macros (
        id uuid PRIMARY KEY,
        enterprise_id uuid NOT NULL REFERENCES enterprises(id),
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        cidr cidr NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL,
        UNIQUE (enterprise_id, name)
      );

      CREATE TABLE network_macro_groups (
        id uuid PRIMARY KEY,
        enterprise_id uuid NOT NULL REFERENCES enterprises(id),
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        network_macro_ids uuid[] NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL,
        UNIQUE (enterprise_id, name)
      );

      CREATE TABLE acl_rules (
        id uuid PRIMARY KEY,
        enterprise_id uuid NOT NULL REFERENCES enterprises(id),
        domain_id uuid NOT NULL REFERENCES domains(id),
        priority integer NOT NULL CHECK (priority >= 0),
        direction text NOT NULL CHECK (direction IN ('ingress', 'egress')),
        action text NOT NULL CHECK (action IN ('allow', 'deny')),
        applies_to_type text NOT NULL,
        applies_to_id uuid,
        peer_type text NOT NULL,
        peer_id uuid,
        ether_type text NOT NULL CHECK (ether_type IN ('ipv4', 'ipv6')),
        protocol text NOT NULL,
        source_ports text[] NOT NULL DEFAULT '{}',
        destination_ports text[] NOT NULL DEFAULT '{}',
        stateful boolean NOT NULL DEFAULT true,
        description text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        revision bigint NOT NULL,
        CONSTRAINT acl_rules_priority UNIQUE (domain_id, direction, priority)
      );
      CREATE INDEX acl_rules_applies_to ON acl_rules (applies_to_id) WHERE applies_to_id IS NOT NULL;
      CREATE INDEX acl_rules_peer ON acl_rules (peer_id) WHERE peer_id IS NOT NULL;
    `);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`
      DROP TABLE acl_rules, network_macro_groups, network_macros, endpoints, policy_groups,
        hosts, subnets, zones, domains, vnis, enterprises, api_keys, change_log, revision_counter;
    `);
  }
}
