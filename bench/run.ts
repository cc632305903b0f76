/**
 * `npm run bench`: effect-mqtt against MQTT.js 5 and a raw client (`net` + `mqtt-packet`), in one run, against one
 * broker. It owns the run: the broker (its own Mosquitto on a free loopback port, the in-process Aedes with
 * `--broker aedes`, or any broker with `--url`), one fresh child process per case, client and round (`child.ts`,
 * clients in rotating order), the codec benchmark (`codec.ts`) as scenario 8, the Markdown report on stdout (progress
 * on stderr) and the JSON under `bench/results/` (a timestamped file and `latest.json`). Every child is bounded by a
 * deadline and killed when it passes it, and when the run ends or is interrupted.
 *
 * Options: `--quick` (1/10 of the counts, 2 rounds, 200 connections: under a minute), `--scenario N` (repeatable or
 * `2,5`), `--rounds R` (default 5), `--clients effect-mqtt,mqttjs,raw`, `--url mqtt://host:port`,
 * `--broker mosquitto|aedes`, `--timeout S` (bound on each child), `--profile DIR` (a CPU profile of each child's
 * measured window, written to DIR), `--heap-snapshot DIR` (a heap snapshot of each connections child while its
 * clients idle).
 * Nothing here is an assertion: the exit code is 1 only when a round failed.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { NodeRuntime } from "@effect/platform-node"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Aedes from "../test/utils/Aedes.ts"
import * as Mosquitto from "../test/utils/Mosquitto.ts"
import {
  caseMarkdown,
  type CaseReport,
  caseReport,
  codecMarkdown,
  type CodecRow,
  parseCodec,
  type Run,
  targets,
  targetsMarkdown,
  times
} from "./report.ts"
import {
  type CaseDef,
  type ChildResult,
  type ChildSpec,
  type ClientName,
  clientLabel,
  clientNames,
  makeCases
} from "./scenarios.ts"

const benchDir = path.dirname(fileURLToPath(import.meta.url))
const rootDir = path.resolve(benchDir, "..")
const resultsDir = path.join(benchDir, "results")

class BenchError extends Data.TaggedError("BenchError")<{ readonly message: string }> {}

// ---------------------------------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------------------------------

const usage = `usage: npm run bench -- [--quick] [--scenario N]... [--rounds R] [--clients a,b]
                            [--url URL | --broker aedes] [--timeout S] [--connections N] [--profile DIR]
                            [--heap-snapshot DIR]
  --quick          1/10 of the counts, 2 rounds, 200 connections (under a minute)
  --scenario N     run scenario N only (1..8; repeat or comma-separate for several)
  --rounds R       rounds per scenario (default 5; --quick: 2)
  --clients LIST   clients to measure (default effect-mqtt,mqttjs,raw)
  --url URL        use this broker instead of starting Mosquitto
  --broker NAME    mosquitto (default: started on a free loopback port) or aedes (in this process)
  --timeout S      bound on each child, seconds (default 30 with --quick, else 180)
  --connections N  clients of scenario 7 (default 1000; --quick: 200): RSS per connection moves in steps with
                   V8's heap sizing, so compare more than one count
  --profile DIR    CPU-profile each child's measured window (first publish to last delivery) into DIR;
                   summarise with: npx node bench/profile.ts DIR/FILE.cpuprofile
  --heap-snapshot DIR  heap snapshot of each scenario 7 child while its clients idle, into DIR;
                   summarise with: npx node bench/heap.ts DIR/FILE.heapsnapshot --per N`

interface Settings {
  readonly quick: boolean
  readonly scenarios: ReadonlySet<number> | undefined
  readonly rounds: number
  readonly clients: ReadonlyArray<ClientName>
  readonly url: string | undefined
  readonly broker: "mosquitto" | "aedes"
  readonly profileDir: string | undefined
  readonly heapSnapshotDir: string | undefined
  readonly timeoutMs: number | undefined
  readonly connections: number | undefined
}

const parseSettings = (argv: ReadonlyArray<string>): Settings => {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: "boolean", default: false },
      scenario: { type: "string", multiple: true },
      rounds: { type: "string" },
      clients: { type: "string" },
      url: { type: "string" },
      broker: { type: "string", default: "mosquitto" },
      profile: { type: "string" },
      "heap-snapshot": { type: "string" },
      timeout: { type: "string" },
      connections: { type: "string" },
      help: { type: "boolean", default: false }
    }
  })
  if (values.help) {
    console.log(usage)
    process.exit(0)
  }
  const bad = (message: string): never => {
    console.error(`${message}\n${usage}`)
    process.exit(2)
  }
  const scenarios = values.scenario?.flatMap((s) => s.split(",")).map((s) => Number(s.trim()))
  if (scenarios?.some((n) => !Number.isInteger(n) || n < 1 || n > 8)) bad(`--scenario takes 1..8`)
  const rounds = values.rounds === undefined ? (values.quick ? 2 : 5) : Number(values.rounds)
  if (!Number.isInteger(rounds) || rounds < 1) bad(`--rounds takes a positive integer`)
  const clients = values.clients === undefined
    ? [...clientNames]
    : values.clients.split(",").map((c) => c.trim() as ClientName)
  if (clients.some((c) => !clientNames.includes(c))) bad(`--clients takes ${clientNames.join(", ")}`)
  if (values.broker !== "mosquitto" && values.broker !== "aedes") bad(`--broker takes mosquitto or aedes`)
  const timeout = values.timeout === undefined ? undefined : Number(values.timeout)
  if (timeout !== undefined && !(timeout > 0)) bad(`--timeout takes a positive number of seconds`)
  const connections = values.connections === undefined ? undefined : Number(values.connections)
  if (connections !== undefined && !(Number.isInteger(connections) && connections > 0)) {
    bad(`--connections takes a positive integer`)
  }
  return {
    connections,
    quick: values.quick,
    scenarios: scenarios === undefined ? undefined : new Set(scenarios),
    rounds,
    clients,
    url: values.url,
    broker: values.broker as "mosquitto" | "aedes",
    profileDir: values.profile === undefined ? undefined : path.resolve(values.profile),
    heapSnapshotDir: values["heap-snapshot"] === undefined ? undefined : path.resolve(values["heap-snapshot"]),
    timeoutMs: timeout === undefined ? undefined : timeout * 1000
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------------------------------

const packageVersion = (name: string): string => {
  try {
    const json = JSON.parse(fs.readFileSync(path.join(rootDir, "node_modules", name, "package.json"), "utf8"))
    return String(json.version)
  } catch {
    return "unknown"
  }
}

const mosquittoVersion = (): string => {
  const bin = Mosquitto.binaryPath()
  if (bin === undefined) return "not installed"
  const out = spawnSync(bin, ["-h"], { encoding: "utf8", timeout: 5_000 })
  return `${out.stdout ?? ""}${out.stderr ?? ""}`.split("\n")[0]?.trim() || "unknown"
}

interface Broker {
  readonly url: string
  readonly description: string
}

const startBroker = (settings: Settings) =>
  Effect.gen(function*() {
    if (settings.url !== undefined) {
      return { url: settings.url, description: `external broker at ${settings.url}` } satisfies Broker
    }
    if (settings.broker === "aedes") {
      const aedes = yield* Aedes.start()
      return {
        url: aedes.url,
        description: `Aedes ${packageVersion("aedes")} in the benchmark's parent process (it competes with the ` +
          `children for the CPU), ${aedes.url}`
      } satisfies Broker
    }
    if (!Mosquitto.isAvailable()) {
      return yield* new BenchError({
        message: "mosquitto is not installed (Debian: apt-get install mosquitto); use --url or --broker aedes"
      })
    }
    const mosquitto = yield* Mosquitto.start({
      // 100 in flight both ways, and nothing dropped for queue limits while a subscriber catches up.
      maxInflightMessages: 1_000,
      maxQueuedMessages: 1_000_000,
      // A thousand connections per round would otherwise flood the harness's log buffer.
      extraConfig: ["connection_messages false"]
    })
    return {
      url: mosquitto.url,
      description: `${mosquittoVersion()} (own instance, max_inflight_messages 1000, max_queued_messages ` +
        `1000000), ${mosquitto.url}`
    } satisfies Broker
  })

// ---------------------------------------------------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------------------------------------------------

const running = new Set<ChildProcess>()
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL")
})

const isDone = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

/** Runs `node <args>` to its end; the output, or why it failed. Killed when interrupted. */
const runNode = (
  args: ReadonlyArray<string>,
  timeoutMs: number
): Effect.Effect<{ readonly stdout: string; readonly stderr: string; readonly code: number | null }, BenchError> =>
  Effect.callback<{ stdout: string; stderr: string; code: number | null }, BenchError>((resume) => {
    const child = spawn(process.execPath, [...args], { cwd: rootDir, stdio: ["ignore", "pipe", "pipe"] })
    running.add(child)
    let stdout = ""
    let stderr = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-8_000)
    })
    child.once("error", (error) => {
      running.delete(child)
      resume(Effect.fail(new BenchError({ message: `cannot start node: ${error.message}` })))
    })
    child.once("close", (code, signal) => {
      running.delete(child)
      resume(Effect.succeed({ stdout, stderr, code: code ?? (signal === null ? null : -1) }))
    })
    return Effect.sync(() => {
      if (!isDone(child)) child.kill("SIGKILL")
      running.delete(child)
    })
  }).pipe(
    Effect.timeoutOrElse({
      duration: timeoutMs,
      orElse: () => Effect.fail(new BenchError({ message: `killed after ${timeoutMs} ms without finishing` }))
    })
  )

const lastLines = (text: string, n: number) => text.trim().split("\n").slice(-n).join(" | ")

const runChild = (spec: ChildSpec): Effect.Effect<ChildResult, BenchError> =>
  Effect.gen(function*() {
    const args = [
      "--conditions=@effect-mqtt/source",
      "--expose-gc",
      path.join(benchDir, "child.ts"),
      JSON.stringify(spec)
    ]
    const out = yield* runNode(args, spec.deadlineMs + 15_000)
    const line = (tag: string) => out.stdout.split("\n").find((l) => l.startsWith(tag))
    const result = line("BENCH_RESULT ")
    if (result !== undefined) return JSON.parse(result.slice("BENCH_RESULT ".length)) as ChildResult
    const error = line("BENCH_ERROR ")
    return yield* new BenchError({
      message: error !== undefined
        ? error.slice("BENCH_ERROR ".length)
        : `exited with code ${out.code} and no result; stderr: ${lastLines(out.stderr, 5) || "(empty)"}`
    })
  })

// ---------------------------------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------------------------------

const fmt = (x: number, digits = 0) =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

const describeResult = (def: CaseDef, r: ChildResult): string => {
  const cpu = `${fmt(r.cpuUsPerMessage, 1)} µs CPU/msg`
  switch (def.workload._tag) {
    case "Latency":
      return `p50 ${fmt(r.latency?.p50 ?? 0)} µs, p99 ${fmt(r.latency?.p99 ?? 0)} µs, ${cpu}`
    case "Connections":
      return `${fmt(r.connections?.connectMs ?? 0)} ms to connect ${r.delivered}, ` +
        `${fmt((r.connections?.rssPerConnection ?? 0) / 1024, 1)} KB RSS/conn, ` +
        `${fmt(r.connections?.closeMs ?? 0)} ms to close them`
    case "Throughput": {
      const rate = def.workload.params.payloadSize >= 1024 ? `${fmt(r.mbPerSecond, 1)} MB/s` : `${fmt(r.rate)} msgs/s`
      return `${rate}, ${r.delivered}/${r.expected} delivered, ${cpu}, peak RSS ${fmt(r.memory.maxRss / 2 ** 20)} MB`
    }
  }
}

let childCounter = 0
const runId = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`

const runCase = (def: CaseDef, settings: Settings, broker: Broker, index: string) =>
  Effect.gen(function*() {
    const runs: Array<Run> = []
    for (let round = 1; round <= settings.rounds; round++) {
      // Rotate the order every round, so that no client always runs first (or right after another).
      const shift = (round - 1) % settings.clients.length
      const order = [...settings.clients.slice(shift), ...settings.clients.slice(0, shift)]
      for (const client of order) {
        const name = `${def.id}-${client}-r${round}`
        const spec: ChildSpec = {
          client,
          caseId: def.id,
          url: broker.url,
          prefix: `b${runId}${(childCounter++).toString(36)}`,
          workload: def.workload,
          deadlineMs: settings.timeoutMs ?? def.deadlineMs,
          ...(settings.profileDir !== undefined
            ? { profileFile: path.join(settings.profileDir, `${name}.cpuprofile`) }
            : {}),
          ...(settings.heapSnapshotDir !== undefined && def.workload._tag === "Connections"
            ? { heapSnapshotFile: path.join(settings.heapSnapshotDir, `${name}.heapsnapshot`) }
            : {})
        }
        const outcome = yield* Effect.result(runChild(spec))
        const label = `${index} ${def.id}] round ${round}/${settings.rounds} ${clientLabel[client]}`
        if (outcome._tag === "Success") {
          runs.push({ round, client, ok: true, result: outcome.success })
          yield* Console.error(`[${label}: ${describeResult(def, outcome.success)}`)
        } else {
          runs.push({ round, client, ok: false, error: outcome.failure.message })
          yield* Console.error(`[${label}: FAILED ${outcome.failure.message}`)
        }
      }
    }
    return caseReport(def, runs, settings.clients)
  })

const runCodec = (settings: Settings) =>
  Effect.gen(function*() {
    yield* Console.error(`[codec] bench/codec.ts${settings.quick ? " --quick" : ""}`)
    const out = yield* runNode(
      ["--conditions=@effect-mqtt/source", path.join(benchDir, "codec.ts"), ...(settings.quick ? ["--quick"] : [])],
      settings.quick ? 60_000 : 240_000
    )
    const rows = parseCodec(out.stdout)
    if (rows.length === 0) {
      return yield* new BenchError({
        message: `bench/codec.ts printed no rows (code ${out.code}): ${lastLines(out.stdout + out.stderr, 5)}`
      })
    }
    return rows
  })

const program = Effect.gen(function*() {
  const settings = parseSettings(process.argv.slice(2))
  const startedAt = new Date()
  const wanted = (scenario: number) => settings.scenarios === undefined || settings.scenarios.has(scenario)
  const cases = makeCases(settings.quick, settings.connections).filter((c) => wanted(c.scenario))
  const needsBroker = cases.length > 0
  const broker: Broker = needsBroker ? yield* startBroker(settings) : { url: "", description: "none (codec only)" }
  for (const dir of [settings.profileDir, settings.heapSnapshotDir]) {
    if (dir !== undefined) fs.mkdirSync(dir, { recursive: true })
  }

  const versions = {
    node: process.version,
    effect: packageVersion("effect"),
    "effect-mqtt": JSON.parse(fs.readFileSync(path.join(rootDir, "package.json"), "utf8")).version as string,
    mqtt: packageVersion("mqtt"),
    "mqtt-packet": packageVersion("mqtt-packet"),
    mosquitto: mosquittoVersion()
  }
  const cpus = os.cpus()
  const machine = {
    cpuModel: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    totalMemoryGiB: Math.round(os.totalmem() / 2 ** 30)
  }
  yield* Console.error(
    `bench: ${settings.quick ? "quick" : "full"}, ${settings.rounds} rounds, clients ${settings.clients.join(", ")}; ` +
      `broker: ${broker.description}`
  )

  const reports: Array<CaseReport> = []
  for (const [i, def] of cases.entries()) {
    reports.push(yield* runCase(def, settings, broker, `${i + 1}/${cases.length}`))
  }
  let codecRows: ReadonlyArray<CodecRow> = []
  let codecError: string | undefined
  if (wanted(8)) {
    const codec = yield* Effect.result(runCodec(settings))
    if (codec._tag === "Success") codecRows = codec.success
    else codecError = codec.failure.message
  }
  const finishedAt = new Date()
  const targetLines = targets(reports, codecRows)

  // ----- Markdown on stdout -----
  const header = [
    `## Benchmark results: ${settings.quick ? "quick" : "full"} run, ${startedAt.toISOString()}`,
    "",
    `- Machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.totalMemoryGiB} GiB, ${machine.os}`,
    `- Versions: Node ${versions.node}, effect ${versions.effect}, effect-mqtt ${versions["effect-mqtt"]}, ` +
    `mqtt (MQTT.js) ${versions.mqtt}, mqtt-packet ${versions["mqtt-packet"]}, ${versions.mosquitto}`,
    `- Broker: ${broker.description}`,
    `- ${settings.rounds} rounds per case, client order rotating each round, one fresh child process per client and ` +
    `round; figures are medians with (min–max); took ${fmt((finishedAt.getTime() - startedAt.getTime()) / 1000)} s`,
    `- CPU µs/msg: the client process's user + system CPU (publisher and subscribers together) from the first ` +
    `publish to the last delivery, per delivered message. Peak RSS: the kernel's high-water mark ` +
    `(\`resourceUsage().maxRSS\`); RSS growth: that minus the RSS after loading the library, before connecting. ` +
    `Peak heap: \`heapUsed\`, sampled every 20 ms.`
  ]
  const sections = [
    header.join("\n"),
    ...reports.map(caseMarkdown),
    ...(wanted(8) ? [codecMarkdown(codecRows, codecError)] : []),
    ...(targetLines.length > 0 && settings.clients.includes("effect-mqtt") ? [targetsMarkdown(targetLines)] : [])
  ]
  yield* Console.log(sections.join("\n\n"))

  // ----- JSON under bench/results/ -----
  const json = {
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    mode: settings.quick ? "quick" : "full",
    rounds: settings.rounds,
    scenarios: settings.scenarios === undefined ? "all" : [...settings.scenarios].sort(),
    clients: settings.clients,
    broker,
    versions,
    machine,
    cases: reports.map((r) => ({
      id: r.def.id,
      scenario: r.def.scenario,
      title: r.def.title,
      workload: r.def.workload,
      summary: r.clients,
      ratios: r.ratios,
      runs: r.runs
    })),
    codec: { rows: codecRows, ...(codecError !== undefined ? { error: codecError } : {}) },
    targets: targetLines
  }
  fs.mkdirSync(resultsDir, { recursive: true })
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-")
  const subset = settings.scenarios === undefined ? "" : `-s${[...settings.scenarios].sort().join("")}`
  const file = path.join(resultsDir, `${stamp}-${settings.quick ? "quick" : "full"}${subset}.json`)
  const text = JSON.stringify(json, null, 2) + "\n"
  fs.writeFileSync(file, text)
  fs.writeFileSync(path.join(resultsDir, "latest.json"), text)
  const failures = reports.flatMap((r) => r.runs.filter((run) => !run.ok)).length + (codecError !== undefined ? 1 : 0)
  yield* Console.error(
    `bench: results in ${path.relative(rootDir, file)} and bench/results/latest.json; ` +
      `${fmt((finishedAt.getTime() - startedAt.getTime()) / 1000, 1)} s; ` +
      (failures > 0 ? `${failures} failed` : "no failures") +
      (reports.length > 0 && settings.clients.includes("effect-mqtt") && settings.clients.includes("mqttjs")
        ? `; effect-mqtt / MQTT.js: ${reports.map((r) => `${r.def.id} ${times(r.ratios.primary.vsMqttjs)}`).join(", ")}`
        : "")
  )
  if (failures > 0) process.exitCode = 1
})

NodeRuntime.runMain(Effect.scoped(program))
