/**
 * `LocalSubscriptions`' routing: each message goes once to every live stream whose filters match it, in the order the
 * streams were added; with more than a few filters the streams a topic goes to are remembered, so adding or removing a
 * stream must change where the next message on a known topic goes; a message no stream matches waits for a later
 * stream. Each case runs with few filters (tried one by one) and with unrelated streams added (remembered routes).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as LocalSubscriptions from "../../src/Client/LocalSubscriptions.ts"

const publish = (topic: string, index = 0): Packet.Publish => ({
  _tag: "Publish",
  topic,
  payload: new Uint8Array([index & 0xff]),
  qos: 0,
  retain: false,
  dup: false
})

/** A stream on `filters` (`undefined`: every message) with room for `bufferSize` messages. */
const stream = (filters: ReadonlyArray<string> | undefined, bufferSize = 4096) =>
  LocalSubscriptions.makeSubscriber(filters?.map((topicFilter) => ({ topicFilter, qos: 0 })), { bufferSize }, true)

/** The topics a stream holds, in order, taken out of its queue. */
const topicsOf = (subscriber: LocalSubscriptions.Subscriber) =>
  Effect.map(Queue.clear(subscriber.queue), (messages) => messages.map((m) => m.topic))

/** Adds `count` streams on filters no message of these tests matches, so that routes are remembered. */
const addUnrelated = (local: LocalSubscriptions.LocalSubscriptions, count: number) =>
  Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => Effect.map(stream([`unrelated/${i}`]), (s) => local.add(s)))

describe.each([
  { unrelated: 0, routes: "filters tried one by one" },
  { unrelated: 8, routes: "routes remembered" }
])("LocalSubscriptions routing ($routes)", ({ unrelated }) => {
  it.effect("a message goes once to each stream whose filters match, whatever the overlap", () =>
    Effect.gen(function*() {
      const local = new LocalSubscriptions.LocalSubscriptions(0)
      yield* addUnrelated(local, unrelated)
      const overlapping = yield* stream(["a/#", "a/b", "+/b"])
      const level = yield* stream(["a/+"])
      const other = yield* stream(["x/#"])
      const everything = yield* stream(undefined)
      for (const s of [overlapping, level, other, everything]) local.add(s)
      for (const topic of ["a/b", "a/b", "a/c/d", "x/y"]) assert.isUndefined(local.deliver(publish(topic)))
      assert.deepStrictEqual(yield* topicsOf(overlapping), ["a/b", "a/b", "a/c/d"])
      assert.deepStrictEqual(yield* topicsOf(level), ["a/b", "a/b"])
      assert.deepStrictEqual(yield* topicsOf(other), ["x/y"])
      assert.deepStrictEqual(yield* topicsOf(everything), ["a/b", "a/b", "a/c/d", "x/y"])
    }))

  it.effect("a stream added after messages on a topic gets the next one; a removed stream does not", () =>
    Effect.gen(function*() {
      const local = new LocalSubscriptions.LocalSubscriptions(0)
      yield* addUnrelated(local, unrelated)
      const first = yield* stream(["t/1"])
      local.add(first)
      local.deliver(publish("t/1"))
      const second = yield* stream(["t/+"])
      local.add(second)
      local.deliver(publish("t/1"))
      local.remove(first)
      local.deliver(publish("t/1"))
      assert.deepStrictEqual(yield* topicsOf(first), ["t/1", "t/1"])
      assert.deepStrictEqual(yield* topicsOf(second), ["t/1", "t/1"])
    }))

  it.effect("more topics than are remembered still go to the right streams", () =>
    Effect.gen(function*() {
      const local = new LocalSubscriptions.LocalSubscriptions(0)
      yield* addUnrelated(local, unrelated)
      const even = yield* stream(["t/+/even"], 8192)
      const all = yield* stream(["t/#"], 8192)
      local.add(even)
      local.add(all)
      const topics = Array.from({ length: 3000 }, (_, i) => `t/${i}/${i % 2 === 0 ? "even" : "odd"}`)
      // Twice over: the second pass meets both remembered topics and ones the routes forgot.
      for (const topic of [...topics, ...topics]) local.deliver(publish(topic))
      const evens = topics.filter((t) => t.endsWith("even"))
      assert.deepStrictEqual(yield* topicsOf(even), [...evens, ...evens])
      assert.deepStrictEqual(yield* topicsOf(all), [...topics, ...topics])
    }))

  it.effect("a message no stream matches is kept for the first later stream that does", () =>
    Effect.gen(function*() {
      const local = new LocalSubscriptions.LocalSubscriptions(10)
      yield* addUnrelated(local, unrelated)
      local.deliver(publish("late/1"))
      local.deliver(publish("late/1"))
      const other = yield* stream(["other"])
      local.add(other)
      local.deliver(publish("late/1"))
      const late = yield* stream(["late/#"])
      local.add(late)
      local.deliver(publish("late/1"))
      assert.deepStrictEqual(yield* topicsOf(other), [])
      assert.deepStrictEqual(yield* topicsOf(late), ["late/1", "late/1", "late/1", "late/1"])
    }))

  it.effect("a full suspending stream makes the delivery wait; the others are not held back", () =>
    Effect.gen(function*() {
      const local = new LocalSubscriptions.LocalSubscriptions(0)
      yield* addUnrelated(local, unrelated)
      const small = yield* stream(["s"], 1)
      const large = yield* stream(["s"])
      local.add(small)
      local.add(large)
      assert.isUndefined(local.deliver(publish("s", 1)))
      const blocked = local.deliver(publish("s", 2))
      assert.isDefined(blocked)
      assert.deepStrictEqual(yield* topicsOf(large), ["s", "s"])
      const waiting = yield* Effect.forkChild(blocked!)
      assert.deepStrictEqual((yield* Queue.take(small.queue)).payload, new Uint8Array([1]))
      yield* Fiber.join(waiting)
      assert.deepStrictEqual((yield* Queue.take(small.queue)).payload, new Uint8Array([2]))
    }))
})
