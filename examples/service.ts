/**
 * A long-running service with graceful shutdown. `CommandService` is a `Layer` that depends on the `MqttClient`
 * service (provided by `MqttClient.layer`): it subscribes to `service/commands` and answers each command on
 * `service/replies` (`ping` → `pong`, `uptime` → seconds since start), and keeps a retained `service/status`:
 * `online`, then `offline` on shutdown (the will says `offline (connection lost)` if the process dies without
 * disconnecting). `Layer.launch` runs it until interrupted, and `NodeRuntime.runMain` interrupts it on SIGINT or
 * SIGTERM: the layer scope closes in reverse order — the command loop stops, `offline` is published, the
 * subscription ends (UNSUBSCRIBE), then the client disconnects gracefully (waits for acknowledgements, sends
 * DISCONNECT) — and the process exits 0. `--for SECONDS` stops it the same way after that long (tests, demos).
 * Run: `node --conditions=@effect-mqtt/source examples/service.ts mqtt://localhost:1883 [--for SECONDS]`, then e.g.
 * `mosquitto_pub -t service/commands -m ping` and `mosquitto_sub -t service/replies`; stop it with Ctrl-C.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Clock, Console, Duration, Effect, Exit, Layer, Runtime, Stream } from "effect"
import { MqttClient } from "effect-mqtt"

const args = process.argv.slice(2)
const forIndex = args.indexOf("--for")
const runFor = forIndex === -1 ? undefined : Number(args[forIndex + 1])
const url = args.find((arg, i) => !arg.startsWith("--") && args[i - 1] !== "--for") ?? "mqtt://localhost:1883"
if (runFor !== undefined && !(runFor > 0)) {
  console.error("usage: service.ts [URL] [--for SECONDS]  (SECONDS > 0)")
  process.exit(2)
}

const commandTopic = "service/commands"
const replyTopic = "service/replies"
const statusTopic = "service/status"
const decoder = new TextDecoder()

/** The service: no interface of its own, only what it does while its layer is alive. */
const CommandService = Layer.effectDiscard(Effect.gen(function*() {
  const client = yield* MqttClient.MqttClient
  const startedAt = yield* Clock.currentTimeMillis

  const answer = Effect.fnUntraced(function*(command: string) {
    switch (command) {
      case "ping":
        return "pong"
      case "uptime":
        return `${((yield* Clock.currentTimeMillis) - startedAt) / 1000} s`
      default:
        return `unknown command ${JSON.stringify(command)}`
    }
  })

  // Finalizers run in reverse order: this subscription's UNSUBSCRIBE runs after `offline` is published.
  const commands = yield* client.subscription(commandTopic, { qos: 1 })
  yield* client.publish({ topic: statusTopic, payload: "online", qos: 1, retain: true })
  yield* Effect.addFinalizer(() =>
    Console.log("stopping: publishing offline, then disconnecting").pipe(
      Effect.andThen(client.publish({ topic: statusTopic, payload: "offline", qos: 1, retain: true })),
      Effect.ignore
    )
  )
  // Interrupted first when the layer scope closes.
  yield* commands.messages.pipe(
    Stream.runForEach((message) =>
      Effect.gen(function*() {
        const command = decoder.decode(message.payload).trim()
        const reply = yield* answer(command)
        yield* client.publish({ topic: replyTopic, payload: reply, qos: 1 })
        yield* Console.log(`command ${JSON.stringify(command)} → ${JSON.stringify(reply)}`)
      })
    ),
    Effect.forkScoped
  )
  yield* Console.log(`service ready: answering ${commandTopic} on ${replyTopic}`)
}))

const MqttLive = MqttClient.layer({
  url,
  clientId: "effect-mqtt-example-service",
  will: { topic: statusTopic, payload: "offline (connection lost)", qos: 1, retain: true }
})

// Runs until interrupted (a signal), or for `--for SECONDS`; the line after it prints once the layer is closed.
const launched = Layer.launch(CommandService.pipe(Layer.provide(MqttLive)))
const main = (
  runFor === undefined
    ? launched
    : Effect.raceFirst(
      launched,
      Effect.sleep(Duration.seconds(runFor)).pipe(Effect.andThen(Console.log(`--for ${runFor}: shutting down`)))
    )
).pipe(
  Effect.onExit((exit) =>
    Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause)
      ? Console.log("stopped: the client disconnected gracefully")
      : Effect.void
  )
)

// A shutdown asked for by SIGINT or SIGTERM is a normal end: exit 0 (by default an interrupted main exits 130).
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

NodeRuntime.runMain(main, { teardown })
