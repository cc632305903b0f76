/**
 * Summarises a V8 `.cpuprofile` (from `npm run bench -- --profile DIR`, i.e. `node --cpu-prof`): self time per
 * function and per source file, computed from the sample timeline (each sample's time delta is charged to the node
 * it hit), and per category (kernel I/O, GC, Effect runtime, effect-mqtt's modules, Node core, the client libraries,
 * the benchmark and the profiler itself), biggest first, as Markdown tables. `(idle)` is left out of the percentages:
 * they are shares of busy time.
 *
 * Run: `npx node bench/profile.ts FILE.cpuprofile [--top 15]`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly columnNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}

interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const rootDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")

/** A short name for a script: relative to the project, node_modules stripped, node internals as `node:…`. */
export const shortUrl = (url: string): string => {
  if (url === "") return ""
  let file = url.startsWith("file://") ? fileURLToPath(url) : url
  if (file.startsWith(rootDir + path.sep)) file = file.slice(rootDir.length + 1)
  return file.replace(/^node_modules\//, "").replace(/^node:internal\//, "node:")
}

export interface Row {
  readonly name: string
  readonly selfMs: number
  readonly share: number
}

export interface Summary {
  readonly totalMs: number
  readonly busyMs: number
  readonly idleMs: number
  readonly functions: ReadonlyArray<Row>
  readonly files: ReadonlyArray<Row>
  readonly categories: ReadonlyArray<Row>
  /** Total (inclusive) time of effect-mqtt's functions (`src/`): samples with the function anywhere on the stack. */
  readonly sourceTotals: ReadonlyArray<Row>
}

/** Which part of the stack a frame belongs to. */
export const category = (functionName: string, file: string): string => {
  if (file === "") {
    if (functionName === "(garbage collector)") return "GC"
    if (functionName === "(program)" || functionName === "(root)") return "V8, other"
    return "native: socket syscalls and other bindings"
  }
  if (file.startsWith("effect/")) return "Effect runtime (effect)"
  if (file.startsWith("@effect/")) return "Effect platform (@effect/platform-node sockets)"
  if (file.startsWith("src/Codec/")) return "effect-mqtt: src/Codec"
  if (file.startsWith("src/Client/")) return "effect-mqtt: src/Client"
  if (file.startsWith("src/Connection/")) return "effect-mqtt: src/Connection"
  if (file.startsWith("src/")) return "effect-mqtt: other src"
  if (file === "node:inspector") return "profiler (node:inspector)"
  if (file.startsWith("node:")) return "Node core (net, streams, buffer, timers, async_hooks)"
  if (file.startsWith("bench/")) return "benchmark harness and driver"
  if (file.startsWith("mqtt/")) return "MQTT.js"
  if (/^(mqtt-packet|bl|debug|readable-stream)\//.test(file)) return "mqtt-packet, bl, debug"
  return "other"
}

export const summarize = (profile: Profile): Summary => {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const selfUs = new Map<number, number>()
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, profile.timeDeltas[i] ?? 0))
  }
  const functions = new Map<string, number>()
  const files = new Map<string, number>()
  const categories = new Map<string, number>()
  let idleUs = 0
  let totalUs = 0
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame
    if (frame === undefined) continue
    totalUs += us
    if (frame.functionName === "(idle)") {
      idleUs += us
      continue
    }
    const file = shortUrl(frame.url)
    const where = file === "" ? "" : ` ${file}:${frame.lineNumber + 1}`
    const name = `${frame.functionName === "" ? "(anonymous)" : frame.functionName}${where}`
    functions.set(name, (functions.get(name) ?? 0) + us)
    const fileKey = file === "" ? frame.functionName : file
    files.set(fileKey, (files.get(fileKey) ?? 0) + us)
    const group = category(frame.functionName, file)
    categories.set(group, (categories.get(group) ?? 0) + us)
  }
  const busyUs = totalUs - idleUs
  // Inclusive time of src/ functions: each node's self time is charged once to every distinct src/ frame above it.
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const sourceTotals = new Map<string, number>()
  for (const [id, us] of selfUs) {
    if (byId.get(id)?.callFrame.functionName === "(idle)") continue
    const seen = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame
      if (frame === undefined) break
      const file = shortUrl(frame.url)
      if (!file.startsWith("src/")) continue
      const name = `${frame.functionName === "" ? "(anonymous)" : frame.functionName} ${file}:${frame.lineNumber + 1}`
      if (seen.has(name)) continue
      seen.add(name)
      sourceTotals.set(name, (sourceTotals.get(name) ?? 0) + us)
    }
  }
  const rows = (map: Map<string, number>): Array<Row> =>
    [...map]
      .map(([name, us]) => ({ name, selfMs: us / 1000, share: busyUs === 0 ? 0 : us / busyUs }))
      .sort((a, b) => b.selfMs - a.selfMs)
  return {
    totalMs: totalUs / 1000,
    busyMs: busyUs / 1000,
    idleMs: idleUs / 1000,
    functions: rows(functions),
    files: rows(files),
    categories: rows(categories),
    sourceTotals: rows(sourceTotals)
  }
}

const table = (title: string, rows: ReadonlyArray<Row>, top: number): string =>
  [
    `| ${title} | ${title.includes("total time") ? "total ms" : "self ms"} | share of busy |`,
    "| --- | ---: | ---: |",
    ...rows.slice(0, top).map((r) => `| \`${r.name}\` | ${r.selfMs.toFixed(1)} | ${(r.share * 100).toFixed(1)}% |`)
  ].join("\n")

const main = () => {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: "string", default: "15" } }
  })
  const top = Number(values.top)
  if (positionals.length === 0) {
    console.error("usage: npx node bench/profile.ts FILE.cpuprofile... [--top N]")
    process.exit(2)
  }
  for (const file of positionals) {
    const summary = summarize(JSON.parse(fs.readFileSync(file, "utf8")) as Profile)
    console.log(
      [
        `#### ${path.basename(file)}`,
        "",
        `${summary.totalMs.toFixed(0)} ms sampled: ${summary.busyMs.toFixed(0)} ms busy, ` +
        `${summary.idleMs.toFixed(0)} ms idle.`,
        "",
        table("function (self time)", summary.functions, top),
        "",
        table("category (self time)", summary.categories, 20),
        "",
        ...(summary.sourceTotals.length > 0
          ? [table("effect-mqtt function (total time, callees included)", summary.sourceTotals, top), ""]
          : []),
        table("file (self time)", summary.files, Math.min(top, 12)),
        ""
      ].join("\n")
    )
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main()
