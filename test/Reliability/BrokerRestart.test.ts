/**
 * Mosquitto (persistence on) restarted several times during a continuous QoS 1 stream between two effect-mqtt
 * clients with persistent sessions: every message arrives. The suite runs 3 restarts over 1,500 messages;
 * `npm run reliability` runs 20 over 10,000. See `reliability/scenarios/brokerRestart.ts`.
 */
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { runBrokerRestart } from "../../reliability/scenarios/brokerRestart.ts"
import { describeMosquitto } from "../utils/suites.ts"

describeMosquitto("Reliability: broker restart loop", () => {
  it.live("3 restarts during 1,500 QoS 1 messages: all arrive", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const result = yield* runBrokerRestart({ messages: 1_500, restarts: 3, log: (line) => lines.push(line) })
      const context = lines.join("\n")
      assert.strictEqual(result.restarts, 3)
      assert.deepStrictEqual(result.failedPublishes, [], context)
      assert.deepStrictEqual(result.lost, [], context)
      assert.strictEqual(result.delivered, 1_500)
      // Each restart reconnects both clients.
      assert.isAtLeast(result.reconnects, 2 * 3, context)
    }), 120_000)
})
