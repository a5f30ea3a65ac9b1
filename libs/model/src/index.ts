export * from './resources';
export * from './ip';
export * from './ports';
