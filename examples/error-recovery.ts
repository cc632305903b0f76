/**
 * Typed error recovery: every failure is an `MqttError` whose `reason` says what went wrong, with the Paho MQTTAsync
 * return code and whether retrying may help. Three failures, each recovered differently: a publish to a topic name
 * with a wildcard, by reason (`Effect.catchReason`); a publish at QoS 3, by Paho code (`MqttError.hasCode`); a
 * connection to a port nobody listens on (`reconnect: false`), retried while `isRetryable` and then handled with
 * `Effect.catchReasons`. Each prints its reason tag, Paho code and `isRetryable`; the client then still publishes.
 * Run against a broker: `node --conditions=@effect-mqtt/source examples/error-recovery.ts mqtt://localhost:1883`.
 */
import { Console, Effect, Schedule } from "effect"
import { MqttClient, MqttError } from "effect-mqtt"

const url = process.argv[2] ?? "mqtt://localhost:1883"

/** What was recovered and how: reason tag, Paho code and name, whether a retry may succeed, then the message. */
const report = (how: string, error: MqttError.MqttError | MqttError.MqttErrorReason) =>
  Console.log(
    `recovered ${MqttError.isMqttError(error) ? error.reason._tag : error._tag} by ${how}: ` +
      `Paho ${error.code} ${error.pahoName}, isRetryable ${error.isRetryable}\n  ${error.message}`
  )

const program = Effect.gen(function*() {
  const client = yield* MqttClient.MqttClient

  // 1. By reason: a wildcard is not allowed in a topic name. The handler receives the reason itself.
  yield* client.publish({ topic: "sensors/+/temperature", payload: "21.5" }).pipe(
    Effect.catchReason("MqttError", "InvalidTopic", (reason) => report("catchReason", reason))
  )

  // 2. By Paho code: a QoS from untrusted input (typed 0 | 1 | 2, but 3 at run time) is refused before sending.
  const untrustedQos = JSON.parse("3") as 0 | 1 | 2
  yield* client.publish({ topic: "sensors/kitchen/temperature", payload: "21.5", qos: untrustedQos }).pipe(
    Effect.catchIf(MqttError.hasCode(MqttError.PahoCode.BAD_QOS), (error) => report("hasCode(BAD_QOS)", error))
  )

  // 3. A broker that is not there: with `reconnect: false` building the client fails with the first error. A
  // TransportError is retryable, so retry twice, then handle the reasons a connection can fail with.
  let attempts = 0
  yield* Effect.scoped(
    Effect.suspend(() => {
      attempts++
      return MqttClient.make({ url: "mqtt://127.0.0.1:1", reconnect: false })
    })
  ).pipe(
    Effect.retry({ while: (error) => error.isRetryable, times: 2, schedule: Schedule.spaced("100 millis") }),
    Effect.catchReasons("MqttError", {
      TransportError: (reason) => report(`catchReasons after ${attempts} attempts`, reason),
      ConnectionRefused: (reason) => report("catchReasons", reason),
      ConnectTimeout: (reason) => report("catchReasons", reason)
    })
  )

  // The client was never harmed by the failures above.
  const packetId = yield* client.publish({ topic: "sensors/kitchen/temperature", payload: "21.5", qos: 1 })
  yield* Console.log(`recovered: published sensors/kitchen/temperature at QoS 1, packet id ${packetId}`)
})

program.pipe(
  Effect.provide(MqttClient.layer({ url })),
  Effect.runPromise
).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
