/**
 * Running iproute2 and nft. Every command is an argv (never a shell line) with
 * optional stdin; a failure carries the command and the kernel's message
 * (stderr), which is what an agent reports when it rejects a version.
 */
import { spawn } from 'node:child_process';

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(`${argv.join(' ')} failed (exit ${code}): ${stderr.trim().split('\n').slice(0, 6).join(' | ')}`);
    this.name = 'CommandError';
  }
}

export interface CommandResult {
  stdout: string;
  stderr: string;
}

export function run(argv: string[], input?: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new CommandError(argv, null, e.message)));
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      if (code === 0) resolve({ stdout, stderr });
      else reject(new CommandError(argv, code, stderr || stdout));
    });
    child.stdin.on('error', () => undefined); // the command may exit before reading everything
    child.stdin.end(input ?? '');
  });
}

/** argv prefix that runs a command inside a named network namespace (null: the current one). */
export function inNetns(ns: string | null, argv: string[]): string[] {
  if (ns === null) return argv;
  if (argv[0] === 'ip' || argv[0] === 'bridge') return [argv[0], '-n', ns, ...argv.slice(1)];
  return ['ip', 'netns', 'exec', ns, ...argv];
}

export async function runJson<T = any>(argv: string[]): Promise<T> {
  const { stdout } = await run(argv);
  const text = stdout.trim();
  return (text ? JSON.parse(text) : []) as T;
}
