/**
 * Schema-typed JSON payloads: publish a value encoded with a schema, and subscribe with each payload decoded — a bad
 * payload is an element (`PayloadInvalid` naming the topic), not the end of the stream. Run against a broker:
 * `node --conditions=@effect-mqtt/source examples/json-payloads.ts mqtt://localhost:1883`.
 */
import { Effect, Fiber, Result, Schema, Stream } from "effect"
import { MqttClient } from "effect-mqtt"

const Reading = Schema.Struct({ sensor: Schema.String, celsius: Schema.Number })

// Encoded with the schema; a value it cannot encode fails with PayloadInvalid before anything is sent.
const send = MqttClient.publishJson(Reading, { topic: "readings/a", value: { sensor: "a", celsius: 21.5 }, qos: 1 })

// Each element is a Result: a bad payload is a PayloadInvalid naming the topic, and the stream goes on
// (with { onInvalid: "fail" } it ends the stream instead).
const readings = MqttClient.subscribeJson("readings/#", Reading, { qos: 1 }).pipe(
  Stream.filterMap((result) => (Result.isSuccess(result) ? Result.succeed(result.success.value) : Result.failVoid))
)

const program = Effect.gen(function*() {
  const received = yield* readings.pipe(Stream.take(1), Stream.runCollect, Effect.forkChild({ startImmediately: true }))
  // subscribeJson subscribes when its stream starts; give SUBSCRIBE a head start over the publish.
  yield* Effect.sleep("200 millis")
  yield* send
  const [reading] = yield* Fiber.join(received)
  yield* Effect.log(`${reading?.sensor}: ${reading?.celsius} °C`)
})

program.pipe(
  Effect.provide(MqttClient.layer({ url: process.argv[2] ?? "mqtt://localhost:1883" })),
  Effect.runPromise
).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
