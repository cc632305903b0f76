/**
 * Testing an application with `MqttTest`: a thermostat that depends on the `MqttClient` service runs against the
 * in-memory broker of `MqttTest.layer` — no sockets, no broker process, no timers. The check plays the devices through
 * the `Broker` (publishing readings) and asserts on what the thermostat published. In a vitest suite the same body goes
 * in `it.effect(...)`. Run: `node --conditions=@effect-mqtt/source examples/testing.ts` (exits 1 if the check fails).
 */
import { Effect, Stream } from "effect"
import { MqttClient, MqttTest } from "effect-mqtt"

const decoder = new TextDecoder()

/** The application: turns a room's fan on (retained) when its temperature goes above 25. */
const thermostat = Effect.gen(function*() {
  const client = yield* MqttClient.MqttClient
  yield* client.subscribe("home/+/temperature", { qos: 1 }).pipe(
    Stream.filter((message) => Number(decoder.decode(message.payload)) > 25),
    Stream.runForEach((message) =>
      client.publish({ topic: message.topic.replace(/temperature$/, "fan"), payload: "on", qos: 1, retain: true })
    )
  )
})

/** The test: the broker plays the sensors and records what the thermostat does. */
const check = Effect.gen(function*() {
  const broker = yield* MqttTest.Broker
  yield* Effect.forkChild(thermostat)
  // The thermostat subscribes in its own fiber: wait until the broker holds its subscription.
  yield* broker.awaitSubscribed("home/+/temperature")
  yield* broker.publish({ topic: "home/kitchen/temperature", payload: "21", qos: 1 })
  yield* broker.publish({ topic: "home/kitchen/temperature", payload: "27", qos: 1 })
  const fan = yield* broker.awaitPublished((message) => message.topic === "home/kitchen/fan")
  const retained = yield* broker.retained
  if (decoder.decode(fan.payload) !== "on" || !fan.retain || !retained.has("home/kitchen/fan")) {
    return yield* Effect.fail(new Error("the thermostat did not turn the kitchen fan on"))
  }
  yield* Effect.log(`${fan.clientId} published ${fan.topic} = on (QoS ${fan.qos}, retained)`)
}).pipe(Effect.provide(MqttTest.layer({ clientId: "thermostat" })))

Effect.runPromise(check).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
