/**
 * Bytes to packets and back: the only module that touches `mqtt-packet`.
 *
 * `encode` validates an outgoing packet (`Validate.packet`) and serialises it; it never throws. `Decoder` turns a
 * byte stream split at arbitrary boundaries into packets. It frames packets itself — reading the fixed header and the
 * remaining length (§2.2.3) — so that a packet over `maximumPacketSize` is rejected from its header, before its body
 * is buffered. Every packet a broker sends a client (PUBLISH, the acknowledgements, CONNACK, SUBACK, PINGRESP) is
 * read here directly, and every packet a client sends is written here directly, for speed; `mqtt-packet` reads
 * the packets only a server receives (CONNECT, SUBSCRIBE, UNSUBSCRIBE: fake brokers in tests), writes CONNACK and
 * SUBACK, and is the byte-for-byte reference the direct encoders are tested against. The decoder enforces what MQTT 3.1.1
 * requires of a receiver: reserved flag bits ([MQTT-2.2.2-1], [MQTT-2.2.2-2]), no QoS 3
 * ([MQTT-3.3.1-4]), well-formed UTF-8 without U+0000 in topic names ([MQTT-1.5.3-1], [MQTT-1.5.3-2]), non-zero packet
 * ids ([MQTT-2.3.1-1]) and exact lengths for fixed-size packets. Any violation is a `MalformedPacket` error after
 * which the decoder is finished: the connection must be closed ([MQTT-4.8.0-1]).
 *
 * Pure: no Effect runtime, no I/O. Incoming payloads are views into the received bytes when a packet arrives in one
 * chunk (no copy) and one copy when it spans chunks.
 *
 * @since 0.1.0
 */
import { Buffer, isUtf8 } from "node:buffer"
import * as MqttPacket from "mqtt-packet"
import * as Result from "effect/Result"
import * as MqttError from "../Errors/MqttError.ts"
import * as Packet from "./Packet.ts"
import * as Validate from "./Validate.ts"

/**
 * The largest packet MQTT 3.1.1 can express: 1 byte of type and flags, 4 bytes of remaining length, and the largest
 * remaining length, 268,435,455 bytes (§2.2.3).
 *
 * @since 0.1.0
 */
export const MAX_PACKET_SIZE = 268_435_460


const protocolOptions = { protocolVersion: 4 } as const

const toBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

const toWire = (packet: Packet.Packet): MqttPacket.Packet => {
  switch (packet._tag) {
    case "Connect": {
      const out: MqttPacket.IConnectPacket = {
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clean: packet.cleanSession,
        clientId: packet.clientId,
        keepalive: packet.keepalive
      }
      // [MQTT-3.1.2-18]..[MQTT-3.1.2-21]: a field is present exactly when its flag is set.
      if (packet.username !== undefined) out.username = packet.username
      if (packet.password !== undefined) out.password = toBuffer(packet.password)
      // [MQTT-3.1.2-9], [MQTT-3.1.2-11]: will fields only with the will flag; otherwise will QoS and retain are 0.
      if (packet.will !== undefined) {
        out.will = {
          topic: packet.will.topic,
          payload: toBuffer(packet.will.payload),
          qos: packet.will.qos,
          retain: packet.will.retain
        }
      }
      return out
    }
    case "Connack":
      return { cmd: "connack", sessionPresent: packet.sessionPresent, returnCode: packet.returnCode }
    case "Publish":
      return {
        cmd: "publish",
        topic: packet.topic,
        payload: toBuffer(packet.payload),
        qos: packet.qos,
        // [MQTT-3.3.1-2]: DUP is 0 for QoS 0 (Validate rejects anything else).
        dup: packet.dup,
        retain: packet.retain,
        // [MQTT-2.3.1-5]: no packet id at QoS 0.
        ...(packet.qos > 0 ? { messageId: packet.packetId! } : {})
      }
    case "Puback":
      return { cmd: "puback", messageId: packet.packetId }
    case "Pubrec":
      return { cmd: "pubrec", messageId: packet.packetId }
    case "Pubrel":
      // [MQTT-3.6.1-1]: mqtt-packet writes the fixed flags 0010.
      return { cmd: "pubrel", messageId: packet.packetId }
    case "Pubcomp":
      return { cmd: "pubcomp", messageId: packet.packetId }
    case "Subscribe":
      // [MQTT-3.8.1-1]: mqtt-packet writes the fixed flags 0010.
      return {
        cmd: "subscribe",
        messageId: packet.packetId,
        subscriptions: packet.subscriptions.map((s) => ({ topic: s.topicFilter, qos: s.qos }))
      }
    case "Suback":
      return { cmd: "suback", messageId: packet.packetId, granted: [...packet.returnCodes] }
    case "Unsubscribe":
      // [MQTT-3.10.1-1]: mqtt-packet writes the fixed flags 0010.
      return { cmd: "unsubscribe", messageId: packet.packetId, unsubscriptions: [...packet.topicFilters] }
    case "Unsuback":
      // mqtt-packet's type omits the id it reads and writes for UNSUBACK.
      return { cmd: "unsuback", messageId: packet.packetId } as MqttPacket.IUnsubackPacket
    case "Pingreq":
      return { cmd: "pingreq" }
    case "Pingresp":
      return { cmd: "pingresp" }
    case "Disconnect":
      return { cmd: "disconnect" }
  }
}

const varintLength = (n: number): number => (n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4)

const writeVarint = (target: Buffer, offset: number, n: number): number => {
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    target[offset++] = byte
  } while (n > 0)
  return offset
}

/**
 * The UTF-8 bytes of recent topic names: a publisher repeats a few topics, and copying their bytes is cheaper than
 * measuring and encoding each again. At most `TOPIC_BYTES_LIMIT` names, then it starts over.
 */
const topicBytesCache = new Map<string, Uint8Array>()

const TOPIC_BYTES_LIMIT = 256

const topicBytes = (topic: string): Uint8Array => {
  let bytes = topicBytesCache.get(topic)
  if (bytes === undefined) {
    // A buffer of its own, not a slice of Node's pool: a remembered name must not keep a pool slab alive.
    const encoded = Buffer.allocUnsafeSlow(Buffer.byteLength(topic))
    encoded.write(topic, 0, "utf8")
    bytes = encoded
    if (topicBytesCache.size >= TOPIC_BYTES_LIMIT) topicBytesCache.clear()
    topicBytesCache.set(topic, bytes)
  }
  return bytes
}

/**
 * PUBLISH, the per-message packet, written directly into one buffer: one allocation, one payload copy. Byte for byte
 * what `mqtt-packet` writes (the property tests compare both).
 */
const encodePublish = (packet: Packet.Publish): Buffer => {
  const topic = topicBytes(packet.topic)
  const topicLength = topic.length
  const payload = packet.payload
  const remaining = 2 + topicLength + (packet.qos > 0 ? 2 : 0) + payload.length
  const out = Buffer.allocUnsafe(1 + varintLength(remaining) + remaining)
  // [MQTT-3.3.1-1]: DUP as given (Validate keeps it 0 at QoS 0, [MQTT-3.3.1-2]); QoS 3 never reaches here.
  out[0] = 0x30 | (packet.dup ? 0x08 : 0) | (packet.qos << 1) | (packet.retain ? 0x01 : 0)
  let offset = writeVarint(out, 1, remaining)
  // [MQTT-3.3.2-1]: the topic name comes first, as a UTF-8 string.
  out[offset] = topicLength >> 8
  out[offset + 1] = topicLength & 0xff
  out.set(topic, offset + 2)
  offset += 2 + topicLength
  if (packet.qos > 0) {
    const id = packet.packetId!
    out[offset] = id >> 8
    out[offset + 1] = id & 0xff
    offset += 2
  }
  out.set(payload, offset)
  return out
}

/**
 * The bytes of a PUBLISH before its payload — fixed header, topic name, packet id — for writing a large payload as
 * its own chunk, without copying it. Validates the whole packet like `encode`.
 *
 * @since 0.1.0
 */
export const encodePublishHead = (packet: Packet.Publish): Result.Result<Uint8Array, MqttError.MqttError> => {
  const invalid = Validate.packet(packet)
  if (invalid !== undefined) return Result.fail(invalid)
  const topic = topicBytes(packet.topic)
  const topicLength = topic.length
  const idLength = packet.qos > 0 ? 2 : 0
  const remaining = 2 + topicLength + idLength + packet.payload.length
  const headLength = 1 + varintLength(remaining) + 2 + topicLength + idLength
  const out = Buffer.allocUnsafe(headLength)
  out[0] = 0x30 | (packet.dup ? 0x08 : 0) | (packet.qos << 1) | (packet.retain ? 0x01 : 0)
  let offset = writeVarint(out, 1, remaining)
  out[offset] = topicLength >> 8
  out[offset + 1] = topicLength & 0xff
  out.set(topic, offset + 2)
  offset += 2 + topicLength
  if (packet.qos > 0) {
    out[offset] = packet.packetId! >> 8
    out[offset + 1] = packet.packetId! & 0xff
  }
  return Result.succeed(out)
}

/** PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK: a type byte, length 2 and the packet id ([MQTT-2.3.1-6]). */
const encodeAck = (first: number, packetId: number): Buffer => {
  const out = Buffer.allocUnsafe(4)
  out[0] = first
  out[1] = 2
  out[2] = packetId >> 8
  out[3] = packetId & 0xff
  return out
}

/** A UTF-8 string (§1.5.3) or binary field (§3.1.3.4): a 2-byte length, then the bytes. */
const writeField = (target: Buffer, offset: number, field: string | Uint8Array, byteLength: number): number => {
  target[offset] = byteLength >> 8
  target[offset + 1] = byteLength & 0xff
  offset += 2
  if (typeof field === "string") return offset + target.write(field, offset, "utf8")
  target.set(field, offset)
  return offset + byteLength
}

const PROTOCOL_NAME = Uint8Array.of(0x00, 0x04, 0x4d, 0x51, 0x54, 0x54)

/**
 * CONNECT (§3.1), once per connection: protocol name "MQTT", level 4 [MQTT-3.1.2-1] [MQTT-3.1.2-2], the flags, the
 * keepalive, then client id, will topic and message, user name and password — each present exactly when its flag is
 * set ([MQTT-3.1.2-9], [MQTT-3.1.2-11], [MQTT-3.1.2-18]..[MQTT-3.1.2-21]) and in that order [MQTT-3.1.3-1]. The
 * reserved flag bit is 0 [MQTT-3.1.2-3].
 */
const encodeConnect = (packet: Packet.Connect): Buffer => {
  const clientIdLength = Buffer.byteLength(packet.clientId)
  const will = packet.will
  const willTopicLength = will === undefined ? 0 : Buffer.byteLength(will.topic)
  const usernameLength = packet.username === undefined ? 0 : Buffer.byteLength(packet.username)
  const remaining = 10 + 2 + clientIdLength +
    (will === undefined ? 0 : 4 + willTopicLength + will.payload.length) +
    (packet.username === undefined ? 0 : 2 + usernameLength) +
    (packet.password === undefined ? 0 : 2 + packet.password.length)
  const out = Buffer.allocUnsafe(1 + varintLength(remaining) + remaining)
  out[0] = 0x10
  let offset = writeVarint(out, 1, remaining)
  out.set(PROTOCOL_NAME, offset)
  offset += PROTOCOL_NAME.length
  out[offset++] = 4
  out[offset++] = (packet.username !== undefined ? 0x80 : 0) |
    (packet.password !== undefined ? 0x40 : 0) |
    (will !== undefined ? (will.retain ? 0x20 : 0) | (will.qos << 3) | 0x04 : 0) |
    (packet.cleanSession ? 0x02 : 0)
  out[offset++] = packet.keepalive >> 8
  out[offset++] = packet.keepalive & 0xff
  offset = writeField(out, offset, packet.clientId, clientIdLength)
  if (will !== undefined) {
    offset = writeField(out, offset, will.topic, willTopicLength)
    offset = writeField(out, offset, will.payload, will.payload.length)
  }
  if (packet.username !== undefined) offset = writeField(out, offset, packet.username, usernameLength)
  if (packet.password !== undefined) writeField(out, offset, packet.password, packet.password.length)
  return out
}

/**
 * SUBSCRIBE (§3.8) and UNSUBSCRIBE (§3.10): fixed flags 0010 ([MQTT-3.8.1-1], [MQTT-3.10.1-1]), the packet id, then
 * each topic filter (SUBSCRIBE: followed by its requested QoS).
 */
const encodeFilters = (
  first: number,
  packetId: number,
  topicFilters: ReadonlyArray<string>,
  qos?: ReadonlyArray<number>
): Buffer => {
  const lengths = topicFilters.map((filter) => Buffer.byteLength(filter))
  let remaining = 2
  for (const length of lengths) remaining += 2 + length + (qos === undefined ? 0 : 1)
  const out = Buffer.allocUnsafe(1 + varintLength(remaining) + remaining)
  out[0] = first
  let offset = writeVarint(out, 1, remaining)
  out[offset++] = packetId >> 8
  out[offset++] = packetId & 0xff
  for (let i = 0; i < topicFilters.length; i++) {
    offset = writeField(out, offset, topicFilters[i]!, lengths[i]!)
    if (qos !== undefined) out[offset++] = qos[i]!
  }
  return out
}

const PINGREQ = Uint8Array.of(0xc0, 0x00)
const PINGRESP = Uint8Array.of(0xd0, 0x00)
const DISCONNECT = Uint8Array.of(0xe0, 0x00)

/**
 * Validates and serialises one packet.
 *
 * **Details**: fails with the validation reason (`BadQos`, `InvalidTopic`, `BadUtf8String`, ...) for a packet MQTT
 * 3.1.1 does not allow; never throws. Every packet a client sends (CONNECT, PUBLISH, the acknowledgements, SUBSCRIBE,
 * UNSUBSCRIBE, the empty packets) is written here; CONNACK and SUBACK, which only fake brokers send, by `mqtt-packet`.
 *
 * **Gotchas**: the bytes of PINGREQ, PINGRESP and DISCONNECT are shared constants: do not write into them.
 *
 * @since 0.1.0
 */
export const encode = (packet: Packet.Packet): Result.Result<Uint8Array, MqttError.MqttError> => {
  const invalid = Validate.packet(packet)
  if (invalid !== undefined) return Result.fail(invalid)
  switch (packet._tag) {
    case "Publish":
      return Result.succeed(encodePublish(packet))
    case "Connect":
      return Result.succeed(encodeConnect(packet))
    case "Subscribe":
      return Result.succeed(
        encodeFilters(
          0x82,
          packet.packetId,
          packet.subscriptions.map((s) => s.topicFilter),
          packet.subscriptions.map((s) => s.qos)
        )
      )
    case "Unsubscribe":
      return Result.succeed(encodeFilters(0xa2, packet.packetId, packet.topicFilters))
    case "Puback":
      return Result.succeed(encodeAck(0x40, packet.packetId))
    case "Pubrec":
      return Result.succeed(encodeAck(0x50, packet.packetId))
    case "Pubrel":
      // [MQTT-3.6.1-1]: PUBREL's fixed-header flags are 0010.
      return Result.succeed(encodeAck(0x62, packet.packetId))
    case "Pubcomp":
      return Result.succeed(encodeAck(0x70, packet.packetId))
    case "Unsuback":
      return Result.succeed(encodeAck(0xb0, packet.packetId))
    case "Pingreq":
      return Result.succeed(PINGREQ)
    case "Pingresp":
      return Result.succeed(PINGRESP)
    case "Disconnect":
      return Result.succeed(DISCONNECT)
  }
  try {
    return Result.succeed(MqttPacket.generate(toWire(packet), protocolOptions))
  } catch (cause) {
    return Result.fail(
      MqttError.make(
        new MqttError.BadStructure({ field: "packet", value: packet._tag, detail: `cannot be encoded: ${String(cause)}` })
      )
    )
  }
}

/**
 * Serialises one packet with `mqtt-packet` alone, without validation: the reference the direct encoders are tested
 * against. Throws what `mqtt-packet` throws.
 *
 * @since 0.1.0
 */
export const encodeReference = (packet: Packet.Packet): Uint8Array => MqttPacket.generate(toWire(packet), protocolOptions)

/**
 * Options of a `Decoder`.
 *
 * @since 0.1.0
 */
export interface DecoderOptions {
  /**
   * The largest packet accepted, in bytes including the fixed header (default and maximum: `MAX_PACKET_SIZE`). A
   * larger packet fails the decoder as soon as its fixed header is read.
   */
  readonly maximumPacketSize?: number | undefined
}

const malformed = (detail: string): MqttError.MqttError => MqttError.make(new MqttError.MalformedPacket({ detail }))

/** Remaining lengths that a packet type must have exactly (§3.2, §3.4–§3.7, §3.11–§3.14). */
const fixedRemainingLength: Readonly<Record<number, number>> = {
  2: 2,
  4: 2,
  5: 2,
  6: 2,
  7: 2,
  11: 2,
  12: 0,
  13: 0,
  14: 0
}

/** A decode limit below 1 (or not a number) still decodes one packet: a caller must always be able to progress. */
const atLeastOne = (limit: number): number => (limit >= 1 ? limit : 1)

/** Whether `bytes[start, start + length)` are the characters of `ascii`, a string of ASCII characters only. */
const sameAscii = (bytes: Buffer, start: number, length: number, ascii: string): boolean => {
  if (ascii.length !== length || length === 0) return false
  for (let i = 0; i < length; i++) {
    if (bytes[start + i] !== ascii.charCodeAt(i)) return false
  }
  return true
}

/**
 * An incremental MQTT 3.1.1 decoder for one connection.
 *
 * **Gotchas**: after the first failure every `push` returns the same failure; make a new decoder for a new
 * connection.
 *
 * @since 0.1.0
 */
export class Decoder {
  readonly maximumPacketSize: number
  #failure: MqttError.MqttError | undefined = undefined
  /** Bytes of a fixed header split across chunks (at most 5). */
  #header = new Uint8Array(5)
  #headerLength = 0
  /**
   * A frame split across chunks: the pieces received so far (views, not copies), joined once complete. Memory held
   * follows the bytes actually received, never the length a header announces.
   */
  #parts: Array<Buffer> = []
  #partsLength = 0
  #frameLength = 0
  /**
   * Bytes received but not decoded yet because a call's `limit` was reached, in the order received (views, not
   * copies); the first continues where decoding stopped, which is always between two frames or inside a frame
   * already begun (`#parts`).
   */
  #undecoded: Array<Buffer> = []
  #undecodedLength = 0
  /**
   * The last PUBLISH topic that was all ASCII: a stream of messages mostly repeats a few topics, and bytes equal to
   * this one give back the same string, already checked, without decoding them again.
   */
  #lastTopic = ""
  /** mqtt-packet's parser, made on first use: a client only needs it for packets a server receives. */
  #parser: MqttPacket.Parser | undefined = undefined
  #parsed: MqttPacket.Packet | undefined = undefined
  #parseError: Error | undefined = undefined

  constructor(options: DecoderOptions = {}) {
    const maximum = options.maximumPacketSize
    this.maximumPacketSize = typeof maximum === "number" && Number.isFinite(maximum)
      ? Math.max(2, Math.min(MAX_PACKET_SIZE, Math.floor(maximum)))
      : MAX_PACKET_SIZE
  }

  /** The failure that finished this decoder, if any. */
  get failure(): MqttError.MqttError | undefined {
    return this.#failure
  }

  /** How many bytes of an incomplete packet are held. */
  get buffered(): number {
    return this.#frameLength > 0 ? this.#partsLength : this.#headerLength
  }

  /** How many received bytes a `limit` left to decode (see `next`). */
  get undecoded(): number {
    return this.#undecodedLength
  }

  /**
   * Feeds received bytes; returns the packets they complete, in order: all of them, or, with `limit`, no more than
   * `limit` (at least one when any is complete), keeping the bytes after the last one for `next`; with `limit` 0 it
   * only keeps the bytes.
   *
   * **Details**: when a chunk completes some packets and then holds a malformed one, the result is the failure; the
   * packets before it are dropped along with the connection. A limit keeps a burst of small packets from being turned
   * into objects all at once: bytes wait off the JavaScript heap until they are wanted.
   */
  push(chunk: Uint8Array, limit: number = Infinity): Result.Result<Array<Packet.Packet>, MqttError.MqttError> {
    if (this.#failure !== undefined) return Result.fail(this.#failure)
    const buffer = toBuffer(chunk)
    if (this.#undecoded.length > 0 || limit <= 0) {
      this.#undecoded.push(buffer)
      this.#undecodedLength += buffer.length
      return limit <= 0 ? Result.succeed([]) : this.next(limit)
    }
    const packets: Array<Packet.Packet> = []
    return this.#result(this.#consume(buffer, packets, atLeastOne(limit)), packets)
  }

  /** Decodes up to `limit` more packets (at least one when any is complete) from the bytes a limit left undecoded. */
  next(limit: number = Infinity): Result.Result<Array<Packet.Packet>, MqttError.MqttError> {
    if (this.#failure !== undefined) return Result.fail(this.#failure)
    const packets: Array<Packet.Packet> = []
    const max = atLeastOne(limit)
    while (this.#undecoded.length > 0 && packets.length < max) {
      const chunk = this.#undecoded.shift()!
      this.#undecodedLength -= chunk.length
      const failure = this.#consume(chunk, packets, max)
      if (failure !== undefined) return this.#result(failure, packets)
    }
    return Result.succeed(packets)
  }

  #result(
    failure: MqttError.MqttError | undefined,
    packets: Array<Packet.Packet>
  ): Result.Result<Array<Packet.Packet>, MqttError.MqttError> {
    if (failure === undefined) return Result.succeed(packets)
    this.#failure = failure
    this.#parts = []
    this.#partsLength = 0
    this.#frameLength = 0
    this.#headerLength = 0
    this.#undecoded = []
    this.#undecodedLength = 0
    return Result.fail(failure)
  }

  #consume(chunk: Buffer, packets: Array<Packet.Packet>, limit: number): MqttError.MqttError | undefined {
    let offset = 0
    const length = chunk.length
    // A frame begun in an earlier chunk.
    if (this.#frameLength > 0) {
      offset = this.#continueFrame(chunk, 0)
      if (this.#frameLength > 0) return undefined
      const failure = this.#decodeJoined(packets)
      if (failure !== undefined) return failure
    }
    // A fixed header begun in an earlier chunk: complete it byte by byte (at most 5 bytes).
    while (this.#headerLength > 0 && offset < length) {
      this.#header[this.#headerLength++] = chunk[offset++]!
      const header = readFixedHeader(this.#header, 0, this.#headerLength)
      if (header === undefined) continue
      if (typeof header === "string") return malformed(header)
      const frameLength = header.headerLength + header.remainingLength
      const tooLarge = this.#checkSize(frameLength)
      if (tooLarge !== undefined) return tooLarge
      this.#parts = [Buffer.from(this.#header.subarray(0, header.headerLength))]
      this.#partsLength = header.headerLength
      this.#frameLength = frameLength
      this.#headerLength = 0
      offset = this.#continueFrame(chunk, offset)
      if (this.#frameLength > 0) return undefined
      const failure = this.#decodeJoined(packets)
      if (failure !== undefined) return failure
    }
    // Whole frames inside this chunk: decoded in place, without copying.
    while (offset < length) {
      if (packets.length >= limit) {
        // The rest waits for `next`, ahead of anything pushed later.
        const rest = chunk.subarray(offset, length)
        this.#undecoded.unshift(rest)
        this.#undecodedLength += rest.length
        return undefined
      }
      const header = readFixedHeader(chunk, offset, length)
      if (header === undefined) {
        chunk.copy(this.#header, 0, offset, length)
        this.#headerLength = length - offset
        return undefined
      }
      if (typeof header === "string") return malformed(header)
      const frameLength = header.headerLength + header.remainingLength
      const tooLarge = this.#checkSize(frameLength)
      if (tooLarge !== undefined) return tooLarge
      if (offset + frameLength > length) {
        this.#parts = [chunk.subarray(offset, length)]
        this.#partsLength = length - offset
        this.#frameLength = frameLength
        return undefined
      }
      const failure = this.#decodeFrame(chunk, offset, header.headerLength, offset + frameLength, packets)
      if (failure !== undefined) return failure
      offset += frameLength
    }
    return undefined
  }

  /** Adds the bytes of `chunk` from `offset` that belong to the split frame; returns the offset after them. */
  #continueFrame(chunk: Buffer, offset: number): number {
    const take = Math.min(this.#frameLength - this.#partsLength, chunk.length - offset)
    if (take > 0) {
      this.#parts.push(chunk.subarray(offset, offset + take))
      this.#partsLength += take
    }
    if (this.#partsLength === this.#frameLength) this.#frameLength = 0
    return offset + take
  }

  /** The completed split frame, in one buffer (the only copy an incoming packet gets). */
  #joinFrame(): Buffer {
    const parts = this.#parts
    const frame = Buffer.concat(parts, this.#partsLength)
    this.#parts = []
    this.#partsLength = 0
    return frame
  }

  #checkSize(frameLength: number): MqttError.MqttError | undefined {
    return frameLength > this.maximumPacketSize
      ? malformed(`a packet of ${frameLength} bytes exceeds the maximum packet size of ${this.maximumPacketSize} bytes`)
      : undefined
  }

  /**
   * Reads the PUBLISH frame at `bytes[offset, end)` whose variable header starts at `body` (§3.3). The topic is
   * checked on its raw bytes: well-formed UTF-8 [MQTT-1.5.3-1], no U+0000 [MQTT-1.5.3-2], not empty [MQTT-4.7.3-1],
   * no wildcards [MQTT-3.3.2-2]; bytes equal to the last ASCII topic were checked then and give back its string. A
   * packet id is present and non-zero at QoS 1 and 2 [MQTT-2.3.1-1]. The payload is a view of the frame.
   */
  #decodePublish(bytes: Buffer, offset: number, body: number, end: number): Packet.Publish | string {
    const first = bytes[offset]!
    const qos = (first >> 1) & 0x03
    if (end < body + 2) return "PUBLISH too short for its topic length"
    const topicLength = (bytes[body]! << 8) | bytes[body + 1]!
    const start = body + 2
    const topicEnd = start + topicLength
    if (topicEnd > end) return "PUBLISH topic longer than the packet"
    let topic = this.#lastTopic
    if (!sameAscii(bytes, start, topicLength, topic)) {
      if (topicLength === 0) return "PUBLISH with an empty topic name"
      let ascii = true
      for (let i = start; i < topicEnd; i++) {
        const byte = bytes[i]!
        if (byte >= 0x80) ascii = false
        else if (byte === 0) return "PUBLISH topic name contains U+0000"
        else if (byte === 0x23 || byte === 0x2b) return "PUBLISH topic name contains a wildcard"
      }
      if (!ascii && !isUtf8(bytes.subarray(start, topicEnd))) return "PUBLISH topic name is not well-formed UTF-8"
      topic = bytes.toString(ascii ? "latin1" : "utf8", start, topicEnd)
      if (ascii) this.#lastTopic = topic
    }
    const retain = (first & 0x01) !== 0
    const dup = (first & 0x08) !== 0
    if (qos === 0) return { _tag: "Publish", topic, payload: bytes.subarray(topicEnd, end), qos, retain, dup }
    if (topicEnd + 2 > end) return "PUBLISH too short for its packet id"
    const packetId = (bytes[topicEnd]! << 8) | bytes[topicEnd + 1]!
    if (packetId === 0) return idProblem("PUBLISH", packetId)
    return {
      _tag: "Publish",
      topic,
      payload: bytes.subarray(topicEnd + 2, end),
      qos: qos as Packet.QoS,
      retain,
      dup,
      packetId
    }
  }

  /** Decodes the split frame just completed. */
  #decodeJoined(packets: Array<Packet.Packet>): MqttError.MqttError | undefined {
    const frame = this.#joinFrame()
    return this.#decodeFrame(frame, 0, remainingLengthBytes(frame) + 1, frame.length, packets)
  }

  /**
   * Decodes the frame at `bytes[offset, end)` whose fixed header is `headerLength` bytes long. The per-message
   * packets are read here, in place (no view of the frame is made); the rest by mqtt-packet.
   */
  #decodeFrame(
    bytes: Buffer,
    offset: number,
    headerLength: number,
    end: number,
    packets: Array<Packet.Packet>
  ): MqttError.MqttError | undefined {
    const type = bytes[offset]! >> 4
    // readFixedHeader already checked the flags and the lengths of fixed-size packets.
    const body = offset + headerLength
    switch (type) {
      case 3: {
        const publish = this.#decodePublish(bytes, offset, body, end)
        if (typeof publish === "string") return malformed(publish)
        packets.push(publish)
        return undefined
      }
      case 4:
      case 5:
      case 6:
      case 7:
      case 11: {
        // [MQTT-2.3.1-6]: the id of the packet acknowledged; never 0 [MQTT-2.3.1-1].
        const packetId = (bytes[body]! << 8) | bytes[body + 1]!
        if (packetId === 0) return malformed(idProblem(ackNames[type]!, packetId))
        packets.push({ _tag: ackTagsByType[type]!, packetId })
        return undefined
      }
      case 12:
        packets.push(Packet.pingreq)
        return undefined
      case 13:
        packets.push(Packet.pingresp)
        return undefined
      case 14:
        packets.push(Packet.disconnect)
        return undefined
      case 2: {
        // §3.2.2: bits 7-1 of the acknowledge flags are reserved (0); return codes above 5 are reserved.
        const flags = bytes[body]!
        const returnCode = bytes[body + 1]!
        if ((flags & 0xfe) !== 0) return malformed("CONNACK acknowledge flags bits 7-1 must be 0")
        if (returnCode > 5) return malformed(`CONNACK return code ${returnCode} is reserved`)
        packets.push({ _tag: "Connack", sessionPresent: (flags & 0x01) !== 0, returnCode })
        return undefined
      }
      case 9: {
        // §3.9: a packet id, then one return code per filter, each 0, 1, 2 or 0x80.
        if (end < body + 3) return malformed("SUBACK without return codes")
        const packetId = (bytes[body]! << 8) | bytes[body + 1]!
        if (packetId === 0) return malformed(idProblem("SUBACK", packetId))
        const returnCodes: Array<Packet.SubackReturnCode> = []
        for (let i = body + 2; i < end; i++) {
          const code = bytes[i]!
          if (code !== 0 && code !== 1 && code !== 2 && code !== 0x80) return malformed(`SUBACK return code ${code} is invalid`)
          returnCodes.push(code)
        }
        packets.push({ _tag: "Suback", packetId, returnCodes })
        return undefined
      }
    }
    this.#parsed = undefined
    this.#parseError = undefined
    if (this.#parser === undefined) {
      const parser = MqttPacket.parser(protocolOptions)
      parser.on("packet", (packet) => {
        this.#parsed = packet
      })
      parser.on("error", (error) => {
        this.#parseError = error
      })
      this.#parser = parser
    }
    try {
      this.#parser.parse(bytes.subarray(offset, end))
    } catch (cause) {
      return malformed(`packet type ${type}: ${String(cause)}`)
    }
    const parseError = this.#parseError as Error | undefined
    if (parseError !== undefined) return malformed(`packet type ${type}: ${parseError.message}`)
    const wire = this.#parsed
    if (wire === undefined) return malformed(`packet type ${type} could not be decoded`)
    const packet = fromWire(wire)
    if (typeof packet === "string") return malformed(packet)
    packets.push(packet)
    return undefined
  }
}


const ackTagsByType: ReadonlyArray<"Puback" | "Pubrec" | "Pubrel" | "Pubcomp" | "Unsuback" | undefined> = [
  undefined,
  undefined,
  undefined,
  undefined,
  "Puback",
  "Pubrec",
  "Pubrel",
  "Pubcomp",
  undefined,
  undefined,
  undefined,
  "Unsuback"
]

const ackNames: ReadonlyArray<string | undefined> = ackTagsByType.map((tag) => tag?.toUpperCase())

interface FixedHeader {
  readonly headerLength: number
  readonly remainingLength: number
}

/**
 * Reads the fixed header at `offset`: `undefined` when more bytes are needed, a string when it is malformed.
 * [MQTT-2.2.2-1] [MQTT-2.2.2-2]
 */
const readFixedHeader = (bytes: Uint8Array, offset: number, end: number): FixedHeader | string | undefined => {
  const first = bytes[offset]!
  const flagsProblem = checkFlags(first)
  if (flagsProblem !== undefined) return flagsProblem
  let multiplier = 1
  let value = 0
  for (let i = 1; i <= 4; i++) {
    if (offset + i >= end) return undefined
    const byte = bytes[offset + i]!
    value += (byte & 0x7f) * multiplier
    if ((byte & 0x80) === 0) {
      // A fixed-size packet with another length is refused from its header, before its body is awaited.
      const exact = fixedRemainingLength[first >> 4]
      if (exact !== undefined && value !== exact) {
        return `packet type ${first >> 4} must have a remaining length of ${exact}, not ${value}`
      }
      return { headerLength: 1 + i, remainingLength: value }
    }
    multiplier *= 128
  }
  return "remaining length longer than 4 bytes"
}

const remainingLengthBytes = (frame: Uint8Array): number => {
  let i = 1
  while ((frame[i]! & 0x80) !== 0) i++
  return i
}

/** Fixed-header flag rules of Table 2.2: [MQTT-2.2.2-1], [MQTT-3.3.1-4], [MQTT-3.6.1-1], [MQTT-3.8.1-1]. */
const checkFlags = (first: number): string | undefined => {
  const type = first >> 4
  const flags = first & 0x0f
  if (type === 0 || type === 15) return `reserved packet type ${type}`
  if (type === 3) return (flags & 0x06) === 0x06 ? "PUBLISH with QoS 3" : undefined
  const required = type === 6 || type === 8 || type === 10 ? 0x02 : 0x00
  return flags === required
    ? undefined
    : `packet type ${type} has flags 0x${flags.toString(16)}, not 0x${required.toString(16)}`
}

const validId = (id: number | undefined): id is number => id !== undefined && id >= 1 && id <= 65535

const idProblem = (tag: string, id: number | undefined): string =>
  `${tag} packet id ${String(id)} is not in 1..65535 [MQTT-2.3.1-1]`

const asQos = (qos: number): Packet.QoS | undefined => (qos === 0 || qos === 1 || qos === 2 ? qos : undefined)

/** Converts mqtt-packet's CONNECT, SUBSCRIBE and UNSUBSCRIBE to the model; a string names what is malformed. */
const fromWire = (wire: MqttPacket.Packet): Packet.Packet | string => {
  switch (wire.cmd) {
    case "connect": {
      // mqtt-packet reads a level of 0x80 + n as a "bridge" CONNECT of level n; MQTT 3.1.1 has no such thing.
      if (wire.protocolVersion !== 4 || wire.protocolId !== "MQTT" || (wire as { bridgeMode?: boolean }).bridgeMode === true) {
        return `CONNECT for protocol ${wire.protocolId} level ${wire.protocolVersion}, not MQTT level 4`
      }
      const connect: {
        -readonly [K in keyof Packet.Connect]: Packet.Connect[K]
      } = {
        _tag: "Connect",
        protocolLevel: 4,
        clientId: wire.clientId,
        cleanSession: wire.clean ?? true,
        keepalive: wire.keepalive ?? 0
      }
      if (wire.username !== undefined) connect.username = wire.username
      if (wire.password !== undefined) connect.password = wire.password
      if (wire.will !== undefined && wire.will !== null) {
        const qos = asQos(wire.will.qos ?? 0)
        if (qos === undefined) return "CONNECT with will QoS 3"
        const payload = typeof wire.will.payload === "string" ? Buffer.from(wire.will.payload) : wire.will.payload
        connect.will = { topic: wire.will.topic, payload, qos, retain: wire.will.retain === true }
      }
      return connect
    }
    case "subscribe": {
      if (!validId(wire.messageId)) return idProblem("SUBSCRIBE", wire.messageId)
      if (wire.subscriptions.length === 0) return "SUBSCRIBE without topic filters"
      const subscriptions: Array<Packet.Subscription> = []
      for (const s of wire.subscriptions) {
        const qos = asQos(s.qos)
        if (qos === undefined) return "SUBSCRIBE with QoS 3"
        subscriptions.push({ topicFilter: s.topic, qos })
      }
      return { _tag: "Subscribe", packetId: wire.messageId, subscriptions }
    }
    case "unsubscribe": {
      if (!validId(wire.messageId)) return idProblem("UNSUBSCRIBE", wire.messageId)
      if (wire.unsubscriptions.length === 0) return "UNSUBSCRIBE without topic filters"
      return { _tag: "Unsubscribe", packetId: wire.messageId, topicFilters: [...wire.unsubscriptions] }
    }
    default:
      // PUBLISH, the acknowledgements and the empty packets never reach mqtt-packet; AUTH is not MQTT 3.1.1.
      return `unexpected ${wire.cmd} packet`
  }
}
