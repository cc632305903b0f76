/**
 * effect-mqtt driven through its public API only (`import { MqttClient } from "effect-mqtt"`), the way its README
 * shows: one `MqttClient.make` per connection in a scope, `subscription` for each receiver with its messages consumed
 * by `Stream.runForEach` in a forked fiber (or `Stream.runForEachArray` with BENCH_EFFECT_CONSUMER=array), and "N in
 * flight" as N fibers that each publish, await the completion (written / PUBACK / PUBCOMP), and publish the next
 * (or, with BENCH_EFFECT_PUBLISH=batch, N / 25 fibers that each `publishAll` 25 messages at a time and await them
 * together: BENCH_EFFECT_BATCH sets the 25; or, with BENCH_EFFECT_PUBLISH=sink, one stream of all the messages in
 * chunks of BENCH_EFFECT_BATCH run into `publishSink`, the publisher's `maxInflight` set to N).
 * BENCH_EFFECT_MAX_INFLIGHT sets the publisher's `maxInflight` below N: the N publishers then wait for the window.
 * Every workload is one `Effect.runPromise` of a scoped program: closing the scope disconnects every client.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { MqttClient } from "effect-mqtt"
import { type Meter, now, payloadIndex, makePayload } from "../meter.ts"
import type { ConnectionsParams, LatencyParams, ThroughputParams } from "../scenarios.ts"
import { type Driver, type Target, topics } from "./driver.ts"

const consumeArrays = process.env.BENCH_EFFECT_CONSUMER === "array"
const publishVariant = process.env.BENCH_EFFECT_PUBLISH
const chunkSize = Math.max(1, Number(process.env.BENCH_EFFECT_BATCH ?? 25))
const batchSize = publishVariant === "batch" ? chunkSize : 0
const sink = publishVariant === "sink"
const maxInflight = process.env.BENCH_EFFECT_MAX_INFLIGHT === undefined
  ? undefined
  : Math.max(1, Number(process.env.BENCH_EFFECT_MAX_INFLIGHT))

const options = (target: Target, id: string): MqttClient.Options => ({
  url: target.url,
  clientId: `${target.prefix}${id}`,
  keepalive: 60,
  connectTimeout: "10 seconds",
  reconnect: false,
  disconnectTimeout: "2 seconds"
})

const range = (n: number): Array<number> => Array.from({ length: n }, (_, i) => i)

/** Counts every message of a stream in the meter. */
const count = (messages: Stream.Stream<MqttClient.Message, unknown>, meter: Meter) =>
  consumeArrays
    ? Stream.runForEachArray(messages, (batch) => Effect.sync(() => meter.deliver(batch.length)))
    : Stream.runForEach(messages, () => Effect.sync(() => meter.deliver(1)))

const throughput = (target: Target, params: ThroughputParams, meter: Meter): Promise<void> =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const { topic, filter } = topics(target.prefix, params.subscribers)
    const receivers = yield* Effect.forEach(
      range(params.subscribers),
      (i) => MqttClient.make(options(target, `s${i}`)),
      { concurrency: "unbounded" }
    )
    for (const receiver of receivers) {
      const subscription = yield* receiver.subscription({ [filter]: params.qos })
      yield* Effect.forkScoped(count(subscription.messages, meter))
    }
    const publisher = yield* MqttClient.make({
      ...options(target, "p"),
      ...(maxInflight !== undefined ? { maxInflight } : sink ? { maxInflight: params.window } : {})
    })
    const message: MqttClient.PublishInput = { topic, payload: makePayload(params.payloadSize), qos: params.qos }
    let remaining = params.count
    // One of `window` fibers: publish, await its completion, publish the next, until all are issued.
    const worker = Effect.whileLoop({
      while: () => remaining > 0,
      body: () => {
        remaining--
        return publisher.publish(message)
      },
      step: () => {
        meter.published++
      }
    })
    // The batch variant: window / batchSize fibers, each publishing batchSize messages per `publishAll`.
    const batch = Array.from({ length: batchSize }, () => message)
    const batchWorker = Effect.whileLoop({
      while: () => remaining > 0,
      body: () => {
        const n = Math.min(batchSize, remaining)
        remaining -= n
        return Effect.as(publisher.publishAll(n === batchSize ? batch : batch.slice(0, n)), n)
      },
      step: (n) => {
        meter.published += n
      }
    })
    meter.begin()
    if (sink) {
      meter.published = yield* Stream.fromIterable(range(params.count)).pipe(
        Stream.rechunk(chunkSize),
        Stream.map(() => message),
        Stream.run(publisher.publishSink)
      )
    } else if (batchSize > 0) {
      const fibers = Math.max(1, Math.floor(params.window / batchSize))
      yield* Effect.forEach(range(fibers), () => batchWorker, { concurrency: "unbounded", discard: true })
    } else {
      yield* Effect.forEach(range(params.window), () => worker, { concurrency: "unbounded", discard: true })
    }
    yield* Effect.promise(() => meter.awaitDeliveries(params.idleMs))
    meter.phase = "disconnecting"
  })))

const latency = (target: Target, params: LatencyParams, meter: Meter): Promise<void> =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const { topic } = topics(target.prefix, 1)
    const receiver = yield* MqttClient.make(options(target, "s"))
    let sentAt = 0
    let waiting = -1
    let wake: (() => void) | undefined
    const subscription = yield* receiver.subscription({ [topic]: params.qos })
    yield* Effect.forkScoped(Stream.runForEach(subscription.messages, (message) =>
      Effect.sync(() => {
        if (payloadIndex(message.payload) !== waiting) return
        meter.samples.push((now() - sentAt) * 1000)
        meter.deliver(1)
        waiting = -1
        const resume = wake
        wake = undefined
        resume?.()
      })))
    const publisher = yield* MqttClient.make(options(target, "p"))
    const arrival = (index: number) =>
      Effect.callback<void>((resume) => {
        if (waiting !== index) return resume(Effect.void)
        wake = () => resume(Effect.void)
      })
    meter.begin()
    for (let i = 0; i < params.count; i++) {
      const payload = makePayload(params.payloadSize, i)
      waiting = i
      sentAt = now()
      yield* publisher.publish({ topic, payload, qos: params.qos })
      meter.published++
      yield* arrival(i)
    }
    meter.finish()
    meter.phase = "disconnecting"
  })))

const connections = (
  target: Target,
  params: ConnectionsParams,
  meter: Meter,
  measure: () => Promise<void>
): Promise<void> =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    meter.begin("connecting")
    // Each client and its subscription live in this program's scope until it ends; the clients are kept in an
    // array, as an application (and the MQTT.js driver) keeps them.
    const clients: Array<MqttClient.MqttClient["Service"]> = []
    yield* Effect.forEach(
      range(params.count),
      (i) =>
        Effect.gen(function*() {
          const client = yield* MqttClient.make(options(target, `c${i}`))
          clients.push(client)
          yield* client.subscription({ [`bench/${target.prefix}/idle/${i}`]: 1 })
          meter.deliver(1)
        }),
      { concurrency: params.concurrency, discard: true }
    )
    meter.finish(now())
    meter.phase = "idle"
    yield* Effect.sleep(params.idleMs)
    yield* Effect.promise(measure)
    meter.phase = "disconnecting"
  })))

export const driver: Driver = { throughput, latency, connections }
