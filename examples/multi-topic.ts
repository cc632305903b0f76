/**
 * One subscription, several filters, each with its own QoS: `client.subscription({ filter: qos, ... })` sends one
 * SUBSCRIBE and returns, with its messages, the QoS the broker granted per filter. A message is delivered at
 * min(published QoS, granted QoS) [MQTT-3.8.4-6], so the example publishes once per filter (above or below the
 * granted QoS) and prints each message's delivered QoS next to that minimum; a broker that does not downgrade (Aedes
 * 1.2.0 delivers wildcard matches at the published QoS) is pointed out, not treated as an error.
 * Run against a broker: `node --conditions=@effect-mqtt/source examples/multi-topic.ts mqtt://localhost:1883`.
 */
import { Console, Effect, Fiber, Stream } from "effect"
import { MqttClient, Topic } from "effect-mqtt"

const url = process.argv[2] ?? "mqtt://localhost:1883"

const filters = { "sensors/+/temperature": 1, "alerts/#": 2, "logs/info": 0 } as const

const publishes = [
  { topic: "sensors/kitchen/temperature", payload: "21.5", qos: 2 },
  { topic: "alerts/fire/kitchen", payload: "smoke detected", qos: 1 },
  { topic: "logs/info", payload: "thermostat started", qos: 2 }
] as const

const program = Effect.gen(function*() {
  const client = yield* MqttClient.MqttClient
  // One SUBSCRIBE for the three filters; returns after SUBACK. UNSUBSCRIBE when the scope closes.
  const subscription = yield* client.subscription(filters)
  for (const { topicFilter, qos } of subscription.granted) {
    const asked = filters[topicFilter as keyof typeof filters]
    yield* Console.log(`granted ${topicFilter.padEnd(22)} QoS ${qos} (asked for ${asked})`)
  }

  const received = yield* subscription.messages.pipe(
    Stream.take(publishes.length),
    Stream.runCollect,
    Effect.timeout("10 seconds"),
    Effect.forkChild({ startImmediately: true })
  )
  for (const input of publishes) yield* client.publish(input)

  for (const message of yield* Fiber.join(received)) {
    const published = publishes.find((input) => input.topic === message.topic)!.qos
    const { topicFilter, qos: granted } = subscription.granted.find((s) => Topic.matches(s.topicFilter, message.topic))!
    const expected = Math.min(published, granted)
    const note = message.qos === expected ? "" : ` (the broker did not downgrade it to ${expected})`
    yield* Console.log(
      `${message.topic.padEnd(28)} published QoS ${published}, granted ${granted} (${topicFilter})` +
        ` → delivered QoS ${message.qos}${note}`
    )
  }
}).pipe(Effect.scoped)

program.pipe(
  Effect.provide(MqttClient.layer({ url })),
  Effect.runPromise
).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
