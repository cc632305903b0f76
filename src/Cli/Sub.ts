/**
 * `effect-mqtt sub`: subscribes to one or more topic filters (`-t`, repeatable) and writes each message's payload to
 * stdout, one per line (`-v`: `topic payload`), as mosquitto_sub does; `-C` exits after that many messages, `-W`
 * gives up after that many seconds (exit 4). Filters and QoS are validated by effect-mqtt's own rules before
 * connecting. The subscription is `MqttClient.subscription`: it returns after SUBACK (logged with `-d`), and after a
 * dropped connection the client reconnects and subscribes again.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stdio from "effect/Stdio"
import * as Stream from "effect/Stream"
import { Command, Flag } from "effect/cli"
import { type MqttClient, type Packet, Topic, Validate } from "../index.ts"
import * as Connect from "./Connect.ts"
import { Failure, Timeout, UsageError } from "./Exit.ts"

/**
 * The flags of `sub`.
 *
 * @since 0.1.0
 */
export const flags = {
  topic: Flag.String("topic").pipe(
    Flag.withAlias("t"),
    Flag.withDescription("Topic filter to subscribe to (repeatable; + and # wildcards)"),
    Flag.atLeast(1)
  ),
  qos: Flag.Int("qos").pipe(
    Flag.withAlias("q"),
    Flag.withDescription("QoS: 0, 1 or 2 (default 0)"),
    Flag.withDefault(0)
  ),
  count: Flag.Int("count").pipe(
    Flag.withAlias("C"),
    Flag.withDescription("Exit after this many messages"),
    Flag.optional
  ),
  verbose: Flag.Boolean("verbose").pipe(
    Flag.withAlias("v"),
    Flag.withDescription("Print the topic before each payload: topic payload"),
    Flag.withoutNegation,
    Flag.withDefault(false)
  ),
  timeout: Flag.Int("timeout").pipe(
    Flag.withAlias("W"),
    Flag.withDescription("Give up after this many seconds (exit 4)"),
    Flag.optional
  ),
  connection: Connect.flags
} as const

const encoder = new TextEncoder()
const newline = encoder.encode("\n")

/** One output line: the payload, or `topic payload` with `-v`, then a newline. */
export const formatMessage = (message: MqttClient.Message, verbose: boolean): Uint8Array => {
  const prefix = verbose ? encoder.encode(`${message.topic} `) : new Uint8Array(0)
  const line = new Uint8Array(prefix.length + message.payload.length + 1)
  line.set(prefix, 0)
  line.set(message.payload, prefix.length)
  line.set(newline, prefix.length + message.payload.length)
  return line
}

const positive = (flag: string, value: Option.Option<number>) =>
  Option.isSome(value) && (!Number.isInteger(value.value) || value.value <= 0)
    ? Effect.fail(new UsageError({ message: `${flag} must be a positive integer, got ${value.value}` }))
    : Effect.void

/**
 * `effect-mqtt sub`.
 *
 * @since 0.1.0
 */
export const command = Command.make("sub", flags, (input) =>
  Effect.gen(function*() {
    for (const filter of input.topic) {
      const invalid = Topic.validateTopicFilter(filter)
      if (invalid !== undefined) return yield* Effect.fail(invalid)
    }
    const invalidQos = Validate.qos(input.qos, "subscribe")
    if (invalidQos !== undefined) return yield* Effect.fail(invalidQos)
    yield* positive("-C", input.count)
    yield* positive("-W", input.timeout)
    const options = yield* Connect.options(input.connection)
    const stdio = yield* Stdio.Stdio
    let received = 0

    const run = Effect.scoped(Effect.gen(function*() {
      const client = yield* Connect.connect(options)
      const subscription = yield* client.subscription(input.topic, { qos: input.qos as Packet.QoS })
      yield* Effect.logDebug(
        `subscribed to ${subscription.granted.map((s) => `${s.topicFilter} (granted QoS ${s.qos})`).join(", ")}`
      )
      const messages = Option.isSome(input.count)
        ? Stream.take(subscription.messages, input.count.value)
        : subscription.messages
      yield* messages.pipe(
        Stream.map((message) => {
          received++
          return formatMessage(message, input.verbose)
        }),
        Stream.run(stdio.stdout()),
        Effect.catchTag("PlatformError", (error) =>
          Effect.fail(new Failure({ message: `cannot write to stdout: ${error.message}` })))
      )
    }))

    if (Option.isNone(input.timeout)) return yield* run
    const seconds = input.timeout.value
    return yield* run.pipe(
      Effect.timeoutOrElse({
        duration: Duration.seconds(seconds),
        orElse: () =>
          Effect.fail(
            new Timeout({
              message: Option.isSome(input.count)
                ? `received ${received} of ${input.count.value} messages within ${seconds} s (-W ${seconds})`
                : `${seconds} s passed (-W ${seconds}), ${received} messages received`
            })
          )
      })
    )
  }).pipe(Effect.provide(Connect.logging(input.connection.debug)))).pipe(
    Command.withDescription("Subscribe and print messages (like mosquitto_sub)"),
    Command.withExamples([
      { command: "effect-mqtt sub -t 'sensors/#' -v", description: "Print topic and payload of every sensor message" },
      { command: "effect-mqtt sub -t a -t b -C 1 -W 10", description: "Wait up to 10 s for one message on a or b" }
    ])
  )
