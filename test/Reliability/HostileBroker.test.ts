/**
 * The client against a hostile broker (`test/utils/HostileBroker.ts`, a real TCP server): every forbidden case ends
 * the connection with a typed `MqttError` — `MalformedPacket` or `ProtocolViolation`, the reason of the `Disconnected`
 * event — closed by the client, then a reconnect and a publish that succeeds; every tolerated case (acknowledgements
 * for unknown ids, floods faster than the consumer) leaves the connection up and working. No exception escapes, and
 * memory stays bounded: an oversize packet is refused from its header, long before the 256 MiB it announces could
 * be buffered. See `reliability/scenarios/hostile.ts`, which the reliability report runs too.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { ARRAY_BUFFER_BOUND, RSS_GROWTH_BOUND, runHostileCase } from "../../reliability/scenarios/hostile.ts"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import { clientId, failureOf, options } from "../utils/clients.ts"
import * as HostileBroker from "../utils/HostileBroker.ts"

const MiB = 1024 * 1024

describe("Reliability: hostile broker", () => {
  it.live.each(HostileBroker.cases)("$expect: $name", (hostile) =>
    Effect.gen(function*() {
      const outcome = yield* runHostileCase(hostile)
      const context = JSON.stringify(outcome)
      assert.strictEqual(outcome.observed, hostile.expect, context)
      assert.deepStrictEqual(outcome.escaped, [], "no uncaught exception or unhandled rejection")
      const connected = hostile.expect === "tolerated" ? "stayed connected" : "reconnected"
      assert.isTrue(outcome.reconnected, `${connected}: ${context}`)
      assert.isTrue(outcome.usableAfter, `a publish succeeds afterwards: ${context}`)
      if (hostile.expect !== "tolerated") assert.isTrue(outcome.closedByClient, `the client closed it: ${context}`)
      assert.isUndefined(outcome.problem, context)
      assert.strictEqual(outcome.received, outcome.sent, "every flooded message delivered")
      assert.isAtMost(outcome.arrayBufferGrowth, ARRAY_BUFFER_BOUND, context)
      assert.isAtMost(outcome.rssGrowth, RSS_GROWTH_BOUND, context)
      if (hostile.attack._tag === "Oversize" || hostile.attack._tag === "Raw") {
        // Refused from the header: nothing near the announced size (256 MiB, 1 GiB) is ever allocated.
        assert.isAtMost(outcome.arrayBufferGrowth, 8 * MiB, context)
      }
    }), 60_000)

  const connack = HostileBroker.encode({ _tag: "Connack", sessionPresent: false, returnCode: 0 })
  const handshakes = [
    {
      name: "garbage in the same read as the CONNACK",
      bytes: Uint8Array.from([...connack, 0x00, 0x00]),
      reason: "MalformedPacket"
    },
    {
      name: "a PUBLISH before the CONNACK",
      bytes: HostileBroker.rawPublish(0x30, [0x61], undefined),
      reason: "ProtocolViolation"
    }
  ] as const

  it.live.each(handshakes)("handshake: $name fails the connect with $reason; a reconnect gets through", (c) =>
    Effect.gen(function*() {
      const broker = yield* HostileBroker.start({ script: [], connack: (n) => (n <= 2 ? c.bytes : undefined) })
      const error = yield* failureOf(MqttClient.make(options(broker.url, { clientId: clientId("hs") })))
      assert.strictEqual(error.reason._tag, c.reason)
      assert.strictEqual((yield* broker.awaitClosed(1)).closedBy, "client")

      // Connection 2 is hostile too, 3 behaves: a client with reconnect gets through and keeps working.
      const client = yield* MqttClient.make(
        options(broker.url, { clientId: clientId("hs"), reconnect: Schedule.spaced("20 millis") })
      )
      assert.strictEqual(broker.connections.length, 3)
      assert.strictEqual((yield* broker.awaitClosed(2)).closedBy, "client")
      assert.deepStrictEqual(yield* SubscriptionRef.get(client.status), { _tag: "Connected", sessionPresent: false })
      assert.isNumber(yield* client.publish({ topic: "hostile/after", payload: "after", qos: 1 }))
    }))
})
