/**
 * Deterministic unit tests of the whole client (`MqttClient.layerSocket`) against the scripted in-memory
 * `FakeBroker`, on the `TestClock`: connecting on build and reconnecting by `Schedule`, resending on resume, offline
 * buffering, the in-flight window, incoming QoS flows and backpressure, keepalive, disconnect and subscriptions.
 *
 * Time only moves when a test says so (`TestClock.adjust`); "nothing happened" is asserted after `settle`, which lets
 * every runnable fiber run.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { TestClock } from "effect/testing"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import type * as Packet from "../../src/Codec/Packet.ts"
import type * as MqttError from "../../src/Errors/MqttError.ts"
import * as FakeBroker from "../utils/FakeBroker.ts"
import * as X from "../utils/FakeBrokerExtras.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

type Client = MqttClient.MqttClient["Service"]

/** Keepalive off (so no PINGREQ clutters the packets unless a test asks), reconnect every second. */
const baseOptions: MqttClient.Options = {
  url: "mqtt://fake.broker",
  clientId: "unit-client",
  keepalive: 0,
  reconnect: Schedule.spaced("1 second")
}

const clientLayer = (broker: FakeBroker.FakeBroker, options: Partial<MqttClient.Options>) =>
  MqttClient.layerSocket({ ...baseOptions, ...options }).pipe(
    Layer.provide(Layer.succeed(Socket.Socket)(broker.socket))
  )

/** Builds the client layer in the current scope: connects on build. */
const build = (broker: FakeBroker.FakeBroker, options: Partial<MqttClient.Options> = {}) =>
  Effect.map(Layer.build(clientLayer(broker, options)), (context) => Context.get(context, MqttClient.MqttClient))

/**
 * A connected client over a fresh fake broker, its first connection (CONNECT already taken) and a recording of its
 * events from then on. The test's scope closes the client with `force` (a graceful close would wait on the TestClock
 * for acknowledgements a test left pending); the graceful close of the layer's scope has its own test.
 */
const setup = (script: FakeBroker.Script = {}, options: Partial<MqttClient.Options> = {}) =>
  Effect.gen(function*() {
    const broker = yield* FakeBroker.make(script)
    const client = yield* build(broker, options)
    yield* Effect.addFinalizer(() => client.disconnect({ force: true }))
    const conn = yield* broker.connection(1)
    yield* conn.expectPacket("Connect")
    const events = yield* X.record(client.events)
    return { broker, client, conn, events }
  })

const statusOf = (client: Client) => SubscriptionRef.get(client.status)

/** A connected client whose connection then drops, during its first reconnect attempt (the broker never answers it). */
const inReconnectAttempt = Effect.gen(function*() {
  const { broker, client, conn } = yield* setup({ connack: (c) => (c.id === 1 ? {} : "silent") })
  yield* conn.close
  yield* TestClock.adjust(1000)
  yield* broker.connection(2)
  yield* X.settle
  return client
})

const eventTags = (events: X.Recording<MqttClient.Event, never>): Array<MqttClient.Event["_tag"]> =>
  events.items.map((event) => event._tag)

/** The events of one tag, in order. */
const eventsOf = <T extends MqttClient.Event["_tag"]>(
  events: X.Recording<MqttClient.Event, never>,
  tag: T
): Array<Extract<MqttClient.Event, { _tag: T }>> =>
  events.items.filter((event): event is Extract<MqttClient.Event, { _tag: T }> => event._tag === tag)

const assertReason = <T extends MqttError.ReasonTag>(error: MqttError.MqttError, tag: T) => {
  assert.strictEqual(error.reason._tag, tag, `expected ${tag}, got ${error.reason._tag}: ${error.message}`)
  return error.reason as Extract<MqttError.MqttErrorReason, { _tag: T }>
}

/** Waits until the client saw its connection drop (the `Disconnected` event): it is offline from then on. */
const awaitDrop = (events: X.Recording<MqttClient.Event, never>, count = 1) =>
  X.eventually(() => eventsOf(events, "Disconnected").length >= count, `${count} Disconnected event(s)`)

const awaitStatus = (client: Client, tag: MqttClient.Status["_tag"]) =>
  Effect.gen(function*() {
    let last: MqttClient.Status | undefined
    yield* X.eventually(
      () => {
        last = SubscriptionRef.getUnsafe(client.status)
        return last._tag === tag
      },
      () => `status ${tag} (is ${last?._tag})`
    )
  })

const publishFrom = (conn: FakeBroker.Conn) =>
  conn.received.filter((p): p is Packet.Publish => p._tag === "Publish").map((p) => ({
    topic: p.topic,
    payload: X.text(p.payload),
    qos: p.qos,
    dup: p.dup,
    packetId: p.packetId
  }))

const fork = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.forkChild(effect)

/** The error of an effect expected to fail at once (bounded by real time, so a wrong wait fails the test). */
const failsNow = <A>(effect: Effect.Effect<A, MqttError.MqttError>) =>
  X.bounded(Effect.flip(effect), () => "an operation expected to fail at once")

const qos1 = (client: Client, topic: string, payload: string = topic) => client.publish({ topic, payload, qos: 1 })
const qos2 = (client: Client, topic: string, payload: string = topic) => client.publish({ topic, payload, qos: 2 })

// ---------------------------------------------------------------------------------------------------------------------
// Connect on build
// ---------------------------------------------------------------------------------------------------------------------

describe("MqttClient: connect on build", () => {
  it.effect("the layer build waits for CONNACK, then the client is Connected", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ connack: "silent" })
      const building = yield* fork(build(broker))
      const conn = yield* broker.connection(1)
      yield* conn.expectPacket("Connect")
      yield* X.settle
      assert.isFalse(X.isDone(building), "the build is still waiting for CONNACK")
      yield* conn.send({ _tag: "Connack", returnCode: 0, sessionPresent: false })
      const client = yield* X.success(building, "the build after CONNACK")
      yield* Effect.addFinalizer(() => client.disconnect({ force: true }))
      assert.deepStrictEqual(yield* statusOf(client), { _tag: "Connected", sessionPresent: false })
      assert.isTrue(yield* client.isConnected)
    }))

  it.effect("CONNACK return code 4 fails the build with ConnectionRefused after exactly one attempt", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ connack: { returnCode: 4 } })
      const error = yield* Effect.flip(build(broker))
      assert.strictEqual(assertReason(error, "ConnectionRefused").returnCode, 4)
      assert.isFalse(error.isRetryable)
      yield* TestClock.adjust("1 minute")
      yield* X.settle
      assert.strictEqual(broker.connections, 1, "a non-retryable refusal is never retried")
    }))

  it.effect("CONNACK return code 3 (server unavailable) is retried by the schedule until accepted", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ connack: (conn) => (conn.id < 3 ? { returnCode: 3 } : {}) })
      const building = yield* fork(build(broker))
      yield* broker.connection(1)
      yield* X.settle
      assert.strictEqual(broker.connections, 1)
      yield* TestClock.adjust(999)
      yield* X.settle
      assert.strictEqual(broker.connections, 1, "no second attempt before the schedule's delay")
      yield* TestClock.adjust(1)
      const second = yield* broker.connection(2)
      yield* second.expectPacket("Connect")
      yield* X.settle
      assert.isFalse(X.isDone(building), "refused again: still building")
      yield* TestClock.adjust(1000)
      const third = yield* broker.connection(3)
      yield* third.expectPacket("Connect")
      const client = yield* X.success(building, "the build on the third attempt")
      yield* Effect.addFinalizer(() => client.disconnect({ force: true }))
      assert.deepStrictEqual(yield* statusOf(client), { _tag: "Connected", sessionPresent: false })
      assert.strictEqual(broker.connections, 3)
    }))

  it.effect("no CONNACK within connectTimeout: the attempt is abandoned and retried after the delay", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ connack: (conn) => (conn.id === 1 ? "silent" : {}) })
      const building = yield* fork(build(broker, { connectTimeout: "5 seconds" }))
      const first = yield* broker.connection(1)
      yield* first.expectPacket("Connect")
      yield* TestClock.adjust(4_999)
      yield* X.settle
      assert.isTrue(first.isOpen)
      yield* TestClock.adjust(1)
      yield* first.awaitClosed
      assert.strictEqual(first.closedBy, "client")
      yield* TestClock.adjust(999)
      yield* X.settle
      assert.strictEqual(broker.connections, 1)
      yield* TestClock.adjust(1)
      yield* (yield* broker.connection(2)).expectPacket("Connect")
      const client = yield* X.success(building, "the build on the second attempt")
      yield* Effect.addFinalizer(() => client.disconnect({ force: true }))
      assert.isTrue(yield* client.isConnected)
    }))

  it.effect("reconnect: false fails the build after the first attempt, even for a retryable refusal", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ connack: { returnCode: 3 } })
      const error = yield* Effect.flip(build(broker, { reconnect: false }))
      assert.strictEqual(assertReason(error, "ConnectionRefused").returnCode, 3)
      yield* TestClock.adjust("1 minute")
      yield* X.settle
      assert.strictEqual(broker.connections, 1)
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// Reconnect by Schedule
// ---------------------------------------------------------------------------------------------------------------------

describe("MqttClient: reconnect by Schedule", () => {
  it.effect("the broker closes the connection: the next attempt comes exactly after the schedule's delay", () =>
    Effect.gen(function*() {
      const { broker, client, conn, events } = yield* setup()
      yield* conn.close
      yield* awaitDrop(events)
      const dropped = eventsOf(events, "Disconnected")[0]!
      assertReason(dropped.error, "TransportError")
      yield* TestClock.adjust(999)
      yield* X.settle
      assert.strictEqual(broker.connections, 1, "no attempt before the delay")
      yield* TestClock.adjust(1)
      const second = yield* broker.connection(2)
      yield* second.expectPacket("Connect")
      yield* awaitStatus(client, "Connected")
      assert.isTrue(yield* client.isConnected)
      assert.deepStrictEqual(eventTags(events), ["Disconnected", "Reconnecting", "Connected"])
      assert.deepStrictEqual(eventsOf(events, "Reconnecting"), [{ _tag: "Reconnecting", attempt: 1 }])
    }))

  it.effect("during an attempt the status is Reconnecting with the attempt number and the error", () =>
    Effect.gen(function*() {
      const client = yield* inReconnectAttempt
      const status = yield* statusOf(client)
      assert.strictEqual(status._tag, "Reconnecting")
      if (status._tag === "Reconnecting") {
        assert.strictEqual(status.attempt, 1)
        assertReason(status.error, "TransportError")
      }
      assert.isFalse(yield* client.isConnected)
    }))

  it.effect("status read for the first time mid-life starts from the current status, then follows every change", () =>
    Effect.gen(function*() {
      const client = yield* inReconnectAttempt
      // The first read of `status`: its SubscriptionRef is made now, from the status as it is.
      const statuses = yield* X.record(SubscriptionRef.changes(client.status))
      yield* X.settle
      assert.deepStrictEqual(statuses.items.map((status) => status._tag), ["Reconnecting"])
      assert.strictEqual(client.status, client.status)
      yield* client.disconnect({ force: true })
      yield* X.settle
      assert.deepStrictEqual(statuses.items.map((status) => status._tag), ["Reconnecting", "Closed"])
    }))

  // Regression: found by this test and fixed in src.
  it.effect("the status leaves Connected as soon as the connection drops, not after the first delay", () =>
    Effect.gen(function*() {
      const { client, conn, events } = yield* setup()
      yield* conn.close
      yield* awaitDrop(events)
      yield* X.settle
      assert.notStrictEqual((yield* statusOf(client))._tag, "Connected")
      assert.isFalse(yield* client.isConnected)
    }))

  it.effect("the schedule restarts after a successful connection: a second outage waits the FIRST delay again", () =>
    Effect.gen(function*() {
      // 1 s, 2 s, 4 s, ...; connection 2 is refused (server unavailable), 3 and 4 are accepted.
      const { broker, conn, events } = yield* setup(
        { connack: (c) => (c.id === 2 ? { returnCode: 3 } : {}) },
        { reconnect: Schedule.exponential("1 second") }
      )
      yield* conn.close
      yield* awaitDrop(events)
      yield* TestClock.adjust(1000)
      yield* (yield* broker.connection(2)).expectPacket("Connect")
      yield* TestClock.adjust(1999)
      yield* X.settle
      assert.strictEqual(broker.connections, 2, "the second delay is 2 s")
      yield* TestClock.adjust(1)
      const third = yield* broker.connection(3)
      yield* third.expectPacket("Connect")
      yield* X.eventually(() => eventsOf(events, "Connected").length === 1, "connected on attempt 2")
      assert.deepStrictEqual(eventsOf(events, "Reconnecting").map((e) => e.attempt), [1, 2])
      // Second outage.
      yield* third.close
      yield* awaitDrop(events, 2)
      yield* TestClock.adjust(999)
      yield* X.settle
      assert.strictEqual(broker.connections, 3)
      yield* TestClock.adjust(1)
      yield* (yield* broker.connection(4)).expectPacket("Connect")
      yield* X.eventually(() => eventsOf(events, "Connected").length === 2, "connected again")
      assert.deepStrictEqual(eventsOf(events, "Reconnecting").map((e) => e.attempt), [1, 2, 1])
    }))

  it.effect("a schedule that gives up: Disconnected, Offline, pending publishes and subscription streams fail", () =>
    Effect.gen(function*() {
      const { broker, client, conn, events } = yield* setup(
        { connack: (c) => (c.id === 1 ? {} : { returnCode: 3 }), ackSubscribe: true },
        { reconnect: Schedule.recurs(2) }
      )
      const sub = yield* client.subscription("a/#", { qos: 1 })
      const messages = yield* X.record(sub.messages)
      const pending = yield* fork(qos1(client, "t/1"))
      yield* conn.expectPacket("Subscribe")
      yield* conn.expectPacket("Publish")
      yield* conn.close
      // recurs(2): two more attempts (refused, retryable), then the schedule is done.
      yield* awaitStatus(client, "Disconnected")
      yield* X.settle
      assert.strictEqual(broker.connections, 3)
      const status = yield* statusOf(client)
      assert.strictEqual(status._tag, "Disconnected")
      if (status._tag === "Disconnected") {
        assert.strictEqual(assertReason(status.error, "ConnectionRefused").returnCode, 3)
      }
      assert.deepStrictEqual(eventTags(events), ["Disconnected", "Reconnecting", "Reconnecting", "Offline"])
      assertReason(eventsOf(events, "Offline")[0]!.error, "ConnectionRefused")
      assertReason(yield* X.failure(pending, "the pending publish"), "ConnectionRefused")
      const end = yield* messages.awaitEnd
      assert.isTrue(Exit.isFailure(end), "the subscription stream fails")
      if (Exit.isFailure(end)) {
        const failed = end.cause.reasons.find((reason) => reason._tag === "Fail")
        assert.isDefined(failed)
        if (failed?._tag === "Fail") assertReason(failed.error, "ConnectionRefused")
      }
      // Nothing tries again, and operations now fail.
      yield* TestClock.adjust("1 hour")
      yield* X.settle
      assert.strictEqual(broker.connections, 3)
      assertReason(yield* failsNow(qos1(client, "t/2")), "Disconnected")
      assert.isFalse(yield* client.isConnected)
    }))

  it.effect("a non-retryable error during reconnect stops it at once (CONNACK 5 on the second connection)", () =>
    Effect.gen(function*() {
      const { broker, client, conn, events } = yield* setup({ connack: (c) => (c.id === 1 ? {} : { returnCode: 5 }) })
      yield* conn.close
      yield* awaitDrop(events)
      yield* TestClock.adjust(1000)
      yield* (yield* broker.connection(2)).expectPacket("Connect")
      yield* awaitStatus(client, "Disconnected")
      const status = yield* statusOf(client)
      assert.strictEqual(status._tag, "Disconnected")
      if (status._tag === "Disconnected") {
        assert.strictEqual(assertReason(status.error, "ConnectionRefused").returnCode, 5)
      }
      assert.deepStrictEqual(eventTags(events), ["Disconnected", "Reconnecting", "Offline"])
      yield* TestClock.adjust("1 hour")
      yield* X.settle
      assert.strictEqual(broker.connections, 2)
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// Resend on resume
// ---------------------------------------------------------------------------------------------------------------------

describe("MqttClient: resend on resume", () => {
  it.effect(
    "session present: resent with DUP 1, same ids, in order; past PUBREC only PUBREL " +
      "[MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-4.6.0-1] [MQTT-4.3.3-1]",
    () =>
      Effect.gen(function*() {
        const { broker, client, conn, events } = yield* setup(
          { connack: (c) => ({ sessionPresent: c.id > 1 }) },
          { cleanSession: false }
        )
        const a = yield* fork(qos1(client, "t/a"))
        const b = yield* fork(qos2(client, "t/b"))
        const c = yield* fork(qos1(client, "t/c"))
        const d = yield* fork(qos2(client, "t/d"))
        yield* X.awaitPackets(conn, "Publish", 4)
        assert.deepStrictEqual(publishFrom(conn).map((p) => [p.topic, p.packetId, p.dup]), [
          ["t/a", 1, false],
          ["t/b", 2, false],
          ["t/c", 3, false],
          ["t/d", 4, false]
        ])
        // The broker received t/b (PUBREC): the client moves it to PUBREL.
        yield* conn.send({ _tag: "Pubrec", packetId: 2 })
        assert.deepStrictEqual(yield* X.awaitPackets(conn, "Pubrel", 1), [{ _tag: "Pubrel", packetId: 2 }])
        yield* conn.close
        yield* awaitDrop(events)
        yield* TestClock.adjust(1000)
        const second = yield* broker.connection(2)
        yield* second.expectPacket("Connect")
        yield* X.awaitPackets(second, "Publish", 3)
        yield* X.settle
        // Exactly the three PUBLISHes (original order, original ids, DUP 1) and the PUBREL of t/b. (The PUBREL's place
        // among them is free: PUBRELs keep the order of their PUBRECs [MQTT-4.6.0-4], PUBLISHes their own.)
        assert.strictEqual(second.received.length, 5)
        assert.deepStrictEqual(X.packetsOf(second, "Pubrel"), [{ _tag: "Pubrel", packetId: 2 }])
        assert.deepStrictEqual(publishFrom(second), [
          { topic: "t/a", payload: "t/a", qos: 1, dup: true, packetId: 1 },
          { topic: "t/c", payload: "t/c", qos: 1, dup: true, packetId: 3 },
          { topic: "t/d", payload: "t/d", qos: 2, dup: true, packetId: 4 }
        ])
        assert.isFalse(X.isDone(a) || X.isDone(b) || X.isDone(c) || X.isDone(d), "nothing acknowledged yet")
        // The acknowledgements on the new connection complete the original publish effects.
        yield* second.send(
          { _tag: "Puback", packetId: 1 },
          { _tag: "Pubcomp", packetId: 2 },
          { _tag: "Puback", packetId: 3 },
          { _tag: "Pubrec", packetId: 4 }
        )
        assert.deepStrictEqual(yield* X.awaitPackets(second, "Pubrel", 2), [
          { _tag: "Pubrel", packetId: 2 },
          { _tag: "Pubrel", packetId: 4 }
        ])
        yield* second.send({ _tag: "Pubcomp", packetId: 4 })
        assert.strictEqual(yield* X.success(a, "publish t/a"), 1)
        assert.strictEqual(yield* X.success(b, "publish t/b"), 2)
        assert.strictEqual(yield* X.success(c, "publish t/c"), 3)
        assert.strictEqual(yield* X.success(d, "publish t/d"), 4)
        assert.strictEqual(yield* client.pendingCount, 0)
        // [MQTT-4.3.3-1]: t/b was never sent again as a PUBLISH after its PUBREL.
        assert.deepStrictEqual(publishFrom(second).map((p) => p.topic), ["t/a", "t/c", "t/d"])
      })
  )

  it.effect("session present: PUBRELs are resent in the order their PUBRECs arrived [MQTT-4.6.0-4]", () =>
    Effect.gen(function*() {
      const { broker, client, conn, events } = yield* setup(
        { connack: (c) => ({ sessionPresent: c.id > 1 }) },
        { cleanSession: false }
      )
      yield* fork(qos2(client, "t/1"))
      yield* fork(qos2(client, "t/2"))
      yield* fork(qos2(client, "t/3"))
      yield* X.awaitPackets(conn, "Publish", 3)
      yield* conn.send({ _tag: "Pubrec", packetId: 3 }, { _tag: "Pubrec", packetId: 1 })
      assert.deepStrictEqual((yield* X.awaitPackets(conn, "Pubrel", 2)).map((p) => p.packetId), [3, 1])
      yield* conn.close
      yield* awaitDrop(events)
      yield* TestClock.adjust(1000)
      const second = yield* broker.connection(2)
      yield* second.expectPacket("Connect")
      yield* X.awaitPackets(second, "Pubrel", 2)
      yield* X.settle
      assert.deepStrictEqual(X.packetsOf(second, "Pubrel").map((p) => p.packetId), [3, 1])
      assert.deepStrictEqual(publishFrom(second).map((p) => [p.packetId, p.dup]), [[2, true]])
    }))

  it.effect("no session present: one SUBSCRIBE with every live filter, unacked publishes resent with DUP 0", () =>
    Effect.gen(function*() {
      const { broker, client, conn, events } = yield* setup({ ackSubscribe: true })
      const first = yield* client.subscription("a/#", { qos: 1 })
      const second = yield* client.subscription(["b", "c/+"], { qos: 2 })
      const received = yield* X.record(first.messages)
      yield* X.record(second.messages)
      assert.strictEqual(X.packetsOf(conn, "Subscribe").length, 2)
      const p1 = yield* fork(qos1(client, "t/1")) // id 3
      const p2 = yield* fork(qos2(client, "t/2")) // id 4, no PUBREC
      const p3 = yield* fork(qos2(client, "t/3")) // id 5, PUBREC received
      yield* X.awaitPackets(conn, "Publish", 3)
      yield* conn.send({ _tag: "Pubrec", packetId: 5 })
      yield* X.awaitPackets(conn, "Pubrel", 1)
      yield* conn.close
      yield* awaitDrop(events)
      yield* TestClock.adjust(1000)
      const conn2 = yield* broker.connection(2)
      yield* conn2.expectPacket("Connect")
      const subscribe = yield* X.awaitPackets(conn2, "Subscribe", 1)
      yield* X.settle
      assert.deepStrictEqual(conn2.tags(), ["Connect", "Publish", "Publish", "Subscribe"])
      assert.deepStrictEqual(publishFrom(conn2), [
        { topic: "t/1", payload: "t/1", qos: 1, dup: false, packetId: 3 },
        { topic: "t/2", payload: "t/2", qos: 2, dup: false, packetId: 4 }
      ])
      assert.deepStrictEqual(subscribe[0]!.subscriptions, [
        { topicFilter: "a/#", qos: 1 },
        { topicFilter: "b", qos: 2 },
        { topicFilter: "c/+", qos: 2 }
      ])
      // The QoS 2 message past PUBREC belongs to the broker: it completes rather than being sent twice.
      assert.strictEqual(yield* X.success(p3, "the QoS 2 publish past PUBREC"), 5)
      yield* conn2.send({ _tag: "Puback", packetId: 3 })
      assert.strictEqual(yield* X.success(p1, "the resent QoS 1 publish"), 3)
      assert.isFalse(X.isDone(p2))
      // The resubscribed streams keep receiving.
      yield* conn2.send(X.publish("a/x", "after"))
      yield* X.eventually(() => received.items.length === 1, "the message on the resubscribed stream")
      assert.strictEqual(X.text(received.items[0]!.payload), "after")
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// Offline buffering
// ---------------------------------------------------------------------------------------------------------------------

describe("MqttClient: offline buffering", () => {
  it.effect("publishes made while disconnected wait for the reconnect, then go out in order after the resends", () =>
    Effect.gen(function*() {
      const { broker, client, conn, events } = yield* setup(
        { connack: (c) => ({ sessionPresent: c.id > 1 }) },
        { cleanSession: false }
      )
      const inflight = yield* fork(qos1(client, "in/1"))
      yield* conn.expectPacket("Publish")
      yield* conn.close
      yield* awaitDrop(events)
      const o1 = yield* fork(qos1(client, "off/1"))
      const o2 = yield* fork(qos2(client, "off/2"))
      const o3 = yield* fork(qos1(client, "off/3"))
      yield* X.settle
      assert.isFalse(X.isDone(o1) || X.isDone(o2) || X.isDone(o3), "queued, not failed")
      assert.strictEqual(yield* client.pendingCount, 4)
      assert.deepStrictEqual(conn.tags(), ["Connect", "Publish"])
      yield* TestClock.adjust(1000)
      const second = yield* broker.connection(2)
      yield* second.expectPacket("Connect")
      yield* X.awaitPackets(second, "Publish", 4)
      yield* X.settle
      assert.deepStrictEqual(publishFrom(second).map((p) => [p.topic, p.packetId, p.dup]), [
        ["in/1", 1, true],
        ["off/1", 2, false],
        ["off/2", 3, false],
        ["off/3", 4, false]
      ])
      assert.strictEqual(second.received.length, 5)
      yield* second.send(
        { _tag: "Puback", packetId: 1 },
        { _tag: "Puback", packetId: 2 },
        { _tag: "Pubrec", packetId: 3 },
        { _tag: "Puback", packetId: 4 }
      )
      yield* X.awaitPackets(second, "Pubrel", 1)
      yield* second.send({ _tag: "Pubcomp", packetId: 3 })
      assert.deepStrictEqual(
        [
          yield* X.success(inflight, "in/1"),
          yield* X.success(o1, "off/1"),
          yield* X.success(o2, "off/2"),
          yield* X.success(o3, "off/3")
        ],
        [1, 2, 3, 4]
      )
    }))

  it.effect("maxBufferedMessages: 2: the third publish made offline fails with MaxBufferedMessages (-12)", () =>
    Effect.gen(function*() {
      const { broker, client, conn, events } = yield* setup({}, { maxBufferedMessages: 2 })
      yield* conn.close
      yield* awaitDrop(events)
      const o1 = yield* fork(qos1(client, "off/1"))
      const o2 = yield* fork(qos2(client, "off/2"))
      yield* X.settle
      const error = yield* failsNow(qos1(client, "off/3"))
      assertReason(error, "MaxBufferedMessages")
      assert.strictEqual(error.code, -12)
      assert.isTrue(error.isRetryable)
      yield* X.settle
      assert.isFalse(X.isDone(o1) || X.isDone(o2))
      yield* TestClock.adjust(1000)
      const second = yield* broker.connection(2)
      yield* X.awaitPackets(second, "Publish", 2)
      yield* X.settle
      assert.deepStrictEqual(publishFrom(second).map((p) => p.topic), ["off/1", "off/2"])
    }))

  it.effect("QoS 0 offline fails with Disconnected (-3) without bufferQos0", () =>
    Effect.gen(function*() {
      const { client, conn, events } = yield* setup()
      yield* conn.close
      yield* awaitDrop(events)
      const error = yield* failsNow(client.publish({ topic: "q0", payload: "x" }))
      assertReason(error, "Disconnected")
      assert.strictEqual(error.code, -3)
      assert.strictEqual(yield* client.pendingCount, 0)
    }))

  it.effect("bufferQos0: a QoS 0 publish made offline completes at once and is written after the reconnect", () =>
    Effect.gen(function*() {
      const { broker, client, conn, events } = yield* setup({}, { bufferQos0: true })
      yield* conn.close
      yield* awaitDrop(events)
      assert.isUndefined(yield* client.publish({ topic: "q0", payload: "x" }))
      assert.strictEqual(yield* client.pendingCount, 1)
      yield* TestClock.adjust(1000)
      const second = yield* broker.connection(2)
      yield* X.awaitPackets(second, "Publish", 1)
      assert.deepStrictEqual(publishFrom(second), [
        { topic: "q0", payload: "x", qos: 0, dup: false, packetId: undefined }
      ])
    }))

  // Regression: found by this test and fixed in src.
  it.effect("with bufferQos0, publishes of mixed QoS made offline go out in the order they were made", () =>
    Effect.gen(function*() {
      const { broker, client, conn, events } = yield* setup({}, { bufferQos0: true })
      yield* conn.close
      yield* awaitDrop(events)
      yield* fork(qos1(client, "off/1"))
      yield* X.settle
      yield* client.publish({ topic: "off/2", payload: "off/2" })
      yield* fork(qos1(client, "off/3"))
      yield* X.settle
      yield* TestClock.adjust(1000)
      const second = yield* broker.connection(2)
      yield* X.awaitPackets(second, "Publish", 3)
      assert.deepStrictEqual(publishFrom(second).map((p) => p.topic), ["off/1", "off/2", "off/3"])
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// In-flight window
// ---------------------------------------------------------------------------------------------------------------------

describe("MqttClient: in-flight window", () => {
  it.effect("maxInflight: 2: the third QoS 1 publish waits until a PUBACK frees a slot, then is sent", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({}, { maxInflight: 2 })
      const p1 = yield* fork(qos1(client, "w/1"))
      const p2 = yield* fork(qos1(client, "w/2"))
      const p3 = yield* fork(qos1(client, "w/3"))
      yield* X.awaitPackets(conn, "Publish", 2)
      yield* X.settle
      assert.deepStrictEqual(publishFrom(conn).map((p) => p.topic), ["w/1", "w/2"])
      assert.isFalse(X.isDone(p3), "the third publish waits for a slot")
      yield* conn.send({ _tag: "Puback", packetId: 1 })
      assert.strictEqual(yield* X.success(p1, "w/1"), 1)
      const sent = yield* X.awaitPackets(conn, "Publish", 3)
      assert.strictEqual(sent[2]!.topic, "w/3")
      yield* X.settle
      assert.isFalse(X.isDone(p3), "sent, not yet acknowledged")
      yield* conn.send({ _tag: "Puback", packetId: 2 }, { _tag: "Puback", packetId: sent[2]!.packetId! })
      assert.strictEqual(yield* X.success(p2, "w/2"), 2)
      assert.strictEqual(yield* X.success(p3, "w/3"), sent[2]!.packetId)
    }))

  it.effect("onInflightFull \"fail\": the third publish fails with MaxMessagesInflight (-4)", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({}, { maxInflight: 2, onInflightFull: "fail" })
      yield* fork(qos1(client, "w/1"))
      yield* fork(qos2(client, "w/2"))
      yield* X.awaitPackets(conn, "Publish", 2)
      const error = yield* failsNow(qos1(client, "w/3"))
      assertReason(error, "MaxMessagesInflight")
      assert.strictEqual(error.code, -4)
      yield* X.settle
      assert.strictEqual(X.packetsOf(conn, "Publish").length, 2)
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// Incoming messages
// ---------------------------------------------------------------------------------------------------------------------

/** A client subscribed to `a/#` at QoS 2, with its stream recorded. */
const subscribed = (script: FakeBroker.Script = {}, options: Partial<MqttClient.Options> = {}) =>
  Effect.gen(function*() {
    const env = yield* setup({ ackSubscribe: true, ...script }, options)
    const sub = yield* env.client.subscription("a/#", { qos: 2 })
    yield* env.conn.expectPacket("Subscribe")
    const received = yield* X.record(sub.messages)
    return { ...env, sub, received }
  })

const acksOf = (conn: FakeBroker.Conn) =>
  conn.received.flatMap((p) =>
    p._tag === "Puback" || p._tag === "Pubrec" || p._tag === "Pubcomp" ? [`${p._tag} ${p.packetId}`] : []
  )

describe("MqttClient: incoming messages", () => {
  it.effect("QoS 1: delivered to the stream and acknowledged with PUBACK of the same id [MQTT-4.3.2-2]", () =>
    Effect.gen(function*() {
      const { conn, received } = yield* subscribed()
      yield* conn.send(X.publish("a/1", "m1", 1, 10))
      yield* X.awaitPackets(conn, "Puback", 1)
      yield* X.eventually(() => received.items.length === 1, "the message on the stream")
      assert.deepStrictEqual(
        received.items.map((m) => [m.topic, X.text(m.payload), m.qos, m.packetId]),
        [["a/1", "m1", 1, 10]]
      )
      // After PUBACK, a PUBLISH with the same id is a new message, whatever DUP says.
      yield* conn.send(X.publish("a/1", "m2", 1, 10, { dup: true }))
      yield* X.awaitPackets(conn, "Puback", 2)
      yield* X.eventually(() => received.items.length === 2, "the second message")
      assert.deepStrictEqual(acksOf(conn), ["Puback 10", "Puback 10"])
    }))

  it.effect("QoS 2: PUBREC, delivered once even if resent with DUP 1 before PUBREL, then PUBCOMP [MQTT-4.3.3-2]", () =>
    Effect.gen(function*() {
      const { conn, received } = yield* subscribed()
      yield* conn.send(X.publish("a/2", "once", 2, 7))
      yield* X.awaitPackets(conn, "Pubrec", 1)
      yield* conn.send(X.publish("a/2", "once", 2, 7, { dup: true }))
      yield* X.awaitPackets(conn, "Pubrec", 2)
      yield* X.settle
      assert.strictEqual(received.items.length, 1, "delivered once")
      assert.deepStrictEqual(acksOf(conn), ["Pubrec 7", "Pubrec 7"])
      yield* conn.send({ _tag: "Pubrel", packetId: 7 })
      yield* X.awaitPackets(conn, "Pubcomp", 1)
      assert.deepStrictEqual(acksOf(conn), ["Pubrec 7", "Pubrec 7", "Pubcomp 7"])
      // After PUBCOMP the id means a new message.
      yield* conn.send(X.publish("a/2", "again", 2, 7))
      yield* X.awaitPackets(conn, "Pubrec", 3)
      yield* X.eventually(() => received.items.length === 2, "the new message with the same id")
      assert.deepStrictEqual(received.items.map((m) => X.text(m.payload)), ["once", "again"])
    }))

  it.effect("acknowledgements go out in the order the PUBLISHes arrived [MQTT-4.6.0-2] [MQTT-4.6.0-3]", () =>
    Effect.gen(function*() {
      const { conn, received } = yield* subscribed()
      yield* conn.send(
        X.publish("a/1", "1", 1, 5),
        X.publish("a/2", "2", 2, 3),
        X.publish("a/3", "3", 1, 9),
        X.publish("a/4", "4", 2, 1),
        X.publish("a/5", "5", 0),
        X.publish("a/6", "6", 1, 2)
      )
      yield* X.eventually(() => acksOf(conn).length === 5, "five acknowledgements")
      assert.deepStrictEqual(acksOf(conn), ["Puback 5", "Pubrec 3", "Puback 9", "Pubrec 1", "Puback 2"])
      yield* X.eventually(() => received.items.length === 6, "six messages")
      assert.deepStrictEqual(received.items.map((m) => X.text(m.payload)), ["1", "2", "3", "4", "5", "6"])
    }))

  it.effect("a message matching two subscriptions goes to both streams (acknowledged once)", () =>
    Effect.gen(function*() {
      const { client, conn, received } = yield* subscribed()
      const other = yield* client.subscription("a/+", { qos: 1 })
      const plus = yield* X.record(other.messages)
      yield* conn.send(X.publish("a/b", "both", 1, 1), X.publish("a/b/c", "deep", 1, 2))
      yield* X.awaitPackets(conn, "Puback", 2)
      yield* X.eventually(() => received.items.length === 2 && plus.items.length === 1, "the deliveries")
      assert.deepStrictEqual(received.items.map((m) => m.topic), ["a/b", "a/b/c"])
      assert.deepStrictEqual(plus.items.map((m) => m.topic), ["a/b"])
      assert.deepStrictEqual(acksOf(conn), ["Puback 1", "Puback 2"])
    }))

  it.effect("messages() receives every message, whatever subscription (or none) brought it", () =>
    Effect.gen(function*() {
      const { client, conn, received } = yield* subscribed()
      const all = yield* X.record(client.messages())
      yield* conn.send(X.publish("a/1", "sub", 1, 1), X.publish("z/unsolicited", "none", 0), X.publish("q", "q", 2, 2))
      yield* X.eventually(() => all.items.length === 3, "three messages on messages()")
      assert.deepStrictEqual(all.items.map((m) => m.topic), ["a/1", "z/unsolicited", "q"])
      yield* X.eventually(() => received.items.length === 1, "one on the subscription")
      assert.deepStrictEqual(received.items.map((m) => m.topic), ["a/1"])
    }))

  it.effect("a PUBACK, PUBREC or PUBCOMP for an unknown id is ignored: no failure, the connection stays", () =>
    Effect.gen(function*() {
      const { client, conn, events } = yield* setup()
      yield* conn.send(
        { _tag: "Puback", packetId: 42 },
        { _tag: "Pubrec", packetId: 43 },
        { _tag: "Pubcomp", packetId: 44 }
      )
      yield* X.settle
      assert.isTrue(conn.isOpen)
      assert.isTrue(yield* client.isConnected)
      assert.deepStrictEqual(eventTags(events), [])
      assert.deepStrictEqual(conn.tags(), ["Connect"], "no PUBREL for an unknown PUBREC")
      const p = yield* fork(qos1(client, "still/works"))
      const sent = yield* conn.expectPacket("Publish")
      yield* conn.send({ _tag: "Puback", packetId: sent.packetId! })
      assert.strictEqual(yield* X.success(p, "a publish after the stray acknowledgements"), sent.packetId)
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------------------------------------------------

describe("MqttClient: subscription backpressure", () => {
  it.effect("suspend: a full buffer withholds the 3rd PUBACK until the consumer takes one; nothing is lost", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({ ackSubscribe: true })
      const sub = yield* client.subscription("a/#", { qos: 1, bufferSize: 2, strategy: "suspend" })
      yield* conn.expectPacket("Subscribe")
      yield* conn.send(X.publish("a/1", "m1", 1, 1), X.publish("a/2", "m2", 1, 2), X.publish("a/3", "m3", 1, 3))
      yield* conn.send(X.publish("a/4", "m4", 1, 4))
      yield* X.awaitPackets(conn, "Puback", 2)
      yield* X.settle
      assert.deepStrictEqual(acksOf(conn), ["Puback 1", "Puback 2"], "PUBACK 3 withheld while the buffer is full")
      assert.isTrue(conn.isOpen)
      const received = yield* X.record(sub.messages)
      yield* X.eventually(() => received.items.length === 4, "all four messages")
      assert.deepStrictEqual(received.items.map((m) => X.text(m.payload)), ["m1", "m2", "m3", "m4"])
      yield* X.awaitPackets(conn, "Puback", 4)
      assert.deepStrictEqual(acksOf(conn), ["Puback 1", "Puback 2", "Puback 3", "Puback 4"])
    }))

  it.effect("dropping: a full buffer drops the new message and still acknowledges it [MQTT-4.5.0-2]", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({ ackSubscribe: true })
      const sub = yield* client.subscription("a/#", { qos: 1, bufferSize: 2, strategy: "dropping" })
      yield* conn.send(X.publish("a/1", "m1", 1, 1), X.publish("a/2", "m2", 1, 2), X.publish("a/3", "m3", 1, 3))
      yield* X.awaitPackets(conn, "Puback", 3)
      assert.deepStrictEqual(acksOf(conn), ["Puback 1", "Puback 2", "Puback 3"])
      const received = yield* X.record(sub.messages)
      yield* X.eventually(() => received.items.length === 2, "two messages")
      yield* X.settle
      assert.deepStrictEqual(received.items.map((m) => X.text(m.payload)), ["m1", "m2"])
    }))

  it.effect("sliding: a full buffer drops the oldest message and still acknowledges every one [MQTT-4.5.0-2]", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({ ackSubscribe: true })
      const sub = yield* client.subscription("a/#", { qos: 1, bufferSize: 2, strategy: "sliding" })
      yield* conn.send(X.publish("a/1", "m1", 1, 1), X.publish("a/2", "m2", 1, 2), X.publish("a/3", "m3", 1, 3))
      yield* X.awaitPackets(conn, "Puback", 3)
      assert.deepStrictEqual(acksOf(conn), ["Puback 1", "Puback 2", "Puback 3"])
      const received = yield* X.record(sub.messages)
      yield* X.eventually(() => received.items.length === 2, "two messages")
      yield* X.settle
      assert.deepStrictEqual(received.items.map((m) => X.text(m.payload)), ["m2", "m3"])
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// Keepalive through the client
// ---------------------------------------------------------------------------------------------------------------------

describe("MqttClient: keepalive", () => {
  it.effect("a broker that stops answering PINGREQ: KeepaliveTimeout after keepalive + pingTimeout, reconnect", () =>
    Effect.gen(function*() {
      const { broker, client, conn, events } = yield* setup(
        { pingresp: false },
        { keepalive: 10, pingTimeout: "5 seconds" }
      )
      yield* TestClock.adjust(9_999)
      yield* X.settle
      assert.deepStrictEqual(conn.tags(), ["Connect"])
      yield* TestClock.adjust(1)
      yield* conn.expectPacket("Pingreq")
      yield* X.eventually(() => eventTags(events).includes("Ping"), "the Ping event")
      yield* TestClock.adjust(4_999)
      yield* X.settle
      assert.isTrue(conn.isOpen, "1 ms before the ping timeout")
      assert.deepStrictEqual(eventTags(events), ["Ping"])
      yield* TestClock.adjust(1)
      yield* awaitDrop(events)
      yield* conn.awaitClosed
      assert.strictEqual(conn.closedBy, "client")
      const reason = assertReason(eventsOf(events, "Disconnected")[0]!.error, "KeepaliveTimeout")
      assert.strictEqual(reason.keepaliveSeconds, 10)
      assert.strictEqual(reason.timeoutMillis, 5_000)
      // Reconnect by the schedule (1 s).
      yield* TestClock.adjust(999)
      yield* X.settle
      assert.strictEqual(broker.connections, 1)
      yield* TestClock.adjust(1)
      yield* (yield* broker.connection(2)).expectPacket("Connect")
      yield* awaitStatus(client, "Connected")
      assert.deepStrictEqual(eventTags(events), ["Ping", "Disconnected", "Reconnecting", "Connected"])
    }))

  it.effect("Ping and Pong events appear when the broker answers PINGREQ [MQTT-3.1.2-23]", () =>
    Effect.gen(function*() {
      const { conn, events } = yield* setup({}, { keepalive: 10 })
      yield* TestClock.adjust(10_000)
      yield* conn.expectPacket("Pingreq")
      yield* X.eventually(() => eventTags(events).includes("Pong"), "the Pong event")
      yield* TestClock.adjust(10_000)
      yield* X.awaitPackets(conn, "Pingreq", 2)
      yield* X.eventually(() => eventsOf(events, "Pong").length === 2, "the second Pong")
      assert.deepStrictEqual(eventTags(events), ["Ping", "Pong", "Ping", "Pong"])
      assert.isTrue(conn.isOpen)
    }))

  // Regression: found by this test and fixed in src.
  it.effect("Pong.rttMillis is the time from PINGREQ to PINGRESP", () =>
    Effect.gen(function*() {
      const { conn, events } = yield* setup({ pingresp: false }, { keepalive: 10 })
      yield* TestClock.adjust(10_000)
      yield* conn.expectPacket("Pingreq")
      yield* TestClock.adjust(300)
      yield* conn.send({ _tag: "Pingresp" })
      yield* X.eventually(() => eventsOf(events, "Pong").length === 1, "the Pong event")
      assert.strictEqual(eventsOf(events, "Pong")[0]!.rttMillis, 300)
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// Disconnect
// ---------------------------------------------------------------------------------------------------------------------

describe("MqttClient: disconnect", () => {
  it.effect("graceful: waits for the PUBACK, then DISCONNECT is the last packet [MQTT-3.14.4-2] [MQTT-3.14.4-1]", () =>
    Effect.gen(function*() {
      const { client, conn, events } = yield* setup()
      const p = yield* fork(qos1(client, "bye"))
      yield* conn.expectPacket("Publish")
      const closing = yield* fork(client.disconnect())
      yield* X.settle
      assert.isFalse(X.isDone(closing), "waiting for the PUBACK")
      assert.deepStrictEqual(conn.tags(), ["Connect", "Publish"])
      yield* conn.send({ _tag: "Puback", packetId: 1 })
      yield* X.success(closing, "the graceful disconnect")
      assert.strictEqual(yield* X.success(p, "the publish"), 1)
      yield* conn.awaitClosed
      yield* X.settle
      assert.deepStrictEqual(conn.tags(), ["Connect", "Publish", "Disconnect"])
      assert.strictEqual(conn.closedBy, "client")
      assert.deepStrictEqual(yield* statusOf(client), { _tag: "Closed" })
      yield* X.eventually(() => eventTags(events).includes("Closed"), "the Closed event")
      assert.deepStrictEqual(eventTags(events), ["Published", "Closed"])
    }))

  it.effect("graceful, timeout elapsed: DISCONNECT anyway, the pending publish fails OperationIncomplete (-11)", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup()
      const p = yield* fork(qos1(client, "never/acked"))
      yield* conn.expectPacket("Publish")
      const closing = yield* fork(client.disconnect({ timeout: "2 seconds" }))
      yield* TestClock.adjust(1_999)
      yield* X.settle
      assert.isFalse(X.isDone(closing))
      assert.deepStrictEqual(conn.tags(), ["Connect", "Publish"])
      yield* TestClock.adjust(1)
      yield* X.success(closing, "the disconnect after its timeout")
      const error = yield* X.failure(p, "the pending publish")
      assertReason(error, "OperationIncomplete")
      assert.strictEqual(error.code, -11)
      yield* conn.awaitClosed
      assert.deepStrictEqual(conn.tags(), ["Connect", "Publish", "Disconnect"])
      assert.deepStrictEqual(yield* statusOf(client), { _tag: "Closed" })
    }))

  it.effect("force: closes at once without DISCONNECT; pending operations fail OperationIncomplete, streams end", () =>
    Effect.gen(function*() {
      const { client, conn, events } = yield* setup({ ackSubscribe: true })
      const sub = yield* client.subscription("a/#")
      const messages = yield* X.record(sub.messages)
      const p = yield* fork(qos2(client, "pending"))
      yield* conn.expectPacket("Subscribe")
      yield* conn.expectPacket("Publish")
      yield* X.bounded(client.disconnect({ force: true }), () => "a forced disconnect")
      assertReason(yield* X.failure(p, "the pending publish"), "OperationIncomplete")
      const end = yield* messages.awaitEnd
      assert.isTrue(Exit.isSuccess(end), "the subscription stream ends (not fails)")
      yield* conn.awaitClosed
      assert.strictEqual(conn.closedBy, "client")
      assert.deepStrictEqual(conn.tags(), ["Connect", "Subscribe", "Publish"], "no DISCONNECT")
      assert.deepStrictEqual(yield* statusOf(client), { _tag: "Closed" })
      yield* X.eventually(() => eventTags(events).includes("Closed"), "the Closed event")
    }))

  // Regression: found by this test and fixed in src.
  it.effect("force close fails a publish waiting for the in-flight window with OperationIncomplete", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({}, { maxInflight: 1 })
      const inflight = yield* fork(qos1(client, "w/1"))
      const waiting = yield* fork(qos1(client, "w/2"))
      yield* conn.expectPacket("Publish")
      yield* X.settle
      yield* client.disconnect({ force: true })
      assertReason(yield* X.failure(inflight, "the in-flight publish"), "OperationIncomplete")
      assertReason(yield* X.failure(waiting, "the publish waiting for the window"), "OperationIncomplete")
    }))

  it.effect("operations after close fail with Disconnected (-3)", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({ ackSubscribe: true, ackUnsubscribe: true })
      yield* client.disconnect()
      for (const qos of [0, 1, 2] as const) {
        const error = yield* failsNow(client.publish({ topic: "late", payload: "x", qos }))
        assertReason(error, "Disconnected")
        assert.strictEqual(error.code, -3)
      }
      assertReason(yield* failsNow(Effect.scoped(client.subscription("late/#"))), "Disconnected")
      assertReason(yield* failsNow(Stream.runDrain(client.subscribe("late/#"))), "Disconnected")
      assertReason(yield* failsNow(client.unsubscribe("late/#")), "Disconnected")
      yield* X.settle
      assert.deepStrictEqual(conn.tags(), ["Connect", "Disconnect"])
      // A second disconnect is a no-op.
      yield* X.bounded(client.disconnect(), () => "a second disconnect")
    }))

  it.effect("closing the layer's scope disconnects gracefully: waits for the PUBACK, then DISCONNECT", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(clientLayer(broker, {}), scope)
      const client = Context.get(context, MqttClient.MqttClient)
      const conn = yield* broker.connection(1)
      yield* conn.expectPacket("Connect")
      const p = yield* fork(qos1(client, "last"))
      yield* conn.expectPacket("Publish")
      const closing = yield* fork(Scope.close(scope, Exit.void))
      yield* X.settle
      assert.isFalse(X.isDone(closing), "the scope's finalizer waits for the PUBACK")
      yield* conn.send({ _tag: "Puback", packetId: 1 })
      yield* X.success(closing, "closing the scope")
      assert.strictEqual(yield* X.success(p, "the publish"), 1)
      yield* conn.awaitClosed
      assert.deepStrictEqual(conn.tags(), ["Connect", "Publish", "Disconnect"])
      assert.strictEqual(conn.closedBy, "client")
      assert.deepStrictEqual(yield* statusOf(client), { _tag: "Closed" })
    }))

  it.effect("closing the layer's scope waits at most disconnectTimeout for acknowledgements", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(clientLayer(broker, { disconnectTimeout: "3 seconds" }), scope)
      const client = Context.get(context, MqttClient.MqttClient)
      const conn = yield* broker.connection(1)
      yield* conn.expectPacket("Connect")
      const p = yield* fork(qos1(client, "unacked"))
      yield* conn.expectPacket("Publish")
      const closing = yield* fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust(2_999)
      yield* X.settle
      assert.isFalse(X.isDone(closing))
      yield* TestClock.adjust(1)
      yield* X.success(closing, "closing the scope after disconnectTimeout")
      assertReason(yield* X.failure(p, "the unacknowledged publish"), "OperationIncomplete")
      yield* conn.awaitClosed
      assert.deepStrictEqual(conn.tags(), ["Connect", "Publish", "Disconnect"])
    }))
  // Regression: found by this test and fixed in src.
  it.effect("a connection established while a graceful disconnect waits is closed, not leaked", () =>
    Effect.gen(function*() {
      const { broker, client, conn, events } = yield* setup()
      yield* conn.close
      yield* awaitDrop(events)
      const offline = yield* fork(qos1(client, "queued"))
      yield* X.settle
      const closing = yield* fork(client.disconnect({ timeout: "5 seconds" }))
      yield* X.settle
      yield* TestClock.adjust(1_000)
      const second = yield* broker.connection(2)
      yield* second.expectPacket("Connect")
      yield* TestClock.adjust(4_000)
      yield* X.success(closing, "the disconnect")
      assertReason(yield* X.failure(offline, "the queued publish"), "OperationIncomplete")
      assert.deepStrictEqual(yield* statusOf(client), { _tag: "Closed" })
      yield* X.settle
      assert.isFalse(second.isOpen, "the connection made during the close is closed")
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------------------------------

describe("MqttClient: subscriptions", () => {
  it.effect("SUBACK 0x80 for one of two filters fails the stream with SubscribeRejected naming it", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({
        ackSubscribe: (s) => s.subscriptions.map((x) => (x.topicFilter === "bad/#" ? 0x80 : x.qos))
      })
      const fiber = yield* fork(Stream.runCollect(client.subscribe(["good/+", "bad/#"], { qos: 1 })))
      const error = yield* X.failure(fiber, "the subscription stream")
      assert.strictEqual(assertReason(error, "SubscribeRejected").topicFilter, "bad/#")
      assert.include(error.message, "bad/#")
      assert.deepStrictEqual(X.packetsOf(conn, "Subscribe")[0]!.subscriptions, [
        { topicFilter: "good/+", qos: 1 },
        { topicFilter: "bad/#", qos: 1 }
      ])
      // subscription() reports it the same way.
      const again = yield* failsNow(Effect.scoped(client.subscription({ "bad/#": 0, "fine": 2 })))
      assert.strictEqual(assertReason(again, "SubscribeRejected").topicFilter, "bad/#")
    }))

  it.effect("the QoS the broker granted is reported per filter", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({ ackSubscribe: () => [1, 1, 0] })
      const sub = yield* client.subscription({ "x/1": 2, "x/2": 1, "x/3": 0 })
      assert.deepStrictEqual(sub.granted, [
        { topicFilter: "x/1", qos: 1 },
        { topicFilter: "x/2", qos: 1 },
        { topicFilter: "x/3", qos: 0 }
      ])
      assert.deepStrictEqual(X.packetsOf(conn, "Subscribe")[0]!.subscriptions, [
        { topicFilter: "x/1", qos: 2 },
        { topicFilter: "x/2", qos: 1 },
        { topicFilter: "x/3", qos: 0 }
      ])
    }))

  it.effect("ending the last stream on a filter sends UNSUBSCRIBE for that filter only", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({ ackSubscribe: true, ackUnsubscribe: true })
      const first = yield* Scope.make()
      const second = yield* Scope.make()
      yield* Scope.provide(client.subscription(["x", "y"]), first)
      yield* Scope.provide(client.subscription("y"), second)
      yield* X.awaitPackets(conn, "Subscribe", 2)
      yield* Scope.close(first, Exit.void)
      const unsubscribes = yield* X.awaitPackets(conn, "Unsubscribe", 1)
      assert.deepStrictEqual(unsubscribes[0]!.topicFilters, ["x"], "y still has a stream")
      yield* Scope.close(second, Exit.void)
      const both = yield* X.awaitPackets(conn, "Unsubscribe", 2)
      assert.deepStrictEqual(both[1]!.topicFilters, ["y"])
      // A stream that ends by itself (take 1) unsubscribes too.
      const one = yield* fork(Stream.runCollect(Stream.take(client.subscribe("z"), 1)))
      yield* X.awaitPackets(conn, "Subscribe", 3)
      yield* conn.send(X.publish("z", "only"))
      yield* X.success(one, "the stream of one message")
      const three = yield* X.awaitPackets(conn, "Unsubscribe", 3)
      assert.deepStrictEqual(three[2]!.topicFilters, ["z"])
      yield* X.settle
      assert.strictEqual(yield* client.pendingCount, 0, "every UNSUBACK arrived")
    }))

  it.effect("an invalid filter (a/#/b) fails with InvalidTopic before anything is sent [MQTT-4.7.1-2]", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({ ackSubscribe: true })
      const error = yield* failsNow(Effect.scoped(client.subscription("a/#/b")))
      assertReason(error, "InvalidTopic")
      assertReason(yield* failsNow(Stream.runDrain(client.subscribe(["ok", "a/#/b"]))), "InvalidTopic")
      assertReason(yield* failsNow(client.publish({ topic: "a/+", payload: "x" })), "InvalidTopic")
      yield* X.settle
      assert.deepStrictEqual(conn.tags(), ["Connect"])
      assert.strictEqual(yield* client.pendingCount, 0)
    }))

  it.effect("QoS 3 fails with BadQos (-9) before anything is sent [MQTT-3.3.1-4]", () =>
    Effect.gen(function*() {
      const { client, conn } = yield* setup({ ackSubscribe: true })
      const error = yield* failsNow(Effect.scoped(client.subscription("a/b", { qos: 3 as Packet.QoS })))
      assertReason(error, "BadQos")
      assert.strictEqual(error.code, -9)
      assertReason(yield* failsNow(client.publish({ topic: "a/b", payload: "x", qos: 3 as Packet.QoS })), "BadQos")
      yield* X.settle
      assert.deepStrictEqual(conn.tags(), ["Connect"])
    }))
})
