/**
 * Mutual TLS: the client checks the broker's certificate against a CA and presents a certificate of its own, whose
 * key is encrypted with a passphrase. The files come from environment variables, falling back to the repository's
 * test fixtures (test/fixtures/tls — test-only, never use them elsewhere): `MQTT_TLS_CA` (default ca.crt),
 * `MQTT_TLS_CERT` (client.crt), `MQTT_TLS_KEY` (client.key), `MQTT_TLS_PASSPHRASE` (effect-mqtt-test). Verification
 * is on by default (`tls.verify: "required"`: the broker's certificate must chain to `ca` and name the URL's host);
 * `"none"` turns it off and logs a warning. It subscribes, publishes one message at QoS 1 and prints it.
 * Run against a broker with a mutual-TLS listener (`require_certificate true`):
 * `node --conditions=@effect-mqtt/source examples/tls-client-certificate.ts mqtts://localhost:8883`.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { Console, Effect, Fiber, Redacted, Stream } from "effect"
import { ConnectOptions, MqttClient } from "effect-mqtt"

const url = process.argv[2] ?? "mqtts://localhost:8883"

const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/tls/${name}`, import.meta.url))
const caFile = process.env.MQTT_TLS_CA ?? fixture("ca.crt")
const certFile = process.env.MQTT_TLS_CERT ?? fixture("client.crt")
const keyFile = process.env.MQTT_TLS_KEY ?? fixture("client.key")

const options: MqttClient.Options = {
  url,
  clientId: "tls-client-certificate-example",
  tls: {
    ca: fs.readFileSync(caFile),
    cert: fs.readFileSync(certFile),
    // Kept Redacted: never logged. A wrong passphrase fails the layer with BadMqttOption before connecting.
    key: Redacted.make(fs.readFileSync(keyFile)),
    passphrase: Redacted.make(process.env.MQTT_TLS_PASSPHRASE ?? "effect-mqtt-test")
  }
}

const program = Effect.gen(function*() {
  // The options with their defaults applied: verification was not asked for, and is on.
  const resolved = yield* Effect.fromResult(ConnectOptions.resolve(options, new Uint8Array(6)))
  const certificate = new crypto.X509Certificate(fs.readFileSync(certFile))
  yield* Console.log(`tls.verify: ${resolved.tls?.verify} (the default)`)
  yield* Console.log(`client certificate: ${certificate.subject.replaceAll("\n", ", ")}`)

  const client = yield* MqttClient.MqttClient
  yield* Console.log(`connected over mutual TLS to ${resolved.url}`)
  const subscription = yield* client.subscription({ "tls-example/greeting": 1 })
  const received = yield* subscription.messages.pipe(
    Stream.take(1),
    Stream.runCollect,
    Effect.timeout("10 seconds"),
    Effect.forkChild({ startImmediately: true })
  )
  yield* client.publish({ topic: "tls-example/greeting", payload: "hello over mutual TLS", qos: 1 })
  for (const message of yield* Fiber.join(received)) {
    yield* Console.log(`received ${message.topic} "${new TextDecoder().decode(message.payload)}" at QoS ${message.qos}`)
  }
}).pipe(Effect.scoped)

program.pipe(
  Effect.provide(MqttClient.layer(options)),
  Effect.runPromise
).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
