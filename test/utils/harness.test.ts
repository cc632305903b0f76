/**
 * Self-tests of the real-broker harness: free ports, Mosquitto (every listener accepts TCP and a real MQTT
 * CONNECT/CONNACK made with MQTT.js, TLS and mutual TLS with the committed fixtures, password checks, stop/kill/
 * restart on the same ports, persistence, start-up failures, cleanup on scope close) and Aedes (TCP and WebSocket,
 * hooks, dropped connections, cleanup). MQTT.js is used here only, to prove the harness against an independent client.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as tls from "node:tls"
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import { connect, ErrorWithSubackPacket, type IClientOptions, type MqttClient } from "mqtt"
import * as Aedes from "./Aedes.ts"
import * as Mosquitto from "./Mosquitto.ts"
import { canConnect, freePort, freePortOn } from "./ports.ts"
import { describeMosquitto, suiteMode } from "./suites.ts"
import * as Tls from "./tls.ts"

const timeout = Duration.seconds(5)

interface Connected {
  readonly client: MqttClient
  readonly sessionPresent: boolean
}

/** An MQTT 3.1.1 connection made with MQTT.js, open until the scope closes; fails with the client's error. */
const mqttConnect = (url: string, options: IClientOptions = {}) =>
  Effect.acquireRelease(
    Effect.callback<Connected, Error>((resume) => {
      const client = connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 4_000, ...options })
      const fail = (error: Error) => {
        client.end(true)
        resume(Effect.fail(error))
      }
      client.once("connect", (connack) => resume(Effect.succeed({ client, sessionPresent: connack.sessionPresent })))
      client.once("error", fail)
      client.once("close", () => fail(new Error(`connection to ${url} closed before CONNACK`)))
      return Effect.sync(() => client.end(true))
    }).pipe(Effect.timeout(timeout)),
    ({ client }) => Effect.callback<void>((resume) => void client.end(true, {}, () => resume(Effect.void)))
  )

/** The error MQTT.js reports when the connection attempt fails (the test fails if it succeeds). */
const mqttRefusal = (url: string, options: IClientOptions = {}) =>
  Effect.scoped(mqttConnect(url, options)).pipe(Effect.flip)

/** A TLS handshake with node:tls, the socket open until the scope closes. */
const tlsHandshake = (options: tls.ConnectionOptions) =>
  Effect.acquireRelease(
    Effect.callback<tls.TLSSocket, Error>((resume) => {
      const socket = tls.connect(options)
      socket.once("secureConnect", () => resume(Effect.succeed(socket)))
      socket.once("error", (error) => {
        socket.destroy()
        resume(Effect.fail(error))
      })
      socket.once("close", () => resume(Effect.fail(new Error("closed during the TLS handshake"))))
      return Effect.sync(() => socket.destroy())
    }).pipe(Effect.timeout(timeout)),
    (socket) => Effect.sync(() => socket.destroy())
  )

const processExists = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH"
  }
}

const ca = Tls.read("ca")
const clientCert = { cert: Tls.read("clientCert"), key: Tls.read("clientKey"), passphrase: Tls.clientKeyPassphrase }

describe("ports", () => {
  it.live("freePort hands out distinct ports that can be listened on", () =>
    Effect.gen(function*() {
      const a = yield* freePort
      const b = yield* freePort
      const c = yield* freePortOn("::1")
      assert.notStrictEqual(a, b)
      assert.isTrue(new Set([a, b, c]).size === 3)
      const server = net.createServer()
      yield* Effect.callback<void>((resume) => void server.listen(a, "127.0.0.1", () => resume(Effect.void)))
      assert.isTrue(yield* canConnect("127.0.0.1", a))
      yield* Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
      assert.isFalse(yield* canConnect("127.0.0.1", a))
    }))
})

describe("suiteMode", () => {
  const all = { mosquitto: true, passwd: true }
  it("runs when everything needed is installed", () => {
    assert.deepStrictEqual(suiteMode(all, { passwd: true }, { CI: "true" }), { _tag: "Run" })
    assert.deepStrictEqual(suiteMode({ mosquitto: true, passwd: false }, {}, {}), { _tag: "Run" })
  })
  it("skips outside CI and fails under CI when something is missing", () => {
    const none = { mosquitto: false, passwd: false }
    assert.deepStrictEqual(suiteMode(none, {}, {}), { _tag: "Skip", missing: ["mosquitto"] })
    assert.deepStrictEqual(suiteMode(none, { passwd: true }, { CI: "1" }), {
      _tag: "Fail",
      missing: ["mosquitto", "mosquitto_passwd"]
    })
    assert.deepStrictEqual(suiteMode({ mosquitto: true, passwd: false }, { passwd: true }, { CI: "true" }), {
      _tag: "Fail",
      missing: ["mosquitto_passwd"]
    })
  })
})

describeMosquitto("Mosquitto harness", () => {
  const users = { alice: "alice-secret", bob: "bob-secret" }
  const allListeners = { tls: true, mtls: true, auth: { users }, ipv6: true } as const

  it.live("starts every listener, then stops the process and removes its files when the scope closes", () =>
    Effect.gen(function*() {
      const logFile = path.join(os.tmpdir(), `effect-mqtt-harness-${process.pid}-${Date.now()}.log`)
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(logFile, { force: true })))
      const broker = yield* Effect.scoped(Effect.gen(function*() {
        const broker = yield* Mosquitto.start({ ...allListeners, logFile })
        assert.strictEqual(broker.url, `mqtt://127.0.0.1:${broker.port}`)
        assert.isTrue(yield* broker.isRunning)
        assert.isTrue(processExists(broker.pid))
        for (const port of [broker.port, broker.tlsPort!, broker.mtlsPort!, broker.authPort!]) {
          assert.isTrue(yield* canConnect("127.0.0.1", port), `listener ${port}`)
        }
        assert.isTrue(yield* canConnect("::1", broker.ipv6Port!))
        assert.strictEqual(new Set([broker.port, broker.tlsPort, broker.mtlsPort, broker.authPort]).size, 4)
        assert.notStrictEqual(broker.port, 1883)
        const config = fs.readFileSync(broker.configFile, "utf8")
        assert.include(config, "max_inflight_messages 1000")
        assert.include(config, "persistence false")
        assert.include(yield* broker.logs, "running")
        return broker
      }))
      assert.isFalse(processExists(broker.pid), "broker process still alive after scope close")
      assert.isFalse(fs.existsSync(broker.dir), "temp dir left behind")
      assert.isFalse(yield* canConnect("127.0.0.1", broker.port))
      assert.include(fs.readFileSync(logFile, "utf8"), "terminating")
    }))

  it.effect("works under it.effect: the harness keeps to the real clock despite the TestClock", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      yield* broker.restart
      assert.isTrue(yield* canConnect("127.0.0.1", broker.port))
      const aedes = yield* Aedes.start({ websocket: true })
      assert.isTrue(yield* canConnect("127.0.0.1", aedes.wsPort!))
    }))

  it.live("accepts MQTT CONNECT over the plain, IPv6, TLS, mutual-TLS and password listeners", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ ...allListeners, mtls: { useIdentityAsUsername: true } })
      yield* mqttConnect(broker.url)
      yield* mqttConnect(broker.ipv6Url!)
      yield* mqttConnect(broker.tlsUrl!, { ca })
      yield* mqttConnect(`mqtts://127.0.0.1:${broker.tlsPort}`, { ca })
      yield* mqttConnect(broker.mtlsUrl!, { ca, ...clientCert })
      yield* mqttConnect(broker.authUrl!, { username: "alice", password: users.alice })
      yield* mqttConnect(broker.authUrl!, { username: "bob", password: users.bob })
      // use_identity_as_username: the client certificate's CN becomes the user name in the broker's log.
      assert.include(yield* broker.logs, "u'effect-mqtt-client'")
    }))

  it.live("the password listener refuses anonymous clients and wrong passwords", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ auth: { users } })
      const anonymous = yield* mqttRefusal(broker.authUrl!)
      const wrong = yield* mqttRefusal(broker.authUrl!, { username: "alice", password: "nope" })
      for (const error of [anonymous, wrong]) {
        assert.include([4, 5], (error as Error & { code?: number }).code, String(error))
      }
      yield* mqttConnect(broker.url) // the plain listener stays anonymous
    }))

  it.live("TLS: handshake with the test CA; a wrong CA is refused both ways", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ tls: true })
      const socket = yield* tlsHandshake({ host: "127.0.0.1", port: broker.tlsPort!, servername: "localhost", ca })
      assert.isTrue(socket.authorized)
      const untrusted = yield* Effect.flip(
        tlsHandshake({ host: "127.0.0.1", port: broker.tlsPort!, servername: "localhost", ca: Tls.read("otherCa") })
      )
      assert.match(String(untrusted), /self[- ]signed|unable to verify|certificate/i)

      const other = yield* Mosquitto.start({
        tls: true,
        certificates: { ca: Tls.paths.otherCa, cert: Tls.paths.otherServerCert, key: Tls.paths.otherServerKey }
      })
      yield* Effect.flip(tlsHandshake({ host: "127.0.0.1", port: other.tlsPort!, servername: "localhost", ca }))
      yield* tlsHandshake({ host: "127.0.0.1", port: other.tlsPort!, servername: "localhost", ca: Tls.read("otherCa") })
    }))

  it.live("mutual TLS requires a client certificate (encrypted key + passphrase accepted)", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ mtls: true })
      const base = { host: "127.0.0.1", port: broker.mtlsPort!, servername: "localhost", ca } as const
      // TLS 1.2 makes the refusal part of the handshake (with 1.3 it arrives after the client's Finished).
      yield* Effect.flip(tlsHandshake({ ...base, maxVersion: "TLSv1.2" }))
      const socket = yield* tlsHandshake({ ...base, ...clientCert })
      assert.isTrue(socket.authorized)
      yield* mqttRefusal(broker.mtlsUrl!, { ca })
      yield* mqttConnect(broker.mtlsUrl!, { ca, cert: clientCert.cert, key: Tls.read("clientPlainKey") })
    }))

  it.live("stop and kill end the process; restart comes back on the same ports", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ tls: true })
      const firstPid = broker.pid
      yield* broker.stop
      assert.isFalse(yield* broker.isRunning)
      assert.isFalse(processExists(firstPid))
      assert.isFalse(yield* canConnect("127.0.0.1", broker.port))
      yield* broker.stop // idempotent

      yield* broker.restart
      assert.notStrictEqual(broker.pid, firstPid)
      assert.isTrue(yield* broker.isRunning)
      yield* mqttConnect(broker.url)
      yield* mqttConnect(broker.tlsUrl!, { ca })

      const secondPid = broker.pid
      yield* broker.kill
      assert.isFalse(processExists(secondPid))
      yield* broker.restart // from a stopped broker: a plain start
      yield* broker.restart // from a running broker: stop, then start
      yield* mqttConnect(broker.url)
    }))

  it.live("a new broker can take over the fixed port of a closed one", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const first = yield* Effect.scoped(
        Mosquitto.start({ port }).pipe(Effect.tap((broker) => mqttConnect(broker.url)))
      )
      assert.strictEqual(first.port, port)
      assert.isFalse(processExists(first.pid))
      const second = yield* Mosquitto.start({ port })
      assert.strictEqual(second.port, port)
      yield* mqttConnect(second.url)
    }))

  it.live("persistence keeps sessions across restart; without it they are forgotten", () =>
    Effect.gen(function*() {
      const session = { clientId: "harness-persist", clean: false } as const
      const subscribeAndLeave = (url: string) =>
        Effect.scoped(Effect.gen(function*() {
          const { client } = yield* mqttConnect(url, session)
          yield* Effect.promise(() => client.subscribeAsync("harness/persist", { qos: 1 }))
        }))

      const persistent = yield* Mosquitto.start({ persistence: true })
      yield* subscribeAndLeave(persistent.url)
      yield* persistent.restart
      assert.isTrue((yield* mqttConnect(persistent.url, session)).sessionPresent)

      const volatile = yield* Mosquitto.start()
      yield* subscribeAndLeave(volatile.url)
      yield* volatile.restart
      assert.isFalse((yield* mqttConnect(volatile.url, session)).sessionPresent)
    }))

  it.live("a broker that cannot start fails with a clear error and its output", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const blocker = net.createServer()
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => void blocker.listen(port, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.callback<void>((resume) => void blocker.close(() => resume(Effect.void)))
      )
      const busy = yield* Effect.flip(Effect.scoped(Mosquitto.start({ port })))
      assert.strictEqual(busy.reason, "PortInUse")
      assert.include(busy.message, `127.0.0.1:${port}`)

      const bad = yield* Effect.flip(Effect.scoped(Mosquitto.start({ extraConfig: ["no_such_option 1"] })))
      assert.strictEqual(bad.reason, "Exited")
      assert.include(bad.message, "Unknown configuration variable")
    }))
}, { passwd: true })

describe("Aedes harness", () => {
  it.live("serves MQTT over TCP and WebSocket, and closes everything with the scope", () =>
    Effect.gen(function*() {
      const testScope = yield* Effect.scope
      const handle = yield* Effect.scoped(Effect.gen(function*() {
        const handle = yield* Aedes.start({ websocket: true })
        assert.strictEqual(handle.url, `mqtt://127.0.0.1:${handle.port}`)
        assert.strictEqual(handle.wsUrl, `ws://127.0.0.1:${handle.wsPort}/mqtt`)
        yield* mqttConnect(handle.url)
        yield* mqttConnect(handle.wsUrl!)
        assert.strictEqual(handle.broker.connectedClients, 2)
        // Clients still connected when the broker's scope closes must not make closing hang.
        yield* mqttConnect(handle.url).pipe(Scope.provide(testScope))
        yield* mqttConnect(handle.wsUrl!).pipe(Scope.provide(testScope))
        return handle
      }))
      assert.isTrue(handle.broker.closed)
      assert.isFalse(yield* canConnect("127.0.0.1", handle.port))
      assert.isFalse(yield* canConnect("127.0.0.1", handle.wsPort!))
    }))

  it.live("passes hooks to Aedes (authenticate, authorizeSubscribe)", () =>
    Effect.gen(function*() {
      const handle = yield* Aedes.start({
        aedes: {
          authenticate: (_client, username, password, done) =>
            done(null, username === "alice" && password?.toString() === "secret"),
          authorizeSubscribe: (_client, subscription, done) =>
            done(null, subscription.topic.startsWith("forbidden/") ? null : subscription) // an error would disconnect
        }
      })
      const refused = yield* mqttRefusal(handle.url, { username: "alice", password: "wrong" })
      assert.include([4, 5], (refused as Error & { code?: number }).code, String(refused))
      const { client } = yield* mqttConnect(handle.url, { username: "alice", password: "secret" })
      // MQTT.js turns a SUBACK holding 0x80 into an ErrorWithSubackPacket.
      const refusal = yield* Effect.flip(
        Effect.tryPromise(() => client.subscribeAsync(["ok/1", "forbidden/1"], { qos: 1 }))
      )
      assert.instanceOf(refusal.cause, ErrorWithSubackPacket)
      assert.deepStrictEqual((refusal.cause as ErrorWithSubackPacket).packet.granted, [1, 128])
    }))

  it.live("dropConnections cuts every client without stopping the broker", () =>
    Effect.gen(function*() {
      const handle = yield* Aedes.start({ websocket: true })
      const tcp = yield* mqttConnect(handle.url)
      const ws = yield* mqttConnect(handle.wsUrl!)
      const closed = (client: MqttClient) =>
        Effect.callback<void>((resume) => {
          if (!client.connected) return resume(Effect.void)
          client.once("close", () => resume(Effect.void))
        }).pipe(Effect.timeout(timeout))
      yield* handle.dropConnections
      yield* Effect.all([closed(tcp.client), closed(ws.client)])
      yield* mqttConnect(handle.url)
    }))
})
