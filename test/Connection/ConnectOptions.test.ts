import { assert, describe, it } from "@effect/vitest"
import { Duration, Redacted, Result } from "effect"
import * as ConnectOptions from "../../src/Connection/ConnectOptions.ts"
import type * as MqttError from "../../src/Errors/MqttError.ts"

const random = Uint8Array.of(0xde, 0xad, 0xbe, 0xef, 0x01, 0x02)

const ok = (options: ConnectOptions.ConnectOptions): ConnectOptions.Resolved => {
  const result = ConnectOptions.resolve(options, random)
  if (Result.isFailure(result)) throw new Error(`expected success, got ${result.failure.message}`)
  return result.success
}

const fails = (options: ConnectOptions.ConnectOptions): MqttError.MqttError => {
  const result = ConnectOptions.resolve(options, random)
  if (Result.isSuccess(result)) throw new Error("expected a failure")
  return result.failure
}

describe("ConnectOptions.resolve: URLs", () => {
  it.each([
    ["mqtt://broker", "tcp", "broker", 1883],
    ["tcp://broker", "tcp", "broker", 1883],
    ["mqtt://broker:1884", "tcp", "broker", 1884],
    ["mqtts://broker", "tls", "broker", 8883],
    ["ssl://broker", "tls", "broker", 8883],
    ["tls://broker:9999", "tls", "broker", 9999],
    ["ws://broker", "ws", "broker", 80],
    ["wss://broker", "wss", "broker", 443],
    ["mqtt://[::1]:1883", "tcp", "::1", 1883],
    ["mqtt://127.0.0.1", "tcp", "127.0.0.1", 1883]
  ] as const)("%s selects %s %s:%i", (url, transport, host, port) => {
    const r = ok({ url })
    assert.strictEqual(r.transport, transport)
    assert.strictEqual(r.host, host)
    assert.strictEqual(r.port, port)
  })

  it("ws and wss default to the path /mqtt and keep a given path and query", () => {
    assert.strictEqual(ok({ url: "ws://broker:8080" }).wsUrl, "ws://broker:8080/mqtt")
    assert.strictEqual(ok({ url: "wss://broker/custom?x=1" }).wsUrl, "wss://broker/custom?x=1")
    assert.strictEqual(ok({ url: "mqtt://broker" }).wsUrl, undefined)
  })

  it.each(["http://broker", "amqp://broker", "not a url", "mqtt://"])("%s fails with BadProtocol (-14)", (url) => {
    const e = fails({ url })
    assert.strictEqual(e.reason._tag, "BadProtocol")
    assert.strictEqual(e.code, -14)
  })

  it("takes user:password@ from the URL, redacts the password and removes it from the URL", () => {
    const r = ok({ url: "mqtt://alice:s%40cret@broker" })
    assert.strictEqual(r.username, "alice")
    assert.deepStrictEqual([...Redacted.value(r.password!)], [...new TextEncoder().encode("s@cret")])
    assert.notInclude(r.url, "cret")
    assert.notInclude(String(r.password), "cret")
  })

  it("explicit username and password win over the URL", () => {
    const r = ok({ url: "mqtt://alice:one@broker", username: "bob", password: Redacted.make("two") })
    assert.strictEqual(r.username, "bob")
    assert.strictEqual(new TextDecoder().decode(Redacted.value(r.password!)), "two")
  })
})

describe("ConnectOptions.resolve: options", () => {
  it("applies the defaults", () => {
    const r = ok({ url: "mqtt://broker" })
    assert.strictEqual(r.clientId, "effect-mqtt-deadbeef0102")
    assert.strictEqual(r.cleanSession, true)
    assert.strictEqual(r.keepalive, 60)
    assert.strictEqual(Duration.toMillis(r.connectTimeout), 30_000)
    assert.strictEqual(Duration.toMillis(r.pingTimeout), 30_000)
    assert.strictEqual(r.will, undefined)
    assert.strictEqual(r.tls, undefined)
  })

  it("an empty client id is allowed with a clean session [MQTT-3.1.3-7]", () => {
    assert.strictEqual(ok({ url: "mqtt://b", clientId: "" }).clientId, "")
  })

  it("an empty client id with a persistent session fails with BadMqttOption (-15) [MQTT-3.1.3-7]", () => {
    const e = fails({ url: "mqtt://b", clientId: "", cleanSession: false })
    assert.strictEqual(e.reason._tag, "BadMqttOption")
    assert.strictEqual(e.code, -15)
  })

  it("a password without a user name fails with BadMqttOption [MQTT-3.1.2-22]", () => {
    const e = fails({ url: "mqtt://b", password: "x" })
    assert.strictEqual(e.reason._tag, "BadMqttOption")
    assert.notInclude(e.message, "\"x\"")
  })

  it.each([-1, 65536, 1.5, Number.NaN])("keepalive %s fails with BadMqttOption", (keepalive) => {
    assert.strictEqual(fails({ url: "mqtt://b", keepalive }).reason._tag, "BadMqttOption")
  })

  it("keepalive 0 disables keepalive; the ping timeout then defaults to 30 s", () => {
    const r = ok({ url: "mqtt://b", keepalive: 0 })
    assert.strictEqual(r.keepalive, 0)
    assert.strictEqual(Duration.toMillis(r.pingTimeout), 30_000)
  })

  it("a will with an empty topic fails with ZeroLenWillTopic (-17)", () => {
    const e = fails({ url: "mqtt://b", will: { topic: "" } })
    assert.strictEqual(e.reason._tag, "ZeroLenWillTopic")
    assert.strictEqual(e.code, -17)
  })

  it("a will with QoS 3 fails with BadQos (-9) [MQTT-3.1.2-14]", () => {
    const e = fails({ url: "mqtt://b", will: { topic: "t", qos: 3 as 0 } })
    assert.strictEqual(e.code, -9)
  })

  it("a will topic with a wildcard fails with InvalidTopic", () => {
    assert.strictEqual(fails({ url: "mqtt://b", will: { topic: "a/#" } }).reason._tag, "InvalidTopic")
  })

  it("a will payload string is UTF-8 encoded", () => {
    const r = ok({ url: "mqtt://b", will: { topic: "status", payload: "gone", qos: 1, retain: true } })
    assert.deepStrictEqual(r.will, { topic: "status", payload: new TextEncoder().encode("gone"), qos: 1, retain: true })
  })

  it("a client id with a lone surrogate fails with BadUtf8String (-5)", () => {
    assert.strictEqual(fails({ url: "mqtt://b", clientId: "a\ud800" }).code, -5)
  })

  it("a username with U+0000 fails with TopicnameTruncated (-7)", () => {
    assert.strictEqual(fails({ url: "mqtt://b", username: "a\u0000" }).code, -7)
  })

  it("timeouts must be positive and finite", () => {
    assert.strictEqual(fails({ url: "mqtt://b", connectTimeout: 0 }).reason._tag, "BadMqttOption")
    assert.strictEqual(fails({ url: "mqtt://b", pingTimeout: "Infinity" }).reason._tag, "BadMqttOption")
    assert.strictEqual(Duration.toMillis(ok({ url: "mqtt://b", connectTimeout: "5 seconds" }).connectTimeout), 5000)
  })

  it("maximumPacketSize must be an integer in 2..268435460", () => {
    assert.strictEqual(fails({ url: "mqtt://b", maximumPacketSize: 1 }).reason._tag, "BadMqttOption")
    assert.strictEqual(fails({ url: "mqtt://b", maximumPacketSize: 268_435_461 }).reason._tag, "BadMqttOption")
    assert.strictEqual(ok({ url: "mqtt://b", maximumPacketSize: 1024 }).maximumPacketSize, 1024)
  })

  it("TLS options need a secure URL; verification is required by default", () => {
    assert.strictEqual(fails({ url: "mqtt://b", tls: { ca: "x" } }).reason._tag, "BadMqttOption")
    assert.strictEqual(ok({ url: "mqtts://b" }).tls?.verify, "required")
    assert.strictEqual(ok({ url: "wss://b", tls: { verify: "none" } }).tls?.verify, "none")
    assert.strictEqual(fails({ url: "mqtts://b", tls: { verify: "maybe" as "none" } }).reason._tag, "BadMqttOption")
    assert.strictEqual(fails({ url: "mqtts://b", tls: { key: "k" } }).reason._tag, "BadMqttOption")
  })
})

describe("ConnectOptions.connectPacket", () => {
  it("carries every field in the CONNECT [MQTT-3.1.2-19] [MQTT-3.1.2-21]", () => {
    const r = ok({ url: "mqtt://u:p@b", clientId: "c", cleanSession: false, keepalive: 10, will: { topic: "w" } })
    const packet = ConnectOptions.connectPacket(r)
    assert.strictEqual(packet.clientId, "c")
    assert.strictEqual(packet.cleanSession, false)
    assert.strictEqual(packet.keepalive, 10)
    assert.strictEqual(packet.username, "u")
    assert.deepStrictEqual([...packet.password!], [0x70])
    assert.strictEqual(packet.will?.topic, "w")
  })

  it("omits absent fields [MQTT-3.1.2-18] [MQTT-3.1.2-20]", () => {
    const packet = ConnectOptions.connectPacket(ok({ url: "mqtt://b", clientId: "c" }))
    assert.isFalse("username" in packet)
    assert.isFalse("password" in packet)
    assert.isFalse("will" in packet)
  })
})
