export * from './config';
export * from './controller';
export * from './log';
