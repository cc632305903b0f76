/**
 * Turns the rounds of a benchmark run into figures and Markdown: per case and client the median with min and max of
 * each figure, the ratios effect-mqtt / MQTT.js and effect-mqtt / raw, a table per scenario, the codec table, and a
 * summary against the targets of issue 7. Pure: `run.ts` does the I/O.
 */
import { type CaseDef, type ChildResult, type ClientName, clientLabel } from "./scenarios.ts"

export interface Stat {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly n: number
}

export const stat = (xs: ReadonlyArray<number>): Stat => {
  const sorted = [...xs].filter(Number.isFinite).sort((a, b) => a - b)
  if (sorted.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 }
  const mid = Math.floor(sorted.length / 2)
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, n: sorted.length }
}

export type Run =
  | { readonly round: number; readonly client: ClientName; readonly ok: true; readonly result: ChildResult }
  | { readonly round: number; readonly client: ClientName; readonly ok: false; readonly error: string }

/** The figures of one client in one case, over its successful rounds. */
export interface ClientSummary {
  readonly client: ClientName
  readonly rounds: number
  readonly failures: number
  readonly rate: Stat
  readonly mbPerSecond: Stat
  readonly deliveredRatio: Stat
  readonly cpuUsPerMessage: Stat
  readonly peakRss: Stat
  readonly maxRss: Stat
  readonly rssGrowth: Stat
  readonly peakHeapUsed: Stat
  readonly latencyP50?: Stat
  readonly latencyP99?: Stat
  readonly latencyMax?: Stat
  readonly connectMs?: Stat
  readonly rssPerConnection?: Stat
  readonly heapPerConnection?: Stat
  readonly cpuUsPerConnection?: Stat
  readonly closeMs?: Stat
  readonly cpuUsPerClose?: Stat
}

export const summarize = (client: ClientName, runs: ReadonlyArray<Run>): ClientSummary => {
  const ok = runs.flatMap((run) => (run.client === client && run.ok ? [run.result] : []))
  const failures = runs.filter((run) => run.client === client && !run.ok).length
  const of = (f: (r: ChildResult) => number) => stat(ok.map(f))
  const has = <K extends keyof ChildResult>(key: K) => ok.some((r) => r[key] !== undefined)
  return {
    client,
    rounds: ok.length,
    failures,
    rate: of((r) => r.rate),
    mbPerSecond: of((r) => r.mbPerSecond),
    deliveredRatio: of((r) => r.delivered / Math.max(1, r.expected)),
    cpuUsPerMessage: of((r) => r.cpuUsPerMessage),
    peakRss: of((r) => r.memory.peakRss),
    maxRss: of((r) => r.memory.maxRss),
    rssGrowth: of((r) => Math.max(r.memory.maxRss, r.memory.peakRss) - r.memory.baselineRss),
    peakHeapUsed: of((r) => r.memory.peakHeapUsed),
    ...(has("latency")
      ? {
        latencyP50: of((r) => r.latency?.p50 ?? Number.NaN),
        latencyP99: of((r) => r.latency?.p99 ?? Number.NaN),
        latencyMax: of((r) => r.latency?.max ?? Number.NaN)
      }
      : {}),
    ...(has("connections")
      ? {
        connectMs: of((r) => r.connections?.connectMs ?? Number.NaN),
        rssPerConnection: of((r) => r.connections?.rssPerConnection ?? Number.NaN),
        heapPerConnection: of((r) => r.connections?.heapPerConnection ?? Number.NaN),
        cpuUsPerConnection: of((r) => r.connections?.cpuUsPerConnection ?? Number.NaN),
        closeMs: of((r) => r.connections?.closeMs ?? Number.NaN),
        cpuUsPerClose: of((r) => r.connections?.cpuUsPerClose ?? Number.NaN)
      }
      : {})
  }
}

/** effect-mqtt's median over another client's median. */
export interface Ratios {
  /** Headline figure (throughput, MB/s, deliveries/s, connections/s; latency p50). Higher is better unless noted. */
  readonly primary: { readonly vsMqttjs: number; readonly vsRaw: number; readonly higherIsBetter: boolean }
  readonly cpu: { readonly vsMqttjs: number; readonly vsRaw: number }
  readonly p99?: { readonly vsMqttjs: number; readonly vsRaw: number }
  readonly memoryPerConnection?: { readonly vsMqttjs: number; readonly vsRaw: number }
  readonly cpuPerClose?: { readonly vsMqttjs: number; readonly vsRaw: number }
}

export interface CaseReport {
  readonly def: CaseDef
  readonly runs: ReadonlyArray<Run>
  readonly clients: ReadonlyArray<ClientSummary>
  readonly ratios: Ratios
}

const primaryOf = (def: CaseDef, s: ClientSummary | undefined): number => {
  if (s === undefined) return Number.NaN
  if (def.workload._tag === "Latency") return s.latencyP50?.median ?? Number.NaN
  if (def.workload._tag === "Connections") return s.rate.median
  return def.workload.params.payloadSize >= 1024 ? s.mbPerSecond.median : s.rate.median
}

export const caseReport = (def: CaseDef, runs: ReadonlyArray<Run>, clients: ReadonlyArray<ClientName>): CaseReport => {
  const summaries = clients.map((client) => summarize(client, runs))
  const get = (client: ClientName) => summaries.find((s) => s.client === client)
  const ours = get("effect-mqtt")
  const ratio = (f: (s: ClientSummary) => number | undefined, other: ClientName) => {
    const a = ours === undefined ? undefined : f(ours)
    const theirs = get(other)
    const b = theirs === undefined ? undefined : f(theirs)
    return a === undefined || b === undefined ? Number.NaN : a / b
  }
  const primary = (other: ClientName) => primaryOf(def, ours) / primaryOf(def, get(other))
  const cpu = (s: ClientSummary) =>
    def.workload._tag === "Connections" ? s.cpuUsPerConnection?.median : s.cpuUsPerMessage.median
  return {
    def,
    runs,
    clients: summaries,
    ratios: {
      primary: { vsMqttjs: primary("mqttjs"), vsRaw: primary("raw"), higherIsBetter: def.workload._tag !== "Latency" },
      cpu: { vsMqttjs: ratio(cpu, "mqttjs"), vsRaw: ratio(cpu, "raw") },
      ...(def.workload._tag === "Latency"
        ? {
          p99: {
            vsMqttjs: ratio((s) => s.latencyP99?.median, "mqttjs"),
            vsRaw: ratio((s) => s.latencyP99?.median, "raw")
          }
        }
        : {}),
      ...(def.workload._tag === "Connections"
        ? {
          memoryPerConnection: {
            vsMqttjs: ratio((s) => s.rssPerConnection?.median, "mqttjs"),
            vsRaw: ratio((s) => s.rssPerConnection?.median, "raw")
          },
          cpuPerClose: {
            vsMqttjs: ratio((s) => s.cpuUsPerClose?.median, "mqttjs"),
            vsRaw: ratio((s) => s.cpuUsPerClose?.median, "raw")
          }
        }
        : {})
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------------------------------

const num = (x: number, digits = 0): string =>
  Number.isFinite(x) ? x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) : "–"

const range = (s: Stat | undefined, digits = 0, scale = 1): string =>
  s === undefined || s.n === 0
    ? "–"
    : s.n === 1
    ? num(s.median / scale, digits)
    : `${num(s.median / scale, digits)} (${num(s.min / scale, digits)}–${num(s.max / scale, digits)})`

const MB = 1024 * 1024

export const times = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}×` : "–")

const delivered = (s: ClientSummary): string => {
  if (s.deliveredRatio.n === 0) return "–"
  const pct = (x: number) => `${(x * 100).toFixed(x >= 0.9995 ? 0 : 1)}%`
  return s.deliveredRatio.min >= 0.9995 ? "100%" : `${pct(s.deliveredRatio.median)} (min ${pct(s.deliveredRatio.min)})`
}

const rows = (header: ReadonlyArray<string>, body: ReadonlyArray<ReadonlyArray<string>>): string => {
  const align = header.map((_, i) => (i === 0 ? "---" : "---:"))
  return [header, align, ...body].map((cells) => `| ${cells.join(" | ")} |`).join("\n")
}

const clientCell = (s: ClientSummary): string =>
  s.failures > 0 ? `${clientLabel[s.client]} (${s.failures} failed)` : clientLabel[s.client]

export const caseMarkdown = (report: CaseReport): string => {
  const { def, clients, ratios } = report
  const out: Array<string> = [`### ${def.scenario}. ${def.title}`, ""]
  const memory = (s: ClientSummary) => [range(s.maxRss, 0, MB), range(s.rssGrowth, 0, MB), range(s.peakHeapUsed, 0, MB)]
  const workload = def.workload
  if (workload._tag === "Latency") {
    out.push(rows(
      ["client", "p50 µs", "p99 µs", "max µs", "CPU µs/msg", "peak RSS MB", "RSS growth MB", "peak heap MB"],
      clients.map((s) => [
        clientCell(s),
        range(s.latencyP50),
        range(s.latencyP99),
        range(s.latencyMax),
        range(s.cpuUsPerMessage, 1),
        ...memory(s)
      ])
    ))
    out.push(
      "",
      `effect-mqtt / MQTT.js: p50 ${times(ratios.primary.vsMqttjs)}, ` +
        `p99 ${times(ratios.p99?.vsMqttjs ?? Number.NaN)}, ` +
        `CPU/msg ${times(ratios.cpu.vsMqttjs)} · effect-mqtt / raw: p50 ${times(ratios.primary.vsRaw)}, ` +
        `p99 ${times(ratios.p99?.vsRaw ?? Number.NaN)}, CPU/msg ${times(ratios.cpu.vsRaw)} (lower is better)`
    )
  } else if (workload._tag === "Connections") {
    out.push(rows(
      [
        "client",
        "connect + subscribe all, ms",
        "connections/s",
        "RSS KB/conn",
        "heap KB/conn",
        "CPU µs/conn",
        "close all, ms",
        "CPU µs/close",
        "peak RSS MB",
        "RSS growth MB",
        "peak heap MB"
      ],
      clients.map((s) => [
        clientCell(s),
        range(s.connectMs),
        range(s.rate),
        range(s.rssPerConnection, 1, 1024),
        range(s.heapPerConnection, 1, 1024),
        range(s.cpuUsPerConnection),
        range(s.closeMs),
        range(s.cpuUsPerClose),
        ...memory(s)
      ])
    ))
    out.push(
      "",
      `effect-mqtt / MQTT.js: connections/s ${times(ratios.primary.vsMqttjs)} (higher is better), RSS/conn ` +
        `${times(ratios.memoryPerConnection?.vsMqttjs ?? Number.NaN)}, ` +
        `CPU/conn ${times(ratios.cpu.vsMqttjs)}, CPU/close ${times(ratios.cpuPerClose?.vsMqttjs ?? Number.NaN)} ` +
        `(lower is better) · effect-mqtt / raw: connections/s ${times(ratios.primary.vsRaw)}, RSS/conn ` +
        `${times(ratios.memoryPerConnection?.vsRaw ?? Number.NaN)}, CPU/conn ${times(ratios.cpu.vsRaw)}, ` +
        `CPU/close ${times(ratios.cpuPerClose?.vsRaw ?? Number.NaN)}`
    )
  } else {
    const large = workload.params.payloadSize >= 1024
    const fanout = workload.params.subscribers > 1
    const unit = fanout ? "deliveries/s" : "msgs/s"
    out.push(rows(
      [
        "client",
        ...(large ? ["MB/s", unit] : [unit]),
        "delivered",
        "CPU µs/msg",
        "peak RSS MB",
        "RSS growth MB",
        "peak heap MB"
      ],
      clients.map((s) => [
        clientCell(s),
        ...(large ? [range(s.mbPerSecond, 1), range(s.rate)] : [range(s.rate)]),
        delivered(s),
        range(s.cpuUsPerMessage, 1),
        ...memory(s)
      ])
    ))
    const what = large ? "MB/s" : unit
    out.push(
      "",
      `effect-mqtt / MQTT.js: ${what} ${times(ratios.primary.vsMqttjs)}, CPU/msg ${times(ratios.cpu.vsMqttjs)} · ` +
        `effect-mqtt / raw: ${what} ${times(ratios.primary.vsRaw)}, CPU/msg ${times(ratios.cpu.vsRaw)} ` +
        `(${what}: higher is better; CPU: lower is better)`
    )
  }
  const failed = report.runs.filter((run): run is Extract<Run, { ok: false }> => !run.ok)
  for (const run of failed) out.push("", `- FAILED ${clientLabel[run.client]}, round ${run.round}: ${run.error}`)
  return out.join("\n")
}

// ---------------------------------------------------------------------------------------------------------------------
// Codec (bench/codec.ts)
// ---------------------------------------------------------------------------------------------------------------------

export interface CodecRow {
  readonly name: string
  readonly ours: Stat
  readonly raw: Stat
  /** mqtt-packet ops/s over effect-mqtt ops/s (the foundation issue's figure; ≤ 1.3 is the target). */
  readonly rawOverOurs: number
}

const parseNumber = (s: string) => Number(s.replace(/,/g, ""))

/** Parses the table `bench/codec.ts` prints. */
export const parseCodec = (output: string): ReadonlyArray<CodecRow> => {
  const line = /^(.+?)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)x\s+\(ours ([\d,]+)\.\.([\d,]+), raw ([\d,]+)\.\.([\d,]+)\)/
  return output.split("\n").flatMap((text) => {
    const m = line.exec(text.trim())
    if (m === null) return []
    return [{
      name: m[1]!.trim(),
      ours: { median: parseNumber(m[2]!), min: parseNumber(m[5]!), max: parseNumber(m[6]!), n: 1 },
      raw: { median: parseNumber(m[3]!), min: parseNumber(m[7]!), max: parseNumber(m[8]!), n: 1 },
      rawOverOurs: Number(m[4])
    }]
  })
}

export const codecMarkdown = (codecRows: ReadonlyArray<CodecRow>, error: string | undefined): string => {
  const out = [
    "### 8. Codec only: PUBLISH encode / decode, ops/s (bench/codec.ts, one process, alternating rounds)",
    ""
  ]
  if (error !== undefined) out.push(`- FAILED: ${error}`)
  if (codecRows.length > 0) {
    out.push(rows(
      ["case", "effect-mqtt ops/s", "mqtt-packet ops/s", "effect-mqtt / mqtt-packet"],
      codecRows.map((r) => [
        r.name,
        `${num(r.ours.median)} (${num(r.ours.min)}–${num(r.ours.max)})`,
        `${num(r.raw.median)} (${num(r.raw.min)}–${num(r.raw.max)})`,
        times(1 / r.rawOverOurs)
      ])
    ))
    out.push(
      "",
      "MQTT.js encodes and decodes with mqtt-packet, so the mqtt-packet column stands for both MQTT.js and raw."
    )
  }
  return out.join("\n")
}

// ---------------------------------------------------------------------------------------------------------------------
// Targets (issue 7)
// ---------------------------------------------------------------------------------------------------------------------

interface Check {
  readonly what: string
  readonly value: number
  readonly target: number
  /** "min": value ≥ target; "max": value ≤ target. */
  readonly kind: "min" | "max"
}

const checksFor = (report: CaseReport): ReadonlyArray<Check> => {
  const r = report.ratios
  switch (report.def.id) {
    case "qos0":
      return [
        { what: "msgs/s vs MQTT.js", value: r.primary.vsMqttjs, target: 1.0, kind: "min" },
        { what: "msgs/s vs raw", value: r.primary.vsRaw, target: 0.95, kind: "min" },
        { what: "CPU/msg vs MQTT.js", value: r.cpu.vsMqttjs, target: 0.8, kind: "max" }
      ]
    case "qos1":
      return [
        { what: "msgs/s vs MQTT.js", value: r.primary.vsMqttjs, target: 1.4, kind: "min" },
        { what: "msgs/s vs raw", value: r.primary.vsRaw, target: 0.9, kind: "min" },
        { what: "CPU/msg vs MQTT.js", value: r.cpu.vsMqttjs, target: 0.7, kind: "max" }
      ]
    case "qos2":
      return [
        { what: "msgs/s vs MQTT.js", value: r.primary.vsMqttjs, target: 1.5, kind: "min" },
        { what: "msgs/s vs raw", value: r.primary.vsRaw, target: 0.85, kind: "min" }
      ]
    case "latency":
      return [
        { what: "p50 vs MQTT.js", value: r.primary.vsMqttjs, target: 1.1, kind: "max" },
        { what: "p99 vs MQTT.js", value: r.p99?.vsMqttjs ?? Number.NaN, target: 1.1, kind: "max" }
      ]
    case "large-qos0":
    case "large-qos1":
      return [{ what: "MB/s vs MQTT.js", value: r.primary.vsMqttjs, target: 1.3, kind: "min" }]
    case "fanout":
      return [{ what: "deliveries/s vs MQTT.js", value: r.primary.vsMqttjs, target: 1.0, kind: "min" }]
    case "connections":
      return [
        { what: "connections/s vs MQTT.js", value: r.primary.vsMqttjs, target: 1.0, kind: "min" },
        { what: "RSS/conn vs MQTT.js", value: r.memoryPerConnection?.vsMqttjs ?? Number.NaN, target: 1.0, kind: "max" }
      ]
    default:
      return []
  }
}

export interface TargetLine {
  readonly caseId: string
  readonly what: string
  readonly value: number
  readonly target: string
  readonly met: boolean | undefined
}

export const targets = (reports: ReadonlyArray<CaseReport>, codecRows: ReadonlyArray<CodecRow>): Array<TargetLine> => [
  ...reports.flatMap((report) =>
    checksFor(report).map((check) => ({
      caseId: report.def.id,
      what: check.what,
      value: check.value,
      target: `${check.kind === "min" ? "≥" : "≤"} ${check.target.toFixed(2)}×`,
      met: Number.isFinite(check.value)
        ? check.kind === "min" ? check.value >= check.target : check.value <= check.target
        : undefined
    }))
  ),
  ...codecRows.map((row) => ({
    caseId: "codec",
    what: `${row.name}: mqtt-packet / effect-mqtt`,
    value: row.rawOverOurs,
    target: "≤ 1.30×",
    met: row.rawOverOurs <= 1.3
  }))
]

export const targetsMarkdown = (lines: ReadonlyArray<TargetLine>): string =>
  [
    "### Against the targets of issue 7 (medians of this run)",
    "",
    rows(
      ["case", "figure", "measured", "target", "met"],
      lines.map((l) => [
        l.caseId,
        l.what,
        times(l.value),
        l.target,
        l.met === undefined ? "–" : l.met ? "yes" : "**no**"
      ])
    )
  ].join("\n")
