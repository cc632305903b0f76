/**
 * Self-tests of the fault-injection harness `test/utils/FaultProxy.ts`: byte-level faults against a raw TCP server
 * (fragments, delay, black hole, stall, cuts on either side, cuts after N bytes, bounds, cleanup) and packet-level
 * faults against a real Mosquitto with an effect-mqtt client (counting decoded packets, dropping the next PUBACK,
 * cutting right after PUBREC). Every wait is bounded.
 */
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import { bounded, clientId, fastRecovery, options, record, text, topicRoot, waitUntil } from "../utils/clients.ts"
import * as FaultProxy from "../utils/FaultProxy.ts"
import { encode } from "../utils/HostileBroker.ts"
import * as Mosquitto from "../utils/Mosquitto.ts"
import { canConnect } from "../utils/ports.ts"
import { describeMosquitto } from "../utils/suites.ts"
import * as Loopback from "../utils/loopback.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Raw TCP ends
// ---------------------------------------------------------------------------------------------------------------------

interface RawEnd {
  readonly socket: net.Socket
  readonly chunks: Array<Buffer>
  readonly bytes: () => Buffer
  /** FIN received. */
  readonly ended: () => boolean
  readonly closed: () => boolean
  /** The connection is over for this end: FIN, RST or closed. */
  readonly gone: () => boolean
}

const track = (socket: net.Socket): RawEnd => {
  const chunks: Array<Buffer> = []
  let ended = false
  let closed = false
  socket.on("data", (chunk: Buffer) => chunks.push(chunk))
  socket.on("end", () => (ended = true))
  socket.on("close", () => (closed = true))
  socket.on("error", () => {})
  return {
    socket,
    chunks,
    bytes: () => Buffer.concat(chunks),
    ended: () => ended,
    closed: () => closed,
    gone: () => ended || closed
  }
}

/** A TCP server on 127.0.0.1 that records every connection; `onConnection` may write to it. */
const rawServer = (onConnection: (end: RawEnd) => void = () => {}) =>
  Effect.gen(function*() {
    const ends: Array<RawEnd> = []
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      const end = track(socket)
      ends.push(end)
      onConnection(end)
    })
    const port = yield* Loopback.listen(server, () => ends.map((end) => end.socket))
    return { port, ends }
  })

/**
 * A TCP client to 127.0.0.1:port, destroyed with the scope. It is returned once connected, or once closed if it never
 * connects (a refused or reset connection: check `gone`).
 */
const rawClient = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<RawEnd>((resume) => {
      const socket = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true })
      const end = track(socket)
      socket.once("connect", () => resume(Effect.succeed(end)))
      socket.once("close", () => resume(Effect.succeed(end)))
    }),
    (end) => Effect.sync(() => end.socket.destroy())
  )

/** An MQTT packet of `size` bytes (12..16,000: a QoS 0 PUBLISH), so the proxy frames and decodes it. */
const publishBytes = (size: number): Buffer => {
  const remaining = size - 2 <= 127 ? size - 2 : size - 3
  const payload = new Uint8Array(remaining - 5)
  return Buffer.from(encode({ _tag: "Publish", topic: "a/b", payload, qos: 0, retain: false, dup: false }))
}

describe("FaultProxy on raw TCP", () => {
  it.live("passes bytes both ways and counts them; decodes MQTT packets", () =>
    Effect.gen(function*() {
      const target = yield* rawServer((end) => end.socket.on("data", (chunk: Buffer) => end.socket.write(chunk)))
      const proxy = yield* FaultProxy.make({ targetPort: target.port })
      const client = yield* rawClient(proxy.port)
      const packet = publishBytes(100)
      client.socket.write(packet)
      yield* waitUntil("the echo", () => client.bytes().length === 100)
      assert.deepStrictEqual(client.bytes(), packet)
      assert.strictEqual(proxy.stats.accepted, 1)
      assert.strictEqual(proxy.stats.open, 1)
      assert.strictEqual(proxy.stats.bytesIn.toBroker, 100)
      assert.strictEqual(proxy.stats.bytesOut.toClient, 100)
      assert.strictEqual(proxy.stats.packets.toBroker.get("Publish"), 1)
      assert.strictEqual(proxy.stats.packets.toClient.get("Publish"), 1)
      assert.deepStrictEqual(proxy.log.map((e) => `${e.direction} ${e.tag} ${e.action}`), [
        "toBroker Publish forwarded",
        "toClient Publish forwarded"
      ])
    }))

  it.live("passes bytes that are not MQTT through undecoded", () =>
    Effect.gen(function*() {
      const target = yield* rawServer()
      const proxy = yield* FaultProxy.make({ targetPort: target.port })
      const client = yield* rawClient(proxy.port)
      // Packet type 0 is reserved: not MQTT.
      const bytes = Buffer.from([0x00, 0x05, 1, 2, 3])
      client.socket.write(bytes)
      yield* waitUntil("the bytes at the target", () => target.ends[0]?.bytes().length === 5)
      assert.deepStrictEqual(target.ends[0]!.bytes(), bytes)
      // A frame that does not decode (PUBACK with a 3-byte body) goes through as bytes too.
      const reply = Buffer.from([0x40, 0x03, 0, 1, 0])
      target.ends[0]!.socket.write(reply)
      yield* waitUntil("the bytes at the client", () => client.bytes().length === 5)
      assert.deepStrictEqual(client.bytes(), reply)
      assert.strictEqual(proxy.stats.undecoded, 2)
    }))

  it.live("fragment: forwards one byte per write", () =>
    Effect.gen(function*() {
      const packet = publishBytes(200)
      const target = yield* rawServer((end) => end.socket.write(packet))
      const proxy = yield* FaultProxy.make({ targetPort: target.port })
      yield* proxy.fragment("toClient")
      const client = yield* rawClient(proxy.port)
      yield* waitUntil("200 bytes", () => client.bytes().length === 200)
      assert.deepStrictEqual(client.bytes(), packet)
      // One write per byte, each on its own turn of the event loop: the reader sees (nearly) one byte per read.
      assert.isAbove(client.chunks.length, 100, `reads: ${client.chunks.length}`)
    }))

  it.live("delay: adds latency both ways and keeps the order", () =>
    Effect.gen(function*() {
      const target = yield* rawServer((end) => end.socket.on("data", (chunk: Buffer) => end.socket.write(chunk)))
      const proxy = yield* FaultProxy.make({ targetPort: target.port })
      yield* proxy.delay("100 millis")
      const client = yield* rawClient(proxy.port)
      const started = Date.now()
      const packets = Array.from({ length: 20 }, (_, i) => publishBytes(10 + i))
      for (const packet of packets) client.socket.write(packet)
      const total = packets.reduce((n, p) => n + p.length, 0)
      yield* waitUntil("the echo", () => client.bytes().length === total)
      assert.isAtLeast(Date.now() - started, 195, "two delays of 100 ms")
      assert.deepStrictEqual(client.bytes(), Buffer.concat(packets))
    }))

  it.live("blackhole: the sockets stay open, nothing passes; restore lets new bytes through", () =>
    Effect.gen(function*() {
      const target = yield* rawServer()
      const proxy = yield* FaultProxy.make({ targetPort: target.port })
      const client = yield* rawClient(proxy.port)
      yield* waitUntil("the target connection", () => target.ends.length === 1)
      yield* proxy.blackhole()
      client.socket.write(publishBytes(50))
      target.ends[0]!.socket.write(publishBytes(60))
      yield* waitUntil(
        "the proxy to read both",
        () => proxy.stats.bytesIn.toBroker === 50 && proxy.stats.bytesIn.toClient === 60
      )
      yield* Effect.sleep("100 millis")
      assert.strictEqual(target.ends[0]!.bytes().length, 0)
      assert.strictEqual(client.bytes().length, 0)
      assert.isFalse(client.closed() || target.ends[0]!.closed())
      assert.strictEqual(proxy.stats.bytesDropped.toBroker, 50)
      yield* proxy.restore
      client.socket.write(publishBytes(30))
      yield* waitUntil("bytes after the restore", () => target.ends[0]!.bytes().length === 30)
    }))

  it.live("stall: stops reading, so the sender's writes back up; restore delivers everything", () =>
    Effect.gen(function*() {
      const size = 16 * 1024 * 1024
      const target = yield* rawServer()
      const proxy = yield* FaultProxy.make({ targetPort: target.port, maxFrameBytes: 1024 })
      yield* proxy.stall("toClient")
      const client = yield* rawClient(proxy.port)
      yield* waitUntil("the target connection", () => target.ends.length === 1)
      const sender = target.ends[0]!.socket
      const accepted = sender.write(Buffer.alloc(size, 7))
      assert.isFalse(accepted, "the write is buffered")
      yield* Effect.sleep("200 millis")
      assert.isAbove(sender.writableLength, 0, "bytes wait in the sender")
      assert.isBelow(proxy.stats.bytesIn.toClient, size)
      yield* proxy.restore
      yield* waitUntil("16 MiB through", () => client.bytes().length === size, 20_000)
    }))

  it.live("cut: both ends see the connection close", () =>
    Effect.gen(function*() {
      const target = yield* rawServer()
      const proxy = yield* FaultProxy.make({ targetPort: target.port })
      const client = yield* rawClient(proxy.port)
      yield* waitUntil("the target connection", () => target.ends.length === 1)
      yield* proxy.cut()
      yield* waitUntil("both ends closed", () => client.ended() && target.ends[0]!.ended())
      assert.strictEqual(proxy.stats.cuts, 1)
    }))

  it.live("cut on one side: only that end sees it; the other stays open and hears nothing", () =>
    Effect.gen(function*() {
      const target = yield* rawServer()
      const proxy = yield* FaultProxy.make({ targetPort: target.port })
      const first = yield* rawClient(proxy.port)
      yield* waitUntil("the target connection", () => target.ends.length === 1)
      yield* proxy.cut({ side: "client" })
      yield* waitUntil("the client end closed", () => first.ended())
      target.ends[0]!.socket.write(publishBytes(20))
      yield* Effect.sleep("100 millis")
      assert.isFalse(target.ends[0]!.ended(), "the broker side is still open")

      const second = yield* rawClient(proxy.port)
      yield* waitUntil("the second target connection", () => target.ends.length === 2)
      yield* proxy.cut({ side: "broker", reset: true })
      yield* waitUntil("the broker end closed", () => target.ends[1]!.closed())
      second.socket.write(publishBytes(20))
      yield* Effect.sleep("100 millis")
      assert.isFalse(second.ended() || second.closed(), "the client side is still open")
      assert.strictEqual(second.bytes().length, 0)
    }))

  it.live("cutAfterBytes: forwards exactly that many bytes, then cuts (mid-packet)", () =>
    Effect.gen(function*() {
      const packet = publishBytes(1000)
      const target = yield* rawServer((end) => end.socket.write(packet))
      const proxy = yield* FaultProxy.make({ targetPort: target.port })
      yield* proxy.cutAfterBytes(100, { direction: "toClient" })
      const client = yield* rawClient(proxy.port)
      yield* waitUntil("the cut", () => client.ended())
      assert.deepStrictEqual(client.bytes(), packet.subarray(0, 100))
    }))

  it.live("rules on decoded packets: drop the next one, cut after one (delivered) or before one (lost)", () =>
    Effect.gen(function*() {
      const target = yield* rawServer()
      const proxy = yield* FaultProxy.make({ targetPort: target.port })
      const puback = (packetId: number) => Buffer.from(encode({ _tag: "Puback", packetId }))
      const dropped = yield* proxy.dropNext("toClient", FaultProxy.packet("Puback"))
      const client = yield* rawClient(proxy.port)
      yield* waitUntil("the target connection", () => target.ends.length === 1)
      target.ends[0]!.socket.write(Buffer.concat([puback(1), puback(2)]))
      yield* waitUntil("one PUBACK through", () => client.bytes().length === 4)
      assert.deepStrictEqual(client.bytes(), puback(2))
      assert.strictEqual(dropped.fired, 1)
      assert.strictEqual((dropped.matches[0]!.packet as Packet.Puback).packetId, 1)

      const cut = yield* proxy.cutOn("toClient", FaultProxy.packet("Puback", 4), { deliver: true })
      target.ends[0]!.socket.write(Buffer.concat([puback(3), puback(4), puback(5)]))
      const info = yield* cut.awaitFired()
      assert.strictEqual(info.connection, 1)
      yield* waitUntil("the cut", () => client.ended())
      assert.deepStrictEqual(client.bytes(), Buffer.concat([puback(2), puback(3), puback(4)]), "PUBACK 5 is lost")

      const second = yield* rawClient(proxy.port)
      yield* waitUntil("the second target connection", () => target.ends.length === 2)
      yield* proxy.cutOn("toBroker", FaultProxy.nth(2, FaultProxy.packet("Puback")), { deliver: false })
      second.socket.write(Buffer.concat([puback(6), puback(7), puback(8)]))
      yield* waitUntil("the cut", () => second.ended() && target.ends[1]!.ended())
      assert.deepStrictEqual(target.ends[1]!.bytes(), puback(6), "PUBACK 7 was lost with the connection")
      assert.deepStrictEqual(proxy.log.slice(-2).map((e) => `${e.tag}${e.packetId} ${e.action}`), [
        "Puback6 forwarded",
        "Puback7 cutBefore"
      ])
    }))

  it.live("refuse: new connections are closed at once until allowed again", () =>
    Effect.gen(function*() {
      const target = yield* rawServer()
      const proxy = yield* FaultProxy.make({ targetPort: target.port })
      yield* proxy.refuse()
      const refused = yield* rawClient(proxy.port)
      yield* waitUntil("the refusal", () => refused.gone())
      assert.strictEqual(proxy.stats.refused, 1)
      yield* proxy.refuse(false)
      yield* rawClient(proxy.port)
      yield* waitUntil("a proxied connection", () => target.ends.length === 1)
    }))

  it.live("bounded: past maxBytes or maxLifetime everything is cut and new connections are refused", () =>
    Effect.gen(function*() {
      const target = yield* rawServer((end) => end.socket.write(Buffer.alloc(10_000)))
      const small = yield* FaultProxy.make({ targetPort: target.port, maxBytes: 1_000 })
      const client = yield* rawClient(small.port)
      yield* waitUntil("the traffic bound", () => small.stats.overLimit && client.gone())
      assert.isBelow(client.bytes().length, 10_000)
      const late = yield* rawClient(small.port)
      yield* waitUntil("the refusal", () => late.gone())

      const short = yield* FaultProxy.make({ targetPort: target.port, maxLifetime: "300 millis" })
      const doomed = yield* rawClient(short.port)
      yield* waitUntil("the time bound", () => short.stats.expired && doomed.gone(), 5_000)
    }))

  it.live("closing the scope closes every connection and the listener", () =>
    Effect.gen(function*() {
      const target = yield* rawServer()
      const scope = yield* Scope.make()
      const proxy = yield* Scope.provide(FaultProxy.make({ targetPort: target.port }), scope)
      const client = yield* rawClient(proxy.port)
      yield* waitUntil("the target connection", () => target.ends.length === 1)
      yield* Scope.close(scope, Exit.void)
      yield* waitUntil("both ends closed", () => client.gone() && target.ends[0]!.gone())
      assert.isFalse(yield* canConnect("127.0.0.1", proxy.port), "nothing listens any more")
    }))

  it.live("refuses targets off loopback", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(FaultProxy.make({ targetPort: 80, targetHost: "192.0.2.1" }))
      assert.isTrue(Exit.isFailure(exit))
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// With MQTT
// ---------------------------------------------------------------------------------------------------------------------

describeMosquitto("FaultProxy with an MQTT client and Mosquitto", () => {
  it.live("fragmented both ways: a QoS 2 round trip of a 2 KiB message still works", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const proxy = yield* FaultProxy.make({ targetPort: broker.port })
      yield* proxy.fragment()
      const client = yield* MqttClient.make(options(proxy.url, { clientId: clientId("frag") }))
      const topic = `${topicRoot("frag")}/t`
      const subscription = yield* client.subscription(topic, { qos: 2 })
      const received = yield* record(subscription.messages)
      const payload = "x".repeat(2048)
      yield* client.publish({ topic, payload, qos: 2 })
      const [message] = yield* received.waitForCount(1)
      assert.strictEqual(text(message!.payload), payload)
      for (const tag of ["Connect", "Subscribe", "Publish", "Pubrel"] as const) {
        assert.strictEqual(proxy.stats.packets.toBroker.get(tag), 1, tag)
      }
      for (const tag of ["Connack", "Suback", "Pubrec", "Pubcomp", "Publish"] as const) {
        assert.strictEqual(proxy.stats.packets.toClient.get(tag), 1, tag)
      }
    }))

  it.live("the next PUBACK dropped: the publish waits; after a cut the client resends it (DUP) and completes", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const proxy = yield* FaultProxy.make({ targetPort: broker.port })
      const client = yield* MqttClient.make(
        options(proxy.url, { ...fastRecovery, clientId: clientId("drop"), cleanSession: false })
      )
      const dropped = yield* proxy.dropNext("toClient", FaultProxy.packet("Puback"))
      const topic = `${topicRoot("drop")}/t`
      const publishing = client.publish({ topic, payload: "p", qos: 1 })
      const publish = yield* Effect.forkChild(publishing, { startImmediately: true })
      const info = yield* dropped.awaitFired()
      const packetId = (info.packet as Packet.Puback).packetId
      assert.strictEqual(yield* client.pendingCount, 1, "still waiting for its PUBACK")
      yield* proxy.cut()
      assert.strictEqual(yield* bounded(Fiber.join(publish), "the publish to complete after the cut"), packetId)
      const resent = proxy.log.filter((e) => e.connection === 2 && e.direction === "toBroker" && e.tag === "Publish")
      assert.deepStrictEqual(resent.map((e) => [e.packetId, e.dup]), [[packetId, true]])
    }))

  it.live("cut right after the broker's PUBREC reaches the client: the client resends PUBREL, never PUBLISH", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const proxy = yield* FaultProxy.make({ targetPort: broker.port })
      const client = yield* MqttClient.make(
        options(proxy.url, { ...fastRecovery, clientId: clientId("rec"), cleanSession: false })
      )
      const topic = `${topicRoot("rec")}/t`
      const subscription = yield* client.subscription(topic, { qos: 2 })
      const received = yield* record(subscription.messages)
      const cut = yield* proxy.cutOn("toClient", FaultProxy.packet("Pubrec"), { deliver: true })
      const packetId = yield* client.publish({ topic, payload: "once", qos: 2 })
      const info = yield* cut.awaitFired()
      assert.strictEqual((info.packet as Packet.Pubrec).packetId, packetId)
      // The client's own flow on the new connection: CONNECT, then PUBREL, and never the PUBLISH again. Its PUBREC
      // for the message the broker delivers to its own subscription may come at any point, before or after.
      const after = proxy.log.filter((e) =>
        e.connection === 2 && e.direction === "toBroker" && ["Connect", "Publish", "Pubrel"].includes(e.tag)
      )
      assert.deepStrictEqual(after.map((e) => `${e.tag}${e.packetId ?? ""}`), [
        "Connect",
        `Pubrel${packetId}`
      ])
      yield* received.waitForCount(1)
      yield* Effect.sleep("200 millis")
      assert.strictEqual(received.items.length, 1, "delivered once")
    }))
})
