/**
 * The MQTT packet model: one readonly, tagged record per control packet type of MQTT 3.1.1 (§3), plus the QoS and
 * packet id vocabulary shared by the rest of the library.
 *
 * Pure data and constructors only: no validation (see `Topic` and `Validate`), no bytes (see `Codec`). Field names
 * follow the specification (`packetId`, `topicFilter`, `sessionPresent`, `returnCode`). The model is open for MQTT 5:
 * 5.0 adds optional fields (`properties`, reason codes) to these records and never changes the meaning of a 3.1.1
 * field, so code written against this model keeps compiling.
 *
 * @since 0.1.0
 */

/**
 * Quality of service: 0 at most once, 1 at least once, 2 exactly once (§4.3).
 *
 * @since 0.1.0
 */
export type QoS = 0 | 1 | 2

/**
 * A packet identifier: an integer in 1..65535 (§2.3.1).
 *
 * @since 0.1.0
 */
export type PacketId = number

/**
 * The protocol level in CONNECT: 4 is MQTT 3.1.1 (§3.1.2.2). 5.0 will add 5.
 *
 * @since 0.1.0
 */
export type ProtocolLevel = 4

/**
 * The will message of a CONNECT (§3.1.2.5).
 *
 * @since 0.1.0
 */
export interface Will {
  readonly topic: string
  readonly payload: Uint8Array
  readonly qos: QoS
  readonly retain: boolean
}

/** @since 0.1.0 */
export interface Connect {
  readonly _tag: "Connect"
  readonly protocolLevel: ProtocolLevel
  readonly clientId: string
  readonly cleanSession: boolean
  /** Seconds; 0 turns keepalive off (§3.1.2.10). */
  readonly keepalive: number
  readonly username?: string | undefined
  readonly password?: Uint8Array | undefined
  readonly will?: Will | undefined
}

/** @since 0.1.0 */
export interface Connack {
  readonly _tag: "Connack"
  readonly sessionPresent: boolean
  /** 0 accepted; 1..5 refused (§3.2.2.3). */
  readonly returnCode: number
}

/** @since 0.1.0 */
export interface Publish {
  readonly _tag: "Publish"
  readonly topic: string
  readonly payload: Uint8Array
  readonly qos: QoS
  readonly retain: boolean
  readonly dup: boolean
  /** Present if and only if `qos > 0` ([MQTT-2.3.1-5]). */
  readonly packetId?: PacketId | undefined
}

/** @since 0.1.0 */
export interface Puback {
  readonly _tag: "Puback"
  readonly packetId: PacketId
}

/** @since 0.1.0 */
export interface Pubrec {
  readonly _tag: "Pubrec"
  readonly packetId: PacketId
}

/** @since 0.1.0 */
export interface Pubrel {
  readonly _tag: "Pubrel"
  readonly packetId: PacketId
}

/** @since 0.1.0 */
export interface Pubcomp {
  readonly _tag: "Pubcomp"
  readonly packetId: PacketId
}

/** One topic filter of a SUBSCRIBE with its requested QoS (§3.8.3). */
export interface Subscription {
  readonly topicFilter: string
  readonly qos: QoS
}

/** @since 0.1.0 */
export interface Subscribe {
  readonly _tag: "Subscribe"
  readonly packetId: PacketId
  readonly subscriptions: ReadonlyArray<Subscription>
}

/**
 * A SUBACK return code: the granted QoS, or 0x80 for a refused filter (§3.9.3).
 *
 * @since 0.1.0
 */
export type SubackReturnCode = 0 | 1 | 2 | 0x80

/** @since 0.1.0 */
export interface Suback {
  readonly _tag: "Suback"
  readonly packetId: PacketId
  /** One per filter of the SUBSCRIBE, in its order. */
  readonly returnCodes: ReadonlyArray<SubackReturnCode>
}

/** @since 0.1.0 */
export interface Unsubscribe {
  readonly _tag: "Unsubscribe"
  readonly packetId: PacketId
  readonly topicFilters: ReadonlyArray<string>
}

/** @since 0.1.0 */
export interface Unsuback {
  readonly _tag: "Unsuback"
  readonly packetId: PacketId
}

/** @since 0.1.0 */
export interface Pingreq {
  readonly _tag: "Pingreq"
}

/** @since 0.1.0 */
export interface Pingresp {
  readonly _tag: "Pingresp"
}

/** @since 0.1.0 */
export interface Disconnect {
  readonly _tag: "Disconnect"
}

/**
 * Any MQTT 3.1.1 control packet.
 *
 * @since 0.1.0
 */
export type Packet =
  | Connect
  | Connack
  | Publish
  | Puback
  | Pubrec
  | Pubrel
  | Pubcomp
  | Subscribe
  | Suback
  | Unsubscribe
  | Unsuback
  | Pingreq
  | Pingresp
  | Disconnect

/** @since 0.1.0 */
export type PacketTag = Packet["_tag"]

/**
 * The control packet type number of each packet (§2.2.1, Table 2.1).
 *
 * @since 0.1.0
 */
export const packetType: { readonly [K in PacketTag]: number } = {
  Connect: 1,
  Connack: 2,
  Publish: 3,
  Puback: 4,
  Pubrec: 5,
  Pubrel: 6,
  Pubcomp: 7,
  Subscribe: 8,
  Suback: 9,
  Unsubscribe: 10,
  Unsuback: 11,
  Pingreq: 12,
  Pingresp: 13,
  Disconnect: 14
}

/**
 * The packets a client sends; a broker never legitimately sends these to a client.
 *
 * @since 0.1.0
 */
export type ClientPacket = Connect | Publish | Puback | Pubrec | Pubrel | Pubcomp | Subscribe | Unsubscribe | Pingreq | Disconnect

/**
 * The packets a broker sends to a client.
 *
 * @since 0.1.0
 */
export type ServerPacket = Connack | Publish | Puback | Pubrec | Pubrel | Pubcomp | Suback | Unsuback | Pingresp

/** Which packets a broker may send to a client (§3: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT never). */
const sentByServer: { readonly [K in PacketTag]: boolean } = {
  Connect: false,
  Connack: true,
  Publish: true,
  Puback: true,
  Pubrec: true,
  Pubrel: true,
  Pubcomp: true,
  Subscribe: false,
  Suback: true,
  Unsubscribe: false,
  Unsuback: true,
  Pingreq: false,
  Pingresp: true,
  Disconnect: false
}

/**
 * Whether a broker may send this packet to a client.
 *
 * @since 0.1.0
 */
export const isServerPacket = (packet: Packet): packet is ServerPacket => sentByServer[packet._tag]

/** @since 0.1.0 */
export const pingreq: Pingreq = { _tag: "Pingreq" }
/** @since 0.1.0 */
export const pingresp: Pingresp = { _tag: "Pingresp" }
/** @since 0.1.0 */
export const disconnect: Disconnect = { _tag: "Disconnect" }
