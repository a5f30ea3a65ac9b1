import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { uuidv7 } from '../../apps/directory/src/common/ids';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const msOf = (id: string) => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);

describe('object ids (UUIDv7)', () => {
  it('carry the millisecond, the version and the variant of RFC 9562', () => {
    const id = uuidv7(Date.UTC(2026, 11, 5, 10, 0, 0, 123));
    assert.match(id, V7);
    assert.equal(msOf(id), Date.UTC(2026, 11, 5, 10, 0, 0, 123));
  });

  it('sort in the order they were made, within one millisecond and across many, and never repeat', () => {
    const t = Date.UTC(2030, 0, 1);
    const ids: string[] = [];
    // 5,000 ids in one millisecond: more than the 12-bit counter holds, so later ones borrow the next milliseconds
    for (let i = 0; i < 5000; i++) ids.push(uuidv7(t));
    for (let i = 0; i < 100; i++) ids.push(uuidv7(t + 10 + i));
    // a clock that steps back does not break the order
    ids.push(uuidv7(t - 1000));
    for (const id of ids) assert.match(id, V7);
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1] < ids[i], `${ids[i - 1]} < ${ids[i]} at ${i}`);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(msOf(ids[4999]) > t, 'the counter overflowed into the next millisecond');
    assert.ok(msOf(ids[4999]) <= t + 3);
  });
});
