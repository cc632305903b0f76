import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as Validate from "../../src/Codec/Validate.ts"
import * as MqttError from "../../src/Errors/MqttError.ts"

const expectReason = (
  error: MqttError.MqttError | undefined,
  tag: MqttError.ReasonTag,
  code: number
): MqttError.MqttErrorReason => {
  assert.isDefined(error, `expected ${tag}, got no error`)
  assert.isTrue(MqttError.isMqttError(error))
  assert.strictEqual(error!.reason._tag, tag, error!.message)
  assert.strictEqual(error!.code, code)
  assert.isFalse(error!.isRetryable)
  assert.isString(error!.message)
  return error!.reason
}

const badStructure = (error: MqttError.MqttError | undefined): MqttError.BadStructure =>
  expectReason(error, "BadStructure", -8) as MqttError.BadStructure
const badOption = (error: MqttError.MqttError | undefined): MqttError.BadMqttOption =>
  expectReason(error, "BadMqttOption", -15) as MqttError.BadMqttOption
const badQos = (error: MqttError.MqttError | undefined): MqttError.BadQos =>
  expectReason(error, "BadQos", -9) as MqttError.BadQos

/** Validates a packet given as an untyped value, as untyped JavaScript callers may. */
const check = (value: unknown): MqttError.MqttError | undefined => Validate.packet(value as Packet.Packet)

const bytes = (n: number): Uint8Array => new Uint8Array(n)

/** Something that passes `instanceof Uint8Array` and reports `length` bytes without allocating them. */
const hugePayload = (length: number): Uint8Array =>
  Object.create(Uint8Array.prototype, { length: { value: length } }) as Uint8Array

const connect: Packet.Connect = {
  _tag: "Connect",
  protocolLevel: 4,
  clientId: "client-1",
  cleanSession: true,
  keepalive: 60
}
const will: Packet.Will = { topic: "clients/1/status", payload: bytes(7), qos: 1, retain: true }
const publish: Packet.Publish = {
  _tag: "Publish",
  topic: "a/b",
  payload: bytes(3),
  qos: 1,
  retain: false,
  dup: false,
  packetId: 1
}
const subscribe: Packet.Subscribe = {
  _tag: "Subscribe",
  packetId: 2,
  subscriptions: [{ topicFilter: "a/#", qos: 2 }, { topicFilter: "+/b", qos: 0 }]
}
const unsubscribe: Packet.Unsubscribe = { _tag: "Unsubscribe", packetId: 3, topicFilters: ["a/#", "c"] }

const validPackets: ReadonlyArray<Packet.Packet> = [
  connect,
  { ...connect, clientId: "", cleanSession: true, keepalive: 0 },
  { ...connect, cleanSession: false, keepalive: 65535, username: "", password: bytes(0) },
  { ...connect, username: "user", password: bytes(65535), will },
  { ...connect, username: "user" },
  { _tag: "Connack", sessionPresent: false, returnCode: 0 },
  { _tag: "Connack", sessionPresent: true, returnCode: 0 },
  { _tag: "Connack", sessionPresent: false, returnCode: 5 },
  publish,
  { ...publish, qos: 0, packetId: undefined },
  { _tag: "Publish", topic: "a", payload: bytes(0), qos: 0, retain: true, dup: false },
  { ...publish, qos: 2, dup: true, packetId: 65535, payload: Buffer.from("hello") },
  { _tag: "Puback", packetId: 1 },
  { _tag: "Pubrec", packetId: 65535 },
  { _tag: "Pubrel", packetId: 2 },
  { _tag: "Pubcomp", packetId: 3 },
  subscribe,
  { _tag: "Suback", packetId: 2, returnCodes: [0, 1, 2, 0x80] },
  unsubscribe,
  { _tag: "Unsuback", packetId: 3 },
  { _tag: "Pingreq" },
  { _tag: "Pingresp" },
  { _tag: "Disconnect" }
]

describe("Validate.qos", () => {
  it("accepts 0, 1 and 2", () => {
    for (const value of [0, 1, 2]) assert.isUndefined(Validate.qos(value, "publish"))
  })

  it("[MQTT-3.3.1-4] rejects 3, -1, 1.5, \"1\", NaN, undefined and others with BadQos (-9)", () => {
    for (const value of [3, -1, 1.5, "1", Number.NaN, undefined, null, 1n, true, Infinity, [1], { qos: 1 }]) {
      const reason = badQos(Validate.qos(value, "publish to a/b"))
      assert.isTrue(Object.is(reason.qos, value))
      assert.strictEqual(reason.context, "publish to a/b")
      assert.include(reason.message, "publish to a/b")
    }
  })
})

describe("Validate.packetId", () => {
  it("accepts integers in 1..65535", () => {
    for (const value of [1, 2, 1000, 65534, 65535]) assert.isUndefined(Validate.packetId(value, "Puback"))
  })

  it("[MQTT-2.3.1-1] rejects 0, 65536, -1, 1.5, \"1\", NaN and undefined with BadStructure (-8)", () => {
    for (const value of [0, 65536, -1, 1.5, "1", Number.NaN, undefined, null, Infinity, 1n]) {
      const reason = badStructure(Validate.packetId(value, "Puback"))
      assert.isTrue(Object.is(reason.value, value))
      assert.include(reason.field, "Puback")
      assert.include(reason.detail, "[MQTT-2.3.1-1]")
    }
  })
})

describe("Validate.clientId", () => {
  it("accepts ids with any characters, and an empty id with a clean session", () => {
    assert.isUndefined(Validate.clientId("client-1", false))
    assert.isUndefined(Validate.clientId("a/+#$ü𝄞", false))
    assert.isUndefined(Validate.clientId("", true))
  })

  it("[MQTT-3.1.3-7] rejects an empty id without a clean session with BadMqttOption (-15)", () => {
    const reason = badOption(Validate.clientId("", false))
    assert.strictEqual(reason.option, "clientId")
    assert.include(reason.detail, "[MQTT-3.1.3-7]")
    assert.include(reason.detail, "clean session")
  })

  it("[MQTT-3.1.3-4] [MQTT-1.5.3-2] rejects U+0000 with TopicnameTruncated (-7)", () => {
    const reason = expectReason(Validate.clientId("a\u0000", true), "TopicnameTruncated", -7)
    assert.strictEqual((reason as MqttError.TopicnameTruncated).field, "client id")
  })

  it("[MQTT-3.1.3-4] [MQTT-1.5.3-1] rejects a lone surrogate and more than 65535 bytes with BadUtf8String (-5)", () => {
    const reason = expectReason(Validate.clientId("\ud800", true), "BadUtf8String", -5)
    assert.strictEqual((reason as MqttError.BadUtf8String).field, "client id")
    expectReason(Validate.clientId("c".repeat(65536), true), "BadUtf8String", -5)
  })
})

describe("Validate.will", () => {
  it("accepts a will with a topic name, QoS 0..2 and a message of up to 65535 bytes", () => {
    assert.isUndefined(Validate.will(will))
    assert.isUndefined(Validate.will({ ...will, qos: 0, retain: false, payload: bytes(0) }))
    assert.isUndefined(Validate.will({ ...will, qos: 2, payload: bytes(65535) }))
  })

  it("rejects an empty will topic with ZeroLenWillTopic (-17)", () => {
    expectReason(Validate.will({ ...will, topic: "" }), "ZeroLenWillTopic", -17)
  })

  it("[MQTT-3.1.3-10] [MQTT-4.7.1-1] rejects a wildcard in the will topic with InvalidTopic (-1)", () => {
    for (const topic of ["a/+", "#"]) {
      const reason = expectReason(Validate.will({ ...will, topic }), "InvalidTopic", -1) as MqttError.InvalidTopic
      assert.strictEqual(reason.kind, "topicName")
      assert.strictEqual(reason.topic, topic)
    }
  })

  it("[MQTT-3.1.3-10] rejects U+0000 and lone surrogates in the will topic, naming the field", () => {
    const truncated = expectReason(Validate.will({ ...will, topic: "a\u0000" }), "TopicnameTruncated", -7)
    assert.strictEqual((truncated as MqttError.TopicnameTruncated).field, "will topic")
    const utf8 = expectReason(Validate.will({ ...will, topic: "a\udc00" }), "BadUtf8String", -5)
    assert.strictEqual((utf8 as MqttError.BadUtf8String).field, "will topic")
  })

  it("[MQTT-3.1.2-14] rejects will QoS 3 with BadQos (-9)", () => {
    for (const qos of [3, -1, 1.5, "1", undefined]) {
      const reason = badQos(Validate.will({ ...will, qos } as unknown as Packet.Will))
      assert.strictEqual(reason.context, "will")
    }
  })

  it("rejects a will message over 65535 bytes (a two-byte length field) with BadStructure (-8)", () => {
    const reason = badStructure(Validate.will({ ...will, payload: bytes(65536) }))
    assert.strictEqual(reason.field, "will message")
    assert.include(reason.detail, "65535")
  })

  it("rejects a will message that is not a Uint8Array and a non-boolean retain with BadStructure (-8)", () => {
    badStructure(Validate.will({ ...will, payload: "hello" } as unknown as Packet.Will))
    badStructure(Validate.will({ ...will, payload: undefined } as unknown as Packet.Will))
    badStructure(Validate.will({ ...will, retain: 1 } as unknown as Packet.Will))
  })
})

describe("Validate.packet", () => {
  it("accepts valid packets of all 14 types", () => {
    const tags = new Set<string>()
    for (const packet of validPackets) {
      const error = Validate.packet(packet)
      assert.isUndefined(error, `${JSON.stringify(packet)}: ${error?.message}`)
      tags.add(packet._tag)
    }
    assert.strictEqual(tags.size, 14)
  })

  describe("Connect", () => {
    it("rejects a protocol level other than 4 with BadMqttOption (-15)", () => {
      for (const protocolLevel of [3, 5, "4", undefined]) {
        assert.strictEqual(badOption(check({ ...connect, protocolLevel })).option, "protocolLevel")
      }
    })

    it("[MQTT-3.1.3-7] rejects an empty client id without a clean session with BadMqttOption (-15)", () => {
      const reason = badOption(check({ ...connect, clientId: "", cleanSession: false }))
      assert.strictEqual(reason.option, "clientId")
      assert.include(reason.detail, "[MQTT-3.1.3-7]")
    })

    it("[MQTT-3.1.3-4] rejects a client id that is not a valid MQTT string", () => {
      expectReason(check({ ...connect, clientId: "\ud800" }), "BadUtf8String", -5)
      expectReason(check({ ...connect, clientId: "\u0000" }), "TopicnameTruncated", -7)
      badOption(check({ ...connect, clientId: 1 }))
      badOption(check({ ...connect, clientId: undefined }))
      badOption(check({ ...connect, cleanSession: "yes" }))
    })

    it("rejects a keepalive outside the integers 0..65535 with BadMqttOption (-15)", () => {
      for (const keepalive of [-1, 65536, 1.5, "60", Number.NaN, undefined]) {
        const reason = badOption(check({ ...connect, keepalive }))
        assert.strictEqual(reason.option, "keepalive")
      }
    })

    it("[MQTT-3.1.3-11] rejects a user name that is not a valid MQTT string", () => {
      const utf8 = expectReason(check({ ...connect, username: "u\ud800" }), "BadUtf8String", -5)
      assert.strictEqual((utf8 as MqttError.BadUtf8String).field, "username")
      const nul = expectReason(check({ ...connect, username: "u\u0000" }), "TopicnameTruncated", -7)
      assert.strictEqual((nul as MqttError.TopicnameTruncated).field, "username")
      expectReason(check({ ...connect, username: "u".repeat(65536) }), "BadUtf8String", -5)
      badOption(check({ ...connect, username: 42 }))
    })

    it("[MQTT-3.1.2-22] rejects a password without a user name with BadMqttOption (-15)", () => {
      const reason = badOption(check({ ...connect, password: bytes(4) }))
      assert.strictEqual(reason.option, "password")
      assert.include(reason.detail, "[MQTT-3.1.2-22]")
      assert.notInclude(reason.message, "0,0,0,0")
      assert.isUndefined(check({ ...connect, username: "user", password: bytes(4) }))
    })

    it("rejects a password over 65535 bytes with BadStructure (-8), and one that is not a Uint8Array", () => {
      assert.strictEqual(badStructure(check({ ...connect, username: "u", password: bytes(65536) })).field, "password")
      const reason = badOption(check({ ...connect, username: "u", password: "secret" }))
      assert.notInclude(reason.message, "secret")
    })

    it("rejects an invalid will: ZeroLenWillTopic (-17), BadQos (-9), InvalidTopic (-1), BadMqttOption (-15)", () => {
      expectReason(check({ ...connect, will: { ...will, topic: "" } }), "ZeroLenWillTopic", -17)
      badQos(check({ ...connect, will: { ...will, qos: 3 } }))
      expectReason(check({ ...connect, will: { ...will, topic: "a/#" } }), "InvalidTopic", -1)
      badStructure(check({ ...connect, will: { ...will, payload: bytes(65536) } }))
      badOption(check({ ...connect, will: "offline" }))
      badOption(check({ ...connect, will: null }))
    })
  })

  describe("Connack", () => {
    it("rejects a return code outside the integers 0..5 with BadStructure (-8)", () => {
      for (const returnCode of [6, -1, 1.5, 0x80, "0", undefined]) {
        badStructure(check({ _tag: "Connack", sessionPresent: false, returnCode }))
      }
    })

    it("rejects a non-boolean session present with BadStructure (-8)", () => {
      badStructure(check({ _tag: "Connack", sessionPresent: 1, returnCode: 0 }))
    })

    it("[MQTT-3.2.2-4] rejects session present with a refusal with BadStructure (-8)", () => {
      for (const returnCode of [1, 2, 3, 4, 5]) {
        const reason = badStructure(check({ _tag: "Connack", sessionPresent: true, returnCode }))
        assert.include(reason.detail, "[MQTT-3.2.2-4]")
      }
    })
  })

  describe("Publish", () => {
    it("[MQTT-3.3.2-2] [MQTT-4.7.1-1] rejects a wildcard in the topic name with InvalidTopic (-1)", () => {
      for (const topic of ["a/+", "#", "a/#"]) {
        const reason = expectReason(check({ ...publish, topic }), "InvalidTopic", -1) as MqttError.InvalidTopic
        assert.strictEqual(reason.kind, "topicName")
        assert.strictEqual(reason.topic, topic)
      }
    })

    it("[MQTT-4.7.3-1] rejects an empty topic name with InvalidTopic (-1)", () => {
      expectReason(check({ ...publish, topic: "" }), "InvalidTopic", -1)
    })

    it("[MQTT-4.7.3-2] [MQTT-1.5.3-1] rejects U+0000 and lone surrogates in the topic name", () => {
      expectReason(check({ ...publish, topic: "a\u0000" }), "TopicnameTruncated", -7)
      expectReason(check({ ...publish, topic: "a\ud800" }), "BadUtf8String", -5)
      badStructure(check({ ...publish, topic: undefined }))
      badStructure(check({ ...publish, topic: Buffer.from("a/b") }))
    })

    it("[MQTT-3.3.1-4] rejects QoS 3 and other non-QoS values with BadQos (-9)", () => {
      for (const qos of [3, -1, 1.5, "1", Number.NaN, undefined]) {
        assert.strictEqual(badQos(check({ ...publish, qos })).context, "Publish")
      }
    })

    it("[MQTT-2.3.1-1] rejects a QoS 1 or 2 PUBLISH without a valid packet id with BadStructure (-8)", () => {
      for (const qos of [1, 2]) {
        for (const packetId of [undefined, 0, 65536, 1.5, "1"]) {
          const reason = badStructure(check({ ...publish, qos, packetId }))
          assert.include(reason.detail, "[MQTT-2.3.1-1]")
        }
      }
    })

    it("[MQTT-2.3.1-5] rejects a QoS 0 PUBLISH with a packet id with BadStructure (-8)", () => {
      const reason = badStructure(check({ ...publish, qos: 0, packetId: 1 }))
      assert.include(reason.detail, "[MQTT-2.3.1-5]")
    })

    it("[MQTT-3.3.1-2] rejects DUP 1 on a QoS 0 PUBLISH with BadStructure (-8)", () => {
      const reason = badStructure(check({ ...publish, qos: 0, packetId: undefined, dup: true }))
      assert.include(reason.detail, "[MQTT-3.3.1-2]")
    })

    it("[MQTT-3.3.1-1] accepts DUP 1 on a QoS 1 or 2 PUBLISH", () => {
      assert.isUndefined(check({ ...publish, qos: 1, dup: true }))
      assert.isUndefined(check({ ...publish, qos: 2, dup: true }))
    })

    it("rejects a payload that is not a Uint8Array and non-boolean flags with BadStructure (-8)", () => {
      for (const payload of ["hello", undefined, null, [1, 2], new ArrayBuffer(2)]) {
        assert.strictEqual(badStructure(check({ ...publish, payload })).field, "Publish payload")
      }
      badStructure(check({ ...publish, dup: 0 }))
      badStructure(check({ ...publish, retain: undefined }))
    })

    it("rejects a PUBLISH over 268435455 bytes after the fixed header with BadStructure (-8)", () => {
      // remaining length = 2 + topic bytes + 2 (packet id at QoS > 0) + payload
      const topic = "€/b" // 5 bytes
      assert.isUndefined(check({ ...publish, topic, payload: hugePayload(268435455 - 2 - 5 - 2) }))
      const reason = badStructure(check({ ...publish, topic, payload: hugePayload(268435455 - 2 - 5 - 2 + 1) }))
      assert.include(reason.detail, "268435456")
      const qos0 = { ...publish, topic, qos: 0, packetId: undefined }
      assert.isUndefined(check({ ...qos0, payload: hugePayload(268435455 - 2 - 5) }))
      badStructure(check({ ...qos0, payload: hugePayload(268435455 - 2 - 5 + 1) }))
    })
  })

  describe("Puback, Pubrec, Pubrel, Pubcomp, Unsuback", () => {
    for (const tag of ["Puback", "Pubrec", "Pubrel", "Pubcomp", "Unsuback"]) {
      it(`[MQTT-2.3.1-6] rejects a ${tag} without a valid packet id with BadStructure (-8)`, () => {
        for (const packetId of [0, 65536, undefined, "1"]) {
          assert.include(badStructure(check({ _tag: tag, packetId })).field, tag)
        }
      })
    }
  })

  describe("Subscribe", () => {
    it("[MQTT-2.3.1-1] rejects a SUBSCRIBE without a valid packet id with BadStructure (-8)", () => {
      badStructure(check({ ...subscribe, packetId: 0 }))
      badStructure(check({ ...subscribe, packetId: undefined }))
    })

    it("[MQTT-3.8.3-3] rejects a SUBSCRIBE with no subscription with BadStructure (-8)", () => {
      const reason = badStructure(check({ ...subscribe, subscriptions: [] }))
      assert.include(reason.detail, "[MQTT-3.8.3-3]")
      badStructure(check({ ...subscribe, subscriptions: undefined }))
      badStructure(check({ ...subscribe, subscriptions: { topicFilter: "a", qos: 0 } }))
    })

    it("[MQTT-3.8.3-1] [MQTT-4.7.1-2] [MQTT-4.7.1-3] rejects an invalid topic filter with InvalidTopic (-1)", () => {
      for (const topicFilter of ["a#", "a/#/b", "a+", ""]) {
        const subscriptions = [{ topicFilter: "ok", qos: 0 }, { topicFilter, qos: 1 }]
        const reason = expectReason(check({ ...subscribe, subscriptions }), "InvalidTopic", -1)
        assert.strictEqual((reason as MqttError.InvalidTopic).kind, "topicFilter")
        assert.strictEqual((reason as MqttError.InvalidTopic).topic, topicFilter)
      }
      const one = (topicFilter: string) => check({ ...subscribe, subscriptions: [{ topicFilter, qos: 0 }] })
      expectReason(one("\u0000"), "TopicnameTruncated", -7)
      expectReason(one("\udc00"), "BadUtf8String", -5)
    })

    it("[MQTT-3.3.1-4] rejects a requested QoS outside 0..2 with BadQos (-9)", () => {
      const reason = badQos(check({ ...subscribe, subscriptions: [{ topicFilter: "a/+", qos: 3 }] }))
      assert.include(reason.context, "a/+")
    })

    it("rejects malformed subscriptions with BadStructure (-8)", () => {
      for (const subscription of [null, "a/b", { qos: 0 }, { topicFilter: 1, qos: 0 }]) {
        badStructure(check({ ...subscribe, subscriptions: [subscription] }))
      }
    })

    it("rejects a SUBSCRIBE over 268435455 bytes after the fixed header with BadStructure (-8)", () => {
      const filter = "€".repeat(21845) // 65535 bytes + 2 (length) + 1 (QoS) = 65538 bytes per subscription
      const fits = Math.floor((268435455 - 2) / 65538)
      const subscriptions = Array.from({ length: fits }, () => ({ topicFilter: filter, qos: 0 }))
      assert.isUndefined(check({ ...subscribe, subscriptions }))
      const oneMore = [...subscriptions, { topicFilter: filter, qos: 0 }]
      const reason = badStructure(check({ ...subscribe, subscriptions: oneMore }))
      assert.include(reason.detail, "268435455")
    })
  })

  describe("Suback", () => {
    it("rejects a SUBACK without a valid packet id or return codes with BadStructure (-8)", () => {
      badStructure(check({ _tag: "Suback", packetId: 0, returnCodes: [0] }))
      badStructure(check({ _tag: "Suback", packetId: 1, returnCodes: [] }))
      badStructure(check({ _tag: "Suback", packetId: 1, returnCodes: "0" }))
    })

    it("[MQTT-3.9.3-2] rejects a return code outside {0, 1, 2, 0x80} with BadStructure (-8)", () => {
      for (const code of [3, 0x81, -1, 1.5, "0", undefined]) {
        badStructure(check({ _tag: "Suback", packetId: 1, returnCodes: [0, code] }))
      }
    })
  })

  describe("Unsubscribe", () => {
    it("[MQTT-2.3.1-1] rejects an UNSUBSCRIBE without a valid packet id with BadStructure (-8)", () => {
      badStructure(check({ ...unsubscribe, packetId: 65536 }))
    })

    it("[MQTT-3.10.3-2] rejects an UNSUBSCRIBE with no topic filter with BadStructure (-8)", () => {
      const reason = badStructure(check({ ...unsubscribe, topicFilters: [] }))
      assert.include(reason.detail, "[MQTT-3.10.3-2]")
      badStructure(check({ ...unsubscribe, topicFilters: "a/b" }))
    })

    it("[MQTT-3.10.3-1] rejects an invalid topic filter with InvalidTopic (-1) or a string error", () => {
      const reason = expectReason(check({ ...unsubscribe, topicFilters: ["a", "a/#/b"] }), "InvalidTopic", -1)
      assert.strictEqual((reason as MqttError.InvalidTopic).topic, "a/#/b")
      expectReason(check({ ...unsubscribe, topicFilters: [""] }), "InvalidTopic", -1)
      expectReason(check({ ...unsubscribe, topicFilters: ["a\u0000"] }), "TopicnameTruncated", -7)
      badStructure(check({ ...unsubscribe, topicFilters: [42] }))
    })

    it("rejects an UNSUBSCRIBE over 268435455 bytes after the fixed header with BadStructure (-8)", () => {
      const filter = "€".repeat(21845) // 65535 bytes + 2 (length) = 65537 bytes per filter
      const fits = Math.floor((268435455 - 2) / 65537)
      const topicFilters = Array.from({ length: fits }, () => filter)
      assert.isUndefined(check({ ...unsubscribe, topicFilters }))
      badStructure(check({ ...unsubscribe, topicFilters: [...topicFilters, filter] }))
    })
  })

  describe("malformed input", () => {
    it("rejects an unknown _tag with BadStructure (-8)", () => {
      for (const _tag of ["Auth", "publish", undefined, 3]) {
        assert.strictEqual(badStructure(check({ _tag })).field, "packet _tag")
      }
    })

    it("rejects values that are not objects with BadStructure (-8)", () => {
      for (const value of [null, undefined, 42, "Publish", true, Symbol("p")]) badStructure(check(value))
    })

    it("rejects a known _tag with missing fields without throwing", () => {
      for (const tag of ["Connect", "Connack", "Publish", "Puback", "Subscribe", "Suback", "Unsubscribe"]) {
        assert.isDefined(check({ _tag: tag }), tag)
      }
    })

    it("property: never throws for fc.anything()", () => {
      fc.assert(
        fc.property(fc.anything({ withBigInt: true, withTypedArray: true, withNullPrototype: true }), (value) => {
          const error = check(value)
          assert.isTrue(error === undefined || MqttError.isMqttError(error))
          if (error !== undefined) assert.isString(error.message)
        }),
        { numRuns: 500 }
      )
    })

    it("property: never throws for packets of every type with arbitrary fields", () => {
      const tags = [
        "Connect",
        "Connack",
        "Publish",
        "Puback",
        "Pubrec",
        "Pubrel",
        "Pubcomp",
        "Subscribe",
        "Suback",
        "Unsubscribe",
        "Unsuback",
        "Pingreq",
        "Pingresp",
        "Disconnect"
      ]
      const field = fc.oneof(
        fc.anything({ withTypedArray: true, withNullPrototype: true }),
        fc.constantFrom(0, 1, 2, 3, 4, 65535, 65536, true, false, "", "a/#", "a/+", "\u0000", "\ud800", bytes(2)),
        fc.array(fc.record({ topicFilter: fc.oneof(fc.string(), fc.anything()), qos: fc.anything() }), {
          maxLength: 3
        }),
        fc.record({
          topic: fc.string(),
          payload: fc.anything({ withTypedArray: true }),
          qos: fc.nat(3),
          retain: fc.boolean()
        })
      )
      const packet = fc.record(
        {
          _tag: fc.constantFrom(...tags),
          protocolLevel: field,
          clientId: field,
          cleanSession: field,
          keepalive: field,
          username: field,
          password: field,
          will: field,
          sessionPresent: field,
          returnCode: field,
          topic: field,
          payload: field,
          qos: field,
          retain: field,
          dup: field,
          packetId: field,
          subscriptions: field,
          returnCodes: field,
          topicFilters: field
        },
        { requiredKeys: ["_tag"] }
      )
      fc.assert(
        fc.property(packet, (value) => {
          const error = check(value)
          assert.isTrue(error === undefined || MqttError.isMqttError(error))
          if (error !== undefined) assert.isString(error.message)
        }),
        { numRuns: 2000 }
      )
    })

    it("property: valid generated PUBLISH packets pass", () => {
      const topic = fc
        .string({ unit: fc.constantFrom("a", "/", "$", "€", "𝄞", "\uFEFF"), minLength: 1 })
      fc.assert(
        fc.property(
          topic,
          fc.uint8Array({ maxLength: 64 }),
          fc.constantFrom(0, 1, 2),
          fc.boolean(),
          fc.boolean(),
          fc.integer({ min: 1, max: 65535 }),
          (topic, payload, qos, retain, dup, packetId) => {
            const packet: Packet.Publish = qos === 0
              ? { _tag: "Publish", topic, payload, qos, retain, dup: false }
              : { _tag: "Publish", topic, payload, qos, retain, dup, packetId }
            assert.isUndefined(Validate.packet(packet))
          }
        )
      )
    })
  })
})
