import { createLogger as create, Level, Logger } from '#sdn/log';

export type { Level, Logger };

/** The agent's logger (libs/log); component 'agent' unless told otherwise. */
export const createLogger = (level: Level, component = 'agent'): Logger => create(level, component);
