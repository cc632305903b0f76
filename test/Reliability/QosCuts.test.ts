/**
 * Connection cuts at every stage of the QoS 1 and QoS 2 flows, both ways, with persistent sessions against a real
 * Mosquitto through `FaultProxy` (see `reliability/scenarios/qosCuts.ts`): 0 lost, 0 QoS 2 duplicates. The suite runs
 * 48 seeded cut points (36 stage cuts, every stage three times, delivered and lost, and 12 byte cuts);
 * `npm run reliability` runs 320. The seed is printed; `RELIABILITY_SEED=<seed>` replays a run.
 */
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { describeCut, passed, runQosCuts, stageName, stages } from "../../reliability/scenarios/qosCuts.ts"
import { seedFromEnv } from "../../reliability/scenarios/Scenario.ts"
import { describeMosquitto } from "../utils/suites.ts"

const seed = seedFromEnv()

describeMosquitto("Reliability: connection cut during QoS 1 and QoS 2 flows", () => {
  it.live(`48 cut points, persistent sessions: 0 lost, 0 QoS 2 duplicates (seed ${seed})`, () =>
    Effect.gen(function*() {
      console.log(`[reliability] qos cuts: seed ${seed} (RELIABILITY_SEED=${seed} replays it)`)
      const lines: Array<string> = []
      const result = yield* runQosCuts({ trials: 48, seed, log: (line) => lines.push(line) })
      const context = `seed ${seed}\n${lines.join("\n")}`
      assert.deepStrictEqual(result.lost, [], `lost messages; ${context}`)
      assert.deepStrictEqual(result.duplicatedQos2, [], `QoS 2 duplicates; ${context}`)
      assert.deepStrictEqual(result.failedPublishes, [], `failed publishes; ${context}`)
      for (const trial of result.trials) {
        assert.isTrue(trial.fired, `the cut fired: ${describeCut(trial.cut)}; ${context}`)
        assert.isTrue(trial.reconnected, `the client reconnected: ${describeCut(trial.cut)}; ${context}`)
        assert.isTrue(trial.completed, `the batch completed: ${describeCut(trial.cut)}; ${context}`)
      }
      for (const stage of stages) assert.isTrue(result.cutsByStage.has(stageName(stage)), `${stageName(stage)} was cut`)
      assert.isTrue(passed(result))
    }), 240_000)
})
