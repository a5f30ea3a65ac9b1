export * from './communities';
export * from './model';
export * from './export';
export * from './import';
