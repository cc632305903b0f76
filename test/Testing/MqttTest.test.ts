/**
 * `MqttTest`, the in-memory broker and client kit for users' own tests.
 *
 * The first part runs one set of scenarios — the ones the real-broker client tests cover — against two backends: the
 * kit (`it.effect`, TestClock, no sockets) and a real Aedes broker reached by the real client (`it.live`), to show the
 * kit behaves like a real broker. Each scenario is written once against `Env` (clients, a way to cut a connection,
 * waits on the broker's subscriptions). Where Aedes departs from MQTT 3.1.1 (a wildcard-matched message is delivered
 * at the published QoS instead of min(published, granted)), the kit follows the specification and the scenario says
 * so. The second part covers what only the kit offers: its layer, the inspection API, crash and reconnect under
 * TestClock, refusal hooks, session takeover, buffers, and determinism.
 */
import { assert, describe, it } from "@effect/vitest"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { TestClock } from "effect/testing"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as Topic from "../../src/Codec/Topic.ts"
import type * as MqttError from "../../src/Errors/MqttError.ts"
import * as MqttTest from "../../src/Testing/MqttTest.ts"
import * as Aedes from "../utils/Aedes.ts"
import {
  awaitStatus,
  bounded,
  clientId,
  collect,
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

type Client = MqttClient.MqttClient["Service"]

// ---------------------------------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------------------------------

/** What a shared scenario needs from a backend. */
interface Env {
  /** A connected client (no reconnect; `clientId` unique unless given). */
  readonly client: (overrides?: Partial<MqttClient.Options>) => Effect.Effect<Client, unknown, Scope.Scope>
  /** A connected client whose connection `crash` cuts without DISCONNECT, as a network failure would. */
  readonly crashable: (
    overrides: Partial<MqttClient.Options> & { readonly clientId: string }
  ) => Effect.Effect<{ readonly client: Client; readonly crash: Effect.Effect<void> }, unknown, Scope.Scope>
  /** Waits until the broker holds `clientId`'s subscription to `topicFilter` (bounded). */
  readonly awaitSubscribed: (clientId: string, topicFilter: string) => Effect.Effect<void>
  /** Waits until the broker no longer holds `clientId`'s subscription to `topicFilter` (bounded). */
  readonly awaitUnsubscribed: (clientId: string, topicFilter: string) => Effect.Effect<void>
  /** Waits until the broker has closed its side of `clientId`'s connection (bounded). */
  readonly awaitGone: (clientId: string) => Effect.Effect<void>
  /** Lets reconnect schedules run for `duration`: TestClock for the kit; nothing for a real broker (real time). */
  readonly elapse: (duration: Duration.Input) => Effect.Effect<void>
}

interface Hooks {
  /** Filters the broker refuses (SUBACK 0x80). */
  readonly refuseSubscribe?: (topicFilter: string) => boolean
}

interface Backend {
  readonly name: string
  /** `it.effect` (TestClock) for the kit, `it.live` for a real broker. */
  readonly test: typeof it.effect | typeof it.live
  /**
   * Whether a message matching a wildcard filter is delivered at min(published, granted) QoS [MQTT-3.8.4-6]. Aedes
   * 1.2.0 delivers it at the published QoS; the kit follows the specification.
   */
  readonly downgradesWildcardQos: boolean
  /**
   * Whether overlapping subscriptions deliver their one copy at the highest granted QoS [MQTT-3.3.5-1]. Aedes 1.2.0
   * uses the QoS of the last matching subscription (Mosquitto 2.0: of one of them); the kit follows the specification.
   */
  readonly overlapAtHighestQos: boolean
  /**
   * Whether a resumed session's queued messages all arrive before messages published after the reconnect. Aedes 1.2.0
   * sends a queued message that followed a dropped QoS 0 one after newer live messages.
   */
  readonly queuedBeforeLive: boolean
  readonly start: (hooks?: Hooks) => Effect.Effect<Env, unknown, Scope.Scope>
}

const kit: Backend = {
  name: "MqttTest",
  test: it.effect,
  downgradesWildcardQos: true,
  overlapAtHighestQos: true,
  queuedBeforeLive: true,
  start: (hooks = {}) =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker({
        authorizeSubscribe: (_clientId, { topicFilter }) => hooks.refuseSubscribe?.(topicFilter) !== true
      })
      const env: Env = {
        client: (overrides = {}) =>
          MqttTest.makeClient(broker, options("mqtt://mqtt-test", { clientId: clientId("kit"), ...overrides })),
        crashable: (overrides) =>
          Effect.map(
            MqttTest.makeClient(broker, options("mqtt://mqtt-test", overrides)),
            (client) => ({ client, crash: Effect.asVoid(broker.crash(overrides.clientId)) })
          ),
        awaitSubscribed: (id, topicFilter) =>
          bounded(broker.awaitSubscribed(topicFilter, id), `${id} subscribed to ${topicFilter}`),
        awaitUnsubscribed: (id, topicFilter) =>
          bounded(broker.awaitUnsubscribed(topicFilter, id), `${id} unsubscribed from ${topicFilter}`),
        awaitGone: (id) =>
          waitUntil(`${id} gone`, Effect.map(broker.clients, (clients) => !clients.some((c) => c.clientId === id))),
        elapse: (duration) => TestClock.adjust(duration)
      }
      return env
    })
}

const aedes: Backend = {
  name: "Aedes",
  test: it.live,
  downgradesWildcardQos: false,
  overlapAtHighestQos: false,
  queuedBeforeLive: false,
  start: (hooks = {}) =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start({
        aedes: {
          authorizeSubscribe: (_client, subscription, done) =>
            hooks.refuseSubscribe?.(subscription.topic) === true ? done(null, null) : done(null, subscription)
        }
      })
      const subscribed = new Map<string, Set<string>>()
      const gone = new Set<string>()
      const filtersOf = (id: string) => {
        let filters = subscribed.get(id)
        if (filters === undefined) subscribed.set(id, filters = new Set())
        return filters
      }
      broker.broker.on("subscribe", (subscriptions, client) => {
        for (const s of subscriptions) filtersOf(client.id).add(s.topic)
      })
      broker.broker.on("unsubscribe", (topics, client) => {
        for (const topic of topics) filtersOf(client.id).delete(topic)
      })
      broker.broker.on("client", (client) => gone.delete(client.id))
      broker.broker.on("clientDisconnect", (client) => gone.add(client.id))
      const env: Env = {
        client: (overrides = {}) => MqttClient.make(options(broker.url, { clientId: clientId("aedes"), ...overrides })),
        crashable: (overrides) =>
          Effect.gen(function*() {
            const proxy = yield* tcpProxy(broker.port)
            const client = yield* MqttClient.make(options(proxy.url, overrides))
            return { client, crash: proxy.dropConnections }
          }),
        awaitSubscribed: (id, topicFilter) =>
          waitUntil(`Aedes to subscribe ${id} to ${topicFilter}`, () => filtersOf(id).has(topicFilter)),
        awaitUnsubscribed: (id, topicFilter) =>
          waitUntil(`Aedes to unsubscribe ${id} from ${topicFilter}`, () => !filtersOf(id).has(topicFilter)),
        awaitGone: (id) => waitUntil(`Aedes to close the connection of ${id}`, () => gone.has(id)),
        elapse: () => Effect.void
      }
      return env
    })
}

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

const bytes = (...values: ReadonlyArray<number>) => new Uint8Array(values)

const topics = (messages: ReadonlyArray<{ readonly topic: string }>) => messages.map((m) => m.topic)

const payloads = (messages: ReadonlyArray<{ readonly payload: Uint8Array }>) => messages.map((m) => text(m.payload))

// ---------------------------------------------------------------------------------------------------------------------
// Scenarios shared by the kit and a real broker
// ---------------------------------------------------------------------------------------------------------------------

const scenarios = (backend: Backend) => {
  const test = backend.test

  test.each([0, 1, 2] as const)(
    "publishes at QoS %d to subscriptions granted QoS 0, 1 and 2: delivered at min(published, granted) [MQTT-3.8.4-6]",
    (publishQos) =>
      Effect.gen(function*() {
        const env = yield* backend.start()
        const root = topicRoot("qos")
        const subscriber = yield* env.client()
        const publisher = yield* env.client()
        const subscription = yield* subscriber.subscription({ [`${root}/0`]: 0, [`${root}/1`]: 1, [`${root}/2`]: 2 })
        assert.deepStrictEqual(subscription.granted, [
          { topicFilter: `${root}/0`, qos: 0 },
          { topicFilter: `${root}/1`, qos: 1 },
          { topicFilter: `${root}/2`, qos: 2 }
        ])
        const received = yield* record(subscription.messages)
        const sent = new Map<string, Uint8Array>()
        for (const grantedQos of [0, 1, 2] as const) {
          const topic = `${root}/${grantedQos}`
          const payload = bytes(0x00, 0xff, 0xc3, 0x28, publishQos, grantedQos)
          sent.set(topic, payload)
          const packetId = yield* publisher.publish({ topic, payload, qos: publishQos })
          if (publishQos === 0) assert.isUndefined(packetId, "QoS 0 has no packet id [MQTT-2.3.1-5]")
          else assert.isTrue(packetId! >= 1 && packetId! <= 65535, `packet id ${packetId} in 1..65535`)
          assert.strictEqual(yield* publisher.pendingCount, 0)
        }
        const messages = yield* received.waitForCount(3)
        assert.sameMembers(topics(messages), [...sent.keys()])
        for (const message of messages) {
          const grantedQos = Number(message.topic.slice(-1)) as Packet.QoS
          assert.strictEqual(message.qos, Math.min(publishQos, grantedQos), `delivered QoS on ${message.topic}`)
          assert.deepStrictEqual(message.payload, sent.get(message.topic), `payload bytes on ${message.topic}`)
          assert.isFalse(message.retain, "forwarded to an existing subscription: RETAIN 0 [MQTT-3.3.1-9]")
          assert.isFalse(message.dup)
          assert.strictEqual(message.packetId !== undefined, message.qos > 0, "packet id iff QoS > 0 [MQTT-2.3.1-5]")
        }
      })
  )

  test("retained message: a later subscriber gets it with RETAIN 1; an empty retained payload clears it", () =>
    Effect.gen(function*() {
      const env = yield* backend.start()
      const root = topicRoot("retain")
      const topic = `${root}/state`
      const publisher = yield* env.client()
      yield* publisher.publish({ topic, payload: "on", qos: 1, retain: true })
      // Replaced by the next retained message on the topic [MQTT-3.3.1-5].
      yield* publisher.publish({ topic, payload: "on!", qos: 2, retain: true })

      const first = yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* env.client()
        return yield* collect(client.subscribe(topic, { qos: 1 }), 1)
      }))
      assert.deepStrictEqual(payloads(first), ["on!"])
      assert.isTrue(first[0]!.retain, "sent because of a new subscription: RETAIN 1 [MQTT-3.3.1-8]")
      assert.strictEqual(first[0]!.qos, 1, "min(retained QoS 2, granted QoS 1)")

      yield* publisher.publish({ topic, payload: new Uint8Array(0), qos: 1, retain: true })
      const client = yield* env.client()
      const received = yield* record((yield* client.subscription([topic, `${root}/marker`], { qos: 1 })).messages)
      yield* publisher.publish({ topic: `${root}/marker`, payload: "marker", qos: 1 })
      yield* received.waitFor("the marker", (messages) => topics(messages).includes(`${root}/marker`))
      assert.deepStrictEqual(topics(received.items), [`${root}/marker`], "nothing retained is left on the topic")
    }))

  test("will: published when the connection is lost, not after a graceful close", () =>
    Effect.gen(function*() {
      const env = yield* backend.start()
      const root = topicRoot("will")
      const watcher = yield* env.client()
      const watched = yield* record((yield* watcher.subscription(`${root}/#`, { qos: 1 })).messages)

      const abruptId = clientId("will")
      yield* Effect.scoped(Effect.gen(function*() {
        const { client, crash } = yield* env.crashable({
          clientId: abruptId,
          will: { topic: `${root}/abrupt`, payload: "gone", qos: 1 }
        })
        yield* crash
        yield* watched.waitFor("the will", (messages) => topics(messages).includes(`${root}/abrupt`))
        yield* waitUntil("the client to notice the drop", Effect.map(client.isConnected, (connected) => !connected))
      }))
      const will = watched.items.find((m) => m.topic === `${root}/abrupt`)!
      assert.strictEqual(text(will.payload), "gone")
      assert.strictEqual(will.qos, 1)

      const gracefulId = clientId("nowill")
      yield* Effect.scoped(env.client({ clientId: gracefulId, will: { topic: `${root}/graceful`, payload: "gone" } }))
      yield* env.awaitGone(gracefulId)
      yield* watcher.publish({ topic: `${root}/marker`, payload: "marker", qos: 1 })
      yield* watched.waitFor("the marker", (messages) => topics(messages).includes(`${root}/marker`))
      assert.deepStrictEqual(topics(watched.items), [`${root}/abrupt`, `${root}/marker`])
    }))

  test("persistent session: QoS 1 messages sent while away arrive after reconnecting, QoS 0 ones do not", () =>
    Effect.gen(function*() {
      const env = yield* backend.start()
      const root = topicRoot("session")
      const id = clientId("persist")
      yield* Effect.scoped(Effect.gen(function*() {
        const first = yield* env.client({ clientId: id, cleanSession: false })
        const { granted } = yield* first.subscription(`${root}/#`, { qos: 1 })
        assert.deepStrictEqual(granted, [{ topicFilter: `${root}/#`, qos: 1 }])
      }))
      yield* env.awaitGone(id)

      const publisher = yield* env.client()
      for (let i = 1; i <= 3; i++) yield* publisher.publish({ topic: `${root}/m`, payload: `m${i}`, qos: 1 })
      yield* publisher.publish({ topic: `${root}/m`, payload: "qos 0", qos: 0 })
      yield* publisher.publish({ topic: `${root}/m`, payload: "m4", qos: 1 })

      const again = yield* env.client({ clientId: id, cleanSession: false })
      assert.deepStrictEqual(yield* SubscriptionRef.get(again.status), { _tag: "Connected", sessionPresent: true })
      // Started after CONNACK: the queued messages were held for the first stream (`unclaimedBufferSize`).
      const received = yield* record(again.messages())
      yield* publisher.publish({ topic: `${root}/m`, payload: "marker", qos: 1 })
      yield* received.waitFor("m4 and the marker", (ms) => ["m4", "marker"].every((p) => payloads(ms).includes(p)))
      const queued = payloads(received.items).filter((payload) => payload !== "marker")
      assert.deepStrictEqual(queued, ["m1", "m2", "m3", "m4"], "queued in order, without the QoS 0 message")
      if (backend.queuedBeforeLive) assert.deepStrictEqual(payloads(received.items), ["m1", "m2", "m3", "m4", "marker"])
    }))

  test("after a crash the client reconnects, subscribes again and sends what was published meanwhile", () =>
    Effect.gen(function*() {
      const env = yield* backend.start()
      const root = topicRoot("crash")
      const id = clientId("crash")
      const { client, crash } = yield* env.crashable({ clientId: id, reconnect: Schedule.spaced("100 millis") })
      const watcher = yield* env.client()
      const sent = yield* record((yield* watcher.subscription(`${root}/out`, { qos: 1 })).messages)
      const received = yield* record((yield* client.subscription(`${root}/in`, { qos: 1 })).messages)
      const events = yield* record(client.events)

      yield* crash
      yield* events.waitFor("Disconnected", (es) => es.some((e) => e._tag === "Disconnected"))
      const publishing = yield* Effect.forkChild(client.publish({ topic: `${root}/out`, payload: "meanwhile", qos: 1 }))
      yield* env.elapse("100 millis")
      yield* events.waitFor("Connected", (es) => es.some((e) => e._tag === "Connected"))
      // (The real client emits the event just before it sets the status.)
      const connected = yield* awaitStatus(client, "Connected", isStatus("Connected"))
      assert.isFalse(connected.sessionPresent)
      assert.isNumber(yield* Fiber.join(publishing))
      assert.deepStrictEqual(payloads(yield* sent.waitForCount(1)), ["meanwhile"])

      // A clean session was lost with the connection: the client subscribed again.
      yield* env.awaitSubscribed(id, `${root}/in`)
      yield* watcher.publish({ topic: `${root}/in`, payload: "after", qos: 1 })
      assert.deepStrictEqual(payloads(yield* received.waitForCount(1)), ["after"])
      assert.deepStrictEqual(
        // (The real client also reports `Resubscribed` once the broker acknowledged the filters again.)
        events.items.map((e) => e._tag).filter((tag) => tag !== "Published" && tag !== "Resubscribed"),
        ["Disconnected", "Reconnecting", "Connected"]
      )
      yield* waitUntil("nothing pending", Effect.map(client.pendingCount, (n) => n === 0), "1 second")
    }))

  test("after a crash a persistent session resumes: what was published during the outage is delivered", () =>
    Effect.gen(function*() {
      const env = yield* backend.start()
      const root = topicRoot("resume")
      const id = clientId("resume")
      const { client, crash } = yield* env.crashable({
        clientId: id,
        cleanSession: false,
        reconnect: Schedule.spaced("200 millis")
      })
      const received = yield* record((yield* client.subscription(`${root}/#`, { qos: 1 })).messages)
      const events = yield* record(client.events)
      const publisher = yield* env.client()
      yield* crash
      yield* env.awaitGone(id)
      yield* publisher.publish({ topic: `${root}/a`, payload: "during", qos: 1 })
      yield* env.elapse("200 millis")
      const [connected] = yield* events.waitFor("Connected", (es) => es.some((e) => e._tag === "Connected")).pipe(
        Effect.map((es) => es.filter((e) => e._tag === "Connected"))
      )
      assert.deepStrictEqual(connected, { _tag: "Connected", sessionPresent: true })
      assert.deepStrictEqual(payloads(yield* received.waitForCount(1)), ["during"])
    }))

  test("per-filter QoS: one SUBSCRIBE, granted per filter; + and # match as specified", () =>
    Effect.gen(function*() {
      const env = yield* backend.start()
      const root = topicRoot("wild")
      const subscriber = yield* env.client()
      const publisher = yield* env.client()
      const subscription = yield* subscriber.subscription({ [`${root}/a/+`]: 1, [`${root}/b/#`]: 2, [`${root}/c`]: 0 })
      assert.deepStrictEqual(subscription.granted, [
        { topicFilter: `${root}/a/+`, qos: 1 },
        { topicFilter: `${root}/b/#`, qos: 2 },
        { topicFilter: `${root}/c`, qos: 0 }
      ])
      const received = yield* record(subscription.messages)
      const cases = [
        [`${root}/a/x`, true], // + fills one level
        [`${root}/a/x/y`, false], // + does not span levels
        [`${root}/a`, false], // + matches exactly one level, not none
        [`${root}/a/`, true], // an empty level is a level
        [`${root}/b`, true], // # also matches the parent level
        [`${root}/b/x/y/z`, true], // # matches any number of levels
        [`${root}/c`, true], // exact
        [`${root}/c/x`, false]
      ] as const
      for (const [topic] of cases) yield* publisher.publish({ topic, payload: topic, qos: 2 })
      yield* publisher.publish({ topic: `${root}/b/end`, payload: "end", qos: 2 })
      const messages = yield* received.waitFor("the end marker", (ms) => topics(ms).includes(`${root}/b/end`))
      const expected = cases.filter(([, matches]) => matches).map(([topic]) => topic)
      assert.deepStrictEqual(topics(messages), [...expected, `${root}/b/end`])
      for (const message of messages) {
        const granted = message.topic.startsWith(`${root}/a`) ? 1 : message.topic === `${root}/c` ? 0 : 2
        if (backend.downgradesWildcardQos || message.topic === `${root}/c`) {
          assert.strictEqual(message.qos, granted, `[MQTT-3.8.4-6] ${message.topic}`)
        } else {
          assert.strictEqual(message.qos, 2, `${backend.name} delivers at the published QoS: ${message.topic}`)
        }
      }
    }))

  test("overlapping subscriptions of one client: one copy, at the highest granted QoS [MQTT-3.3.5-1]", () =>
    Effect.gen(function*() {
      const env = yield* backend.start()
      const root = topicRoot("overlap")
      const subscriber = yield* env.client()
      const publisher = yield* env.client()
      const all = yield* record(subscriber.messages())
      yield* subscriber.subscription({ [`${root}/+`]: 1, [`${root}/#`]: 2 })
      yield* subscriber.subscription(`${root}/x`, { qos: 0 })
      yield* publisher.publish({ topic: `${root}/x`, payload: "x", qos: 2 })
      yield* publisher.publish({ topic: `${root}/y/marker`, payload: "marker", qos: 1 })
      yield* all.waitFor("the marker", (ms) => payloads(ms).includes("marker"))
      assert.deepStrictEqual(payloads(all.items), ["x", "marker"], "one copy per client")
      if (backend.overlapAtHighestQos) assert.strictEqual(all.items[0]!.qos, 2)
      else assert.strictEqual(all.items[0]!.qos, 0, `${backend.name} uses the QoS of the last matching subscription`)
    }))

  test("a filter starting with a wildcard does not match topics starting with $ [MQTT-4.7.2-1]", () =>
    Effect.gen(function*() {
      const env = yield* backend.start()
      const id = Math.random().toString(16).slice(2, 8)
      const subscriber = yield* env.client()
      const publisher = yield* env.client()
      const everything = yield* record((yield* subscriber.subscription(["#", "+/+"], { qos: 1 })).messages)
      const dollar = yield* record((yield* subscriber.subscription(`$em${id}/#`, { qos: 1 })).messages)
      yield* publisher.publish({ topic: `$em${id}/x`, payload: "dollar", qos: 1 })
      yield* publisher.publish({ topic: `em${id}/x`, payload: "plain", qos: 1 })
      yield* dollar.waitFor("the $ message", (ms) => ms.length >= 1)
      yield* everything.waitFor("the plain message", (ms) => topics(ms).includes(`em${id}/x`))
      assert.deepStrictEqual(topics(dollar.items), [`$em${id}/x`])
      assert.deepStrictEqual(topics(everything.items).filter((t) => t.startsWith("$")), [], "# and +/+ get no $ topic")
    }))

  test("explicit unsubscribe stops delivery on that filter only", () =>
    Effect.gen(function*() {
      const env = yield* backend.start()
      const root = topicRoot("unsub")
      const subscriber = yield* env.client()
      const publisher = yield* env.client()
      const all = yield* record(subscriber.messages())
      yield* subscriber.subscription([`${root}/a`, `${root}/marker`], { qos: 1 })
      yield* publisher.publish({ topic: `${root}/a`, payload: "before", qos: 1 })
      yield* all.waitForCount(1)

      yield* subscriber.unsubscribe(`${root}/a`)
      assert.strictEqual(yield* subscriber.pendingCount, 0, "UNSUBACK received")
      yield* publisher.publish({ topic: `${root}/a`, payload: "after", qos: 1 })
      yield* publisher.publish({ topic: `${root}/marker`, payload: "marker", qos: 1 })
      yield* all.waitFor("the marker", (ms) => topics(ms).includes(`${root}/marker`))
      assert.deepStrictEqual(payloads(all.items), ["before", "marker"])
    }))

  test("two streams on one filter: when one ends the other keeps receiving; UNSUBSCRIBE after the last", () =>
    Effect.gen(function*() {
      const env = yield* backend.start()
      const root = topicRoot("streams")
      const topic = `${root}/t`
      const subscriberId = clientId("sub")
      const subscriber = yield* env.client({ clientId: subscriberId })
      const publisher = yield* env.client()
      const all = yield* record(subscriber.messages())
      yield* subscriber.subscription(`${root}/marker`, { qos: 1 })
      // A retained message tells when each stream's SUBSCRIBE was handled: it follows the SUBACK, and goes to every
      // stream on the filter (the first stream gets it twice).
      yield* publisher.publish({ topic, payload: "r", qos: 1, retain: true })
      const long = yield* record(subscriber.subscribe(topic, { qos: 1 }).pipe(Stream.take(4)))
      yield* long.waitForCount(1)
      const short = yield* record(subscriber.subscribe(topic, { qos: 1 }).pipe(Stream.take(2)))
      yield* short.waitForCount(1)
      yield* long.waitForCount(2)

      yield* publisher.publish({ topic, payload: "1", qos: 1 })
      assert.isTrue(Exit.isSuccess(yield* short.waitForEnd()))
      assert.deepStrictEqual(payloads(short.items), ["r", "1"])
      // The short stream ended; the long one still uses the filter.
      yield* publisher.publish({ topic, payload: "2", qos: 1 })
      assert.isTrue(Exit.isSuccess(yield* long.waitForEnd()))
      assert.deepStrictEqual(payloads(long.items), ["r", "r", "1", "2"])

      yield* env.awaitUnsubscribed(subscriberId, topic)
      yield* publisher.publish({ topic, payload: "3", qos: 1 })
      yield* publisher.publish({ topic: `${root}/marker`, payload: "marker", qos: 1 })
      yield* all.waitFor("the marker", (ms) => topics(ms).includes(`${root}/marker`))
      assert.deepStrictEqual(payloads(all.items), ["r", "r", "1", "2", "marker"])
      yield* publisher.publish({ topic, payload: new Uint8Array(0), qos: 1, retain: true })
    }))

  test("SUBACK 0x80 fails the stream with SubscribeRejected naming the refused filter", () =>
    Effect.gen(function*() {
      const env = yield* backend.start({ refuseSubscribe: (filter) => filter.startsWith("forbidden/") })
      const client = yield* env.client()
      const refused = yield* record(client.subscribe({ "allowed/x": 1, "forbidden/x": 1 }))
      const error = exitFailure(yield* refused.waitForEnd())
      assert.strictEqual(error.reason._tag, "SubscribeRejected")
      assert.strictEqual((error.reason as MqttError.SubscribeRejected).topicFilter, "forbidden/x")
      assert.strictEqual(error.code, -1)
      assert.strictEqual(error.pahoName, "FAILURE")
      assert.isFalse(error.isRetryable)

      const viaSubscription = yield* failureOf(Effect.scoped(client.subscription("forbidden/y", { qos: 2 })))
      assert.strictEqual(viaSubscription.reason._tag, "SubscribeRejected")

      const ok = yield* client.subscription("allowed/y", { qos: 1 })
      assert.deepStrictEqual(ok.granted, [{ topicFilter: "allowed/y", qos: 1 }])
      yield* client.publish({ topic: "allowed/y", payload: "fine", qos: 1 })
      assert.deepStrictEqual(payloads(yield* collect(ok.messages, 1)), ["fine"])
    }))

  test("invalid input fails with the reason and Paho code of the real client, before anything is sent", () =>
    Effect.gen(function*() {
      const env = yield* backend.start()
      const client = yield* env.client()
      type Case = readonly [string, Effect.Effect<unknown, MqttError.MqttError, Scope.Scope>, string, number]
      const notBytes = 42 as unknown as string
      const cases: ReadonlyArray<Case> = [
        ["QoS 3", client.publish({ topic: "a", payload: "x", qos: 3 as Packet.QoS }), "BadQos", -9],
        ["wildcard in a topic name", client.publish({ topic: "a/+", payload: "x" }), "InvalidTopic", -1],
        ["empty topic name", client.publish({ topic: "", payload: "x" }), "InvalidTopic", -1],
        ["lone surrogate", client.publish({ topic: "a/\uD800", payload: "x" }), "BadUtf8String", -5],
        ["U+0000 in a topic", client.publish({ topic: "a\u0000b", payload: "x" }), "TopicnameTruncated", -7],
        ["misplaced #", client.subscription("a/#/b"), "InvalidTopic", -1],
        ["misplaced +", client.subscription("a+"), "InvalidTopic", -1],
        ["subscribe QoS 3", client.subscription("a", { qos: 3 as Packet.QoS }), "BadQos", -9],
        ["no filter", client.subscription([]), "BadStructure", -8],
        ["a payload that is not bytes", client.publish({ topic: "a", payload: notBytes }), "BadStructure", -8],
        ["unsubscribe a bad filter", client.unsubscribe("a/#/b"), "InvalidTopic", -1],
        ["unsubscribe nothing", client.unsubscribe([]), "BadStructure", -8]
      ]
      for (const [what, effect, reason, code] of cases) {
        const error = yield* failureOf(Effect.scoped(effect))
        assert.strictEqual(error.reason._tag, reason, what)
        assert.strictEqual(error.code, code, what)
        assert.isFalse(error.isRetryable, what)
      }
      const badQos = yield* failureOf(client.publish({ topic: "a", payload: "x", qos: 3 as Packet.QoS }))
      assert.strictEqual(badQos.pahoName, "BAD_QOS")
      assert.strictEqual(badQos.message, "publish: QoS 3 is not 0, 1 or 2")
      // The messages are the validators' own, word for word.
      const wildcard = yield* failureOf(client.publish({ topic: "a/+", payload: "x" }))
      assert.strictEqual(wildcard.message, Topic.validateTopicName("a/+")!.message)
      const filter = yield* failureOf(Effect.scoped(client.subscription("a/#/b")))
      assert.strictEqual(filter.message, Topic.validateTopicFilter("a/#/b")!.message)
      assert.strictEqual(yield* client.pendingCount, 0)
      assert.isTrue(yield* client.isConnected)
    }))
}

describe("MqttTest against the same scenarios as a real broker", () => {
  describe("MqttTest (in memory, TestClock)", () => scenarios(kit))
  describe("Aedes (real client over TCP)", () => scenarios(aedes))
})

// ---------------------------------------------------------------------------------------------------------------------
// What only the kit offers
// ---------------------------------------------------------------------------------------------------------------------

/** A small application service, as a user would write it: turns the fan on when a room gets too warm. */
const thermostat = Effect.gen(function*() {
  const client = yield* MqttClient.MqttClient
  yield* client.subscribe("home/+/temperature", { qos: 1 }).pipe(
    Stream.filter((message) => Number(text(message.payload)) > 25),
    Stream.runForEach((message) =>
      client.publish({ topic: message.topic.replace(/temperature$/, "fan"), payload: "on", qos: 1, retain: true })
    )
  )
})

const isTag = <T extends MqttClient.Status["_tag"]>(tag: T) => (status: MqttClient.Status) => status._tag === tag

describe("MqttTest", () => {
  it.effect("MqttTest.layer: a service that depends on MqttClient, tested without sockets", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.Broker
      yield* Effect.forkChild(thermostat)
      // The service subscribes in its own fiber: wait until the broker has its subscription.
      yield* broker.awaitSubscribed("home/+/temperature")
      yield* broker.publish({ topic: "home/kitchen/temperature", payload: "21", qos: 1 })
      yield* broker.publish({ topic: "home/kitchen/temperature", payload: "27", qos: 1 })
      const fan = yield* broker.awaitPublished((m) => m.topic === "home/kitchen/fan")
      assert.deepStrictEqual(
        { ...fan, payload: text(fan.payload) },
        { origin: "client", clientId: "thermostat", topic: "home/kitchen/fan", payload: "on", qos: 1, retain: true }
      )
      assert.strictEqual(text((yield* broker.retained).get("home/kitchen/fan")!.payload), "on")
      assert.deepStrictEqual(
        (yield* broker.published).map((m) => `${m.origin} ${m.topic}`),
        ["broker home/kitchen/temperature", "broker home/kitchen/temperature", "client home/kitchen/fan"]
      )
    }).pipe(Effect.provide(MqttTest.layer({ clientId: "thermostat" }))))

  it.effect("the inspection API: published log, retained map, subscriptions, sessions, connected clients", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      const a = yield* MqttTest.makeClient(broker, { clientId: "a", username: "alice", password: "secret" })
      yield* MqttTest.makeClient(broker, {
        clientId: "b",
        cleanSession: false,
        will: { topic: "status/b", payload: "offline", qos: 1, retain: true }
      })
      yield* a.subscription({ "x/+": 1, "y/#": 2 })
      yield* a.publish({ topic: "x/1", payload: "one", qos: 2, retain: true })
      yield* broker.crash("b")

      assert.deepStrictEqual(
        (yield* broker.published).map((m) => ({ ...m, payload: text(m.payload) })),
        [
          { origin: "client", clientId: "a", topic: "x/1", payload: "one", qos: 2, retain: true },
          { origin: "will", clientId: "b", topic: "status/b", payload: "offline", qos: 1, retain: true }
        ]
      )
      const retained = yield* broker.retained
      assert.deepStrictEqual([...retained.keys()], ["x/1", "status/b"])
      assert.strictEqual(retained.get("x/1")!.qos, 2)
      assert.deepStrictEqual(yield* broker.subscriptions, [
        { clientId: "a", topicFilter: "x/+", qos: 1 },
        { clientId: "a", topicFilter: "y/#", qos: 2 }
      ])
      assert.deepStrictEqual(yield* broker.clients, [
        { clientId: "a", cleanSession: true, username: "alice", will: undefined }
      ])
      const sessions = yield* broker.sessions
      assert.deepStrictEqual(sessions.map((s) => [s.clientId, s.cleanSession, s.connected]), [
        ["a", true, true],
        ["b", false, false]
      ])
    }))

  it.effect("crash: the client reconnects by its schedule (TestClock), subscribes again, sends what was queued", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      const service = yield* MqttTest.makeClient(broker, { clientId: "svc" })
      const probe = yield* MqttTest.makeClient(broker, { clientId: "probe" })
      const events = yield* record(service.events)
      const received = yield* record((yield* service.subscription("cmd/#", { qos: 1 })).messages)
      const sent = yield* record((yield* probe.subscription("out/#", { qos: 1 })).messages)

      assert.isTrue(yield* broker.crash("svc"))
      const status = yield* SubscriptionRef.get(service.status)
      assert.strictEqual(status._tag, "Reconnecting")
      assert.strictEqual(status._tag === "Reconnecting" && status.error.reason._tag, "TransportError")
      assert.isFalse(yield* service.isConnected)
      assert.deepStrictEqual((yield* broker.clients).map((c) => c.clientId), ["probe"])
      // A clean session ends with its connection: the broker forgot the subscription.
      assert.deepStrictEqual((yield* broker.subscriptions).map((s) => s.clientId), ["probe"])

      // Offline: QoS 1 is queued until the reconnect, QoS 0 fails.
      const queued = yield* Effect.forkChild(service.publish({ topic: "out/1", payload: "queued", qos: 1 }))
      yield* Effect.yieldNow
      assert.strictEqual(yield* service.pendingCount, 1)
      const qos0 = yield* failureOf(service.publish({ topic: "out/0", payload: "lost", qos: 0 }))
      assert.strictEqual(qos0.reason._tag, "Disconnected")
      assert.strictEqual(qos0.code, -3)

      // The default schedule waits 1 second before the first attempt.
      yield* TestClock.adjust("999 millis")
      assert.isFalse(yield* service.isConnected)
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* SubscriptionRef.get(service.status), { _tag: "Connected", sessionPresent: false })
      assert.isNumber(yield* Fiber.join(queued))
      assert.strictEqual(yield* service.pendingCount, 0)
      assert.deepStrictEqual(payloads(yield* sent.waitForCount(1)), ["queued"])
      assert.deepStrictEqual(yield* broker.subscriptions, [
        { clientId: "probe", topicFilter: "out/#", qos: 1 },
        { clientId: "svc", topicFilter: "cmd/#", qos: 1 }
      ])
      yield* probe.publish({ topic: "cmd/x", payload: "after", qos: 1 })
      assert.deepStrictEqual(payloads(yield* received.waitForCount(1)), ["after"])
      assert.deepStrictEqual(
        events.items.map((e) => e._tag),
        ["Disconnected", "Reconnecting", "Connected", "Published"]
      )
    }))

  it.effect("crash with a persistent session: QoS 1 and 2 messages wait at the broker, delivered on resume", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      const service = yield* MqttTest.makeClient(broker, {
        clientId: "svc",
        cleanSession: false,
        reconnect: Schedule.spaced("5 seconds")
      })
      const probe = yield* MqttTest.makeClient(broker, { clientId: "probe" })
      const received = yield* record((yield* service.subscription("cmd/#", { qos: 1 })).messages)
      yield* broker.crash("svc")
      yield* probe.publish({ topic: "cmd/a", payload: "q1", qos: 1 })
      yield* probe.publish({ topic: "cmd/b", payload: "q0", qos: 0 })
      yield* probe.publish({ topic: "cmd/c", payload: "q2", qos: 2 })
      const [session] = (yield* broker.sessions).filter((s) => s.clientId === "svc")
      assert.isFalse(session!.connected)
      assert.deepStrictEqual(session!.subscriptions, [{ topicFilter: "cmd/#", qos: 1 }])
      // Queued at the granted QoS; QoS 0 is not queued.
      assert.deepStrictEqual(session!.queued.map((m) => [text(m.payload), m.qos]), [["q1", 1], ["q2", 1]])

      yield* TestClock.adjust("5 seconds")
      assert.deepStrictEqual(yield* SubscriptionRef.get(service.status), { _tag: "Connected", sessionPresent: true })
      assert.deepStrictEqual(payloads(yield* received.waitForCount(2)), ["q1", "q2"])
      assert.deepStrictEqual((yield* broker.sessions).find((s) => s.clientId === "svc")!.queued, [])
    }))

  it.effect("crash without reconnect: Offline, streams fail with the error, later operations fail", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      const client = yield* MqttTest.makeClient(broker, { clientId: "c", reconnect: false })
      const events = yield* record(client.events)
      const stream = yield* record(client.subscribe("a", { qos: 1 }))
      yield* broker.awaitSubscribed("a", "c")
      yield* broker.crash("c")
      const end = exitFailure(yield* stream.waitForEnd())
      assert.strictEqual(end.reason._tag, "TransportError")
      const status = yield* SubscriptionRef.get(client.status)
      assert.strictEqual(status._tag, "Disconnected")
      assert.deepStrictEqual(events.items.map((e) => e._tag), ["Disconnected", "Offline"])
      const error = yield* failureOf(client.publish({ topic: "a", payload: "x", qos: 1 }))
      assert.strictEqual(error.reason._tag, "Disconnected")
    }))

  it.effect("disconnect: graceful discards the will, force publishes it; afterwards streams end, calls fail", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      const will = { topic: "status", payload: "gone", qos: 1 } as const
      const graceful = yield* MqttTest.makeClient(broker, { clientId: "graceful", will })
      const stream = yield* record(graceful.subscribe("a"))
      yield* broker.awaitSubscribed("a", "graceful")
      yield* graceful.disconnect()
      assert.isTrue(Exit.isSuccess(yield* stream.waitForEnd()))
      assert.deepStrictEqual(yield* SubscriptionRef.get(graceful.status), { _tag: "Closed" })
      const error = yield* failureOf(graceful.publish({ topic: "a", payload: "x" }))
      assert.strictEqual(error.reason._tag, "Disconnected")
      assert.strictEqual(error.pahoName, "DISCONNECTED")
      assert.deepStrictEqual(yield* broker.published, [])
      assert.deepStrictEqual(yield* broker.clients, [])

      const forced = yield* MqttTest.makeClient(broker, { clientId: "forced", will })
      yield* forced.disconnect({ force: true })
      assert.deepStrictEqual((yield* broker.published).map((m) => [m.origin, m.clientId, m.topic]), [
        ["will", "forced", "status"]
      ])
    }))

  it.effect("disconnect while reconnecting fails the queued publishes with OperationIncomplete", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      const client = yield* MqttTest.makeClient(broker, { clientId: "c" })
      yield* broker.crash("c")
      const queued = yield* Effect.forkChild(Effect.exit(client.publish({ topic: "a", payload: "x", qos: 2 })))
      yield* Effect.yieldNow
      yield* client.disconnect()
      const error = exitFailure(yield* Fiber.join(queued))
      assert.strictEqual(error.reason._tag, "OperationIncomplete")
      assert.strictEqual(error.code, -11)
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(yield* broker.clients, [], "no reconnect after close")
    }))

  it.effect("authenticate: a refusal fails the layer with ConnectionRefused and its return code, at once", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.provide(
          Effect.gen(function*() {
            return yield* MqttClient.MqttClient
          }),
          MqttTest.layer({
            username: "mallory",
            password: "guess",
            broker: { authenticate: (request) => (request.username === "alice" ? 0 : 4) }
          })
        )
      )
      const error = exitFailure(exit)
      assert.strictEqual(error.reason._tag, "ConnectionRefused")
      assert.strictEqual((error.reason as MqttError.ConnectionRefused).returnCode, 4)
      assert.strictEqual((error.reason as MqttError.ConnectionRefused).returnCodeName, "BadUsernameOrPassword")
      assert.isFalse(error.isRetryable)
    }))

  it.effect("authenticate: server unavailable (3) is retried by the schedule", () =>
    Effect.gen(function*() {
      let available = false
      const broker = yield* MqttTest.makeBroker({ authenticate: () => (available ? true : 3) })
      const connecting = yield* Effect.forkChild(
        MqttTest.makeClient(broker, { clientId: "c", reconnect: Schedule.spaced("2 seconds") })
      )
      yield* TestClock.adjust("2 seconds")
      assert.deepStrictEqual(yield* broker.clients, [])
      available = true
      yield* TestClock.adjust("2 seconds")
      const client = yield* Fiber.join(connecting)
      assert.isTrue(yield* client.isConnected)
      assert.deepStrictEqual((yield* broker.clients).map((c) => c.clientId), ["c"])
    }))

  it.effect("authorizeSubscribe may grant a lower QoS, and maximumQos caps every grant", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker({
        maximumQos: 1,
        authorizeSubscribe: (_clientId, { topicFilter }) => (topicFilter.startsWith("cheap/") ? 0 : true)
      })
      const client = yield* MqttTest.makeClient(broker)
      const { granted, messages } = yield* client.subscription({ "cheap/a": 2, "dear/a": 2 })
      assert.deepStrictEqual(granted, [{ topicFilter: "cheap/a", qos: 0 }, { topicFilter: "dear/a", qos: 1 }])
      yield* client.publish({ topic: "dear/a", payload: "x", qos: 2 })
      const [message] = yield* collect(messages, 1)
      assert.strictEqual(message!.qos, 1)
    }))

  it.effect("a second connection with the same client id takes the session over; the first one's will fires", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      const first = yield* MqttTest.makeClient(broker, {
        clientId: "same",
        reconnect: false,
        will: { topic: "status", payload: "first gone" }
      })
      const second = yield* MqttTest.makeClient(broker, { clientId: "same" })
      assert.isTrue(yield* second.isConnected)
      assert.isFalse(yield* first.isConnected)
      assert.strictEqual((yield* SubscriptionRef.get(first.status))._tag, "Disconnected")
      assert.deepStrictEqual((yield* broker.published).map((m) => text(m.payload)), ["first gone"])
      assert.strictEqual((yield* broker.clients).length, 1)
    }))

  it.effect("buffers: dropping keeps the oldest, sliding the newest, suspend all; publishers never wait", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      const client = yield* MqttTest.makeClient(broker)
      const dropping = yield* client.subscription("a", { qos: 1, bufferSize: 2, strategy: "dropping" })
      const sliding = yield* client.subscription("a", { qos: 1, bufferSize: 2, strategy: "sliding" })
      const suspend = yield* client.subscription("a", { qos: 1, bufferSize: 2 })
      // Five publishes complete although nobody reads: the suspended messages wait at the client.
      for (let i = 1; i <= 5; i++) yield* client.publish({ topic: "a", payload: String(i), qos: 1 })
      assert.deepStrictEqual(payloads(yield* collect(suspend.messages, 5)), ["1", "2", "3", "4", "5"])
      assert.deepStrictEqual(payloads(yield* collect(dropping.messages, 2)), ["1", "2"])
      assert.deepStrictEqual(payloads(yield* collect(sliding.messages, 2)), ["4", "5"])
    }))

  it.effect("client ids: generated deterministically, an empty one assigned by the broker; invalid options fail", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      yield* MqttTest.makeClient(broker)
      yield* MqttTest.makeClient(broker)
      yield* MqttTest.makeClient(broker, { clientId: "" })
      assert.deepStrictEqual((yield* broker.clients).map((c) => c.clientId), [
        "effect-mqtt-000000000001",
        "effect-mqtt-000000000002",
        "mqtt-test-assigned-1"
      ])
      const persistentEmpty = yield* failureOf(MqttTest.makeClient(broker, { clientId: "", cleanSession: false }))
      assert.strictEqual(persistentEmpty.reason._tag, "BadMqttOption")
      const badWill = yield* failureOf(MqttTest.makeClient(broker, { will: { topic: "" } }))
      assert.strictEqual(badWill.reason._tag, "ZeroLenWillTopic")
      assert.strictEqual(badWill.code, -17)
    }))

  it.effect("Broker.publish: a retained $SYS message reaches $SYS/# but never # or +/+", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      yield* broker.publish({ topic: "$SYS/broker/version", payload: "mqtt-test", retain: true })
      const client = yield* MqttTest.makeClient(broker)
      const everything = yield* record((yield* client.subscription(["#", "+/+"])).messages)
      const sys = yield* client.subscription("$SYS/#")
      const [version] = yield* collect(sys.messages, 1)
      assert.strictEqual(text(version!.payload), "mqtt-test")
      assert.isTrue(version!.retain)
      yield* client.publish({ topic: "plain/x", payload: "x" })
      yield* everything.waitFor("the plain message", (ms) => ms.length >= 1)
      assert.deepStrictEqual(topics(everything.items), ["plain/x"])
      const invalid = yield* failureOf(broker.publish({ topic: "a/#", payload: "x" }))
      assert.strictEqual(invalid.reason._tag, "InvalidTopic")
    }))

  it.effect("a persistent session's subscriptions outlive the streams; maxQueuedMessages bounds its queue", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker({ maxQueuedMessages: 2 })
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* MqttTest.makeClient(broker, { clientId: "p", cleanSession: false })
        // With a persistent session, the end of the subscription's scope sends no UNSUBSCRIBE (`unsubscribeOnEnd`).
        yield* client.subscription("a", { qos: 1 })
      }))
      assert.deepStrictEqual(yield* broker.subscriptions, [{ clientId: "p", topicFilter: "a", qos: 1 }])
      for (let i = 1; i <= 3; i++) yield* broker.publish({ topic: "a", payload: String(i), qos: 1 })
      const [session] = yield* broker.sessions
      assert.deepStrictEqual(session!.queued.map((m) => text(m.payload)), ["1", "2"])
    }))

  it.effect("status and events follow the real client's lifecycle", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.makeBroker()
      const client = yield* MqttTest.makeClient(broker, { clientId: "c" })
      assert.deepStrictEqual(yield* SubscriptionRef.get(client.status), { _tag: "Connected", sessionPresent: false })
      const events = yield* record(client.events)
      const statuses = yield* record(SubscriptionRef.changes(client.status))
      yield* client.publish({ topic: "t", payload: "0" })
      yield* client.publish({ topic: "t", payload: "1", qos: 1 })
      yield* broker.crash("c")
      yield* TestClock.adjust("1 second")
      yield* client.disconnect()
      yield* events.waitFor("Closed", (es) => es.some((e) => e._tag === "Closed"))
      assert.deepStrictEqual(events.items, [
        { _tag: "Published", topic: "t", qos: 0, packetId: undefined },
        { _tag: "Published", topic: "t", qos: 1, packetId: 1 },
        { _tag: "Disconnected", error: (events.items[2] as { error: MqttError.MqttError }).error },
        { _tag: "Reconnecting", attempt: 1 },
        { _tag: "Connected", sessionPresent: false },
        { _tag: "Closed" }
      ])
      yield* statuses.waitFor("Closed", (ss) => ss.some(isTag("Closed")))
      assert.deepStrictEqual(statuses.items.map((s) => s._tag), ["Connected", "Reconnecting", "Connected", "Closed"])
    }))

  it.effect("makeClient: several clients on one broker through layerBroker", () =>
    Effect.gen(function*() {
      const broker = yield* MqttTest.Broker
      const service = yield* MqttClient.MqttClient
      const probe = yield* MqttTest.makeClient(broker, { clientId: "probe" })
      const seen = yield* record((yield* probe.subscription("svc/#", { qos: 2 })).messages)
      yield* service.publish({ topic: "svc/hello", payload: "hi", qos: 2 })
      assert.deepStrictEqual(payloads(yield* seen.waitForCount(1)), ["hi"])
      assert.deepStrictEqual((yield* broker.clients).map((c) => c.clientId).sort(), ["probe", "svc"])
    }).pipe(
      Effect.provide(MqttTest.layerClient({ clientId: "svc" }).pipe(Layer.provideMerge(MqttTest.layerBroker())))
    ))
})
