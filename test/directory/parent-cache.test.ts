import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Ipam } from '../../apps/directory/src/ipam/allocator';
import { ParentCache } from '../../apps/directory/src/resources/parent-cache';
import { endpointDef } from '../../apps/directory/src/resources/network';

// Unit tests of the endpoint-creation read path with its cache; the cache's
// effect end to end is covered by the directory tests against Postgres.
describe('endpoint creation with cached parents', () => {
  const subnet = { id: 'a0000000-0000-4000-8000-000000000001', domain_id: 'd1', enterprise_id: 'e1', cidr: '10.0.0.0/24' };
  const group = { id: 'a0000000-0000-4000-8000-000000000002', domain_id: 'd1', enterprise_id: 'e1' };
  const input = { name: 'x', kind: 'container', policyGroupIds: [group.id] } as never;
  const caller = { role: 'operator', keyId: 'k' } as const;

  it('looks at each cached row once, so a row expiring meanwhile cannot fail the request', async () => {
    const cache = new ParentCache();
    const t0 = Date.now();
    cache.put(subnet.id, subnet, t0);
    cache.put(group.id, group, t0);
    // the group's row expires right after its first look
    const realGet = cache.get.bind(cache);
    let looks = 0;
    cache.get = (id: string, now?: number) => {
      if (id === group.id && looks++ > 0) return undefined;
      return realGet(id, now);
    };
    const reads: string[] = [];
    const read = async (sql: string) => {
      reads.push(sql);
      return [{ ...subnet, host_found: 0, groups_found: [group] }];
    };
    const def = endpointDef({} as Ipam);
    const out = await def.loadForCreate!(read, { caller, parentId: subnet.id, input, cache });
    assert.deepEqual(out.prepared, [group.id]);
    assert.equal(out.parent.id, subnet.id);
    assert.ok(reads.length <= 1);
  });

  it('answers from the cache alone when every row is fresh', async () => {
    const cache = new ParentCache();
    cache.put(subnet.id, subnet);
    cache.put(group.id, group);
    const def = endpointDef({} as Ipam);
    const out = await def.loadForCreate!(
      async () => assert.fail('no query expected'),
      { caller, parentId: subnet.id, input, cache },
    );
    assert.deepEqual(out.prepared, [group.id]);
  });
});
