/** Structured logs: one JSON object per event on stdout. Never pass secrets. */
type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let threshold: number = ORDER.info;
let component = 'directory';

export function configureLog(level: Level, name?: string): void {
  threshold = ORDER[level];
  if (name) component = name;
}

function emit(level: Level, msg: string, fields: Record<string, unknown>): void {
  if (ORDER[level] < threshold) return;
  process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), level, component, msg, ...fields }) + '\n');
}

export const log = {
  debug: (msg: string, f: Record<string, unknown> = {}) => emit('debug', msg, f),
  info: (msg: string, f: Record<string, unknown> = {}) => emit('info', msg, f),
  warn: (msg: string, f: Record<string, unknown> = {}) => emit('warn', msg, f),
  error: (msg: string, f: Record<string, unknown> = {}) => emit('error', msg, f),
};
