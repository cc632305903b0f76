/**
 * Properties of `Codec.encode` and `Codec.Decoder` over arbitrary valid packets (`./arbitraries.ts`), arbitrary and
 * mutated bytes, oversize packets and arbitrary JavaScript values.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import * as fc from "fast-check"
import * as Codec from "../../src/Codec/Codec.ts"
import * as Packet from "../../src/Codec/Packet.ts"
import * as MqttError from "../../src/Errors/MqttError.ts"
import * as Arb from "./arbitraries.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

const encodeOk = (packet: Packet.Packet): Uint8Array => {
  const result = Codec.encode(packet)
  if (Result.isFailure(result)) {
    throw new Error(`encode failed for a valid packet: ${result.failure.message}`)
  }
  return result.success
}

type Outcome =
  | { readonly _tag: "Packets"; readonly packets: Array<Packet.Packet>; readonly buffered: number }
  | { readonly _tag: "Failed"; readonly error: MqttError.MqttError; readonly pushed: number }

/** Pushes the chunks in order; stops at the first failure, recording how many bytes had been pushed. */
const run = (chunks: ReadonlyArray<Uint8Array>, options?: Codec.DecoderOptions): Outcome => {
  const decoder = new Codec.Decoder(options)
  const packets: Array<Packet.Packet> = []
  let pushed = 0
  for (const chunk of chunks) {
    pushed += chunk.length
    const result = decoder.push(chunk)
    if (Result.isFailure(result)) return { _tag: "Failed", error: result.failure, pushed }
    packets.push(...result.success)
  }
  return { _tag: "Packets", packets, buffered: decoder.buffered }
}

/**
 * Like `run`, with a decode limit per call: each chunk is pushed with the next of `limits` (cycled), a `next` with the
 * following limit after it, and what is still undecoded at the end is drained with `next`. Checks on the way that no
 * call returns more packets than its limit (`push` with 0 returns none, `next` at least 1 is allowed) and that a
 * `next` on undecoded bytes always makes progress.
 */
const runLimited = (chunks: ReadonlyArray<Uint8Array>, limits: ReadonlyArray<number>): Outcome => {
  const decoder = new Codec.Decoder()
  const packets: Array<Packet.Packet> = []
  let pushed = 0
  let call = 0
  const limit = () => limits[call++ % limits.length]!
  const next = (max: number): MqttError.MqttError | undefined => {
    const before = decoder.undecoded
    const result = decoder.next(max)
    if (Result.isFailure(result)) return result.failure
    assert.isAtMost(result.success.length, Math.max(1, max))
    if (before > 0) assert.isTrue(result.success.length > 0 || decoder.undecoded < before, "next makes progress")
    packets.push(...result.success)
    return undefined
  }
  for (const chunk of chunks) {
    pushed += chunk.length
    const max = limit()
    const result = decoder.push(chunk, max)
    if (Result.isFailure(result)) return { _tag: "Failed", error: result.failure, pushed }
    assert.isAtMost(result.success.length, Math.max(0, max))
    packets.push(...result.success)
    const failure = next(limit())
    if (failure !== undefined) return { _tag: "Failed", error: failure, pushed }
  }
  while (decoder.undecoded > 0) {
    const failure = next(limit())
    if (failure !== undefined) return { _tag: "Failed", error: failure, pushed }
  }
  return { _tag: "Packets", packets, buffered: decoder.buffered }
}

/** Decode limits for `runLimited`: 0 (keep the bytes), small, and none. */
const limits = fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4 }), fc.constant(Infinity)), {
  minLength: 1,
  maxLength: 6
})

/** Splits `bytes` at the given cut points (any numbers; reduced modulo the length and sorted). */
const split = (bytes: Uint8Array, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const chunks: Array<Uint8Array> = []
  let start = 0
  for (const point of points) {
    chunks.push(bytes.subarray(start, point))
    start = point
  }
  chunks.push(bytes.subarray(start))
  return chunks
}

const assertPackets = (outcome: Outcome, expected: ReadonlyArray<Packet.Packet>): void => {
  if (outcome._tag === "Failed") assert.fail(`decode failed: ${outcome.error.message}`)
  assert.deepStrictEqual(Arb.comparable(outcome.packets), Arb.comparable(expected))
  assert.strictEqual(outcome.buffered, 0)
}

/** Either packets, or a MalformedPacket failure: never another reason. */
const assertPacketsOrMalformed = (outcome: Outcome): void => {
  if (outcome._tag === "Failed") {
    assert.isTrue(MqttError.isMqttError(outcome.error))
    assert.strictEqual(outcome.error.reason._tag, "MalformedPacket", outcome.error.message)
  }
}

/** Decodes without ever letting an exception escape the property (an exception fails the property). */
const runBoth = (bytes: Uint8Array, cuts: ReadonlyArray<number>): readonly [Outcome, Outcome] => [
  run([bytes]),
  run(split(bytes, cuts))
]

const remainingLengthBytes = (value: number): Array<number> => {
  const out: Array<number> = []
  do {
    let byte = value % 128
    value = Math.floor(value / 128)
    if (value > 0) byte |= 0x80
    out.push(byte)
  } while (value > 0)
  return out
}

const MAX_REMAINING_LENGTH = 268_435_455

const tags = Object.keys(Arb.byTag) as ReadonlyArray<Packet.PacketTag>

const cuts = fc.array(fc.nat(), { maxLength: 12 })

// ---------------------------------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------------------------------

describe("Codec properties", () => {
  describe("decode(encode(p)) deep-equals p for valid packets", () => {
    for (const tag of tags) {
      it(`${tag}`, () => {
        fc.assert(
          fc.property(Arb.byTag[tag] as fc.Arbitrary<Packet.Packet>, (packet) => {
            assertPackets(run([encodeOk(packet)]), [packet])
          }),
          { numRuns: 300 }
        )
      })
    }

    it("any packet type", () => {
      fc.assert(
        fc.property(Arb.packet, (packet) => {
          assertPackets(run([encodeOk(packet)]), [packet])
        }),
        { numRuns: 1000 }
      )
    })

    it("the encoded fixed header is well formed: type, Table 2.2 flags, exact remaining length", () => {
      fc.assert(
        fc.property(Arb.packet, (packet) => {
          const bytes = encodeOk(packet)
          const type = bytes[0]! >> 4
          const flags = bytes[0]! & 0x0f
          assert.strictEqual(type, Packet.packetType[packet._tag])
          if (packet._tag === "Publish") {
            // [MQTT-3.3.1-2] DUP 0 at QoS 0; [MQTT-3.3.1-4] never QoS 3
            assert.strictEqual(flags, (packet.dup ? 8 : 0) | (packet.qos << 1) | (packet.retain ? 1 : 0))
          } else {
            // [MQTT-2.2.2-1] [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]
            assert.strictEqual(flags, type === 6 || type === 8 || type === 10 ? 2 : 0)
          }
          let length = 0
          let multiplier = 1
          let i = 1
          for (; ; i++) {
            length += (bytes[i]! & 0x7f) * multiplier
            multiplier *= 128
            if ((bytes[i]! & 0x80) === 0) break
          }
          assert.strictEqual(bytes.length, i + 1 + length)
          // the shortest encoding (§2.2.3)
          assert.deepStrictEqual(Array.from(bytes.subarray(1, i + 1)), remainingLengthBytes(length))
        }),
        { numRuns: 500 }
      )
    })

    it("encode is deterministic and does not modify the packet", () => {
      fc.assert(
        fc.property(Arb.packet, (packet) => {
          const before = Arb.comparable(packet)
          const a = encodeOk(packet)
          const b = encodeOk(packet)
          assert.strictEqual(Arb.toHex(a), Arb.toHex(b))
          assert.deepStrictEqual(Arb.comparable(packet), before)
        }),
        { numRuns: 200 }
      )
    })

    it("several packets concatenated and re-chunked at arbitrary boundaries", () => {
      fc.assert(
        fc.property(fc.array(Arb.packet, { minLength: 1, maxLength: 8 }), cuts, (packets, points) => {
          const bytes = Arb.concat(packets.map(encodeOk))
          assertPackets(run(split(bytes, points)), packets)
        }),
        { numRuns: 500 }
      )
    })

    it("decode limits (Connection's batches of a large read) change neither the packets nor their order", () => {
      fc.assert(
        fc.property(fc.array(Arb.packet, { minLength: 1, maxLength: 12 }), cuts, limits, (packets, points, max) => {
          const bytes = Arb.concat(packets.map(encodeOk))
          assertPackets(runLimited(split(bytes, points), max), packets)
        }),
        { numRuns: 500 }
      )
    })

    it("several packets pushed one byte at a time", () => {
      fc.assert(
        fc.property(fc.array(Arb.serverPacket, { minLength: 1, maxLength: 4 }), (packets) => {
          const bytes = Arb.concat(packets.map(encodeOk))
          const chunks = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1))
          assertPackets(run(chunks), packets)
        }),
        { numRuns: 200 }
      )
    })

    it("a decoder accepts a packet of exactly maximumPacketSize bytes and rejects it one byte below", () => {
      fc.assert(
        fc.property(Arb.packet, (packet) => {
          const bytes = encodeOk(packet)
          assertPackets(run([bytes], { maximumPacketSize: bytes.length }), [packet])
          if (bytes.length > 2) {
            const outcome = run([bytes], { maximumPacketSize: bytes.length - 1 })
            assert.strictEqual(outcome._tag, "Failed")
            assertPacketsOrMalformed(outcome)
          }
        }),
        { numRuns: 300 }
      )
    })
  })

  // -------------------------------------------------------------------------------------------------------------------
  // Arbitrary and mutated bytes
  // -------------------------------------------------------------------------------------------------------------------

  describe("the decoder on arbitrary bytes", () => {
    it("never throws; decodes or fails with MalformedPacket; chunking does not change the outcome", () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 512 }), cuts, (bytes, points) => {
          const [whole, chunked] = runBoth(bytes, points)
          assertPacketsOrMalformed(whole)
          assertPacketsOrMalformed(chunked)
          assert.strictEqual(whole._tag, chunked._tag)
          if (whole._tag === "Packets" && chunked._tag === "Packets") {
            assert.deepStrictEqual(Arb.comparable(chunked.packets), Arb.comparable(whole.packets))
            assert.strictEqual(chunked.buffered, whole.buffered)
          }
        }),
        { numRuns: 500 }
      )
    })

    it("with decode limits: the same outcome, the failure only once the bytes before it are decoded", () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 512 }), cuts, limits, (bytes, points, max) => {
          const whole = run([bytes])
          const limited = runLimited(split(bytes, points), max)
          assertPacketsOrMalformed(limited)
          assert.strictEqual(limited._tag, whole._tag)
          if (whole._tag === "Packets" && limited._tag === "Packets") {
            assert.deepStrictEqual(Arb.comparable(limited.packets), Arb.comparable(whole.packets))
            assert.strictEqual(limited.buffered, whole.buffered)
          }
          if (whole._tag === "Failed" && limited._tag === "Failed") {
            assert.strictEqual(limited.error.message, whole.error.message)
          }
        }),
        { numRuns: 2000 }
      )
    })

    it("bytes that start like a packet (valid first byte, short remaining length)", () => {
      const firstByte = fc.oneof(
        fc.constantFrom(0x10, 0x20, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xa2, 0xb0, 0xc0, 0xd0, 0xe0),
        fc.integer({ min: 0x30, max: 0x3f })
      )
      const frame = fc
        .tuple(firstByte, fc.uint8Array({ maxLength: 127 }))
        .map(([first, body]) => Arb.concat([new Uint8Array([first, body.length]), body]))
      fc.assert(
        fc.property(fc.array(frame, { minLength: 1, maxLength: 4 }), cuts, (frames, points) => {
          const [whole, chunked] = runBoth(Arb.concat(frames), points)
          assertPacketsOrMalformed(whole)
          assertPacketsOrMalformed(chunked)
          assert.strictEqual(whole._tag, chunked._tag)
        }),
        { numRuns: 2000 }
      )
    })

    it("valid packets with random byte mutations", () => {
      const mutation = fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }))
      fc.assert(
        fc.property(
          fc.array(Arb.packet, { minLength: 1, maxLength: 4 }),
          fc.array(mutation, { minLength: 1, maxLength: 4 }),
          cuts,
          (packets, mutations, points) => {
            const bytes = Arb.concat(packets.map(encodeOk))
            for (const [index, value] of mutations) bytes[index % bytes.length] = value
            const [whole, chunked] = runBoth(bytes, points)
            assertPacketsOrMalformed(whole)
            assertPacketsOrMalformed(chunked)
            assert.strictEqual(whole._tag, chunked._tag)
          }
        ),
        { numRuns: 1000 }
      )
    })

    it("valid packets truncated or with bytes inserted or removed", () => {
      fc.assert(
        fc.property(
          fc.array(Arb.packet, { minLength: 1, maxLength: 4 }),
          fc.nat(),
          fc.nat({ max: 8 }),
          fc.uint8Array({ maxLength: 8 }),
          (packets, at, remove, insert) => {
            const bytes = Arb.concat(packets.map(encodeOk))
            const i = at % (bytes.length + 1)
            const tail = bytes.subarray(Math.min(bytes.length, i + remove))
            const edited = Arb.concat([bytes.subarray(0, i), insert, tail])
            assertPacketsOrMalformed(run([edited]))
          }
        ),
        { numRuns: 1000 }
      )
    })

    it("after any failure, every later push fails with the same error", () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 1, maxLength: 256 }), fc.uint8Array({ maxLength: 64 }), (bad, later) => {
          const decoder = new Codec.Decoder()
          const first = decoder.push(bad)
          if (Result.isSuccess(first)) return
          const again = decoder.push(later)
          assert.isTrue(Result.isFailure(again))
          assert.strictEqual((again as Result.Failure<unknown, MqttError.MqttError>).failure, first.failure)
        }),
        { numRuns: 500 }
      )
    })
  })

  // -------------------------------------------------------------------------------------------------------------------
  // Oversize packets
  // -------------------------------------------------------------------------------------------------------------------

  describe("oversize packets", () => {
    it("are rejected from their fixed header: at most 5 bytes pushed, one at a time or at once", () => {
      const firstByte = fc.oneof(
        fc.constantFrom(0x10, 0x20, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xa2, 0xb0, 0xc0, 0xd0, 0xe0),
        fc.integer({ min: 0x30, max: 0x35 }),
        fc.integer({ min: 0x38, max: 0x3d })
      )
      const scenario = fc
        .integer({ min: 2, max: 10_000_000 })
        .chain((maximumPacketSize) =>
          fc.tuple(
            fc.constant(maximumPacketSize),
            firstByte,
            // any remaining length that makes the frame (at least 2 header bytes) larger than the maximum
            fc.integer({ min: Math.max(0, maximumPacketSize - 1), max: MAX_REMAINING_LENGTH }),
            fc.uint8Array({ maxLength: 64 })
          )
        )
      fc.assert(
        fc.property(scenario, ([maximumPacketSize, first, remainingLength, body]) => {
          const header = new Uint8Array([first, ...remainingLengthBytes(remainingLength)])
          assert.isAbove(header.length + remainingLength, maximumPacketSize)
          // one byte at a time: the failure comes no later than the last header byte
          const bytes = Arb.concat([header, body])
          const byteByByte = run(
            Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1)),
            { maximumPacketSize }
          )
          assert.strictEqual(byteByByte._tag, "Failed")
          assertPacketsOrMalformed(byteByByte)
          assert.isAtMost((byteByByte as { pushed: number }).pushed, Math.min(5, header.length))
          // the header alone, in one chunk
          const headerOnly = run([header], { maximumPacketSize })
          assert.strictEqual(headerOnly._tag, "Failed")
          assertPacketsOrMalformed(headerOnly)
        }),
        { numRuns: 1000 }
      )
    })

    it("valid packets over a random maximum are rejected before their body", () => {
      fc.assert(
        fc.property(Arb.packet, fc.integer({ min: 2, max: 5000 }), (packet, maximumPacketSize) => {
          const bytes = encodeOk(packet)
          let headerLength = 2
          while ((bytes[headerLength - 1]! & 0x80) !== 0) headerLength++
          const outcome = run(
            Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1)),
            { maximumPacketSize }
          )
          if (bytes.length <= maximumPacketSize) {
            assertPackets(outcome, [packet])
          } else {
            assert.strictEqual(outcome._tag, "Failed")
            assertPacketsOrMalformed(outcome)
            assert.strictEqual((outcome as { pushed: number }).pushed, headerLength)
          }
        }),
        { numRuns: 500 }
      )
    })
  })

  // -------------------------------------------------------------------------------------------------------------------
  // encode on arbitrary values
  // -------------------------------------------------------------------------------------------------------------------

  describe("encode on arbitrary values", () => {
    const anything = fc.anything({
      withBigInt: true,
      withBoxedValues: true,
      withDate: true,
      withMap: true,
      withNullPrototype: true,
      withObjectString: true,
      withSet: true,
      withSparseArray: true,
      withTypedArray: true
    })

    const assertFailsOnlyWithMqttError = (value: unknown): void => {
      let result: Result.Result<Uint8Array, MqttError.MqttError>
      try {
        result = Codec.encode(value as Packet.Packet)
      } catch (cause) {
        return assert.fail(`encode threw: ${String(cause)}`)
      }
      if (Result.isFailure(result)) {
        assert.isTrue(MqttError.isMqttError(result.failure), "fails with MqttError")
        assert.isString(result.failure.message)
      } else {
        assert.instanceOf(result.success, Uint8Array)
      }
    }

    it("never throws on fc.anything() and fails only with MqttError", () => {
      fc.assert(fc.property(anything, assertFailsOnlyWithMqttError), { numRuns: 2000 })
    })

    it("never throws on an object with a valid _tag and arbitrary fields", () => {
      const value = fc
        .tuple(fc.constantFrom(...tags), fc.dictionary(fc.string(), anything, { maxKeys: 6 }))
        .map(([tag, fields]) => ({ ...fields, _tag: tag }))
      fc.assert(fc.property(value, assertFailsOnlyWithMqttError), { numRuns: 2000 })
    })

    it("never throws on a valid packet with one field replaced by an arbitrary value", () => {
      const value = fc
        .tuple(Arb.packet, fc.nat(), anything, fc.string())
        .map(([packet, index, replacement, extraKey]) => {
          const keys = [...Object.keys(packet), "packetId", "payload", "will", "password", "username", extraKey]
          const key = keys[index % keys.length]!
          return { ...packet, [key]: replacement }
        })
      fc.assert(fc.property(value, assertFailsOnlyWithMqttError), { numRuns: 2000 })
    })

    it("never throws on a valid packet with a nested field (will, subscription, filter, code) replaced", () => {
      const value = fc.tuple(Arb.packet, anything, fc.nat()).map(([packet, replacement, index]): unknown => {
        switch (packet._tag) {
          case "Connect": {
            const will = packet.will ?? { topic: "w", payload: new Uint8Array(0), qos: 0, retain: false }
            const keys = ["topic", "payload", "qos", "retain"] as const
            return { ...packet, will: { ...will, [keys[index % keys.length]!]: replacement } }
          }
          case "Subscribe": {
            const subscriptions: Array<unknown> = [...packet.subscriptions]
            const i = index % subscriptions.length
            const keys = ["topicFilter", "qos"] as const
            subscriptions[i] =
              index % 3 === 0 ? replacement : { ...packet.subscriptions[i]!, [keys[index % keys.length]!]: replacement }
            return { ...packet, subscriptions }
          }
          case "Unsubscribe": {
            const topicFilters: Array<unknown> = [...packet.topicFilters]
            topicFilters[index % topicFilters.length] = replacement
            return { ...packet, topicFilters }
          }
          case "Suback": {
            const returnCodes: Array<unknown> = [...packet.returnCodes]
            returnCodes[index % returnCodes.length] = replacement
            return { ...packet, returnCodes }
          }
          default:
            return packet
        }
      })
      fc.assert(fc.property(value, assertFailsOnlyWithMqttError), { numRuns: 2000 })
    })

    it("whatever encode accepts, the decoder decodes back without failure", () => {
      // Values that pass validation by accident (e.g. a Buffer payload, extra fields) must still be well-formed bytes.
      const value = fc
        .tuple(Arb.packet, fc.nat(), anything)
        .map(([packet, index, replacement]) => {
          const keys = Object.keys(packet)
          return { ...packet, [keys[index % keys.length]!]: replacement }
        })
      fc.assert(
        fc.property(value, (candidate) => {
          const result = Codec.encode(candidate as Packet.Packet)
          if (Result.isFailure(result)) return
          const outcome = run([result.success])
          if (outcome._tag === "Failed") {
            assert.fail(`encode accepted what the decoder rejects: ${outcome.error.message}`)
          }
          assert.strictEqual(outcome.packets.length, 1)
        }),
        { numRuns: 2000 }
      )
    })
  })
})

describe("Codec against mqtt-packet (differential)", () => {
  it("the direct encoders write exactly what mqtt-packet writes, for every valid packet", () => {
    fc.assert(
      fc.property(Arb.packet, (packet) => {
        const ours = Codec.encode(packet)
        assert.isTrue(Result.isSuccess(ours))
        if (Result.isSuccess(ours)) assert.strictEqual(Arb.toHex(ours.success), Arb.toHex(Codec.encodeReference(packet)))
        // Again: a PUBLISH's topic bytes now come from the encoder's remembered names.
        const again = Codec.encode(packet)
        if (Result.isSuccess(again)) assert.strictEqual(Arb.toHex(again.success), Arb.toHex(Codec.encodeReference(packet)))
      }),
      { numRuns: 1000 }
    )
  })

  it("a header announcing a huge packet holds only the bytes received, not the announced length", () => {
    const decoder = new Codec.Decoder()
    // PUBLISH announcing 268,435,455 bytes, followed by 10 bytes of its body.
    const result = decoder.push(Uint8Array.of(0x30, 0xff, 0xff, 0xff, 0x7f, 0, 3, 0x61, 0x2f, 0x62, 1, 2, 3, 4, 5))
    assert.isTrue(Result.isSuccess(result))
    assert.strictEqual(decoder.buffered, 15)
  })
})
