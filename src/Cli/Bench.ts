/**
 * `effect-mqtt bench`: publish → subscribe throughput and latency. One client subscribes to a topic, another
 * publishes `-C` messages of `-s` bytes at QoS `-q` with at most `--inflight` publishes outstanding; each payload
 * carries its index, so the subscriber measures each message's latency (publish call → delivery, one process, one
 * clock). Runs against the broker given by `--url` or `-h`/`-p`, or else an embedded Aedes broker on a free loopback
 * port (loaded by dynamic import: aedes is a development dependency, so an installed package may lack it). Shows a
 * progress line when stdout is a terminal and prints a plain summary either way. Lost messages at QoS 1 or 2 fail the
 * run (exit 1); at QoS 0 they are reported.
 *
 * @since 0.1.0
 */
import * as net from "node:net"
import * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stdio from "effect/Stdio"
import * as Stream from "effect/Stream"
import { Command, Flag } from "effect/cli"
import { type Packet, Topic, Validate } from "../index.ts"
import * as Connect from "./Connect.ts"
import { Failure, Timeout, UsageError } from "./Exit.ts"

/**
 * The flags of `bench`.
 *
 * @since 0.1.0
 */
export const flags = {
  qos: Flag.Int("qos").pipe(
    Flag.withAlias("q"),
    Flag.withDescription("QoS: 0, 1 or 2 (default 1)"),
    Flag.withDefault(1)
  ),
  count: Flag.Int("count").pipe(
    Flag.withAlias("C"),
    Flag.withDescription("Messages to send (default 10000)"),
    Flag.withDefault(10_000)
  ),
  size: Flag.Int("size").pipe(
    Flag.withAlias("s"),
    Flag.withDescription("Payload bytes, at least 4 (default 64)"),
    Flag.withDefault(64)
  ),
  inflight: Flag.Int("inflight").pipe(
    Flag.withDescription("Publishes outstanding at once, default 16 (Mosquitto's default max_inflight_messages is 20)"),
    Flag.withDefault(16)
  ),
  topic: Flag.String("topic").pipe(
    Flag.withAlias("t"),
    Flag.withDescription("Topic (default effect-mqtt/bench/<random>)"),
    Flag.optional
  ),
  connection: Connect.flags
} as const

/** How long the subscriber may go without a message, once everything is published, before the rest count as lost. */
const idleLimit = Duration.seconds(5)

const listen = (server: net.Server) =>
  Effect.callback<number, Failure>((resume) => {
    server.once("error", (cause) => resume(Effect.fail(new Failure({ message: `cannot listen: ${cause.message}` }))))
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const address = server.address()
      resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

/**
 * An Aedes broker on a free 127.0.0.1 port for the current scope; returns its URL. Fails with a clear message when
 * the aedes package is not installed.
 *
 * @since 0.1.0
 */
export const embeddedBroker = Effect.gen(function*() {
  const { Aedes } = yield* Effect.tryPromise({
    try: () => import("aedes"),
    catch: (cause) =>
      new Failure({
        message: typeof cause === "object" && cause !== null && "code" in cause && cause.code === "ERR_MODULE_NOT_FOUND"
          ? "bench runs an embedded Aedes broker when no broker is given, but the aedes package is not installed: " +
            "npm install aedes, or name a broker with --url or -h/-p"
          : `cannot load aedes for the embedded broker: ${String(cause)}`
      })
  })
  const broker = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () => Aedes.createBroker(),
      catch: (cause) => new Failure({ message: `cannot start Aedes: ${String(cause)}` })
    }),
    (broker) =>
      Effect.callback<void>((resume) => broker.close(() => resume(Effect.void))).pipe(Effect.timeoutOption("2 seconds"))
  )
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
    broker.handle(socket)
  })
  const port = yield* Effect.acquireRelease(listen(server), () =>
    Effect.callback<void>((resume) => {
      server.close(() => resume(Effect.void))
      for (const socket of sockets) socket.destroy()
    }).pipe(Effect.timeoutOption("2 seconds")))
  return `mqtt://127.0.0.1:${port}`
})

/** The `p`-quantile (0..1) of sorted values. */
const quantile = (sorted: Float64Array, p: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

const ms = (value: number) => `${value.toFixed(value < 10 ? 2 : 1)} ms`
const rate = (count: number, millis: number) =>
  `${Math.round(count / (millis / 1000)).toLocaleString("en-US")} msg/s`

/**
 * The result of a run.
 *
 * @since 0.1.0
 */
export interface Result {
  readonly sent: number
  readonly received: number
  readonly publishMillis: number
  readonly deliverMillis: number
  /** Latencies in milliseconds, sorted. */
  readonly latencies: Float64Array
}

/**
 * The plain summary of a run.
 *
 * @since 0.1.0
 */
export const summary = (
  setup: {
    readonly broker: string
    readonly count: number
    readonly size: number
    readonly qos: number
    readonly inflight: number
  },
  result: Result
): string => {
  const mb = (result.received * setup.size) / (1024 * 1024) / (result.deliverMillis / 1000)
  const l = result.latencies
  return [
    "effect-mqtt bench",
    `broker     ${setup.broker}`,
    `messages   ${setup.count} × ${setup.size} B at QoS ${setup.qos}, ${setup.inflight} in flight`,
    `publish    ${result.sent} in ${ms(result.publishMillis)}: ${rate(result.sent, result.publishMillis)}`,
    `deliver    ${result.received} in ${ms(result.deliverMillis)}: ${rate(result.received, result.deliverMillis)}, ${
      mb.toFixed(2)
    } MiB/s`,
    `latency    p50 ${ms(quantile(l, 0.5))}, p95 ${ms(quantile(l, 0.95))}, p99 ${ms(quantile(l, 0.99))}, max ${
      ms(quantile(l, 1))
    }`,
    `lost       ${setup.count - result.received}`
  ].join("\n")
}

/**
 * `effect-mqtt bench`.
 *
 * @since 0.1.0
 */
export const command = Command.make("bench", flags, (input) =>
  Effect.gen(function*() {
    const invalidQos = Validate.qos(input.qos, "bench")
    if (invalidQos !== undefined) return yield* Effect.fail(invalidQos)
    if (!Number.isInteger(input.count) || input.count < 1) {
      return yield* new UsageError({ message: `-C must be a positive integer, got ${input.count}` })
    }
    if (!Number.isInteger(input.size) || input.size < 4) {
      return yield* new UsageError({ message: `-s must be at least 4 (the payload carries the message index)` })
    }
    if (!Number.isInteger(input.inflight) || input.inflight < 1 || input.inflight > 65535) {
      return yield* new UsageError({ message: `--inflight must be an integer in 1..65535, got ${input.inflight}` })
    }
    const topic = Option.getOrElse(input.topic, () => `effect-mqtt/bench/${Math.random().toString(16).slice(2, 10)}`)
    const invalidTopic = Topic.validateTopicName(topic)
    if (invalidTopic !== undefined) return yield* Effect.fail(invalidTopic)
    const qos = input.qos as Packet.QoS
    const count = input.count
    const stdio = yield* Stdio.Stdio
    const tty = yield* stdio.stdoutIsTerminal

    yield* Effect.scoped(Effect.gen(function*() {
      const embedded = !Connect.namesBroker(input.connection)
      const url = embedded ? yield* embeddedBroker : yield* Connect.brokerUrl(input.connection)
      const base = yield* Connect.options(input.connection, { url, maxInflight: input.inflight })
      const id = (role: string) => (base.clientId === undefined ? {} : { clientId: `${base.clientId}-${role}` })
      const subscriber = yield* Connect.connect({ ...base, ...id("sub") })
      const publisher = yield* Connect.connect({ ...base, ...id("pub") })
      const subscription = yield* subscriber.subscription(topic, { qos, bufferSize: 65536 })

      const sentAt = new Float64Array(count)
      const seen = new Uint8Array(count)
      const latencies = new Float64Array(count)
      let sent = 0
      let received = 0
      let lastReceivedAt = 0
      const allReceived = yield* Deferred.make<void>()
      yield* subscription.messages.pipe(
        Stream.runForEach((message) =>
          Effect.sync(() => {
            const now = performance.now()
            const payload = message.payload
            if (payload.length < 4) return
            const index = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0)
            if (index >= count || seen[index] === 1) return
            seen[index] = 1
            latencies[received++] = now - sentAt[index]!
            lastReceivedAt = now
            if (received === count) Deferred.doneUnsafe(allReceived, Effect.void)
          })
        ),
        Effect.forkScoped
      )

      const started = performance.now()
      const progress = Effect.gen(function*() {
        while (true) {
          yield* Effect.sleep("100 millis")
          const elapsed = performance.now() - started
          yield* Effect.sync(() =>
            process.stdout.write(
              `\r\x1b[K  sent ${sent}/${count}  received ${received}/${count}  ${rate(received, elapsed)}`
            )
          )
        }
      })
      const progressFiber = tty ? yield* Effect.forkScoped(progress) : undefined

      yield* Effect.forEach(
        Array.from({ length: count }, (_, index) => index),
        (index) => {
          const payload = new Uint8Array(input.size)
          new DataView(payload.buffer).setUint32(0, index)
          sentAt[index] = performance.now()
          return Effect.tap(publisher.publish({ topic, payload, qos }), () =>
            Effect.sync(() => {
              sent++
            }))
        },
        { concurrency: input.inflight, discard: true }
      )
      const publishMillis = performance.now() - started

      // Wait for the rest, as long as messages keep arriving.
      yield* Effect.gen(function*() {
        while (!(yield* Deferred.isDone(allReceived))) {
          const quiet = performance.now() - Math.max(lastReceivedAt, started + publishMillis)
          if (quiet > Duration.toMillis(idleLimit)) return
          yield* Deferred.await(allReceived).pipe(Effect.timeoutOption("100 millis"))
        }
      })
      if (progressFiber !== undefined) {
        yield* Fiber.interrupt(progressFiber)
        yield* Effect.sync(() => process.stdout.write("\r\x1b[K"))
      }
      const deliverMillis = (received === 0 ? performance.now() : lastReceivedAt) - started
      const sorted = latencies.slice(0, received).sort()
      const broker = embedded ? `embedded Aedes (${url})` : Connect.displayUrl(url)
      yield* Console.log(
        summary({ broker, count, size: input.size, qos, inflight: input.inflight }, {
          sent,
          received,
          publishMillis,
          deliverMillis,
          latencies: sorted
        })
      )
      if (received < count && qos > 0) {
        return yield* new Failure({ message: `${count - received} of ${count} messages at QoS ${qos} were lost` })
      }
      if (received === 0) {
        return yield* new Timeout({ message: `no message arrived within ${Duration.format(idleLimit)}` })
      }
    }))
  }).pipe(Effect.provide(Connect.logging(input.connection.debug)))).pipe(
    Command.withDescription("Measure publish → subscribe throughput and latency"),
    Command.withExamples([
      { command: "effect-mqtt bench", description: "10000 messages at QoS 1 through an embedded Aedes broker" },
      {
        command: "effect-mqtt bench --url mqtt://localhost:1883 -q 2 -C 50000 -s 1024",
        description: "50000 messages of 1 KiB at QoS 2 through a broker"
      }
    ])
  )
