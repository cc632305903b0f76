/**
 * The `effect-mqtt` CLI end to end: `src/Cli/bin.ts` run as child processes (this Node, source condition) against
 * Mosquitto brokers started per test. `sub -d` logs "subscribed to" after SUBACK, which is what a test waits for
 * before publishing. Usage errors and an unreachable broker need no broker and run everywhere; the embedded-broker
 * bench needs only aedes. Every process and every wait is bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Mosquitto from "../utils/Mosquitto.ts"
import { freePort } from "../utils/ports.ts"
import { describeMosquitto } from "../utils/suites.ts"
import * as Tls from "../utils/tls.ts"
import { cli, cliBackground, type Output } from "./processes.ts"

const timeout = 90_000

let sequence = 0
const topicRoot = (name: string) => `cli/${name}/${++sequence}-${Math.random().toString(16).slice(2, 8)}`

const explain = (output: Output) => `exit ${output.code}\nstdout:\n${output.stdout}\nstderr:\n${output.stderr}`

const assertExit = (output: Output, code: number) => assert.strictEqual(output.code, code, explain(output))

describe("effect-mqtt CLI without a broker", () => {
  it.live("pub -q 3: exit 2, BadQos with its Paho code on one stderr line, nothing sent", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const output = yield* cli(["pub", "-p", String(port), "-t", "a/b", "-m", "x", "-q", "3"])
      assertExit(output, 2)
      assert.strictEqual(output.stderr, "error: BadQos (Paho -9 BAD_QOS): publish: QoS 3 is not 0, 1 or 2\n")
      assert.strictEqual(output.stdout, "")
    }), timeout)

  it.live("sub -q -1 and an invalid filter: exit 2 with the reason", () =>
    Effect.gen(function*() {
      const badQos = yield* cli(["sub", "-t", "a", "-q", "-1"])
      assertExit(badQos, 2)
      assert.match(badQos.stderr, /^error: BadQos \(Paho -9 BAD_QOS\): /)
      const badFilter = yield* cli(["sub", "-t", "a/#/b"])
      assertExit(badFilter, 2)
      assert.match(badFilter.stderr, /^error: InvalidTopic \(Paho -1 FAILURE\): topic filter "a\/#\/b"/)
      const wildcard = yield* cli(["pub", "-t", "a/+", "-m", "x"])
      assertExit(wildcard, 2)
      assert.match(wildcard.stderr, /^error: InvalidTopic /)
    }), timeout)

  it.live("bad flags: exit 2 with an error line on stderr and nothing on stdout", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<[ReadonlyArray<string>, RegExp]> = [
        [["pub", "-t", "a", "-m", "x", "-q", "one"], /^error: Invalid value for flag --qos: "one"/],
        [["pub", "-m", "x"], /^error: Missing required flag: --topic/],
        [["pub", "-t", "a"], /^error: give the message with one of -m, -f, -l, -n or -s/],
        [["pub", "-t", "a", "-m", "x", "-n"], /^error: give the message with only one of -m, -n/],
        [["pub", "-t", "a", "-m", "x", "--url", "mqtt://localhost", "-p", "1883"], /^error: give the broker as --url/],
        [["pub", "-t", "a", "-m", "x", "--url", "foo://localhost"], /^error: BadProtocol \(Paho -14 BAD_PROTOCOL\)/],
        [["pub", "-t", "a", "-m", "x", "-P", "secret"], /^error: BadMqttOption \(Paho -15 BAD_MQTT_OPTION\)/],
        [
          ["pub", "-t", "a", "-m", "x", "--will-topic", ""],
          /^error: ZeroLenWillTopic \(Paho -17 ZERO_LEN_WILL_TOPIC\)/
        ],
        [["sub", "-t", "a", "-c"], /^error: -c \(--disable-clean-session\) needs a client id \(-i\)/],
        [["frobnicate"], /^error: Unknown subcommand "frobnicate"/]
      ]
      const outputs = yield* Effect.forEach(cases, ([args]) => cli(args), { concurrency: 2 })
      cases.forEach(([args, expected], i) => {
        const output = outputs[i]!
        assert.strictEqual(output.code, 2, `${args.join(" ")}: ${explain(output)}`)
        assert.match(output.stderr, expected, args.join(" "))
        assert.strictEqual(output.stdout, "", args.join(" "))
      })
    }), timeout)

  // ECONNREFUSED is a transport error, not a refusal by the broker: exit 1 (3 is for CONNACK refusals and TLS).
  it.live("an unreachable port: exit 1 at once with TransportError (the first connection is not retried)", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const started = Date.now()
      const output = yield* cli(["pub", "-h", "127.0.0.1", "-p", String(port), "-t", "a", "-m", "x"])
      assertExit(output, 1)
      assert.match(
        output.stderr,
        /^error: TransportError \(Paho -1 FAILURE\): open mqtt:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/
      )
      assert.isBelow(Date.now() - started, 20_000)
    }), timeout)

  it.live("--help prints the subcommand's flags on stdout and exits 0; no subcommand is a usage error", () =>
    Effect.gen(function*() {
      const help = yield* cli(["sub", "--help"])
      assertExit(help, 0)
      for (const flag of ["--topic, -t", "--count, -C", "--verbose, -v", "--timeout, -W", "--host, -h", "--pw, -P"]) {
        assert.include(help.stdout, flag)
      }
      const bare = yield* cli([])
      assertExit(bare, 2)
      assert.include(bare.stdout, "SUBCOMMANDS")
    }), timeout)

  it.live("bench on the embedded Aedes broker: a plain summary (stdout is not a TTY), nothing lost, exit 0", () =>
    Effect.gen(function*() {
      const output = yield* cli(["bench", "-C", "300", "-q", "1", "-s", "32"], { timeout: "60 seconds" })
      assertExit(output, 0)
      assert.include(output.stdout, "broker     embedded Aedes (mqtt://127.0.0.1:")
      assert.include(output.stdout, "messages   300 × 32 B at QoS 1, 16 in flight")
      assert.match(output.stdout, /latency    p50 [\d.]+ ms, p95/)
      assert.include(output.stdout, "lost       0")
      assert.notInclude(output.stdout, "\r")
    }), timeout)
})

describeMosquitto("effect-mqtt CLI against Mosquitto", () => {
  it.live("sub -C 2 -v prints both messages pub sent, as `topic payload` lines, and exits 0", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const port = String(broker.port)
      const root = topicRoot("pubsub")
      const sub = yield* cliBackground(["sub", "-p", port, "-t", `${root}/#`, "-v", "-C", "2", "-q", "1", "-d"])
      yield* sub.waitFor("subscribed to")
      assertExit(yield* cli(["pub", "-p", port, "-t", `${root}/a`, "-m", "hello", "-q", "1"]), 0)
      assertExit(yield* cli(["pub", "-p", port, "-t", `${root}/b`, "-m", "two words", "-q", "2"]), 0)
      const output = yield* sub.exit()
      assertExit(output, 0)
      assert.strictEqual(output.stdout, `${root}/a hello\n${root}/b two words\n`)
    }), timeout)

  it.live("sub reconnects after the broker restarts and subscribes again: it receives what is published after", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const port = String(broker.port)
      const topic = `${topicRoot("restart")}/t`
      const sub = yield* cliBackground(["sub", "-p", port, "-t", topic, "-C", "2", "-q", "1", "-d"])
      yield* sub.waitFor("subscribed to")
      assertExit(yield* cli(["pub", "-p", port, "-t", topic, "-m", "before", "-q", "1"]), 0)
      yield* broker.restart
      // Lifecycle events are logged from the first connection on, so this Connected is the reconnection.
      yield* sub.waitFor("event Reconnecting (attempt 1)")
      yield* sub.waitFor("event Connected")
      // Retained, so the subscriber gets it whether its SUBSCRIBE reaches the restarted broker before or after.
      assertExit(yield* cli(["pub", "-p", port, "-t", topic, "-m", "after", "-q", "1", "-r"]), 0)
      const output = yield* sub.exit()
      assertExit(output, 0)
      assert.strictEqual(output.stdout, "before\nafter\n")
    }), timeout)

  it.live("pub -l sends one message per stdin line (blank lines skipped), in order", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const port = String(broker.port)
      const topic = `${topicRoot("lines")}/t`
      const sub = yield* cliBackground(["sub", "-p", port, "-t", topic, "-C", "3", "-q", "1", "-d"])
      yield* sub.waitFor("subscribed to")
      const pub = yield* cli(["pub", "-p", port, "-t", topic, "-l", "-q", "1"], { stdin: "one\ntwo\n\nthree\r\n" })
      assertExit(pub, 0)
      const output = yield* sub.exit()
      assertExit(output, 0)
      assert.strictEqual(output.stdout, "one\ntwo\nthree\n")
    }), timeout)

  it.live("pub -r: a late sub receives the retained message", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const port = String(broker.port)
      const topic = `${topicRoot("retained")}/status`
      assertExit(yield* cli(["pub", "-p", port, "-t", topic, "-m", "online", "-r", "-q", "1"]), 0)
      const output = yield* cli(["sub", "-p", port, "-t", topic, "-C", "1", "-v", "-W", "20"])
      assertExit(output, 0)
      assert.strictEqual(output.stdout, `${topic} online\n`)
    }), timeout)

  it.live("sub -W 1 with nothing arriving: exit 4 with a Timeout line", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const topic = `${topicRoot("quiet")}/#`
      const output = yield* cli(["sub", "-p", String(broker.port), "-t", topic, "-W", "1", "-C", "1"])
      assertExit(output, 4)
      assert.strictEqual(output.stderr, "error: Timeout: received 0 of 1 messages within 1 s (-W 1)\n")
      assert.strictEqual(output.stdout, "")
    }), timeout)

  it.live("TLS: --cafile with --url mqtts:// and with -h/-p works; without the CA it fails with exit 3", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ tls: true })
      const topic = `${topicRoot("tls")}/t`
      const viaUrl = ["--url", broker.tlsUrl!, "--cafile", Tls.paths.ca]
      const viaHost = ["-h", "localhost", "-p", String(broker.tlsPort), "--cafile", Tls.paths.ca]
      assertExit(yield* cli(["pub", ...viaUrl, "-t", topic, "-m", "secret", "-r", "-q", "1"]), 0)
      const output = yield* cli(["sub", ...viaHost, "-t", topic, "-C", "1", "-W", "20"])
      assertExit(output, 0)
      assert.strictEqual(output.stdout, "secret\n")
      const otherCa = ["--url", broker.tlsUrl!, "--cafile", Tls.paths.otherCa]
      const untrusted = yield* cli(["pub", ...otherCa, "-t", topic, "-m", "x"])
      assertExit(untrusted, 3)
      assert.match(untrusted.stderr, /^error: TlsVerificationFailed \(Paho -1 FAILURE\): /)
      const insecure = yield* cli(["pub", "--url", broker.tlsUrl!, "--insecure", "-t", topic, "-m", "x"])
      assertExit(insecure, 0)
    }), timeout)

  it.live("mutual TLS: --cert and --key authenticate the client", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ mtls: true })
      const tls = ["--url", broker.mtlsUrl!, "--cafile", Tls.paths.ca]
      const topic = `${topicRoot("mtls")}/t`
      const withCert = yield* cli([
        "pub",
        ...tls,
        "--cert",
        Tls.paths.clientCert,
        "--key",
        Tls.paths.clientPlainKey,
        "-t",
        topic,
        "-m",
        "x"
      ])
      assertExit(withCert, 0)
      const without = yield* cli(["pub", ...tls, "-t", topic, "-m", "x"])
      assert.notStrictEqual(without.code, 0, explain(without))
    }), timeout)

  it.live("bench against Mosquitto at QoS 2: nothing lost, exit 0", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const output = yield* cli(["bench", "-p", String(broker.port), "-C", "300", "-q", "2"], { timeout: "60 seconds" })
      assertExit(output, 0)
      assert.include(output.stdout, `broker     mqtt://localhost:${broker.port}`)
      assert.include(output.stdout, "lost       0")
    }), timeout)
})

describeMosquitto("effect-mqtt CLI against Mosquitto with passwords", () => {
  it.live("the right password connects (exit 0); a wrong one is refused by CONNACK: exit 3", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ auth: { users: { alice: "s3cret" } } })
      const port = String(broker.authPort)
      const topic = `${topicRoot("auth")}/t`
      assertExit(yield* cli(["pub", "-p", port, "-u", "alice", "-P", "s3cret", "-t", topic, "-m", "x"]), 0)
      const wrong = yield* cli(["pub", "-p", port, "-u", "alice", "-P", "wrong", "-t", topic, "-m", "x"])
      assertExit(wrong, 3)
      assert.match(
        wrong.stderr,
        /^error: ConnectionRefused \(Paho -1 FAILURE\): the broker refused the connection: return code [45] /
      )
      assert.notInclude(wrong.stderr, "wrong")
      const anonymous = yield* cli(["pub", "-p", port, "-t", topic, "-m", "x"])
      assertExit(anonymous, 3)
    }), timeout)
}, { passwd: true })
