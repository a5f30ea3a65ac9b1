export * from './errors.js';
export * from './types.js';
export * from './ip.js';
export { canonicalRd, evpnKey, readRd, writeRd, prefixSize } from './nlri.js';
export { AS_TRANS } from './attributes.js';
export { decode, decodeMessage, encode, frameLength, updateSize, HEADER_SIZE, MAX_MESSAGE, MAX_EXTENDED_MESSAGE } from './messages.js';
