import { ArgumentsHost, Catch, ExceptionFilter, HttpException } from '@nestjs/common';
import { CommitUnknown, isConnectionError, isDbError } from '../db/database';
import { ProblemError } from './errors';
import { log } from './log';

/** Maps every error to RFC 9457 application/problem+json. */
@Catch()
export class ProblemFilter implements ExceptionFilter {
  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const req = ctx.getRequest();
    const reply = ctx.getResponse();
    const body = toProblem(exception);
    body.instance = req.url;
    if (body.status === 503) {
      // the database away (or a transaction to retry): expected while it lasts, one line per request, no stack
      log.warn('request refused for now (503)', { method: req.method, url: req.url, type: body.type, error: String((exception as Error)?.message ?? exception) });
    } else if (body.status >= 500) {
      log.error('request failed', { method: req.method, url: req.url, error: String((exception as Error)?.stack ?? exception) });
    }
    reply.status(body.status).header('content-type', 'application/problem+json').send(body);
  }
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  errors?: { field: string; message: string }[];
  [k: string]: unknown;
}

function problem(status: number, type: string, title: string, detail: string): Problem {
  return { type: `/problems/${type}`, title, status, detail };
}

export function toProblem(e: unknown): Problem {
  if (e instanceof ProblemError) {
    const p: Problem = { ...problem(e.status, e.type, e.title, e.message), ...e.extra };
    if (e.errors.length > 0) p.errors = e.errors;
    return p;
  }
  if (e instanceof CommitUnknown) {
    return problem(
      503,
      'commit-unknown',
      'Outcome unknown',
      'the database connection was lost while the change was being committed, and the database could not be asked afterwards whether it was: read the object (or GET /changes) before sending the request again',
    );
  }
  if (isConnectionError(e)) {
    return problem(503, 'database-unavailable', 'Database unavailable', 'the database connection was lost or could not be made; nothing was changed: retry the request');
  }
  if (isDbError(e)) return dbProblem(e);
  if (e instanceof HttpException) {
    const status = e.getStatus();
    if (status === 404) return problem(404, 'not-found', 'Not found', 'no such route');
    if (status === 400) return problem(400, 'malformed-body', 'Malformed request body', `the body is not valid JSON: ${e.message}`);
    if (status === 413) return problem(413, 'body-too-large', 'Request body too large', 'the request body exceeds the limit of 1 MiB');
    return problem(status, 'http-error', e.name, e.message);
  }
  const anyE = e as { statusCode?: number; code?: string; message?: string };
  // Fastify's own errors (body too large, bad JSON, bad content type)
  if (e instanceof SyntaxError) {
    return problem(400, 'malformed-body', 'Malformed request body', `the body is not valid JSON: ${e.message}`);
  }
  if (anyE && typeof anyE.statusCode === 'number') {
    if (anyE.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return problem(413, 'body-too-large', 'Request body too large', 'the request body exceeds the limit of 1 MiB');
    }
    if (anyE.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return problem(415, 'unsupported-media-type', 'Unsupported media type', 'send the body as application/json');
    }
    if (anyE.statusCode === 400) {
      return problem(400, 'malformed-body', 'Malformed request body', `the body is not valid JSON: ${anyE.message ?? ''}`);
    }
    return problem(anyE.statusCode, 'http-error', 'Request failed', anyE.message ?? 'request failed');
  }
  return problem(500, 'internal', 'Internal error', 'an unexpected error occurred; it was logged');
}

/** A constraint that fired although the service checked first: a race with another writer. */
function dbProblem(e: { code: string; constraint?: string; detail?: string }): Problem {
  if (e.code === '23505') {
    return problem(409, 'duplicate', 'Conflict', `already exists (${e.constraint ?? 'unique constraint'}): ${e.detail ?? ''}`.trim());
  }
  if (e.code === '23503') {
    return problem(409, 'reference-changed', 'Conflict', `a referenced object changed concurrently (${e.constraint ?? 'foreign key'})`);
  }
  if (e.code === '40001' || e.code === '40P01') {
    return problem(503, 'retry', 'Try again', 'the database aborted a concurrent transaction; retry the request');
  }
  return problem(500, 'internal', 'Internal error', 'an unexpected database error occurred; it was logged');
}
