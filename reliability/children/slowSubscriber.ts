/**
 * The measured process of the slow-consumer scenario: one effect-mqtt client that subscribes at QoS 1 and takes
 * `delayMillis` per message, while the parent publishes to it as fast as it can. It reports, as JSON lines on stdout
 * (see `reliability/scenarios/child.ts`): `ready` once subscribed (with its resident memory then), and `done` once it
 * has received `count` distinct messages (or `timeout`), with what it received, duplicates, order, and its memory:
 * the peak resident set size of the whole process (`maxRSS`), the peak sampled every 50 ms after `ready`, and the
 * peak heap and array-buffer use.
 *
 * Usage (from the repository root): node --conditions=@effect-mqtt/source [--expose-gc]
 *   reliability/children/slowSubscriber.ts URL TOPIC COUNT DELAY_MS CLIENT_ID
 * With `--expose-gc` it also runs a full collection every 0.5 s and reports the live heap and array buffers after it.
 */
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import { report } from "../scenarios/child.ts"

const [url, topic, countText, delayText, clientId] = process.argv.slice(2)
const count = Number(countText)
const delayMillis = Number(delayText)
if (url === undefined || topic === undefined || clientId === undefined || !(count > 0) || !(delayMillis >= 0)) {
  process.stderr.write("usage: slowSubscriber.ts URL TOPIC COUNT DELAY_MS CLIENT_ID\n")
  process.exit(2)
}

let peakSampled = 0
let peakHeap = 0
let peakArrayBuffers = 0
let peakLiveHeap = 0
let peakLiveArrayBuffers = 0
let sampling = false
let samples = 0
/** Resident memory once a second after `ready`, in MiB (at most 600 entries). */
const timeline: Array<number> = []
const forceGc = (globalThis as { gc?: () => void }).gc
const sample = () => {
  if (!sampling) return
  samples++
  // With --expose-gc, every 10th sample also measures live memory (after a full collection).
  if (forceGc !== undefined && samples % 10 === 0) {
    forceGc()
    const live = process.memoryUsage()
    peakLiveHeap = Math.max(peakLiveHeap, live.heapUsed)
    peakLiveArrayBuffers = Math.max(peakLiveArrayBuffers, live.arrayBuffers)
  }
  const usage = process.memoryUsage()
  if (samples % 20 === 0 && timeline.length < 600) timeline.push(Math.round(usage.rss / 1024 / 1024))
  peakSampled = Math.max(peakSampled, usage.rss)
  peakHeap = Math.max(peakHeap, usage.heapUsed)
  peakArrayBuffers = Math.max(peakArrayBuffers, usage.arrayBuffers)
}
const sampler = setInterval(sample, 50)

const program = Effect.gen(function*() {
  const client = yield* MqttClient.make({
    url,
    clientId,
    keepalive: 30,
    connectTimeout: "5 seconds",
    reconnect: Schedule.spaced("100 millis"),
    disconnectTimeout: "2 seconds"
  })
  let disconnects = 0
  yield* Effect.forkScoped(
    Stream.runForEach(client.events, (event) => Effect.sync(() => event._tag === "Disconnected" && disconnects++)),
    { startImmediately: true }
  )
  const subscription = yield* client.subscription(topic, { qos: 1 })
  const baseline = process.memoryUsage().rss
  sampling = true
  report({ event: "ready", rss: baseline })
  const started = Date.now()
  const seen = new Set<number>()
  let received = 0
  let duplicates = 0
  let outOfOrder = 0
  let last = 0
  yield* subscription.messages.pipe(
    Stream.mapEffect((message) => Effect.as(Effect.sleep(`${delayMillis} millis`), message)),
    Stream.tap((message) =>
      Effect.sync(() => {
        received++
        const n = new DataView(message.payload.buffer, message.payload.byteOffset, 4).getUint32(0)
        if (seen.has(n)) duplicates++
        else seen.add(n)
        if (n < last) outOfOrder++
        last = n
      })
    ),
    Stream.takeUntil(() => seen.size >= count),
    Stream.runDrain,
    Effect.timeoutOption(Math.max(60_000, count * delayMillis * 4 + 60_000))
  )
  sample()
  report({
    event: seen.size >= count ? "done" : "timeout",
    received,
    unique: seen.size,
    duplicates,
    outOfOrder,
    disconnects,
    millis: Date.now() - started,
    baselineRss: baseline,
    peakSampledRss: peakSampled,
    maxRss: process.resourceUsage().maxRSS * 1024,
    peakHeapUsed: peakHeap,
    peakArrayBuffers,
    rssTimelineMiB: timeline,
    ...(forceGc !== undefined ? { peakLiveHeap, peakLiveArrayBuffers } : {})
  })
})

Effect.runPromise(Effect.scoped(program)).then(
  () => {
    clearInterval(sampler)
    process.exit(0)
  },
  (error: unknown) => {
    clearInterval(sampler)
    process.stderr.write(`slowSubscriber failed: ${String(error)}\n`)
    process.exit(1)
  }
)
