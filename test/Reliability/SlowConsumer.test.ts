/**
 * A slow consumer (5 ms per message) in a child process of its own, fed 2,000 QoS 1 messages of 16 KiB as fast as
 * the publisher can: nothing is lost and the subscriber process's peak RSS stays under `RSS_BOUND`. The reliability
 * report runs 2,000 and 20,000 and checks that the retained memory does not grow with the count. See
 * `reliability/scenarios/slowConsumer.ts`.
 */
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { RSS_BOUND, runSlowConsumer } from "../../reliability/scenarios/slowConsumer.ts"
import { describeMosquitto } from "../utils/suites.ts"

describeMosquitto("Reliability: slow consumer", () => {
  it.live("2,000 QoS 1 messages to a subscriber taking 5 ms each: none lost, peak RSS bounded", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const result = yield* runSlowConsumer({ messages: 2_000, log: (line) => lines.push(line) })
      const context = lines.join("\n")
      assert.strictEqual(result.unique, 2_000, context)
      assert.strictEqual(result.duplicates, 0, context)
      assert.strictEqual(result.outOfOrder, 0, `in order: ${context}`)
      assert.strictEqual(result.disconnects, 0, context)
      assert.isAtLeast(result.consumeMillis, 2_000 * 5, "the consumer really was slow")
      assert.isBelow(result.publishMillis, result.consumeMillis / 2, "the publisher was faster than the consumer")
      assert.isAtMost(result.maxRss, RSS_BOUND, context)
    }), 120_000)
})
