import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as MqttError from "../../src/Errors/MqttError.ts"

const reasons: ReadonlyArray<readonly [MqttError.MqttErrorReason, number, boolean, string]> = [
  [new MqttError.BadQos({ qos: 3, context: "publish" }), -9, false, "3"],
  [new MqttError.BadUtf8String({ field: "topic name", value: "a\ud800", detail: "lone surrogate" }), -5, false, "topic name"],
  [new MqttError.TopicnameTruncated({ field: "topic name", value: "a\u0000b" }), -7, false, "U+0000"],
  [new MqttError.InvalidTopic({ topic: "a/#/b", kind: "topicFilter", detail: "# must be last" }), -1, false, "a/#/b"],
  [new MqttError.BadStructure({ field: "packetId", value: 0, detail: "not in 1..65535" }), -8, false, "0"],
  [new MqttError.BadProtocol({ url: "http://x", detail: "scheme http" }), -14, false, "http://x"],
  [new MqttError.BadMqttOption({ option: "clientId", value: "", detail: "needs clean session" }), -15, false, "clientId"],
  [new MqttError.WrongMqttVersion({ expected: 5, actual: 4, detail: "user properties" }), -16, false, "5"],
  [new MqttError.ZeroLenWillTopic({}), -17, false, "will topic"],
  [new MqttError.MaxMessagesInflight({ maxInflight: 10 }), -4, true, "10"],
  [new MqttError.NoMoreMsgids({}), -10, true, "65535"],
  [new MqttError.MaxBufferedMessages({ maxBufferedMessages: 5 }), -12, true, "5"],
  [new MqttError.Disconnected({ operation: "publish" }), -3, true, "publish"],
  [new MqttError.OperationIncomplete({ operation: "publish", detail: "client closed" }), -11, true, "client closed"],
  [new MqttError.PersistenceError({ operation: "write", cause: new Error("disk full") }), -2, true, "disk full"],
  [new MqttError.ConnectionRefused({ returnCode: 1 }), -1, false, "UnacceptableProtocolVersion"],
  [new MqttError.ConnectionRefused({ returnCode: 2 }), -1, false, "IdentifierRejected"],
  [new MqttError.ConnectionRefused({ returnCode: 3 }), -1, true, "ServerUnavailable"],
  [new MqttError.ConnectionRefused({ returnCode: 4 }), -1, false, "BadUsernameOrPassword"],
  [new MqttError.ConnectionRefused({ returnCode: 5 }), -1, false, "NotAuthorized"],
  [new MqttError.ConnectTimeout({ url: "mqtt://127.0.0.1:1", timeoutMillis: 30000 }), -1, true, "30000"],
  [new MqttError.KeepaliveTimeout({ keepaliveSeconds: 60, timeoutMillis: 5000 }), -1, true, "5000"],
  [new MqttError.SubscribeRejected({ topicFilter: "secret/#" }), -1, false, "secret/#"],
  [new MqttError.MalformedPacket({ detail: "PUBLISH with QoS 3" }), -1, true, "QoS 3"],
  [new MqttError.ProtocolViolation({ detail: "second CONNACK" }), -1, true, "second CONNACK"],
  [new MqttError.TransportError({ operation: "open", url: "mqtt://127.0.0.1:1", detail: "ECONNREFUSED" }), -1, true, "ECONNREFUSED"],
  [new MqttError.TlsVerificationFailed({ url: "mqtts://x", tlsCode: "SELF_SIGNED_CERT_IN_CHAIN", detail: "x" }), -1, false, "SELF_SIGNED"],
  [new MqttError.PayloadInvalid({ topic: "t/json", direction: "decode", detail: "Expected number" }), -1, false, "t/json"]
]

describe("MqttError", () => {
  it("every reason carries its Paho code, retryability and a message naming the offending value", () => {
    for (const [reason, code, retryable, mentions] of reasons) {
      const error = MqttError.make(reason)
      assert.strictEqual(error.code, code, reason._tag)
      assert.strictEqual(reason.code, code, reason._tag)
      assert.strictEqual(error.pahoName, Object.entries(MqttError.PahoCode).find(([, c]) => c === code)![0])
      assert.strictEqual(error.isRetryable, retryable, reason._tag)
      assert.include(error.message, mentions, reason._tag)
      assert.strictEqual(error.cause, reason)
      assert.isTrue(MqttError.isMqttError(error))
      assert.isTrue(MqttError.isReason(reason))
      assert.isFalse(MqttError.isMqttError(reason))
    }
  })

  it("covers every reason of the union", () => {
    const tags = new Set(reasons.map(([r]) => r._tag))
    assert.strictEqual(tags.size, MqttError.MqttErrorReason.members.length)
  })

  it.effect("users recover by reason with Effect.catchReason", () =>
    Effect.gen(function*() {
      const failing: Effect.Effect<string, MqttError.MqttError> = Effect.fail(
        MqttError.make(new MqttError.BadQos({ qos: 7, context: "subscribe" }))
      )
      const recovered = yield* failing.pipe(
        Effect.catchReason("MqttError", "BadQos", (reason) => Effect.succeed(`qos ${String(reason.qos)} refused`))
      )
      assert.strictEqual(recovered, "qos 7 refused")
      // Other reasons pass through untouched.
      const other = yield* Effect.exit(
        Effect.fail(MqttError.make(new MqttError.NoMoreMsgids({}))).pipe(
          Effect.catchReason("MqttError", "BadQos", () => Effect.succeed("no"))
        )
      )
      assert.isTrue(Exit.isFailure(other))
    }))

  it.effect("users recover by Paho code with MqttError.hasCode", () =>
    Effect.gen(function*() {
      const failing = Effect.fail(MqttError.make(new MqttError.ZeroLenWillTopic({})))
      const recovered = yield* failing.pipe(
        Effect.catchIf(MqttError.hasCode(MqttError.PahoCode.ZERO_LEN_WILL_TOPIC), (e) => Effect.succeed(e.code))
      )
      assert.strictEqual(recovered, -17)
    }))

  it.effect("yields as a failure in Effect.gen", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.gen(function*() {
        return yield* MqttError.make(new MqttError.Disconnected({ operation: "publish" }))
      }))
      assert.isTrue(Exit.isFailure(exit))
    }))
})
