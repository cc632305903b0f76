/**
 * Crash recovery with the file session store: a publisher process is killed with SIGKILL at random moments while
 * QoS 1 or QoS 2 publishes are in flight, and started again each time; its session store resumes what was in
 * flight. A subscriber in this process counts what arrives: every QoS 1 message at least once, every QoS 2 message
 * exactly once. Seeded, so a failing run can be repeated (the seed is printed).
 */
import { assert, it } from "@effect/vitest"
import { Effect, Fiber, Schedule, Stream } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import * as Mosquitto from "../utils/Mosquitto.ts"
import { describeMosquitto } from "../utils/suites.ts"

const publisher = Path.join(import.meta.dirname, "fixtures", "crash-publisher.ts")

/** A small seeded generator (mulberry32), so kill times repeat for a seed. */
const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

interface Run {
  readonly exitCode: number | null
  readonly killed: boolean
  readonly stderr: string
}

/** Runs the publisher until it exits, or kills it with SIGKILL after `killAfter` ms. */
const runPublisher = (args: ReadonlyArray<string>, killAfter: number | undefined) =>
  Effect.callback<Run>((resume) => {
    const child = ChildProcess.spawn(process.execPath, ["--conditions=@effect-mqtt/source", publisher, ...args], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stderr = ""
    child.stderr.on("data", (chunk) => (stderr += chunk))
    let killed = false
    // The kill is timed from the moment the publisher is connected, so it lands while publishes are in flight.
    let timer = setTimeout(() => child.kill("SIGKILL"), 60_000)
    if (killAfter !== undefined) {
      child.stdout.on("data", (chunk: Buffer) => {
        if (!chunk.toString().includes("connected")) return
        clearTimeout(timer)
        timer = setTimeout(() => {
          killed = true
          child.kill("SIGKILL")
        }, killAfter)
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

const scenario = (qos: 1 | 2, count: number, kills: number) =>
  Effect.gen(function*() {
    const seed = Number(process.env.CRASH_SEED ?? Date.now() % 100_000)
    console.log(`crash recovery QoS ${qos}: seed ${seed} (set CRASH_SEED to repeat)`)
    const next = random(seed)
    const broker = yield* Mosquitto.start()
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-mqtt-crash-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
    const topic = `crash/${qos}/${seed}`
    const subscriber = yield* MqttClient.make({ url: broker.url, clientId: `crash-sub-${qos}-${seed}`, reconnect: Schedule.spaced("50 millis") })
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
    const args = [broker.url, `crash-pub-${qos}-${seed}`, Path.join(dir, "store"), Path.join(dir, "progress"), String(count), String(qos), topic]
    let killedRuns = 0
    for (let attempt = 0; attempt < kills * 4 && killedRuns < kills; attempt++) {
      const run = yield* runPublisher(args, Math.floor(next() * 60))
      if (run.killed) killedRuns++
      else {
        assert.strictEqual(run.exitCode, 0, run.stderr)
        break
      }
    }
    const progress = Fs.existsSync(Path.join(dir, "progress")) ? Fs.readFileSync(Path.join(dir, "progress"), "utf8") : "none"
    const last = yield* runPublisher(args, undefined)
    assert.strictEqual(last.exitCode, 0, last.stderr)
    // Everything the publisher completed has reached the broker; wait (bounded) until the subscriber has it all.
    const deadline = Date.now() + 20_000
    while (seen.size < count && Date.now() < deadline) yield* Effect.sleep("20 millis")
    yield* Fiber.interrupt(counting)
    const missing = Array.from({ length: count }, (_, i) => String(i + 1)).filter((k) => !seen.has(k))
    const duplicated = [...seen].filter(([, n]) => n > 1).map(([k]) => k)
    console.log(
      `QoS ${qos}: ${count} sent, ${killedRuns} kills (progress before the last run: ${progress}), ` +
        `${seen.size} distinct delivered, ${duplicated.length} duplicated`
    )
    assert.isAtLeast(killedRuns, Math.min(kills, 3), "the publisher was killed while publishing")
    assert.deepStrictEqual(missing, [], `seed ${seed}: every message arrives`)
    if (qos === 2) assert.deepStrictEqual(duplicated, [], `seed ${seed}: QoS 2 exactly once`)
  }).pipe(Effect.scoped)

describeMosquitto("crash recovery with the file session store (SIGKILL)", () => {
  it.live("QoS 1: every message arrives at least once across 10 kills", () => scenario(1, 150, 10), 120_000)
  it.live("QoS 2: every message arrives exactly once across 10 kills [MQTT-4.3.3-1] [MQTT-4.4.0-1]", () => scenario(2, 150, 10), 120_000)
})
