import { uuidv7 } from '../common/ids';
import { Injectable } from '@nestjs/common';
import type { z } from 'zod';
import type { ResourceKind, ResourceMeta } from '#sdn/model';
import { Caller, scopeOf } from '../common/auth';
import { Conflict, HasChildren, NotFound, PreconditionFailed, ValidationFailed } from '../common/errors';
import { unstorable, validate } from '../common/validation';
import { BulkHandler, Database, Tx } from '../db/database';
import { ParentCache } from './parent-cache';

export type Row = Record<string, any>;

export interface CreateContext<I> {
  caller: Caller;
  /** what prepare() returned, when the kind has one */
  prepared?: unknown;
  /** the parent's row, already checked visible to the caller; null for top-level kinds */
  parent: Row | null;
  input: I;
  id: string;
}

/** what a bulk create handler receives per item */
export interface BulkCreate<I> {
  caller: Caller;
  parent: Row;
  input: I;
  id: string;
  prepared: unknown;
}

export interface UpdateContext<U> {
  caller: Caller;
  row: Row;
  input: U;
  revision: number;
}

/**
 * Everything the generic CRUD engine needs to know about one kind of resource.
 * Rules specific to a kind live in its create/update/beforeDelete hooks.
 */
export interface ResourceDef<M extends ResourceMeta = any, I = any, U = any> {
  kind: ResourceKind;
  /** words for messages: "subnet", "policy group" */
  label: string;
  table: string;
  /** URL collection name: "subnets", "policy-groups" */
  path: string;
  /** false for hosts (deployment-wide) */
  scoped: boolean;
  /** column compared with the caller's enterprise (default enterprise_id) */
  scopeColumn?: string;
  parent: { kind: ResourceKind; path: string; column: string } | null;
  /** children deleted by ?cascade=true, in order (kind + column that points here) */
  children: { kind: ResourceKind; column: string }[];
  /** query parameter -> column, for list filters */
  filters: Record<string, string>;
  createSchema: z.ZodType<I>;
  updateSchema: z.ZodType<U>;
  /** JSON schema of the model, for the OpenAPI document */
  modelSchema: Record<string, unknown>;
  /** only the operator may create/update/delete */
  operatorWrites?: boolean;
  /** only the operator may even read (the BGP configuration) */
  operatorOnly?: boolean;
  toModel(row: Row): M;
  /**
   * Read-only checks run before the serial writer, on a pooled connection, so
   * that they do not hold up other writes. Whatever they check must still be
   * guaranteed inside create() (by a constraint or a guarded statement).
   */
  prepare?(read: (sql: string, params: unknown[]) => Promise<Row[]>, ctx: { caller: Caller; parent: Row | null; input: I }): Promise<unknown>;
  /**
   * Replaces the parent load and prepare() with one query (the hot path of
   * endpoint creation). Must throw NotFound for a parent the caller cannot see.
   */
  loadForCreate?(
    read: (sql: string, params: unknown[]) => Promise<Row[]>,
    ctx: { caller: Caller; parentId: string; input: I; cache: ParentCache },
  ): Promise<{ parent: Row; prepared: unknown }>;
  /** a bulk handler for this input (group insert), or null for the one-by-one path */
  bulkCreate?(input: I): BulkHandler | null;
  /** inserts the row; returns it */
  create(tx: Tx, ctx: CreateContext<I>): Promise<Row | { existing: Row }>;
  /** updates the row; returns it */
  update(tx: Tx, ctx: UpdateContext<U>): Promise<Row>;
  /**
   * Called before the row is deleted: refuse (throw) or, when cascading,
   * clean references to it (each cleaned object logged as a change).
   */
  beforeDelete?(tx: Tx, row: Row, cascade: boolean, engine: ResourceEngine): Promise<void>;
  /** extra fields shown once on creation (a host's credential) */
  createExtras?: (row: Row) => Record<string, unknown>;
}

// rows written by one batch share its transaction time (one Date object): format it once
let lastDate: Date | null = null;
let lastIso = '';
const iso = (d: Date): string => {
  if (d !== lastDate) {
    lastIso = d.toISOString();
    lastDate = d;
  }
  return lastIso;
};

export function meta(row: Row): ResourceMeta {
  return {
    id: row.id,
    createdAt: iso(row.created_at as Date),
    updatedAt: iso(row.updated_at as Date),
    revision: Number(row.revision),
  };
}

export interface ListQuery {
  limit: number;
  cursor: string | null;
  filters: Record<string, string>;
}

export interface Page<M> {
  items: M[];
  nextCursor: string | null;
}

const MAX_LIMIT = 1000;

export function parseListQuery(def: ResourceDef, q: Record<string, unknown>): ListQuery {
  const errors: { field: string; message: string }[] = [];
  let limit = 100;
  if (q.limit !== undefined) {
    const s = String(q.limit);
    if (!/^[0-9]+$/.test(s) || Number(s) < 1 || Number(s) > MAX_LIMIT) {
      errors.push({ field: 'limit', message: `must be an integer from 1 to ${MAX_LIMIT}, got "${s}"` });
    } else limit = Number(s);
  }
  let cursor: string | null = null;
  if (q.cursor !== undefined && q.cursor !== '') {
    const decoded = Buffer.from(String(q.cursor), 'base64url').toString();
    if (!/^[0-9a-f-]{36}$/.test(decoded)) errors.push({ field: 'cursor', message: 'is not a cursor this API returned' });
    else cursor = decoded;
  }
  const filters: Record<string, string> = {};
  for (const [k, v] of Object.entries(q)) {
    if (k === 'limit' || k === 'cursor') continue;
    if (!(k in def.filters)) {
      errors.push({ field: k, message: `unknown filter; ${def.path} filter by ${Object.keys(def.filters).join(', ') || 'nothing'}` });
      continue;
    }
    const value = String(v);
    const why = unstorable(value);
    if (why) errors.push({ field: k, message: why });
    else filters[k] = value;
  }
  if (errors.length) throw new ValidationFailed(errors);
  return { limit, cursor, filters };
}

/** If-Match: "12", 12, W/"12" or * */
export function parseIfMatch(header: string | undefined): number | null {
  if (header === undefined || header.trim() === '*') return null;
  const m = /^(?:W\/)?"?([0-9]+)"?$/.exec(header.trim());
  if (!m) throw new ValidationFailed([{ field: 'If-Match', message: `must be a revision such as "12", got ${header}` }]);
  return Number(m[1]);
}

const UUID_COLUMNS = new Set(['id', 'enterprise_id', 'domain_id', 'zone_id', 'subnet_id', 'host_id']);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

@Injectable()
export class ResourceEngine {
  private defs = new Map<ResourceKind, ResourceDef>();
  readonly parentCache = new ParentCache();

  constructor(readonly db: Database) {}

  register(def: ResourceDef): void {
    this.defs.set(def.kind, def);
  }

  def(kind: ResourceKind): ResourceDef {
    const d = this.defs.get(kind);
    if (!d) throw new Error(`no resource definition for ${kind}`);
    return d;
  }

  all(): ResourceDef[] {
    return [...this.defs.values()];
  }

  /** Loads a row the caller may see, inside a write, or throws NotFound. */
  async load(tx: Tx | null, def: ResourceDef, caller: Caller, id: string): Promise<Row> {
    if (!isUuid(id)) throw new NotFound(def.label, id);
    const sql = def.scoped
      ? `SELECT * FROM ${def.table} WHERE id = $1 AND ($2::uuid IS NULL OR ${def.scopeColumn ?? 'enterprise_id'} = $2)`
      : `SELECT * FROM ${def.table} WHERE id = $1`;
    const params = def.scoped ? [id, scopeOf(caller)] : [id];
    const rows = tx ? await tx.query(sql, params) : await this.db.read(sql, params);
    if (rows.length === 0) throw new NotFound(def.label, id);
    return rows[0];
  }

  async get(def: ResourceDef, caller: Caller, id: string): Promise<ResourceMeta> {
    return def.toModel(await this.load(null, def, caller, id));
  }

  async list(def: ResourceDef, caller: Caller, q: ListQuery, parentId?: string): Promise<Page<ResourceMeta>> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (cond: (p: string) => string, v: unknown) => {
      params.push(v);
      where.push(cond(`$${params.length}`));
    };
    if (def.scoped) {
      const scope = scopeOf(caller);
      if (scope !== null) add((p) => `${def.scopeColumn ?? 'enterprise_id'} = ${p}`, scope);
    }
    if (parentId !== undefined && def.parent) {
      // the parent must be visible, else 404 (not an empty list)
      await this.load(null, this.def(def.parent.kind), caller, parentId);
      add((p) => `${def.parent!.column} = ${p}`, parentId);
    }
    for (const [k, v] of Object.entries(q.filters)) {
      const col = def.filters[k];
      if (UUID_COLUMNS.has(col)) {
        if (!isUuid(v)) return { items: [], nextCursor: null };
        add((p) => `${col} = ${p}::uuid`, v);
      } else if (col === 'policy_group_ids') {
        if (!isUuid(v)) return { items: [], nextCursor: null };
        add((p) => `${col} @> ARRAY[${p}::uuid]`, v);
      } else add((p) => `${col}::text = ${p}`, v);
    }
    if (q.cursor) add((p) => `id > ${p}`, q.cursor);
    params.push(q.limit + 1);
    const sql = `SELECT * FROM ${def.table}${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY id LIMIT $${params.length}`;
    const rows = await this.db.read(sql, params);
    const more = rows.length > q.limit;
    const page = more ? rows.slice(0, q.limit) : rows;
    return {
      items: page.map((r) => def.toModel(r)),
      nextCursor: more ? Buffer.from(page[page.length - 1].id).toString('base64url') : null,
    };
  }

  async create(
    def: ResourceDef,
    caller: Caller,
    parentId: string | null,
    body: unknown,
  ): Promise<{ model: ResourceMeta; created: boolean; extras: Record<string, unknown> }> {
    const input = validate(def.createSchema, body);
    // The parent is read outside the writer: its enterprise never changes, and
    // every child table has a foreign key to its parent, so a parent deleted in
    // the meantime makes the insert fail instead of leaving an orphan.
    const read = (sql: string, params: unknown[]) => this.db.read(sql, params);
    let parent: Row | null = null;
    let prepared: unknown;
    if (def.loadForCreate && parentId !== null) {
      if (!isUuid(parentId)) throw new NotFound(this.def(def.parent!.kind).label, parentId);
      ({ parent, prepared } = await def.loadForCreate(read, { caller, parentId, input, cache: this.parentCache }));
    } else {
      parent = def.parent && parentId !== null ? await this.load(null, this.def(def.parent.kind), caller, parentId) : null;
      prepared = def.prepare ? await def.prepare(read, { caller, parent, input }) : undefined;
    }
    const bulk = def.bulkCreate && parent ? def.bulkCreate(input) : null;
    if (bulk) {
      const item: BulkCreate<unknown> = { caller, parent: parent!, input, id: uuidv7(), prepared };
      return this.db.writeBulk(bulk, item);
    }
    return this.db.write(async (tx) => {
      const id = uuidv7();
      const result = await def.create(tx, { caller, parent, input, id, prepared });
      if ('existing' in result) return { model: def.toModel(result.existing), created: false, extras: {} };
      const row = result;
      const model = def.toModel(row);
      tx.log({ revision: model.revision, kind: def.kind, op: 'create', id: model.id, enterpriseId: ownerOf(def, row), state: model });
      return { model, created: true, extras: def.createExtras ? def.createExtras(row) : {} };
    });
  }

  async update(def: ResourceDef, caller: Caller, id: string, body: unknown, ifMatch: number | null): Promise<ResourceMeta> {
    const input = validate(def.updateSchema, body);
    return this.db.write(async (tx) => {
      const row = await this.load(tx, def, caller, id);
      checkRevision(def, row, ifMatch);
      const revision = tx.nextRevision();
      const updated = await def.update(tx, { caller, row, input, revision });
      tx.onCommit(() => this.parentCache.evict(id));
      const model = def.toModel(updated);
      tx.log({ revision, kind: def.kind, op: 'update', id, enterpriseId: ownerOf(def, updated), state: model });
      return model;
    });
  }

  async remove(def: ResourceDef, caller: Caller, id: string, cascade: boolean, ifMatch: number | null): Promise<void> {
    await this.db.write(async (tx) => {
      const row = await this.load(tx, def, caller, id);
      checkRevision(def, row, ifMatch);
      await this.deleteRow(tx, def, row, cascade);
    });
  }

  /** Deletes one row, its children when cascading (refusing otherwise), and logs each deletion. */
  async deleteRow(tx: Tx, def: ResourceDef, row: Row, cascade: boolean): Promise<void> {
    const counts: Record<string, number> = {};
    for (const child of def.children) {
      const cdef = this.def(child.kind);
      if (!cascade) {
        const n = await tx.query<{ n: string }>(`SELECT count(*) AS n FROM ${cdef.table} WHERE ${child.column} = $1`, [row.id]);
        counts[cdef.path] = Number(n[0].n);
        continue;
      }
      const rows = await tx.query(`SELECT * FROM ${cdef.table} WHERE ${child.column} = $1 ORDER BY id`, [row.id]);
      for (const r of rows) await this.deleteRow(tx, cdef, r, true);
    }
    if (Object.values(counts).some((n) => n > 0)) throw new HasChildren(def.label, row.id, counts);
    if (def.beforeDelete) await def.beforeDelete(tx, row, cascade, this);
    await tx.query(`DELETE FROM ${def.table} WHERE id = $1`, [row.id]);
    tx.onCommit(() => this.parentCache.evict(row.id));
    const revision = tx.nextRevision();
    tx.log({ revision, kind: def.kind, op: 'delete', id: row.id, enterpriseId: ownerOf(def, row), state: null });
  }

  /** Marks rows changed by a cascade (their new content already written) and logs each as an update. */
  async touch(tx: Tx, def: ResourceDef, ids: string[]): Promise<void> {
    for (const id of ids) {
      const revision = tx.nextRevision();
      const [updated] = await tx.query(`UPDATE ${def.table} SET revision = $2, updated_at = $3 WHERE id = $1 RETURNING *`, [
        id,
        revision,
        tx.now,
      ]);
      const model = def.toModel(updated);
      tx.onCommit(() => this.parentCache.evict(id));
      tx.log({ revision, kind: def.kind, op: 'update', id, enterpriseId: updated.enterprise_id ?? null, state: model });
    }
  }
}

/** the enterprise a change belongs to (an enterprise owns itself; hosts belong to none) */
function ownerOf(def: ResourceDef, row: Row): string | null {
  if (def.kind === 'enterprise') return row.id;
  return row.enterprise_id ?? null;
}

function checkRevision(def: ResourceDef, row: Row, ifMatch: number | null): void {
  if (ifMatch !== null && Number(row.revision) !== ifMatch) {
    throw new PreconditionFailed(def.label, row.id, ifMatch, Number(row.revision));
  }
}

/** Refuses to delete an object that ACL rules still name, or deletes those rules when cascading. */
export async function rulesReferencing(tx: Tx, engine: ResourceEngine, label: string, id: string, cascade: boolean): Promise<void> {
  const rules = await tx.query('SELECT * FROM acl_rules WHERE applies_to_id = $1 OR peer_id = $1 ORDER BY id', [id]);
  if (rules.length === 0) return;
  if (!cascade) {
    throw new Conflict(
      'in-use',
      `${label} ${id} is named by ${rules.length} ACL rule(s) (${rules
        .slice(0, 5)
        .map((r) => r.id)
        .join(', ')}); delete them first or use ?cascade=true`,
    );
  }
  const def = engine.def('aclRule');
  for (const r of rules) await engine.deleteRow(tx, def, r, true);
}
