/**
 * The README's quick start, kept here so that it type-checks: subscribe to a filter, publish at QoS 1, print the
 * message. Run against a broker: `node --conditions=@effect-mqtt/source examples/quick-start.ts mqtt://localhost:1883`.
 */
import { Effect, Fiber, Stream } from "effect"
import { MqttClient } from "effect-mqtt"

const program = Effect.gen(function*() {
  const client = yield* MqttClient.MqttClient
  // SUBSCRIBE now (returns after SUBACK); UNSUBSCRIBE when the scope closes.
  const subscription = yield* client.subscription({ "sensors/+/temperature": 1 })
  const received = yield* subscription.messages.pipe(
    Stream.take(1),
    Stream.runForEach((message) => Effect.log(message.topic, new TextDecoder().decode(message.payload))),
    Effect.forkChild
  )
  // Completes on PUBACK; returns the packet id.
  yield* client.publish({ topic: "sensors/kitchen/temperature", payload: "21.5", qos: 1 })
  yield* Fiber.join(received)
}).pipe(Effect.scoped)

// Connects when the layer is built; closing it disconnects gracefully.
program.pipe(
  Effect.provide(MqttClient.layer({ url: process.argv[2] ?? "mqtt://localhost:1883", clientId: "kitchen" })),
  Effect.runPromise
).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
