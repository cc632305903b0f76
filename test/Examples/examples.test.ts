/**
 * The runnable examples run: each one as a child process (this Node, `--conditions=@effect-mqtt/source`, in the
 * repository root, bounded at 30 s) against a broker started by the test — an in-process Aedes for the plain ones, a
 * Mosquitto with a mutual-TLS listener for `tls-client-certificate.ts` (and for `multi-topic.ts` on a broker that
 * downgrades wildcard matches). Each must exit 0 and print its key lines. `service.ts` is also stopped by SIGTERM
 * after answering a command from a probe client, which must see the retained status go `online` → `offline` (not the
 * will): the scope closed and the client disconnected gracefully.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import { type Output, spawnNode } from "../Cli/processes.ts"
import * as Aedes from "../utils/Aedes.ts"
import { options, record, text } from "../utils/clients.ts"
import * as Mosquitto from "../utils/Mosquitto.ts"
import { describeMosquitto } from "../utils/suites.ts"

const bound = "30 seconds"

/** Runs `examples/NAME.ts ...args` to its end (bounded); returns exit code and output. */
const runExample = (name: string, args: ReadonlyArray<string>): Effect.Effect<Output> =>
  Effect.scoped(Effect.flatMap(spawnNode([`examples/${name}.ts`, ...args]), (running) => running.exit(bound)))

/** Asserts exit 0, an empty stderr and every expected line on stdout. */
const assertRan = (output: Output, expected: ReadonlyArray<RegExp>): void => {
  const explain = `exit ${output.code} (${output.signal})\nstdout:\n${output.stdout}\nstderr:\n${output.stderr}`
  assert.strictEqual(output.code, 0, explain)
  assert.strictEqual(output.stderr, "", explain)
  for (const line of expected) assert.match(output.stdout, line, explain)
}

describe("examples on Aedes", () => {
  it.live("error-recovery.ts recovers by reason, by Paho code and from a refused connection", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const output = yield* runExample("error-recovery", [broker.url])
      assertRan(output, [
        /recovered InvalidTopic by catchReason: Paho -1 FAILURE, isRetryable false\n {2}topic name "sensors\/\+\/temp/,
        /recovered BadQos by hasCode\(BAD_QOS\): Paho -9 BAD_QOS, isRetryable false\n {2}publish: QoS 3 is not 0, 1/,
        /recovered TransportError by catchReasons after 3 attempts: Paho -1 FAILURE, isRetryable true\n {2}open .*:1: /,
        /ECONNREFUSED/,
        /recovered: published sensors\/kitchen\/temperature at QoS 1, packet id \d+/
      ])
    }))

  it.live("multi-topic.ts prints the granted QoS per filter and each delivered QoS", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const output = yield* runExample("multi-topic", [broker.url])
      assertRan(output, [
        /granted sensors\/\+\/temperature +QoS 1 \(asked for 1\)/,
        /granted alerts\/# +QoS 2 \(asked for 2\)/,
        /granted logs\/info +QoS 0 \(asked for 0\)/,
        // Aedes 1.2.0 does not downgrade wildcard matches: the example says so rather than failing.
        /sensors\/kitchen\/temperature +published QoS 2, granted 1 \(sensors\/\+\/temperature\) → delivered QoS [12]/,
        /alerts\/fire\/kitchen +published QoS 1, granted 2 \(alerts\/#\) → delivered QoS 1\n/,
        /logs\/info +published QoS 2, granted 0 \(logs\/info\) → delivered QoS 0\n/
      ])
    }))

  it.live("request-response.ts gets 3 answers matched by correlation id", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const output = yield* runExample("request-response", [broker.url])
      assertRan(output, [
        /responder: answering svc\/echo\/request/,
        /request [0-9a-f]{8} "hello" → "HELLO" in \d+ ms/,
        /request [0-9a-f]{8} "effect" → "EFFECT" in \d+ ms/,
        /request [0-9a-f]{8} "mqtt" → "MQTT" in \d+ ms/,
        /3 requests answered/
      ])
    }))

  it.live("service.ts --for 1 runs, shuts down by itself and exits 0", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const output = yield* runExample("service", [broker.url, "--for", "1"])
      assertRan(output, [
        /service ready: answering service\/commands on service\/replies/,
        /--for 1: shutting down\nstopping: publishing offline, then disconnecting\n/,
        /\nstopped: the client disconnected gracefully\n$/
      ])
    }))

  it.live("service.ts answers a command, and on SIGTERM publishes offline, disconnects and exits 0", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const probe = yield* MqttClient.make(options(broker.url, { clientId: "example-probe" }))
      const subscription = yield* probe.subscription({ "service/replies": 1, "service/status": 1 })
      const seen = yield* record(subscription.messages)
      const service = yield* spawnNode(["examples/service.ts", broker.url])
      yield* service.waitFor("service ready", bound)
      yield* seen.waitFor("status online", (ms) => ms.some((m) => m.topic === "service/status"))
      yield* probe.publish({ topic: "service/commands", payload: "ping", qos: 1 })
      yield* seen.waitFor("the reply pong", (ms) => ms.some((m) => m.topic === "service/replies"))
      process.kill(service.pid!, "SIGTERM")
      const output = yield* service.exit(bound)
      assertRan(output, [
        /command "ping" → "pong"/,
        /stopping: publishing offline, then disconnecting\nstopped: the client disconnected gracefully/
      ])
      const statuses = yield* seen.waitFor(
        "status offline",
        (ms) => ms.filter((m) => m.topic === "service/status").length >= 2
      )
      assert.deepStrictEqual(
        statuses.map((m) => `${m.topic} ${text(m.payload)}`),
        ["service/status online", "service/replies pong", "service/status offline"]
      )
    }))
})

describeMosquitto("examples on Mosquitto", () => {
  it.live("tls-client-certificate.ts connects with a client certificate over mutual TLS", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ mtls: true })
      const output = yield* runExample("tls-client-certificate", [broker.mtlsUrl!])
      assertRan(output, [
        /tls\.verify: required \(the default\)/,
        /client certificate: .*CN=effect-mqtt-client/,
        /connected over mutual TLS to mqtts:\/\/localhost:\d+/,
        /received tls-example\/greeting "hello over mutual TLS" at QoS 1/
      ])
    }))

  it.live("multi-topic.ts: every message delivered at min(published, granted)", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const output = yield* runExample("multi-topic", [broker.url])
      assertRan(output, [
        /sensors\/kitchen\/temperature +published QoS 2, granted 1 \(sensors\/\+\/temperature\) → delivered QoS 1\n/,
        /alerts\/fire\/kitchen +published QoS 1, granted 2 \(alerts\/#\) → delivered QoS 1\n/,
        /logs\/info +published QoS 2, granted 0 \(logs\/info\) → delivered QoS 0\n/
      ])
      assert.notMatch(output.stdout, /did not downgrade/)
    }))
})
