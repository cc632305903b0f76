/**
 * `Session.publishAll` over a link that only records what is sent, with the broker's acknowledgements fed by hand:
 * the batch starts what the in-flight window allows, goes on as acknowledgements free slots, waits once for all;
 * offline it is queued and completes on the next link; an interrupted batch leaves its flights in the session and no
 * waiter behind; a batch the session drops fails.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as Session from "../../src/Client/Session.ts"
import type * as SessionState from "../../src/Client/SessionState.ts"
import type * as Connection from "../../src/Connection/Connection.ts"
import * as MqttError from "../../src/Errors/MqttError.ts"
import { idleLink } from "../utils/idleLink.ts"

const request = (i: number, qos: Packet.QoS): SessionState.PublishRequest => ({
  topic: `t/${i}`,
  payload: new Uint8Array([i]),
  qos,
  retain: false
})

/** The packet ids of the PUBLISH packets sent so far, in order. */
const publishedIds = (sent: ReadonlyArray<Connection.OutgoingPacket>) =>
  sent.flatMap((p) => (p._tag === "Publish" ? [p.packetId ?? 0] : []))

const puback = (packetId: number): Packet.ServerPacket => ({ _tag: "Puback", packetId })

/** What was sent so far, PUBLISH packets by topic, the others by name. */
const sentTopics = (sent: ReadonlyArray<Connection.OutgoingPacket>) =>
  sent.map((p) => (p._tag === "Publish" ? p.topic : p._tag))

/** The broker's side of a QoS 2 publish: PUBREC (the session answers PUBREL), then PUBCOMP. */
const completeQos2 = (session: Session.Session["Service"], packetId: number) => {
  session.acknowledge(session.handle({ _tag: "Pubrec", packetId }))
  session.handle({ _tag: "Pubcomp", packetId })
}

/** A session with `options`, attached to a link that records what is sent. */
const attached = (options?: Session.Options) =>
  Effect.gen(function*() {
    const sent: Array<Connection.OutgoingPacket> = []
    const session = Session.make(options)
    yield* session.attach(idleLink(sent))
    return { session, sent }
  })

/** `publishAll(requests)` started at once in a child fiber. */
const startBatch = (session: Session.Session["Service"], requests: ReadonlyArray<SessionState.PublishRequest>) =>
  Effect.forkChild(session.publishAll(requests), { startImmediately: true })

describe("Session.publishAll", () => {
  it.effect("starts what the window allows, goes on as PUBACKs free slots, and completes once all are acknowledged", () =>
    Effect.gen(function*() {
      const { session, sent } = yield* attached({ maxInflight: 2 })
      const batch = yield* startBatch(session, [0, 1, 2, 3, 4].map((i) => request(i, 1)))
      assert.deepStrictEqual(publishedIds(sent), [1, 2])
      assert.isTrue(session.pending() > 0)
      session.handle(puback(1))
      assert.deepStrictEqual(publishedIds(sent), [1, 2, 3])
      session.handle(puback(2))
      session.handle(puback(3))
      assert.deepStrictEqual(publishedIds(sent), [1, 2, 3, 4, 5])
      assert.isUndefined(batch.pollUnsafe())
      session.handle(puback(4))
      session.handle(puback(5))
      assert.deepStrictEqual(yield* Fiber.join(batch), [1, 2, 3, 4, 5])
      assert.strictEqual(session.pending(), 0)
    }))

  it.effect("QoS 0 messages complete when written and keep their place among the others", () =>
    Effect.gen(function*() {
      const { session, sent } = yield* attached()
      const batch = yield* startBatch(session, [request(0, 0), request(1, 1), request(2, 0), request(3, 2)])
      assert.deepStrictEqual(sentTopics(sent), ["t/0", "t/1", "t/2", "t/3"])
      session.handle(puback(1))
      completeQos2(session, 2)
      assert.deepStrictEqual(yield* Fiber.join(batch), [undefined, 1, undefined, 2])
    }))

  it.effect("offline, the batch is queued in order and completes once sent and acknowledged on the next link", () =>
    Effect.gen(function*() {
      const sent: Array<Connection.OutgoingPacket> = []
      const session = Session.make({ bufferQos0: true })
      const batch = yield* startBatch(session, [request(0, 1), request(1, 0), request(2, 2)])
      assert.isUndefined(batch.pollUnsafe())
      yield* session.attach(idleLink(sent))
      assert.deepStrictEqual(sentTopics(sent), ["t/0", "t/1", "t/2"])
      session.handle(puback(1))
      completeQos2(session, 2)
      assert.deepStrictEqual(yield* Fiber.join(batch), [1, undefined, 2])
    }))

  it.effect("an interrupted batch leaves its flights in the session and no waiter: the next operation is unaffected", () =>
    Effect.gen(function*() {
      const { session, sent } = yield* attached({ maxInflight: 2 })
      const batch = yield* startBatch(session, [0, 1, 2, 3].map((i) => request(i, 1)))
      yield* Fiber.interrupt(batch)
      // The two started flights are still in the session and complete; the two not started never are.
      assert.deepStrictEqual(publishedIds(sent), [1, 2])
      session.handle(puback(1))
      session.handle(puback(2))
      assert.deepStrictEqual(publishedIds(sent), [1, 2])
      assert.strictEqual(session.pending(), 0)
      // A publish after it is completed by its own acknowledgement.
      const next = yield* Effect.forkChild(session.publish(request(9, 1)), { startImmediately: true })
      const id = publishedIds(sent)[2]!
      session.handle(puback(id))
      assert.strictEqual(yield* Fiber.join(next), id)
    }))

  it.effect("a batch whose flights the session drops fails with the error", () =>
    Effect.gen(function*() {
      const { session } = yield* attached()
      const batch = yield* startBatch(session, [request(0, 1), request(1, 2)])
      const error = MqttError.make(new MqttError.Disconnected({ operation: "test" }))
      yield* session.dropAll(() => error)
      const exit = yield* Fiber.await(batch)
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(session.pending(), 0)
    }))

  it.effect("an invalid request fails the batch before anything is sent", () =>
    Effect.gen(function*() {
      const { session, sent } = yield* attached()
      const error = yield* Effect.flip(session.publishAll([request(0, 1), { ...request(1, 1), topic: "t/#" }]))
      assert.strictEqual(error.reason._tag, "InvalidTopic")
      assert.deepStrictEqual(sent, [])
      assert.strictEqual(session.pending(), 0)
    }))
})

/** `offer(requests)` started at once in a child fiber. */
const startOffer = (publisher: Session.Publisher, requests: ReadonlyArray<SessionState.PublishRequest>) =>
  Effect.forkChild(publisher.offer(requests), { startImmediately: true })

describe("Session.publisher", () => {
  it.effect("a chunk is taken once the chunks before it started: the window stays full across chunks", () =>
    Effect.scoped(Effect.gen(function*() {
      const { session, sent } = yield* attached({ maxInflight: 3 })
      const publisher = yield* session.publisher()
      // The first chunk fills the window and more: taken at once, the rest of it waits for slots.
      yield* publisher.offer([0, 1, 2, 3].map((i) => request(i, 1)))
      assert.deepStrictEqual(publishedIds(sent), [1, 2, 3])
      // The second waits until the first has started entirely (two chunks are held at most).
      const second = yield* startOffer(publisher, [4, 5].map((i) => request(i, 1)))
      assert.isUndefined(second.pollUnsafe())
      session.handle(puback(1))
      // The first chunk's last message took the slot: the second is taken, and goes on from the next slot.
      assert.deepStrictEqual(publishedIds(sent), [1, 2, 3, 4])
      yield* Fiber.join(second)
      session.handle(puback(2))
      assert.deepStrictEqual(publishedIds(sent), [1, 2, 3, 4, 5])
      session.handle(puback(3))
      assert.deepStrictEqual(publishedIds(sent), [1, 2, 3, 4, 5, 6])
      // Drain waits for the last three.
      const drained = yield* Effect.forkChild(publisher.drain, { startImmediately: true })
      session.handle(puback(4))
      session.handle(puback(5))
      assert.isUndefined(drained.pollUnsafe())
      session.handle(puback(6))
      yield* Fiber.join(drained)
      assert.strictEqual(session.pending(), 0)
    })))

  it.effect("tells of each message as it completes: QoS 1 and 2 on their acknowledgement, QoS 0 once written", () =>
    Effect.scoped(Effect.gen(function*() {
      const { session } = yield* attached()
      const completed: Array<string> = []
      const publisher = yield* session.publisher((r, packetId) => completed.push(`${r.topic}:${packetId}`))
      yield* publisher.offer([request(0, 1), request(1, 0), request(2, 2)])
      assert.deepStrictEqual(completed, ["t/1:undefined"])
      completeQos2(session, 2)
      session.handle(puback(1))
      yield* publisher.drain
      assert.deepStrictEqual(completed, ["t/1:undefined", "t/2:2", "t/0:1"])
    })))

  it.effect("a flight of an earlier chunk dropped fails the next offer and the drain", () =>
    Effect.scoped(Effect.gen(function*() {
      const { session, sent } = yield* attached()
      const publisher = yield* session.publisher()
      yield* publisher.offer([request(0, 1)])
      const error = MqttError.make(new MqttError.Disconnected({ operation: "test" }))
      yield* session.dropAll(() => error)
      assert.strictEqual((yield* Effect.flip(publisher.offer([request(1, 1)]))).reason._tag, "Disconnected")
      assert.strictEqual((yield* Effect.flip(publisher.drain)).reason._tag, "Disconnected")
      assert.deepStrictEqual(publishedIds(sent), [1])
    })))

  it.effect("an invalid chunk is not sent at all; the chunks before it stay in flight", () =>
    Effect.scoped(Effect.gen(function*() {
      const { session, sent } = yield* attached()
      const publisher = yield* session.publisher()
      yield* publisher.offer([request(0, 1)])
      const error = yield* Effect.flip(publisher.offer([request(1, 1), { ...request(2, 1), qos: 3 as 1 }]))
      assert.strictEqual(error.reason._tag, "BadQos")
      assert.deepStrictEqual(publishedIds(sent), [1])
      session.handle(puback(1))
      yield* publisher.drain
    })))

  it.effect("closing its scope leaves the started flights in the session and no waiter behind", () =>
    Effect.gen(function*() {
      const { session, sent } = yield* attached({ maxInflight: 2 })
      const offering = yield* Effect.forkChild(
        Effect.scoped(Effect.gen(function*() {
          const publisher = yield* session.publisher()
          yield* publisher.offer([0, 1, 2].map((i) => request(i, 1)))
          yield* publisher.offer([request(3, 1)])
        })),
        { startImmediately: true }
      )
      assert.deepStrictEqual(publishedIds(sent), [1, 2])
      yield* Fiber.interrupt(offering)
      session.handle(puback(1))
      session.handle(puback(2))
      // The third and fourth were never started: nothing waits for a slot, nothing is pending.
      assert.deepStrictEqual(publishedIds(sent), [1, 2])
      assert.strictEqual(session.pending(), 0)
    }))
})

describe("Session.publish with a full window", () => {
  it.effect("an invalid publish fails at once, before waiting for a slot", () =>
    Effect.gen(function*() {
      const { session } = yield* attached({ maxInflight: 1 })
      yield* startBatch(session, [request(0, 1)])
      assert.isFalse(session.state.windowOpen)
      const error = yield* Effect.flip(session.publish({ ...request(1, 1), topic: "t/#" }))
      assert.strictEqual(error.reason._tag, "InvalidTopic")
    }))

  it.effect("offline with the buffer full, fails with MaxBufferedMessages at once, not after a slot frees", () =>
    Effect.gen(function*() {
      const session = Session.make({ maxInflight: 1, maxBufferedMessages: 1 })
      yield* startBatch(session, [request(0, 1)])
      assert.isFalse(session.state.windowOpen)
      const error = yield* Effect.flip(session.publish(request(1, 1)))
      assert.strictEqual(error.reason._tag, "MaxBufferedMessages")
    }))

  it.effect("refusals for a full window are one error per session, not one per publish", () =>
    Effect.gen(function*() {
      const { session } = yield* attached({ maxInflight: 1, onInflightFull: "fail" })
      yield* startBatch(session, [request(0, 1)])
      const first = yield* Effect.flip(session.publish(request(1, 1)))
      const second = yield* Effect.flip(session.publish(request(2, 1)))
      assert.strictEqual(first.reason._tag, "MaxMessagesInflight")
      assert.strictEqual(second, first)
    }))
})
