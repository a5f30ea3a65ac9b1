import { z } from 'zod';

/** JSON schema of a request body, for the OpenAPI document. */
export function bodySchema(schema: z.ZodType): Record<string, unknown> {
  const js = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete js.$schema;
  return js;
}

/** JSON schema of a resource as the API returns it: its create body plus the common fields. */
export function modelSchema(create: z.ZodType, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const js = z.toJSONSchema(create, { io: 'output', unrepresentable: 'any' }) as any;
  delete js.$schema;
  delete js.additionalProperties;
  js.properties = {
    id: { type: 'string', format: 'uuid' },
    ...js.properties,
    ...extra,
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
    revision: { type: 'integer', description: 'change-log revision of the last change; send it in If-Match' },
  };
  js.required = ['id', ...(js.required ?? []), 'createdAt', 'updatedAt', 'revision'];
  return js;
}
