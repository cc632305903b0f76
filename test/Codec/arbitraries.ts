/**
 * fast-check arbitraries for VALID MQTT 3.1.1 packets of the model (`src/Codec/Packet.ts`), i.e. packets that
 * `Codec.encode` must accept, plus small helpers to compare packets and write byte fixtures as hex.
 *
 * Validity follows the client rules of MQTT 3.1.1: topic names are non-empty, well-formed UTF-16 without U+0000 or
 * wildcards ([MQTT-4.7.3-1], [MQTT-1.5.3-1], [MQTT-1.5.3-2], [MQTT-3.3.2-2]); topic filters put `#` alone in the last
 * level and `+` alone in a level ([MQTT-4.7.1-2], [MQTT-4.7.1-3]); packet ids are 1..65535 ([MQTT-2.3.1-1]) and are
 * present exactly when QoS > 0 ([MQTT-2.3.1-5]); DUP is 0 at QoS 0 ([MQTT-3.3.1-2]); an empty client id comes with a
 * clean session ([MQTT-3.1.3-7]); a password only with a user name ([MQTT-3.1.2-22]); a refused CONNACK has session
 * present 0 ([MQTT-3.2.2-4]). Optional fields are left out rather than set to `undefined`, as the decoder does.
 */
import * as fc from "fast-check"
import type * as Packet from "../../src/Codec/Packet.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

/** Bytes from a hex string; spaces, newlines and `|` separators are ignored. */
export const fromHex = (hex: string): Uint8Array => {
  const clean = hex.replace(/[\s|]/g, "")
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new Error(`bad hex fixture: ${hex}`)
  const bytes = new Uint8Array(clean.length / 2)
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16)
  return bytes
}

/** Lower-case hex without separators. */
export const toHex = (bytes: Uint8Array): string => {
  let out = ""
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0")
  return out
}

/** Concatenates byte arrays. */
export const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const total = parts.reduce((n, part) => n + part.length, 0)
  const out = new Uint8Array(total)
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/**
 * A packet with every `Uint8Array` (payload, password, will message) replaced by a plain array of numbers, so that
 * packets compare with `deepStrictEqual` whatever the byte container (`Buffer`, `Uint8Array`, a view).
 */
export const comparable = (value: unknown): unknown => {
  if (value instanceof Uint8Array) return Array.from(value)
  if (Array.isArray(value)) return value.map(comparable)
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {}
    for (const [key, field] of Object.entries(value)) out[key] = comparable(field)
    return out
  }
  return value
}

// ---------------------------------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------------------------------

/** QoS 0, 1 or 2. */
export const qos: fc.Arbitrary<Packet.QoS> = fc.constantFrom<Packet.QoS>(0, 1, 2)

/** A packet id in 1..65535, biased towards the bounds. */
export const packetId: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(1, 2, 255, 256, 0x7fff, 0x8000, 65534, 65535),
  fc.integer({ min: 1, max: 65535 })
)

/** A keepalive in seconds, 0..65535. */
export const keepalive: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(0, 1, 60, 255, 256, 65535),
  fc.integer({ min: 0, max: 65535 })
)

/** Bytes, mostly short, sometimes a few KB. */
export const payload: fc.Arbitrary<Uint8Array> = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 16 }), weight: 5 },
  { arbitrary: fc.uint8Array({ minLength: 100, maxLength: 300 }), weight: 2 },
  { arbitrary: fc.uint8Array({ minLength: 1000, maxLength: 4096, size: "max" }), weight: 1 }
)

/** A short byte string (will message, password). */
export const shortBytes: fc.Arbitrary<Uint8Array> = fc.uint8Array({ maxLength: 64 })

// ---------------------------------------------------------------------------------------------------------------------
// Strings and topics
// ---------------------------------------------------------------------------------------------------------------------

/** Characters that are easy to get wrong on the wire: multibyte, astral, BOM, `$`, controls, spaces. */
const specialChar = fc.constantFrom(
  "$",
  "é",
  "ü",
  "€",
  "温",
  "😀",
  "𝄞",
  "\uFEFF",
  "\u0001",
  "\u007F",
  "\u0080",
  "\u07FF",
  "\u0800",
  "\uFFFD",
  " ",
  "~",
  "%",
  "\\"
)

/** Any Unicode scalar value other than U+0000 (never a lone surrogate), as a string of 1 or 2 code units. */
const anyChar = fc
  .integer({ min: 1, max: 0x10ffff })
  .filter((c) => c < 0xd800 || c > 0xdfff)
  .map((c) => String.fromCodePoint(c))

const asciiChar = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c))

/** One character valid in an MQTT UTF-8 string, biased towards ASCII. */
export const stringChar: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: asciiChar, weight: 6 },
  { arbitrary: specialChar, weight: 2 },
  { arbitrary: anyChar, weight: 2 }
)

/** A valid MQTT UTF-8 string (no U+0000, no lone surrogate), possibly empty [MQTT-1.5.3-1] [MQTT-1.5.3-2]. */
export const mqttString = (maxChars: number = 24): fc.Arbitrary<string> =>
  fc.array(stringChar, { maxLength: maxChars }).map((chars) => chars.join(""))

/** A character of a topic level: a valid string character other than `/`, `+` and `#`. */
const levelChar = stringChar.filter((c) => c !== "/" && c !== "+" && c !== "#")

const asciiLevelChar = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.$ ")

/** A topic level without wildcards or separators, possibly empty (`a//b` has an empty level); often plain ASCII. */
export const topicLevel: fc.Arbitrary<string> = fc
  .oneof(
    { arbitrary: fc.array(asciiLevelChar, { maxLength: 8 }), weight: 2 },
    { arbitrary: fc.array(levelChar, { maxLength: 8 }), weight: 1 }
  )
  .map((chars) => chars.join(""))

/** One time in five: a `$` topic (`$SYS/...`), which a client may publish to and subscribe to (§4.7.2). */
const dollar = fc.oneof({ arbitrary: fc.constant(false), weight: 4 }, { arbitrary: fc.constant(true), weight: 1 })

/** A valid topic name: non-empty, no wildcards; sometimes a `$` topic or with empty levels [MQTT-4.7.3-1]. */
export const topicName: fc.Arbitrary<string> = fc
  .tuple(dollar, fc.array(topicLevel, { minLength: 1, maxLength: 5 }))
  .map(([dollar, levels]) => (dollar ? "$" : "") + levels.join("/"))
  .filter((topic) => topic.length > 0)

/** A valid topic filter: `#` only alone as the last level, `+` only alone in a level [MQTT-4.7.1-2] [MQTT-4.7.1-3]. */
export const topicFilter: fc.Arbitrary<string> = fc
  .tuple(
    dollar,
    fc.array(fc.oneof({ arbitrary: topicLevel, weight: 3 }, { arbitrary: fc.constant("+"), weight: 1 }), {
      maxLength: 5
    }),
    fc.boolean()
  )
  .map(([dollar, levels, hash]) => {
    const all = hash ? [...levels, "#"] : levels
    const filter = all.join("/")
    return dollar && !filter.startsWith("+") && !filter.startsWith("#") ? "$" + filter : filter
  })
  .filter((filter) => filter.length > 0)

// ---------------------------------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------------------------------

/** A will message. */
export const will: fc.Arbitrary<Packet.Will> = fc
  .record({ topic: topicName, payload: shortBytes, qos, retain: fc.boolean() })
  .map(({ payload, qos, retain, topic }): Packet.Will => ({ topic, payload, qos, retain }))

interface Credentials {
  readonly username?: string
  readonly password?: Uint8Array
}

/** CONNECT with every combination of clean session, will, user name and password [MQTT-3.1.2-22]. */
export const connect: fc.Arbitrary<Packet.Connect> = fc
  .record({
    clientId: mqttString(23),
    cleanSession: fc.boolean(),
    keepalive,
    credentials: fc.oneof<Array<fc.Arbitrary<Credentials>>>(
      fc.constant({}),
      mqttString(16).map((username) => ({ username })),
      fc.tuple(mqttString(16), shortBytes).map(([username, password]) => ({ username, password }))
    ),
    will: fc.option(will, { nil: undefined, freq: 2 })
  })
  .map(({ cleanSession, clientId, credentials, keepalive, will }): Packet.Connect => {
    // [MQTT-3.1.3-7]: an empty client id needs a clean session.
    const clean = clientId.length === 0 ? true : cleanSession
    return {
      _tag: "Connect",
      protocolLevel: 4,
      clientId,
      cleanSession: clean,
      keepalive,
      ...(credentials.username !== undefined ? { username: credentials.username } : {}),
      ...(credentials.password !== undefined ? { password: credentials.password } : {}),
      ...(will !== undefined ? { will } : {})
    }
  })

/** CONNACK: return codes 0..5; session present only when accepted [MQTT-3.2.2-4]. */
export const connack: fc.Arbitrary<Packet.Connack> = fc
  .tuple(fc.integer({ min: 0, max: 5 }), fc.boolean())
  .map(([returnCode, sessionPresent]): Packet.Connack => ({
    _tag: "Connack",
    sessionPresent: returnCode === 0 && sessionPresent,
    returnCode
  }))

/** PUBLISH at every QoS; a packet id and DUP only at QoS > 0 [MQTT-2.3.1-5] [MQTT-3.3.1-2]. */
export const publish: fc.Arbitrary<Packet.Publish> = fc
  .record({ topic: topicName, payload, qos, retain: fc.boolean(), dup: fc.boolean(), packetId })
  .map(({ dup, packetId, payload, qos, retain, topic }): Packet.Publish =>
    qos === 0
      ? { _tag: "Publish", topic, payload, qos, retain, dup: false }
      : { _tag: "Publish", topic, payload, qos, retain, dup, packetId }
  )

export const puback: fc.Arbitrary<Packet.Puback> = packetId.map((packetId) => ({ _tag: "Puback", packetId }))
export const pubrec: fc.Arbitrary<Packet.Pubrec> = packetId.map((packetId) => ({ _tag: "Pubrec", packetId }))
export const pubrel: fc.Arbitrary<Packet.Pubrel> = packetId.map((packetId) => ({ _tag: "Pubrel", packetId }))
export const pubcomp: fc.Arbitrary<Packet.Pubcomp> = packetId.map((packetId) => ({ _tag: "Pubcomp", packetId }))
export const unsuback: fc.Arbitrary<Packet.Unsuback> = packetId.map((packetId) => ({ _tag: "Unsuback", packetId }))

/** SUBSCRIBE with 1..6 filters [MQTT-3.8.3-3]. */
export const subscribe: fc.Arbitrary<Packet.Subscribe> = fc
  .tuple(packetId, fc.array(fc.record({ topicFilter, qos }), { minLength: 1, maxLength: 6 }))
  .map(([packetId, subscriptions]): Packet.Subscribe => ({ _tag: "Subscribe", packetId, subscriptions }))

/** SUBACK with 1..8 return codes from {0, 1, 2, 0x80}. */
export const suback: fc.Arbitrary<Packet.Suback> = fc
  .tuple(packetId, fc.array(fc.constantFrom<Packet.SubackReturnCode>(0, 1, 2, 0x80), { minLength: 1, maxLength: 8 }))
  .map(([packetId, returnCodes]): Packet.Suback => ({ _tag: "Suback", packetId, returnCodes }))

/** UNSUBSCRIBE with 1..6 filters [MQTT-3.10.3-2]. */
export const unsubscribe: fc.Arbitrary<Packet.Unsubscribe> = fc
  .tuple(packetId, fc.array(topicFilter, { minLength: 1, maxLength: 6 }))
  .map(([packetId, topicFilters]): Packet.Unsubscribe => ({ _tag: "Unsubscribe", packetId, topicFilters }))

export const pingreq: fc.Arbitrary<Packet.Pingreq> = fc.constant({ _tag: "Pingreq" })
export const pingresp: fc.Arbitrary<Packet.Pingresp> = fc.constant({ _tag: "Pingresp" })
export const disconnect: fc.Arbitrary<Packet.Disconnect> = fc.constant({ _tag: "Disconnect" })

/** One arbitrary per packet type, by tag. */
export const byTag: { readonly [K in Packet.PacketTag]: fc.Arbitrary<Extract<Packet.Packet, { _tag: K }>> } = {
  Connect: connect,
  Connack: connack,
  Publish: publish,
  Puback: puback,
  Pubrec: pubrec,
  Pubrel: pubrel,
  Pubcomp: pubcomp,
  Subscribe: subscribe,
  Suback: suback,
  Unsubscribe: unsubscribe,
  Unsuback: unsuback,
  Pingreq: pingreq,
  Pingresp: pingresp,
  Disconnect: disconnect
}

/** Any valid packet of the 14 types, each type equally likely. */
export const packet: fc.Arbitrary<Packet.Packet> = fc.oneof(
  ...Object.values(byTag).map((arbitrary) => arbitrary as fc.Arbitrary<Packet.Packet>)
)

/** A packet a broker may send to a client (CONNACK, PUBLISH, PUBACK, ..., SUBACK, UNSUBACK, PINGRESP). */
export const serverPacket: fc.Arbitrary<Packet.ServerPacket> = fc.oneof(
  connack,
  publish,
  puback,
  pubrec,
  pubrel,
  pubcomp,
  suback,
  unsuback,
  pingresp
) as fc.Arbitrary<Packet.ServerPacket>
