export * from './exec';
export * from './model';
export * from './read';
export * from './plan';
export * from './datapath';
export * from './incremental';
