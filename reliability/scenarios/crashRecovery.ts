/**
 * Scenario "crash-recovery": a publisher process with the file session store is killed with SIGKILL at random
 * moments while QoS 1 or QoS 2 publishes are in flight, and started again each time; the store resumes what was in
 * flight. A subscriber in this process counts what arrives: every QoS 1 message at least once, every QoS 2 message
 * exactly once.
 *
 * The publisher (`reliability/children/crashPublisher.ts`) publishes `1..count` in order, one at a time, keeping its
 * own progress in a synced file, and uses `client.restored` on restart to tell whether the message it was publishing
 * is held by the store (wait for it) or was never stored (publish it again). Each run is killed after a random
 * number of publishes it reports complete (none: just after it connects, while it resumes), plus 0–3 ms, so kills
 * land while publishes are in flight; at most `count / (kills + 1)` per run, so every kill lands before the last
 * message, however fast the publisher is (a kill timed in milliseconds alone let a fast publisher finish first). Without a store that survives the
 * process, QoS 2 duplicates appear in every run (checked while writing this scenario).
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import * as Mosquitto from "../../test/utils/Mosquitto.ts"
import { root } from "./child.ts"
import { type Context, type Outcome, peakRss, random, type Scenario } from "./Scenario.ts"

const publisher = Path.join(root, "reliability", "children", "crashPublisher.ts")

export interface CrashRecoveryConfig {
  readonly qos: 1 | 2
  readonly count: number
  readonly kills: number
  readonly seed: number
}

export interface CrashRecoveryResult {
  readonly qos: 1 | 2
  readonly sent: number
  readonly kills: number
  readonly delivered: number
  readonly missing: ReadonlyArray<string>
  readonly duplicated: ReadonlyArray<string>
  readonly restarts: number
}

interface Run {
  readonly exitCode: number | null
  readonly killed: boolean
  readonly stderr: string
}

/** When to kill a run: once `messages` publishes are reported complete (0: once it is connected), `delayMs` later. */
interface Kill {
  readonly messages: number
  readonly delayMs: number
}

/** Runs the publisher until it exits, or kills it with SIGKILL as `kill` says. */
const runPublisher = (args: ReadonlyArray<string>, kill: Kill | undefined) =>
  Effect.callback<Run>((resume) => {
    const child = ChildProcess.spawn(process.execPath, ["--conditions=@effect-mqtt/source", publisher, ...args], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stderr = ""
    child.stderr.on("data", (chunk) => (stderr += chunk))
    let killed = false
    let timer = setTimeout(() => child.kill("SIGKILL"), 60_000)
    if (kill !== undefined) {
      let connected = false
      let completed = 0
      let armed = false
      child.stdout.on("data", (chunk: Buffer) => {
        const text = chunk.toString()
        connected ||= text.includes("connected")
        completed += text.split("done ").length - 1
        if (armed || !connected || completed < kill.messages) return
        armed = true
        clearTimeout(timer)
        timer = setTimeout(() => {
          killed = true
          child.kill("SIGKILL")
        }, kill.delayMs)
      })
    }
    child.on("exit", (exitCode) => {
      clearTimeout(timer)
      resume(Effect.succeed({ exitCode, killed, stderr }))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      child.kill("SIGKILL")
    })
  })

/** One run: a broker, a subscriber here, a publisher child killed `kills` times, then run to the end. */
export const run = (config: CrashRecoveryConfig) =>
  Effect.gen(function*() {
    const next = random(config.seed).next
    const broker = yield* Mosquitto.start()
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-mqtt-crash-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
    const topic = `crash/${config.qos}/${config.seed}`
    const subscriber = yield* MqttClient.make({
      url: broker.url,
      clientId: `crash-sub-${config.qos}-${config.seed}`,
      reconnect: Schedule.spaced("50 millis")
    })
    const subscription = yield* subscriber.subscription(topic, { qos: 2 })
    const seen = new Map<string, number>()
    const counting = yield* subscription.messages.pipe(
      Stream.runForEach((message) =>
        Effect.sync(() => {
          const key = new TextDecoder().decode(message.payload)
          seen.set(key, (seen.get(key) ?? 0) + 1)
        })
      ),
      Effect.forkChild
    )
    const args = [
      broker.url,
      `crash-pub-${config.qos}-${config.seed}`,
      Path.join(dir, "store"),
      Path.join(dir, "progress"),
      String(config.count),
      String(config.qos),
      topic
    ]
    let kills = 0
    let restarts = 0
    // Publishes completed per killed run at most: the kills all land before the last message.
    const perRun = Math.max(1, Math.floor(config.count / (config.kills + 1)))
    for (let attempt = 0; attempt < config.kills * 4 && kills < config.kills; attempt++) {
      const outcome = yield* runPublisher(args, {
        messages: Math.floor(next() * (perRun + 1)),
        delayMs: Math.floor(next() * 4)
      })
      restarts++
      if (outcome.killed) kills++
      else if (outcome.exitCode === 0) break
      else return yield* Effect.fail(new Error(`the publisher failed: ${outcome.stderr}`))
    }
    const last = yield* runPublisher(args, undefined)
    if (last.exitCode !== 0) return yield* Effect.fail(new Error(`the publisher failed: ${last.stderr}`))
    // Everything the publisher completed has reached the broker; wait (bounded) for the subscriber to have it all.
    const deadline = Date.now() + 20_000
    while (seen.size < config.count && Date.now() < deadline) yield* Effect.sleep("20 millis")
    yield* Fiber.interrupt(counting)
    const result: CrashRecoveryResult = {
      qos: config.qos,
      sent: config.count,
      kills,
      delivered: seen.size,
      missing: Array.from({ length: config.count }, (_, i) => String(i + 1)).filter((k) => !seen.has(k)),
      duplicated: [...seen].filter(([, n]) => n > 1).map(([k]) => k),
      restarts
    }
    return result
  }).pipe(Effect.scoped)

export const scenario: Scenario = {
  name: "crash-recovery",
  title: "Crash recovery with the file session store (SIGKILL)",
  proves:
    "a publisher killed with SIGKILL while publishing resumes from its file session store: every QoS 1 message " +
    "arrives, every QoS 2 message exactly once",
  run: (context: Context) =>
    Effect.gen(function*() {
      const count = context.mode === "full" ? 500 : 100
      const kills = context.mode === "full" ? 20 : 10
      const results: Array<CrashRecoveryResult> = []
      for (const qos of [1, 2] as const) {
        context.log(`QoS ${qos}: ${count} messages, ${kills} kills`)
        results.push(yield* run({ qos, count, kills, seed: context.seed + qos }))
      }
      const rows = results.map((r) => ({
        scenario: `Crash recovery, QoS ${r.qos} (${r.kills} × SIGKILL)`,
        sent: r.sent,
        delivered: r.delivered,
        lost: r.missing.length,
        duplicated: r.qos === 2 ? r.duplicated.length : undefined,
        reconnects: r.restarts,
        peakRssBytes: peakRss(),
        ok: r.missing.length === 0 && (r.qos === 1 || r.duplicated.length === 0) && r.kills === kills
      }))
      const outcome: Outcome = {
        rows,
        ok: rows.every((row) => row.ok),
        details: results.map((r) =>
          `QoS ${r.qos}: ${r.sent} messages, ${r.kills} kills, ${r.restarts} publisher starts; ` +
          `${r.delivered} distinct delivered, ${r.missing.length} missing, ${r.duplicated.length} delivered more than once` +
          (r.qos === 1 ? " (allowed at QoS 1)" : "")
        )
      }
      return outcome
    })
}
