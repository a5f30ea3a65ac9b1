import { DataSource } from 'typeorm';
import { Initial1732300000000 } from '../../../../migrations/1732300000000-Initial';
import { EndpointParentKey1732400000000 } from '../../../../migrations/1732400000000-EndpointParentKey';
import { Bgp1732500000000 } from '../../../../migrations/1732500000000-Bgp';
import { BgpNeighborPort1732600000000 } from '../../../../migrations/1732600000000-BgpNeighborPort';
import { EndpointFillfactor1732700000000 } from '../../../../migrations/1732700000000-EndpointFillfactor';
import { BgpNeighborMaxPrefixes1732800000000 } from '../../../../migrations/1732800000000-BgpNeighborMaxPrefixes';
import { EndpointFillfactorHalf1732900000000 } from '../../../../migrations/1732900000000-EndpointFillfactorHalf';
import { ChangeLogJson1733000000000 } from '../../../../migrations/1733000000000-ChangeLogJson';
import { WriterCheck1733100000000 } from '../../../../migrations/1733100000000-WriterCheck';
import { RemoteEndpointsPage1733200000000 } from '../../../../migrations/1733200000000-RemoteEndpointsPage';
import { RemoteEndpointsStale1733300000000 } from '../../../../migrations/1733300000000-RemoteEndpointsStale';

/** Every migration, in order. Schema changes happen only here (never synchronize). */
export const MIGRATIONS = [Initial1732300000000, EndpointParentKey1732400000000, Bgp1732500000000, BgpNeighborPort1732600000000, EndpointFillfactor1732700000000, BgpNeighborMaxPrefixes1732800000000, EndpointFillfactorHalf1732900000000, ChangeLogJson1733000000000, WriterCheck1733100000000, RemoteEndpointsPage1733200000000, RemoteEndpointsStale1733300000000];

export function migrationDataSource(url: string): DataSource {
  return new DataSource({ type: 'postgres', url, migrations: MIGRATIONS, synchronize: false, logging: false, migrationsTableName: 'migrations' });
}
