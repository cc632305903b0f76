/**
 * Connecting again by a `Schedule`: the rule the client and the in-memory test client (`MqttTest`) share. A
 * non-retryable error (bad credentials, TLS verification) ends it at once; otherwise the schedule is stepped with the
 * error before the next attempt, so a broker that accepts and drops at once is not hammered, and when the schedule
 * gives up the error that stopped it is the result. The schedule is started at the first failure: most connections
 * succeed at once and never step it. What a client announces around each attempt (status, events, metrics) is its
 * own, through `Hooks`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Pull from "effect/Pull"
import * as Schedule from "effect/Schedule"
import type * as MqttError from "../Errors/MqttError.ts"

/**
 * What a client does around each attempt after a failure; `attempt` counts from 1.
 *
 * @since 0.1.0
 */
export interface Hooks {
  /** Before the schedule's delay for `attempt`, which follows `failure`. */
  readonly onReconnectWait: (attempt: number, failure: MqttError.MqttError) => Effect.Effect<void>
  /** The delay is over and `attempt` starts now (not called when the schedule gives up). */
  readonly onReconnectAttempt: (attempt: number, failure: MqttError.MqttError) => Effect.Effect<void>
}

/**
 * The first expected failure of an exit, if any (not a defect nor an interruption).
 *
 * @since 0.1.0
 */
export const failureOf = <E>(exit: Exit.Exit<unknown, E>): E | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  for (const reason of exit.cause.reasons) {
    if (reason._tag === "Fail") return reason.error
  }
  return undefined
}

/**
 * Runs `connect` until it succeeds, after `after` (the error that ended the previous connection, stepped through the
 * schedule first) when there is one; see the module documentation. A defect or interruption of `connect` is not
 * retried.
 *
 * @since 0.1.0
 */
export const connectWithRetry = Effect.fnUntraced(function*<A>(
  schedule: Schedule.Schedule<unknown, MqttError.MqttError>,
  after: MqttError.MqttError | undefined,
  connect: Effect.Effect<A, MqttError.MqttError>,
  hooks: Hooks
) {
  let step: ((input: MqttError.MqttError) => Pull.Pull<unknown, never, unknown>) | undefined
  let attempt = 0
  let last = after
  while (true) {
    if (last !== undefined) {
      if (!last.isRetryable) return yield* Effect.fail(last)
      const failure = last
      step ??= yield* Schedule.toStepWithSleep(schedule)
      attempt++
      yield* hooks.onReconnectWait(attempt, failure)
      yield* Pull.catchDone(step(failure), () => Effect.fail(failure))
      yield* hooks.onReconnectAttempt(attempt, failure)
    }
    const exit = yield* Effect.exit(connect)
    if (Exit.isSuccess(exit)) return exit.value
    const error = failureOf(exit)
    if (error === undefined) return yield* Effect.failCause(exit.cause)
    last = error
  }
}) as <A>(
  schedule: Schedule.Schedule<unknown, MqttError.MqttError>,
  after: MqttError.MqttError | undefined,
  connect: Effect.Effect<A, MqttError.MqttError>,
  hooks: Hooks
) => Effect.Effect<A, MqttError.MqttError>
