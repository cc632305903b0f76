/**
 * Scenario "hostile-broker": every case of `HostileBroker.cases` against a real effect-mqtt client over TCP. A case
 * the protocol forbids must end the connection with a typed `MqttError` (`MalformedPacket` or `ProtocolViolation`,
 * seen as the reason of the `Disconnected` event), closed by the client, followed by a reconnect to a broker that
 * behaves and a publish that succeeds; a case the protocol tolerates (acknowledgements for unknown ids, floods) must
 * leave the connection up and working. In every case no exception escapes (no uncaught exception, no unhandled
 * rejection, no defect: the client keeps working) and memory stays bounded: the array-buffer and resident memory of
 * the process are sampled every 5 ms during the case and compared with a fixed bound far below what the attack
 * announces or sends (an oversize packet is refused from its header, before its body is buffered).
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import { clientId, options, record, waitUntil } from "../../test/utils/clients.ts"
import * as HostileBroker from "../../test/utils/HostileBroker.ts"
import { type Context, mib, type Outcome, peakRss, type Scenario } from "./Scenario.ts"

/**
 * Bound on the growth of array-buffer memory during a case. The broker runs in the same process and both sides make
 * garbage the collector takes a while to reclaim, so this is no tight bound on what the client holds (the slow
 * consumer scenario measures that, in a process of its own); it is far below what the attacks announce (256 MiB, 1 GiB)
 * or send (a flood: 320 MiB), which a client that buffered them would reach.
 */
export const ARRAY_BUFFER_BOUND = 128 * 1024 * 1024
/** Bound on the growth of resident memory during a case (see `ARRAY_BUFFER_BOUND`). */
export const RSS_GROWTH_BOUND = 160 * 1024 * 1024

export interface CaseOutcome {
  readonly name: string
  readonly expect: HostileBroker.Expectation
  /** The reason of the `Disconnected` error, or "tolerated" when the connection stayed up. */
  readonly observed: string
  readonly detail: string
  /** Connected again after the error (error cases), or never disconnected (tolerated cases). */
  readonly reconnected: boolean
  /** A QoS 1 publish completed after the attack. */
  readonly usableAfter: boolean
  /** Whether the client closed the hostile connection (error cases). */
  readonly closedByClient: boolean
  /** What the case's own check found wrong with the hostile connection, if anything. */
  readonly problem: string | undefined
  /** Uncaught exceptions and unhandled rejections seen during the case. */
  readonly escaped: ReadonlyArray<string>
  readonly arrayBufferGrowth: number
  readonly rssGrowth: number
  /** Bytes the hostile connection wrote (an oversize body stops when the client closes). */
  readonly bytesWritten: number
  /** Flood messages sent and received. */
  readonly sent: number
  readonly received: number
  readonly reconnects: number
  readonly ok: boolean
}

const tagOf = (error: { readonly reason: { readonly _tag: string } }) => error.reason._tag

/** Samples memory every 5 ms until the scope closes; returns the growth over the first sample. */
const memorySampler = Effect.acquireRelease(
  Effect.sync(() => {
    const base = process.memoryUsage()
    const peak = { arrayBuffers: base.arrayBuffers, rss: base.rss }
    const sample = () => {
      const now = process.memoryUsage()
      peak.arrayBuffers = Math.max(peak.arrayBuffers, now.arrayBuffers)
      peak.rss = Math.max(peak.rss, now.rss)
    }
    const timer = setInterval(sample, 5)
    return {
      timer,
      growth: () => {
        sample()
        return { arrayBuffers: peak.arrayBuffers - base.arrayBuffers, rss: peak.rss - base.rss }
      }
    }
  }),
  ({ timer }) => Effect.sync(() => clearInterval(timer))
)

/** Records uncaught exceptions and unhandled rejections while the scope is open. */
const escapes = Effect.acquireRelease(
  Effect.sync(() => {
    const seen: Array<string> = []
    const onError = (error: unknown) => {
      seen.push(error instanceof Error ? `${error.name}: ${error.message}` : String(error))
    }
    process.on("uncaughtException", onError)
    process.on("unhandledRejection", onError)
    return { seen, onError }
  }),
  ({ onError }) =>
    Effect.sync(() => {
      process.off("uncaughtException", onError)
      process.off("unhandledRejection", onError)
    })
).pipe(Effect.map(({ seen }) => seen))

/** Runs one hostile case against a fresh broker and client. */
export const runHostileCase = (hostile: HostileBroker.HostileCase) =>
  Effect.scoped(Effect.gen(function*() {
    const escaped = yield* escapes
    const broker = yield* HostileBroker.start({ script: [hostile.attack] })
    const client = yield* MqttClient.make(
      options(broker.url, {
        clientId: clientId("hostile"),
        keepalive: 30,
        reconnect: Schedule.spaced("50 millis"),
        ...(hostile.clientOptions?.maximumPacketSize !== undefined
          ? { maximumPacketSize: hostile.clientOptions.maximumPacketSize }
          : {})
      })
    )
    const events = yield* record(client.events)
    const flood = hostile.attack._tag === "Flood" ? hostile.attack : undefined
    let received = 0
    let lastNumber = 0
    let outOfOrder = 0
    const memory = yield* memorySampler
    if (hostile.subscribe === true) {
      const subscription = yield* client.subscription("hostile/#", { qos: 1, bufferSize: 64 })
      // A consumer slower than the network: 2 ms every 20 messages.
      yield* Effect.forkScoped(
        subscription.messages.pipe(
          Stream.runForEach((message) =>
            Effect.suspend(() => {
              received++
              const n = message.payload.length >= 4
                ? new DataView(message.payload.buffer, message.payload.byteOffset, 4).getUint32(0)
                : 0
              if (n !== lastNumber + 1) outOfOrder++
              lastNumber = n
              return received % 20 === 0 ? Effect.sleep("2 millis") : Effect.void
            })
          ),
          Effect.ignore
        ),
        { startImmediately: true }
      )
    }
    // Bytes attacks start after the client's first PUBLISH: the client is surely connected by then.
    if (hostile.attack._tag !== "Flood") yield* client.publish({ topic: "hostile/go", payload: "go", qos: 0 })

    let observed = "tolerated"
    let detail = ""
    let reconnected = false
    const publishAfter = Effect.map(
      Effect.timeoutOption(
        Effect.exit(client.publish({ topic: "hostile/after", payload: "after", qos: 1 })),
        "5 seconds"
      ),
      (done) => Option.isSome(done) && Exit.isSuccess(done.value)
    )
    let usableAfter = false
    if (hostile.expect === "tolerated") {
      yield* broker.awaitAttack(1, 60_000)
      if (flood !== undefined) {
        yield* Effect.exit(waitUntil(`${flood.count} flooded messages`, () => received >= flood.count, 60_000))
      }
      // A round trip after the attack: its bytes were read before this PUBACK.
      usableAfter = yield* publishAfter
      const down = events.items.find((e) => e._tag === "Disconnected")
      if (down !== undefined && down._tag === "Disconnected") {
        observed = tagOf(down.error)
        detail = down.error.message
      }
      reconnected = down === undefined && (yield* client.isConnected)
    } else {
      const down = yield* Effect.exit(
        events.waitFor("Disconnected", (es) => es.some((e) => e._tag === "Disconnected"), 10_000)
      )
      const event = down._tag === "Success" ? down.value.find((e) => e._tag === "Disconnected") : undefined
      if (event !== undefined && event._tag === "Disconnected") {
        observed = tagOf(event.error)
        detail = event.error.message
      } else {
        observed = "no Disconnected event"
      }
      reconnected = (yield* Effect.exit(
        events.waitFor("Connected again", (es) => es.some((e) => e._tag === "Connected"), 10_000)
      ))._tag === "Success"
      usableAfter = yield* publishAfter
    }
    const growth = memory.growth()
    const first = broker.connections[0]
    if (hostile.expect !== "tolerated") yield* Effect.exit(broker.awaitClosed(1, 5_000))
    const verify = hostile.verify
    // The client's answer to the attack may still be on its way when its later PUBACK already arrived.
    if (first !== undefined && verify !== undefined) {
      yield* Effect.exit(waitUntil(`the check of "${hostile.name}"`, () => verify(first) === undefined, 5_000))
    }
    const problem = first === undefined ? "no connection" : verify?.(first)
    const outcome: Omit<CaseOutcome, "ok"> = {
      name: hostile.name,
      expect: hostile.expect,
      observed,
      detail: detail.slice(0, 200),
      reconnected,
      usableAfter,
      closedByClient: first?.closedBy === "client",
      problem,
      escaped: [...escaped],
      arrayBufferGrowth: growth.arrayBuffers,
      rssGrowth: growth.rss,
      bytesWritten: first?.bytesWritten ?? 0,
      sent: flood?.count ?? 0,
      received: flood !== undefined ? received : 0,
      reconnects: events.items.filter((e) => e._tag === "Connected").length
    }
    const ok = outcome.observed === hostile.expect && outcome.reconnected && outcome.usableAfter &&
      outcome.escaped.length === 0 && outcome.arrayBufferGrowth <= ARRAY_BUFFER_BOUND &&
      outcome.rssGrowth <= RSS_GROWTH_BOUND && outcome.sent === outcome.received &&
      (hostile.expect === "tolerated" || outcome.closedByClient) && outOfOrder === 0 && problem === undefined
    return { ...outcome, ok } satisfies CaseOutcome
  }))

export const scenario: Scenario = {
  name: "hostile-broker",
  title: "Hostile broker",
  proves: "malformed and illegal packets end the connection with a typed MqttError and a reconnect, tolerated " +
    "oddities leave it working, no exception escapes and memory stays bounded",
  run: (context: Context) =>
    Effect.gen(function*() {
      const outcomes: Array<CaseOutcome> = []
      for (const hostile of HostileBroker.cases) {
        const outcome = yield* runHostileCase(hostile)
        outcomes.push(outcome)
        context.log(
          `${outcome.ok ? "ok  " : "FAIL"} ${hostile.name}: ${outcome.observed}` +
            `${outcome.reconnected ? "" : " (no reconnect)"}; memory +${mib(outcome.arrayBufferGrowth)} buffers, ` +
            `+${mib(outcome.rssGrowth)} RSS`
        )
      }
      const ok = outcomes.every((o) => o.ok)
      const sent = outcomes.reduce((n, o) => n + o.sent, 0)
      const received = outcomes.reduce((n, o) => n + o.received, 0)
      return {
        ok,
        details: [
          `Bounds during each case: array buffers +${mib(ARRAY_BUFFER_BOUND)}, RSS +${mib(RSS_GROWTH_BOUND)}.`,
          "",
          "| case | expected | observed | reconnected / kept | usable after | buffers | RSS |",
          "| --- | --- | --- | --- | --- | --- | --- |",
          ...outcomes.map((o) =>
            `| ${o.name} | ${o.expect} | ${o.observed}${o.ok ? "" : " **FAIL**"} | ${o.reconnected ? "yes" : "no"} | ` +
            `${o.usableAfter ? "yes" : "no"} | +${mib(o.arrayBufferGrowth)} | +${mib(o.rssGrowth)} |`
          )
        ],
        rows: [{
          scenario: `Hostile broker (${outcomes.length} cases, ${outcomes.filter((o) => o.ok).length} as expected)`,
          sent,
          delivered: received,
          lost: sent - received,
          duplicated: undefined,
          reconnects: outcomes.reduce((n, o) => n + Math.max(0, o.reconnects), 0),
          peakRssBytes: peakRss(),
          ok
        }]
      } satisfies Outcome
    })
}
