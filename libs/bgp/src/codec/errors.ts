/**
 * The one error type of the codec. It carries the NOTIFICATION code and subcode
 * (RFC 4271 §4.5, §6) that a session must send when it cannot go on.
 */
export class BgpError extends Error {
  override readonly name = 'BgpError';
  constructor(
    readonly code: number,
    readonly subcode: number,
    message: string,
    /** Data field of the NOTIFICATION (e.g. the offending attribute). */
    readonly data: Uint8Array = new Uint8Array(0),
  ) {
    super(message);
  }
}

/** NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313 §5). */
export const ErrorCode = {
  MessageHeader: 1,
  Open: 2,
  Update: 3,
  HoldTimerExpired: 4,
  Fsm: 5,
  Cease: 6,
  RouteRefresh: 7,
} as const;

export const HeaderSubcode = { NotSynchronized: 1, BadLength: 2, BadType: 3 } as const;
export const OpenSubcode = {
  UnsupportedVersion: 1,
  BadPeerAs: 2,
  BadBgpId: 3,
  UnsupportedOptionalParameter: 4,
  UnacceptableHoldTime: 6,
  UnsupportedCapability: 7,
} as const;
export const UpdateSubcode = {
  MalformedAttributeList: 1,
  UnrecognizedWellKnown: 2,
  MissingWellKnown: 3,
  AttributeFlags: 4,
  AttributeLength: 5,
  InvalidOrigin: 6,
  InvalidNextHop: 8,
  OptionalAttribute: 9,
  InvalidNetworkField: 10,
  MalformedAsPath: 11,
} as const;
export const CeaseSubcode = {
  MaxPrefixes: 1,
  AdministrativeShutdown: 2,
  PeerDeconfigured: 3,
  AdministrativeReset: 4,
  ConnectionRejected: 5,
  OtherConfigurationChange: 6,
  ConnectionCollision: 7,
  OutOfResources: 8,
} as const;
