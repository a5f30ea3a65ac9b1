export * from './codec';
export * from './messages';
export * from './client';
export * from './server';
export * from './mirror';
