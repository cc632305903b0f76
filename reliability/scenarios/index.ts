/**
 * The scenarios of the reliability report, in the order `npm run reliability` runs them. To add one: write `reliability/scenarios/NAME.ts`
 * exporting a `Scenario` (see `Scenario.ts`: a name, a title, what it proves, and `run(context)` returning its table
 * rows), import it here and append it to `scenarios`. `run` gets the mode (`quick` for CI, `full` for RELIABILITY.md)
 * and a seed; it runs in a child process of its own, so its peak RSS is its own. A scenario that must crash a client
 * runs that client in a further child with `spawnNode` from `child.ts` and kills it with `kill("SIGKILL")`.
 */
import * as Blackhole from "./blackhole.ts"
import * as BrokerRestart from "./brokerRestart.ts"
import * as CrashRecovery from "./crashRecovery.ts"
import * as Hostile from "./hostile.ts"
import * as QosCuts from "./qosCuts.ts"
import type { Scenario } from "./Scenario.ts"
import * as SlowConsumer from "./slowConsumer.ts"

export const scenarios: ReadonlyArray<Scenario> = [
  QosCuts.scenario,
  Blackhole.scenario,
  BrokerRestart.scenario,
  Hostile.scenario,
  SlowConsumer.scenario,
  CrashRecovery.scenario
]
