/**
 * Real-time helper for the broker harness: brokers live in wall-clock time, so the harness runs its own timeouts and
 * polling on the live clock even when a test runs under `it.effect` (whose TestClock would otherwise freeze them).
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"

const liveClock = Clock.Clock.defaultValue()

/** Runs `self` with the real clock, whatever clock the caller provides. */
export const withLiveClock = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.provideService(self, Clock.Clock, liveClock)
