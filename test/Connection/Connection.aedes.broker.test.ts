/**
 * `Connection` against an in-process Aedes broker: TCP and WebSocket handshakes, a publish/subscribe round trip over
 * WebSocket, the `mqtt` WebSocket subprotocol seen by the server [MQTT-6.0.0-3], the exact CONNECT bytes the client
 * writes for each option combination (captured by a recording TCP proxy between client and broker and compared with
 * hex worked out by hand from §3.1), refusals by an `authenticate` hook, and a WebSocket dial to a wrong path.
 *
 * Everything runs on the live clock; waits are bounded, never timed sleeps.
 */
import * as http from "node:http"
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import type { ConnectPacket } from "aedes"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { createWebSocketStream, WebSocketServer } from "ws"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as Connection from "../../src/Connection/Connection.ts"
import type * as ConnectOptions from "../../src/Connection/ConnectOptions.ts"
import * as NodeTransport from "../../src/Connection/NodeTransport.ts"
import type * as MqttError from "../../src/Errors/MqttError.ts"
import * as Aedes from "../utils/Aedes.ts"
import * as Loopback from "../utils/loopback.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

const waitBound = Duration.seconds(10)

/** A link to the broker, open until the enclosing scope closes. */
const connectLink = (options: ConnectOptions.ConnectOptions) =>
  Effect.gen(function*() {
    const connection = yield* Connection.Connection
    return yield* connection.connect
  }).pipe(Effect.provide(NodeTransport.layerConnection({ connectTimeout: waitBound, ...options })))

/** Runs `effect` in its own scope and returns the MqttError it fails with; success or a defect fails the test. */
const failureOf = <A>(effect: Effect.Effect<A, MqttError.MqttError, Scope.Scope>) =>
  Effect.scoped(effect).pipe(
    Effect.exit,
    Effect.map((exit): MqttError.MqttError => {
      if (Exit.isSuccess(exit)) return assert.fail("expected a failure, but the effect succeeded")
      const error = Cause.findErrorOption(exit.cause)
      if (Option.isNone(error)) return assert.fail(`expected a typed MqttError, got ${Cause.pretty(exit.cause)}`)
      return error.value
    })
  )

/** Pulls until `done` holds for everything received so far (bounded); returns what was received. */
const pullUntil = (
  link: Connection.Link,
  what: string,
  done: (received: ReadonlyArray<Packet.ServerPacket>) => boolean
) => {
  const received: Array<Packet.ServerPacket> = []
  return Effect.gen(function*() {
    while (!done(received)) received.push(...(yield* link.pull))
    return received as ReadonlyArray<Packet.ServerPacket>
  }).pipe(
    Effect.timeoutOrElse({
      duration: waitBound,
      orElse: () => Effect.die(new Error(`timed out waiting for ${what}; received ${JSON.stringify(received)}`))
    })
  )
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")

/** Hex with spaces and line breaks removed, so expectations can be written grouped by field. */
const compact = (spaced: string): string => spaced.replace(/\s+/g, "")

/** The first MQTT packet in `bytes` (fixed header, remaining length, body), or undefined when incomplete. */
const firstPacket = (bytes: Uint8Array): Uint8Array | undefined => {
  let remaining = 0
  let multiplier = 1
  for (let i = 1; i < 5 && i < bytes.length; i++) {
    remaining += (bytes[i]! & 0x7f) * multiplier
    multiplier *= 128
    if ((bytes[i]! & 0x80) === 0) {
      const end = i + 1 + remaining
      return end <= bytes.length ? bytes.subarray(0, end) : undefined
    }
  }
  return undefined
}

interface RecordingProxy {
  readonly url: string
  /** Every byte clients sent through the proxy, in order, across all connections. */
  readonly fromClients: () => Buffer
  /** How many client connections the proxy accepted. */
  readonly accepted: () => number
}

/**
 * A TCP proxy on a free 127.0.0.1 port that forwards to `targetPort` and records what clients send. Each client byte
 * is recorded before it is forwarded, so once the client has the broker's answer the bytes that caused it are here.
 */
const recordingProxy = (targetPort: number): Effect.Effect<RecordingProxy, never, Scope.Scope> =>
  Effect.gen(function*() {
    const chunks: Array<Buffer> = []
    const sockets = new Set<net.Socket>()
    let accepted = 0
    const track = (socket: net.Socket) => {
      sockets.add(socket)
      socket.once("close", () => sockets.delete(socket))
      socket.on("error", () => socket.destroy())
    }
    const server = net.createServer((client) => {
      accepted++
      const upstream = net.connect({ host: "127.0.0.1", port: targetPort })
      track(client)
      track(upstream)
      client.on("data", (data: Buffer) => {
        chunks.push(Buffer.from(data))
        upstream.write(data)
      })
      upstream.on("data", (data: Buffer) => client.write(data))
      client.once("close", () => upstream.destroy())
      upstream.once("close", () => client.destroy())
    })
    const port = yield* Loopback.listen(server, () => sockets)
    return {
      url: `mqtt://127.0.0.1:${port}`,
      fromClients: () => Buffer.concat(chunks),
      accepted: () => accepted
    }
  })

interface RecordingWsServer {
  readonly url: string
  /** The `Sec-WebSocket-Protocol` request header of each WebSocket handshake. */
  readonly offeredProtocols: ReadonlyArray<string | undefined>
  /** The subprotocol the server selected for each connection. */
  readonly selectedProtocols: ReadonlyArray<string>
  /** Whether each data frame a client sent was binary. */
  readonly frameIsBinary: ReadonlyArray<boolean>
}

/**
 * A WebSocket server of our own on a free port, path `/mqtt`, handing connections to `broker` as the harness does,
 * but recording the handshake's subprotocol header and the kind of every data frame.
 */
const recordingWsServer = (broker: Aedes.AedesBroker): Effect.Effect<RecordingWsServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const offeredProtocols: Array<string | undefined> = []
    const selectedProtocols: Array<string> = []
    const frameIsBinary: Array<boolean> = []
    const httpServer = http.createServer((_request, response) => response.writeHead(426).end())
    const wss = new WebSocketServer({ server: httpServer, path: "/mqtt" })
    wss.on("connection", (websocket, request) => {
      offeredProtocols.push(request.headers["sec-websocket-protocol"])
      selectedProtocols.push(websocket.protocol)
      websocket.on("message", (_data, isBinary) => frameIsBinary.push(isBinary))
      broker.broker.handle(createWebSocketStream(websocket), request)
    })
    const port = yield* Effect.acquireRelease(
      Effect.callback<number>((resume) => {
        httpServer.listen({ host: "127.0.0.1", port: 0 }, () => {
          const address = httpServer.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      }),
      () =>
        Effect.callback<void>((resume) => {
          for (const websocket of wss.clients) websocket.terminate()
          wss.close()
          httpServer.closeAllConnections()
          httpServer.close(() => resume(Effect.void))
        })
    )
    return { url: `ws://127.0.0.1:${port}/mqtt`, offeredProtocols, selectedProtocols, frameIsBinary }
  })

/** Subscribes to `topic` at QoS 1, publishes `payload` to it at QoS 1 and checks both the PUBACK and the delivery. */
const selfRoundTrip = (link: Connection.Link, topic: string, payload: string) =>
  Effect.gen(function*() {
    yield* link.send({ _tag: "Subscribe", packetId: 1, subscriptions: [{ topicFilter: topic, qos: 1 }] })
    const [suback] = yield* pullUntil(link, "SUBACK", (received) => received.length > 0)
    assert.deepStrictEqual(suback, { _tag: "Suback", packetId: 1, returnCodes: [1] })

    const body = new TextEncoder().encode(payload)
    yield* link.send({ _tag: "Publish", topic, payload: body, qos: 1, retain: false, dup: false, packetId: 2 })
    const received = yield* pullUntil(
      link,
      "PUBACK and the delivered PUBLISH",
      (packets) => packets.some((p) => p._tag === "Puback") && packets.some((p) => p._tag === "Publish")
    )
    assert.deepInclude(received, { _tag: "Puback", packetId: 2 })
    const delivered = received.find((p): p is Packet.Publish => p._tag === "Publish")!
    assert.strictEqual(delivered.topic, topic)
    assert.strictEqual(new TextDecoder().decode(delivered.payload), payload)
    assert.strictEqual(delivered.qos, 1)
    assert.isFalse(delivered.dup)
    assert.isDefined(delivered.packetId)
    yield* link.send({ _tag: "Puback", packetId: delivered.packetId! })
  })

// ---------------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------------

describe("Connection against Aedes", () => {
  it.live("TCP: CONNECT/CONNACK, then DISCONNECT ends the client on the broker", () =>
    Effect.gen(function*() {
      const aedes = yield* Aedes.start()
      const disconnected: Array<string> = []
      aedes.broker.on("clientDisconnect", (client) => disconnected.push(client.id))
      yield* Effect.scoped(Effect.gen(function*() {
        const link = yield* connectLink({ url: aedes.url, clientId: "aedes-tcp" })
        assert.deepStrictEqual(link.connack, { _tag: "Connack", sessionPresent: false, returnCode: 0 })
        assert.strictEqual(link.url, aedes.url)
        yield* link.disconnect
      }))
      yield* Effect.callback<void>((resume) => {
        if (disconnected.includes("aedes-tcp")) return resume(Effect.void)
        aedes.broker.on("clientDisconnect", (client) => {
          if (client.id === "aedes-tcp") resume(Effect.void)
        })
      }).pipe(Effect.timeoutOrElse({ duration: waitBound, orElse: () => Effect.die(new Error("no clientDisconnect")) }))
    }))

  it.live("the will is published when the link closes without DISCONNECT, and not after DISCONNECT", () =>
    Effect.gen(function*() {
      const aedes = yield* Aedes.start()
      const published: Array<string> = []
      aedes.broker.on("publish", (packet) => published.push(packet.topic))
      const will = (topic: string) => ({ topic, payload: "gone", qos: 1 as const })

      yield* Effect.scoped(Effect.gen(function*() {
        const link = yield* connectLink({ url: aedes.url, clientId: "will-graceful", will: will("will/graceful") })
        yield* link.disconnect
      }))
      // Closing the scope without DISCONNECT: to the broker the connection was lost.
      yield* Effect.scoped(connectLink({ url: aedes.url, clientId: "will-abrupt", will: will("will/abrupt") }))

      yield* Effect.callback<void>((resume) => {
        if (published.includes("will/abrupt")) return resume(Effect.void)
        aedes.broker.on("publish", (packet) => {
          if (packet.topic === "will/abrupt") resume(Effect.void)
        })
      }).pipe(Effect.timeoutOrElse({ duration: waitBound, orElse: () => Effect.die(new Error("no will published")) }))
      // The graceful client left first, so its will would have been published before the abrupt one's.
      assert.notInclude(published, "will/graceful")
    }))

  it.live("WebSocket: connects to ws://…/mqtt and round-trips a QoS 1 publish to itself", () =>
    Effect.gen(function*() {
      const aedes = yield* Aedes.start({ websocket: true })
      const link = yield* connectLink({ url: aedes.wsUrl!, clientId: "aedes-ws" })
      assert.deepStrictEqual(link.connack, { _tag: "Connack", sessionPresent: false, returnCode: 0 })
      yield* selfRoundTrip(link, "effect-mqtt/ws/round-trip", "over websocket")
      yield* link.disconnect
    }))

  it.live("WebSocket: the handshake offers the mqtt subprotocol; frames are binary [MQTT-6.0.0-3] [MQTT-6.0.0-1]", () =>
    Effect.gen(function*() {
      const aedes = yield* Aedes.start()
      const server = yield* recordingWsServer(aedes)
      // The harness's own WebSocket listener, seen from inside the broker: Aedes keeps the upgrade request.
      const seenByAedes: Array<string | undefined> = []
      const viaHarness = yield* Aedes.start({
        websocket: true,
        aedes: {
          preConnect: (client, _packet, callback) => {
            seenByAedes.push(client.req?.headers["sec-websocket-protocol"])
            callback(null, true)
          }
        }
      })

      const link = yield* connectLink({ url: server.url, clientId: "aedes-ws-protocol" })
      yield* selfRoundTrip(link, "effect-mqtt/ws/protocol", "binary")
      yield* link.disconnect
      yield* Effect.scoped(connectLink({ url: viaHarness.wsUrl!, clientId: "aedes-ws-harness" }))

      assert.deepStrictEqual(server.offeredProtocols, ["mqtt"])
      assert.deepStrictEqual(server.selectedProtocols, ["mqtt"])
      assert.deepStrictEqual(seenByAedes, ["mqtt"])
      // CONNECT, SUBSCRIBE, PUBLISH, PUBACK, DISCONNECT at least, all as binary frames.
      assert.isAtLeast(server.frameIsBinary.length, 5)
      assert.isTrue(server.frameIsBinary.every((binary) => binary), JSON.stringify(server.frameIsBinary))
    }))

  it.live("WebSocket: a wrong path fails with a typed TransportError when the server answers 400", () =>
    Effect.gen(function*() {
      const aedes = yield* Aedes.start({ websocket: true })
      const error = yield* failureOf(connectLink({ url: `ws://127.0.0.1:${aedes.wsPort}/wrong`, clientId: "ws-path" }))
      assert.strictEqual(error.reason._tag, "TransportError", error.message)
      if (error.reason._tag !== "TransportError") return
      assert.strictEqual(error.reason.operation, "open")
      assert.include(error.message, "400")
      assert.isTrue(error.isRetryable)
      assert.strictEqual(aedes.broker.connectedClients, 0)
    }))

  it.live("an authenticate hook that refuses gives ConnectionRefused 5, or the return code the hook names", () =>
    Effect.gen(function*() {
      const aedes = yield* Aedes.start({
        aedes: {
          authenticate: (_client, username, password, done) => {
            if (username === "alice" && password?.toString() === "secret") return done(null, true)
            if (username === "alice") {
              return done(Object.assign(new Error("bad password"), { returnCode: 4 as const }), null)
            }
            done(null, false)
          }
        }
      })
      const notAuthorized = yield* failureOf(connectLink({ url: aedes.url, username: "mallory", password: "x" }))
      assert.strictEqual(notAuthorized.reason._tag, "ConnectionRefused")
      if (notAuthorized.reason._tag === "ConnectionRefused") {
        assert.strictEqual(notAuthorized.reason.returnCode, 5)
        assert.strictEqual(notAuthorized.reason.returnCodeName, "NotAuthorized")
      }
      assert.isFalse(notAuthorized.isRetryable)

      const badPassword = yield* failureOf(connectLink({ url: aedes.url, username: "alice", password: "wrong" }))
      assert.strictEqual(badPassword.reason._tag, "ConnectionRefused")
      if (badPassword.reason._tag === "ConnectionRefused") assert.strictEqual(badPassword.reason.returnCode, 4)
      assert.isFalse(badPassword.isRetryable)
      assert.include(badPassword.message, "return code 4")

      const accepted = yield* connectLink({ url: aedes.url, username: "alice", password: "secret" })
      assert.strictEqual(accepted.connack.returnCode, 0)
    }))

  describe("CONNECT on the wire [MQTT-3.1.0-1], recorded by a proxy, against bytes worked out from §3.1", () => {
    // Every CONNECT starts with: packet type 1 (0x10), remaining length, protocol name "MQTT" (00 04 4d 51 54 54),
    // level 4, connect flags, keepalive (2 bytes); then the payload [MQTT-3.1.3-1]: client id (always, first
    // [MQTT-3.1.3-3]), will topic and will message (only with the will flag [MQTT-3.1.2-9]), user name
    // [MQTT-3.1.2-18/19], password [MQTT-3.1.2-20/21], each with a 2-byte length. Flags: 0x80 user name, 0x40
    // password, 0x20 will retain, 0x18 will QoS, 0x04 will, 0x02 clean session, 0x01 reserved (always 0).
    const header = "00 04 4d 51 54 54 04"
    const long = "a".repeat(120)
    const cases: ReadonlyArray<readonly [string, Omit<ConnectOptions.ConnectOptions, "url">, string]> = [
      [
        "minimal: clean session, keepalive 60, no will/user/password [MQTT-3.1.2-11] [MQTT-3.1.2-18] [MQTT-3.1.2-20]",
        { clientId: "c1" },
        `10 0e ${header} 02 00 3c  00 02 63 31`
      ],
      [
        "persistent session (clean session 0) [MQTT-3.1.2-4]",
        { clientId: "c1", cleanSession: false },
        `10 0e ${header} 00 00 3c  00 02 63 31`
      ],
      ["keepalive 0 (off)", { clientId: "c1", keepalive: 0 }, `10 0e ${header} 02 00 00  00 02 63 31`],
      ["keepalive 65535", { clientId: "c1", keepalive: 65535 }, `10 0e ${header} 02 ff ff  00 02 63 31`],
      [
        "user name only [MQTT-3.1.2-19] [MQTT-3.1.2-20]",
        { clientId: "c1", username: "u" },
        `10 11 ${header} 82 00 3c  00 02 63 31  00 01 75`
      ],
      [
        "user name and password [MQTT-3.1.2-21]",
        { clientId: "c1", username: "u", password: "p" },
        `10 14 ${header} c2 00 3c  00 02 63 31  00 01 75  00 01 70`
      ],
      [
        "will QoS 0 with retain",
        { clientId: "c1", will: { topic: "w", payload: "x", qos: 0, retain: true } },
        `10 14 ${header} 26 00 3c  00 02 63 31  00 01 77  00 01 78`
      ],
      [
        "will QoS 1 with retain",
        { clientId: "c1", will: { topic: "w", payload: "x", qos: 1, retain: true } },
        `10 14 ${header} 2e 00 3c  00 02 63 31  00 01 77  00 01 78`
      ],
      [
        "will QoS 2 with retain",
        { clientId: "c1", will: { topic: "w", payload: "x", qos: 2, retain: true } },
        `10 14 ${header} 36 00 3c  00 02 63 31  00 01 77  00 01 78`
      ],
      [
        "will with an empty message: the zero length is still sent [MQTT-3.1.2-9]",
        { clientId: "c1", will: { topic: "w" } },
        `10 13 ${header} 06 00 3c  00 02 63 31  00 01 77  00 00`
      ],
      [
        "every field: payload order client id, will topic, will message, user name, password [MQTT-3.1.3-1]",
        {
          clientId: "c1",
          cleanSession: false,
          username: "u",
          password: "p",
          will: { topic: "w", payload: "x", qos: 1, retain: false }
        },
        `10 1a ${header} cc 00 3c  00 02 63 31  00 01 77  00 01 78  00 01 75  00 01 70`
      ],
      [
        "a 136-byte body takes a two-byte remaining length (0x88 0x01)",
        { clientId: "c1", username: long },
        `10 88 01 ${header} 82 00 3c  00 02 63 31  00 78 ${"61".repeat(120)}`
      ]
    ]

    it.live.each(cases)("%s", ([_name, options, expected]) =>
      Effect.gen(function*() {
        const connects: Array<ConnectPacket> = []
        const aedes = yield* Aedes.start({
          aedes: {
            preConnect: (_client, packet, callback) => {
              connects.push(packet)
              callback(null, true)
            }
          }
        })
        const proxy = yield* recordingProxy(aedes.port)
        const link = yield* connectLink({ ...options, url: proxy.url })
        assert.strictEqual(link.connack.returnCode, 0)

        // [MQTT-3.1.0-1]: the CONNECT is the first packet, and nothing else was sent before CONNACK.
        const sent = proxy.fromClients()
        const connect = firstPacket(sent)
        assert.isDefined(connect, `incomplete packet: ${hex(sent)}`)
        assert.strictEqual(hex(connect!), compact(expected))
        assert.strictEqual(hex(sent), hex(connect!), "bytes after the CONNECT before anything was sent")

        // Aedes decoded the same fields: an independent parser agrees with the bytes.
        assert.strictEqual(connects.length, 1)
        const seen = connects[0]!
        assert.strictEqual(seen.protocolId, "MQTT")
        assert.strictEqual(seen.protocolVersion, 4)
        assert.strictEqual(seen.clientId, options.clientId)
        assert.strictEqual(seen.clean, options.cleanSession ?? true)
        assert.strictEqual(seen.keepalive, options.keepalive ?? 60)
        assert.strictEqual(seen.username, options.username)
        assert.strictEqual(seen.password?.toString(), options.password as string | undefined)
        if (options.will === undefined) {
          assert.isUndefined(seen.will)
        } else {
          assert.strictEqual(seen.will?.topic, options.will.topic)
          assert.strictEqual(seen.will?.payload.toString(), (options.will.payload as string | undefined) ?? "")
          assert.strictEqual(seen.will?.qos, options.will.qos ?? 0)
          assert.strictEqual(seen.will?.retain, options.will.retain ?? false)
        }
        yield* link.disconnect
      }))

    it.live("a password without a user name is refused before dialing [MQTT-3.1.2-22]", () =>
      Effect.gen(function*() {
        const aedes = yield* Aedes.start()
        const proxy = yield* recordingProxy(aedes.port)
        const error = yield* Effect.flip(Layer.build(NodeTransport.layerConnection({ url: proxy.url, password: "p" })))
        assert.strictEqual(error.reason._tag, "BadMqttOption")
        assert.isFalse(error.isRetryable)
        // Proof that nothing was dialed: a valid connection afterwards is the proxy's first.
        yield* Effect.scoped(connectLink({ url: proxy.url, clientId: "after" }))
        assert.strictEqual(proxy.accepted(), 1)
      }))
  })
})
