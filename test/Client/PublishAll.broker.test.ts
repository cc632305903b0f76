/**
 * `publishAll` against a real (in-process Aedes) broker: every message of a batch arrives, each topic's in order, at
 * mixed QoS;
 * a batch larger than the in-flight window goes out as acknowledgements free slots; an invalid message
 * stops the whole batch before anything is sent; `onInflightFull: "fail"` fails the batch with `MaxMessagesInflight`
 * and leaves what was started in flight, to complete. Against Mosquitto through a fault proxy, a QoS 2 batch whose
 * connection is cut in the middle completes on the next one, each message delivered once. `publishSink` the same
 * for a stream in chunks larger than the window (which it keeps full across chunks), with an invalid message failing
 * its chunk only. And `MqttTest`'s `publishAll` and `publishSink` behave the same.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Stream from "effect/Stream"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import * as SessionStore from "../../src/Client/SessionStore.ts"
import type * as MqttError from "../../src/Errors/MqttError.ts"
import * as MqttTest from "../../src/Testing/MqttTest.ts"
import * as Aedes from "../utils/Aedes.ts"
import { bounded, clientId, fastRecovery, options, record, text, topicRoot } from "../utils/clients.ts"
import * as FaultProxy from "../utils/FaultProxy.ts"
import * as Mosquitto from "../utils/Mosquitto.ts"
import { describeMosquitto } from "../utils/suites.ts"

/** `count` messages whose topic says their QoS (a broker keeps the order of a topic's messages of one QoS). */
const messages = (prefix: string, count: number, qosOf: (i: number) => 0 | 1 | 2): Array<MqttClient.PublishInput> =>
  Array.from({ length: count }, (_, i) => {
    const qos = qosOf(i)
    return { topic: `${prefix}/q${qos}`, payload: String(i), qos }
  })

/**
 * Subscribes `client` to `filter` at QoS 2 and collects the next `count` messages as `topic payload`, grouped by
 * topic in arrival order: the broker keeps the order of each topic [MQTT-4.6.0-6], not across topics.
 */
const collect = (client: MqttClient.MqttClient["Service"], filter: string, count: number) =>
  Effect.gen(function*() {
    const subscription = yield* client.subscription({ [filter]: 2 })
    return yield* Effect.forkChild(
      subscription.messages.pipe(
        Stream.take(count),
        Stream.map((m) => `${m.topic} ${new TextDecoder().decode(m.payload)}`),
        Stream.runCollect,
        Effect.map(byTopic),
        Effect.timeout("20 seconds")
      ),
      { startImmediately: true }
    )
  })

/** `topic payload` lines, stably grouped by topic. */
const byTopic = (lines: Iterable<string>): Array<string> =>
  Array.from(lines).map((line, i) => ({ line, i })).sort((a, b) =>
    a.line.split(" ")[0]!.localeCompare(b.line.split(" ")[0]!) || a.i - b.i
  ).map(({ line }) => line)

const sent = (batch: ReadonlyArray<MqttClient.PublishInput>) => byTopic(batch.map((m) => `${m.topic} ${m.payload}`))

describe("MqttClient.publishAll (Aedes)", () => {
  it.live("sends every message in order at QoS 0, 1 and 2, and returns their packet ids", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const receiver = yield* MqttClient.make({ url: broker.url, clientId: "all-rx" })
      const received = yield* collect(receiver, "all/#", 30)
      const sender = yield* MqttClient.make({ url: broker.url, clientId: "all-tx" })
      const batch = messages("all", 30, (i) => (i % 3) as 0 | 1 | 2)
      const sentBefore = (yield* Metric.value(MqttClient.metrics.sent[2]!)).count
      const events = yield* sender.events.pipe(
        Stream.filter((e) => e._tag === "Published"),
        Stream.take(30),
        Stream.runCollect,
        Effect.forkChild({ startImmediately: true })
      )
      const ids = yield* sender.publishAll(batch)
      assert.deepStrictEqual(yield* Fiber.join(received), sent(batch))
      assert.strictEqual(ids.length, 30)
      ids.forEach((id, i) => {
        if (i % 3 === 0) assert.isUndefined(id)
        else assert.isTrue(typeof id === "number" && id >= 1 && id <= 65535, `packet id of message ${i}: ${id}`)
      })
      assert.strictEqual(yield* sender.pendingCount, 0)
      // The metrics and the events count each message of the batch.
      assert.strictEqual((yield* Metric.value(MqttClient.metrics.sent[2]!)).count - sentBefore, 10)
      const published = Array.from(yield* Fiber.join(events))
      assert.deepStrictEqual(published.map((e) => e._tag === "Published" ? e.packetId : -1), [...ids])
      assert.deepStrictEqual(yield* sender.publishAll([]), [])
    }))

  it.live("a batch larger than the in-flight window is sent as acknowledgements free slots", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const receiver = yield* MqttClient.make({ url: broker.url, clientId: "window-rx" })
      const received = yield* collect(receiver, "window/#", 60)
      const sender = yield* MqttClient.make({ url: broker.url, clientId: "window-tx", maxInflight: 5 })
      const batch = messages("window", 60, (i) => (i % 2 === 0 ? 1 : 2))
      // A batch that stopped at the full window would never complete: bounded, so the test fails instead of hanging.
      yield* sender.publishAll(batch).pipe(Effect.timeout("20 seconds"))
      assert.deepStrictEqual(yield* Fiber.join(received), sent(batch))
      assert.strictEqual(yield* sender.pendingCount, 0)
    }))

  it.live("nothing is sent when one message is invalid", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      let published = 0
      broker.broker.on("publish", (_packet, client) => {
        if (client?.id === "invalid-tx") published++
      })
      const sender = yield* MqttClient.make({ url: broker.url, clientId: "invalid-tx" })
      const batch = messages("invalid", 10, () => 1)
      const withWildcard = [...batch.slice(0, 5), { topic: "invalid/+", payload: "x", qos: 1 as const }, ...batch.slice(5)]
      const error = yield* Effect.flip(sender.publishAll(withWildcard))
      assert.strictEqual(error.reason._tag, "InvalidTopic")
      const badQos = yield* Effect.flip(sender.publishAll([...batch, { topic: "invalid/q", payload: "x", qos: 3 as 0 }]))
      assert.strictEqual(badQos.reason._tag, "BadQos")
      // Not messages at all: typed errors, not exceptions.
      for (const notMessages of [null, 42, "abc", [null], [{ topic: "invalid/p", payload: 42 }]]) {
        const bad = yield* Effect.flip(sender.publishAll(notMessages as unknown as Array<MqttClient.PublishInput>))
        assert.strictEqual(bad.reason._tag, "BadStructure", JSON.stringify(notMessages))
      }
      // A valid message after the refusals: the broker sees it and nothing before it.
      yield* sender.publish({ topic: "invalid/after", payload: "ok", qos: 1 })
      assert.strictEqual(published, 1)
    }))

  it.live("onInflightFull: \"fail\": the batch fails with MaxMessagesInflight; what was started completes", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const receiver = yield* MqttClient.make({ url: broker.url, clientId: "full-rx" })
      const received = yield* collect(receiver, "full/#", 3)
      const sender = yield* MqttClient.make({
        url: broker.url,
        clientId: "full-tx",
        maxInflight: 3,
        onInflightFull: "fail"
      })
      const batch = messages("full", 5, () => 1)
      const error = yield* Effect.flip(sender.publishAll(batch))
      assert.strictEqual(error.reason._tag, "MaxMessagesInflight")
      assert.deepStrictEqual(yield* Fiber.join(received), sent(batch.slice(0, 3)))
    }))
})

describe("MqttClient.publishSink (Aedes)", () => {
  it.live("publishes a stream in order at mixed QoS through a small window and returns how many", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const receiver = yield* MqttClient.make({ url: broker.url, clientId: "sink-rx" })
      const received = yield* collect(receiver, "sink/#", 120)
      const sender = yield* MqttClient.make({ url: broker.url, clientId: "sink-tx", maxInflight: 5 })
      const batch = messages("sink", 120, (i) => (i % 3) as 0 | 1 | 2)
      const sentBefore = (yield* Metric.value(MqttClient.metrics.sent[1]!)).count
      const events = yield* sender.events.pipe(
        Stream.filter((e) => e._tag === "Published"),
        Stream.take(120),
        Stream.runCollect,
        Effect.forkChild({ startImmediately: true })
      )
      // Chunks of 7: each larger than the window, so the window is refilled across chunk boundaries. A sink that
      // stopped at a full window would never end: bounded, so the test fails instead of hanging.
      const count = yield* Stream.fromIterable(batch).pipe(
        Stream.rechunk(7),
        Stream.run(sender.publishSink),
        Effect.timeout("20 seconds")
      )
      assert.strictEqual(count, 120)
      assert.deepStrictEqual(yield* Fiber.join(received), sent(batch))
      assert.strictEqual(yield* sender.pendingCount, 0)
      assert.strictEqual((yield* Metric.value(MqttClient.metrics.sent[1]!)).count - sentBefore, 40)
      const published = Array.from(yield* Fiber.join(events))
      assert.deepStrictEqual(
        published.map((e) => e._tag === "Published" ? e.qos : -1).sort(),
        batch.map((m) => m.qos!).sort()
      )
      assert.strictEqual(yield* Stream.run(Stream.empty, sender.publishSink), 0)
    }))

  it.live("with a session store, each message is stored and completes before the next; all arrive, in order", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const receiver = yield* MqttClient.make({ url: broker.url, clientId: "sink-store-rx" })
      const received = yield* collect(receiver, "sinkstore/#", 30)
      const sender = yield* MqttClient.make({
        url: broker.url,
        clientId: "sink-store-tx",
        cleanSession: false,
        sessionStore: SessionStore.makeMemory()
      })
      const events = yield* sender.events.pipe(
        Stream.filter((e) => e._tag === "Published"),
        Stream.take(30),
        Stream.runCollect,
        Effect.forkChild({ startImmediately: true })
      )
      const batch = messages("sinkstore", 30, (i) => (i % 3) as 0 | 1 | 2)
      const count = yield* Stream.fromIterable(batch).pipe(
        Stream.rechunk(4),
        Stream.run(sender.publishSink),
        Effect.timeout("20 seconds")
      )
      assert.strictEqual(count, 30)
      assert.deepStrictEqual(yield* Fiber.join(received), sent(batch))
      // Sequential: the events come in the stream's order.
      assert.deepStrictEqual(
        Array.from(yield* Fiber.join(events)).map((e) => e._tag === "Published" ? e.qos : -1),
        batch.map((m) => m.qos!)
      )
      assert.strictEqual(yield* sender.pendingCount, 0)
    }))

  it.live("an invalid message fails the stream: nothing of its chunk is sent, the chunks before it are delivered", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const receiver = yield* MqttClient.make({ url: broker.url, clientId: "sink-bad-rx" })
      const received = yield* collect(receiver, "sinkbad/#", 11)
      const sender = yield* MqttClient.make({ url: broker.url, clientId: "sink-bad-tx" })
      const batch = messages("sinkbad", 20, () => 1)
      const withWildcard = [...batch.slice(0, 12), { topic: "sinkbad/+", payload: "x", qos: 1 as const }, ...batch.slice(12)]
      const error = yield* Effect.flip(
        Stream.fromIterable(withWildcard).pipe(Stream.rechunk(10), Stream.run(sender.publishSink))
      )
      assert.strictEqual(error.reason._tag, "InvalidTopic")
      // One more message on the same topic: the broker keeps a topic's order, so before it arrive the first chunk
      // (10 messages) and nothing of the second (with the wildcard).
      const after = { topic: "sinkbad/q1", payload: "after", qos: 1 as const }
      yield* sender.publish(after)
      assert.deepStrictEqual(yield* Fiber.join(received), sent([...batch.slice(0, 10), after]))
    }))
})

describe("MqttTest publishAll and publishSink", () => {
  it.effect("nothing is published when one message is invalid; then each in order", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      const client = yield* MqttTest.makeClient(broker, { clientId: "test-all" })
      const error = yield* Effect.flip(
        client.publishAll([{ topic: "t/1", payload: "a" }, { topic: "t/#", payload: "b" }])
      )
      assert.strictEqual(error.reason._tag, "InvalidTopic")
      for (const notMessages of [null, [null], [{ topic: "t/3", payload: 42 }]]) {
        const bad = yield* Effect.flip(client.publishAll(notMessages as unknown as Array<MqttClient.PublishInput>))
        assert.strictEqual(bad.reason._tag, "BadStructure", JSON.stringify(notMessages))
      }
      yield* client.publishAll([{ topic: "t/1", payload: "a", qos: 1 }, { topic: "t/2", payload: "b" }])
      const published = yield* broker.published
      assert.deepStrictEqual(published.map((m) => m.topic), ["t/1", "t/2"])
      const count = yield* Stream.run(
        Stream.make({ topic: "t/3", payload: "c" }, { topic: "t/4", payload: "d", qos: 2 as const }),
        client.publishSink
      )
      assert.strictEqual(count, 2)
      assert.deepStrictEqual((yield* broker.published).map((m) => m.topic), ["t/1", "t/2", "t/3", "t/4"])
    }))
})

/**
 * A QoS 2 batch of 50 published by `publish` from a persistent-session sender whose connection (through a fault
 * proxy) is cut after the broker's 10th PUBREC: `publish` must complete (it returns how many it published) and each
 * message arrive exactly once, in order.
 */
const qos2BatchThroughCut = (
  name: string,
  maxInflight: number,
  publish: (
    sender: MqttClient.MqttClient["Service"],
    batch: ReadonlyArray<MqttClient.PublishInput>
  ) => Effect.Effect<number, MqttError.MqttError>
) =>
  Effect.gen(function*() {
    const broker = yield* Mosquitto.start()
    const proxy = yield* FaultProxy.make({ targetPort: broker.port })
    const root = topicRoot(name)
    const receiver = yield* MqttClient.make(options(broker.url, { clientId: clientId("rx") }))
    const subscription = yield* receiver.subscription(`${root}/#`, { qos: 2 })
    const received = yield* record(subscription.messages)
    const sender = yield* MqttClient.make(
      options(proxy.url, { ...fastRecovery, clientId: clientId("tx"), cleanSession: false, maxInflight })
    )
    const cut = yield* proxy.cutOn("toClient", FaultProxy.nth(10, FaultProxy.packet("Pubrec")), { deliver: true })
    const batch = messages(root, 50, () => 2)
    const count = yield* bounded(publish(sender, batch), `the ${name} to complete after the cut`)
    yield* cut.awaitFired()
    assert.strictEqual(count, 50)
    // One more message on the same topic after the batch: the broker keeps a topic's order, so when it arrives
    // every copy of the batch's messages has arrived before it.
    yield* sender.publish({ topic: `${root}/q2`, payload: "end", qos: 2 })
    const all = yield* received.waitForCount(51)
    assert.deepStrictEqual(all.map((m) => text(m.payload)), [...batch.map((m) => m.payload), "end"])
    assert.isTrue(proxy.stats.accepted >= 2, "the sender reconnected")
  })

describeMosquitto("MqttClient.publishAll and publishSink through a cut connection (Mosquitto, FaultProxy)", () => {
  it.live("a QoS 2 batch cut after its 10th PUBREC completes on the next connection, each message once [MQTT-4.3.3-1] [MQTT-4.4.0-1]", () =>
    qos2BatchThroughCut("batch", 20, (sender, batch) => Effect.map(sender.publishAll(batch), (ids) => ids.length)))

  it.live("a QoS 2 stream cut after its 10th PUBREC completes on the next connection, each message once [MQTT-4.3.3-1] [MQTT-4.4.0-1]", () =>
    qos2BatchThroughCut("stream", 8, (sender, batch) =>
      Stream.fromIterable(batch).pipe(Stream.rechunk(6), Stream.run(sender.publishSink))))
})
