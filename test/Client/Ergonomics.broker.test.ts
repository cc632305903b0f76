/**
 * The library ergonomics of the client against a real (in-process Aedes) broker: options from configuration, Schema
 * payloads, metrics, spans, and logs that never show a password.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Fiber, Layer, Logger, Metric, References, Result, Schedule, Schema, Stream, Tracer } from "effect"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import * as Aedes from "../utils/Aedes.ts"

const Reading = Schema.Struct({ sensor: Schema.String, celsius: Schema.Number })

describe("MqttClient ergonomics (Aedes)", () => {
  it.live("layerConfig reads MQTT_URL, MQTT_CLIENT_ID, MQTT_USERNAME and MQTT_PASSWORD (Redacted)", () =>
    Effect.gen(function*() {
      let seen: { clientId: string; username: string | undefined; password: string | undefined } | undefined
      const broker = yield* Aedes.start({
        aedes: {
          authenticate: (client, username, password, done) => {
            seen = { clientId: client.id, username, password: password?.toString() }
            done(null, true)
          }
        }
      })
      const provider = ConfigProvider.fromUnknown({
        MQTT_URL: broker.url,
        MQTT_CLIENT_ID: "from-config",
        MQTT_USERNAME: "alice",
        MQTT_PASSWORD: "s3cret",
        MQTT_KEEPALIVE: "30"
      })
      const connected = yield* Effect.gen(function*() {
        const client = yield* MqttClient.MqttClient
        return yield* client.isConnected
      }).pipe(Effect.provide(MqttClient.layerConfig().pipe(Layer.provide(ConfigProvider.layer(provider)))))
      assert.isTrue(connected)
      assert.deepStrictEqual(seen, { clientId: "from-config", username: "alice", password: "s3cret" })
    }))

  it.live("layerConfig fails with a ConfigError when MQTT_URL is missing or a value is malformed", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.flip(
        Effect.provide(
          Effect.service(MqttClient.MqttClient),
          MqttClient.layerConfig().pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({}))))
        )
      )
      assert.strictEqual(missing._tag, "ConfigError")
      const malformed = yield* Effect.flip(
        Effect.provide(
          Effect.service(MqttClient.MqttClient),
          MqttClient.layerConfig().pipe(
            Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ MQTT_URL: "mqtt://x", MQTT_KEEPALIVE: "soon" })))
          )
        )
      )
      assert.strictEqual(malformed._tag, "ConfigError")
    }))

  it.live("publishJson / subscribeJson: a bad payload is an element, not the end of the stream", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const client = yield* MqttClient.make({ url: broker.url, clientId: "json" })
      // subscribeJson subscribes when its stream starts: wait for the broker to see the SUBSCRIBE.
      const subscribed = Effect.callback<void>((resume) => {
        broker.broker.once("subscribe", () => resume(Effect.void))
      }).pipe(Effect.timeout("10 seconds"))
      const waitSubscribed = yield* Effect.forkChild(subscribed, { startImmediately: true })
      const received = yield* MqttClient.subscribeJson("readings/#", Reading, { qos: 1 }).pipe(
        Stream.take(3),
        Stream.runCollect,
        Effect.provideService(MqttClient.MqttClient, client),
        Effect.forkChild
      )
      yield* Fiber.join(waitSubscribed)
      yield* MqttClient.publishJson(Reading, { topic: "readings/a", value: { sensor: "a", celsius: 21.5 }, qos: 1 }).pipe(
        Effect.provideService(MqttClient.MqttClient, client)
      )
      yield* client.publish({ topic: "readings/b", payload: "{\"sensor\":\"b\"}", qos: 1 })
      yield* MqttClient.publishJson(Reading, { topic: "readings/c", value: { sensor: "c", celsius: -3 }, qos: 1 }).pipe(
        Effect.provideService(MqttClient.MqttClient, client)
      )
      const results = yield* Fiber.join(received)
      assert.strictEqual(results.length, 3)
      const [first, second, third] = results
      assert.isTrue(Result.isSuccess(first!))
      if (Result.isSuccess(first!)) assert.deepStrictEqual(first.success.value, { sensor: "a", celsius: 21.5 })
      assert.isTrue(Result.isFailure(second!))
      if (Result.isFailure(second!)) {
        assert.strictEqual(second.failure.reason._tag, "PayloadInvalid")
        assert.include(second.failure.message, "readings/b")
      }
      assert.isTrue(Result.isSuccess(third!))
    }))

  it.live("publishJson refuses a value its schema cannot encode, before sending", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const client = yield* MqttClient.make({ url: broker.url, clientId: "json-bad" })
      const error = yield* Effect.flip(
        MqttClient.publishJson(Reading, { topic: "readings/x", value: { sensor: 1 } as never }).pipe(
          Effect.provideService(MqttClient.MqttClient, client)
        )
      )
      assert.strictEqual(error.reason._tag, "PayloadInvalid")
    }))

  it.live("metrics count messages sent and received by QoS", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const client = yield* MqttClient.make({ url: broker.url, clientId: "metrics" })
      const sentBefore = (yield* Metric.value(MqttClient.metrics.sent[1]!)).count
      const receivedBefore = (yield* Metric.value(MqttClient.metrics.received[1]!)).count
      const subscription = yield* client.subscription("m/#", { qos: 1 })
      const got = yield* subscription.messages.pipe(Stream.take(2), Stream.runCollect, Effect.forkChild)
      yield* client.publish({ topic: "m/1", payload: "1", qos: 1 })
      yield* client.publish({ topic: "m/2", payload: "2", qos: 1 })
      yield* Fiber.join(got)
      assert.strictEqual((yield* Metric.value(MqttClient.metrics.sent[1]!)).count - sentBefore, 2)
      assert.strictEqual((yield* Metric.value(MqttClient.metrics.received[1]!)).count - receivedBefore, 2)
    }))

  it.live("spans: mqtt.connect always; mqtt.publish, mqtt.publish_all (producer) and mqtt.deliver (consumer) with tracing", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const spans: Array<Tracer.Span> = []
      const tracer = Tracer.make({
        span(options) {
          const span = Tracer.nativeTracer.span(options)
          spans.push(span)
          return span
        }
      })
      yield* Effect.gen(function*() {
        const client = yield* MqttClient.make({ url: broker.url, clientId: "traced", tracing: true })
        const subscription = yield* client.subscription("s/#", { qos: 1 })
        const got = yield* subscription.messages.pipe(Stream.take(1), Stream.runCollect, Effect.forkChild)
        yield* client.publish({ topic: "s/t", payload: "x", qos: 1 })
        yield* Fiber.join(got)
        // A batch, and a stream in two chunks: one producer span per batch and per chunk.
        yield* client.publishAll([{ topic: "s/b", payload: "1" }, { topic: "s/b", payload: "2", qos: 1 }])
        yield* Stream.make({ topic: "s/c", payload: "1" }, { topic: "s/c", payload: "2" }, { topic: "s/c", payload: "3" })
          .pipe(Stream.rechunk(2), Stream.run(client.publishSink))
      }).pipe(Effect.scoped, Effect.withTracer(tracer))
      const byName = (name: string) => spans.filter((s) => s.name === name)
      assert.strictEqual(byName("mqtt.connect").length, 1)
      const publish = byName("mqtt.publish")[0]!
      assert.strictEqual(publish.kind, "producer")
      assert.strictEqual(publish.attributes.get("messaging.destination.name"), "s/t")
      assert.strictEqual(publish.attributes.get("messaging.mqtt.qos"), 1)
      assert.isAbove(Number(publish.attributes.get("messaging.mqtt.packet_id")), 0)
      const batches = byName("mqtt.publish_all")
      assert.deepStrictEqual(batches.map((s) => s.kind), ["producer", "producer", "producer"])
      assert.deepStrictEqual(batches.map((s) => s.attributes.get("messaging.batch.message_count")), [2, 2, 1])
      const deliver = byName("mqtt.deliver")[0]!
      assert.strictEqual(deliver.kind, "consumer")
      assert.strictEqual(deliver.attributes.get("messaging.destination.name"), "s/t")
    }))

  it.live("debug logs never show the password", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const lines: Array<string> = []
      const logger = Logger.make((options) => {
        lines.push(JSON.stringify(options.message, (_, v) => (typeof v === "bigint" ? String(v) : v)))
      })
      yield* Effect.gen(function*() {
        const client = yield* MqttClient.make({
          url: `mqtt://alice:hunter2-secret@127.0.0.1:${broker.port}`,
          clientId: "logs",
          reconnect: Schedule.spaced("10 millis")
        })
        yield* client.publish({ topic: "l/t", payload: "x", qos: 1 })
        // A dropped connection makes the client log its reconnect, with the broker's URL.
        const events = yield* client.events.pipe(
          Stream.filter((e) => e._tag === "Connected"),
          Stream.take(1),
          Stream.runDrain,
          Effect.forkChild({ startImmediately: true })
        )
        yield* broker.dropConnections
        yield* Fiber.join(events)
      }).pipe(
        Effect.scoped,
        Effect.provide(Logger.layer([logger])),
        Effect.provideService(References.MinimumLogLevel, "All")
      )
      const text = lines.join("\n")
      assert.include(text, "reconnecting to mqtt://alice@127.0.0.1")
      assert.notInclude(text, "hunter2-secret")
    }))
})
