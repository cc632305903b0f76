/**
 * Codec benchmark: effect-mqtt's `encode` and `Decoder` against bare `mqtt-packet` (`generate` and `parser`) on the
 * same PUBLISH packets, in one process, alternating rounds. Prints ops/s (median of the rounds, with min and max) and
 * the ratio raw / effect-mqtt, which the foundation issue asks to keep within 1.3 for 64 B and 64 KiB payloads.
 *
 * Run: `npm run bench:codec` (add `-- --quick` for a short run). Not a test: nothing here asserts a time.
 */
import { Buffer } from "node:buffer"
import * as MqttPacket from "mqtt-packet"
import * as Result from "effect/Result"
import * as Codec from "../src/Codec/Codec.ts"
import type * as Packet from "../src/Codec/Packet.ts"

const quick = process.argv.includes("--quick")
const rounds = quick ? 3 : 7
const budgetMs = quick ? 150 : 500

const measure = (fn: () => void): number => {
  // Warm up, then run batches until the time budget is spent.
  for (let i = 0; i < 2_000; i++) fn()
  let ops = 0
  const start = process.hrtime.bigint()
  const deadline = start + BigInt(budgetMs) * 1_000_000n
  let now = start
  while (now < deadline) {
    for (let i = 0; i < 500; i++) fn()
    ops += 500
    now = process.hrtime.bigint()
  }
  return ops / (Number(now - start) / 1e9)
}

const stats = (xs: Array<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return { median: sorted[Math.floor(sorted.length / 2)]!, min: sorted[0]!, max: sorted[sorted.length - 1]! }
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US").padStart(12)

interface Row {
  readonly name: string
  readonly ours: () => void
  readonly raw: () => void
}

const makeRows = (size: number, label: string): Array<Row> => {
  const payload = Buffer.alloc(size, 0x61)
  const packet: Packet.Publish = {
    _tag: "Publish",
    topic: "bench/codec/topic",
    payload,
    qos: 1,
    retain: false,
    dup: false,
    packetId: 42
  }
  const wire: MqttPacket.IPublishPacket = {
    cmd: "publish",
    topic: "bench/codec/topic",
    payload,
    qos: 1,
    retain: false,
    dup: false,
    messageId: 42
  }
  const bytes = MqttPacket.generate(wire)
  // Ten packets per chunk, as a socket read delivers them under load.
  const chunk = Buffer.concat(Array.from({ length: 10 }, () => bytes))
  const decoder = new Codec.Decoder()
  const parser = MqttPacket.parser({ protocolVersion: 4 })
  let sink = 0
  parser.on("packet", () => {
    sink++
  })
  const decodeRow = (name: string, bytes: Buffer): Row => ({
    name,
    ours: () => {
      const r = decoder.push(bytes)
      if (Result.isFailure(r)) throw r.failure
      sink += r.success.length
    },
    raw: () => {
      parser.parse(bytes)
    }
  })
  // The same with a different topic in each packet of the chunk (the worst case for the decoder's reuse of the last
  // topic: equal lengths, and the bytes differ only at the end).
  const mixedChunk = Buffer.concat(
    Array.from({ length: 10 }, (_, i) => MqttPacket.generate({ ...wire, topic: `bench/codec/topic${i}` }))
  )
  return [
    {
      name: `encode PUBLISH ${label}`,
      ours: () => {
        const r = Codec.encode(packet)
        if (Result.isFailure(r)) throw r.failure
      },
      raw: () => {
        MqttPacket.generate(wire)
      }
    },
    decodeRow(`decode PUBLISH ${label} (x10/chunk)`, chunk),
    ...(size > 1024 ? [] : [decodeRow(`decode PUBLISH ${label} (10 topics)`, mixedChunk)])
  ]
}

const rows = [...makeRows(64, "64 B"), ...makeRows(64 * 1024, "64 KiB")]
console.log(`codec benchmark: node ${process.version}, ${rounds} rounds of ${budgetMs} ms, median ops/s (min..max)`)
console.log(`${"case".padEnd(34)}${"effect-mqtt".padStart(12)}${"mqtt-packet".padStart(12)}  raw/ours`)
const results: Array<{ name: string; ours: number; raw: number; ratio: number }> = []
for (const row of rows) {
  const ours: Array<number> = []
  const raw: Array<number> = []
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first so that neither always runs on a warmer machine.
    if (r % 2 === 0) {
      ours.push(measure(row.ours))
      raw.push(measure(row.raw))
    } else {
      raw.push(measure(row.raw))
      ours.push(measure(row.ours))
    }
  }
  const o = stats(ours)
  const w = stats(raw)
  const ratio = w.median / o.median
  results.push({ name: row.name, ours: o.median, raw: w.median, ratio })
  console.log(
    `${row.name.padEnd(34)}${fmt(o.median)}${fmt(w.median)}  ${ratio.toFixed(2)}x` +
      `   (ours ${fmt(o.min).trim()}..${fmt(o.max).trim()}, raw ${fmt(w.min).trim()}..${fmt(w.max).trim()})`
  )
}
const worst = Math.max(...results.map((r) => r.ratio))
console.log(`worst ratio raw/ours: ${worst.toFixed(2)}x (target: <= 1.30x)`)
