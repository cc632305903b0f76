/**
 * The MQTT 3.1.1 string and topic rules, and topic matching: whether a string we are about to send is a valid MQTT
 * UTF-8 string (§1.5.3: well-formed, no U+0000, at most 65535 bytes once encoded), whether it is a valid topic name
 * (no wildcards) or topic filter (`#` and `+` in their places) (§4.7), and whether a topic filter matches a topic
 * name (§4.7.1, §4.7.2). Validators return `undefined` when the value is valid and an `MqttError` otherwise; they never
 * throw. They run for every published message, so the common case is one precompiled character-class test with no
 * allocation, and only a string that holds a suspect code unit (U+0000, a surrogate, a wildcard) is scanned exactly.
 *
 * This module does not validate packets (see `Validate`), decode bytes received from a broker (see `Codec`), or
 * reject `$` topic names: §4.7.2 only advises applications against them, and a client may publish to them.
 *
 * @since 0.1.0
 */
import * as MqttError from "../Errors/MqttError.ts"

const SLASH = 0x2f
const PLUS = 0x2b
const HASH = 0x23
const DOLLAR = 0x24

/** The largest byte length of an MQTT UTF-8 string: its length prefix is two bytes (§1.5.3). */
const MAX_STRING_BYTES = 65535

/**
 * A string with more UTF-16 code units than this may exceed 65535 bytes; one with fewer cannot (a code unit encodes to
 * at most 3 bytes), so its byte length is never counted.
 */
const MAX_SAFE_LENGTH = Math.floor(MAX_STRING_BYTES / 3)

// Fast filters, compiled once: a string that matches neither holds no code unit any rule could reject. A match
// (which may be a valid surrogate pair) sends the string to the exact checks below.
const SUSPECT_STRING = /[\u0000\uD800-\uDFFF]/
const SUSPECT_TOPIC = /[\u0000#+\uD800-\uDFFF]/
const NON_ASCII = /[^\u0000-\u007F]/

const hex = (code: number): string => `U+${code.toString(16).toUpperCase().padStart(4, "0")}`

const invalidTopic = (topic: string, kind: "topicName" | "topicFilter", detail: string): MqttError.MqttError =>
  MqttError.make(new MqttError.InvalidTopic({ topic, kind, detail }))

/** The first U+0000 or lone surrogate of `value`, as an error; `undefined` if there is none. */
const characterFault = (field: string, value: string): MqttError.MqttError | undefined => {
  const length = value.length
  for (let i = 0; i < length; i++) {
    const c = value.charCodeAt(i)
    if (c === 0) {
      // [MQTT-1.5.3-2] [MQTT-4.7.3-2]
      return MqttError.make(new MqttError.TopicnameTruncated({ field, value }))
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      // [MQTT-1.5.3-1] a surrogate is well-formed only as a high surrogate followed by a low one
      if (c <= 0xdbff && i + 1 < length && (value.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
        i++
        continue
      }
      return MqttError.make(
        new MqttError.BadUtf8String({
          field,
          value,
          detail: `the lone UTF-16 surrogate ${hex(c)} at index ${i} cannot be encoded as UTF-8 [MQTT-1.5.3-1]`
        })
      )
    }
  }
  return undefined
}

/** More than 65535 bytes once encoded, as an error; `undefined` otherwise. */
const lengthFault = (field: string, value: string): MqttError.MqttError | undefined => {
  if (value.length > MAX_SAFE_LENGTH) {
    const bytes = utf8Length(value)
    if (bytes > MAX_STRING_BYTES) {
      // [MQTT-1.5.3-1] (a 2-byte length prefix) [MQTT-4.7.3-3]
      return MqttError.make(
        new MqttError.BadUtf8String({
          field,
          value,
          detail: `it is ${bytes} bytes when UTF-8 encoded; the maximum is ${MAX_STRING_BYTES} [MQTT-4.7.3-3]`
        })
      )
    }
  }
  return undefined
}

/**
 * Checks the MQTT UTF-8 string rules for a string we send: no lone surrogate, no U+0000, at most 65535 bytes.
 *
 * **Details**: a lone surrogate fails with `BadUtf8String` [MQTT-1.5.3-1], U+0000 with `TopicnameTruncated`
 * [MQTT-1.5.3-2], more than 65535 UTF-8 bytes with `BadUtf8String`. U+FEFF is data and is accepted as is
 * [MQTT-1.5.3-3]. `field` ("client id", "username", ...) names the string in the error.
 *
 * @since 0.1.0
 */
export const validateString = (field: string, value: string): MqttError.MqttError | undefined =>
  (SUSPECT_STRING.test(value) ? characterFault(field, value) : undefined) ?? lengthFault(field, value)

/**
 * Topic names found valid lately: a publisher repeats a few topics, and each is checked twice per message (when the
 * publish starts and when it is encoded). A name is valid or not whatever `field` says, so the set is shared.
 */
const validTopicNames = new Set<string>()

/** Names remembered at most; past it the set starts over (a publisher of ever new topics). */
const VALID_TOPIC_NAMES_LIMIT = 256

/**
 * Checks a topic name for a PUBLISH or a will: the string rules, not empty, no `+` or `#`.
 *
 * **Details**: empty fails with `InvalidTopic` [MQTT-4.7.3-1], a wildcard with `InvalidTopic` [MQTT-3.3.2-2]
 * [MQTT-4.7.1-1]; the string rules (checked first) fail as in `validateString`, naming `field` ("topic name" unless
 * given). Up to 256 names found valid are remembered and not checked again.
 *
 * @since 0.1.0
 */
export const validateTopicName = (topic: string, field: string = "topic name"): MqttError.MqttError | undefined => {
  if (validTopicNames.has(topic)) return undefined
  const fault = topicNameFault(topic, field)
  if (fault === undefined) {
    if (validTopicNames.size >= VALID_TOPIC_NAMES_LIMIT) validTopicNames.clear()
    validTopicNames.add(topic)
  }
  return fault
}

const topicNameFault = (topic: string, field: string): MqttError.MqttError | undefined => {
  if (topic.length === 0) {
    // [MQTT-4.7.3-1]
    return invalidTopic(topic, "topicName", "a topic name must be at least one character long [MQTT-4.7.3-1]")
  }
  const suspect = SUSPECT_TOPIC.test(topic)
  const fault = (suspect ? characterFault(field, topic) : undefined) ?? lengthFault(field, topic)
  if (fault !== undefined || !suspect) return fault
  const plus = topic.indexOf("+")
  const hash = topic.indexOf("#")
  if (plus === -1 && hash === -1) return undefined
  // [MQTT-3.3.2-2] [MQTT-4.7.1-1]
  const at = plus === -1 || (hash !== -1 && hash < plus) ? hash : plus
  return invalidTopic(
    topic,
    "topicName",
    `contains the wildcard "${topic.charAt(at)}" at index ${at}; wildcards are allowed only in topic filters ` +
      "[MQTT-3.3.2-2] [MQTT-4.7.1-1]"
  )
}

/**
 * Checks a topic filter for a SUBSCRIBE or UNSUBSCRIBE: the string rules, not empty, wildcards in their places.
 *
 * **Details**: empty fails with `InvalidTopic` [MQTT-4.7.3-1]; `#` must be alone in the last level (`#`, `a/#`)
 * [MQTT-4.7.1-2]; `+` must fill a whole level (`+`, `a/+/b`) [MQTT-4.7.1-3]. The error names the filter and the
 * index of the first misplaced wildcard. The string rules are checked first, as in `validateString`.
 *
 * @since 0.1.0
 */
export const validateTopicFilter = (
  filter: string,
  field: string = "topic filter"
): MqttError.MqttError | undefined => {
  const length = filter.length
  if (length === 0) {
    // [MQTT-4.7.3-1]
    return invalidTopic(filter, "topicFilter", "a topic filter must be at least one character long [MQTT-4.7.3-1]")
  }
  const fault = validateString(field, filter)
  if (fault !== undefined) return fault
  // [MQTT-4.7.1-3] every "+" starts a level and ends it
  let plus = filter.indexOf("+")
  while (plus !== -1) {
    const startsLevel = plus === 0 || filter.charCodeAt(plus - 1) === SLASH
    const endsLevel = plus === length - 1 || filter.charCodeAt(plus + 1) === SLASH
    if (!startsLevel || !endsLevel) break
    plus = filter.indexOf("+", plus + 1)
  }
  // [MQTT-4.7.1-2] a "#" must be the last character and start its level, so only the last character can be one
  let hash = filter.indexOf("#")
  if (hash === length - 1 && (hash === 0 || filter.charCodeAt(hash - 1) === SLASH)) hash = -1
  if (plus === -1 && hash === -1) return undefined
  return hash !== -1 && (plus === -1 || hash < plus)
    ? invalidTopic(
      filter,
      "topicFilter",
      `"#" at index ${hash} must be alone in its level and be the last character [MQTT-4.7.1-2]`
    )
    : invalidTopic(filter, "topicFilter", `"+" at index ${plus} must occupy a whole level [MQTT-4.7.1-3]`)
}

/**
 * The number of bytes of the UTF-8 encoding of a string (a lone surrogate counts as 3, like its U+FFFD replacement).
 *
 * @since 0.1.0
 */
export const utf8Length = (value: string): number => {
  const length = value.length
  if (!NON_ASCII.test(value)) return length
  let bytes = 0
  for (let i = 0; i < length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x80) {
      bytes += 1
    } else if (c < 0x800) {
      bytes += 2
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < length && (value.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      // a surrogate pair: two code units, four bytes
      bytes += 4
      i++
    } else {
      bytes += 3
    }
  }
  return bytes
}

/**
 * Whether a valid topic filter matches a valid topic name (MQTT 3.1.1 §4.7).
 *
 * **Details**: levels are separated by `/`, and empty levels are levels (`a//b` has three). `+` matches exactly one
 * level, possibly empty (`a/+` matches `a/` but not `a`). `#` matches its parent level and any number of child levels
 * (`a/#` matches `a`, `a/` and `a/b/c`). A filter that starts with a wildcard never matches a topic name that starts
 * with `$` [MQTT-4.7.2-1], so `#` does not match `$SYS/x`, but `$SYS/#` does.
 *
 * **Gotchas**: both arguments are assumed valid (see `validateTopicFilter` and `validateTopicName`); the result for
 * invalid ones is unspecified. Both strings are walked in place, without splitting.
 *
 * @since 0.1.0
 */
export const matches = (topicFilter: string, topicName: string): boolean => {
  const filterLength = topicFilter.length
  const nameLength = topicName.length
  if (nameLength > 0 && topicName.charCodeAt(0) === DOLLAR) {
    // [MQTT-4.7.2-1]
    const first = topicFilter.charCodeAt(0)
    if (first === HASH || first === PLUS) return false
  }
  // `f` and `n` are at the start of the current level of each string; `nameDone` says the name has no level left
  let f = 0
  let n = 0
  let nameDone = false
  for (;;) {
    const c = topicFilter.charCodeAt(f)
    if (c === HASH) {
      // `#` is the whole last level of a valid filter: it matches the rest of the name, or its absence (the parent)
      return true
    }
    if (nameDone) return false
    if (c === PLUS) {
      // `+` matches the current name level, whatever it holds
      f++
      while (n < nameLength && topicName.charCodeAt(n) !== SLASH) n++
    } else {
      // a literal level must equal the name level code unit by code unit
      while (f < filterLength) {
        const fc = topicFilter.charCodeAt(f)
        if (fc === SLASH) break
        if (n === nameLength || topicName.charCodeAt(n) !== fc) return false
        f++
        n++
      }
      if (n < nameLength && topicName.charCodeAt(n) !== SLASH) return false
    }
    // both levels ended: `f` is at a "/" or the end of the filter, `n` at a "/" or the end of the name
    if (f === filterLength) return n === nameLength
    f++
    if (n === nameLength) {
      nameDone = true
    } else {
      n++
    }
  }
}

/**
 * Whether a topic filter contains a wildcard (`+` or `#`).
 *
 * @since 0.1.0
 */
export const isWildcardFilter = (filter: string): boolean => filter.indexOf("+") !== -1 || filter.indexOf("#") !== -1
