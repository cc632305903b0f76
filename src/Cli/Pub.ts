/**
 * `effect-mqtt pub`: publishes one message (`-m`, `-f`, `-n`, `-s`: all of stdin) or one message per stdin line
 * (`-l`) to a topic, as mosquitto_pub does. The topic and QoS are validated by effect-mqtt's own rules before
 * connecting, so a bad one fails with its `MqttError` reason (exit 2) without touching the network. Each publish
 * completes as the client defines it (QoS 0 written, 1 PUBACK, 2 PUBCOMP); then the client disconnects gracefully.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Option from "effect/Option"
import * as Stdio from "effect/Stdio"
import * as Stream from "effect/Stream"
import { Command, Flag } from "effect/cli"
import { type Packet, Topic, Validate } from "../index.ts"
import * as Connect from "./Connect.ts"
import { Failure, UsageError } from "./Exit.ts"

const bool = (name: string, alias: string, description: string) =>
  Flag.Boolean(name).pipe(
    Flag.withAlias(alias),
    Flag.withDescription(description),
    Flag.withoutNegation,
    Flag.withDefault(false)
  )

/**
 * The flags of `pub`.
 *
 * @since 0.1.0
 */
export const flags = {
  topic: Flag.String("topic").pipe(Flag.withAlias("t"), Flag.withDescription("Topic to publish to")),
  message: Flag.String("message").pipe(
    Flag.withAlias("m"),
    Flag.withDescription("Message to send (UTF-8)"),
    Flag.optional
  ),
  file: Flag.String("file").pipe(
    Flag.withAlias("f"),
    Flag.withDescription("Send this file as the message"),
    Flag.optional
  ),
  stdinLine: bool("stdin-line", "l", "Send each line of stdin as a message (blank lines are skipped)"),
  stdinFile: bool("stdin-file", "s", "Send all of stdin as one message"),
  nullMessage: bool("null-message", "n", "Send an empty message"),
  qos: Flag.Int("qos").pipe(
    Flag.withAlias("q"),
    Flag.withDescription("QoS: 0, 1 or 2 (default 0)"),
    Flag.withDefault(0)
  ),
  retain: bool("retain", "r", "Ask the broker to retain the message"),
  connection: Connect.flags
} as const

type Load = Effect.Effect<string | Uint8Array, UsageError | Failure, FileSystem.FileSystem | Stdio.Stdio>

type Source =
  | { readonly _tag: "Bytes"; readonly load: Load }
  | { readonly _tag: "Lines" }

const source = (input: Command.Command.Config.Infer<typeof flags>): Effect.Effect<Source, UsageError> => {
  const given = [
    Option.isSome(input.message) ? "-m" : undefined,
    Option.isSome(input.file) ? "-f" : undefined,
    input.stdinLine ? "-l" : undefined,
    input.stdinFile ? "-s" : undefined,
    input.nullMessage ? "-n" : undefined
  ].filter((flag) => flag !== undefined)
  if (given.length !== 1) {
    return Effect.fail(
      new UsageError({
        message: given.length === 0
          ? "give the message with one of -m, -f, -l, -n or -s"
          : `give the message with only one of ${given.join(", ")}`
      })
    )
  }
  if (Option.isSome(input.message)) return Effect.succeed({ _tag: "Bytes", load: Effect.succeed(input.message.value) })
  if (input.nullMessage) return Effect.succeed({ _tag: "Bytes", load: Effect.succeed(new Uint8Array(0)) })
  if (Option.isSome(input.file)) {
    const path = input.file.value
    return Effect.succeed({
      _tag: "Bytes",
      load: Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        return yield* fs.readFile(path)
      }).pipe(
        Effect.mapError((error) => new UsageError({ message: `cannot read -f ${path}: ${error.message}` }))
      )
    })
  }
  if (input.stdinFile) {
    return Effect.succeed({
      _tag: "Bytes",
      load: Effect.gen(function*() {
        const stdio = yield* Stdio.Stdio
        return yield* Stream.mkUint8Array(stdio.stdin)
      }).pipe(
        Effect.mapError((error) => new Failure({ message: `cannot read stdin: ${error.message}` }))
      )
    })
  }
  return Effect.succeed({ _tag: "Lines" })
}

/**
 * `effect-mqtt pub`.
 *
 * @since 0.1.0
 */
export const command = Command.make("pub", flags, (input) =>
  Effect.gen(function*() {
    const invalid = Topic.validateTopicName(input.topic) ?? Validate.qos(input.qos, "publish")
    if (invalid !== undefined) return yield* Effect.fail(invalid)
    const from = yield* source(input)
    const qos = input.qos as Packet.QoS
    const options = yield* Connect.options(input.connection)
    // Read a file or stdin before connecting: a slow producer must not hold a connection idle.
    const payload = from._tag === "Bytes" ? yield* from.load : undefined
    yield* Effect.scoped(Effect.gen(function*() {
      const client = yield* Connect.connect(options)
      const publish = (message: string | Uint8Array) =>
        client.publish({ topic: input.topic, payload: message, qos, retain: input.retain }).pipe(
          Effect.tap((packetId) =>
            Effect.logDebug(
              `published to ${input.topic} at QoS ${qos}${packetId === undefined ? "" : `, packet id ${packetId}`}`
            )
          )
        )
      if (payload !== undefined) {
        yield* publish(payload)
        return
      }
      const stdio = yield* Stdio.Stdio
      yield* stdio.stdin.pipe(
        Stream.decodeText,
        Stream.splitLines,
        Stream.mapError((error) => new Failure({ message: `cannot read stdin: ${error.message}` })),
        Stream.filter((line) => line.length > 0),
        Stream.runForEach(publish)
      )
    }))
  }).pipe(Effect.provide(Connect.logging(input.connection.debug)))).pipe(
    Command.withDescription("Publish a message (like mosquitto_pub)"),
    Command.withExamples([
      { command: "effect-mqtt pub -t sensors/kitchen -m 21.5 -q 1", description: "Publish at QoS 1 to localhost" },
      {
        command: "effect-mqtt pub --url mqtts://broker:8883 --cafile ca.crt -t a -f data.bin",
        description: "A file over TLS"
      },
      { command: "tail -f log | effect-mqtt pub -t logs -l", description: "One message per line of stdin" }
    ])
  )
