/**
 * Where the memory of an idle connection goes: heap and RSS per connection of effect-mqtt built up layer by layer,
 * each layer in a fresh child process against the same broker (its own Mosquitto on a free loopback port, or `--url`).
 *
 * - `socket`: the TCP transport (`NetSocket`) as `Connection` uses it — reader and writer acquired, CONNECT
 *   written, CONNACK read, one fiber pulling. The floor any Effect client on that socket starts from.
 * - `link`: `Connection.connect` — the same plus the codec's decoder, the outbox, the link scope.
 * - `client`: `MqttClient.make` — a link plus `Session`, `Keepalive`, the supervisor, status and local subscriptions.
 * - `subscribed`: a client with one subscription (a stream's queue), as scenario 7 of `npm run bench` measures.
 * - `offline`, apart: `MqttClient.makeNoDeps` over a fake link that never receives — the client layer's own heap and
 *   CPU, without a socket or a broker.
 *
 * Each child opens half its connections, then the other half; figures are what the second half added per connection
 * (the growth of `heapUsed` and RSS after a full GC, the process's CPU time, user + system, spent opening them), so
 * one-time costs of the first connections (compiled code, caches) are left out; the heap over the baseline taken
 * before the first connection is reported beside it. The median of `--rounds` children. Complements scenario 7, which compares the
 * whole client with MQTT.js and a raw client. `--profile DIR` writes a CPU profile of each child's opening phase
 * (summarise with `bench/profile.ts`); `--heap-snapshot DIR` a heap snapshot of each child with its connections open
 * (summarise with `bench/heap.ts`, `--diff` to compare two layers). Run: `npm run bench:footprint [-- --count 1000 --rounds 3 --url URL]`.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as inspector from "node:inspector/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import * as v8 from "node:v8"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import { MqttClient } from "effect-mqtt"
import * as Session from "../src/Client/Session.ts"
import * as Codec from "../src/Codec/Codec.ts"
import * as ConnectOptions from "../src/Connection/ConnectOptions.ts"
import * as Connection from "../src/Connection/Connection.ts"
import * as Keepalive from "../src/Connection/Keepalive.ts"
import * as NodeTransport from "../src/Connection/NodeTransport.ts"
import { idleLink } from "../test/utils/idleLink.ts"
import * as Mosquitto from "../test/utils/Mosquitto.ts"

const layers = ["socket", "link", "client", "subscribed", "offline"] as const
type LayerName = typeof layers[number]

const descriptions: Record<LayerName, string> = {
  socket: "NetSocket: reader + writer, CONNECT/CONNACK, one pulling fiber",
  link: "Connection.connect: + decoder, outbox, link scope",
  client: "MqttClient.make: + Session, Keepalive, supervisor, status",
  subscribed: "+ one subscription (scenario 7)",
  offline: "apart: MqttClient.makeNoDeps over an idle link, no socket (the client layer's own cost)"
}

interface Figures {
  /** The second half's growth per connection: what one more connection costs once warm. */
  readonly heapPerConnection: number
  /** Growth over the baseline per connection, including one-time costs (compiled code, caches). */
  readonly heapPerConnectionWithWarmup: number
  readonly rssPerConnection: number
  readonly cpuMicrosPerConnection: number
}

const resolved = (url: string, i: number): ConnectOptions.Resolved => {
  const result = ConnectOptions.resolve({ url, clientId: `fp-${process.pid}-${i}`, keepalive: 60 }, new Uint8Array(6))
  if (Result.isFailure(result)) throw new Error(result.failure.message)
  return result.success
}

/** What the program holds on to, as an application would. */
const kept: Array<unknown> = []

/** One connection of a layer, alive until the program's scope closes. */
const open = (layer: LayerName, url: string, i: number): Effect.Effect<void, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    switch (layer) {
      case "socket": {
        const options = resolved(url, i)
        const socket = yield* NodeTransport.make(options)
        const pull = yield* Socket.readerBytes(socket)
        const writer = yield* socket.writer
        const connect = Codec.encode(ConnectOptions.connectPacket(options))
        if (Result.isFailure(connect)) return yield* Effect.fail(connect.failure)
        yield* writer.write(connect.success)
        yield* pull
        yield* Effect.forkScoped(Effect.forever(pull))
        return
      }
      case "link": {
        const options = resolved(url, i)
        const link = yield* Connection.connect(yield* NodeTransport.make(options), options)
        yield* Effect.forkScoped(Effect.forever(link.pull))
        return
      }
      case "offline": {
        const options = { url, clientId: `fp-${process.pid}-${i}`, keepalive: 60, reconnect: false } as const
        const client = yield* MqttClient.makeNoDeps(options).pipe(
          Effect.provideService(
            Connection.Connection,
            Connection.Connection.of({ options: resolved(url, i), connect: Effect.succeed(idleLink()) })
          ),
          Effect.provideService(Keepalive.Keepalive, Keepalive.make),
          Effect.provideService(Session.Session, Session.make())
        )
        kept.push(client)
        return
      }
      case "client":
      case "subscribed": {
        const client = yield* MqttClient.make({ url, clientId: `fp-${process.pid}-${i}`, keepalive: 60, reconnect: false })
        // Kept, as an application keeps its clients (and as scenario 7 keeps them).
        kept.push(client)
        if (layer === "subscribed") yield* client.subscription({ [`footprint/${process.pid}/${i}`]: 1 })
        return
      }
    }
  })

const gc = (globalThis as { gc?: () => void }).gc

/** A CPU profile of opening the connections (nothing else), written to `file`. */
const profiler = async (file: string | undefined) => {
  if (file === undefined) return { start: Effect.void, stop: Effect.void }
  const session = new inspector.Session()
  session.connect()
  await session.post("Profiler.enable")
  return {
    start: Effect.promise(() => session.post("Profiler.start")),
    stop: Effect.promise(async () => {
      const { profile } = await session.post("Profiler.stop")
      fs.writeFileSync(file, JSON.stringify(profile))
    })
  }
}

const child = async (
  layer: LayerName,
  url: string,
  count: number,
  profileFile: string | undefined,
  snapshotFile: string | undefined
) => {
  const profile = await profiler(profileFile)
  return Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    gc?.()
    const baseline = process.memoryUsage()
    const half = Math.floor(count / 2)
    /** Opens connections `from` to `to - 1`; returns the CPU spent, then the memory after they idled and a full GC. */
    const openRange = (from: number, to: number) =>
      Effect.gen(function*() {
        const cpu = process.cpuUsage()
        yield* Effect.forEach(Array.from({ length: to - from }, (_, i) => from + i), (i) => open(layer, url, i), {
          concurrency: 100,
          discard: true
        })
        const spent = process.cpuUsage(cpu)
        yield* Effect.sleep(500)
        gc?.()
        return { cpu: spent.user + spent.system, memory: process.memoryUsage() }
      })
    yield* profile.start
    // The first half warms up (code compiled, caches filled); the second half measures what one more connection costs.
    const first = yield* openRange(0, half)
    const second = yield* openRange(half, count)
    yield* profile.stop
    const added = count - half
    const figures: Figures = {
      heapPerConnection: (second.memory.heapUsed - first.memory.heapUsed) / added,
      heapPerConnectionWithWarmup: (second.memory.heapUsed - baseline.heapUsed) / count,
      rssPerConnection: (second.memory.rss - first.memory.rss) / added,
      cpuMicrosPerConnection: second.cpu / added
    }
    if (snapshotFile !== undefined) v8.writeHeapSnapshot(snapshotFile)
    process.stdout.write(`FOOTPRINT ${JSON.stringify(figures)}\n`)
  })))
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

const kb = (bytes: number): string => (bytes / 1024).toFixed(1)

const parent = (
  count: number,
  rounds: number,
  url: string | undefined,
  profileDir: string | undefined,
  snapshotDir: string | undefined
) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const target = url ?? (yield* Mosquitto.start({ extraConfig: ["connection_messages false"] })).url
    const self = fileURLToPath(import.meta.url)
    const results = new Map<LayerName, Array<Figures>>()
    for (let round = 0; round < rounds; round++) {
      for (const layer of layers) {
        const output = execFileSync(
          process.execPath,
          [
            "--conditions=@effect-mqtt/source",
            "--expose-gc",
            self,
            ...["--child", layer, "--url", target, "--count", `${count}`],
            ...(profileDir === undefined ? [] : ["--profile", path.join(profileDir, `${layer}-r${round + 1}.cpuprofile`)]),
            ...(snapshotDir === undefined
              ? []
              : ["--heap-snapshot", path.join(snapshotDir, `${layer}-r${round + 1}.heapsnapshot`)])
          ],
          { encoding: "utf8", timeout: 120_000 }
        )
        const line = output.split("\n").find((l) => l.startsWith("FOOTPRINT "))
        if (line === undefined) throw new Error(`no figures from the ${layer} child:\n${output}`)
        const figures = JSON.parse(line.slice("FOOTPRINT ".length)) as Figures
        results.set(layer, [...(results.get(layer) ?? []), figures])
        process.stderr.write(`[round ${round + 1}/${rounds}] ${layer}: ${kb(figures.heapPerConnection)} KB heap/conn\n`)
      }
    }
    const lines = [
      `### Memory per idle connection, layer by layer (${count} connections, median of ${rounds} rounds)`,
      "",
      `Node ${process.version}, broker ${target}. Per connection: the growth from the first ${Math.floor(count / 2)} `
        + `connections to all ${count} (warm), and, for the heap, also over the baseline (with warm-up).`,
      "",
      "| layer | what it adds | heap KB/conn | added heap KB | heap KB/conn with warm-up | RSS KB/conn | CPU µs/conn to open |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    ]
    let previous = 0
    for (const layer of layers) {
      const runs = results.get(layer)!
      const heap = median(runs.map((r) => r.heapPerConnection))
      const rss = median(runs.map((r) => r.rssPerConnection))
      const cpu = median(runs.map((r) => r.cpuMicrosPerConnection))
      const warm = median(runs.map((r) => r.heapPerConnectionWithWarmup))
      const added = layer === "offline" ? "–" : kb(heap - previous)
      lines.push(
        `| ${layer} | ${descriptions[layer]} | ${kb(heap)} | ${added} | ${kb(warm)} | ${kb(rss)} | ${cpu.toFixed(0)} |`
      )
      previous = heap
    }
    process.stdout.write(lines.join("\n") + "\n")
  })))

const { values } = parseArgs({
  options: {
    child: { type: "string" },
    url: { type: "string" },
    count: { type: "string", default: "1000" },
    rounds: { type: "string", default: "3" },
    profile: { type: "string" },
    "heap-snapshot": { type: "string" }
  }
})
const count = Number(values.count)
const rounds = Number(values.rounds)
if (!Number.isInteger(count) || count < 1 || !Number.isInteger(rounds) || rounds < 1) {
  process.stderr.write("footprint: --count and --rounds take positive integers\n")
  process.exit(2)
}
if (values.child !== undefined) {
  if (!(layers as ReadonlyArray<string>).includes(values.child) || values.url === undefined) process.exit(2)
  await child(values.child as LayerName, values.url, count, values.profile, values["heap-snapshot"])
  process.exit(0)
} else {
  const dir = (value: string | undefined) => {
    if (value === undefined) return undefined
    fs.mkdirSync(path.resolve(value), { recursive: true })
    return path.resolve(value)
  }
  await parent(count, rounds, values.url, dir(values.profile), dir(values["heap-snapshot"]))
}
