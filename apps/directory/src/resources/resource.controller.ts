import { Body, Controller, Delete, Get, Headers, HttpCode, Param, Patch, Post, Query, Res, Type } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiParam, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Caller, CurrentCaller, requireOperator } from '../common/auth';
import { invalid } from '../common/errors';
import { parseIfMatch, parseListQuery, ResourceDef, ResourceEngine } from './engine';
import { bodySchema } from './schemas';

const problem = { $ref: '#/components/schemas/Problem' };
const errors = (...codes: number[]) =>
  codes.map((status) => ApiResponse({ status, description: ERROR_TEXT[status], content: { 'application/problem+json': { schema: problem } } }));
const article = (w: string) => (/^[aeiou]/i.test(w) ? `an ${w}` : `a ${w}`);
const ERROR_TEXT: Record<number, string> = {
  400: 'invalid body, query or header (problem+json names the field)',
  401: 'missing or unknown API key',
  403: 'the caller role may not do this',
  404: 'no such object (or it belongs to another tenant)',
  409: 'conflict: duplicate, overlapping subnet, exhausted subnet, children present, object in use',
  412: 'If-Match names a stale revision',
  413: 'body over 1 MiB',
  422: 'the body names an object that does not exist or is out of scope',
};

function apply(target: object, key: string, decorators: Array<MethodDecorator>) {
  const descriptor = Object.getOwnPropertyDescriptor(target, key)!;
  // what tsc would emit for a decorated method; Nest and Swagger read it
  Reflect.defineMetadata('design:paramtypes', Array((descriptor.value as Function).length).fill(Object), target, key);
  for (const d of decorators.reverse()) d(target, key, descriptor);
  Object.defineProperty(target, key, descriptor);
}

function cascadeFlag(v: string | undefined): boolean {
  if (v === undefined || v === 'false') return false;
  if (v === 'true' || v === '') return true;
  throw invalid('cascade', `must be true or false, got "${v}"`);
}

/**
 * Builds the Nest controller of one resource kind: create under its parent,
 * list (under the parent and at the top level, with filters), read, update
 * with If-Match, delete with ?cascade=true.
 */
export function resourceController(def: ResourceDef): Type<unknown> {
  const ref = `#/components/schemas/${def.kind}`;
  const created = { schema: { $ref: ref } };
  const page: any = {
    schema: {
      type: 'object',
      properties: { items: { type: 'array', items: { $ref: ref } }, nextCursor: { type: 'string', nullable: true } },
    },
  };
  const filterQueries = [
    ApiQuery({ name: 'limit', required: false, schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } }),
    ApiQuery({ name: 'cursor', required: false, schema: { type: 'string' } }),
    ...Object.keys(def.filters).map((f) => ApiQuery({ name: f, required: false, schema: { type: 'string' } })),
  ];

  class ResourceController {
    constructor(readonly engine: ResourceEngine) {}

    /** an object the caller cannot see is a 404 first; only then is the role checked */
    async visibleThenOperator(caller: Caller, id: string, verb: string) {
      if (caller.role === 'operator') return;
      await this.engine.get(def, caller, id);
      requireOperator(caller, `${verb} ${article(def.label)}`);
    }

    async create(caller: Caller, parentId: string | null, body: unknown, reply: FastifyReply) {
      if (def.operatorWrites) requireOperator(caller, `creating a ${def.label}`);
      const r = await this.engine.create(def, caller, parentId, body);
      reply.status(r.created ? 201 : 200).header('etag', `"${r.model.revision}"`);
      if (r.created) reply.header('location', `/api/v1/${def.path}/${r.model.id}`);
      return { ...r.model, ...r.extras };
    }

    async createUnder(caller: Caller, parentId: string, body: unknown, reply: FastifyReply) {
      return this.create(caller, parentId, body, reply);
    }

    async createTop(caller: Caller, body: unknown, reply: FastifyReply) {
      return this.create(caller, null, body, reply);
    }

    async listUnder(caller: Caller, parentId: string, query: Record<string, unknown>) {
      if (def.operatorOnly) requireOperator(caller, `reading ${def.label}s`);
      return this.engine.list(def, caller, parseListQuery(def, query), parentId);
    }

    async listAll(caller: Caller, query: Record<string, unknown>) {
      if (def.operatorOnly) requireOperator(caller, `reading ${def.label}s`);
      return this.engine.list(def, caller, parseListQuery(def, query));
    }

    async get(caller: Caller, id: string, reply: FastifyReply) {
      if (def.operatorOnly) requireOperator(caller, `reading ${def.label}s`);
      const m = await this.engine.get(def, caller, id);
      reply.header('etag', `"${m.revision}"`);
      return m;
    }

    async update(caller: Caller, id: string, body: unknown, ifMatch: string | undefined, reply: FastifyReply) {
      if (def.operatorWrites) await this.visibleThenOperator(caller, id, 'changing');
      const m = await this.engine.update(def, caller, id, body, parseIfMatch(ifMatch));
      reply.header('etag', `"${m.revision}"`);
      return m;
    }

    async remove(caller: Caller, id: string, cascade: string | undefined, ifMatch: string | undefined) {
      if (def.operatorWrites) await this.visibleThenOperator(caller, id, 'deleting');
      await this.engine.remove(def, caller, id, cascadeFlag(cascade), parseIfMatch(ifMatch));
    }
  }

  const P = ResourceController.prototype as any;
  const idParam = ApiParam({ name: 'id', schema: { type: 'string', format: 'uuid' } });
  const caller = (key: string) => CurrentCaller()(P, key, 0);

  if (def.parent) {
    const base = `${def.parent.path}/:parentId/${def.path}`;
    const pParam = ApiParam({ name: 'parentId', schema: { type: 'string', format: 'uuid' }, description: `the ${def.parent.kind}` });
    caller('createUnder');
    Param('parentId')(P, 'createUnder', 1);
    Body()(P, 'createUnder', 2);
    Res({ passthrough: true })(P, 'createUnder', 3);
    apply(P, 'createUnder', [
      Post(base),
      ApiOperation({ summary: `Create ${article(def.label)} in a ${def.parent.kind}` }),
      pParam,
      ApiBody({ schema: bodySchema(def.createSchema) }),
      ApiResponse({ status: 201, description: `the new ${def.label}`, content: { 'application/json': created } }),
      ...(def.kind === 'endpoint'
        ? [ApiResponse({ status: 200, description: 'an endpoint with this externalId already exists in the subnet: returned as it is' })]
        : []),
      ...errors(400, 401, 403, 404, 409, 413, 422),
    ]);
    caller('listUnder');
    Param('parentId')(P, 'listUnder', 1);
    Query()(P, 'listUnder', 2);
    apply(P, 'listUnder', [
      Get(base),
      ApiOperation({ summary: `List the ${def.path} of ${article(def.parent.kind)}` }),
      pParam,
      ...filterQueries,
      ApiResponse({ status: 200, content: { 'application/json': page }, description: 'a page' }),
      ...errors(400, 401, 404),
    ]);
  } else {
    caller('createTop');
    Body()(P, 'createTop', 1);
    Res({ passthrough: true })(P, 'createTop', 2);
    apply(P, 'createTop', [
      Post(def.path),
      ApiOperation({ summary: `Create ${article(def.label)}` }),
      ApiBody({ schema: bodySchema(def.createSchema) }),
      ApiResponse({ status: 201, description: `the new ${def.label}`, content: { 'application/json': created } }),
      ...errors(400, 401, 403, 409, 413, 422),
    ]);
  }

  caller('listAll');
  Query()(P, 'listAll', 1);
  apply(P, 'listAll', [
    Get(def.path),
    ApiOperation({ summary: `List ${def.path} (all the caller may see)` }),
    ...filterQueries,
    ApiResponse({ status: 200, content: { 'application/json': page }, description: 'a page' }),
    ...errors(400, 401),
  ]);

  caller('get');
  Param('id')(P, 'get', 1);
  Res({ passthrough: true })(P, 'get', 2);
  apply(P, 'get', [
    Get(`${def.path}/:id`),
    ApiOperation({ summary: `Read ${article(def.label)}` }),
    idParam,
    ApiResponse({ status: 200, content: { 'application/json': created }, description: `the ${def.label}; ETag is its revision` }),
    ...errors(401, 404),
  ]);

  caller('update');
  Param('id')(P, 'update', 1);
  Body()(P, 'update', 2);
  Headers('if-match')(P, 'update', 3);
  Res({ passthrough: true })(P, 'update', 4);
  apply(P, 'update', [
    Patch(`${def.path}/:id`),
    ApiOperation({ summary: `Change ${article(def.label)}`, description: 'Send If-Match: "<revision>" to refuse a stale write (412).' }),
    idParam,
    ApiBody({ schema: bodySchema(def.updateSchema) }),
    ApiResponse({ status: 200, content: { 'application/json': created }, description: `the changed ${def.label}` }),
    ...errors(400, 401, 403, 404, 409, 412, 413, 422),
  ]);

  caller('remove');
  Param('id')(P, 'remove', 1);
  Query('cascade')(P, 'remove', 2);
  Headers('if-match')(P, 'remove', 3);
  apply(P, 'remove', [
    Delete(`${def.path}/:id`),
    HttpCode(204),
    ApiOperation({ summary: `Delete ${article(def.label)}`, description: 'Refused with 409 while children or references exist, unless ?cascade=true.' }),
    idParam,
    ApiQuery({ name: 'cascade', required: false, schema: { type: 'boolean' } }),
    ApiResponse({ status: 204, description: 'deleted' }),
    ...errors(401, 403, 404, 409, 412),
  ]);

  Reflect.defineMetadata('design:paramtypes', [ResourceEngine], ResourceController);
  Object.defineProperty(ResourceController, 'name', { value: `${def.kind[0].toUpperCase()}${def.kind.slice(1)}Controller` });
  ApiTags(def.path)(ResourceController);
  Controller('api/v1')(ResourceController);
  return ResourceController;
}
