import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, Result } from "effect"
import * as ConnectOptions from "../../src/Connection/ConnectOptions.ts"
import * as NodeTransport from "../../src/Connection/NodeTransport.ts"

const resolve = (options: ConnectOptions.ConnectOptions) => {
  const result = ConnectOptions.resolve(options, new Uint8Array(6))
  if (Result.isFailure(result)) throw new Error(result.failure.message)
  return result.success
}

const logsOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const logger = Logger.make((options) => {
      lines.push(`${options.logLevel}: ${String(options.message)}`)
    })
    yield* effect.pipe(Effect.provide(Logger.layer([logger])))
    return lines
  })

describe("NodeTransport", () => {
  it.effect("TLS verification is on by default and turning it off is logged once, as a warning", () =>
    Effect.gen(function*() {
      const verified = yield* logsOf(NodeTransport.make(resolve({ url: "mqtts://broker.example:8883" })))
      assert.deepStrictEqual(verified, [])
      const options = yield* NodeTransport.tlsConnectionOptions(resolve({ url: "mqtts://broker.example:8883" }))
      assert.strictEqual(options.rejectUnauthorized, true)
      assert.strictEqual(options.servername, "broker.example")
      const unverified = yield* logsOf(
        NodeTransport.make(resolve({ url: "mqtts://broker.example:8883", tls: { verify: "none" } }))
      )
      assert.strictEqual(unverified.length, 1)
      assert.match(unverified[0]!, /^Warn(ing)?: TLS certificate verification is off for mqtts:\/\/broker\.example:8883/i)
    }))

  it.effect("an unreadable client key or a wrong passphrase is a typed BadMqttOption before dialing", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        NodeTransport.make(resolve({ url: "mqtts://broker.example", tls: { cert: "not a certificate", key: "not a key" } }))
      )
      assert.strictEqual(error.reason._tag, "BadMqttOption")
      assert.isFalse(error.isRetryable)
    }))
})
