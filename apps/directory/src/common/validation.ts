import { z } from 'zod';
import {
  canonicalIp,
  canonicalMac,
  formatCidr,
  parseCidr,
  parsePortSpec,
} from '#sdn/model';
import { FieldError, ValidationFailed } from './errors';

const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Why Postgres cannot store `s`, or null: text never holds U+0000, and a lone
 * UTF-16 surrogate (JSON allows "\ud800") has no UTF-8 form. Such strings are
 * refused at the edge with their field named, not in the database as an
 * internal error.
 */
export function unstorable(s: string): string | null {
  if (s.includes('\u0000')) return 'must not contain the character U+0000 (NUL)';
  if (LONE_SURROGATE.test(s)) return 'must be valid Unicode (it holds a lone UTF-16 surrogate)';
  return null;
}

/** A field's path as the problem's `errors` name it: `rules[2].ports`. */
function fieldPath(keys: ReadonlyArray<PropertyKey>): string {
  return keys.map((k, n) => (typeof k === 'number' ? `[${k}]` : n === 0 ? String(k) : `.${String(k)}`)).join('');
}

/**
 * Every string of a validated body that unstorable() refuses (at most 20;
 * walked without recursion). Its keys are the schema's, so only values are
 * looked at.
 */
function unstorableStrings(body: object): FieldError[] {
  const errors: FieldError[] = [];
  const todo: Array<[unknown, PropertyKey[]]> = [[body, []]];
  while (todo.length > 0 && errors.length < 20) {
    const [v, keys] = todo.pop()!;
    if (typeof v === 'string') {
      const why = unstorable(v);
      if (why) errors.push({ field: fieldPath(keys), message: why });
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) todo.push([v[i], [...keys, i]]);
    } else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) todo.push([x, [...keys, k]]);
    }
  }
  return errors;
}

/** Validates `input` at the edge; inner code receives typed, valid values. */
export function validate<T>(schema: z.ZodType<T>, input: unknown): T {
  if (input === undefined || input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ValidationFailed([{ field: '', message: 'the body must be a JSON object' }]);
  }
  const r = schema.safeParse(input);
  if (r.success) {
    // what would be stored, after the schema's bounds and transforms: a hostile body cannot make this walk long
    const bad = unstorableStrings(r.data as object);
    if (bad.length > 0) throw new ValidationFailed(bad);
    return r.data;
  }
  throw new ValidationFailed(
    r.error.issues.map((i) => ({
      field: fieldPath(i.path),
      message: i.code === 'unrecognized_keys' ? `unknown field(s): ${(i as any).keys.join(', ')}` : i.message,
    })),
  );
}

export const name = z.string().trim().min(1, 'must not be empty').max(255, 'must be at most 255 characters');
export const description = z.string().max(4096, 'must be at most 4096 characters');
export const uuid = z.uuid({ message: 'must be a UUID' });

export const ipAddress = z.string().transform((s, ctx) => {
  const c = canonicalIp(s);
  if (c === null) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is not an IPv4 or IPv6 address` });
    return z.NEVER;
  }
  return c;
});

export const cidr = z.string().transform((s, ctx) => {
  const p = parseCidr(s);
  if (!p.ok) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is not a valid CIDR: ${p.reason}` });
    return z.NEVER;
  }
  return formatCidr(p.cidr);
});

export const mac = z.string().transform((s, ctx) => {
  const m = canonicalMac(s);
  if (m === null) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is not a MAC address (expected aa:bb:cc:dd:ee:ff)` });
    return z.NEVER;
  }
  if ((parseInt(m.slice(0, 2), 16) & 1) === 1) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is a multicast MAC; an endpoint needs a unicast MAC` });
    return z.NEVER;
  }
  if (m === '00:00:00:00:00:00') {
    ctx.addIssue({ code: 'custom', message: 'the all-zero MAC is not a valid endpoint MAC' });
    return z.NEVER;
  }
  return m;
});

export const vni = z
  .number({ message: 'must be a number' })
  .int('must be an integer')
  .min(1, 'a VNI is between 1 and 16777215')
  .max(16777215, 'a VNI is between 1 and 16777215');

const ASN_MAX = 4294967295;
/** RFC 4364 route distinguisher / RFC 4360 route target, text form. */
export const rdOrRt = z.string().refine(
  (s) => {
    const m = /^([^:]+):([0-9]+)$/.exec(s);
    if (!m) return false;
    const [, admin, assigned] = m;
    const num = Number(assigned);
    if (canonicalIp(admin) !== null && !admin.includes(':')) return num <= 65535; // type 1
    if (!/^[0-9]+$/.test(admin)) return false;
    const asn = Number(admin);
    if (asn <= 65535) return num <= ASN_MAX; // type 0
    return asn <= ASN_MAX && num <= 65535; // type 2
  },
  { message: 'must be ASN:number or IPv4:number (e.g. 65000:100 or 10.0.0.1:5)' },
);

/** BGP standard community "ASN:value" (16:16) or large community "ASN:x:y" (32:32:32). */
export const communityTag = z.string().refine(
  (s) => {
    const parts = s.split(':');
    if (!parts.every((p) => /^[0-9]{1,10}$/.test(p))) return false;
    const n = parts.map(Number);
    if (parts.length === 2) return n[0] <= 65535 && n[1] <= 65535;
    if (parts.length === 3) return n.every((x) => x <= ASN_MAX);
    return false;
  },
  { message: 'must be a standard community ASN:value (16-bit each) or a large community ASN:x:y (32-bit each)' },
);

export const portSpec = z
  .union([z.number().int(), z.string()])
  .transform((v, ctx) => {
    const s = String(v);
    if (parsePortSpec(s) === null) {
      ctx.addIssue({ code: 'custom', message: `"${s}" is not a port or range (expected 80 or 8000-8080, 0..65535)` });
      return z.NEVER;
    }
    return s;
  });

export const action = z.enum(['allow', 'deny'], { message: 'must be "allow" or "deny"' });
