/**
 * One benchmark run in a fresh process: `node --conditions=@effect-mqtt/source --expose-gc bench/child.ts '<spec>'`.
 * Loads only the driver of the client named in the spec, records a memory baseline, runs the workload against the
 * broker, and prints one line `BENCH_RESULT {json}` (a `ChildResult`) on stdout, or `BENCH_ERROR message` and exits
 * non-zero. A watchdog ends the process at the spec's deadline, saying which phase was stuck. With `profileFile` it
 * profiles the measured window only (through `node:inspector`, so loading and connecting are left out); with
 * `heapSnapshotFile` it writes a heap snapshot while the connections workload idles.
 */
import * as fs from "node:fs"
import * as inspector from "node:inspector"
import * as v8 from "node:v8"
import { collectGarbage, MemorySampler, Meter, percentiles } from "./meter.ts"
import type { ChildResult, ChildSpec, ClientName, ConnectionFigures } from "./scenarios.ts"
import type { Driver } from "./clients/driver.ts"

const spec = JSON.parse(process.argv[2] ?? "{}") as ChildSpec

const fail = (message: string): never => {
  fs.writeSync(1, `BENCH_ERROR ${message.replace(/\s+/g, " ")}\n`)
  process.exit(2)
}

const loadDriver = async (client: ClientName): Promise<Driver> => {
  switch (client) {
    case "effect-mqtt":
      return (await import("./clients/effect-mqtt.ts")).driver
    case "mqttjs":
      return (await import("./clients/mqttjs.ts")).driver
    case "raw":
      return (await import("./clients/raw.ts")).driver
  }
}

const expectedOf = (spec: ChildSpec): number => {
  const workload = spec.workload
  switch (workload._tag) {
    case "Throughput":
      return workload.params.count * workload.params.subscribers
    case "Latency":
    case "Connections":
      return workload.params.count
  }
}

/** Starts the V8 profiler when the meter's window opens and writes the profile when it closes. */
const profileWindow = async (meter: Meter, file: string, intervalUs: number): Promise<() => Promise<void>> => {
  const session = new inspector.Session()
  session.connect()
  const post = <A>(method: string, params?: object) =>
    new Promise<A>((resolve, reject) =>
      session.post(method, params ?? {}, (error, result) => (error ? reject(error) : resolve(result as A)))
    )
  await post("Profiler.enable")
  await post("Profiler.setSamplingInterval", { interval: intervalUs })
  let stopped: Promise<void> | undefined
  const stop = () =>
    (stopped ??= post<{ profile: object }>("Profiler.stop").then(({ profile }) => {
      fs.writeFileSync(file, JSON.stringify(profile))
      session.disconnect()
    }))
  meter.hooks = {
    begin: () => {
      void post("Profiler.start")
    },
    end: () => {
      void stop()
    }
  }
  return stop
}

const main = async () => {
  const sampler = new MemorySampler(20)
  const meter = new Meter(expectedOf(spec))
  const watchdog = setTimeout(
    () => fail(`${spec.client} ${spec.caseId}: no result after ${spec.deadlineMs} ms (${meter.describe()})`),
    spec.deadlineMs
  )
  watchdog.unref()
  process.on("uncaughtException", (error) => fail(`${spec.client} ${spec.caseId}: uncaught ${error.stack ?? error}`))
  process.on("unhandledRejection", (error) =>
    fail(`${spec.client} ${spec.caseId}: unhandled rejection ${String(error)}`)
  )

  const driver = await loadDriver(spec.client)
  const stopProfile = spec.profileFile === undefined
    ? undefined
    : await profileWindow(meter, spec.profileFile, spec.profileIntervalUs ?? 100)
  await collectGarbage()
  const baseline = sampler.sample()
  const target = { url: spec.url, prefix: spec.prefix }
  let connections: ConnectionFigures | undefined
  let closeStart: { readonly at: number; readonly cpu: NodeJS.CpuUsage } | undefined
  const workload = spec.workload
  meter.phase = "connecting"
  switch (workload._tag) {
    case "Throughput":
      await driver.throughput(target, workload.params, meter)
      break
    case "Latency":
      await driver.latency(target, workload.params, meter)
      break
    case "Connections": {
      const params = workload.params
      await driver.connections(target, params, meter, async () => {
        await collectGarbage()
        const usage = sampler.sample()
        const cpu = meter.cpuEnd.user + meter.cpuEnd.system - meter.cpuStart.user - meter.cpuStart.system
        connections = {
          count: meter.delivered,
          connectMs: meter.endAt - meter.startAt,
          rssPerConnection: (usage.rss - baseline.rss) / Math.max(1, meter.delivered),
          heapPerConnection: (usage.heapUsed - baseline.heapUsed) / Math.max(1, meter.delivered),
          cpuUsPerConnection: cpu / Math.max(1, meter.delivered),
          closeMs: Number.NaN,
          cpuUsPerClose: Number.NaN
        }
        if (spec.heapSnapshotFile !== undefined) v8.writeHeapSnapshot(spec.heapSnapshotFile)
        // The driver closes every client when this returns: measured until it returns.
        closeStart = { at: performance.now(), cpu: process.cpuUsage() }
      })
      if (connections !== undefined && closeStart !== undefined) {
        const cpu = process.cpuUsage(closeStart.cpu)
        connections = {
          ...connections,
          closeMs: performance.now() - closeStart.at,
          cpuUsPerClose: (cpu.user + cpu.system) / Math.max(1, connections.count)
        }
      }
      break
    }
  }
  sampler.stop()
  if (!meter.finished) meter.finish()
  await stopProfile?.()
  clearTimeout(watchdog)
  const windowMs = Math.max(1e-6, meter.endAt - meter.startAt)
  const cpuUserUs = meter.cpuEnd.user - meter.cpuStart.user
  const cpuSystemUs = meter.cpuEnd.system - meter.cpuStart.system
  const payloadSize = workload._tag === "Connections" ? 0 : workload.params.payloadSize
  const result: ChildResult = {
    client: spec.client,
    caseId: spec.caseId,
    sent: workload._tag === "Connections" ? workload.params.count : meter.published,
    expected: meter.expected,
    delivered: meter.delivered,
    windowMs,
    rate: meter.delivered / (windowMs / 1000),
    mbPerSecond: (meter.delivered * payloadSize) / 1e6 / (windowMs / 1000),
    cpuUserUs,
    cpuSystemUs,
    cpuUsPerMessage: (cpuUserUs + cpuSystemUs) / Math.max(1, meter.delivered),
    ...(workload._tag === "Latency" ? { latency: percentiles(meter.samples) } : {}),
    ...(connections !== undefined ? { connections } : {}),
    memory: {
      baselineRss: baseline.rss,
      baselineHeap: baseline.heapUsed,
      peakRss: sampler.peakRss,
      peakHeapUsed: sampler.peakHeapUsed,
      maxRss: process.resourceUsage().maxRSS * 1024,
      samplerMs: sampler.costMs,
      samplerCount: sampler.samples
    }
  }
  fs.writeSync(1, `BENCH_RESULT ${JSON.stringify(result)}\n`)
  process.exit(0)
}

main().catch((error: unknown) =>
  fail(`${spec.client} ${spec.caseId}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`)
)
