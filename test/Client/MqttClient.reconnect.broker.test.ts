/**
 * `MqttClient` reconnecting to a real Mosquitto 2.0 that is stopped and started again on the same port: status and
 * events around the outage, publishes queued while offline, automatic resubscription when the broker forgot the
 * session (`persistence false`), a resumed session when it kept it (`persistence true`), and a forced disconnect while
 * offline.
 *
 * Clients reconnect every 100 ms. Where the order in which two clients reconnect matters (the publisher must not flush
 * its queue before the subscriber has subscribed again, or the broker rightly drops the messages), one client goes
 * through a `tcpProxy` that is blocked until the other is ready: nothing depends on timing. Every wait is bounded and
 * waits for an event (a status, a message, a broker log line).
 */
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import {
  PacketType,
  awaitStatus,
  bounded,
  clientId,
  exitFailure,
  failureOf,
  isStatus,
  options,
  record,
  tcpProxy,
  text,
  topicRoot,
  waitUntil
} from "../utils/clients.ts"
import * as Mosquitto from "../utils/Mosquitto.ts"
import { describeMosquitto } from "../utils/suites.ts"

const fast = { reconnect: Schedule.spaced("100 millis") } as const

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** Waits until Mosquitto has sent `n` SUBACKs to `id` since it first started (its log spans restarts). */
const awaitSubacks = (broker: Mosquitto.MosquittoBroker, id: string, n: number) =>
  waitUntil(
    `Mosquitto to send ${n} SUBACK to ${id}`,
    Effect.map(broker.logs, (logs) => suback(logs, id) >= n)
  )

const suback = (logs: string, id: string) =>
  logs.match(new RegExp(`Sending SUBACK to ${escape(id)}\\n`, "g"))?.length ?? 0

const connected = isStatus("Connected")
const reconnecting = isStatus("Reconnecting")

/** Event tags that describe the connection, consecutive repeats collapsed. */
const lifecycle = (events: ReadonlyArray<MqttClient.Event>) =>
  events
    .filter((e) => ["Connected", "Disconnected", "Reconnecting", "Closed"].includes(e._tag))
    .map((e) => (e._tag === "Connected" ? `Connected(${e.sessionPresent})` : e._tag))
    .filter((tag, i, tags) => i === 0 || tags[i - 1] !== tag)

/** How many times each payload was received. */
const tally = (messages: ReadonlyArray<MqttClient.Message>) => {
  const counts = new Map<string, number>()
  for (const m of messages) counts.set(text(m.payload), (counts.get(text(m.payload)) ?? 0) + 1)
  return counts
}

describeMosquitto("MqttClient reconnecting to Mosquitto", () => {
  it.live.each([1, 2] as const)(
    "QoS %d: broker restarted without persistence: both reconnect, the subscriber resubscribes, nothing is lost",
    (qos) =>
      Effect.gen(function*() {
        const broker = yield* Mosquitto.start({ verbose: true })
        const topic = `${topicRoot("restart")}/t`
        const subscriberId = clientId("sub")
        const subscriber = yield* MqttClient.make(options(broker.url, { ...fast, clientId: subscriberId }))
        const subscriberEvents = yield* record(subscriber.events)
        const subscription = yield* subscriber.subscription(topic, { qos })
        const received = yield* record(subscription.messages)
        // The publisher goes through a proxy held closed until the subscriber has subscribed again.
        const gate = yield* tcpProxy(broker.port)
        const publisher = yield* MqttClient.make(options(gate.url, { ...fast, clientId: clientId("pub") }))
        const publisherEvents = yield* record(publisher.events)
        yield* publisher.publish({ topic, payload: "before", qos })
        yield* received.waitFor("the first message", (ms) => ms.length >= 1)

        yield* broker.stop
        yield* gate.block
        const down = yield* awaitStatus(subscriber, "Reconnecting", reconnecting)
        assert.isTrue(down.error.isRetryable)
        yield* awaitStatus(publisher, "Reconnecting", reconnecting)
        const qos0 = yield* failureOf(publisher.publish({ topic, payload: "lost", qos: 0 }))
        assert.strictEqual(qos0.reason._tag, "Disconnected", "QoS 0 is not queued offline by default")

        // Published while the broker is down: queued offline, completed after the reconnect.
        const offline = ["down-1", "down-2", "down-3", "down-4", "down-5"]
        const pending = yield* Effect.forEach(offline, (payload) =>
          Effect.forkChild(publisher.publish({ topic, payload, qos }), { startImmediately: true }))
        yield* waitUntil("5 publishes queued", Effect.map(publisher.pendingCount, (n) => n === 5))

        yield* broker.restart
        const back = yield* awaitStatus(subscriber, "Connected again", connected)
        assert.isFalse(back.sessionPresent, "persistence false: the broker forgot the session")
        // Subscribed again by itself: the second SUBACK of this client.
        yield* awaitSubacks(broker, subscriberId, 2)

        yield* gate.unblock
        yield* awaitStatus(publisher, "Connected again", connected)
        const ids = yield* bounded(Fiber.joinAll(pending), "the queued publishes to complete")
        for (const id of ids) assert.isNumber(id)
        for (const payload of ["after-1", "after-2"]) yield* publisher.publish({ topic, payload, qos })
        assert.strictEqual(yield* publisher.pendingCount, 0)

        const expected = ["before", ...offline, "after-1", "after-2"]
        const messages = yield* received.waitFor("every message", (ms) => expected.every((p) => tally(ms).has(p)))
        const counts = tally(messages)
        if (qos === 2) {
          for (const payload of expected) assert.strictEqual(counts.get(payload), 1, `exactly once: ${payload}`)
          assert.strictEqual(messages.length, expected.length)
        }
        for (const m of messages) assert.strictEqual(m.qos, qos)

        // Events around the restart (the first Connected was emitted while `make` ran, before the stream existed).
        for (const events of [subscriberEvents, publisherEvents]) {
          yield* events.waitFor("Connected", (es) => lifecycle(es).at(-1) === "Connected(false)")
          assert.deepStrictEqual(lifecycle(events.items), ["Disconnected", "Reconnecting", "Connected(false)"])
        }
        const reconnects = subscriberEvents.items.filter((e) => e._tag === "Reconnecting")
        assert.deepStrictEqual(
          reconnects.map((e) => (e as { attempt: number }).attempt),
          reconnects.map((_, i) => i + 1),
          "attempts count from 1"
        )
      })
  )

  it.live("broker restarted with persistence: the resumed session delivers what came while away [MQTT-3.1.2-4]", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ verbose: true, persistence: true })
      const topic = `${topicRoot("persist")}/t`
      const subscriberId = clientId("sub")
      // The subscriber goes through a proxy held closed until the publisher has published everything.
      const gate = yield* tcpProxy(broker.port)
      const subscriber = yield* MqttClient.make(
        options(gate.url, { ...fast, clientId: subscriberId, cleanSession: false })
      )
      const subscription = yield* subscriber.subscription(topic, { qos: 1 })
      const received = yield* record(subscription.messages)
      const publisher = yield* MqttClient.make(options(broker.url, { ...fast, clientId: clientId("pub") }))
      yield* publisher.publish({ topic, payload: "before", qos: 1 })
      yield* received.waitFor("the first message", (ms) => ms.length >= 1)

      yield* broker.stop
      yield* gate.block
      yield* awaitStatus(subscriber, "Reconnecting", reconnecting)
      yield* awaitStatus(publisher, "Reconnecting", reconnecting)
      const offline = ["down-1", "down-2", "down-3"]
      const pending = yield* Effect.forEach(offline, (payload) =>
        Effect.forkChild(publisher.publish({ topic, payload, qos: 1 }), { startImmediately: true }))

      yield* broker.restart
      yield* awaitStatus(publisher, "Connected again", connected)
      yield* bounded(Fiber.joinAll(pending), "the queued publishes to complete")
      // Published while the subscriber is still away: the broker queues them in its restored session.
      for (const payload of ["away-1", "away-2"]) yield* publisher.publish({ topic, payload, qos: 1 })

      yield* gate.unblock
      const back = yield* awaitStatus(subscriber, "Connected again", connected)
      assert.isTrue(back.sessionPresent, "persistence true: the broker kept the session")
      const expected = ["before", ...offline, "away-1", "away-2"]
      yield* received.waitFor("every message", (ms) => expected.every((p) => tally(ms).has(p)))
      // With the session present the client does not subscribe again.
      assert.strictEqual(suback(yield* broker.logs, subscriberId), 1)
    }))

  it.live("disconnect({ force: true }) while offline: queued publishes fail (OperationIncomplete), streams end", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ verbose: true })
      const topic = `${topicRoot("force")}/t`
      const id = clientId("force")
      const client = yield* MqttClient.make(options(broker.url, { ...fast, clientId: id }))
      const events = yield* record(client.events)
      const subscription = yield* client.subscription(topic, { qos: 1 })
      const scoped = yield* record(subscription.messages)
      const streamed = yield* record(client.subscribe(`${topic}/more`, { qos: 2 }))
      yield* awaitStatus(client, "Connected", connected)
      // Both SUBACKs in before the broker stops: a SUBSCRIBE still pending then would count as a fourth operation.
      yield* awaitSubacks(broker, id, 2)
      yield* waitUntil("both subscriptions acknowledged", Effect.map(client.pendingCount, (n) => n === 0))

      yield* broker.stop
      yield* awaitStatus(client, "Reconnecting", reconnecting)
      yield* events.waitFor("Reconnecting", (es) => es.some((e) => e._tag === "Reconnecting"))
      const pending = yield* Effect.forEach([1, 2, 3], (i) =>
        Effect.forkChild(client.publish({ topic, payload: `p${i}`, qos: 1 }), { startImmediately: true }))
      yield* waitUntil("3 publishes queued", Effect.map(client.pendingCount, (n) => n === 3))

      yield* bounded(client.disconnect({ force: true }), "a forced disconnect")
      for (const fiber of pending) {
        const error = exitFailure(yield* bounded(Fiber.await(fiber), "a queued publish to settle"))
        assert.strictEqual(error.reason._tag, "OperationIncomplete")
      }
      assert.isTrue(Exit.isSuccess(yield* scoped.waitForEnd()), "subscription stream ended")
      assert.isTrue(Exit.isSuccess(yield* streamed.waitForEnd()), "subscribe stream ended")
      assert.strictEqual(yield* client.pendingCount, 0)
      assert.deepStrictEqual(yield* SubscriptionRef.get(client.status), { _tag: "Closed" })
      yield* events.waitFor("Closed", (es) => es.some((e) => e._tag === "Closed"))
      assert.deepStrictEqual(lifecycle(events.items), ["Disconnected", "Reconnecting", "Closed"])

      // Closed for good: every operation fails at once with Disconnected, nothing waits.
      for (const qos of [0, 1, 2] as const) {
        const error = yield* failureOf(bounded(client.publish({ topic, payload: "late", qos }), "publish after close"))
        assert.strictEqual(error.reason._tag, "Disconnected", `QoS ${qos}`)
      }
      const subscribeError = yield* failureOf(
        bounded(Effect.scoped(client.subscription(topic)), "subscribe after close")
      )
      assert.strictEqual(subscribeError.reason._tag, "Disconnected")
      const unsubscribeError = yield* failureOf(bounded(client.unsubscribe(topic), "unsubscribe after close"))
      assert.strictEqual(unsubscribeError.reason._tag, "Disconnected")
      assert.isFalse(yield* client.isConnected)
      yield* bounded(client.disconnect(), "a second disconnect")
    }))

  // Regression: found by this test and fixed in src.
  it.live("a stream started while offline subscribes once: its retained message arrives once", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ verbose: true })
      const topic = `${topicRoot("offline-retained")}/t`
      const subscriberId = clientId("sub")
      const gate = yield* tcpProxy(broker.port)
      const subscriber = yield* MqttClient.make(options(gate.url, { ...fast, clientId: subscriberId }))
      yield* broker.stop
      yield* gate.block
      yield* awaitStatus(subscriber, "Reconnecting", reconnecting)
      const received = yield* record(subscriber.subscribe(topic, { qos: 1 }))
      yield* broker.restart
      const publisher = yield* MqttClient.make(options(broker.url, { clientId: clientId("pub") }))
      yield* publisher.publish({ topic, payload: "retained", qos: 1, retain: true })

      yield* gate.unblock
      yield* awaitStatus(subscriber, "Connected again", connected)
      yield* awaitSubacks(broker, subscriberId, 1)
      yield* publisher.publish({ topic, payload: "live", qos: 1 })
      yield* received.waitFor("the live message", (ms) => ms.some((m) => text(m.payload) === "live"))
      assert.deepStrictEqual(received.items.map((m) => text(m.payload)), ["retained", "live"])
      assert.strictEqual(suback(yield* broker.logs, subscriberId), 1, "one SUBSCRIBE for the filter")
    }))

  it.live("disconnect({ timeout }) while offline waits at most the timeout, then fails what is queued", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const topic = `${topicRoot("graceful")}/t`
      const client = yield* MqttClient.make(options(broker.url, { ...fast, clientId: clientId("grace") }))
      yield* broker.stop
      yield* awaitStatus(client, "Reconnecting", reconnecting)
      const pending = yield* Effect.forkChild(client.publish({ topic, payload: "queued", qos: 2 }), {
        startImmediately: true
      })
      const started = Date.now()
      yield* bounded(client.disconnect({ timeout: "300 millis" }), "a graceful disconnect with a timeout")
      const took = Date.now() - started
      assert.isAtLeast(took, 250, "waited for the acknowledgement")
      assert.isBelow(took, 3_000, "but no longer than the timeout")
      const error = exitFailure(yield* bounded(Fiber.await(pending), "the queued publish to settle"))
      assert.strictEqual(error.reason._tag, "OperationIncomplete")
      assert.deepStrictEqual(yield* SubscriptionRef.get(client.status), { _tag: "Closed" })
    }))

  it.live("a stream started while offline subscribes once connected again", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ verbose: true })
      const topic = `${topicRoot("offline-sub")}/t`
      const subscriberId = clientId("sub")
      const subscriber = yield* MqttClient.make(options(broker.url, { ...fast, clientId: subscriberId }))
      const publisher = yield* MqttClient.make(options(broker.url, { ...fast, clientId: clientId("pub") }))
      yield* broker.stop
      yield* awaitStatus(subscriber, "Reconnecting", reconnecting)
      const received = yield* record(subscriber.subscribe(topic, { qos: 1 as Packet.QoS }))
      yield* broker.restart
      yield* awaitStatus(subscriber, "Connected again", connected)
      yield* awaitSubacks(broker, subscriberId, 1)
      yield* awaitStatus(publisher, "Connected again", connected)
      yield* publisher.publish({ topic, payload: "hello", qos: 1 })
      yield* received.waitFor("the message", (ms) => ms.length >= 1)
      assert.strictEqual(text(received.items[0]!.payload), "hello")
    }))

  // -------------------------------------------------------------------------------------------------------------------
  // Session resume after a cut connection (broker up): the proxy swallows one acknowledgement, then cuts.
  // -------------------------------------------------------------------------------------------------------------------

  /** Both clients, the publisher (persistent session) behind a proxy, and the publisher's events. */
  const resumeSetup = Effect.fnUntraced(function*(qos: Packet.QoS) {
    const broker = yield* Mosquitto.start({ verbose: true })
    const topic = `${topicRoot("resume")}/t`
    const subscriber = yield* MqttClient.make(options(broker.url, { clientId: clientId("sub") }))
    const received = yield* record((yield* subscriber.subscription(topic, { qos })).messages)
    const gate = yield* tcpProxy(broker.port)
    const publisherId = clientId("pub")
    const publisher = yield* MqttClient.make(
      options(gate.url, { ...fast, clientId: publisherId, cleanSession: false })
    )
    const events = yield* record(publisher.events)
    /** Cuts the publisher's connection (forwarding everything again) and waits until it has resumed its session. */
    const cutAndResume = Effect.gen(function*() {
      yield* gate.dropFromBroker()
      yield* gate.dropConnections
      yield* events.waitFor("the publisher to resume its session", (es) =>
        lifecycle(es).join(",").endsWith("Disconnected,Reconnecting,Connected(true)"))
    })
    /** Publishes `payload` at `qos`, then a marker; returns how often the subscriber got `payload` by the marker. */
    const deliveredCount = (payload: string) =>
      Effect.gen(function*() {
        yield* publisher.publish({ topic, payload: "marker", qos })
        const messages = yield* received.waitFor("the marker", (ms) => ms.some((m) => text(m.payload) === "marker"))
        return messages.filter((m) => text(m.payload) === payload).length
      })
    const fromPublisher = (what: string) =>
      Effect.map(broker.logs, (logs) =>
        logs.match(new RegExp(`Received ${what} from ${escape(publisherId)} [^\n]*`, "g")) ?? [])
    return { topic, publisher, received, gate, cutAndResume, deliveredCount, fromPublisher }
  })

  it.live("QoS 1, PUBACK lost: the resumed session resends the PUBLISH with DUP 1 [MQTT-4.4.0-1] [MQTT-3.3.1-1]", () =>
    Effect.gen(function*() {
      const { cutAndResume, deliveredCount, fromPublisher, gate, publisher, received, topic } = yield* resumeSetup(1)
      yield* gate.dropFromBroker(PacketType.PUBACK)
      const publish = yield* Effect.forkChild(publisher.publish({ topic, payload: "once", qos: 1 }), {
        startImmediately: true
      })
      yield* received.waitFor("the message", (ms) => ms.length >= 1)
      yield* waitUntil("the PUBACK to be swallowed", () => (gate.dropped.get(PacketType.PUBACK) ?? 0) >= 1)
      assert.strictEqual(yield* publisher.pendingCount, 1, "unacknowledged")

      yield* cutAndResume
      const packetId = yield* bounded(Fiber.join(publish), "the publish to complete after the resume")
      assert.isNumber(packetId)
      const publishes = yield* fromPublisher("PUBLISH")
      assert.deepStrictEqual(
        publishes.map((line) => line.replace(/^.*\((d\d), (q\d), r0, m(\d+),.*$/, "$1 $2 m$3")),
        [`d0 q1 m${packetId}`, `d1 q1 m${packetId}`],
        "resent once, with its packet id and DUP 1"
      )
      // At least once: Mosquitto forwards the duplicate as a new message.
      assert.isAtLeast(yield* deliveredCount("once"), 1)
    }))

  it.live("QoS 2, PUBREC lost: the PUBLISH is resent with DUP 1 and delivered exactly once [MQTT-4.3.3-1]", () =>
    Effect.gen(function*() {
      const { cutAndResume, deliveredCount, fromPublisher, gate, publisher, topic } = yield* resumeSetup(2)
      yield* gate.dropFromBroker(PacketType.PUBREC)
      const publish = yield* Effect.forkChild(publisher.publish({ topic, payload: "once", qos: 2 }), {
        startImmediately: true
      })
      yield* waitUntil("the PUBREC to be swallowed", () => (gate.dropped.get(PacketType.PUBREC) ?? 0) >= 1)
      yield* cutAndResume
      const packetId = yield* bounded(Fiber.join(publish), "the publish to complete after the resume")
      const publishes = yield* fromPublisher("PUBLISH")
      assert.deepStrictEqual(
        publishes.map((line) => line.replace(/^.*\((d\d), (q\d), r0, m(\d+),.*$/, "$1 $2 m$3")),
        [`d0 q2 m${packetId}`, `d1 q2 m${packetId}`]
      )
      assert.strictEqual(yield* deliveredCount("once"), 1)
    }))

  it.live("QoS 2, PUBCOMP lost: the resumed session resends only PUBREL, never the PUBLISH [MQTT-4.3.3-1]", () =>
    Effect.gen(function*() {
      const { cutAndResume, deliveredCount, fromPublisher, gate, publisher, topic } = yield* resumeSetup(2)
      yield* gate.dropFromBroker(PacketType.PUBCOMP)
      const publish = yield* Effect.forkChild(publisher.publish({ topic, payload: "once", qos: 2 }), {
        startImmediately: true
      })
      yield* waitUntil("the PUBCOMP to be swallowed", () => (gate.dropped.get(PacketType.PUBCOMP) ?? 0) >= 1)
      assert.strictEqual(yield* publisher.pendingCount, 1, "awaiting PUBCOMP")
      yield* cutAndResume
      const packetId = yield* bounded(Fiber.join(publish), "the publish to complete after the resume")
      assert.strictEqual((yield* fromPublisher("PUBLISH")).length, 1, "the PUBLISH was sent once")
      const pubrels = yield* fromPublisher("PUBREL")
      assert.deepStrictEqual(pubrels.map((line) => line.replace(/^.*\(Mid: (\d+)\).*$/, "$1")), [
        String(packetId),
        String(packetId)
      ])
      assert.strictEqual(yield* deliveredCount("once"), 1)
    }))

  it.live("incoming QoS 2, PUBREL lost: after the resume the message is not delivered twice [MQTT-4.3.3-2]", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ verbose: true })
      const topic = `${topicRoot("incoming")}/t`
      const gate = yield* tcpProxy(broker.port)
      const subscriberId = clientId("sub")
      const subscriber = yield* MqttClient.make(
        options(gate.url, { ...fast, clientId: subscriberId, cleanSession: false })
      )
      const events = yield* record(subscriber.events)
      const received = yield* record((yield* subscriber.subscription(topic, { qos: 2 })).messages)
      const publisher = yield* MqttClient.make(options(broker.url, { clientId: clientId("pub") }))
      yield* gate.dropFromBroker(PacketType.PUBREL)
      yield* publisher.publish({ topic, payload: "once", qos: 2 })
      yield* received.waitFor("the message", (ms) => ms.length >= 1)
      yield* waitUntil("the PUBREL to be swallowed", () => (gate.dropped.get(PacketType.PUBREL) ?? 0) >= 1)

      yield* gate.dropFromBroker()
      yield* gate.dropConnections
      yield* events.waitFor("the subscriber to resume its session", (es) =>
        lifecycle(es).join(",").endsWith("Disconnected,Reconnecting,Connected(true)"))
      yield* publisher.publish({ topic, payload: "marker", qos: 2 })
      yield* received.waitFor("the marker", (ms) => ms.some((m) => text(m.payload) === "marker"))
      assert.deepStrictEqual(received.items.map((m) => text(m.payload)), ["once", "marker"])
      // The broker resent PUBREL on the resumed session, and the client completed the flow with PUBCOMP.
      yield* waitUntil(
        "Mosquitto to receive the PUBCOMP",
        Effect.map(broker.logs, (logs) => new RegExp(`Received PUBCOMP from ${escape(subscriberId)}`).test(logs))
      )
    }))

  it.live("a silent connection (no PINGRESP) is detected by keepalive and replaced (§3.1.2.10)", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start()
      const gate = yield* tcpProxy(broker.port)
      const client = yield* MqttClient.make(
        options(gate.url, { ...fast, clientId: clientId("ka"), keepalive: 1, pingTimeout: "500 millis" })
      )
      const events = yield* record(client.events)
      yield* events.waitFor("a PINGRESP", (es) => es.some((e) => e._tag === "Pong"))
      yield* gate.freeze
      const down = yield* awaitStatus(client, "Reconnecting", reconnecting)
      assert.strictEqual(down.error.reason._tag, "KeepaliveTimeout")
      yield* events.waitFor("Connected again", (es) => lifecycle(es).at(-1) === "Connected(false)")
      const disconnected = events.items.find((e) => e._tag === "Disconnected")
      const cause = disconnected?._tag === "Disconnected" ? disconnected.error.reason._tag : undefined
      assert.strictEqual(cause, "KeepaliveTimeout")
      assert.deepStrictEqual(lifecycle(events.items), ["Disconnected", "Reconnecting", "Connected(false)"])
      // The new connection works.
      const topic = `${topicRoot("ka")}/t`
      const subscription = yield* client.subscription(topic, { qos: 1 })
      yield* client.publish({ topic, payload: "alive", qos: 1 })
      const received = yield* record(subscription.messages)
      yield* received.waitFor("the message", (ms) => ms.length >= 1)
    }))
})
