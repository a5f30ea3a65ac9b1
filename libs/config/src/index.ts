/**
 * Reading the environment, shared by the directory, the controller and the
 * agent: every bad value is refused at start with the variable, the rule and
 * what was given.
 */
import type { Level } from '#sdn/log';

/** A bad setting: the process prints the message and exits 2. */
export class ConfigError extends Error {}

/** An integer variable in [min, max]; `fallback` when unset or empty. */
export function intFrom(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^[0-9]+$/.test(raw)) throw new ConfigError(`${name} must be an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** LOG_LEVEL: debug, info (default), warn or error. */
export function logLevelFrom(env: NodeJS.ProcessEnv): Level {
  const level = env.LOG_LEVEL ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new ConfigError(`LOG_LEVEL must be debug, info, warn or error, got "${level}"`);
  return level as Level;
}
