/**
 * Domain errors, thrown by services and mapped to RFC 9457 problem+json by
 * ProblemFilter. A message says what was wrong and with which value.
 */

export interface FieldError {
  /** JSON pointer-ish path of the offending field, e.g. "cidr" or "reservedRanges[1].end" */
  field: string;
  message: string;
}

export class ProblemError extends Error {
  constructor(
    readonly status: number,
    /** short slug; the problem type URI is /problems/<type> */
    readonly type: string,
    readonly title: string,
    detail: string,
    readonly errors: FieldError[] = [],
    readonly extra: Record<string, unknown> = {},
  ) {
    super(detail);
  }
}

export class ValidationFailed extends ProblemError {
  constructor(errors: FieldError[]) {
    const detail = errors.map((e) => (e.field ? `${e.field}: ${e.message}` : e.message)).join('; ');
    super(400, 'validation-failed', 'Request is not valid', detail, errors);
  }
}

export function invalid(field: string, message: string): ValidationFailed {
  return new ValidationFailed([{ field, message }]);
}

export class NotFound extends ProblemError {
  constructor(kind: string, id: string) {
    super(404, 'not-found', 'Not found', `${kind} ${id} does not exist`);
  }
}

/** A field of the body names an object that does not exist (or is not visible). */
export class ReferenceNotFound extends ProblemError {
  constructor(field: string, kind: string, id: string) {
    super(422, 'unknown-reference', 'Referenced object not found', `${field}: ${kind} ${id} does not exist`, [
      { field, message: `${kind} ${id} does not exist` },
    ]);
  }
}

/** A field names an object outside the scope allowed (another domain or enterprise). */
export class ReferenceOutOfScope extends ProblemError {
  constructor(field: string, kind: string, id: string, scope: string) {
    super(
      422,
      'reference-out-of-scope',
      'Referenced object is outside the allowed scope',
      `${field}: ${kind} ${id} belongs to another ${scope}`,
      [{ field, message: `${kind} ${id} belongs to another ${scope}` }],
    );
  }
}

export class Conflict extends ProblemError {
  constructor(type: string, detail: string, field?: string, extra: Record<string, unknown> = {}) {
    super(409, type, 'Conflict', detail, field ? [{ field, message: detail }] : [], extra);
  }
}

export class HasChildren extends ProblemError {
  constructor(kind: string, id: string, children: Record<string, number>) {
    const list = Object.entries(children)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${n} ${k}`)
      .join(', ');
    super(
      409,
      'has-children',
      'Object still has children',
      `${kind} ${id} still has ${list}; delete them first or use ?cascade=true`,
      [],
      { children },
    );
  }
}

export class SubnetExhausted extends ProblemError {
  constructor(subnetId: string, cidr: string) {
    super(409, 'subnet-exhausted', 'Subnet has no free address', `subnet ${subnetId} (${cidr}) has no free address`, [], {
      subnetId,
      cidr,
    });
  }
}

export class PreconditionFailed extends ProblemError {
  constructor(kind: string, id: string, expected: number, actual: number) {
    super(
      412,
      'stale-revision',
      'Precondition failed',
      `${kind} ${id} is at revision ${actual}, not ${expected} as If-Match says; read it again and retry`,
      [],
      { currentRevision: actual },
    );
  }
}

export class Unauthorized extends ProblemError {
  constructor(detail: string) {
    super(401, 'unauthorized', 'Unauthorized', detail);
  }
}

export class Forbidden extends ProblemError {
  constructor(detail: string) {
    super(403, 'forbidden', 'Forbidden', detail);
  }
}
