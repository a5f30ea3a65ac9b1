/**
 * libs/bgp public surface: the pure codec, the RIB helpers and the
 * BgpSpeaker the controller hosts. See libs/bgp/README.md.
 */
export * from './codec/index.js';
export { BgpSpeaker, normalizeEvpn } from './speaker.js';
export type { SpeakerConfig, LocalRoute, RouteKeyInput, LocalAttributes, RibRoute, BestPathChange, PeerStateChange, NeighborStatus, LogEntry } from './speaker.js';
export type { NeighborConfig, PeerState, PeerCounters, Negotiated } from './session/peer.js';
export { policy, parseCommunity, formatCommunity, applyChanges } from './rib/policy.js';
export type { PolicyHook, PolicyRoute, PolicyNeighbor, PolicyStatement, PolicyMatch, PolicyResult, RouteChanges } from './rib/policy.js';
export { evpnFromKey } from './rib/path.js';
