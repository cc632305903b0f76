/**
 * `Connection.connect` against the scripted `FakeBroker` (handshake, timeouts on the `TestClock`, malformed and
 * illegal input, the writer's ordering and batching, DISCONNECT, scope closing, abort) and against a real TCP server
 * that never answers, through the real `NodeTransport`.
 */
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import { TestClock } from "effect/testing"
import * as Codec from "../../src/Codec/Codec.ts"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as ConnectOptions from "../../src/Connection/ConnectOptions.ts"
import * as Connection from "../../src/Connection/Connection.ts"
import * as NodeTransport from "../../src/Connection/NodeTransport.ts"
import * as MqttError from "../../src/Errors/MqttError.ts"
import * as FakeBroker from "../utils/FakeBroker.ts"
import { withLiveClock } from "../utils/live.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

const CONNECT_TIMEOUT_MS = 5_000

const resolve = (options: Partial<ConnectOptions.ConnectOptions> = {}): ConnectOptions.Resolved => {
  const result = ConnectOptions.resolve(
    {
      url: "mqtt://fake.broker",
      clientId: "test-client",
      keepalive: 30,
      connectTimeout: Duration.millis(CONNECT_TIMEOUT_MS),
      ...options
    },
    new Uint8Array(6)
  )
  if (Result.isFailure(result)) throw new Error(`resolve failed: ${result.failure.message}`)
  return result.success
}

const publish = (topic: string, payload: string, qos: Packet.QoS = 0, packetId?: number): Packet.Publish => ({
  _tag: "Publish",
  topic,
  payload: new TextEncoder().encode(payload),
  qos,
  retain: false,
  dup: false,
  ...(qos > 0 ? { packetId: packetId ?? 1 } : {})
})

const subscribe: Packet.Subscribe = { _tag: "Subscribe", packetId: 7, subscriptions: [{ topicFilter: "a/#", qos: 1 }] }

const concat = (...chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

const bytesOf = (bytes: Uint8Array | undefined): Array<number> => (bytes === undefined ? [] : [...bytes])

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes)

/** Connects to a fresh fake broker inside the test's scope. */
const connected = (script: FakeBroker.Script = {}, options: Partial<ConnectOptions.ConnectOptions> = {}) =>
  Effect.gen(function*() {
    const broker = yield* FakeBroker.make(script)
    const link = yield* Connection.connect(broker.socket, resolve(options))
    const conn = yield* broker.connection(1)
    yield* conn.expectPacket("Connect")
    return { broker, link, conn }
  })

/** Runs the handshake against a fresh fake broker, expecting it to fail; the connection's scope is closed after. */
const connectFails = (script: FakeBroker.Script, options: Partial<ConnectOptions.ConnectOptions> = {}) =>
  Effect.gen(function*() {
    const broker = yield* FakeBroker.make(script)
    const error = yield* Effect.flip(Effect.scoped(Connection.connect(broker.socket, resolve(options))))
    const conn = yield* broker.connection(1)
    return { broker, conn, error }
  })

/** Pulls until `count` packets arrived. */
const pullPackets = (link: Connection.Link, count: number) =>
  Effect.gen(function*() {
    const packets: Array<Packet.ServerPacket> = []
    while (packets.length < count) packets.push(...(yield* link.pull))
    return packets
  })

/** Waits for a fiber with a real-time bound, so that a hang fails the test instead of timing it out. */
const awaitBounded = <A, E>(fiber: Fiber.Fiber<A, E>, what: string) =>
  Fiber.await(fiber).pipe(
    Effect.timeoutOrElse({
      duration: Duration.seconds(2),
      orElse: () => Effect.die(new Error(`hung: ${what}`))
    }),
    withLiveClock
  )

const assertReason = <T extends MqttError.ReasonTag>(error: MqttError.MqttError, tag: T) => {
  assert.strictEqual(error.reason._tag, tag, `expected ${tag}, got ${error.reason._tag}: ${error.message}`)
  return error.reason as Extract<MqttError.MqttErrorReason, { _tag: T }>
}

// ---------------------------------------------------------------------------------------------------------------------
// The handshake
// ---------------------------------------------------------------------------------------------------------------------

describe("Connection.connect: handshake", () => {
  it.effect("CONNECT is the first packet, in its own write, and carries the options [MQTT-3.1.0-1]", () =>
    Effect.gen(function*() {
      const options = resolve({
        clientId: "client-42",
        cleanSession: false,
        keepalive: 42,
        username: "alice",
        password: "s3cret",
        will: { topic: "clients/client-42/status", payload: "gone", qos: 1, retain: true }
      })
      const broker = yield* FakeBroker.make()
      yield* Connection.connect(broker.socket, options)
      const conn = yield* broker.connection()
      const connect = conn.received[0]
      assert.strictEqual(connect?._tag, "Connect")
      if (connect?._tag !== "Connect") return
      assert.strictEqual(connect.protocolLevel, 4)
      assert.strictEqual(connect.clientId, "client-42")
      assert.strictEqual(connect.cleanSession, false)
      assert.strictEqual(connect.keepalive, 42)
      assert.strictEqual(connect.username, "alice")
      assert.strictEqual(text(connect.password!), "s3cret")
      assert.strictEqual(connect.will?.topic, "clients/client-42/status")
      assert.strictEqual(text(connect.will!.payload), "gone")
      assert.strictEqual(connect.will?.qos, 1)
      assert.strictEqual(connect.will?.retain, true)
      // Exactly the bytes of the CONNECT for these options, as the first write on the connection.
      const expected = FakeBroker.encode(ConnectOptions.connectPacket(options))
      assert.deepStrictEqual(bytesOf(conn.writes[0]), bytesOf(expected))
      // 10 len 00 04 "MQTT" 04, then the flags: user name, password, will retain, will QoS 1, will flag, no clean
      // session, reserved bit 0 [MQTT-3.1.2-9] [MQTT-3.1.2-19] [MQTT-3.1.2-21].
      assert.strictEqual(conn.writes[0]![0], 0x10)
      assert.strictEqual(conn.writes[0]![9], 0b1110_1100)
      assert.deepStrictEqual(conn.tags(), ["Connect"])
      assert.deepStrictEqual(conn.violations, [])
    }))

  it.effect("CONNECT with defaults: clean session, no user name, password, will [MQTT-3.1.2-11] [MQTT-3.1.2-18]", () =>
    Effect.gen(function*() {
      const { conn } = yield* connected({}, { clientId: "plain", keepalive: 0 })
      const connect = conn.received[0] as Packet.Connect
      assert.strictEqual(connect.clientId, "plain")
      assert.strictEqual(connect.cleanSession, true)
      assert.strictEqual(connect.keepalive, 0)
      assert.isUndefined(connect.username)
      assert.isUndefined(connect.password)
      assert.isUndefined(connect.will)
      // 10 len 00 04 "MQTT" 04 flags: only clean session (0x02).
      assert.strictEqual(conn.writes[0]![9], 0x02)
    }))

  it.effect.each([true, false])("CONNACK 0 gives a link with sessionPresent %s", (sessionPresent) =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected({ connack: { sessionPresent } })
      assert.strictEqual(link.connack._tag, "Connack")
      assert.strictEqual(link.connack.returnCode, 0)
      assert.strictEqual(link.connack.sessionPresent, sessionPresent)
      assert.strictEqual(link.url, "mqtt://fake.broker")
      assert.isTrue(conn.isOpen)
    }))

  it.effect.each([
    [1, "UnacceptableProtocolVersion", false],
    [2, "IdentifierRejected", false],
    [3, "ServerUnavailable", true],
    [4, "BadUsernameOrPassword", false],
    [5, "NotAuthorized", false]
  ] as const)("CONNACK return code %i is ConnectionRefused %s (retryable: %s); the client closes", ([code, name, ok]) =>
    Effect.gen(function*() {
      const { conn, error } = yield* connectFails({ connack: { returnCode: code } })
      const reason = assertReason(error, "ConnectionRefused")
      assert.strictEqual(reason.returnCode, code)
      assert.strictEqual(reason.returnCodeName, name)
      assert.strictEqual(error.isRetryable, ok)
      assert.strictEqual(conn.closedBy, "client")
    }))

  it.effect("a silent broker: ConnectTimeout after exactly the connect timeout, then the connection is closed", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ connack: "silent" })
      const fiber = yield* Effect.forkChild(Effect.scoped(Connection.connect(broker.socket, resolve())))
      const conn = yield* broker.connection()
      yield* conn.expectPacket("Connect")
      yield* TestClock.adjust(CONNECT_TIMEOUT_MS - 1)
      assert.isUndefined(fiber.pollUnsafe(), "still waiting 1 ms before the timeout")
      assert.isTrue(conn.isOpen)
      yield* TestClock.adjust(1)
      const exit = yield* awaitBounded(fiber, "connect after the timeout")
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(exit)
      const reason = assertReason(error, "ConnectTimeout")
      assert.strictEqual(reason.timeoutMillis, CONNECT_TIMEOUT_MS)
      assert.strictEqual(reason.url, "mqtt://fake.broker")
      assert.isTrue(error.isRetryable)
      assert.strictEqual(conn.closedBy, "client")
      assert.strictEqual(broker.connections, 1)
    }))

  it.effect("a CONNACK arriving 1 ms before the timeout is in time", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ connack: "silent" })
      const fiber = yield* Effect.forkChild(Connection.connect(broker.socket, resolve()))
      const conn = yield* broker.connection()
      yield* conn.expectPacket("Connect")
      yield* TestClock.adjust(CONNECT_TIMEOUT_MS - 1)
      yield* conn.send({ _tag: "Connack", sessionPresent: false, returnCode: 0 })
      const exit = yield* awaitBounded(fiber, "connect")
      assert.isTrue(Exit.isSuccess(exit))
    }))

  it.effect.each([
    ["20 03 00 00 00", "a CONNACK of remaining length 3"],
    ["20 02 02 00", "reserved acknowledge flags"],
    ["20 02 00 06", "a reserved return code"],
    ["21 02 00 00", "reserved fixed-header flags [MQTT-2.2.2-2]"],
    ["00 00", "reserved packet type 0"]
  ])("malformed CONNACK bytes %s (%s) are MalformedPacket, and the client closes", ([bytes]) =>
    Effect.gen(function*() {
      const { conn, error } = yield* connectFails({ connack: { raw: FakeBroker.hex(bytes) } })
      assertReason(error, "MalformedPacket")
      assert.strictEqual(conn.closedBy, "client")
    }))

  it.effect.each([
    ["PUBLISH", FakeBroker.encode(publish("a/b", "early"))],
    ["SUBACK", FakeBroker.encode({ _tag: "Suback", packetId: 1, returnCodes: [0] })],
    ["PINGRESP", FakeBroker.encode({ _tag: "Pingresp" })]
  ] as const)("a %s before CONNACK is a ProtocolViolation [MQTT-3.2.0-1]", ([, bytes]) =>
    Effect.gen(function*() {
      const connack = FakeBroker.encode({ _tag: "Connack", sessionPresent: false, returnCode: 0 })
      const { conn, error } = yield* connectFails({ connack: { raw: concat(bytes, connack) } })
      assertReason(error, "ProtocolViolation")
      assert.strictEqual(conn.closedBy, "client")
    }))

  it.effect("the broker closing the connection mid-handshake is a TransportError", () =>
    Effect.gen(function*() {
      const { conn, error } = yield* connectFails({ connack: "close" })
      const reason = assertReason(error, "TransportError")
      assert.strictEqual(reason.operation, "read")
      assert.strictEqual(reason.url, "mqtt://fake.broker")
      assert.isTrue(error.isRetryable)
      assert.strictEqual(conn.closedBy, "broker")
    }))

  it.effect("a reader that cannot open is a TransportError (open)", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ refuse: true })
      const error = yield* Effect.flip(Effect.scoped(Connection.connect(broker.socket, resolve())))
      const reason = assertReason(error, "TransportError")
      assert.strictEqual(reason.operation, "open")
      assert.include(reason.detail, "ECONNREFUSED")
      assert.strictEqual(broker.connections, 0)
    }))

  it.effect("a CONNACK split one byte per read still completes the handshake", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ connack: "silent", chunksPerPull: 1 })
      const fiber = yield* Effect.forkChild(Connection.connect(broker.socket, resolve()))
      const conn = yield* broker.connection()
      yield* conn.expectPacket("Connect")
      yield* conn.sendRaw(FakeBroker.hex("20 02 01 00"), { split: 1 })
      const link = yield* Fiber.join(fiber)
      assert.strictEqual(link.connack.sessionPresent, true)
    }))

  it.effect("packets in the same read as CONNACK are delivered by the first pull", () =>
    Effect.gen(function*() {
      const connack = FakeBroker.encode({ _tag: "Connack", sessionPresent: false, returnCode: 0 })
      const early = publish("early/topic", "hello", 1, 9)
      const { link } = yield* connected({ connack: { raw: concat(connack, FakeBroker.encode(early)) } })
      const packets = yield* link.pull
      assert.strictEqual(packets.length, 1)
      const received = packets[0] as Packet.Publish
      assert.strictEqual(received._tag, "Publish")
      assert.strictEqual(received.topic, "early/topic")
      assert.strictEqual(received.packetId, 9)
      assert.strictEqual(text(received.payload), "hello")
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// The established link
// ---------------------------------------------------------------------------------------------------------------------

describe("Connection.connect: the link", () => {
  it.effect("send writes packets in order and they arrive decoded at the broker", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      const sent: ReadonlyArray<Connection.OutgoingPacket> = [
        subscribe,
        publish("a/1", "one", 1, 1),
        publish("a/2", "two", 2, 2),
        { _tag: "Pubrel", packetId: 2 },
        { _tag: "Puback", packetId: 3 },
        { _tag: "Unsubscribe", packetId: 8, topicFilters: ["a/#"] },
        { _tag: "Pingreq" }
      ]
      for (const packet of sent) yield* link.send(packet)
      for (const packet of sent) {
        const received = yield* conn.nextPacket
        assert.strictEqual(received._tag, packet._tag)
        assert.deepStrictEqual(bytesOf(FakeBroker.encode(received)), bytesOf(FakeBroker.encode(packet)))
      }
      assert.deepStrictEqual(conn.tags(), ["Connect", ...sent.map((p) => p._tag)])
      assert.deepStrictEqual(conn.violations, [])
    }))

  it.effect("offers made before the writer runs go out in ONE socket write, in order", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      const packets = Array.from({ length: 20 }, (_, i) => publish(`batch/${i}`, `payload ${i}`, 1, i + 1))
      const results = yield* Effect.sync(() => packets.map((packet) => link.offer(packet)))
      assert.deepStrictEqual(results, packets.map(() => undefined))
      for (let i = 0; i < packets.length; i++) {
        const received = yield* conn.expectPacket("Publish")
        assert.strictEqual(received.topic, `batch/${i}`)
      }
      assert.strictEqual(conn.writes.length, 2, "CONNECT, then one write with the whole batch")
      assert.deepStrictEqual(bytesOf(conn.writes[1]), bytesOf(concat(...packets.map(FakeBroker.encode))))
    }))

  it.effect("send waits until its packet is written", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      yield* link.send(publish("x", "y"))
      // Written means recorded by the broker: no waiting needed.
      assert.deepStrictEqual(conn.tags(), ["Connect", "Publish"])
    }))

  it.effect("lastSentAt and lastReceivedAt follow the Clock; receivedCount counts reads", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      assert.strictEqual(link.lastSentAt(), 0)
      assert.strictEqual(link.lastReceivedAt(), 0)
      const before = link.receivedCount()
      yield* TestClock.adjust(1_000)
      yield* link.send({ _tag: "Pingreq" })
      assert.strictEqual(link.lastSentAt(), 1_000)
      // The fake broker answered the PINGREQ at once (time 1000).
      assert.deepStrictEqual((yield* link.pull).map((p) => p._tag), ["Pingresp"])
      assert.strictEqual(link.lastReceivedAt(), 1_000)
      assert.strictEqual(link.receivedCount(), before + 1)
      yield* TestClock.adjust(500)
      yield* conn.send({ _tag: "Puback", packetId: 4 })
      const packets = yield* link.pull
      assert.deepStrictEqual(packets.map((p) => p._tag), ["Puback"])
      assert.strictEqual(link.lastReceivedAt(), 1_500)
      assert.strictEqual(link.receivedCount(), before + 2)
      assert.strictEqual(link.lastSentAt(), 1_000)
    }))

  it.effect.each([
    ["a second CONNACK", { _tag: "Connack", sessionPresent: false, returnCode: 0 }],
    ["SUBSCRIBE", subscribe],
    ["UNSUBSCRIBE", { _tag: "Unsubscribe", packetId: 3, topicFilters: ["t"] }],
    ["PINGREQ", { _tag: "Pingreq" }],
    ["DISCONNECT", { _tag: "Disconnect" }],
    ["CONNECT", { _tag: "Connect", protocolLevel: 4, clientId: "evil", cleanSession: true, keepalive: 0 }]
  ] as const)("%s from the broker fails the pull with ProtocolViolation and closes [MQTT-4.8.0-1]", ([, packet]) =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      yield* conn.send(packet as Packet.Packet)
      const error = yield* Effect.flip(link.pull)
      assertReason(error, "ProtocolViolation")
      assert.strictEqual(conn.closedBy, "client")
      // The link is dead: later pulls fail the same way and nothing more can be queued.
      assert.strictEqual(yield* Effect.flip(link.pull), error)
      assert.strictEqual(link.offer({ _tag: "Pingreq" }), error)
    }))

  it.effect("SUBSCRIBE bytes (82 ...) from the broker are a ProtocolViolation [MQTT-4.8.0-1]", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      // SUBSCRIBE id 1, filter "a", QoS 0
      yield* conn.sendRaw(FakeBroker.hex("82 06 00 01 00 01 61 00"))
      assertReason(yield* Effect.flip(link.pull), "ProtocolViolation")
      assert.strictEqual(conn.closedBy, "client")
    }))

  it.effect.each([
    ["30 02 00 00", "a PUBLISH with an empty topic"],
    ["36 05 00 01 61 00 01", "a PUBLISH with QoS 3 [MQTT-3.3.1-4]"],
    ["40 02 00 00", "a PUBACK with packet id 0 [MQTT-2.3.1-1]"],
    ["d0 01 00", "a PINGRESP with a body"],
    ["d1 00", "a PINGRESP with flags set [MQTT-2.2.2-2]"],
    ["f0 00", "reserved packet type 15"],
    ["30 ff ff ff ff 7f", "a remaining length over 4 bytes"]
  ])("malformed bytes after connect (%s: %s) fail the pull with MalformedPacket and close the connection", ([bytes]) =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      yield* conn.sendRaw(FakeBroker.hex(bytes))
      assertReason(yield* Effect.flip(link.pull), "MalformedPacket")
      assert.strictEqual(conn.closedBy, "client")
    }))

  it.effect("valid packets before malformed bytes in one read are dropped with the connection", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      yield* conn.sendRaw(concat(FakeBroker.encode({ _tag: "Pingresp" }), FakeBroker.hex("f0 00")))
      assertReason(yield* Effect.flip(link.pull), "MalformedPacket")
      assert.strictEqual(conn.closedBy, "client")
    }))

  it.effect.each([
    ["QoS 3", { ...publish("a/b", "x"), qos: 3 as unknown as Packet.QoS }, "BadQos"],
    ["a wildcard topic", publish("a/+", "x"), "InvalidTopic"],
    ["packet id 0", { _tag: "Puback", packetId: 0 }, "BadStructure"],
    ["an empty SUBSCRIBE", { _tag: "Subscribe", packetId: 1, subscriptions: [] }, "BadStructure"]
  ] as const)("offer of a packet with %s returns the typed error and writes nothing", ([, packet, tag]) =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      const error = link.offer(packet as Connection.OutgoingPacket)
      assert.isDefined(error)
      assertReason(error!, tag as MqttError.ReasonTag)
      assertReason(yield* Effect.flip(link.send(packet as Connection.OutgoingPacket)), tag as MqttError.ReasonTag)
      // The link still works, and its next write holds only the valid packet.
      yield* link.send({ _tag: "Pingreq" })
      yield* conn.expectPacket("Pingreq")
      assert.strictEqual(conn.writes.length, 2)
      assert.deepStrictEqual(bytesOf(conn.writes[1]), [0xc0, 0x00])
    }))

  it.effect("offering CONNECT on a link is a ProtocolViolation and writes nothing [MQTT-3.1.0-2]", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      const connect = ConnectOptions.connectPacket(resolve())
      const error = link.offer(connect as unknown as Connection.OutgoingPacket)
      assertReason(error!, "ProtocolViolation")
      yield* link.send({ _tag: "Pingreq" })
      yield* conn.expectPacket("Pingreq")
      assert.deepStrictEqual(conn.tags(), ["Connect", "Pingreq"])
      assert.deepStrictEqual(conn.violations, [])
    }))

  it.effect("after disconnect, DISCONNECT was the last packet and offers fail with Disconnected [MQTT-3.14.4-2]", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const broker = yield* FakeBroker.make()
      const link = yield* Scope.provide(Connection.connect(broker.socket, resolve()), scope)
      const conn = yield* broker.connection()
      assert.isUndefined(link.offer(publish("before", "1")))
      yield* link.disconnect
      assert.deepStrictEqual(conn.tags(), ["Connect", "Publish", "Disconnect"])
      assertReason(link.offer(publish("after", "2"))!, "Disconnected")
      assertReason(yield* Effect.flip(link.send({ _tag: "Pingreq" })), "Disconnected")
      yield* link.disconnect // a second disconnect sends nothing
      // [MQTT-3.14.4-1]: closing the link's scope then closes the connection.
      yield* Scope.close(scope, Exit.void)
      yield* conn.awaitClosed
      assert.strictEqual(conn.closedBy, "client")
      assert.isTrue(conn.clientEnded)
      assert.deepStrictEqual(conn.tags(), ["Connect", "Publish", "Disconnect"])
      assert.deepStrictEqual(bytesOf(conn.writes[conn.writes.length - 1]!.slice(-2)), [0xe0, 0x00])
    }))

  it.effect("closing the scope closes the connection, fails queued sends with Disconnected, and a pending pull", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const broker = yield* FakeBroker.make()
      const link = yield* Scope.provide(Connection.connect(broker.socket, resolve()), scope)
      const conn = yield* broker.connection()
      const pull = yield* Effect.forkChild(link.pull)
      // Hold the socket so the first send blocks in the write and the others stay queued behind it.
      yield* conn.hold
      const first = yield* Effect.forkChild(link.send(publish("first", "1")))
      yield* conn.awaitHeldWrite
      const queued = yield* Effect.forkChild(link.send(publish("queued", "2")))
      yield* Effect.yieldNow
      yield* Scope.close(scope, Exit.void)
      const queuedExit = yield* awaitBounded(queued, "a queued send after the scope closed")
      assertReason(yield* Effect.flip(queuedExit), "Disconnected")
      const pullExit = yield* awaitBounded(pull, "a pending pull after the scope closed")
      assert.isTrue(Exit.isFailure(pullExit))
      assert.isFalse(conn.isOpen)
      assert.strictEqual(conn.closedBy, "client")
      assertReason(link.offer({ _tag: "Pingreq" })!, "Disconnected")
      // `first` never completes: see the expected failure below.
      yield* Fiber.interrupt(first)
      assert.deepStrictEqual(conn.tags(), ["Connect"])
    }))

  it.effect("connectIn uses the scope it is given: closing it closes the link; a refusal leaves closing to the caller", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const scope = yield* Scope.make()
      const link = yield* Connection.connectIn(broker.socket, resolve(), scope)
      const conn = yield* broker.connection(1)
      yield* conn.expectPacket("Connect")
      yield* Scope.close(scope, Exit.void)
      yield* conn.awaitClosed
      assert.strictEqual(conn.closedBy, "client")
      assertReason(link.offer({ _tag: "Pingreq" })!, "Disconnected")

      const refusing = yield* FakeBroker.make({ connack: { returnCode: 5 } })
      const refusedScope = yield* Scope.make()
      const error = yield* Effect.flip(Connection.connectIn(refusing.socket, resolve(), refusedScope))
      assertReason(error, "ConnectionRefused")
      const refused = yield* refusing.connection(1)
      assert.isTrue(refused.isOpen, "still open: the scope is the caller's to close")
      yield* Scope.close(refusedScope, Exit.void)
      yield* refused.awaitClosed
      assert.strictEqual(refused.closedBy, "client")
    }))

  // Regression: found by this test and fixed in src.
  it.effect("closing the scope fails a send whose write is blocked by backpressure (no hang)", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const broker = yield* FakeBroker.make()
      const link = yield* Scope.provide(Connection.connect(broker.socket, resolve()), scope)
      const conn = yield* broker.connection()
      yield* conn.hold
      const blocked = yield* Effect.forkChild(link.send(publish("blocked", "1")))
      yield* conn.awaitHeldWrite
      yield* Scope.close(scope, Exit.void)
      const exit = yield* awaitBounded(blocked, "a send blocked in a write after the scope closed")
      assertReason(yield* Effect.flip(exit), "Disconnected")
    }))

  it.effect("abort(error) fails a pending pull and later pulls with that error and closes the connection", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      const pull = yield* Effect.forkChild(link.pull)
      yield* Effect.yieldNow
      const error = MqttError.make(new MqttError.KeepaliveTimeout({ keepaliveSeconds: 30, timeoutMillis: 30_000 }))
      yield* link.abort(error)
      const exit = yield* awaitBounded(pull, "a pull pending during abort")
      assert.strictEqual(yield* Effect.flip(exit), error)
      assert.strictEqual(yield* Effect.flip(link.pull), error)
      assert.strictEqual(link.offer({ _tag: "Pingreq" }), error)
      assert.strictEqual(yield* Effect.flip(link.send({ _tag: "Pingreq" })), error)
      assert.strictEqual(conn.closedBy, "client")
      assert.deepStrictEqual(conn.tags(), ["Connect"])
    }))

  // Regression: found by this test and fixed in src.
  it.effect("abort on a link whose scope is closed returns at once", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const old = yield* Effect.scoped(Connection.connect(broker.socket, resolve()))
      const error = MqttError.make(new MqttError.KeepaliveTimeout({ keepaliveSeconds: 30, timeoutMillis: 30_000 }))
      const abort = yield* Effect.forkChild(old.abort(error))
      const exit = yield* awaitBounded(abort, "abort on a closed link")
      assert.isTrue(Exit.isSuccess(exit))
    }))

  // ... and when the socket reconnects, that CloseEvent closes the NEW connection: a stale link reaches another
  // connection, which the module promises never happens.
  it.effect("abort on a link whose scope is closed leaves the next connection alone", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const old = yield* Effect.scoped(Connection.connect(broker.socket, resolve()))
      const link = yield* Connection.connect(broker.socket, resolve())
      const current = yield* broker.connection(2)
      const error = MqttError.make(new MqttError.KeepaliveTimeout({ keepaliveSeconds: 30, timeoutMillis: 30_000 }))
      yield* awaitBounded(yield* Effect.forkChild(old.abort(error)), "abort on a closed link")
      assert.isTrue(current.isOpen, "the stale link's abort closed the new connection")
      yield* link.send({ _tag: "Pingreq" })
      assert.deepStrictEqual(current.tags(), ["Connect", "Pingreq"])
    }))

  it.effect("the broker closing an established connection fails the pull with TransportError", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      yield* conn.send({ _tag: "Pingresp" })
      yield* conn.close
      // What was sent before the close is still read, then the close is reported.
      assert.deepStrictEqual((yield* link.pull).map((p) => p._tag), ["Pingresp"])
      const reason = assertReason(yield* Effect.flip(link.pull), "TransportError")
      assert.strictEqual(reason.operation, "read")
    }))

  it.effect("packets split one byte per read by the broker still decode", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected({ chunksPerPull: 1 })
      const message = publish("split/topic", "a payload split into single bytes", 2, 300)
      const bytes = concat(FakeBroker.encode(message), FakeBroker.encode({ _tag: "Puback", packetId: 5 }))
      yield* conn.sendRaw(bytes, { split: 1 })
      const packets = yield* pullPackets(link, 2)
      assert.deepStrictEqual(packets.map((p) => p._tag), ["Publish", "Puback"])
      const received = packets[0] as Packet.Publish
      assert.strictEqual(received.topic, "split/topic")
      assert.strictEqual(received.qos, 2)
      assert.strictEqual(received.packetId, 300)
      assert.strictEqual(text(received.payload), "a payload split into single bytes")
      assert.strictEqual((packets[1] as Packet.Puback).packetId, 5)
    }))

  it.effect("a large read is decoded 64 packets per pull, in order; a small one in one pull", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected()
      const batch = (from: number, count: number) =>
        concat(
          ...Array.from({ length: count }, (_, i) => FakeBroker.encode(publish("big/read", `message ${from + i}`.padEnd(24))))
        )
      // 1,000 PUBLISH of 36 bytes: 36,000 bytes in one read, over the 16 KiB from which reads are batched.
      const large = batch(0, 1000)
      assert.isAbove(large.length, 16 * 1024)
      yield* conn.sendRaw(large)
      const sizes: Array<number> = []
      const received: Array<string> = []
      while (received.length < 1000) {
        const packets = yield* link.pull
        sizes.push(packets.length)
        for (const packet of packets) received.push(text((packet as Packet.Publish).payload).trim())
      }
      assert.deepStrictEqual(received, Array.from({ length: 1000 }, (_, i) => `message ${i}`))
      assert.deepStrictEqual(sizes, [...Array.from({ length: 15 }, () => 64), 40])
      // 300 of them, 10,800 bytes: one pull.
      yield* conn.sendRaw(batch(1000, 300))
      assert.strictEqual((yield* link.pull).length, 300)
    }))

  it.effect("a packet over maximumPacketSize fails with MalformedPacket from its header alone", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected({}, { maximumPacketSize: 64 })
      // A PUBLISH header announcing 1000 bytes (e8 07); the body never comes.
      yield* conn.sendRaw(FakeBroker.hex("30 e8 07"))
      const reason = assertReason(yield* Effect.flip(link.pull), "MalformedPacket")
      assert.include(reason.detail, "maximum packet size")
      assert.strictEqual(conn.closedBy, "client")
    }))

  it.effect("a packet of exactly maximumPacketSize is accepted", () =>
    Effect.gen(function*() {
      const message = publish("t", "x".repeat(59))
      const bytes = FakeBroker.encode(message)
      assert.strictEqual(bytes.length, 64)
      const { link, conn } = yield* connected({}, { maximumPacketSize: 64 })
      yield* conn.sendRaw(bytes)
      assert.deepStrictEqual((yield* link.pull).map((p) => p._tag), ["Publish"])
    }))

  it.effect("each connect is a new connection with its own queue", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const first = yield* Effect.scoped(
        Effect.gen(function*() {
          const link = yield* Connection.connect(broker.socket, resolve())
          yield* link.send(publish("one", "1"))
          return link
        })
      )
      const second = yield* Connection.connect(broker.socket, resolve())
      assertReason(first.offer(publish("stale", "x"))!, "Disconnected")
      yield* second.send(publish("two", "2"))
      const [c1, c2] = [yield* broker.connection(1), yield* broker.connection(2)]
      assert.strictEqual(broker.connections, 2)
      assert.deepStrictEqual(c1.tags(), ["Connect", "Publish"])
      assert.isFalse(c1.isOpen)
      assert.deepStrictEqual(c2.tags(), ["Connect", "Publish"])
      assert.strictEqual((c2.received[1] as Packet.Publish).topic, "two")
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// The fake broker's scripts, through a link (later client tests build on them)
// ---------------------------------------------------------------------------------------------------------------------

describe("FakeBroker scripts", () => {
  it.effect("ackSubscribe, ackUnsubscribe, ackPublish answer with SUBACK, UNSUBACK, PUBACK, PUBREC, PUBCOMP", () =>
    Effect.gen(function*() {
      const { link } = yield* connected({ ackSubscribe: true, ackUnsubscribe: true, ackPublish: true })
      yield* link.send(subscribe)
      yield* link.send({ _tag: "Unsubscribe", packetId: 8, topicFilters: ["a/#"] })
      yield* link.send(publish("q0", "no answer"))
      yield* link.send(publish("q1", "x", 1, 11))
      yield* link.send(publish("q2", "y", 2, 12))
      yield* link.send({ _tag: "Pubrel", packetId: 12 })
      const packets = yield* pullPackets(link, 5)
      assert.deepStrictEqual(packets, [
        { _tag: "Suback", packetId: 7, returnCodes: [1] },
        { _tag: "Unsuback", packetId: 8 },
        { _tag: "Puback", packetId: 11 },
        { _tag: "Pubrec", packetId: 12 },
        { _tag: "Pubcomp", packetId: 12 }
      ])
    }))

  it.effect("onPacket answers by hand and can replace the default answer", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected({
        ackSubscribe: true,
        onPacket: (packet, c) =>
          packet._tag === "Subscribe"
            ? Effect.as(c.send({ _tag: "Suback", packetId: packet.packetId, returnCodes: [0x80] }), "handled" as const)
            : Effect.void
      })
      yield* link.send(subscribe)
      assert.deepStrictEqual(yield* link.pull, [{ _tag: "Suback", packetId: 7, returnCodes: [0x80] }])
      yield* conn.expectPacket("Subscribe")
    }))

  it.effect("connack as a function of the connection: refuse the first, accept the second", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({
        connack: (conn) => (conn.id === 1 ? { returnCode: 3 } : { sessionPresent: true })
      })
      const error = yield* Effect.flip(Effect.scoped(Connection.connect(broker.socket, resolve())))
      assert.strictEqual(assertReason(error, "ConnectionRefused").returnCode, 3)
      const link = yield* Connection.connect(broker.socket, resolve())
      assert.isTrue(link.connack.sessionPresent)
      assert.strictEqual(broker.connections, 2)
    }))

  it.effect("configure switches PINGRESP off mid-test (a black hole)", () =>
    Effect.gen(function*() {
      const { broker, link, conn } = yield* connected()
      yield* link.send({ _tag: "Pingreq" })
      assert.deepStrictEqual(yield* link.pull, [{ _tag: "Pingresp" }])
      yield* broker.configure({ pingresp: false })
      yield* link.send({ _tag: "Pingreq" })
      yield* conn.expectPacket("Pingreq")
      yield* conn.expectPacket("Pingreq")
      const pull = yield* Effect.forkChild(link.pull)
      yield* Effect.yieldNow
      assert.isUndefined(pull.pollUnsafe())
    }))

  it.effect("closeOnDisconnect closes the connection from the broker side", () =>
    Effect.gen(function*() {
      const { link, conn } = yield* connected({ closeOnDisconnect: true })
      yield* link.disconnect
      yield* conn.awaitClosed
      assert.strictEqual(conn.closedBy, "broker")
      assertReason(yield* Effect.flip(link.pull), "TransportError")
    }))

  it.effect("a client whose first packet is not CONNECT is disconnected [MQTT-3.1.0-1]", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const reader = yield* broker.socket.reader
      const writer = yield* broker.socket.writer
      yield* writer.write(FakeBroker.hex("c0 00"))
      const conn = yield* broker.connection()
      assert.deepStrictEqual(conn.tags(), ["Pingreq"])
      assert.strictEqual(conn.violations.length, 1)
      assert.include(conn.violations[0], "MQTT-3.1.0-1")
      assert.strictEqual(conn.closedBy, "broker")
      const error = yield* Effect.flip(reader.pull)
      assert.strictEqual(error.reason._tag, "SocketCloseError")
    }))

  it.effect("bytes the broker cannot decode are recorded as malformed and close the connection", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      yield* broker.socket.reader
      const writer = yield* broker.socket.writer
      yield* writer.write(FakeBroker.encode(ConnectOptions.connectPacket(resolve())))
      yield* writer.write(FakeBroker.hex("f0 00"))
      const conn = yield* broker.connection()
      assert.strictEqual(conn.malformed?.reason._tag, "MalformedPacket")
      assert.isFalse(conn.isOpen)
      assert.strictEqual(conn.writes.length, 2)
      assert.deepStrictEqual(bytesOf(conn.writes[1]), [0xf0, 0x00])
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// A real TCP server that accepts and never answers
// ---------------------------------------------------------------------------------------------------------------------

interface SilentServer {
  readonly port: number
  /** Completed with the CONNECT the server decoded from the first connection. */
  readonly connect: Deferred.Deferred<Packet.Packet>
  /** Completed when the first connection is closed. */
  readonly closed: Deferred.Deferred<void>
}

/** A TCP server on 127.0.0.1 that accepts and never writes; closed (with its connections) with the scope. */
const silentServer = Effect.acquireRelease(
  Effect.callback<{ readonly server: Net.Server; readonly sockets: Set<Net.Socket> } & SilentServer>((resume) => {
    const connect = Deferred.makeUnsafe<Packet.Packet>()
    const closed = Deferred.makeUnsafe<void>()
    const sockets = new Set<Net.Socket>()
    const server = Net.createServer((socket) => {
      sockets.add(socket)
      const decoder = new Codec.Decoder()
      socket.on("data", (chunk) => {
        const decoded = decoder.push(chunk)
        if (Result.isSuccess(decoded) && decoded.success.length > 0) {
          Deferred.doneUnsafe(connect, Exit.succeed(decoded.success[0]!))
        }
      })
      socket.on("error", () => {})
      socket.on("close", () => {
        sockets.delete(socket)
        Deferred.doneUnsafe(closed, Exit.void)
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address() as Net.AddressInfo
      resume(Effect.succeed({ server, sockets, port: address.port, connect, closed }))
    })
  }),
  ({ server, sockets }) =>
    Effect.callback<void>((resume) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resume(Effect.void))
    })
)

const awaitReal = <A>(deferred: Deferred.Deferred<A>, what: string) =>
  Deferred.await(deferred).pipe(
    Effect.timeoutOrElse({ duration: Duration.seconds(5), orElse: () => Effect.die(new Error(`timed out: ${what}`)) }),
    withLiveClock
  )

describe("Connection.connect over NodeTransport (real TCP)", () => {
  it.effect("a server that never answers: ConnectTimeout after the connect timeout, CONNECT seen, socket closed", () =>
    Effect.gen(function*() {
      const server = yield* silentServer
      const resolved = resolve({ url: `mqtt://127.0.0.1:${server.port}`, clientId: "tcp-client" })
      const socket = yield* NodeTransport.make(resolved)
      const fiber = yield* Effect.forkChild(Effect.scoped(Connection.connect(socket, resolved)))
      const connect = yield* awaitReal(server.connect, "the CONNECT at the server")
      assert.strictEqual(connect._tag, "Connect")
      assert.strictEqual((connect as Packet.Connect).clientId, "tcp-client")
      yield* TestClock.adjust(CONNECT_TIMEOUT_MS - 1)
      assert.isUndefined(fiber.pollUnsafe(), "still waiting 1 ms before the timeout")
      yield* TestClock.adjust(1)
      const exit = yield* awaitBounded(fiber, "connect after the timeout")
      const reason = assertReason(yield* Effect.flip(exit), "ConnectTimeout")
      assert.strictEqual(reason.timeoutMillis, CONNECT_TIMEOUT_MS)
      yield* awaitReal(server.closed, "the server to see the connection closed")
    }))

  // On the system clock the timeout is one Node timer that ends the dial or the connection (no racing fibers).
  it.live("system clock, a server that never answers: ConnectTimeout from the timer, CONNECT seen, socket closed", () =>
    Effect.gen(function*() {
      const server = yield* silentServer
      const resolved = resolve({
        url: `mqtt://127.0.0.1:${server.port}`,
        clientId: "timer-client",
        connectTimeout: Duration.millis(200)
      })
      const socket = yield* NodeTransport.make(resolved)
      const fiber = yield* Effect.forkChild(Effect.scoped(Connection.connect(socket, resolved)))
      const connect = yield* awaitReal(server.connect, "the CONNECT at the server")
      assert.strictEqual((connect as Packet.Connect).clientId, "timer-client")
      const exit = yield* awaitBounded(fiber, "connect after the timeout")
      const reason = assertReason(yield* Effect.flip(exit), "ConnectTimeout")
      assert.strictEqual(reason.timeoutMillis, 200)
      yield* awaitReal(server.closed, "the server to see the connection closed")
    }))

  it.live("system clock, a TLS handshake that never completes: ConnectTimeout while dialing, socket closed", () =>
    Effect.gen(function*() {
      // The silent server speaks plain TCP: it never answers the ClientHello.
      const server = yield* silentServer
      const resolved = resolve({ url: `mqtts://127.0.0.1:${server.port}`, connectTimeout: Duration.millis(200) })
      const socket = yield* NodeTransport.make(resolved)
      const error = yield* Effect.flip(Effect.scoped(Connection.connect(socket, resolved))).pipe(
        Effect.timeoutOrElse({ duration: "5 seconds", orElse: () => Effect.die(new Error("connect did not end")) })
      )
      assert.strictEqual(assertReason(error, "ConnectTimeout").timeoutMillis, 200)
      yield* awaitReal(server.closed, "the server to see the connection closed")
    }))
})
