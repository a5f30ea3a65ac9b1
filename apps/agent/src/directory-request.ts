/**
 * One request of the CNI plugin or the Docker driver to the directory, with
 * a bound: a directory that accepts the connection and never answers (hung,
 * or stopped) must not hold the caller for undici's 300 s.
 */

/** The directory could not be reached, or did not answer in time. */
export class DirectoryUnreachable extends Error {
  constructor(
    message: string,
    readonly details = '',
  ) {
    super(message);
  }
}

export interface DirectoryReply {
  status: number;
  /** the body parsed as JSON, or its text when it is not JSON (a proxy's error page); null when empty */
  body: any;
  text: string;
}

export async function directoryRequest(
  to: { directoryUrl: string; apiKey: string; timeoutMs: number },
  method: string,
  path: string,
  body?: unknown,
): Promise<DirectoryReply> {
  let res: Response;
  let text: string;
  try {
    res = await fetch(`${to.directoryUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${to.apiKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(to.timeoutMs),
    });
    text = await res.text();
  } catch (e) {
    if ((e as Error)?.name === 'TimeoutError') {
      throw new DirectoryUnreachable(`the directory at ${to.directoryUrl} did not answer ${method} ${path.split('?')[0]} in ${to.timeoutMs / 1000} s`);
    }
    throw new DirectoryUnreachable(`the directory at ${to.directoryUrl} is unreachable`, String((e as Error).cause ?? e));
  }
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed, text };
}
