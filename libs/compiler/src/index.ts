export * from './state';
export * from './schema';
export * from './digest';
export * from './names';
export * from './entries';
export * from './compile';
export * from './engine';
export * from './apply';
