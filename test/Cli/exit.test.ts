/**
 * The CLI's failure reporting without processes: the exit code of every `MqttError` reason, the one stderr line of
 * each failure kind, and the output line of `sub` (`payload` or `topic payload`, bytes kept as they are).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Runtime from "effect/Runtime"
import * as Exit from "../../src/Cli/Exit.ts"
import { formatMessage } from "../../src/Cli/Sub.ts"
import * as MqttError from "../../src/Errors/MqttError.ts"

const codeOf = (reason: MqttError.MqttErrorReason) => Exit.exitCodeOf(MqttError.make(reason))

describe("Cli/Exit", () => {
  it("input effect-mqtt refuses is a usage error: 2", () => {
    assert.strictEqual(codeOf(new MqttError.BadQos({ qos: 3, context: "publish" })), 2)
    assert.strictEqual(codeOf(new MqttError.InvalidTopic({ topic: "a/+", kind: "topicName", detail: "x" })), 2)
    assert.strictEqual(codeOf(new MqttError.BadProtocol({ url: "foo://x", detail: "x" })), 2)
    assert.strictEqual(codeOf(new MqttError.BadMqttOption({ option: "clientId", value: "", detail: "x" })), 2)
    assert.strictEqual(codeOf(new MqttError.ZeroLenWillTopic()), 2)
  })

  it("refused by the broker or by TLS: 3; timeouts: 4; transport and the rest: 1", () => {
    assert.strictEqual(codeOf(new MqttError.ConnectionRefused({ returnCode: 4 })), 3)
    assert.strictEqual(codeOf(new MqttError.ConnectionRefused({ returnCode: 3 })), 3)
    assert.strictEqual(codeOf(new MqttError.TlsVerificationFailed({ url: "u", tlsCode: "X", detail: "d" })), 3)
    assert.strictEqual(codeOf(new MqttError.ConnectTimeout({ url: "u", timeoutMillis: 1 })), 4)
    assert.strictEqual(codeOf(new MqttError.KeepaliveTimeout({ keepaliveSeconds: 1, timeoutMillis: 1 })), 4)
    assert.strictEqual(codeOf(new MqttError.TransportError({ operation: "open", url: "u", detail: "ECONNREFUSED" })), 1)
    assert.strictEqual(codeOf(new MqttError.SubscribeRejected({ topicFilter: "a" })), 1)
    assert.strictEqual(codeOf(new MqttError.Disconnected({ operation: "publish" })), 1)
  })

  it("one line per failure: reason tag and Paho code for MqttError, plain text for the CLI's own", () => {
    const mqtt = Exit.report(MqttError.make(new MqttError.BadQos({ qos: 3, context: "publish" })))
    assert.deepStrictEqual(mqtt, { line: "error: BadQos (Paho -9 BAD_QOS): publish: QoS 3 is not 0, 1 or 2", code: 2 })
    assert.deepStrictEqual(Exit.report(new Exit.UsageError({ message: "bad" })), { line: "error: bad", code: 2 })
    const timeout = Exit.report(new Exit.Timeout({ message: "slow" }))
    assert.deepStrictEqual(timeout, { line: "error: Timeout: slow", code: 4 })
    assert.deepStrictEqual(Exit.report(new Exit.Failure({ message: "lost" })), { line: "error: lost", code: 1 })
  })

  it("Exit carries its code to the runtime and is marked as reported", () => {
    const exit = new Exit.Exit({ code: 3 })
    assert.strictEqual(Runtime.getErrorExitCode(exit), 3)
    assert.strictEqual(exit[Runtime.errorReported], true)
  })
})

describe("Cli/Sub formatMessage", () => {
  const message = {
    _tag: "Publish",
    topic: "a/b",
    payload: new Uint8Array([0x68, 0x69, 0xff]),
    qos: 0,
    retain: false,
    dup: false
  } as const

  it("writes the payload bytes unchanged, then a newline; -v puts the topic and a space first", () => {
    assert.deepStrictEqual([...formatMessage(message, false)], [0x68, 0x69, 0xff, 0x0a])
    const verbose = [...new TextEncoder().encode("a/b "), 0x68, 0x69, 0xff, 0x0a]
    assert.deepStrictEqual([...formatMessage(message, true)], verbose)
  })
})
