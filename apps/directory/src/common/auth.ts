import { createHash, randomBytes } from 'node:crypto';
import { uuidv7 } from './ids';
import {
  CanActivate,
  createParamDecorator,
  ExecutionContext,
  Injectable,
  SetMetadata,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Database } from '../db/database';
import { Forbidden, Unauthorized } from './errors';

/**
 * Who is calling. An operator sees everything; an enterprise admin sees only
 * its own enterprise, and everything else answers 404 as if it did not exist.
 */
export type Caller = { role: 'operator'; keyId: string } | { role: 'enterpriseAdmin'; keyId: string; enterpriseId: string };

/** enterprise scope of a caller: null = all enterprises */
export function scopeOf(c: Caller): string | null {
  return c.role === 'operator' ? null : c.enterpriseId;
}

export function requireOperator(c: Caller, what: string): void {
  if (c.role !== 'operator') throw new Forbidden(`${what} needs the operator role`);
}

const PUBLIC = 'sdn:public';
export const Public = () => SetMetadata(PUBLIC, true);

export const CurrentCaller = createParamDecorator((_: unknown, ctx: ExecutionContext): Caller => {
  return ctx.switchToHttp().getRequest().caller as Caller;
});

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** API keys are 32 random bytes; they are stored as SHA-256 (high entropy: no need for a slow KDF). */
export function newApiKey(): string {
  return `sdn_${randomBytes(32).toString('base64url')}`;
}

@Injectable()
export class ApiKeys {
  // hash -> caller; bounded; revocation clears it
  private cache = new Map<string, { caller: Caller; at: number }>();
  private static readonly TTL_MS = 30_000;

  constructor(private readonly db: Database) {}

  // presented key -> its hash: every request presents its key, hashing it each time cost ~2% of a request
  private hashes = new Map<string, string>();

  async authenticate(key: string): Promise<Caller | null> {
    let h = this.hashes.get(key);
    if (h === undefined) {
      h = hashKey(key);
      if (this.hashes.size >= 1000) this.hashes.clear();
      this.hashes.set(key, h);
    }
    const hit = this.cache.get(h);
    if (hit && Date.now() - hit.at < ApiKeys.TTL_MS) return hit.caller;
    const rows = await this.db.read<{ id: string; role: string; enterprise_id: string | null }>(
      'SELECT id, role, enterprise_id FROM api_keys WHERE key_hash = $1',
      [h],
    );
    if (rows.length === 0) {
      this.cache.delete(h);
      return null;
    }
    const r = rows[0];
    const caller: Caller =
      r.role === 'operator'
        ? { role: 'operator', keyId: r.id }
        : { role: 'enterpriseAdmin', keyId: r.id, enterpriseId: r.enterprise_id! };
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(h, { caller, at: Date.now() });
    return caller;
  }

  forget(): void {
    this.cache.clear();
  }

  /**
   * Installs the first operator key when there is none. Returns the key when
   * one was generated (to be shown once), null otherwise.
   */
  async bootstrap(fromEnv: string | null): Promise<{ generated: string | null; installed: boolean }> {
    const existing = await this.db.read('SELECT 1 FROM api_keys WHERE role = $1 LIMIT 1', ['operator']);
    if (fromEnv !== null) {
      const h = hashKey(fromEnv);
      const same = await this.db.read('SELECT 1 FROM api_keys WHERE key_hash = $1', [h]);
      if (same.length === 0) {
        await this.db.pool.query('INSERT INTO api_keys (id, name, role, key_hash) VALUES ($1, $2, $3, $4)', [
          uuidv7(),
          'operator (from SDN_OPERATOR_KEY)',
          'operator',
          h,
        ]);
        return { generated: null, installed: true };
      }
      return { generated: null, installed: false };
    }
    if (existing.length > 0) return { generated: null, installed: false };
    const key = newApiKey();
    await this.db.pool.query('INSERT INTO api_keys (id, name, role, key_hash) VALUES ($1, $2, $3, $4)', [
      uuidv7(),
      'initial operator',
      'operator',
      hashKey(key),
    ]);
    return { generated: key, installed: true };
  }
}

@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly keys: ApiKeys,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const isPublic = this.reflector.getAllAndOverride<boolean>(PUBLIC, [ctx.getHandler(), ctx.getClass()]);
    if (isPublic) return true;
    const req = ctx.switchToHttp().getRequest();
    const header: string | undefined = req.headers['authorization'];
    if (!header) throw new Unauthorized('missing Authorization: Bearer <api key>');
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) throw new Unauthorized('Authorization header must be "Bearer <api key>"');
    const caller = await this.keys.authenticate(m[1]);
    if (!caller) throw new Unauthorized('unknown or revoked API key');
    req.caller = caller;
    return true;
  }
}
