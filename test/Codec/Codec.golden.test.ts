/**
 * Golden byte fixtures for `Codec.encode` and `Codec.Decoder`, and the decoder's robustness against bytes a broker
 * must never send.
 *
 * Every fixture was computed by hand from the OASIS MQTT 3.1.1 standard — §2.2 fixed header (Table 2.2 flags),
 * §2.2.3 remaining length, §3 each packet's variable header and payload — never produced by running the encoder. The
 * bytes are written as `fixed header | variable header | payload` groups; `|` and spaces are ignored.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import * as Codec from "../../src/Codec/Codec.ts"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as MqttError from "../../src/Errors/MqttError.ts"
import { comparable, concat, fromHex, toHex } from "./arbitraries.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

const bytesOf = (text: string): Uint8Array => new TextEncoder().encode(text)

/** n bytes 0, 1, ..., 255, 0, 1, ... */
const pattern = (n: number): Uint8Array => {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = i & 0xff
  return out
}

const encodeOk = (packet: Packet.Packet): Uint8Array => {
  const result = Codec.encode(packet)
  if (Result.isFailure(result)) assert.fail(`encode failed: ${result.failure.message}`)
  return result.success
}

/** Decodes `chunks` with one decoder; fails the test on a decoder failure. */
const decodeOk = (chunks: ReadonlyArray<Uint8Array>, options?: Codec.DecoderOptions): Array<Packet.Packet> => {
  const decoder = new Codec.Decoder(options)
  const packets: Array<Packet.Packet> = []
  for (const chunk of chunks) {
    const result = decoder.push(chunk)
    if (Result.isFailure(result)) assert.fail(`decode failed: ${result.failure.message}`)
    packets.push(...result.success)
  }
  assert.strictEqual(decoder.buffered, 0, "no bytes left over")
  return packets
}

/** Pushes `chunks` in order and returns the decoder's failure, asserting it is a MalformedPacket. */
const decodeMalformed = (
  chunks: ReadonlyArray<Uint8Array>,
  options?: Codec.DecoderOptions
): MqttError.MqttError => {
  const decoder = new Codec.Decoder(options)
  for (const chunk of chunks) {
    const result = decoder.push(chunk)
    if (Result.isFailure(result)) {
      assert.strictEqual(result.failure.reason._tag, "MalformedPacket", result.failure.message)
      return result.failure
    }
  }
  return assert.fail("the decoder accepted malformed bytes")
}

const malformedHex = (hex: string, options?: Codec.DecoderOptions): MqttError.MqttError =>
  decodeMalformed([fromHex(hex)], options)

const assertSamePackets = (actual: ReadonlyArray<Packet.Packet>, expected: ReadonlyArray<Packet.Packet>): void => {
  assert.deepStrictEqual(comparable(actual), comparable(expected))
}

/** Encodes a remaining length as §2.2.3 describes (only for building headers in tests, checked by the fixtures). */
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

// ---------------------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------------------

interface Fixture {
  readonly name: string
  readonly hex: string
  readonly packet: Packet.Packet
}

/** The CONNECT variable header up to the flags: protocol name "MQTT" (§3.1.2.1) and level 4 (§3.1.2.2). */
const MQTT4 = "00 04 4d 51 54 54 04"

const connect = (fields: Omit<Packet.Connect, "_tag" | "protocolLevel">): Packet.Connect => ({
  _tag: "Connect",
  protocolLevel: 4,
  ...fields
})

const willMessage = bytesOf("bye")

/** CONNECT client "a", clean session, keepalive 60, will "w"/"bye": only the flags byte changes. */
const willFixture = (qos: Packet.QoS, retain: boolean, flags: string): Fixture => ({
  name: `CONNECT with a will at QoS ${qos}${retain ? ", retained" : ""} (flags ${flags})`,
  // flags: will flag 0x04, will QoS << 3, will retain 0x20, clean 0x02; payload ClientId, Will Topic, Will Message
  hex: `10 15 | ${MQTT4} ${flags} 00 3c | 00 01 61 | 00 01 77 | 00 03 62 79 65`,
  packet: connect({
    clientId: "a",
    cleanSession: true,
    keepalive: 60,
    will: { topic: "w", payload: willMessage, qos, retain }
  })
})

const connectFixtures: ReadonlyArray<Fixture> = [
  {
    name: "CONNECT minimal: client id 'a', clean session, keepalive 60",
    // remaining 13 = 10 (variable header) + 3 (client id); flags 0x02 = clean session only, reserved bit 0 is 0
    hex: `10 0d | ${MQTT4} 02 00 3c | 00 01 61`,
    packet: connect({ clientId: "a", cleanSession: true, keepalive: 60 })
  },
  {
    name: "CONNECT with an empty client id and a clean session [MQTT-3.1.3-7]",
    hex: `10 0c | ${MQTT4} 02 00 3c | 00 00`,
    packet: connect({ clientId: "", cleanSession: true, keepalive: 60 })
  },
  {
    name: "CONNECT persistent session: client id 'client-1', clean session 0, keepalive 30",
    hex: `10 14 | ${MQTT4} 00 00 1e | 00 08 63 6c 69 65 6e 74 2d 31`,
    packet: connect({ clientId: "client-1", cleanSession: false, keepalive: 30 })
  },
  {
    name: "CONNECT keepalive 0 (keepalive off)",
    hex: `10 0d | ${MQTT4} 02 00 00 | 00 01 61`,
    packet: connect({ clientId: "a", cleanSession: true, keepalive: 0 })
  },
  {
    name: "CONNECT keepalive 65535",
    hex: `10 0d | ${MQTT4} 02 ff ff | 00 01 61`,
    packet: connect({ clientId: "a", cleanSession: true, keepalive: 65535 })
  },
  {
    name: "CONNECT with a user name only (flags 0x82) [MQTT-3.1.2-19] [MQTT-3.1.2-20]",
    hex: `10 13 | ${MQTT4} 82 00 3c | 00 01 61 | 00 04 75 73 65 72`,
    packet: connect({ clientId: "a", cleanSession: true, keepalive: 60, username: "user" })
  },
  {
    name: "CONNECT with a user name and a binary password (flags 0xc2) [MQTT-3.1.2-21]",
    hex: `10 1a | ${MQTT4} c2 00 3c | 00 01 61 | 00 04 75 73 65 72 | 00 05 73 65 63 00 ff`,
    packet: connect({
      clientId: "a",
      cleanSession: true,
      keepalive: 60,
      username: "user",
      password: new Uint8Array([0x73, 0x65, 0x63, 0x00, 0xff])
    })
  },
  {
    name: "CONNECT with an empty user name and an empty password (flags 0xc2)",
    hex: `10 11 | ${MQTT4} c2 00 3c | 00 01 61 | 00 00 | 00 00`,
    packet: connect({ clientId: "a", cleanSession: true, keepalive: 60, username: "", password: new Uint8Array(0) })
  },
  willFixture(0, false, "06"),
  willFixture(0, true, "26"),
  willFixture(1, false, "0e"),
  willFixture(1, true, "2e"),
  willFixture(2, false, "16"),
  willFixture(2, true, "36"),
  {
    name: "CONNECT with a will whose message is empty",
    hex: `10 12 | ${MQTT4} 06 00 3c | 00 01 61 | 00 01 77 | 00 00`,
    packet: connect({
      clientId: "a",
      cleanSession: true,
      keepalive: 60,
      will: { topic: "w", payload: new Uint8Array(0), qos: 0, retain: false }
    })
  },
  {
    // flags 0xec = 1110 1100: user name 1, password 1, will retain 1, will QoS 01, will flag 1, clean 0, reserved 0
    // payload in the order ClientId, Will Topic, Will Message, User Name, Password [MQTT-3.1.3-1]
    name: "CONNECT with everything: persistent, will QoS 1 retained, multibyte will topic and user name [MQTT-3.1.3-1]",
    hex:
      `10 25 | ${MQTT4} ec 01 2c | 00 03 63 69 64 | 00 08 64 65 61 64 2f e2 82 ac | 00 02 00 01 | 00 02 c3 bc | ` +
      `00 02 70 77`,
    packet: connect({
      clientId: "cid",
      cleanSession: false,
      keepalive: 300,
      username: "ü",
      password: bytesOf("pw"),
      will: { topic: "dead/€", payload: new Uint8Array([0x00, 0x01]), qos: 1, retain: true }
    })
  },
  {
    // flags 0xf6 = 1111 0110: user name, password, will retain, will QoS 10, will flag, clean, reserved 0
    name: "CONNECT with everything: clean, will QoS 2 retained (flags 0xf6)",
    hex: `10 19 | ${MQTT4} f6 00 0a | 00 01 78 | 00 01 74 | 00 01 6d | 00 01 75 | 00 01 70`,
    packet: connect({
      clientId: "x",
      cleanSession: true,
      keepalive: 10,
      username: "u",
      password: bytesOf("p"),
      will: { topic: "t", payload: bytesOf("m"), qos: 2, retain: true }
    })
  }
]

const connackFixtures: ReadonlyArray<Fixture> = [
  {
    name: "CONNACK accepted, no session",
    hex: "20 02 00 00",
    packet: { _tag: "Connack", sessionPresent: false, returnCode: 0 }
  },
  {
    name: "CONNACK accepted, session present",
    hex: "20 02 01 00",
    packet: { _tag: "Connack", sessionPresent: true, returnCode: 0 }
  },
  ...[1, 2, 3, 4, 5].map((returnCode): Fixture => ({
    name: `CONNACK refused with return code ${returnCode}`,
    hex: `20 02 00 0${returnCode}`,
    packet: { _tag: "Connack", sessionPresent: false, returnCode }
  }))
]

const hi = bytesOf("hi")

const publishFixtures: ReadonlyArray<Fixture> = [
  {
    name: "PUBLISH QoS 0 (0x30): no packet id [MQTT-2.3.1-5]",
    hex: "30 07 | 00 03 61 2f 62 | 68 69",
    packet: { _tag: "Publish", topic: "a/b", payload: hi, qos: 0, retain: false, dup: false }
  },
  {
    name: "PUBLISH QoS 0 retained (0x31)",
    hex: "31 07 | 00 03 61 2f 62 | 68 69",
    packet: { _tag: "Publish", topic: "a/b", payload: hi, qos: 0, retain: true, dup: false }
  },
  {
    name: "PUBLISH QoS 1 (0x32) packet id 1",
    hex: "32 09 | 00 03 61 2f 62 00 01 | 68 69",
    packet: { _tag: "Publish", topic: "a/b", payload: hi, qos: 1, retain: false, dup: false, packetId: 1 }
  },
  {
    name: "PUBLISH QoS 1 retained (0x33)",
    hex: "33 09 | 00 03 61 2f 62 00 02 | 68 69",
    packet: { _tag: "Publish", topic: "a/b", payload: hi, qos: 1, retain: true, dup: false, packetId: 2 }
  },
  {
    name: "PUBLISH QoS 1 DUP (0x3a) packet id 0x1234 [MQTT-3.3.1-1]",
    hex: "3a 09 | 00 03 61 2f 62 12 34 | 68 69",
    packet: { _tag: "Publish", topic: "a/b", payload: hi, qos: 1, retain: false, dup: true, packetId: 0x1234 }
  },
  {
    name: "PUBLISH QoS 1 DUP retained (0x3b)",
    hex: "3b 09 | 00 03 61 2f 62 00 03 | 68 69",
    packet: { _tag: "Publish", topic: "a/b", payload: hi, qos: 1, retain: true, dup: true, packetId: 3 }
  },
  {
    name: "PUBLISH QoS 2 (0x34)",
    hex: "34 09 | 00 03 61 2f 62 01 00 | 68 69",
    packet: { _tag: "Publish", topic: "a/b", payload: hi, qos: 2, retain: false, dup: false, packetId: 256 }
  },
  {
    name: "PUBLISH QoS 2 retained (0x35) packet id 65535",
    hex: "35 09 | 00 03 61 2f 62 ff ff | 68 69",
    packet: { _tag: "Publish", topic: "a/b", payload: hi, qos: 2, retain: true, dup: false, packetId: 65535 }
  },
  {
    name: "PUBLISH QoS 2 DUP (0x3c)",
    hex: "3c 09 | 00 03 61 2f 62 00 04 | 68 69",
    packet: { _tag: "Publish", topic: "a/b", payload: hi, qos: 2, retain: false, dup: true, packetId: 4 }
  },
  {
    name: "PUBLISH QoS 2 DUP retained (0x3d)",
    hex: "3d 09 | 00 03 61 2f 62 00 05 | 68 69",
    packet: { _tag: "Publish", topic: "a/b", payload: hi, qos: 2, retain: true, dup: true, packetId: 5 }
  },
  {
    name: "PUBLISH QoS 0 with an empty payload",
    hex: "30 05 | 00 03 61 2f 62",
    packet: { _tag: "Publish", topic: "a/b", payload: new Uint8Array(0), qos: 0, retain: false, dup: false }
  },
  {
    name: "PUBLISH QoS 1 with an empty payload",
    hex: "32 07 | 00 03 61 2f 62 00 0a",
    packet: {
      _tag: "Publish",
      topic: "a/b",
      payload: new Uint8Array(0),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 10
    }
  },
  {
    // 温 U+6E29 e6 b8 a9, 度 U+5EA6 e5 ba a6, € U+20AC e2 82 ac, 😀 U+1F600 f0 9f 98 80: 15 bytes
    name: "PUBLISH with a multibyte UTF-8 topic (2-, 3- and 4-byte sequences)",
    hex: "30 12 | 00 0f e6 b8 a9 e5 ba a6 2f e2 82 ac 2f f0 9f 98 80 | 78",
    packet: { _tag: "Publish", topic: "温度/€/😀", payload: bytesOf("x"), qos: 0, retain: false, dup: false }
  },
  {
    name: "PUBLISH to a $ topic with a binary payload",
    hex: "30 0b | 00 06 24 53 59 53 2f 78 | 00 ff 80",
    packet: {
      _tag: "Publish",
      topic: "$SYS/x",
      payload: new Uint8Array([0x00, 0xff, 0x80]),
      qos: 0,
      retain: false,
      dup: false
    }
  },
  {
    // remaining length 2 + 1 + 128 = 131 = 0x83 0x01 (3 + 1 * 128)
    name: "PUBLISH with a 128-byte payload: 2-byte remaining length",
    hex: "30 83 01 | 00 01 74 | " + toHex(pattern(128)),
    packet: { _tag: "Publish", topic: "t", payload: pattern(128), qos: 0, retain: false, dup: false }
  },
  {
    // remaining length 2 + 1 + 16384 = 16387 = 0x83 0x80 0x01 (3 + 0 * 128 + 1 * 128^2)
    name: "PUBLISH with a 16384-byte payload: 3-byte remaining length",
    hex: "30 83 80 01 | 00 01 74 | " + toHex(pattern(16384)),
    packet: { _tag: "Publish", topic: "t", payload: pattern(16384), qos: 0, retain: false, dup: false }
  }
]

const ackFixtures: ReadonlyArray<Fixture> = [
  { name: "PUBACK (0x40)", hex: "40 02 00 01", packet: { _tag: "Puback", packetId: 1 } },
  { name: "PUBACK packet id 0xabcd", hex: "40 02 ab cd", packet: { _tag: "Puback", packetId: 0xabcd } },
  { name: "PUBREC (0x50)", hex: "50 02 00 07", packet: { _tag: "Pubrec", packetId: 7 } },
  { name: "PUBREC packet id 65535", hex: "50 02 ff ff", packet: { _tag: "Pubrec", packetId: 65535 } },
  { name: "PUBREL (0x62): flags 0010 [MQTT-3.6.1-1]", hex: "62 02 00 07", packet: { _tag: "Pubrel", packetId: 7 } },
  { name: "PUBREL packet id 0x0100 [MQTT-3.6.1-1]", hex: "62 02 01 00", packet: { _tag: "Pubrel", packetId: 256 } },
  { name: "PUBCOMP (0x70)", hex: "70 02 00 07", packet: { _tag: "Pubcomp", packetId: 7 } },
  { name: "UNSUBACK (0xb0)", hex: "b0 02 12 34", packet: { _tag: "Unsuback", packetId: 0x1234 } }
]

const subscribeFixtures: ReadonlyArray<Fixture> = [
  {
    name: "SUBSCRIBE one filter at QoS 1 (0x82): flags 0010 [MQTT-3.8.1-1]",
    hex: "82 08 | 00 01 | 00 03 61 2f 2b 01",
    packet: { _tag: "Subscribe", packetId: 1, subscriptions: [{ topicFilter: "a/+", qos: 1 }] }
  },
  {
    name: "SUBSCRIBE '#' at QoS 0 [MQTT-3.8.1-1]",
    hex: "82 06 | ff fe | 00 01 23 00",
    packet: { _tag: "Subscribe", packetId: 0xfffe, subscriptions: [{ topicFilter: "#", qos: 0 }] }
  },
  {
    // remaining 2 + (2 + 3 + 1) + (2 + 1 + 1) + (2 + 6 + 1) = 21
    name: "SUBSCRIBE several filters at QoS 0, 1 and 2 [MQTT-3.8.1-1]",
    hex: "82 15 | 01 02 | 00 03 61 2f 23 00 | 00 01 2b 01 | 00 06 24 53 59 53 2f 23 02",
    packet: {
      _tag: "Subscribe",
      packetId: 0x0102,
      subscriptions: [
        { topicFilter: "a/#", qos: 0 },
        { topicFilter: "+", qos: 1 },
        { topicFilter: "$SYS/#", qos: 2 }
      ]
    }
  },
  {
    name: "SUBSCRIBE a multibyte filter at QoS 2",
    hex: "82 0a | 00 09 | 00 05 c3 bc 2f 2b 2f 02",
    packet: { _tag: "Subscribe", packetId: 9, subscriptions: [{ topicFilter: "ü/+/", qos: 2 }] }
  }
]

const subackFixtures: ReadonlyArray<Fixture> = [
  { name: "SUBACK one code: QoS 0", hex: "90 03 00 01 00", packet: { _tag: "Suback", packetId: 1, returnCodes: [0] } },
  { name: "SUBACK one code: QoS 1", hex: "90 03 00 01 01", packet: { _tag: "Suback", packetId: 1, returnCodes: [1] } },
  { name: "SUBACK one code: QoS 2", hex: "90 03 00 01 02", packet: { _tag: "Suback", packetId: 1, returnCodes: [2] } },
  {
    name: "SUBACK one code: failure 0x80",
    hex: "90 03 00 01 80",
    packet: { _tag: "Suback", packetId: 1, returnCodes: [0x80] }
  },
  {
    name: "SUBACK four codes 0, 1, 2, 0x80",
    hex: "90 06 00 07 00 01 02 80",
    packet: { _tag: "Suback", packetId: 7, returnCodes: [0, 1, 2, 0x80] }
  }
]

const unsubscribeFixtures: ReadonlyArray<Fixture> = [
  {
    name: "UNSUBSCRIBE one filter (0xa2): flags 0010 [MQTT-3.10.1-1]",
    hex: "a2 07 | 00 01 | 00 03 61 2f 62",
    packet: { _tag: "Unsubscribe", packetId: 1, topicFilters: ["a/b"] }
  },
  {
    // remaining 2 + 5 + 3 + 7 = 17; "x/€" = 78 2f e2 82 ac
    name: "UNSUBSCRIBE several filters, packed contiguously [MQTT-3.10.1-1] [MQTT-3.10.3-1]",
    hex: "a2 11 | 02 03 | 00 03 61 2f 2b 00 01 23 00 05 78 2f e2 82 ac",
    packet: { _tag: "Unsubscribe", packetId: 0x0203, topicFilters: ["a/+", "#", "x/€"] }
  }
]

const emptyFixtures: ReadonlyArray<Fixture> = [
  { name: "PINGREQ", hex: "c0 00", packet: { _tag: "Pingreq" } },
  { name: "PINGRESP", hex: "d0 00", packet: { _tag: "Pingresp" } },
  { name: "DISCONNECT", hex: "e0 00", packet: { _tag: "Disconnect" } }
]

const fixtures: ReadonlyArray<Fixture> = [
  ...connectFixtures,
  ...connackFixtures,
  ...publishFixtures,
  ...ackFixtures,
  ...subscribeFixtures,
  ...subackFixtures,
  ...unsubscribeFixtures,
  ...emptyFixtures
]

// ---------------------------------------------------------------------------------------------------------------------
// Golden tests
// ---------------------------------------------------------------------------------------------------------------------

describe("Codec golden fixtures (hand-computed from MQTT 3.1.1)", () => {
  describe("encode", () => {
    for (const fixture of fixtures) {
      it(fixture.name, () => {
        assert.strictEqual(toHex(encodeOk(fixture.packet)), toHex(fromHex(fixture.hex)))
      })
    }
  })

  describe("decode", () => {
    for (const fixture of fixtures) {
      it(fixture.name, () => {
        assertSamePackets(decodeOk([fromHex(fixture.hex)]), [fixture.packet])
      })
    }
  })

  it("every packet type and every flag combination we emit has a fixture", () => {
    const firstBytes = new Set(fixtures.map((f) => fromHex(f.hex)[0]!))
    // Table 2.2: the fixed flags of every type, and all 12 PUBLISH combinations of DUP (only with QoS > 0), QoS and
    // RETAIN that a client may emit
    const expected = [0x10, 0x20, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x3a, 0x3b, 0x3c, 0x3d, 0x40, 0x50, 0x62, 0x70]
    expected.push(0x82, 0x90, 0xa2, 0xb0, 0xc0, 0xd0, 0xe0)
    for (const byte of expected) assert.isTrue(firstBytes.has(byte), `a fixture starts with 0x${byte.toString(16)}`)
  })

  describe("CONNECT flags byte, bit by bit", () => {
    const wills: ReadonlyArray<Packet.Will | undefined> = [
      undefined,
      ...([0, 1, 2] as const).flatMap((qos) =>
        [false, true].map((retain): Packet.Will => ({ topic: "w/t", payload: bytesOf("gone"), qos, retain }))
      )
    ]
    const credentials: ReadonlyArray<{ username?: string; password?: Uint8Array }> = [
      {},
      { username: "u" },
      { username: "u", password: new Uint8Array([1, 2]) }
    ]
    for (const cleanSession of [false, true]) {
      for (const will of wills) {
        for (const creds of credentials) {
          const credentialsName =
            creds.password !== undefined ? "user name + password" : creds.username !== undefined ? "user name" : "none"
          const willName = will === undefined ? "none" : `QoS ${will.qos} retain ${will.retain}`
          const name = `clean ${cleanSession}, will ${willName}, credentials ${credentialsName}`
          it(`${name} [MQTT-3.1.2-3] [MQTT-3.1.2-11] [MQTT-3.1.2-22] [MQTT-3.1.3-1]`, () => {
            const packet = connect({
              clientId: "id",
              cleanSession,
              keepalive: 0x1234,
              ...creds,
              ...(will !== undefined ? { will } : {})
            })
            const bytes = encodeOk(packet)
            assert.isBelow(bytes[1]!, 128, "one-byte remaining length")
            assert.strictEqual(bytes[0], 0x10)
            assert.strictEqual(bytes[1], bytes.length - 2)
            assert.strictEqual(toHex(bytes.subarray(2, 9)), "00044d51545404")
            const flags = bytes[9]!
            assert.strictEqual(flags & 0x01, 0, "reserved bit 0 is 0 [MQTT-3.1.2-3]")
            assert.strictEqual((flags >> 1) & 1, cleanSession ? 1 : 0, "bit 1: clean session")
            assert.strictEqual((flags >> 2) & 1, will !== undefined ? 1 : 0, "bit 2: will flag")
            assert.strictEqual((flags >> 3) & 3, will?.qos ?? 0, "bits 4-3: will QoS [MQTT-3.1.2-13]")
            assert.strictEqual((flags >> 5) & 1, will?.retain === true ? 1 : 0, "bit 5: will retain [MQTT-3.1.2-15]")
            assert.strictEqual((flags >> 6) & 1, creds.password !== undefined ? 1 : 0, "bit 6: password flag")
            assert.strictEqual((flags >> 7) & 1, creds.username !== undefined ? 1 : 0, "bit 7: user name flag")
            assert.strictEqual(toHex(bytes.subarray(10, 12)), "1234", "keepalive, big endian")
            // The payload: length-prefixed fields in the order ClientId, Will Topic, Will Message, User Name, Password
            const expectedFields: Array<Uint8Array> = [bytesOf("id")]
            if (will !== undefined) expectedFields.push(bytesOf(will.topic), will.payload)
            if (creds.username !== undefined) expectedFields.push(bytesOf(creds.username))
            if (creds.password !== undefined) expectedFields.push(creds.password)
            const fields: Array<Uint8Array> = []
            let offset = 12
            while (offset < bytes.length) {
              const length = (bytes[offset]! << 8) | bytes[offset + 1]!
              fields.push(bytes.subarray(offset + 2, offset + 2 + length))
              offset += 2 + length
            }
            assert.strictEqual(offset, bytes.length)
            assert.deepStrictEqual(fields.map(toHex), expectedFields.map(toHex))
            assertSamePackets(decodeOk([bytes]), [packet])
          })
        }
      }
    }
  })

  describe("remaining length boundaries (§2.2.3)", () => {
    it("0: PINGREQ c0 00, DISCONNECT e0 00", () => {
      assert.strictEqual(toHex(encodeOk({ _tag: "Pingreq" })), "c000")
      assert.strictEqual(toHex(encodeOk({ _tag: "Disconnect" })), "e000")
    })

    // A QoS 0 PUBLISH to "t" has remaining length 3 + payload; its fixed header is 0x30 and the remaining length.
    const boundaries: ReadonlyArray<readonly [remainingLength: number, header: string]> = [
      [3, "30 03"],
      [127, "30 7f"],
      [128, "30 80 01"],
      [16383, "30 ff 7f"],
      [16384, "30 80 80 01"],
      [2097151, "30 ff ff 7f"],
      [2097152, "30 80 80 80 01"]
    ]
    for (const [remainingLength, header] of boundaries) {
      it(`${remainingLength}: fixed header ${header}`, () => {
        const payload = pattern(remainingLength - 3)
        const packet: Packet.Publish = { _tag: "Publish", topic: "t", payload, qos: 0, retain: false, dup: false }
        const bytes = encodeOk(packet)
        const headerBytes = fromHex(header)
        assert.strictEqual(toHex(bytes.subarray(0, headerBytes.length + 3)), toHex(headerBytes) + "000174")
        assert.strictEqual(bytes.length, headerBytes.length + remainingLength)
        assertSamePackets(decodeOk([bytes]), [packet])
        // the decoder reads the same length from the header alone: a maximum one byte smaller rejects it at once
        const frameLength = headerBytes.length + remainingLength
        assert.isTrue(Result.isSuccess(new Codec.Decoder({ maximumPacketSize: frameLength }).push(headerBytes)))
        malformedHex(header, { maximumPacketSize: frameLength - 1 })
      })
    }

    it("268435455, the largest: ff ff ff 7f is read from the header (rejected over the maximum packet size)", () => {
      const header = "30 ff ff ff 7f"
      malformedHex(header, { maximumPacketSize: Codec.MAX_PACKET_SIZE - 1 })
      assert.strictEqual(Codec.MAX_PACKET_SIZE, 1 + 4 + 268_435_455)
    })

    it("the test helper agrees with the fixtures", () => {
      assert.deepStrictEqual(remainingLengthBytes(0), [0x00])
      assert.deepStrictEqual(remainingLengthBytes(127), [0x7f])
      assert.deepStrictEqual(remainingLengthBytes(128), [0x80, 0x01])
      assert.deepStrictEqual(remainingLengthBytes(16387), [0x83, 0x80, 0x01])
      assert.deepStrictEqual(remainingLengthBytes(268_435_455), [0xff, 0xff, 0xff, 0x7f])
    })
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// Decoder robustness
// ---------------------------------------------------------------------------------------------------------------------

/** A valid body (remaining length and the rest) for each packet type, and the flags Table 2.2 requires of it. */
const validBodies: ReadonlyArray<readonly [type: number, flags: number, body: string]> = [
  [1, 0x0, `0d ${MQTT4} 02 00 3c 00 01 61`],
  [2, 0x0, "02 00 00"],
  [4, 0x0, "02 00 01"],
  [5, 0x0, "02 00 01"],
  [6, 0x2, "02 00 01"],
  [7, 0x0, "02 00 01"],
  [8, 0x2, "08 00 01 00 03 61 2f 2b 01"],
  [9, 0x0, "03 00 01 00"],
  [10, 0x2, "07 00 01 00 03 61 2f 62"],
  [11, 0x0, "02 00 01"],
  [12, 0x0, "00"],
  [13, 0x0, "00"],
  [14, 0x0, "00"]
]

const byteHex = (byte: number): string => byte.toString(16).padStart(2, "0")

/** A stream of several packets, of several sizes (one with a 2-byte remaining length). */
const stream: ReadonlyArray<Fixture> = [
  connackFixtures[1]!,
  publishFixtures[2]!,
  subackFixtures[4]!,
  emptyFixtures[1]!,
  {
    name: "PUBLISH 130 bytes",
    hex: "32 89 01 | 00 03 61 2f 62 00 2a | " + toHex(pattern(130)),
    packet: { _tag: "Publish", topic: "a/b", payload: pattern(130), qos: 1, retain: false, dup: false, packetId: 42 }
  },
  ackFixtures[4]!,
  ackFixtures[7]!,
  publishFixtures[10]!
]
const streamBytes = concat(stream.map((f) => fromHex(f.hex)))
const streamPackets = stream.map((f) => f.packet)

describe("Decoder robustness", () => {
  it("the stream fixture is what it claims to be", () => {
    assertSamePackets(decodeOk([streamBytes]), streamPackets)
  })

  it("a buffer split at every single point gives the same packets", () => {
    for (let i = 0; i <= streamBytes.length; i++) {
      assertSamePackets(decodeOk([streamBytes.subarray(0, i), streamBytes.subarray(i)]), streamPackets)
    }
  })

  it("a buffer split at every pair of points gives the same packets", () => {
    const n = streamBytes.length
    for (let i = 0; i <= n; i++) {
      for (let j = i; j <= n; j++) {
        const chunks = [streamBytes.subarray(0, i), streamBytes.subarray(i, j), streamBytes.subarray(j)]
        assertSamePackets(decodeOk(chunks), streamPackets)
      }
    }
  })

  it("one byte at a time gives the same packets, each as soon as its last byte arrives", () => {
    const decoder = new Codec.Decoder()
    const packets: Array<Packet.Packet> = []
    const ends: Array<number> = []
    for (let i = 0; i < streamBytes.length; i++) {
      const result = decoder.push(streamBytes.subarray(i, i + 1))
      if (Result.isFailure(result)) assert.fail(result.failure.message)
      for (const packet of result.success) {
        packets.push(packet)
        ends.push(i + 1)
      }
    }
    assertSamePackets(packets, streamPackets)
    let end = 0
    const expectedEnds = stream.map((f) => (end += fromHex(f.hex).length))
    assert.deepStrictEqual(ends, expectedEnds)
  })

  it("empty chunks anywhere change nothing", () => {
    const empty = new Uint8Array(0)
    const chunks: Array<Uint8Array> = [empty]
    for (let i = 0; i < streamBytes.length; i += 3) chunks.push(streamBytes.subarray(i, i + 3), empty)
    assertSamePackets(decodeOk(chunks), streamPackets)
  })

  it("many packets in one chunk come out in order", () => {
    const count = 1000
    const parts: Array<Uint8Array> = []
    const expected: Array<Packet.Packet> = []
    for (let id = 1; id <= count; id++) {
      parts.push(new Uint8Array([0x40, 0x02, id >> 8, id & 0xff]))
      expected.push({ _tag: "Puback", packetId: id })
      parts.push(fromHex("d0 00"))
      expected.push({ _tag: "Pingresp" })
    }
    assertSamePackets(decodeOk([concat(parts)]), expected)
  })

  it("a plain Uint8Array that is a view at an offset of a larger buffer decodes", () => {
    const backing = new Uint8Array(streamBytes.length + 10)
    backing.set(streamBytes, 7)
    assertSamePackets(decodeOk([backing.subarray(7, 7 + streamBytes.length)]), streamPackets)
  })

  it("reserved packet types 0 and 15 are malformed [MQTT-2.2.2-2]", () => {
    malformedHex("00 00")
    malformedHex("0f 00")
    malformedHex("f0 00")
    malformedHex("ff 00")
    // even before the remaining length arrives
    malformedHex("f0")
    malformedHex("00")
  })

  it("every valid body decodes with the flags of Table 2.2", () => {
    for (const [type, flags, body] of validBodies) {
      const packets = decodeOk([fromHex(byteHex((type << 4) | flags) + body)])
      assert.strictEqual(packets.length, 1)
    }
  })

  describe("wrong reserved flags are malformed [MQTT-2.2.2-1] [MQTT-2.2.2-2]", () => {
    for (const [type, required, body] of validBodies) {
      it(`packet type ${type} with any flags but ${required.toString(2).padStart(4, "0")}`, () => {
        for (let flags = 0; flags < 16; flags++) {
          if (flags === required) continue
          const first = byteHex((type << 4) | flags)
          malformedHex(first + body)
          // rejected from the first byte alone
          malformedHex(first)
        }
      })
    }

    it("as received from a peer: PUBACK 0x41, PUBREL 0x60, SUBSCRIBE 0x80, UNSUBSCRIBE 0xa0, PINGRESP 0xd1", () => {
      malformedHex("41 02 00 01")
      malformedHex("60 02 00 01")
      malformedHex("80 08 00 01 00 03 61 2f 2b 01")
      malformedHex("a0 07 00 01 00 03 61 2f 62")
      malformedHex("d1 00")
    })
  })

  it("PUBLISH with QoS 3 is malformed, whatever DUP and RETAIN say [MQTT-3.3.1-4]", () => {
    for (const first of ["36", "37", "3e", "3f"]) {
      malformedHex(`${first} 09 00 03 61 2f 62 00 01 68 69`)
      malformedHex(first)
    }
  })

  it("a remaining length with a fifth length byte is malformed (§2.2.3)", () => {
    malformedHex("30 ff ff ff ff 7f")
    malformedHex("c0 80 80 80 80 00")
    // detected from the fourth length byte with its continuation bit set, before any fifth byte arrives
    malformedHex("d0 80 80 80 80")
    decodeMalformed(["d0", "80", "80", "80", "80"].map(fromHex))
  })

  it("fixed-size packets with the wrong remaining length are malformed", () => {
    malformedHex("40 03 00 01 00") // PUBACK with 3 bytes
    malformedHex("40 01 00") // PUBACK with 1 byte
    malformedHex("50 03 00 01 00") // PUBREC
    malformedHex("62 01 00") // PUBREL
    malformedHex("70 00") // PUBCOMP with none
    malformedHex("b0 03 00 01 00") // UNSUBACK
    malformedHex("d0 01 00") // PINGRESP with 1
    malformedHex("c0 01 00") // PINGREQ
    malformedHex("e0 01 00") // DISCONNECT
    malformedHex("20 03 00 00 00") // CONNACK with 3
    malformedHex("20 01 00") // CONNACK with 1
    malformedHex("20 00") // CONNACK with none
  })

  it("CONNACK with reserved acknowledge flag bits set is malformed (§3.2.2.1)", () => {
    for (const flags of ["02", "04", "08", "10", "20", "40", "80", "ff", "03"]) malformedHex(`20 02 ${flags} 00`)
  })

  it("CONNACK with a reserved return code (6..255) is malformed (§3.2.2.3)", () => {
    malformedHex("20 02 00 06")
    malformedHex("20 02 00 80")
    malformedHex("20 02 00 ff")
  })

  it("PUBLISH topics that are not well-formed UTF-8 are malformed [MQTT-1.5.3-1]", () => {
    malformedHex("30 04 00 02 c3 28") // a 2-byte sequence with a bad continuation byte
    malformedHex("30 05 00 03 ed a0 80") // U+D800 encoded: a surrogate
    malformedHex("30 05 00 03 ed bf bf") // U+DFFF encoded
    malformedHex("30 04 00 02 c0 af") // an overlong '/'
    malformedHex("30 03 00 01 e2") // truncated 3-byte sequence
    malformedHex("30 03 00 01 80") // a lone continuation byte
    malformedHex("30 06 00 04 f4 90 80 80") // above U+10FFFF
    malformedHex("30 03 00 01 ff")
  })

  it("PUBLISH topic containing U+0000 is malformed [MQTT-1.5.3-2]", () => {
    malformedHex("30 05 00 03 61 00 62")
    malformedHex("30 03 00 01 00")
  })

  it("PUBLISH topic with a wildcard is malformed [MQTT-3.3.2-2] [MQTT-4.7.1-1]", () => {
    malformedHex("30 05 00 03 61 2f 2b") // a/+
    malformedHex("30 03 00 01 23") // #
    malformedHex("32 07 00 03 61 2f 23 00 01") // a/# at QoS 1
  })

  it("a topic with the length of the last one is still checked [MQTT-3.3.2-2] [MQTT-1.5.3-2] [MQTT-1.5.3-1]", () => {
    // The decoder gives back the last ASCII topic's string when the bytes are equal; any difference is read afresh.
    const aSlashB = fromHex("30 05 00 03 61 2f 62")
    decodeMalformed([aSlashB, fromHex("30 05 00 03 61 2f 2b")]) // a/b, then a/+
    decodeMalformed([aSlashB, fromHex("30 05 00 03 61 00 62")]) // a/b, then a U+0000 b
    decodeMalformed([aSlashB, fromHex("30 05 00 03 61 2f ff")]) // a/b, then a/ and a byte that is not UTF-8
    decodeMalformed([concat([aSlashB, aSlashB, fromHex("30 05 00 03 23 2f 62")])]) // in one chunk: #/b
  })

  it("a repeated topic decodes to the same string; a different one to its own", () => {
    const publish = (topic: string) => encodeOk({ _tag: "Publish", topic, payload: new Uint8Array(0), qos: 0, retain: false, dup: false })
    const topics = ["a/b", "a/b", "a/c", "a/c", "a/bb", "é/b", "é/b", "a/b", "a/b"]
    const packets = decodeOk([concat(topics.map(publish))]) as Array<Packet.Publish>
    assert.deepStrictEqual(packets.map((p) => p.topic), topics)
    const split = decodeOk(topics.map(publish)) as Array<Packet.Publish>
    assert.deepStrictEqual(split.map((p) => p.topic), topics)
  })

  it("PUBLISH with an empty topic is malformed [MQTT-4.7.3-1]", () => {
    malformedHex("30 02 00 00")
    malformedHex("30 04 00 00 68 69")
    malformedHex("32 04 00 00 00 01")
  })

  it("PUBLISH whose topic or packet id runs past the packet is malformed", () => {
    malformedHex("30 01 00") // no room for the topic length
    malformedHex("30 04 00 05 61 62") // topic of 5 bytes in 2
    malformedHex("32 04 00 01 61 00") // QoS 1 with half a packet id
    malformedHex("32 03 00 01 61") // QoS 1 without a packet id
  })

  it("packet id 0 is malformed [MQTT-2.3.1-1]", () => {
    malformedHex("32 05 00 01 61 00 00") // PUBLISH QoS 1
    malformedHex("34 05 00 01 61 00 00") // PUBLISH QoS 2
    malformedHex("40 02 00 00") // PUBACK
    malformedHex("50 02 00 00") // PUBREC
    malformedHex("62 02 00 00") // PUBREL
    malformedHex("70 02 00 00") // PUBCOMP
    malformedHex("90 03 00 00 00") // SUBACK
    malformedHex("b0 02 00 00") // UNSUBACK
    malformedHex("82 06 00 00 00 01 23 00") // SUBSCRIBE
    malformedHex("a2 05 00 00 00 01 23") // UNSUBSCRIBE
  })

  it("SUBACK with a return code other than 0, 1, 2, 0x80 is malformed (§3.9.3)", () => {
    malformedHex("90 03 00 01 03")
    malformedHex("90 03 00 01 81")
    malformedHex("90 03 00 01 ff")
    malformedHex("90 05 00 01 00 01 7f")
  })

  it("SUBACK without return codes, SUBSCRIBE or UNSUBSCRIBE without filters are malformed", () => {
    malformedHex("90 02 00 01")
    malformedHex("82 02 00 01") // [MQTT-3.8.3-3]
    malformedHex("a2 02 00 01") // [MQTT-3.10.3-2]
  })

  it("a CONNECT for another protocol or level is malformed", () => {
    malformedHex("10 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 01 61") // MQTT 5 (level 5, empty properties)
    malformedHex("10 0f 00 06 4d 51 49 73 64 70 03 02 00 3c 00 01 61") // MQIsdp level 3 (MQTT 3.1)
    malformedHex("10 0d 00 04 4d 51 54 54 03 02 00 3c 00 01 61") // MQTT level 3
    malformedHex("10 0d 00 04 4d 51 54 54 04 03 00 3c 00 01 61") // reserved connect flag set [MQTT-3.1.2-3]
  })

  it("after a failure the decoder stays failed, with the same error, even for valid bytes", () => {
    const decoder = new Codec.Decoder()
    const first = decoder.push(fromHex("41 02 00 01"))
    assert.isTrue(Result.isFailure(first))
    const error = (first as Result.Failure<Array<Packet.Packet>, MqttError.MqttError>).failure
    assert.strictEqual(error.reason._tag, "MalformedPacket")
    for (const chunk of ["d0 00", "40 02 00 01", "", "30 05 00 03 61 2f 62"]) {
      const later = decoder.push(fromHex(chunk))
      assert.isTrue(Result.isFailure(later))
      assert.strictEqual((later as Result.Failure<Array<Packet.Packet>, MqttError.MqttError>).failure, error)
    }
    assert.strictEqual(decoder.failure, error)
    assert.strictEqual(decoder.buffered, 0)
  })

  it("a chunk that completes packets and then holds a malformed one fails as a whole", () => {
    const decoder = new Codec.Decoder()
    const result = decoder.push(fromHex("d0 00 40 02 00 01 41 02 00 01"))
    assert.isTrue(Result.isFailure(result))
    assert.isTrue(decoder.failure !== undefined)
  })

  it("a failure half-way through a packet split across chunks finishes the decoder", () => {
    const decoder = new Codec.Decoder()
    const partial = decoder.push(fromHex("30 05 00 03 ed"))
    assert.isTrue(Result.isSuccess(partial) && partial.success.length === 0)
    const result = decoder.push(fromHex("a0 80"))
    assert.isTrue(Result.isFailure(result))
    assert.isTrue(Result.isFailure(decoder.push(fromHex("d0 00"))))
  })

  describe("maximumPacketSize", () => {
    // remaining length 1 MiB = 1048576 = 0x00 + 0x00 * 128 + 0x40 * 128^2: 80 80 40
    const oneMiBHeader = fromHex("30 80 80 40")

    it("a PUBLISH announcing 1 MiB over a 1024-byte maximum fails from its 4 header bytes alone", () => {
      const decoder = new Codec.Decoder({ maximumPacketSize: 1024 })
      const result = decoder.push(oneMiBHeader)
      assert.isTrue(Result.isFailure(result))
      assert.strictEqual(decoder.failure?.reason._tag, "MalformedPacket")
      assert.strictEqual(decoder.buffered, 0)
    })

    it("... also when the header arrives one byte at a time: the failure comes with the last header byte", () => {
      const decoder = new Codec.Decoder({ maximumPacketSize: 1024 })
      for (let i = 0; i < oneMiBHeader.length - 1; i++) {
        assert.isTrue(Result.isSuccess(decoder.push(oneMiBHeader.subarray(i, i + 1))))
        assert.isAtMost(decoder.buffered, 5)
      }
      assert.isTrue(Result.isFailure(decoder.push(oneMiBHeader.subarray(3))))
      assert.strictEqual(decoder.failure?.reason._tag, "MalformedPacket")
    })

    it("... also after valid packets in the same chunk", () => {
      malformedHex("d0 00 40 02 00 01 30 80 80 40", { maximumPacketSize: 1024 })
    })

    it("a packet of exactly the maximum is accepted, one byte more is rejected (the fixed header counts)", () => {
      // remaining length 1021 = 0x7d + 0x07 * 128: fd 07; total 3 + 1021 = 1024
      const exact = concat([fromHex("30 fd 07 00 01 74"), pattern(1018)])
      assert.strictEqual(exact.length, 1024)
      const packets = decodeOk([exact], { maximumPacketSize: 1024 })
      assert.strictEqual(packets.length, 1)
      // remaining length 1022: fe 07; total 1025
      malformedHex("30 fe 07", { maximumPacketSize: 1024 })
    })

    it("a fixed-size packet announcing a huge remaining length is rejected by the maximum first", () => {
      malformedHex("40 ff ff ff 7f", { maximumPacketSize: 1024 })
      malformedHex("d0 80 80 01", { maximumPacketSize: 1024 })
    })

    it("the decoder holds only the bytes of the incomplete packet while a large allowed packet streams in", () => {
      const payload = pattern(65536)
      const packet: Packet.Publish = {
        _tag: "Publish",
        topic: "big",
        payload,
        qos: 1,
        retain: false,
        dup: false,
        packetId: 3
      }
      // remaining length 2 + 3 + 2 + 65536 = 65543 = 0x07 + 0x80 * 128 ... : 87 80 04
      const bytes = concat([fromHex("32 87 80 04 00 03 62 69 67 00 03"), payload])
      assert.strictEqual(toHex(encodeOk(packet).subarray(0, 11)), toHex(bytes.subarray(0, 11)))
      const decoder = new Codec.Decoder({ maximumPacketSize: bytes.length })
      let pushed = 0
      const chunkSize = 1000
      for (; pushed + chunkSize < bytes.length; pushed += chunkSize) {
        const result = decoder.push(bytes.subarray(pushed, pushed + chunkSize))
        assert.isTrue(Result.isSuccess(result) && result.success.length === 0)
        assert.strictEqual(decoder.buffered, pushed + chunkSize, "exactly the bytes received so far")
        assert.isAtMost(decoder.buffered, bytes.length)
      }
      const last = decoder.push(bytes.subarray(pushed))
      if (Result.isFailure(last)) assert.fail(last.failure.message)
      assertSamePackets(last.success, [packet])
      assert.strictEqual(decoder.buffered, 0, "nothing held once the packet is complete")
      // a partial fixed header is held in at most 5 bytes
      assert.isTrue(Result.isSuccess(decoder.push(fromHex("32 87"))))
      assert.strictEqual(decoder.buffered, 2)
    })

    it("the maximum is clamped to 2..MAX_PACKET_SIZE", () => {
      assert.strictEqual(new Codec.Decoder({ maximumPacketSize: 0 }).maximumPacketSize, 2)
      assert.strictEqual(new Codec.Decoder({ maximumPacketSize: -5 }).maximumPacketSize, 2)
      assert.strictEqual(new Codec.Decoder({ maximumPacketSize: 1e12 }).maximumPacketSize, Codec.MAX_PACKET_SIZE)
      assert.strictEqual(new Codec.Decoder().maximumPacketSize, Codec.MAX_PACKET_SIZE)
      assert.strictEqual(new Codec.Decoder({ maximumPacketSize: 100.7 }).maximumPacketSize, 100)
      decodeOk([fromHex("d0 00")], { maximumPacketSize: 2 })
      malformedHex("40 02 00 01", { maximumPacketSize: 2 })
    })
  })

  it("U+FEFF at the start of a topic is kept, not stripped [MQTT-1.5.3-3]", () => {
    const packets = decodeOk([fromHex("30 07 00 04 ef bb bf 61 78")])
    const publish = packets[0] as Packet.Publish
    assert.strictEqual(publish.topic, "\uFEFFa")
    assert.strictEqual(publish.topic.charCodeAt(0), 0xfeff)
    assert.strictEqual(toHex(encodeOk(publish)), "3007" + "0004efbbbf61" + "78")
  })

  it("the payload of a packet received in one chunk is a view of that chunk (no copy)", () => {
    const chunk = fromHex("d0 00 | 32 09 00 03 61 2f 62 00 01 68 69 | 30 07 00 03 61 2f 62 6a 6b")
    const packets = decodeOk([chunk])
    const first = packets[1] as Packet.Publish
    const second = packets[2] as Packet.Publish
    assert.strictEqual(first.payload.buffer, chunk.buffer)
    assert.strictEqual(first.payload.byteOffset, chunk.byteOffset + 11)
    assert.strictEqual(first.payload.byteLength, 2)
    assert.strictEqual(second.payload.buffer, chunk.buffer)
    assert.strictEqual(second.payload.byteOffset, chunk.byteOffset + 20)
    // the same for a Node Buffer at an offset in a larger allocation
    const buffer = Buffer.concat([Buffer.alloc(5), Buffer.from(chunk)]).subarray(5)
    const fromBuffer = decodeOk([buffer])[1] as Packet.Publish
    assert.strictEqual(fromBuffer.payload.buffer, buffer.buffer)
    assert.strictEqual(fromBuffer.payload.byteOffset, buffer.byteOffset + 11)
  })

  it("the payload of a packet split across chunks is a copy that does not alias the chunks", () => {
    const bytes = fromHex("32 09 00 03 61 2f 62 00 01 68 69")
    const a = bytes.slice(0, 5)
    const b = bytes.slice(5)
    const publish = decodeOk([a, b])[0] as Packet.Publish
    assert.notStrictEqual(publish.payload.buffer, a.buffer)
    assert.notStrictEqual(publish.payload.buffer, b.buffer)
    b.fill(0)
    assert.deepStrictEqual(Array.from(publish.payload), [0x68, 0x69])
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// Regressions: defects found by these tests and fixed in Codec.ts.
// ---------------------------------------------------------------------------------------------------------------------

describe("regressions", () => {
  it("a fixed-size packet announcing the wrong remaining length is rejected from its fixed header [MQTT-4.8.0-1]", () => {
    // PUBACK must have remaining length 2 (§3.4.1). The decoder once waited for the announced body of `40 03`, and
    // `40 ff ff ff 7f` would have reserved 268,435,460 bytes and swallowed every later packet of the connection.
    // The same for CONNACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT.
    const headers = ["40 03", "20 03", "50 01", "62 7f", "70 00", "b0 03", "c0 01", "d0 01", "e0 7f", "40 ff 7f"]
    for (const header of headers) {
      const decoder = new Codec.Decoder()
      const result = decoder.push(fromHex(header))
      assert.isTrue(Result.isFailure(result), `${header} should fail from its header alone`)
      assert.strictEqual(decoder.failure?.reason._tag, "MalformedPacket")
    }
  })

  it("a CONNECT with protocol level byte 0x84 is not taken for an MQTT 3.1.1 (level 4) CONNECT (§3.1.2.2)", () => {
    // mqtt-packet reads a level >= 128 as "bridge mode" and subtracts 128; fromWire then sees level 4.
    malformedHex(`10 0d | ${"00 04 4d 51 54 54"} 84 02 00 3c | 00 01 61`)
  })
})
