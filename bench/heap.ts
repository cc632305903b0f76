/**
 * Summarises a V8 `.heapsnapshot` (from `npm run bench -- --scenario 7 --heap-snapshot DIR`): self size and count per
 * constructor (objects), per function (closures) and per other node type, biggest first, optionally divided by the
 * number of connections to give bytes per idle connection. Markdown on stdout.
 *
 * `--diff BASE.heapsnapshot` shows instead what each row grew by over a base snapshot (as between two layers of
 * `npm run bench:footprint -- --heap-snapshot DIR`).
 *
 * Run: `npx node bench/heap.ts FILE.heapsnapshot [--per 1000] [--top 25] [--diff BASE.heapsnapshot]`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"

interface Snapshot {
  readonly snapshot: {
    readonly meta: {
      readonly node_fields: ReadonlyArray<string>
      readonly node_types: ReadonlyArray<ReadonlyArray<string> | string>
    }
  }
  readonly nodes: ReadonlyArray<number>
  readonly strings: ReadonlyArray<string>
}

export interface HeapRow {
  readonly name: string
  readonly count: number
  readonly selfBytes: number
}

export const summarize = (snapshot: Snapshot): { readonly totalBytes: number; readonly rows: Array<HeapRow> } => {
  const fields = snapshot.snapshot.meta.node_fields
  const types = snapshot.snapshot.meta.node_types[0] as ReadonlyArray<string>
  const width = fields.length
  const typeAt = fields.indexOf("type")
  const nameAt = fields.indexOf("name")
  const sizeAt = fields.indexOf("self_size")
  const groups = new Map<string, { count: number; selfBytes: number }>()
  let totalBytes = 0
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + typeAt]!] ?? "?"
    const name = snapshot.strings[snapshot.nodes[i + nameAt]!] ?? "?"
    const size = snapshot.nodes[i + sizeAt]!
    totalBytes += size
    // Objects by constructor, closures by function name; strings, arrays, code… by type only.
    const key = type === "object" || type === "closure" || type === "native"
      ? `${type === "object" ? "" : `(${type}) `}${name === "" ? "(anonymous)" : name}`
      : `(${type})`
    const group = groups.get(key) ?? { count: 0, selfBytes: 0 }
    group.count++
    group.selfBytes += size
    groups.set(key, group)
  }
  const rows = [...groups].map(([name, g]) => ({ name, ...g })).sort((a, b) => b.selfBytes - a.selfBytes)
  return { totalBytes, rows }
}

/** What each row grew by from `base` to `summary`, biggest growth first. */
export const difference = (
  summary: ReturnType<typeof summarize>,
  base: ReturnType<typeof summarize>
): ReturnType<typeof summarize> => {
  const before = new Map(base.rows.map((row) => [row.name, row]))
  const rows = summary.rows.map((row) => {
    const b = before.get(row.name)
    return { name: row.name, count: row.count - (b?.count ?? 0), selfBytes: row.selfBytes - (b?.selfBytes ?? 0) }
  }).sort((a, b) => b.selfBytes - a.selfBytes)
  return { totalBytes: summary.totalBytes - base.totalBytes, rows }
}

const main = () => {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      per: { type: "string", default: "1" },
      top: { type: "string", default: "25" },
      diff: { type: "string" }
    }
  })
  const per = Math.max(1, Number(values.per))
  const top = Number(values.top)
  if (positionals.length === 0) {
    console.error("usage: npx node bench/heap.ts FILE.heapsnapshot... [--per N] [--top N]")
    process.exit(2)
  }
  const read = (file: string) => summarize(JSON.parse(fs.readFileSync(file, "utf8")) as Snapshot)
  const base = values.diff === undefined ? undefined : read(values.diff)
  for (const file of positionals) {
    const summary = read(file)
    const { totalBytes, rows } = base === undefined ? summary : difference(summary, base)
    const perLabel = per > 1 ? ` / ${per}` : ""
    console.log(
      [
        `#### ${path.basename(file)}`,
        "",
        `${(totalBytes / 2 ** 20).toFixed(1)} MB ${base === undefined ? "in the snapshot" : `more than ${values.diff}`}` +
        `${per > 1 ? `, ${(totalBytes / per / 1024).toFixed(1)} KB${perLabel}` : ""}.`,
        "",
        `| constructor / type | count${perLabel} | self KB${perLabel} | share |`,
        "| --- | ---: | ---: | ---: |",
        ...rows.slice(0, top).map((r) =>
          `| \`${r.name}\` | ${(r.count / per).toFixed(1)} | ${(r.selfBytes / per / 1024).toFixed(2)} | ` +
          `${((r.selfBytes / totalBytes) * 100).toFixed(1)}% |`
        ),
        ""
      ].join("\n")
    )
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main()
