/**
 * Runs one reliability scenario in this process and prints its outcome: the child side of `reliability/run.ts`, which
 * starts one such process per scenario so that each scenario's peak RSS is its own and a scenario that crashes or
 * hangs cannot take the others with it. Progress lines go to stdout as they come; the outcome is the JSON line
 * `{"event":"result","outcome":…}` (exit code 0 even when the outcome is not ok; 1 when the scenario could not run).
 *
 * Usage: node --conditions=@effect-mqtt/source reliability/scenario.ts NAME quick|full SEED
 */
import * as Effect from "effect/Effect"
import { scenarios } from "./scenarios/index.ts"
import type { Mode } from "./scenarios/Scenario.ts"

const [name, modeText, seedText] = process.argv.slice(2)
const scenario = scenarios.find((s) => s.name === name)
const mode: Mode = modeText === "full" ? "full" : "quick"
const seed = Number(seedText)
if (scenario === undefined || !Number.isInteger(seed)) {
  process.stderr.write(`usage: scenario.ts ${scenarios.map((s) => s.name).join("|")} quick|full SEED\n`)
  process.exit(2)
}

Effect.runPromise(
  Effect.scoped(scenario.run({ mode, seed, log: (line) => process.stdout.write(`  ${line}\n`) }))
).then(
  (outcome) => {
    process.stdout.write(`${JSON.stringify({ event: "result", outcome })}\n`)
    process.exit(0)
  },
  (error: unknown) => {
    process.stderr.write(`scenario ${name} could not run: ${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  }
)
