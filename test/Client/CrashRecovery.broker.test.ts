/**
 * Crash recovery with the file session store: the reliability scenario `crash-recovery` with small counts. A
 * publisher process is killed with SIGKILL ten times while it publishes; every QoS 1 message arrives, every QoS 2
 * message exactly once. Seeded (the seed is printed; `CRASH_SEED` repeats a run).
 */
import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import * as CrashRecovery from "../../reliability/scenarios/crashRecovery.ts"
import { describeMosquitto } from "../utils/suites.ts"

const check = (qos: 1 | 2) =>
  Effect.gen(function*() {
    const seed = Number(process.env.CRASH_SEED ?? Date.now() % 100_000)
    console.log(`crash recovery QoS ${qos}: seed ${seed} (set CRASH_SEED to repeat)`)
    const result = yield* CrashRecovery.run({ qos, count: 150, kills: 10, seed })
    console.log(`QoS ${qos}: ${result.kills} kills, ${result.delivered}/${result.sent} delivered, ${result.duplicated.length} duplicated`)
    // Kills are timed by completed publishes, at most count / (kills + 1) per run: all ten land before the end.
    assert.strictEqual(result.kills, 10, "the publisher was killed ten times while publishing")
    assert.deepStrictEqual(result.missing, [], `seed ${seed}: every message arrives`)
    if (qos === 2) assert.deepStrictEqual(result.duplicated, [], `seed ${seed}: QoS 2 exactly once`)
  })

describeMosquitto("crash recovery with the file session store (SIGKILL)", () => {
  it.live("QoS 1: every message arrives at least once across 10 kills", () => check(1), 120_000)
  it.live("QoS 2: every message arrives exactly once across 10 kills [MQTT-4.3.3-1] [MQTT-4.4.0-1]", () => check(2), 120_000)
})
