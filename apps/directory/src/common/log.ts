/** The directory's logger: one process-wide instance of libs/log, configured once at start. */
import { createLogger, Level, Logger } from '#sdn/log';

let current: Logger = createLogger('info', 'directory');

export function configureLog(level: Level, name = 'directory'): void {
  current = createLogger(level, name);
}

export const log = {
  debug: (msg: string, f: Record<string, unknown> = {}) => current.debug(msg, f),
  info: (msg: string, f: Record<string, unknown> = {}) => current.info(msg, f),
  warn: (msg: string, f: Record<string, unknown> = {}) => current.warn(msg, f),
  error: (msg: string, f: Record<string, unknown> = {}) => current.error(msg, f),
};
