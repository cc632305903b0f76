/**
 * Scenario "slow-consumer": a subscriber that takes 5 ms per message while QoS 1 messages are published to it as
 * fast as possible loses nothing, and its resident memory stays under a fixed bound that does not grow with the
 * number of messages.
 *
 * The subscriber runs in a child process of its own (`reliability/children/slowSubscriber.ts`), so its memory is
 * measured alone: peak RSS is the process's high-water mark (`maxRSS`). The publisher, in this process, publishes
 * 16 KiB QoS 1 messages with 1,000 in flight. Mosquitto is configured with no in-flight limit towards the subscriber
 * (`max_inflight_messages 0`), so the broker does not throttle: what bounds the subscriber is its own backpressure
 * (a full subscription buffer stops the reader, TCP stops the broker). The scenario runs two sizes (2,000 and
 * 20,000; quick: 2,000 and 8,000), each twice: as deployed (peak RSS against `RSS_BOUND`), and with a full collection
 * every 0.5 s, whose live heap and live array buffers at the two sizes are compared against `RETAINED_GROWTH_BOUND` —
 * V8 collects old garbage when it chooses, so only the collected figures tell what the client retains.
 */
import * as Effect from "effect/Effect"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import { clientId, options, topicRoot } from "../../test/utils/clients.ts"
import * as Mosquitto from "../../test/utils/Mosquitto.ts"
import { spawnNode } from "./child.ts"
import { type Context, mib, type Outcome, type Row, type Scenario } from "./Scenario.ts"

/** Peak RSS of the subscriber process as deployed, at any message count (20,000 × 16 KiB = 320 MiB pass through it). */
export const RSS_BOUND = 320 * 1024 * 1024
/**
 * How much more memory the subscriber may retain with 10× the messages (4× in quick runs), measured with a full
 * collection every 0.5 s (live heap and live array buffers): noise, not growth.
 */
export const RETAINED_GROWTH_BOUND = 16 * 1024 * 1024

export interface SlowConsumerConfig {
  readonly messages: number
  /** Per message (default 5). */
  readonly delayMillis?: number | undefined
  /** Default 16,384. */
  readonly payloadBytes?: number | undefined
  /**
   * Run the subscriber with `--expose-gc` and a full collection every 0.5 s, so that its peak RSS shows what the
   * client holds rather than when V8 chooses to collect (default false: as deployed).
   */
  readonly forceGc?: boolean | undefined
  readonly log?: ((line: string) => void) | undefined
}

export interface SlowConsumerResult {
  readonly messages: number
  readonly received: number
  readonly unique: number
  readonly duplicates: number
  readonly outOfOrder: number
  readonly disconnects: number
  /** How long publishing took, and consuming. */
  readonly publishMillis: number
  readonly consumeMillis: number
  readonly baselineRss: number
  readonly peakSampledRss: number
  readonly maxRss: number
  readonly peakHeapUsed: number
  readonly peakArrayBuffers: number
  /** With `forceGc`: the peaks measured right after a full collection. */
  readonly peakLiveHeap: number | undefined
  readonly peakLiveArrayBuffers: number | undefined
  readonly forceGc: boolean
}

export const runSlowConsumer = (config: SlowConsumerConfig) =>
  Effect.gen(function*() {
    const log = config.log ?? (() => {})
    const delayMillis = config.delayMillis ?? 5
    const payloadBytes = Math.max(4, config.payloadBytes ?? 16_384)
    const broker = yield* Mosquitto.start({
      maxInflightMessages: 0,
      maxQueuedMessages: config.messages + 1_000
    })
    const topic = `${topicRoot("slow")}/t`
    const child = yield* spawnNode("reliability/children/slowSubscriber.ts", [
      broker.url,
      topic,
      String(config.messages),
      String(delayMillis),
      clientId("slow")
    ], { nodeOptions: config.forceGc === true ? ["--expose-gc"] : [] })
    yield* child.awaitMessage("ready", 30_000)
    const publisher = yield* MqttClient.make(options(broker.url, { clientId: clientId("fast") }))
    const started = Date.now()
    yield* Effect.forEach(
      Array.from({ length: config.messages }, (_, i) => i + 1),
      (n) => {
        const payload = new Uint8Array(payloadBytes)
        new DataView(payload.buffer).setUint32(0, n)
        return publisher.publish({ topic, payload, qos: 1 })
      },
      { concurrency: 1_000, discard: true }
    )
    const publishMillis = Date.now() - started
    log(
      `published ${config.messages} in ${publishMillis} ms; the subscriber needs at least ` +
        `${config.messages * delayMillis} ms`
    )
    const done = yield* child.awaitMessage("done", config.messages * delayMillis * 5 + 60_000)
    const number = (key: string) => Number(done[key] ?? 0)
    const result: SlowConsumerResult = {
      messages: config.messages,
      received: number("received"),
      unique: number("unique"),
      duplicates: number("duplicates"),
      outOfOrder: number("outOfOrder"),
      disconnects: number("disconnects"),
      publishMillis,
      consumeMillis: number("millis"),
      baselineRss: number("baselineRss"),
      peakSampledRss: number("peakSampledRss"),
      maxRss: number("maxRss"),
      peakHeapUsed: number("peakHeapUsed"),
      peakArrayBuffers: number("peakArrayBuffers"),
      peakLiveHeap: done["peakLiveHeap"] === undefined ? undefined : number("peakLiveHeap"),
      peakLiveArrayBuffers: done["peakLiveArrayBuffers"] === undefined ? undefined : number("peakLiveArrayBuffers"),
      forceGc: config.forceGc === true
    }
    const live = result.peakLiveHeap === undefined
      ? ""
      : `; live heap ${mib(result.peakLiveHeap)}, live array buffers ${mib(result.peakLiveArrayBuffers ?? 0)}`
    log(
      `consumed ${result.unique}/${result.messages}${result.forceGc ? " (GC every 0.5 s)" : ""} in ` +
        `${result.consumeMillis} ms; peak RSS ${mib(result.maxRss)} (at ready ${mib(result.baselineRss)}, sampled ` +
        `peak ${mib(result.peakSampledRss)}, heap ${mib(result.peakHeapUsed)}, array buffers ` +
        `${mib(result.peakArrayBuffers)}${live})`
    )
    return result
  })

export const passed = (result: SlowConsumerResult): boolean =>
  result.unique === result.messages && result.maxRss <= RSS_BOUND

const row = (result: SlowConsumerResult): Row => ({
  scenario: `Slow consumer, 5 ms/message (${result.messages.toLocaleString("en-US")} × QoS 1, 16 KiB)`,
  sent: result.messages,
  delivered: result.unique,
  lost: result.messages - result.unique,
  duplicated: undefined,
  reconnects: result.disconnects,
  peakRssBytes: result.maxRss,
  ok: passed(result)
})

const describeRun = (r: SlowConsumerResult): string =>
  `| ${r.messages.toLocaleString("en-US")} | ${r.forceGc ? "every 0.5 s" : "V8's choice"} | ${r.publishMillis} ms | ` +
  `${r.consumeMillis} ms | ${r.unique === r.messages ? "none" : r.messages - r.unique} | ${mib(r.maxRss)} | ` +
  `${mib(r.baselineRss)} | ${r.peakLiveHeap !== undefined ? mib(r.peakLiveHeap) : mib(r.peakHeapUsed)} | ` +
  `${r.peakLiveArrayBuffers !== undefined ? mib(r.peakLiveArrayBuffers) : mib(r.peakArrayBuffers)} |`

export const scenario: Scenario = {
  name: "slow-consumer",
  title: "Slow consumer: bounded memory, nothing lost",
  proves: `a subscriber taking 5 ms per message while 16 KiB QoS 1 messages are published to it as fast as possible ` +
    `loses nothing, its peak RSS stays below ${mib(RSS_BOUND)}, and the memory it retains does not grow with the ` +
    `number of messages (from 2,000 to 20,000: by less than ${mib(RETAINED_GROWTH_BOUND)})`,
  run: (context: Context) =>
    Effect.gen(function*() {
      // The smaller size must already fill the subscription buffer (1,024) and the socket buffers: the steady state.
      const sizes = context.mode === "full" ? [2_000, 20_000] : [2_000, 8_000]
      const deployed: Array<SlowConsumerResult> = []
      const collected: Array<SlowConsumerResult> = []
      for (const messages of sizes) {
        deployed.push(yield* runSlowConsumer({ messages, log: context.log }))
        collected.push(yield* runSlowConsumer({ messages, forceGc: true, log: context.log }))
      }
      const [small, large] = collected as [SlowConsumerResult, SlowConsumerResult]
      const heapGrowth = (large.peakLiveHeap ?? 0) - (small.peakLiveHeap ?? 0)
      const bufferGrowth = (large.peakLiveArrayBuffers ?? 0) - (small.peakLiveArrayBuffers ?? 0)
      const retainedOk = heapGrowth <= RETAINED_GROWTH_BOUND && bufferGrowth <= RETAINED_GROWTH_BOUND
      const ok = [...deployed, ...collected].every(passed) && retainedOk
      const [deployedSmall, deployedLarge] = deployed as [SlowConsumerResult, SlowConsumerResult]
      const count = (n: number) => n.toLocaleString("en-US")
      return {
        ok,
        details: [
          `Bound: the subscriber process's peak RSS stays ≤ ${mib(RSS_BOUND)} at any message count (as ` +
          `deployed: ${mib(deployedSmall.maxRss)} at ${count(small.messages)}, ${mib(deployedLarge.maxRss)} at ` +
          `${count(large.messages)}, while ${mib(large.messages * 16_384)} of messages passed through). It does ` +
          `not grow with the count: with a full collection every 0.5 s the live heap grew by ${mib(heapGrowth)} ` +
          `and the live array buffers by ${mib(bufferGrowth)} from ${count(small.messages)} to ` +
          `${count(large.messages)} messages (allowed ${mib(RETAINED_GROWTH_BOUND)} each), and peak RSS by ` +
          `${mib(large.maxRss - small.maxRss)}. Without forced collections RSS saw-tooths with V8's major ` +
          `collections: the difference between the two as-deployed peaks is when V8 collects, not what the client ` +
          `holds.`,
          "",
          "Mosquitto is configured with no in-flight limit (`max_inflight_messages 0`), so nothing but the " +
          "client's own backpressure bounds it: a full subscription buffer (1,024 messages) stops its reader, TCP " +
          "stops the broker. The publisher sends with 1,000 publishes in flight. About 140 MiB of the RSS is the " +
          "Node process with effect-mqtt and its dependencies loaded and connected (\"RSS when subscribed\").",
          "",
          "| messages | full GC | published in | consumed in | lost | peak RSS | RSS when subscribed | " +
          "peak (live) heap | peak (live) array buffers |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
          ...[...deployed, ...collected].sort((a, b) => a.messages - b.messages).map(describeRun)
        ],
        rows: deployed.map(row)
      } satisfies Outcome
    })
}
