/**
 * The reliability report (`npm run reliability`): runs every scenario of `reliability/scenarios/index.ts`, each in a
 * child process of its own (`reliability/scenario.ts`), prints their progress and then one table — scenario, messages
 * sent, delivered, lost, duplicated (QoS 2), reconnects, peak RSS — and, after a full run of every scenario, writes
 * RELIABILITY.md with the table, what each scenario proves and its details.
 *
 * Options: `--quick` (smaller counts, same scenarios: CI, a few minutes), `--seed=N` (default `RELIABILITY_SEED` or
 * random; printed, so a failure reproduces), `--only=a,b` (these scenarios), `--write` / `--no-write` (write
 * RELIABILITY.md or not; default: only after a full run of every scenario), `--list`. Exit code 1 when a scenario
 * failed or could not run. Needs Mosquitto (Debian: `apt-get install mosquitto`); the brokers it starts listen on
 * free loopback ports and are stopped with their scenario.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Mosquitto from "../test/utils/Mosquitto.ts"
import { root, spawnNode } from "./scenarios/child.ts"
import { scenarios } from "./scenarios/index.ts"
import { type Mode, type Outcome, type Row, type Scenario, seedFromEnv } from "./scenarios/Scenario.ts"

const args = process.argv.slice(2)
const flag = (name: string) => args.includes(`--${name}`)
const value = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)

if (flag("list")) {
  for (const s of scenarios) process.stdout.write(`${s.name.padEnd(16)} ${s.title}\n`)
  process.exit(0)
}

const mode: Mode = flag("quick") ? "quick" : "full"
const seed = value("seed") !== undefined ? Number(value("seed")) : seedFromEnv()
const only = value("only")?.split(",").filter((n) => n.length > 0)
const unknown = only?.filter((n) => !scenarios.some((s) => s.name === n)) ?? []
if (!Number.isInteger(seed) || unknown.length > 0) {
  process.stderr.write(`bad arguments: ${unknown.length > 0 ? `unknown scenario ${unknown.join(", ")}` : "--seed=N"}\n`)
  process.exit(2)
}
const selected = only === undefined ? scenarios : scenarios.filter((s) => only.includes(s.name))
const write = flag("write") || (!flag("no-write") && mode === "full" && only === undefined)

/** Per scenario: quick runs must fit CI; full runs are long (20,000 messages at 5 ms each take 100 s alone). */
const timeoutMillis = mode === "quick" ? 8 * 60_000 : 45 * 60_000

interface Ran {
  readonly scenario: Scenario
  readonly outcome: Outcome
  readonly millis: number
  readonly error: string | undefined
}

const failedRow = (scenario: Scenario): Row => ({
  scenario: scenario.title,
  sent: 0,
  delivered: 0,
  lost: 0,
  duplicated: undefined,
  reconnects: 0,
  peakRssBytes: 0,
  ok: false
})

const runOne = (scenario: Scenario) =>
  Effect.scoped(Effect.gen(function*() {
    const started = Date.now()
    process.stdout.write(`\n▶ ${scenario.name}: ${scenario.title}\n`)
    const child = yield* spawnNode("reliability/scenario.ts", [scenario.name, mode, String(seed)], {
      onLine: (line) => process.stdout.write(`${line}\n`)
    })
    const result = yield* Effect.exit(
      Effect.raceFirst(
        child.awaitMessage("result", timeoutMillis),
        Effect.flatMap(child.awaitExit(timeoutMillis), (exit) =>
          Effect.fail(`exited (${exit.code ?? exit.signal}) without a result:\n${child.output().slice(-4_000)}`))
      )
    )
    const millis = Date.now() - started
    if (result._tag === "Success") {
      const outcome = result.value["outcome"] as Outcome
      return { scenario, outcome, millis, error: undefined } satisfies Ran
    }
    const error = result.cause.reasons
      .map((r) => (r._tag === "Fail" ? String(r.error) : r._tag === "Die" ? String(r.defect) : "interrupted"))
      .join("; ")
    process.stdout.write(`✗ ${scenario.name} did not complete: ${error}\n`)
    return {
      scenario,
      outcome: { ok: false, rows: [failedRow(scenario)], details: [`Did not complete: ${error.slice(0, 2_000)}`] },
      millis,
      error
    } satisfies Ran
  }))

// ---------------------------------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------------------------------

const mib = (bytes: number) => (bytes > 0 ? `${(bytes / 1024 / 1024).toFixed(0)} MiB` : "–")
const count = (n: number) => n.toLocaleString("en-US")

const cells = (row: Row): Array<string> => [
  row.scenario,
  count(row.sent),
  count(row.delivered),
  count(row.lost),
  row.duplicated === undefined ? "n/a" : count(row.duplicated),
  count(row.reconnects),
  mib(row.peakRssBytes),
  row.ok ? "ok" : "FAIL"
]

const header = ["scenario", "sent", "delivered", "lost", "duplicated (QoS 2)", "reconnects", "peak RSS", "result"]

const textTable = (rows: ReadonlyArray<Row>): string => {
  const lines = [header, ...rows.map(cells)]
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)))
  const format = (line: ReadonlyArray<string>) =>
    line.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")
  return [format(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map((r) => format(cells(r)))].join("\n")
}

const markdownTable = (rows: ReadonlyArray<Row>): string =>
  [
    `| ${header.join(" | ")} |`,
    `| --- | ${header.slice(1).map(() => "---:").join(" | ")} |`,
    ...rows.map((r) => `| ${cells(r).join(" | ")} |`)
  ].join("\n")

const mosquittoVersion = (): string => {
  const bin = Mosquitto.binaryPath()
  if (bin === undefined) return "not installed"
  try {
    return execFileSync(bin, ["-h"], { encoding: "utf8" }).split("\n")[0]!.trim()
  } catch (error) {
    const stdout = (error as { stdout?: string }).stdout
    return typeof stdout === "string" && stdout.length > 0 ? stdout.split("\n")[0]!.trim() : "unknown version"
  }
}

const report = (ran: ReadonlyArray<Ran>, totalMillis: number): string => {
  const rows = ran.flatMap((r) => r.outcome.rows)
  const allOk = ran.every((r) => r.outcome.ok)
  return [
    "# Reliability",
    "",
    "What effect-mqtt promises — no message it accepted is lost, no QoS 2 message is delivered twice, faults end in a",
    "typed `MqttError` and a reconnect, memory stays bounded — checked against a real Mosquitto under injected faults.",
    "This file is written by `npm run reliability` (full run); `npm run reliability -- --quick` runs the same",
    "scenarios with smaller counts (CI). The scenarios live in `reliability/scenarios/`, the fault-injection harness",
    "in `test/utils/FaultProxy.ts` and `test/utils/HostileBroker.ts`, and `test/Reliability/` runs each scenario",
    "with small counts in `npm test`.",
    "",
    `Latest full run: ${new Date().toISOString()}, ` +
    `${allOk ? "**all scenarios passed**" : "**some scenarios FAILED**"} ` +
    `in ${(totalMillis / 60_000).toFixed(1)} min; seed ${seed} (\`npm run reliability -- --seed=${seed}\` replays ` +
    `its random choices); Node ${process.version}, ${mosquittoVersion()}, ${os.cpus().length} CPUs, ` +
    `${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB, ${os.type()} ${os.release()}.`,
    "",
    markdownTable(rows),
    "",
    "Columns: *sent* messages published; *delivered* distinct messages received; *lost* published (and acknowledged",
    "or still pending) but never received; *duplicated (QoS 2)* extra copies of QoS 2 messages (QoS 1 may repeat: at",
    "least once; n/a where no QoS 2 is sent); *reconnects* connections re-established, summed over the scenario's",
    "clients; *peak RSS* the high-water mark of the measured process (the scenario's own process, which holds every",
    "client, proxy and recorder of the scenario; for the slow consumer, the subscriber's process alone).",
    "",
    ...ran.flatMap((r) => [
      `## ${r.scenario.title}`,
      "",
      `\`${r.scenario.name}\` — ${r.scenario.proves}. ${(r.millis / 1000).toFixed(0)} s.`,
      "",
      ...r.outcome.details,
      ""
    ]),
    "## Adding a scenario",
    "",
    "Write `reliability/scenarios/NAME.ts` exporting a `Scenario` and append it to `reliability/scenarios/index.ts`;",
    "it then runs here, in `--quick` mode in CI, and (with small counts) from a test in `test/Reliability/`.",
    ""
  ].join("\n")
}

// ---------------------------------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------------------------------

const main = Effect.gen(function*() {
  if (!Mosquitto.isAvailable()) {
    process.stderr.write("Mosquitto is not installed (Debian: apt-get install mosquitto); the scenarios need it.\n")
    return 2
  }
  process.stdout.write(
    `reliability: ${mode} run of ${selected.map((s) => s.name).join(", ")}; seed ${seed} ` +
      `(npm run reliability -- ${mode === "quick" ? "--quick " : ""}--seed=${seed} replays it)\n`
  )
  const started = Date.now()
  const ran: Array<Ran> = []
  for (const scenario of selected) ran.push(yield* runOne(scenario))
  const totalMillis = Date.now() - started
  const rows = ran.flatMap((r) => r.outcome.rows)
  process.stdout.write(`\n${textTable(rows)}\n\n`)
  for (const r of ran) {
    process.stdout.write(`${r.outcome.ok ? "✓" : "✗"} ${r.scenario.name} (${(r.millis / 1000).toFixed(0)} s)\n`)
    for (const line of r.outcome.details) if (line.length > 0) process.stdout.write(`    ${line}\n`)
  }
  process.stdout.write(`\nseed ${seed}; ${(totalMillis / 1000).toFixed(0)} s\n`)
  if (write) {
    const file = path.join(root, "RELIABILITY.md")
    fs.writeFileSync(file, report(ran, totalMillis))
    process.stdout.write(`wrote ${path.relative(process.cwd(), file)}\n`)
  }
  return ran.every((r) => r.outcome.ok) ? 0 : 1
})

Effect.runPromise(main).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`reliability: ${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  }
)
