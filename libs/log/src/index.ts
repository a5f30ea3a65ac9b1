/** Structured logs: one JSON object per event on stdout, with the component and the ids involved. Never pass secrets. */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, f?: Record<string, unknown>): void;
  info(msg: string, f?: Record<string, unknown>): void;
  warn(msg: string, f?: Record<string, unknown>): void;
  error(msg: string, f?: Record<string, unknown>): void;
}

export function createLogger(level: Level, component: string): Logger {
  const threshold = ORDER[level];
  const emit = (l: Level, msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[l] < threshold) return;
    process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), level: l, component, msg, ...fields }) + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
