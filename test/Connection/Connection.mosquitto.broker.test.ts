/**
 * `Connection` against a real Mosquitto 2.0 broker: the TCP handshake and a graceful DISCONNECT, TLS (trusted CA,
 * unknown CA, IP SAN, wrong host name, `verify: "none"`), mutual TLS with an encrypted client key, password
 * listeners, empty client ids, IPv6, keepalive on a 1 s interval, a QoS 1 round trip and persistent sessions.
 *
 * Skipped with a warning when Mosquitto is not installed (failing instead under CI). Everything runs on the live
 * clock; waits are bounded and wait for events (broker log lines, packets), never for a timed sleep.
 */
import * as os from "node:os"
import { assert, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as Connection from "../../src/Connection/Connection.ts"
import type * as ConnectOptions from "../../src/Connection/ConnectOptions.ts"
import * as Keepalive from "../../src/Connection/Keepalive.ts"
import * as NodeTransport from "../../src/Connection/NodeTransport.ts"
import type * as MqttError from "../../src/Errors/MqttError.ts"
import * as Mosquitto from "../utils/Mosquitto.ts"
import { describeMosquitto } from "../utils/suites.ts"
import * as Tls from "../utils/tls.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

const waitBound = Duration.seconds(10)

/** The Connection service for `options` (dialing happens at each `connect`). */
const connectionFor = (options: ConnectOptions.ConnectOptions) =>
  Effect.service(Connection.Connection).pipe(
    Effect.provide(NodeTransport.layerConnection({ connectTimeout: waitBound, ...options }))
  )

/** A link to the broker, open until the enclosing scope closes. */
const connectLink = (options: ConnectOptions.ConnectOptions) =>
  Effect.flatMap(connectionFor(options), (connection) => connection.connect)

/** Connects, sends DISCONNECT and closes the link's scope. */
const connectAndLeave = (options: ConnectOptions.ConnectOptions) =>
  Effect.scoped(Effect.gen(function*() {
    const link = yield* connectLink(options)
    yield* link.disconnect
    return link.connack
  }))

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

/** Waits until the broker's log matches `pattern` (bounded); returns the log. */
const waitForLog = (broker: Mosquitto.MosquittoBroker, pattern: RegExp) =>
  Effect.gen(function*() {
    while (true) {
      const logs = yield* broker.logs
      if (pattern.test(logs)) return logs
      yield* Effect.sleep(Duration.millis(20))
    }
  }).pipe(
    Effect.timeoutOrElse({
      duration: waitBound,
      orElse: () =>
        Effect.flatMap(broker.logs, (logs) => Effect.die(new Error(`no log line matching ${pattern}; log:\n${logs}`)))
    })
  )

/** The keepalive settings a session derives from resolved options. */
const keepaliveConfig = (options: ConnectOptions.Resolved): Keepalive.Config => ({
  keepaliveMillis: options.keepalive * 1000,
  pingTimeoutMillis: Duration.toMillis(options.pingTimeout)
})

/**
 * Runs `Keepalive.make.run` on `link` together with the link's only pull loop, in a child fiber that fails if either
 * does (or if anything but PINGRESP arrives). Records when each PINGREQ was queued and counts PINGRESPs.
 */
const runKeepalive = (link: Connection.Link, config: Keepalive.Config) =>
  Effect.gen(function*() {
    const pingTimes: Array<number> = []
    let pingresps = 0
    const pullLoop = Effect.forever(
      Effect.flatMap(link.pull, (packets) =>
        Effect.sync(() => {
          for (const packet of packets) {
            if (packet._tag !== "Pingresp") throw new Error(`unexpected ${packet._tag} on an idle link`)
            pingresps++
          }
        }))
    )
    const fiber = yield* Effect.forkChild(
      Effect.raceFirst(Keepalive.make.run(link, config, () => pingTimes.push(Date.now())), pullLoop)
    )
    return { fiber, pingTimes: pingTimes as ReadonlyArray<number>, pingresps: () => pingresps }
  })

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** How many times `pattern` (a global regex) occurs in `text`. */
const count = (text: string, pattern: RegExp): number => text.match(pattern)?.length ?? 0

const ca = Tls.read("ca")
const otherCa = Tls.read("otherCa")
const clientCert = Tls.read("clientCert")
const encryptedClientKey = Tls.read("clientKey")

/** Certificate-chain codes OpenSSL reports when the server's certificate does not chain to a trusted CA. */
const unknownCaCodes = [
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"
]

/** Whether this machine has the IPv6 loopback address. */
const hasIpv6Loopback = Object.values(os.networkInterfaces()).some((addresses) =>
  (addresses ?? []).some((address) => address.family === "IPv6" && address.address === "::1")
)

// ---------------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------------

describeMosquitto("Connection against Mosquitto", () => {
  it.live("TCP: CONNACK 0, then DISCONNECT; the broker logs a clean disconnect [MQTT-3.14.4-1] [MQTT-3.14.4-2]", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ verbose: true })
      yield* Effect.scoped(Effect.gen(function*() {
        const link = yield* connectLink({ url: broker.url, clientId: "graceful" })
        assert.deepStrictEqual(link.connack, { _tag: "Connack", sessionPresent: false, returnCode: 0 })
        yield* link.disconnect
        // Nothing may follow DISCONNECT on this connection.
        const after = link.offer({ _tag: "Pingreq" })
        assert.strictEqual(after?.reason._tag, "Disconnected")
        // The broker closes its side once it has read DISCONNECT: the next pull ends with a TransportError.
        const ended = yield* failureOf(
          link.pull.pipe(
            Effect.timeoutOrElse({
              duration: waitBound,
              orElse: () => Effect.die(new Error("the broker kept the link open"))
            })
          )
        )
        assert.strictEqual(ended.reason._tag, "TransportError", ended.message)
      }))
      const logs = yield* waitForLog(broker, /Client graceful disconnected\./)
      assert.include(logs, "Received DISCONNECT from graceful")
      assert.notInclude(logs, "Client graceful closed its connection")
      assert.include(logs, "New client connected from 127.0.0.1")
    }))

  it.live("TLS with the test CA: mqtts://localhost connects", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ tls: true })
      const connack = yield* connectAndLeave({ url: broker.tlsUrl!, clientId: "tls-ok", tls: { ca } })
      assert.strictEqual(connack.returnCode, 0)
      yield* waitForLog(broker, /Client tls-ok disconnected\./)
    }))

  it.live("TLS with the wrong CA fails with TlsVerificationFailed, not retryable, naming the TLS code", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ tls: true })
      const error = yield* failureOf(
        connectLink({ url: broker.tlsUrl!, clientId: "tls-wrong-ca", tls: { ca: otherCa } })
      )
      assert.strictEqual(error.reason._tag, "TlsVerificationFailed", error.message)
      if (error.reason._tag !== "TlsVerificationFailed") return
      // Observed with Node 24 / OpenSSL 3 against Mosquitto 2.0.11: SELF_SIGNED_CERT_IN_CHAIN, because Mosquitto
      // sends the CA along with its certificate.
      assert.include(unknownCaCodes, error.reason.tlsCode)
      assert.include(error.message, error.reason.tlsCode)
      assert.include(error.message, broker.tlsUrl!)
      assert.isFalse(error.isRetryable)

      // And the other way round: a broker whose certificate our CA did not sign.
      const other = yield* Mosquitto.start({
        tls: true,
        certificates: { ca: Tls.paths.otherCa, cert: Tls.paths.otherServerCert, key: Tls.paths.otherServerKey }
      })
      const reverse = yield* failureOf(connectLink({ url: other.tlsUrl!, tls: { ca } }))
      assert.strictEqual(reverse.reason._tag, "TlsVerificationFailed", reverse.message)
      assert.isFalse(reverse.isRetryable)
    }))

  it.live("TLS to 127.0.0.1: verified against the certificate's IP SAN (no SNI for IP literals)", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ tls: true })
      const url = `mqtts://127.0.0.1:${broker.tlsPort}`
      const connection = yield* connectionFor({ url, tls: { ca } })
      const tlsOptions = yield* NodeTransport.tlsConnectionOptions(connection.options)
      assert.isUndefined(tlsOptions.servername)
      const connack = yield* connectAndLeave({ url, clientId: "tls-ip", tls: { ca } })
      assert.strictEqual(connack.returnCode, 0)
    }))

  it.live("TLS with a server name the certificate does not list fails with ERR_TLS_CERT_ALTNAME_INVALID", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ tls: true })
      const error = yield* failureOf(
        connectLink({ url: broker.tlsUrl!, clientId: "tls-name", tls: { ca, servername: "not-localhost.example" } })
      )
      assert.strictEqual(error.reason._tag, "TlsVerificationFailed", error.message)
      if (error.reason._tag === "TlsVerificationFailed") {
        assert.strictEqual(error.reason.tlsCode, "ERR_TLS_CERT_ALTNAME_INVALID")
      }
      assert.isFalse(error.isRetryable)
    }))

  it.live("tls.verify \"none\" connects to a broker whose CA we do not have (and verification is on otherwise)", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({
        tls: true,
        certificates: { ca: Tls.paths.otherCa, cert: Tls.paths.otherServerCert, key: Tls.paths.otherServerKey }
      })
      const refused = yield* failureOf(connectLink({ url: broker.tlsUrl!, clientId: "tls-default" }))
      assert.strictEqual(refused.reason._tag, "TlsVerificationFailed", refused.message)
      const connack = yield* connectAndLeave({ url: broker.tlsUrl!, clientId: "tls-none", tls: { verify: "none" } })
      assert.strictEqual(connack.returnCode, 0)
      yield* waitForLog(broker, /Client tls-none disconnected\./)
    }))

  it.live("mutual TLS with a client certificate and an ENCRYPTED key + passphrase connects", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ mtls: { useIdentityAsUsername: true } })
      const connack = yield* connectAndLeave({
        url: broker.mtlsUrl!,
        clientId: "mtls-ok",
        tls: {
          ca,
          cert: clientCert,
          key: Redacted.make(encryptedClientKey),
          passphrase: Redacted.make(Tls.clientKeyPassphrase)
        }
      })
      assert.strictEqual(connack.returnCode, 0)
      // use_identity_as_username: the broker saw our certificate (its CN became the user name).
      const logs = yield* waitForLog(broker, /Client mtls-ok disconnected\./)
      assert.match(logs, /as mtls-ok \(.*u'effect-mqtt-client'\)/)
    }))

  it.live("mutual TLS without a client certificate: TlsVerificationFailed (TLS 1.3 alert 116), not retryable", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ mtls: true })
      // With TLS 1.3 the client's handshake completes first; the broker's "certificate required" alert arrives while
      // the client waits for CONNACK. Repeated to show that the outcome does not depend on timing.
      for (let attempt = 0; attempt < 3; attempt++) {
        const error = yield* failureOf(connectLink({ url: broker.mtlsUrl!, clientId: "mtls-none", tls: { ca } }))
        assert.strictEqual(error.reason._tag, "TlsVerificationFailed", error.message)
        if (error.reason._tag === "TlsVerificationFailed") {
          assert.strictEqual(error.reason.tlsCode, "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED")
        }
        assert.include(error.message, "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED")
        assert.isFalse(error.isRetryable)
      }
      const logs = yield* waitForLog(broker, /(peer did not return a certificate[\s\S]*){3}/)
      assert.notInclude(logs, "as mtls-none")
    }))

  // Regression: found by this test and fixed in src.
  it.live("mutual TLS with a wrong passphrase fails with a typed, non-retryable error", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ mtls: true })
      for (const passphrase of ["wrong passphrase", undefined]) {
        const error = yield* failureOf(
          connectLink({ url: broker.mtlsUrl!, tls: { ca, cert: clientCert, key: encryptedClientKey, passphrase } })
        )
        assert.include(["TlsVerificationFailed", "BadMqttOption"], error.reason._tag, error.message)
        assert.isFalse(error.isRetryable)
      }
    }))

  // Regression: found by this test and fixed in src.
  it.live("the TlsVerificationFailed message names the TLS code once", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ tls: true })
      const error = yield* failureOf(connectLink({ url: broker.tlsUrl!, tls: { ca: otherCa } }))
      assert.strictEqual(error.reason._tag, "TlsVerificationFailed")
      if (error.reason._tag !== "TlsVerificationFailed") return
      assert.strictEqual(count(error.message, new RegExp(escape(error.reason.tlsCode), "g")), 1, error.message)
    }))

  it.live("an empty client id with a clean session is accepted: the broker assigns one [MQTT-3.1.3-7]", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const connack = yield* connectAndLeave({ url: broker.url, clientId: "" })
      assert.deepStrictEqual(connack, { _tag: "Connack", sessionPresent: false, returnCode: 0 })
      yield* waitForLog(broker, /New client connected from 127\.0\.0\.1:\d+ as auto-[0-9A-F-]+ \(p2, c1, k60\)/)
    }))

  it.live("an empty client id with cleanSession false is refused before dialing: BadMqttOption [MQTT-3.1.3-7]", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      // Everything the broker logged before this marker's CONNACK (e.g. the harness's readiness probes) is excluded.
      yield* connectAndLeave({ url: broker.url, clientId: "marker-before" })
      const error = yield* Effect.flip(
        Layer.build(NodeTransport.layerConnection({ url: broker.url, clientId: "", cleanSession: false }))
      )
      assert.strictEqual(error.reason._tag, "BadMqttOption")
      if (error.reason._tag === "BadMqttOption") assert.strictEqual(error.reason.option, "clientId")
      assert.isFalse(error.isRetryable)
      yield* connectAndLeave({ url: broker.url, clientId: "marker-after" })
      const logs = yield* waitForLog(broker, /as marker-after /)
      const between = logs.slice(logs.indexOf("as marker-before "), logs.indexOf("as marker-after "))
      // Only marker-after's own TCP connection appears between the two markers: nothing was dialed for the bad one.
      assert.strictEqual(count(between, /New connection from/g), 1, between)
    }))

  it.live.skipIf(!hasIpv6Loopback)("IPv6: mqtt://[::1]:PORT connects", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ ipv6: true })
      assert.match(broker.ipv6Url!, /^mqtt:\/\/\[::1\]:\d+$/)
      const connack = yield* connectAndLeave({ url: broker.ipv6Url!, clientId: "ipv6" })
      assert.strictEqual(connack.returnCode, 0)
      yield* waitForLog(broker, /New client connected from ::1:\d+ as ipv6 /)
    }))
  if (!hasIpv6Loopback) console.warn("[effect-mqtt] SKIPPING the IPv6 test: this machine has no ::1 loopback address")

  it.live("keepalive 1 s: PINGREQ/PINGRESP keep an idle link up for 5 s, a silent one is dropped [MQTT-3.1.2-23]", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ verbose: true })
      const connection = yield* connectionFor({ url: broker.url, clientId: "ka-alive", keepalive: 1 })
      const link = yield* connection.connect
      // A control without keepalive: Mosquitto drops it after 1.5 keepalive intervals of silence.
      const silent = yield* connectLink({ url: broker.url, clientId: "ka-silent", keepalive: 1 })

      // The settings a session derives from the resolved options: keepalive 1 s, ping timeout (default) 1 s.
      const config = keepaliveConfig(connection.options)
      assert.deepStrictEqual(config, { keepaliveMillis: 1000, pingTimeoutMillis: 1000 })
      const keepalive = yield* runKeepalive(link, config)
      const silentEnd = yield* Effect.forkChild(Effect.exit(silent.pull))

      // Five seconds of idleness: the link must stay up the whole time.
      const early = yield* Fiber.await(keepalive.fiber).pipe(
        Effect.timeoutOrElse({ duration: Duration.seconds(5), orElse: () => Effect.succeed(undefined) })
      )
      assert.isUndefined(early, early !== undefined && Exit.isFailure(early) ? Cause.pretty(early.cause) : "ended")
      assert.isAtLeast(keepalive.pingTimes.length, 4)
      assert.isAtLeast(keepalive.pingresps(), 3)

      const silentExit = yield* Fiber.join(silentEnd)
      assert.isTrue(Exit.isFailure(silentExit))
      if (Exit.isFailure(silentExit)) {
        const error = Cause.findErrorOption(silentExit.cause)
        const reason = Option.isSome(error) ? error.value.reason._tag : "defect"
        assert.strictEqual(reason, "TransportError", Cause.pretty(silentExit.cause))
      }

      yield* Fiber.interrupt(keepalive.fiber)
      yield* link.disconnect
      const logs = yield* waitForLog(broker, /Client ka-alive disconnected\./)
      assert.isAtLeast(count(logs, /Received PINGREQ from ka-alive/g), 4)
      assert.isAtLeast(count(logs, /Sending PINGRESP to ka-alive/g), 4)
      assert.notInclude(logs, "Client ka-alive has exceeded timeout")
      assert.include(logs, "Client ka-silent has exceeded timeout")
    }), 30_000)

  // Regression: found by this test and fixed in src.
  it.live("keepalive 1 s with a 2 s ping timeout still sends at least once a second [MQTT-3.1.2-23]", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const link = yield* connectLink({
        url: broker.url,
        clientId: "ka-long-timeout",
        keepalive: 1,
        pingTimeout: "2 seconds"
      })
      const keepalive = yield* runKeepalive(link, { keepaliveMillis: 1000, pingTimeoutMillis: 2000 })
      yield* Fiber.await(keepalive.fiber).pipe(
        Effect.timeoutOrElse({ duration: Duration.millis(4500), orElse: () => Effect.succeed(undefined) })
      )
      const gaps = keepalive.pingTimes.slice(1).map((at, i) => at - keepalive.pingTimes[i]!)
      // Observed today: PINGREQs at ~1 s and ~3 s (gap ~2000 ms). Expected about 1000 ms apart.
      assert.isAtLeast(keepalive.pingTimes.length, 2, JSON.stringify(keepalive.pingTimes))
      assert.isBelow(Math.max(...gaps), 1500, JSON.stringify(gaps))
    }), 30_000)

  it.live("QoS 1 round trip: SUBSCRIBE, PUBLISH to ourselves, then PUBACK and the delivery via pull/send", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ verbose: true })
      const link = yield* connectLink({ url: broker.url, clientId: "round-trip" })
      const topic = "effect-mqtt/mosquitto/round-trip"
      yield* link.send({ _tag: "Subscribe", packetId: 7, subscriptions: [{ topicFilter: topic, qos: 1 }] })
      const [suback] = yield* pullUntil(link, "SUBACK", (received) => received.length > 0)
      assert.deepStrictEqual(suback, { _tag: "Suback", packetId: 7, returnCodes: [1] })

      const payload = new TextEncoder().encode("hello mosquitto")
      yield* link.send({ _tag: "Publish", topic, payload, qos: 1, retain: false, dup: false, packetId: 8 })
      const received = yield* pullUntil(
        link,
        "PUBACK and the delivered PUBLISH",
        (packets) => packets.some((p) => p._tag === "Puback") && packets.some((p) => p._tag === "Publish")
      )
      assert.deepInclude(received, { _tag: "Puback", packetId: 8 })
      const delivered = received.find((p): p is Packet.Publish => p._tag === "Publish")!
      assert.strictEqual(delivered.topic, topic)
      assert.deepStrictEqual([...delivered.payload], [...payload])
      assert.strictEqual(delivered.qos, 1)
      assert.isFalse(delivered.dup)
      assert.isFalse(delivered.retain)
      yield* link.send({ _tag: "Puback", packetId: delivered.packetId! })
      yield* link.disconnect
      const logs = yield* waitForLog(broker, /Client round-trip disconnected\./)
      assert.match(logs, new RegExp(`Received PUBACK from round-trip \\(Mid: ${delivered.packetId}`))
    }))

  it.live("persistent session: cleanSession false again finds the session and its queued message [MQTT-3.1.2-4]", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const session = { url: broker.url, clientId: "persistent-session", cleanSession: false } as const
      const topic = "effect-mqtt/mosquitto/persistent"

      yield* Effect.scoped(Effect.gen(function*() {
        const first = yield* connectLink(session)
        assert.isFalse(first.connack.sessionPresent)
        yield* first.send({ _tag: "Subscribe", packetId: 1, subscriptions: [{ topicFilter: topic, qos: 1 }] })
        yield* pullUntil(first, "SUBACK", (received) => received.length > 0)
        yield* first.disconnect
      }))

      // While the client is away, another client publishes at QoS 1: the broker queues it in the session.
      yield* Effect.scoped(Effect.gen(function*() {
        const publisher = yield* connectLink({ url: broker.url, clientId: "publisher" })
        const payload = new TextEncoder().encode("queued")
        yield* publisher.send({ _tag: "Publish", topic, payload, qos: 1, retain: false, dup: false, packetId: 1 })
        yield* pullUntil(publisher, "PUBACK", (received) => received.some((p) => p._tag === "Puback"))
        yield* publisher.disconnect
      }))

      yield* Effect.scoped(Effect.gen(function*() {
        const second = yield* connectLink(session)
        assert.isTrue(second.connack.sessionPresent)
        const received = yield* pullUntil(second, "the queued PUBLISH", (packets) => packets.length > 0)
        const queued = received[0]!
        assert.strictEqual(queued._tag, "Publish")
        if (queued._tag !== "Publish") return
        assert.strictEqual(new TextDecoder().decode(queued.payload), "queued")
        yield* second.send({ _tag: "Puback", packetId: queued.packetId! })
        yield* second.disconnect
      }))

      // [MQTT-3.1.2-6]: a clean session discards it.
      const clean = yield* connectAndLeave({ ...session, cleanSession: true })
      assert.isFalse(clean.sessionPresent)
      const again = yield* connectAndLeave(session)
      assert.isFalse(again.sessionPresent)
    }))
})

describeMosquitto("Connection against Mosquitto: password listener", () => {
  it.live("the right password connects; a wrong one or none is ConnectionRefused 5, not retryable", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ auth: { users: { alice: "alice-secret" } }, verbose: true })
      const connack = yield* connectAndLeave({
        url: broker.authUrl!,
        clientId: "auth-ok",
        username: "alice",
        password: Redacted.make("alice-secret")
      })
      assert.strictEqual(connack.returnCode, 0)
      yield* waitForLog(broker, /as auth-ok \(.*u'alice'\)/)
      // Credentials in the URL work the same way.
      const port = broker.authPort!
      assert.strictEqual((yield* connectAndLeave({ url: `mqtt://alice:alice-secret@127.0.0.1:${port}` })).returnCode, 0)

      for (const options of [{ username: "alice", password: "wrong" }, { username: "mallory" }, {}]) {
        const error = yield* failureOf(connectLink({ url: broker.authUrl!, ...options }))
        assert.strictEqual(error.reason._tag, "ConnectionRefused", error.message)
        if (error.reason._tag !== "ConnectionRefused") return
        // Mosquitto 2.0.11 answers 5 (not authorised) for every failed login of 3.1.1 clients.
        assert.include([4, 5], error.reason.returnCode)
        assert.strictEqual(error.reason.returnCode, 5)
        assert.isFalse(error.isRetryable)
      }
      const logs = yield* waitForLog(broker, /(disconnected, not authorised[\s\S]*){3}/)
      assert.strictEqual(count(logs, /Sending CONNACK to 127\.0\.0\.1 \(0, 5\)/g), 3)
    }))
}, { passwd: true })
