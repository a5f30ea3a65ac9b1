import { createLogger as create, Level, Logger } from '#sdn/log';

export type { Level, Logger };

/** The controller's logger (libs/log); component 'controller' unless told otherwise. */
export const createLogger = (level: Level, component = 'controller'): Logger => create(level, component);
