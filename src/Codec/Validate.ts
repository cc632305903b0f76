/**
 * Validation of outgoing packets: whether a packet of any of the 14 MQTT 3.1.1 types, built by this library or handed
 * in by untyped JavaScript, may be encoded and sent. It owns the value rules of §2 and §3 that a client must keep
 * (QoS 0..2, packet ids 1..65535 present exactly when needed, DUP 0 at QoS 0, a client id, will, user name and
 * password that fit CONNECT, at least one filter in SUBSCRIBE and UNSUBSCRIBE, the 268435455-byte packet limit) and
 * delegates string and topic rules to `Topic`. Every function returns `undefined` when valid and an `MqttError`
 * otherwise, reporting the first rule broken; none throws, whatever the input (fields are checked with `typeof` and
 * `instanceof Uint8Array` before use), and none allocates on the success path.
 *
 * This module does not encode (see `Codec`), validate packets received from a broker (the decoder does), or decide
 * which packet may be sent when (the session state machine does).
 *
 * @since 0.1.0
 */
import * as MqttError from "../Errors/MqttError.ts"
import type * as Packet from "./Packet.ts"
import * as Topic from "./Topic.ts"

/** The largest value of a two-byte integer, and of a two-byte length prefix (§1.5.2, §1.5.3). */
const MAX_UINT16 = 65535

/** The largest remaining length a fixed header can encode (§2.2.3). */
const MAX_REMAINING_LENGTH = 268_435_455

const badStructure = (field: string, value: unknown, detail: string): MqttError.MqttError =>
  MqttError.make(new MqttError.BadStructure({ field, value, detail }))

const badOption = (option: string, value: unknown, detail: string): MqttError.MqttError =>
  MqttError.make(new MqttError.BadMqttOption({ option, value, detail }))

const isObject = (value: unknown): value is { readonly [key: string]: unknown } =>
  typeof value === "object" && value !== null

const isUint16 = (value: unknown): value is number =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_UINT16

/**
 * Checks a QoS: `BadQos` unless the value is the number 0, 1 or 2 [MQTT-3.3.1-4] [MQTT-3.1.2-14].
 *
 * @since 0.1.0
 */
export const qos = (value: unknown, context: string): MqttError.MqttError | undefined =>
  value === 0 || value === 1 || value === 2 ? undefined : MqttError.make(new MqttError.BadQos({ qos: value, context }))

/**
 * Checks a packet id: `BadStructure` unless the value is an integer in 1..65535 [MQTT-2.3.1-1].
 *
 * @since 0.1.0
 */
export const packetId = (value: unknown, context: string): MqttError.MqttError | undefined =>
  isUint16(value) && value !== 0
    ? undefined
    : badStructure(`${context} packet id`, value, "a packet id must be an integer in 1..65535 [MQTT-2.3.1-1]")

/**
 * Checks a CONNECT client id: the string rules, and an empty id only with a clean session [MQTT-3.1.3-7].
 *
 * @since 0.1.0
 */
export const clientId = (clientId: string, cleanSession: boolean): MqttError.MqttError | undefined => {
  if (typeof clientId !== "string") return badOption("clientId", clientId, "the client id must be a string")
  if (clientId.length === 0) {
    // [MQTT-3.1.3-7]
    return cleanSession === true
      ? undefined
      : badOption("clientId", clientId, "an empty client id requires a clean session [MQTT-3.1.3-7]")
  }
  // [MQTT-3.1.3-4]
  return Topic.validateString("client id", clientId)
}

/**
 * Checks a CONNECT will: a non-empty topic name, a QoS of 0..2 and a message of at most 65535 bytes.
 *
 * **Details**: an empty topic fails with `ZeroLenWillTopic`, any other topic as in `Topic.validateTopicName` (field
 * "will topic") [MQTT-3.1.3-10]; a bad QoS with `BadQos` [MQTT-3.1.2-14]; a message over 65535 bytes (it is sent
 * with a two-byte length) or a non-boolean retain flag with `BadStructure`.
 *
 * @since 0.1.0
 */
export const will = (will: Packet.Will): MqttError.MqttError | undefined => {
  if (!isObject(will)) return badOption("will", will, "the will must be an object")
  const topic = will.topic
  if (typeof topic !== "string") return badStructure("will topic", topic, "the will topic must be a string")
  if (topic.length === 0) return MqttError.make(new MqttError.ZeroLenWillTopic())
  // [MQTT-3.1.3-10]
  const topicError = Topic.validateTopicName(topic, "will topic")
  if (topicError !== undefined) return topicError
  // [MQTT-3.1.2-14]
  const qosError = qos(will.qos, "will")
  if (qosError !== undefined) return qosError
  const payload = will.payload
  if (!(payload instanceof Uint8Array)) {
    return badStructure("will message", payload, "the will message must be a Uint8Array")
  }
  if (payload.length > MAX_UINT16) {
    return badStructure(
      "will message",
      `${payload.length} bytes`,
      `the will message is sent with a two-byte length, so at most ${MAX_UINT16} bytes`
    )
  }
  if (typeof will.retain !== "boolean") return badStructure("will retain", will.retain, "must be a boolean")
  return undefined
}

const connect = (packet: { readonly [key: string]: unknown }): MqttError.MqttError | undefined => {
  if (packet.protocolLevel !== 4) {
    return badOption("protocolLevel", packet.protocolLevel, "MQTT 3.1.1 is protocol level 4")
  }
  const cleanSession = packet.cleanSession
  if (typeof cleanSession !== "boolean") return badOption("cleanSession", cleanSession, "must be a boolean")
  const clientIdError = clientId(packet.clientId as string, cleanSession)
  if (clientIdError !== undefined) return clientIdError
  if (!isUint16(packet.keepalive)) {
    return badOption("keepalive", packet.keepalive, "the keepalive must be an integer number of seconds in 0..65535")
  }
  const username = packet.username
  if (username !== undefined) {
    if (typeof username !== "string") return badOption("username", username, "the user name must be a string")
    // [MQTT-3.1.3-11]
    const usernameError = Topic.validateString("username", username)
    if (usernameError !== undefined) return usernameError
  }
  const password = packet.password
  if (password !== undefined) {
    if (!(password instanceof Uint8Array)) {
      // the value stays out of the error: it may be a secret given as a string
      return badOption("password", `<${typeof password}>`, "the password must be a Uint8Array")
    }
    if (username === undefined) {
      // [MQTT-3.1.2-22]
      return badOption("password", "<redacted>", "a password requires a user name [MQTT-3.1.2-22]")
    }
    if (password.length > MAX_UINT16) {
      return badStructure(
        "password",
        `${password.length} bytes`,
        `the password is sent with a two-byte length, so at most ${MAX_UINT16} bytes`
      )
    }
  }
  // Every CONNECT field is at most 65535 bytes, so a CONNECT can never reach the remaining length limit.
  return packet.will === undefined ? undefined : will(packet.will as Packet.Will)
}

const connack = (packet: { readonly [key: string]: unknown }): MqttError.MqttError | undefined => {
  const returnCode = packet.returnCode
  if (typeof returnCode !== "number" || !Number.isInteger(returnCode) || returnCode < 0 || returnCode > 5) {
    return badStructure("Connack return code", returnCode, "a CONNACK return code is an integer in 0..5 (§3.2.2.3)")
  }
  const sessionPresent = packet.sessionPresent
  if (typeof sessionPresent !== "boolean") {
    return badStructure("Connack session present", sessionPresent, "must be a boolean")
  }
  if (returnCode !== 0 && sessionPresent) {
    // [MQTT-3.2.2-4]
    return badStructure(
      "Connack session present",
      sessionPresent,
      `a refusal (return code ${returnCode}) must have session present 0 [MQTT-3.2.2-4]`
    )
  }
  return undefined
}

const publish = (packet: { readonly [key: string]: unknown }): MqttError.MqttError | undefined => {
  const topic = packet.topic
  if (typeof topic !== "string") return badStructure("Publish topic", topic, "the topic name must be a string")
  // [MQTT-3.3.2-1] [MQTT-3.3.2-2]
  const topicError = Topic.validateTopicName(topic)
  if (topicError !== undefined) return topicError
  const level = packet.qos
  // [MQTT-3.3.1-4]
  const qosError = qos(level, "Publish")
  if (qosError !== undefined) return qosError
  if (typeof packet.dup !== "boolean") return badStructure("Publish dup", packet.dup, "must be a boolean")
  if (typeof packet.retain !== "boolean") return badStructure("Publish retain", packet.retain, "must be a boolean")
  if (level === 0) {
    if (packet.packetId !== undefined) {
      // [MQTT-2.3.1-5]
      return badStructure("Publish packet id", packet.packetId, "a QoS 0 PUBLISH has no packet id [MQTT-2.3.1-5]")
    }
    if (packet.dup) {
      // [MQTT-3.3.1-2]
      return badStructure("Publish dup", true, "a QoS 0 PUBLISH has DUP 0 [MQTT-3.3.1-2]")
    }
  } else {
    // [MQTT-2.3.1-1]
    const packetIdError = packetId(packet.packetId, "Publish")
    if (packetIdError !== undefined) return packetIdError
  }
  const payload = packet.payload
  if (!(payload instanceof Uint8Array)) {
    return badStructure("Publish payload", payload, "the payload must be a Uint8Array")
  }
  // remaining length = topic (2 + bytes) + packet id (2 when QoS > 0) + payload; the topic is at most 65535 bytes, so
  // the exact topic length is needed only for payloads near the limit
  const fixed = level === 0 ? 2 : 4
  if (payload.length + fixed + MAX_UINT16 > MAX_REMAINING_LENGTH) {
    const remainingLength = payload.length + fixed + Topic.utf8Length(topic)
    if (remainingLength > MAX_REMAINING_LENGTH) {
      return badStructure(
        "Publish payload",
        `${payload.length} bytes`,
        `the PUBLISH would be ${remainingLength} bytes after its fixed header; the maximum is ${MAX_REMAINING_LENGTH}`
      )
    }
  }
  return undefined
}

const subscribe = (packet: { readonly [key: string]: unknown }): MqttError.MqttError | undefined => {
  // [MQTT-2.3.1-1]
  const packetIdError = packetId(packet.packetId, "Subscribe")
  if (packetIdError !== undefined) return packetIdError
  const subscriptions = packet.subscriptions
  if (!Array.isArray(subscriptions)) {
    return badStructure("Subscribe subscriptions", subscriptions, "the subscriptions must be an array")
  }
  if (subscriptions.length === 0) {
    // [MQTT-3.8.3-3]
    return badStructure(
      "Subscribe subscriptions",
      subscriptions,
      "a SUBSCRIBE carries at least one topic filter [MQTT-3.8.3-3]"
    )
  }
  let units = 0
  for (let i = 0; i < subscriptions.length; i++) {
    const subscription: unknown = subscriptions[i]
    if (!isObject(subscription)) {
      return badStructure(`Subscribe subscription ${i}`, subscription, "a subscription must be an object")
    }
    const filter = subscription.topicFilter
    if (typeof filter !== "string") {
      return badStructure(`Subscribe subscription ${i} topic filter`, filter, "the topic filter must be a string")
    }
    // [MQTT-3.8.3-1]
    const filterError = Topic.validateTopicFilter(filter)
    if (filterError !== undefined) return filterError
    // [MQTT-3-8.3-4] never QoS 3 (or reserved bits) in the requested QoS byte; the context is built only on failure
    const requested = subscription.qos
    if (requested !== 0 && requested !== 1 && requested !== 2) {
      return qos(requested, `Subscribe ${JSON.stringify(filter)}`)
    }
    units += filter.length
  }
  // remaining length = packet id (2) + per filter: length (2) + filter + requested QoS (1)
  const overhead = 2 + 3 * subscriptions.length
  if (overhead + 3 * units <= MAX_REMAINING_LENGTH) return undefined
  let remainingLength = overhead
  for (let i = 0; i < subscriptions.length; i++) {
    remainingLength += Topic.utf8Length((subscriptions[i] as Packet.Subscription).topicFilter)
  }
  const count = subscriptions.length
  return remainingLength > MAX_REMAINING_LENGTH ? tooLong("Subscribe", count, remainingLength) : undefined
}

/** A SUBSCRIBE or UNSUBSCRIBE of thousands of long filters can exceed the remaining length limit. */
const tooLong = (context: string, count: number, remainingLength: number): MqttError.MqttError =>
  badStructure(
    `${context} topic filters`,
    `${count} filters`,
    `the ${context.toUpperCase()} would be ${remainingLength} bytes after its fixed header; ` +
      `the maximum is ${MAX_REMAINING_LENGTH}`
  )

const suback = (packet: { readonly [key: string]: unknown }): MqttError.MqttError | undefined => {
  const packetIdError = packetId(packet.packetId, "Suback")
  if (packetIdError !== undefined) return packetIdError
  const returnCodes = packet.returnCodes
  if (!Array.isArray(returnCodes)) {
    return badStructure("Suback return codes", returnCodes, "the return codes must be an array")
  }
  if (returnCodes.length === 0) {
    // [MQTT-3.9.3-1] one return code per filter of the SUBSCRIBE, which has at least one
    return badStructure("Suback return codes", returnCodes, "a SUBACK carries at least one return code [MQTT-3.9.3-1]")
  }
  if (returnCodes.length + 2 > MAX_REMAINING_LENGTH) {
    return badStructure(
      "Suback return codes",
      `${returnCodes.length} return codes`,
      `a SUBACK carries at most ${MAX_REMAINING_LENGTH - 2} return codes`
    )
  }
  for (let i = 0; i < returnCodes.length; i++) {
    const code: unknown = returnCodes[i]
    if (code !== 0 && code !== 1 && code !== 2 && code !== 0x80) {
      // [MQTT-3.9.3-2]
      return badStructure(`Suback return code ${i}`, code, "a SUBACK return code is 0, 1, 2 or 0x80 [MQTT-3.9.3-2]")
    }
  }
  return undefined
}

const unsubscribe = (packet: { readonly [key: string]: unknown }): MqttError.MqttError | undefined => {
  // [MQTT-2.3.1-1]
  const packetIdError = packetId(packet.packetId, "Unsubscribe")
  if (packetIdError !== undefined) return packetIdError
  const filters = packet.topicFilters
  if (!Array.isArray(filters)) {
    return badStructure("Unsubscribe topic filters", filters, "the topic filters must be an array")
  }
  if (filters.length === 0) {
    // [MQTT-3.10.3-2]
    return badStructure(
      "Unsubscribe topic filters",
      filters,
      "an UNSUBSCRIBE carries at least one topic filter [MQTT-3.10.3-2]"
    )
  }
  let units = 0
  for (let i = 0; i < filters.length; i++) {
    const filter: unknown = filters[i]
    if (typeof filter !== "string") {
      return badStructure(`Unsubscribe topic filter ${i}`, filter, "the topic filter must be a string")
    }
    // [MQTT-3.10.3-1]
    const filterError = Topic.validateTopicFilter(filter)
    if (filterError !== undefined) return filterError
    units += filter.length
  }
  // remaining length = packet id (2) + per filter: length (2) + filter
  const overhead = 2 + 2 * filters.length
  if (overhead + 3 * units <= MAX_REMAINING_LENGTH) return undefined
  let remainingLength = overhead
  for (let i = 0; i < filters.length; i++) remainingLength += Topic.utf8Length(filters[i] as string)
  return remainingLength > MAX_REMAINING_LENGTH ? tooLong("Unsubscribe", filters.length, remainingLength) : undefined
}

/**
 * Checks an outgoing packet of any type before it is encoded; see the module doc for the rules.
 *
 * **Details**: CONNECT: protocol level 4, client id [MQTT-3.1.3-7], keepalive 0..65535, user name string rules
 * [MQTT-3.1.3-11], no password without a user name [MQTT-3.1.2-22], password ≤ 65535 bytes, will. CONNACK: return
 * code 0..5, session present 0 on refusal. PUBLISH: topic name, QoS, a packet id exactly when QoS > 0
 * [MQTT-2.3.1-1] [MQTT-2.3.1-5], DUP 0 at QoS 0 [MQTT-3.3.1-2], a Uint8Array payload, at most 268435455 bytes.
 * PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: packet id. SUBSCRIBE / UNSUBSCRIBE: packet id, at least one valid filter
 * [MQTT-3.8.3-3] [MQTT-3.10.3-2], valid QoS. SUBACK: packet id, return codes in {0, 1, 2, 0x80}. Anything else
 * (an unknown `_tag`, not an object) fails with `BadStructure`.
 *
 * **Gotchas**: connection options (client id, keepalive, user name, password, will, protocol level) fail with
 * `BadMqttOption`, bad strings with `BadUtf8String` / `TopicnameTruncated` / `InvalidTopic`, bad QoS with `BadQos`, and
 * other protocol values with `BadStructure`. An accessor property that throws propagates its exception.
 *
 * @since 0.1.0
 */
export const packet = (packet: Packet.Packet): MqttError.MqttError | undefined => {
  if (!isObject(packet)) return badStructure("packet", packet, "a packet must be an object with a _tag")
  const fields = packet as unknown as { readonly [key: string]: unknown }
  const tag = fields._tag
  switch (tag) {
    case "Publish":
      return publish(fields)
    case "Puback":
    case "Pubrec":
    case "Pubrel":
    case "Pubcomp":
    case "Unsuback":
      // [MQTT-2.3.1-6]
      return packetId(fields.packetId, tag)
    case "Subscribe":
      return subscribe(fields)
    case "Unsubscribe":
      return unsubscribe(fields)
    case "Pingreq":
    case "Pingresp":
    case "Disconnect":
      return undefined
    case "Connect":
      return connect(fields)
    case "Connack":
      return connack(fields)
    case "Suback":
      return suback(fields)
    default:
      return badStructure("packet _tag", tag, "not an MQTT 3.1.1 control packet type")
  }
}
