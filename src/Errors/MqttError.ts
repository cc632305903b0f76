/**
 * The one public error of effect-mqtt: `MqttError`, whose `reason` says what went wrong.
 *
 * Every public operation fails with `MqttError` only. Its `reason` is a tagged union of the classes below; each reason
 * carries the numeric return code and constant name of the Eclipse Paho MQTTAsync C client (`MQTTASYNC_BAD_QOS` is
 * -9, so `BadQos.code === -9`), whether retrying the operation may succeed (`isRetryable`), and a `message` that names
 * the offending value. Reasons that Paho reports only as a generic failure (CONNACK refusals, timeouts, malformed
 * packets, transport faults) use `MQTTASYNC_FAILURE` (-1). Recover by reason with
 * `Effect.catchReason("MqttError", "BadQos", ...)`, or by code with `MqttError.hasCode(-9)`.
 *
 * This module owns error definitions only; it does not decide when an error is raised.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

const TypeId = "~effect-mqtt/MqttError" as const
const ReasonTypeId = "~effect-mqtt/MqttError/Reason" as const

/**
 * The Paho MQTTAsync return codes (`MQTTAsync.h`), by their constant names without the `MQTTASYNC_` prefix.
 *
 * @since 0.1.0
 */
export const PahoCode = {
  FAILURE: -1,
  PERSISTENCE_ERROR: -2,
  DISCONNECTED: -3,
  MAX_MESSAGES_INFLIGHT: -4,
  BAD_UTF8_STRING: -5,
  NULL_PARAMETER: -6,
  TOPICNAME_TRUNCATED: -7,
  BAD_STRUCTURE: -8,
  BAD_QOS: -9,
  NO_MORE_MSGIDS: -10,
  OPERATION_INCOMPLETE: -11,
  MAX_BUFFERED_MESSAGES: -12,
  SSL_NOT_SUPPORTED: -13,
  BAD_PROTOCOL: -14,
  BAD_MQTT_OPTION: -15,
  WRONG_MQTT_VERSION: -16,
  ZERO_LEN_WILL_TOPIC: -17
} as const

/** @since 0.1.0 */
export type PahoCodeName = keyof typeof PahoCode

const show = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)
  if (typeof value === "bigint") return `${value}n`
  if (value === undefined || value === null || typeof value !== "object") return String(value)
  try {
    return JSON.stringify(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Input validation (never retryable: the same input fails the same way)
// ---------------------------------------------------------------------------------------------------------------------

/**
 * A QoS outside 0..2 in a publish, subscribe or will (`MQTTASYNC_BAD_QOS`, -9).
 *
 * @since 0.1.0
 */
export class BadQos extends Schema.TaggedError<BadQos>("effect-mqtt/MqttError/BadQos")("BadQos", {
  qos: Schema.Unknown,
  context: Schema.String
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.BAD_QOS
  }
  get pahoName(): PahoCodeName {
    return "BAD_QOS"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `${this.context}: QoS ${show(this.qos)} is not 0, 1 or 2`
  }
}

/**
 * A string that is not a valid MQTT UTF-8 string: ill-formed UTF-16 (a lone surrogate), or longer than 65535 bytes
 * once encoded (`MQTTASYNC_BAD_UTF8_STRING`, -5). [MQTT-1.5.3-1]
 *
 * @since 0.1.0
 */
export class BadUtf8String extends Schema.TaggedError<BadUtf8String>("effect-mqtt/MqttError/BadUtf8String")(
  "BadUtf8String",
  { field: Schema.String, value: Schema.String, detail: Schema.String }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.BAD_UTF8_STRING
  }
  get pahoName(): PahoCodeName {
    return "BAD_UTF8_STRING"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `${this.field} ${show(this.value)} is not a valid MQTT string: ${this.detail}`
  }
}

/**
 * A string containing U+0000, which would truncate it for C-string peers (`MQTTASYNC_TOPICNAME_TRUNCATED`, -7).
 * [MQTT-1.5.3-2] [MQTT-4.7.3-2]
 *
 * @since 0.1.0
 */
export class TopicnameTruncated extends Schema.TaggedError<TopicnameTruncated>(
  "effect-mqtt/MqttError/TopicnameTruncated"
)("TopicnameTruncated", { field: Schema.String, value: Schema.String }) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.TOPICNAME_TRUNCATED
  }
  get pahoName(): PahoCodeName {
    return "TOPICNAME_TRUNCATED"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `${this.field} ${show(this.value)} contains the character U+0000`
  }
}

/**
 * A topic name or topic filter that breaks the rules of MQTT 3.1.1 §4.7: empty, a wildcard in a topic name, a `#`
 * that is not alone at the end, a `+` that does not fill a whole level (`MQTTASYNC_FAILURE`, -1).
 *
 * @since 0.1.0
 */
export class InvalidTopic extends Schema.TaggedError<InvalidTopic>("effect-mqtt/MqttError/InvalidTopic")(
  "InvalidTopic",
  { topic: Schema.String, kind: Schema.Literals(["topicName", "topicFilter"]), detail: Schema.String }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.FAILURE
  }
  get pahoName(): PahoCodeName {
    return "FAILURE"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `${this.kind === "topicName" ? "topic name" : "topic filter"} ${show(this.topic)}: ${this.detail}`
  }
}

/**
 * A protocol value out of range: a packet id outside 1..65535, a payload or packet over the protocol's limits, a
 * SUBSCRIBE with no filters, a return code that does not exist (`MQTTASYNC_BAD_STRUCTURE`, -8).
 *
 * @since 0.1.0
 */
export class BadStructure extends Schema.TaggedError<BadStructure>("effect-mqtt/MqttError/BadStructure")(
  "BadStructure",
  { field: Schema.String, value: Schema.Unknown, detail: Schema.String }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.BAD_STRUCTURE
  }
  get pahoName(): PahoCodeName {
    return "BAD_STRUCTURE"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `${this.field} ${show(this.value)}: ${this.detail}`
  }
}

/**
 * A URL whose scheme is not one of mqtt, tcp, mqtts, ssl, tls, ws, wss (`MQTTASYNC_BAD_PROTOCOL`, -14).
 *
 * @since 0.1.0
 */
export class BadProtocol extends Schema.TaggedError<BadProtocol>("effect-mqtt/MqttError/BadProtocol")(
  "BadProtocol",
  { url: Schema.String, detail: Schema.String }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.BAD_PROTOCOL
  }
  get pahoName(): PahoCodeName {
    return "BAD_PROTOCOL"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `URL ${show(this.url)}: ${this.detail}`
  }
}

/**
 * An invalid option, such as an empty client id with a persistent session (`MQTTASYNC_BAD_MQTT_OPTION`, -15).
 *
 * @since 0.1.0
 */
export class BadMqttOption extends Schema.TaggedError<BadMqttOption>("effect-mqtt/MqttError/BadMqttOption")(
  "BadMqttOption",
  { option: Schema.String, value: Schema.Unknown, detail: Schema.String }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.BAD_MQTT_OPTION
  }
  get pahoName(): PahoCodeName {
    return "BAD_MQTT_OPTION"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `option ${this.option} = ${show(this.value)}: ${this.detail}`
  }
}

/**
 * A call that needs another MQTT protocol version than the one configured (`MQTTASYNC_WRONG_MQTT_VERSION`, -16).
 *
 * @since 0.1.0
 */
export class WrongMqttVersion extends Schema.TaggedError<WrongMqttVersion>("effect-mqtt/MqttError/WrongMqttVersion")(
  "WrongMqttVersion",
  { expected: Schema.Number, actual: Schema.Number, detail: Schema.String }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.WRONG_MQTT_VERSION
  }
  get pahoName(): PahoCodeName {
    return "WRONG_MQTT_VERSION"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `${this.detail}: needs protocol level ${this.expected}, configured ${this.actual}`
  }
}

/**
 * A will message configured with an empty topic (`MQTTASYNC_0_LEN_WILL_TOPIC`, -17).
 *
 * @since 0.1.0
 */
export class ZeroLenWillTopic extends Schema.TaggedError<ZeroLenWillTopic>("effect-mqtt/MqttError/ZeroLenWillTopic")(
  "ZeroLenWillTopic",
  {}
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.ZERO_LEN_WILL_TOPIC
  }
  get pahoName(): PahoCodeName {
    return "ZERO_LEN_WILL_TOPIC"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return "the will topic is empty"
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Flow control and session (retryable: the same call may succeed later)
// ---------------------------------------------------------------------------------------------------------------------

/**
 * The in-flight window is full and the caller asked to fail rather than wait (`MQTTASYNC_MAX_MESSAGES_INFLIGHT`, -4).
 *
 * @since 0.1.0
 */
export class MaxMessagesInflight extends Schema.TaggedError<MaxMessagesInflight>(
  "effect-mqtt/MqttError/MaxMessagesInflight"
)("MaxMessagesInflight", { maxInflight: Schema.Number }) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.MAX_MESSAGES_INFLIGHT
  }
  get pahoName(): PahoCodeName {
    return "MAX_MESSAGES_INFLIGHT"
  }
  get isRetryable(): boolean {
    return true
  }
  override get message(): string {
    return `${this.maxInflight} messages are already in flight (maxInflight)`
  }
}

/**
 * All 65535 packet ids are in use (`MQTTASYNC_NO_MORE_MSGIDS`, -10). [MQTT-2.3.1-2]
 *
 * @since 0.1.0
 */
export class NoMoreMsgids extends Schema.TaggedError<NoMoreMsgids>("effect-mqtt/MqttError/NoMoreMsgids")(
  "NoMoreMsgids",
  {}
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.NO_MORE_MSGIDS
  }
  get pahoName(): PahoCodeName {
    return "NO_MORE_MSGIDS"
  }
  get isRetryable(): boolean {
    return true
  }
  override get message(): string {
    return "all 65535 packet ids are in use"
  }
}

/**
 * The offline buffer is full (`MQTTASYNC_MAX_BUFFERED_MESSAGES`, -12).
 *
 * @since 0.1.0
 */
export class MaxBufferedMessages extends Schema.TaggedError<MaxBufferedMessages>(
  "effect-mqtt/MqttError/MaxBufferedMessages"
)("MaxBufferedMessages", { maxBufferedMessages: Schema.Number }) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.MAX_BUFFERED_MESSAGES
  }
  get pahoName(): PahoCodeName {
    return "MAX_BUFFERED_MESSAGES"
  }
  get isRetryable(): boolean {
    return true
  }
  override get message(): string {
    return `${this.maxBufferedMessages} messages are already buffered while offline (maxBufferedMessages)`
  }
}

/**
 * An operation made with no connection and no offline buffering (`MQTTASYNC_DISCONNECTED`, -3).
 *
 * @since 0.1.0
 */
export class Disconnected extends Schema.TaggedError<Disconnected>("effect-mqtt/MqttError/Disconnected")(
  "Disconnected",
  { operation: Schema.String }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.DISCONNECTED
  }
  get pahoName(): PahoCodeName {
    return "DISCONNECTED"
  }
  get isRetryable(): boolean {
    return true
  }
  override get message(): string {
    return `${this.operation}: the client is not connected`
  }
}

/**
 * A pending operation that was dropped before it completed: the client was closed, or the broker started a new
 * session (`MQTTASYNC_OPERATION_INCOMPLETE`, -11).
 *
 * @since 0.1.0
 */
export class OperationIncomplete extends Schema.TaggedError<OperationIncomplete>(
  "effect-mqtt/MqttError/OperationIncomplete"
)("OperationIncomplete", { operation: Schema.String, detail: Schema.String }) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.OPERATION_INCOMPLETE
  }
  get pahoName(): PahoCodeName {
    return "OPERATION_INCOMPLETE"
  }
  get isRetryable(): boolean {
    return true
  }
  override get message(): string {
    return `${this.operation} did not complete: ${this.detail}`
  }
}

/**
 * The session store failed to read or write (`MQTTASYNC_PERSISTENCE_ERROR`, -2).
 *
 * @since 0.1.0
 */
export class PersistenceError extends Schema.TaggedError<PersistenceError>("effect-mqtt/MqttError/PersistenceError")(
  "PersistenceError",
  { operation: Schema.String, cause: Schema.Defect() }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.PERSISTENCE_ERROR
  }
  get pahoName(): PahoCodeName {
    return "PERSISTENCE_ERROR"
  }
  get isRetryable(): boolean {
    return true
  }
  override get message(): string {
    return `session store ${this.operation} failed: ${causeText(this.cause)}`
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Connection: handshake, keepalive, broker answers, wire faults
// ---------------------------------------------------------------------------------------------------------------------

/**
 * The names of the MQTT 3.1.1 CONNACK return codes (§3.2.2.3).
 *
 * @since 0.1.0
 */
export const connackReturnCodeNames: Readonly<Record<number, string>> = {
  0: "Accepted",
  1: "UnacceptableProtocolVersion",
  2: "IdentifierRejected",
  3: "ServerUnavailable",
  4: "BadUsernameOrPassword",
  5: "NotAuthorized"
}

/**
 * The broker refused the connection: CONNACK return code 1..5 (§3.2.2.3). Only 3 (server unavailable) is retryable;
 * the others fail the same way on every attempt.
 *
 * @since 0.1.0
 */
export class ConnectionRefused extends Schema.TaggedError<ConnectionRefused>("effect-mqtt/MqttError/ConnectionRefused")(
  "ConnectionRefused",
  { returnCode: Schema.Number }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.FAILURE
  }
  get pahoName(): PahoCodeName {
    return "FAILURE"
  }
  get returnCodeName(): string {
    return connackReturnCodeNames[this.returnCode] ?? "Unknown"
  }
  get isRetryable(): boolean {
    return this.returnCode === 3
  }
  override get message(): string {
    return `the broker refused the connection: return code ${this.returnCode} (${this.returnCodeName})`
  }
}

/**
 * No CONNACK arrived within the connect timeout (§3.1.4).
 *
 * @since 0.1.0
 */
export class ConnectTimeout extends Schema.TaggedError<ConnectTimeout>("effect-mqtt/MqttError/ConnectTimeout")(
  "ConnectTimeout",
  { url: Schema.String, timeoutMillis: Schema.Number }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.FAILURE
  }
  get pahoName(): PahoCodeName {
    return "FAILURE"
  }
  get isRetryable(): boolean {
    return true
  }
  override get message(): string {
    return `no CONNACK from ${this.url} within ${this.timeoutMillis} ms`
  }
}

/**
 * The broker sent nothing within the ping timeout after a PINGREQ (§3.1.2.10).
 *
 * @since 0.1.0
 */
export class KeepaliveTimeout extends Schema.TaggedError<KeepaliveTimeout>("effect-mqtt/MqttError/KeepaliveTimeout")(
  "KeepaliveTimeout",
  { keepaliveSeconds: Schema.Number, timeoutMillis: Schema.Number }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.FAILURE
  }
  get pahoName(): PahoCodeName {
    return "FAILURE"
  }
  get isRetryable(): boolean {
    return true
  }
  override get message(): string {
    return `no answer to PINGREQ within ${this.timeoutMillis} ms (keepalive ${this.keepaliveSeconds} s)`
  }
}

/**
 * The broker refused one filter of a SUBSCRIBE: SUBACK return code 0x80 (§3.9.3).
 *
 * @since 0.1.0
 */
export class SubscribeRejected extends Schema.TaggedError<SubscribeRejected>("effect-mqtt/MqttError/SubscribeRejected")(
  "SubscribeRejected",
  { topicFilter: Schema.String }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.FAILURE
  }
  get pahoName(): PahoCodeName {
    return "FAILURE"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `the broker rejected the subscription to ${show(this.topicFilter)} (SUBACK 0x80)`
  }
}

/**
 * The peer sent bytes that are not a well-formed MQTT packet, or a packet over the maximum incoming packet size.
 * The connection is closed ([MQTT-4.8.0-1]); the decoder that saw it accepts nothing more.
 *
 * @since 0.1.0
 */
export class MalformedPacket extends Schema.TaggedError<MalformedPacket>("effect-mqtt/MqttError/MalformedPacket")(
  "MalformedPacket",
  { detail: Schema.String }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.FAILURE
  }
  get pahoName(): PahoCodeName {
    return "FAILURE"
  }
  get isRetryable(): boolean {
    return true
  }
  override get message(): string {
    return `malformed packet: ${this.detail}`
  }
}

/**
 * The peer sent a well-formed packet that is illegal at this point: a second CONNACK, a packet before CONNACK, a
 * packet type a server never sends. The connection is closed ([MQTT-4.8.0-1]).
 *
 * @since 0.1.0
 */
export class ProtocolViolation extends Schema.TaggedError<ProtocolViolation>("effect-mqtt/MqttError/ProtocolViolation")(
  "ProtocolViolation",
  { detail: Schema.String }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.FAILURE
  }
  get pahoName(): PahoCodeName {
    return "FAILURE"
  }
  get isRetryable(): boolean {
    return true
  }
  override get message(): string {
    return `protocol violation: ${this.detail}`
  }
}

/**
 * A socket fault: the connection could not be opened, a read or write failed, or the peer closed the connection.
 *
 * @since 0.1.0
 */
export class TransportError extends Schema.TaggedError<TransportError>("effect-mqtt/MqttError/TransportError")(
  "TransportError",
  {
    operation: Schema.Literals(["open", "read", "write", "close"]),
    url: Schema.String,
    detail: Schema.String,
    cause: Schema.optional(Schema.Defect())
  }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.FAILURE
  }
  get pahoName(): PahoCodeName {
    return "FAILURE"
  }
  get isRetryable(): boolean {
    return true
  }
  override get message(): string {
    return `${this.operation} ${this.url}: ${this.detail}`
  }
}

/**
 * The broker's TLS certificate failed verification (unknown CA, wrong host name, expired), or the broker refused
 * ours. Not retryable: the same certificates fail the same way. `tlsCode` is the TLS error code, such as
 * `UNABLE_TO_VERIFY_LEAF_SIGNATURE` or `ERR_TLS_CERT_ALTNAME_INVALID`.
 *
 * @since 0.1.0
 */
export class TlsVerificationFailed extends Schema.TaggedError<TlsVerificationFailed>(
  "effect-mqtt/MqttError/TlsVerificationFailed"
)("TlsVerificationFailed", { url: Schema.String, tlsCode: Schema.String, detail: Schema.String }) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.FAILURE
  }
  get pahoName(): PahoCodeName {
    return "FAILURE"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `TLS verification failed for ${this.url}: ${this.tlsCode}: ${this.detail}`
  }
}

/**
 * A payload that its schema cannot encode (publishing) or decode (receiving): `publishJson` and `subscribeJson`.
 * Not retryable: the same value fails the same way.
 *
 * @since 0.1.0
 */
export class PayloadInvalid extends Schema.TaggedError<PayloadInvalid>("effect-mqtt/MqttError/PayloadInvalid")(
  "PayloadInvalid",
  { topic: Schema.String, direction: Schema.Literals(["encode", "decode"]), detail: Schema.String }
) {
  readonly [ReasonTypeId] = ReasonTypeId
  get code(): number {
    return PahoCode.FAILURE
  }
  get pahoName(): PahoCodeName {
    return "FAILURE"
  }
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `payload on ${show(this.topic)} cannot be ${this.direction}d: ${this.detail}`
  }
}

const causeText = (cause: unknown): string =>
  Predicate.hasProperty(cause, "message") && typeof cause.message === "string" ? cause.message : show(cause)

/**
 * Every reason an `MqttError` can carry.
 *
 * @since 0.1.0
 */
export const MqttErrorReason = Schema.Union([
  BadQos,
  BadUtf8String,
  TopicnameTruncated,
  InvalidTopic,
  BadStructure,
  BadProtocol,
  BadMqttOption,
  WrongMqttVersion,
  ZeroLenWillTopic,
  MaxMessagesInflight,
  NoMoreMsgids,
  MaxBufferedMessages,
  Disconnected,
  OperationIncomplete,
  PersistenceError,
  ConnectionRefused,
  ConnectTimeout,
  KeepaliveTimeout,
  SubscribeRejected,
  MalformedPacket,
  ProtocolViolation,
  TransportError,
  TlsVerificationFailed,
  PayloadInvalid
])

/** @since 0.1.0 */
export type MqttErrorReason = typeof MqttErrorReason.Type

/** @since 0.1.0 */
export type ReasonTag = MqttErrorReason["_tag"]

/**
 * The error of every public effect-mqtt operation.
 *
 * **Details**: `code` and `isRetryable` delegate to the reason; `message` is the reason's message; the reason is
 * also the JavaScript `cause`.
 *
 * @since 0.1.0
 */
export class MqttError extends Schema.TaggedError<MqttError>("effect-mqtt/MqttError")("MqttError", {
  reason: MqttErrorReason
}) {
  readonly [TypeId] = TypeId
  override readonly cause = this.reason
  /** The Paho MQTTAsync return code of the reason. */
  get code(): number {
    return this.reason.code
  }
  /** The Paho MQTTAsync constant name of the reason, without the `MQTTASYNC_` prefix. */
  get pahoName(): PahoCodeName {
    return this.reason.pahoName
  }
  /** Whether the same operation may succeed if tried again later. */
  get isRetryable(): boolean {
    return this.reason.isRetryable
  }
  override get message(): string {
    return this.reason.message
  }
}

/**
 * Wraps a reason in an `MqttError`.
 *
 * @since 0.1.0
 */
export const make = (reason: MqttErrorReason): MqttError => new MqttError({ reason })

/**
 * Returns `true` when a value is an `MqttError`.
 *
 * @since 0.1.0
 */
export const isMqttError = (u: unknown): u is MqttError => Predicate.hasProperty(u, TypeId)

/**
 * Returns `true` when a value is an `MqttError` reason.
 *
 * @since 0.1.0
 */
export const isReason = (u: unknown): u is MqttErrorReason => Predicate.hasProperty(u, ReasonTypeId)

/**
 * A predicate for `Effect.catchIf` / `Effect.retry({ while })` that selects errors by Paho code.
 *
 * @since 0.1.0
 */
export const hasCode = (code: number) => (u: unknown): u is MqttError => isMqttError(u) && u.code === code
