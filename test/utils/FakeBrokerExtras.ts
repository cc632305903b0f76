/**
 * Small additions to `FakeBroker` for tests of the whole client, where the test cannot wait on one packet alone:
 * waiting for a condition on anything (events, status, a fiber) with a real-time bound, letting every runnable fiber
 * run before asserting that something did NOT happen, recording a stream as it emits, and packet builders.
 *
 * Like `FakeBroker`, nothing here runs on the `TestClock`: waits poll by yielding to the scheduler and are bounded by
 * real time, so that a broken test fails with a message instead of hanging.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Packet from "../../src/Codec/Packet.ts"
import type * as FakeBroker from "./FakeBroker.ts"

const liveClock = Clock.Clock.defaultValue()

const WAIT_LIMIT = Duration.seconds(2)

/**
 * Bounds `self` by real time (whatever clock the test uses); past the bound the test dies with `what`. `self` runs
 * with the live `Clock`: bound only waits and effects that use no timers of their own.
 */
export const bounded = <A, E, R>(self: Effect.Effect<A, E, R>, what: () => string): Effect.Effect<A, E, R> =>
  self.pipe(
    Effect.timeoutOrElse({
      duration: WAIT_LIMIT,
      orElse: () => Effect.die(new Error(`FakeBrokerExtras: waited ${Duration.format(WAIT_LIMIT)} for ${what()}`))
    }),
    Effect.provideService(Clock.Clock, liveClock)
  )

/**
 * Lets every fiber that can run do so (the client's reader, writer and supervisor, the broker's answers) without
 * moving the `TestClock`: use it before asserting that something did not happen.
 */
export const settle: Effect.Effect<void> = Effect.gen(function*() {
  for (let i = 0; i < 200; i++) yield* Effect.yieldNow
})

/** Waits until `check()` holds, yielding to other fibers between checks; bounded by real time. */
export const eventually = (check: () => boolean, what: string | (() => string)): Effect.Effect<void> =>
  bounded(
    Effect.gen(function*() {
      while (!check()) yield* Effect.yieldNow
    }),
    typeof what === "string" ? () => what : what
  )

/** Waits for a fiber to end, bounded by real time. */
export const awaitFiber = <A, E>(fiber: Fiber.Fiber<A, E>, what: string): Effect.Effect<Exit.Exit<A, E>> =>
  bounded(Fiber.await(fiber), () => what)

/** The value of a fiber expected to succeed (a failure is a defect of the test). */
export const success = <A, E>(fiber: Fiber.Fiber<A, E>, what: string): Effect.Effect<A> =>
  Effect.flatMap(awaitFiber(fiber, what), (exit) =>
    Exit.isSuccess(exit) ? Effect.succeed(exit.value) : Effect.die(new Error(`${what} failed: ${String(exit.cause)}`)))

/** The error of a fiber expected to fail with one (success or a defect is a defect of the test). */
export const failure = <A, E>(fiber: Fiber.Fiber<A, E>, what: string): Effect.Effect<E> =>
  Effect.flatMap(awaitFiber(fiber, what), (exit) => {
    if (Exit.isSuccess(exit)) return Effect.die(new Error(`${what} succeeded, expected a failure`))
    for (const reason of exit.cause.reasons) {
      if (reason._tag === "Fail") return Effect.succeed(reason.error)
    }
    return Effect.die(new Error(`${what} ended without a failure: ${String(exit.cause)}`))
  })

/** Whether a fiber has ended. */
export const isDone = <A, E>(fiber: Fiber.Fiber<A, E>): boolean => fiber.pollUnsafe() !== undefined

/** A stream being consumed in the current scope: what it emitted so far, and how it ended (once it has). */
export interface Recording<A, E> {
  readonly items: ReadonlyArray<A>
  /** `undefined` while running; the stream's end (success) or failure. */
  readonly end: () => Exit.Exit<void, E> | undefined
  /** Waits until the stream ended. */
  readonly awaitEnd: Effect.Effect<Exit.Exit<void, E>>
}

/**
 * Starts consuming `stream` in the current scope and lets the consumer run until it waits for the first element, so
 * the stream is open when this returns (a `PubSub` subscribed, a `Stream.unwrap` run): nothing emitted afterwards is
 * missed. (Opening a stream is lazy: `Stream.toPull` alone does not subscribe to a `PubSub`.)
 */
export const record = <A, E>(stream: Stream.Stream<A, E>): Effect.Effect<Recording<A, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const items: Array<A> = []
    const fiber = yield* Effect.forkScoped(Stream.runForEach(stream, (item) => Effect.sync(() => items.push(item))))
    yield* settle
    return {
      items,
      end: () => fiber.pollUnsafe(),
      awaitEnd: awaitFiber(fiber, "the recorded stream to end")
    }
  })

/** The packets of one tag a connection received from the client, in order. */
export const packetsOf = <T extends Packet.PacketTag>(
  conn: FakeBroker.Conn,
  tag: T
): ReadonlyArray<Extract<Packet.Packet, { _tag: T }>> =>
  conn.received.filter((packet): packet is Extract<Packet.Packet, { _tag: T }> => packet._tag === tag)

/** Waits until the connection received `count` packets with this tag in all; returns them. */
export const awaitPackets = <T extends Packet.PacketTag>(
  conn: FakeBroker.Conn,
  tag: T,
  count: number
): Effect.Effect<ReadonlyArray<Extract<Packet.Packet, { _tag: T }>>> =>
  Effect.map(
    eventually(
      () => packetsOf(conn, tag).length >= count,
      () => `${count} ${tag} on connection ${conn.id} (received: ${conn.tags().join(", ")})`
    ),
    () => packetsOf(conn, tag)
  )

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A PUBLISH from the broker. */
export const publish = (
  topic: string,
  payload: string,
  qos: Packet.QoS = 0,
  packetId?: number,
  options: { readonly dup?: boolean; readonly retain?: boolean } = {}
): Packet.Publish => ({
  _tag: "Publish",
  topic,
  payload: encoder.encode(payload),
  qos,
  retain: options.retain ?? false,
  dup: options.dup ?? false,
  ...(qos > 0 ? { packetId: packetId ?? 1 } : {})
})

/** A payload as text. */
export const text = (payload: Uint8Array): string => decoder.decode(payload)
