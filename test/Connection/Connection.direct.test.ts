/**
 * `Connection.connect` over `NetSocket` (plain TCP) against a scripted loopback server made here with `node:net`: a
 * real socket, so the link's outbox writes each batch itself through the transport's `DirectWriter` (in a microtask)
 * and its writer fiber only waits for `drain` when a write filled Node's buffer, or fails the batch when the socket is
 * no longer writable.
 *
 * Covered: a run of offers arrives intact and in order and `send` completes once written; backpressure (a server that
 * stops reading blocks the outbox, and everything arrives once it reads again); the server closing or destroying the
 * connection (sends and pulls fail with `TransportError`, nothing hangs); DISCONNECT last, also when queued behind a
 * blocked batch [MQTT-3.14.4-2].
 *
 * The server decodes everything it receives with the codec's `Decoder`. Every wait is on an event (server `data`,
 * `end`, `close`; a listener for `drain` added to the client's socket, seen through its `newListener` event; a fiber's
 * end), bounded by a generous timeout on the live clock; there are no sleeps. The client's `Net.Socket` is found
 * through Node's `net.client.socket` diagnostics channel (`Loopback.nextClientSocket`), without patching anything.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as Codec from "../../src/Codec/Codec.ts"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as ConnectOptions from "../../src/Connection/ConnectOptions.ts"
import * as Connection from "../../src/Connection/Connection.ts"
import * as NetSocket from "../../src/Connection/NetSocket.ts"
import type * as MqttError from "../../src/Errors/MqttError.ts"
import { withLiveClock } from "../utils/live.ts"
import * as Loopback from "../utils/loopback.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

/** Bound of every wait: generous, only there so a broken build fails instead of hanging. */
const BOUND = Duration.seconds(15)

const bounded = <A, E, R>(self: Effect.Effect<A, E, R>, what: string) =>
  Effect.timeoutOrElse(self, {
    duration: BOUND,
    orElse: () => Effect.die(new Error(`timed out: ${what}`))
  })

/** Runs a test body on the live clock (the server lives in wall-clock time). */
const live = <A, E, R>(self: Effect.Effect<A, E, R>) => withLiveClock(self)


const encodeOrThrow = (packet: Packet.Packet): Uint8Array => {
  const encoded = Codec.encode(packet)
  if (Result.isFailure(encoded)) throw new Error(`encode failed: ${encoded.failure.message}`)
  return encoded.success
}

const CONNACK = encodeOrThrow({ _tag: "Connack", sessionPresent: false, returnCode: 0 })

/**
 * The server's side of the connection: decodes every packet the client sends and answers its CONNECT with CONNACK 0
 * (then, with `pauseAfterConnack`, stops reading). Keeps the packets, the byte count and the last two bytes.
 */
class Peer {
  readonly socket: Net.Socket
  readonly decoder = new Codec.Decoder()
  readonly packets: Array<Packet.Packet> = []
  length = 0
  /** The last two bytes received (DISCONNECT is `e0 00`). */
  tail: Buffer = Buffer.alloc(0)
  malformed: MqttError.MqttError | undefined = undefined
  ended = false
  closed = false

  constructor(socket: Net.Socket, pauseAfterConnack: boolean) {
    this.socket = socket
    socket.on("data", (chunk: Buffer) => {
      this.length += chunk.length
      this.tail = chunk.length >= 2 ? Buffer.from(chunk.subarray(-2)) : Buffer.concat([this.tail, chunk]).subarray(-2)
      const decoded = this.decoder.push(chunk)
      if (Result.isFailure(decoded)) {
        this.malformed ??= decoded.failure
        return
      }
      for (const packet of decoded.success) {
        const first = this.packets.length === 0
        this.packets.push(packet)
        if (first && packet._tag === "Connect") {
          socket.write(CONNACK)
          if (pauseAfterConnack) socket.pause()
        }
      }
    })
    socket.on("end", () => {
      this.ended = true
    })
    socket.on("close", () => {
      this.closed = true
    })
    socket.on("error", () => {})
  }

  /** The packets after CONNECT. */
  get afterConnect(): ReadonlyArray<Packet.Packet> {
    return this.packets.slice(1)
  }

  /** At least `n` packets (CONNECT included) were received. */
  awaitPackets(n: number) {
    return bounded(Loopback.waitUntil(this.socket, ["data"], () => this.packets.length >= n), `${n} packets at the server`)
  }

  /** The client's FIN has arrived (after every byte it sent). */
  get awaitEnd(): Effect.Effect<void> {
    return bounded(Loopback.waitUntil(this.socket, ["end"], () => this.ended), "the client's FIN at the server")
  }

  /** The connection is closed both ways. */
  get awaitClose(): Effect.Effect<void> {
    return bounded(Loopback.waitUntil(this.socket, ["close"], () => this.closed), "the server's socket to close")
  }
}

/**
 * A TCP server on 127.0.0.1 for the test's scope that speaks MQTT just enough (see `Peer`); closing the scope destroys
 * its connections and the server. `accepted` is its first connection.
 */
const mqttServer = (options: { readonly pauseAfterConnack?: boolean } = {}) =>
  Effect.gen(function*() {
    const accepted = yield* Deferred.make<Peer>()
    const sockets = new Set<Net.Socket>()
    const server = Net.createServer((socket) => {
      sockets.add(socket)
      Deferred.doneUnsafe(accepted, Exit.succeed(new Peer(socket, options.pauseAfterConnack ?? false)))
    })
    const port = yield* Loopback.listen(server, () => sockets)
    return { port, accepted: bounded(Deferred.await(accepted), "the server to accept") }
  })

/**
 * Completes the first time something starts waiting for `drain` on `socket` while Node's buffer still holds bytes the
 * kernel has not taken: the kernel pushed back. Over `NetSocket` only the link's writer fiber waits for `drain`, and
 * only after a direct write filled Node's buffer (the outbox is `blocked`). Call before anything is sent.
 */
const kernelPushedBack = (socket: Net.Socket) =>
  Effect.gen(function*() {
    const pushedBack = yield* Deferred.make<void>()
    const onNewListener = (event: string | symbol) => {
      if (event === "drain" && socket.writableLength > 0) Deferred.doneUnsafe(pushedBack, Exit.void)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => socket.on("newListener", onNewListener)),
      () => Effect.sync(() => socket.off("newListener", onNewListener))
    )
    return bounded(Deferred.await(pushedBack), "the link's writer to wait for drain")
  })

const resolve = (port: number): ConnectOptions.ConnectOptions & { readonly url: string } => ({
  url: `mqtt://127.0.0.1:${port}`,
  clientId: "direct-client",
  keepalive: 0,
  connectTimeout: Duration.seconds(10)
})

const resolved = (port: number): ConnectOptions.Resolved => {
  const result = ConnectOptions.resolve(resolve(port), new Uint8Array(6))
  if (Result.isFailure(result)) throw new Error(`resolve failed: ${result.failure.message}`)
  return result.success
}

/**
 * A server, the client socket it accepted and a link to it over `NetSocket` (TCP): the direct path. With `scope`, the
 * link lives in that scope instead of the test's.
 */
const setup = (options: { readonly pauseAfterConnack?: boolean; readonly scope?: Scope.Scope } = {}) =>
  Effect.gen(function*() {
    const server = yield* mqttServer(options)
    const clientSocket = yield* Loopback.nextClientSocket
    const connect = Connection.connect(
      NetSocket.make({ transport: "tcp", host: "127.0.0.1", port: server.port }),
      resolved(server.port)
    )
    const link = yield* (options.scope === undefined ? connect : Scope.provide(connect, options.scope))
    const peer = yield* server.accepted
    const client = yield* bounded(clientSocket, "the client socket")
    // The socket the diagnostics channel gave is this link's: its local port is the server peer's remote port.
    assert.strictEqual(client.localPort, peer.socket.remotePort)
    assert.strictEqual(link.connack.returnCode, 0)
    assert.strictEqual(peer.packets[0]?._tag, "Connect")
    return { server, peer, client, link }
  })

/** `n` bytes whose every 4-byte word is its own index (offset by `seed`): any loss, duplication or reordering shows. */
const pattern = (n: number, seed = 0): Uint8Array => {
  const bytes = Buffer.alloc(n)
  for (let i = 0; i + 4 <= n; i += 4) bytes.writeUInt32BE((seed + i / 4) >>> 0, i)
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)
}

const publish = (topic: string, payload: Uint8Array, qos: Packet.QoS = 0, packetId?: number): Packet.Publish => ({
  _tag: "Publish",
  topic,
  payload,
  qos,
  retain: false,
  dup: false,
  ...(qos > 0 ? { packetId: packetId ?? 1 } : {})
})

const BIG = 256 * 1024

/** The `i`th large PUBLISH: 256 KiB of `pattern`, seeded so no two are alike. */
const big = (i: number): Packet.Publish => publish(`big/${i}`, pattern(BIG, i * 65536))

/**
 * Asserts `received` are exactly the publishes `expected`, in order: same topic, QoS, packet id and payload bytes.
 */
const assertPublishes = (received: ReadonlyArray<Packet.Packet>, expected: ReadonlyArray<Packet.Publish>) => {
  assert.strictEqual(received.length, expected.length, "number of publishes")
  for (let i = 0; i < expected.length; i++) {
    const got = received[i]!
    const want = expected[i]!
    if (got._tag !== "Publish") return assert.fail(`packet ${i}: ${got._tag}, expected Publish`)
    assert.strictEqual(got.topic, want.topic, `topic of publish ${i}`)
    assert.strictEqual(got.qos, want.qos, `QoS of publish ${i}`)
    assert.strictEqual(got.packetId, want.packetId, `packet id of publish ${i}`)
    assert.strictEqual(Buffer.compare(got.payload, want.payload), 0, `payload of publish ${i} differs`)
  }
}

const assertReason = <T extends MqttError.ReasonTag>(error: MqttError.MqttError, tag: T) => {
  assert.strictEqual(error.reason._tag, tag, `expected ${tag}, got ${error.reason._tag}: ${error.message}`)
  return error.reason as Extract<MqttError.MqttErrorReason, { _tag: T }>
}

/** The maximum of a `min default max` line in /proc (Linux), or undefined. */
const procMax = (path: string): number | undefined => {
  try {
    const max = Number(Fs.readFileSync(path, "utf8").trim().split(/\s+/)[2])
    return Number.isFinite(max) && max > 0 ? max : undefined
  } catch {
    return undefined
  }
}

/**
 * How many 256 KiB publishes can never all fit between a client and a server that does not read: more than the
 * kernel's largest send and receive buffers of one loopback connection (Linux: `tcp_wmem` and `tcp_rmem` maxima; 64
 * MiB elsewhere) and Node's buffers on both sides (a high-water mark each), plus two: the packet the outbox writes past
 * the mark, and one more. With that many, "not all complete while the server is paused" holds at any moment, not only after some wait.
 */
const unfittable = (() => {
  const wmem = procMax("/proc/sys/net/ipv4/tcp_wmem")
  const rmem = procMax("/proc/sys/net/ipv4/tcp_rmem")
  const kernel = wmem !== undefined && rmem !== undefined ? wmem + rmem : 64 * 1024 * 1024
  return Math.ceil((kernel + 2 * 64 * 1024) / BIG) + 2
})()

// ---------------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------------

describe("Connection over NetSocket (the outbox's direct writes)", () => {
  it.effect("50 QoS 0 publishes offered in one run arrive intact and in order; send completes once written", () =>
    live(Effect.gen(function*() {
      const { server, peer, client, link } = yield* setup()
      const sentBefore = link.lastSentAt()
      // Sizes 10 B to 4.7 KiB: runs of small packets (joined into one buffer) and large ones (written as they are).
      const packets = Array.from({ length: 50 }, (_, i) => publish(`run/${i}`, pattern(10 + i * 97, i * 1000)))
      const results = yield* Effect.sync(() => packets.map((packet) => link.offer(packet)))
      assert.deepStrictEqual(results, packets.map(() => undefined))
      const beforeSend = yield* Clock.currentTimeMillis
      const last = publish("run/last", pattern(5000, 77))
      yield* bounded(link.send(last), "send")
      // Written: every byte up to `last` has been handed to the client's socket.
      const total = [ConnectOptions.connectPacket(resolved(server.port)), ...packets, last]
        .map((packet) => encodeOrThrow(packet as Packet.Packet).length)
        .reduce((a, b) => a + b, 0)
      assert.strictEqual(client.bytesWritten, total)
      assert.isAtLeast(link.lastSentAt(), sentBefore)
      assert.isAtLeast(link.lastSentAt(), beforeSend)
      yield* peer.awaitPackets(1 + packets.length + 1)
      assertPublishes(peer.afterConnect, [...packets, last])
      assert.isUndefined(peer.malformed)
      assert.strictEqual(peer.length, total)
    })))

  it.effect("a server that stops reading blocks the sends; once it reads again every send completes, all intact", () =>
    live(Effect.gen(function*() {
      const { peer, client, link } = yield* setup({ pauseAfterConnack: true })
      const blocked = yield* kernelPushedBack(client)
      const n = unfittable
      const packets = Array.from({ length: n }, (_, i) => big(i))
      let completed = 0
      const sender = yield* Effect.forkChild(Effect.gen(function*() {
        for (const packet of packets) {
          yield* link.send(packet)
          completed++
        }
      }))
      // A direct write left Node's buffer full, with bytes the kernel did not take, and the writer fiber waits for
      // `drain`: the outbox is blocked.
      yield* blocked
      assert.isTrue(client.writableNeedDrain)
      // The server has read nothing since CONNECT, and the sends cannot all have completed: they do not fit.
      assert.strictEqual(peer.packets.length, 1)
      assert.isBelow(completed, n)
      assert.isUndefined(sender.pollUnsafe(), "every send completed while the server was not reading")
      peer.socket.resume()
      const exit = yield* bounded(Fiber.await(sender), "the sends once the server reads")
      assert.isTrue(Exit.isSuccess(exit), `the sends failed: ${String(exit)}`)
      assert.strictEqual(completed, n)
      yield* peer.awaitPackets(1 + n)
      assertPublishes(peer.afterConnect, packets)
      assert.isUndefined(peer.malformed)
    })))

  it.effect("the server closing the connection: the pull fails, and every later send, offer and pull fails the same", () =>
    live(Effect.gen(function*() {
      const { server, peer, link } = yield* setup()
      const pull = yield* Effect.forkChild(link.pull)
      peer.socket.destroy()
      // The client sees the FIN: the pending pull fails.
      const pullExit = yield* bounded(Fiber.await(pull), "the pull after the server closed")
      const pullError = yield* Effect.flip(pullExit)
      const read = assertReason(pullError, "TransportError")
      assert.strictEqual(read.operation, "read")
      assert.strictEqual(read.detail, "the broker closed the connection")
      assert.strictEqual(read.url, `mqtt://127.0.0.1:${server.port}`)
      // The link is dead from that read on: sends, offers and pulls fail with the first error, which names the cause
      // (the broker closed), instead of a write to a closed socket reported as "socket closed".
      const sendError = yield* bounded(Effect.flip(link.send({ _tag: "Pingreq" })), "a send after the close")
      assert.strictEqual(sendError, pullError)
      assert.strictEqual(link.offer({ _tag: "Pingreq" }), pullError)
      assert.strictEqual(yield* bounded(Effect.flip(link.pull), "a pull after the close"), pullError)
      assert.deepStrictEqual(peer.packets.map((p) => p._tag), ["Connect"])
    })))

  it.effect("the server destroying the connection under backpressure fails the pending send, later sends and pulls", () =>
    live(Effect.gen(function*() {
      const { peer, client, link } = yield* setup({ pauseAfterConnack: true })
      const blocked = yield* kernelPushedBack(client)
      const n = unfittable
      let completed = 0
      const sender = yield* Effect.forkChild(Effect.gen(function*() {
        for (let i = 0; i < n; i++) {
          yield* link.send(big(i))
          completed++
        }
      }))
      yield* blocked
      assert.isUndefined(sender.pollUnsafe())
      // Unread bytes in the server's buffers: the close is a reset.
      peer.socket.destroy()
      const exit = yield* bounded(Fiber.await(sender), "the pending send after the server destroyed the connection")
      assert.isTrue(Exit.isFailure(exit), "every send completed though the server never read")
      assert.isBelow(completed, n)
      const sendError = yield* Effect.flip(exit)
      const write = assertReason(sendError, "TransportError")
      assert.strictEqual(write.operation, "write")
      assert.strictEqual(write.detail, "socket closed")
      assert.strictEqual(link.offer({ _tag: "Pingreq" }), sendError)
      assert.strictEqual(yield* bounded(Effect.flip(link.send({ _tag: "Pingreq" })), "a later send"), sendError)
      assert.strictEqual(yield* bounded(Effect.flip(link.pull), "a pull"), sendError)
      assert.deepStrictEqual(peer.packets.map((p) => p._tag), ["Connect"])
    })))

  it.effect("disconnect writes DISCONNECT after everything offered before it; later offers are Disconnected", () =>
    live(Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { peer, link } = yield* setup({ scope })
      const packets = [
        publish("before/0", pattern(100, 1)),
        publish("before/1", pattern(BIG, 2), 1, 1),
        publish("before/2", pattern(3, 3), 2, 2)
      ]
      for (const packet of packets) assert.isUndefined(link.offer(packet))
      yield* bounded(link.disconnect, "disconnect")
      // [MQTT-3.14.4-2]: nothing is queued after DISCONNECT.
      const offered = link.offer(publish("after", pattern(4, 4)))
      assert.isDefined(offered)
      assert.strictEqual(assertReason(offered!, "Disconnected").operation, "Publish")
      assertReason(yield* bounded(Effect.flip(link.send({ _tag: "Pingreq" })), "a send after disconnect"), "Disconnected")
      yield* peer.awaitPackets(1 + packets.length + 1)
      // [MQTT-3.14.4-1]: closing the link's scope then ends the connection; nothing came after DISCONNECT.
      yield* Scope.close(scope, Exit.void)
      yield* peer.awaitEnd
      assert.deepStrictEqual(peer.packets.map((p) => p._tag), ["Connect", "Publish", "Publish", "Publish", "Disconnect"])
      assertPublishes(peer.afterConnect.slice(0, -1), packets)
      assert.deepStrictEqual([...peer.tail], [0xe0, 0x00])
      assert.isUndefined(peer.malformed)
      yield* peer.awaitClose
    })))

  it.effect("DISCONNECT queued behind a blocked batch waits, then goes out last once the server reads again", () =>
    live(Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { peer, client, link } = yield* setup({ pauseAfterConnack: true, scope })
      const blocked = yield* kernelPushedBack(client)
      // One batch larger than the buffers between client and server: one direct write, then the outbox is blocked.
      const batch = Array.from({ length: unfittable }, (_, i) => big(i))
      for (const packet of batch) assert.isUndefined(link.offer(packet))
      yield* blocked
      // Queued behind the blocked batch.
      const behind = [publish("behind/0", pattern(10, 1)), publish("behind/1", pattern(BIG, 2))]
      for (const packet of behind) assert.isUndefined(link.offer(packet))
      // Started at once: DISCONNECT is queued before the next line.
      const disconnect = yield* Effect.forkChild(link.disconnect, { startImmediately: true })
      yield* Effect.yieldNow
      assert.isUndefined(disconnect.pollUnsafe(), "disconnect completed while its DISCONNECT could not be written")
      assertReason(link.offer(publish("after", pattern(4, 4)))!, "Disconnected")
      assert.strictEqual(peer.packets.length, 1)
      peer.socket.resume()
      const exit = yield* bounded(Fiber.await(disconnect), "disconnect once the server reads")
      assert.isTrue(Exit.isSuccess(exit))
      yield* Scope.close(scope, Exit.void)
      yield* peer.awaitEnd
      const tags = peer.packets.map((p) => p._tag)
      assert.strictEqual(tags.length, 1 + batch.length + behind.length + 1)
      assert.strictEqual(tags[tags.length - 1], "Disconnect")
      assertPublishes(peer.afterConnect.slice(0, -1), [...batch, ...behind])
      assert.deepStrictEqual([...peer.tail], [0xe0, 0x00])
      assert.isUndefined(peer.malformed)
    })))
})
