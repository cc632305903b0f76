/**
 * `Reconnect.connectWithRetry`, the retry rule the client and `MqttTest` share: non-retryable errors end it at once,
 * the schedule is stepped with each failure, the hooks run around each attempt, and a giving-up schedule returns the
 * error that stopped it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import * as Reconnect from "../../src/Client/Reconnect.ts"
import * as MqttError from "../../src/Errors/MqttError.ts"

const transport = (detail: string) =>
  MqttError.make(new MqttError.TransportError({ operation: "open", url: "mqtt://127.0.0.1:1", detail }))
const notAuthorized = MqttError.make(new MqttError.ConnectionRefused({ returnCode: 5 }))

/** A connect that fails with `errors` in turn, then succeeds with the number of calls; and a log of what happened. */
const scripted = (errors: ReadonlyArray<MqttError.MqttError>) => {
  const log: Array<string> = []
  let calls = 0
  const connect = Effect.suspend(() => {
    calls++
    log.push(`connect ${calls}`)
    const error = errors[calls - 1]
    return error === undefined ? Effect.succeed(calls) : Effect.fail(error)
  })
  const hooks: Reconnect.Hooks = {
    onReconnectWait: (attempt, failure) => Effect.sync(() => log.push(`wait ${attempt} ${failure.reason._tag}`)),
    onReconnectAttempt: (attempt) => Effect.sync(() => log.push(`attempt ${attempt}`))
  }
  return { connect, hooks, log }
}

describe("Reconnect.connectWithRetry", () => {
  it.effect("succeeds at once without stepping the schedule or calling a hook", () =>
    Effect.gen(function*() {
      const { connect, hooks, log } = scripted([])
      assert.strictEqual(yield* Reconnect.connectWithRetry(Schedule.recurs(0), undefined, connect, hooks), 1)
      assert.deepStrictEqual(log, ["connect 1"])
    }))

  it.effect("retries retryable failures by the schedule, the hooks around each attempt", () =>
    Effect.gen(function*() {
      const { connect, hooks, log } = scripted([transport("a"), transport("b")])
      assert.strictEqual(yield* Reconnect.connectWithRetry(Schedule.recurs(5), undefined, connect, hooks), 3)
      assert.deepStrictEqual(log, [
        "connect 1",
        "wait 1 TransportError",
        "attempt 1",
        "connect 2",
        "wait 2 TransportError",
        "attempt 2",
        "connect 3"
      ])
    }))

  it.effect("after: the error that ended the previous connection is stepped first", () =>
    Effect.gen(function*() {
      const { connect, hooks, log } = scripted([])
      assert.strictEqual(yield* Reconnect.connectWithRetry(Schedule.recurs(1), transport("lost"), connect, hooks), 1)
      assert.deepStrictEqual(log, ["wait 1 TransportError", "attempt 1", "connect 1"])
    }))

  it.effect("a non-retryable error ends it at once, with no hook", () =>
    Effect.gen(function*() {
      const { connect, hooks, log } = scripted([notAuthorized])
      const exit = yield* Effect.exit(Reconnect.connectWithRetry(Schedule.recurs(5), undefined, connect, hooks))
      assert.strictEqual(Reconnect.failureOf(exit), notAuthorized)
      assert.deepStrictEqual(log, ["connect 1"])
    }))

  it.effect("when the schedule gives up, the error it was stepped with is the result; no attempt is announced", () =>
    Effect.gen(function*() {
      const second = transport("second")
      const { connect, hooks, log } = scripted([transport("first"), second])
      const exit = yield* Effect.exit(Reconnect.connectWithRetry(Schedule.recurs(1), undefined, connect, hooks))
      assert.strictEqual(Reconnect.failureOf(exit), second)
      assert.deepStrictEqual(log, ["connect 1", "wait 1 TransportError", "attempt 1", "connect 2", "wait 2 TransportError"])
    }))

  it.effect("a defect is not retried", () =>
    Effect.gen(function*() {
      const { hooks, log } = scripted([])
      const exit = yield* Effect.exit(Reconnect.connectWithRetry(Schedule.recurs(5), undefined, Effect.die("boom"), hooks))
      assert.isTrue(Exit.hasDies(exit))
      assert.isUndefined(Reconnect.failureOf(exit))
      assert.deepStrictEqual(log, [])
    }))
})
