/**
 * A black-holed network (sockets open, every byte dropped) against a real Mosquitto through `FaultProxy`: the client
 * (keepalive 1 s, ping timeout 1 s) detects it by keepalive within 1.5 × keepalive + ping timeout, both while
 * publishing and while idle, fails its reconnect attempts inside the black hole, reconnects once the network is
 * restored, and every message arrives (QoS 2 once). Real time, bounded. See `reliability/scenarios/blackhole.ts`.
 */
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { passed, runBlackhole } from "../../reliability/scenarios/blackhole.ts"
import { describeMosquitto } from "../utils/suites.ts"

describeMosquitto("Reliability: black hole", () => {
  it.live("detected by keepalive within 1.5 × keepalive + ping timeout, then reconnect and delivery", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const result = yield* runBlackhole({ rounds: 2, log: (line) => lines.push(line) })
      const context = lines.join("\n")
      assert.strictEqual(result.boundMillis, 2_500)
      assert.deepStrictEqual(result.rounds.map((r) => r.busy), [true, false], "one busy and one idle round")
      for (const round of result.rounds) {
        assert.strictEqual(round.reason, "KeepaliveTimeout", context)
        assert.isAtMost(round.detectionMillis, result.boundMillis, context)
        assert.isAtLeast(round.failedAttempts, 1, context)
      }
      assert.deepStrictEqual(result.lost, [], context)
      assert.deepStrictEqual(result.duplicatedQos2, [], context)
      assert.strictEqual(result.delivered, result.sent)
      assert.isTrue(passed(result))
    }), 60_000)
})
