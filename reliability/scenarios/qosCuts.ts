/**
 * Scenario "qos-cuts": the connection is cut at every stage of the QoS 1 and QoS 2 flows, in both directions of
 * message flow, and nothing is lost or delivered twice at QoS 2.
 *
 * A publisher and a subscriber, both effect-mqtt with persistent sessions (cleanSession false, keepalive 1 s,
 * reconnect every 20 ms), talk to a real Mosquitto through one `FaultProxy` each. Every trial arms one cut on one
 * proxy, publishes a batch of 1..6 messages and waits until the cut happened, the cut client reconnected and the
 * batch completed. A stage cut is: the flow (outgoing: the publisher's link, PUBLISH → PUBACK or PUBLISH → PUBREC →
 * PUBREL → PUBCOMP; incoming: the subscriber's link, the same packets the other way), the packet after which the
 * link dies (the n-th of its kind in the batch), and whether that packet still arrives (`deliver`) or is lost with
 * the link. Every fourth trial is a byte cut instead: the link dies after a random number of bytes in one direction,
 * mid-packet as a rule. Both say who sees the cut (both ends; only the client, the broker's socket going silent; only
 * the broker, the client noticing by keepalive) and how the network behaves meanwhile (plain, 2–30 ms of latency, or
 * 1-byte fragments). A third of the stage cuts cut the link a second time on the first resend of that packet after
 * the reconnect, so the session's resume is itself interrupted. Stages and delivery take turns so every combination
 * is covered; the rest is drawn from the seed (the topic is fixed by it too, so a seed replays the same cut points).
 * At the end every payload must have arrived, QoS 2 payloads exactly once.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import { clientId, options, record, text, waitUntil } from "../../test/utils/clients.ts"
import * as FaultProxy from "../../test/utils/FaultProxy.ts"
import * as Mosquitto from "../../test/utils/Mosquitto.ts"
import { type Context, type Outcome, peakRss, random, type Scenario, Tally } from "./Scenario.ts"

/** One stage of a flow: the packet after which the link is cut, and which way it travels on that link. */
export interface Stage {
  /** `outgoing`: the effect-mqtt publisher's link is cut; `incoming`: the effect-mqtt subscriber's. */
  readonly flow: "outgoing" | "incoming"
  readonly qos: 1 | 2
  readonly tag: "Publish" | "Puback" | "Pubrec" | "Pubrel" | "Pubcomp"
  readonly direction: FaultProxy.Direction
}

/** Every stage of the QoS 1 and QoS 2 flows, both ways (12). */
export const stages: ReadonlyArray<Stage> = [
  { flow: "outgoing", qos: 1, tag: "Publish", direction: "toBroker" },
  { flow: "outgoing", qos: 1, tag: "Puback", direction: "toClient" },
  { flow: "outgoing", qos: 2, tag: "Publish", direction: "toBroker" },
  { flow: "outgoing", qos: 2, tag: "Pubrec", direction: "toClient" },
  { flow: "outgoing", qos: 2, tag: "Pubrel", direction: "toBroker" },
  { flow: "outgoing", qos: 2, tag: "Pubcomp", direction: "toClient" },
  { flow: "incoming", qos: 1, tag: "Publish", direction: "toClient" },
  { flow: "incoming", qos: 1, tag: "Puback", direction: "toBroker" },
  { flow: "incoming", qos: 2, tag: "Publish", direction: "toClient" },
  { flow: "incoming", qos: 2, tag: "Pubrec", direction: "toBroker" },
  { flow: "incoming", qos: 2, tag: "Pubrel", direction: "toClient" },
  { flow: "incoming", qos: 2, tag: "Pubcomp", direction: "toBroker" }
]

/** The network of the cut link during a trial: plain, with added latency both ways, or one byte per write. */
export type Network =
  | { readonly _tag: "Plain" }
  | { readonly _tag: "Delay"; readonly millis: number }
  | { readonly _tag: "Fragment" }

/**
 * A cut point: where the link dies — right after (or instead of) the n-th packet of a stage in the batch, or after a
 * number of bytes in one direction, wherever that falls (mid-packet, usually) — who sees it, and the network meanwhile.
 */
export interface CutPoint {
  readonly stage: Stage
  readonly at:
    | {
      readonly _tag: "Packet"
      readonly nth: number
      readonly deliver: boolean
      /**
       * Cut again on the first recurrence of that packet after the reconnect (the resend of the interrupted flow),
       * after it arrived or instead of it: the link dies during the session's resume.
       */
      readonly again: { readonly deliver: boolean } | undefined
    }
    | { readonly _tag: "Bytes"; readonly bytes: number }
  readonly side: FaultProxy.Side
  readonly batch: number
  readonly network: Network
}

export const stageName = (stage: Stage): string =>
  `${stage.flow} QoS ${stage.qos} ${stage.tag.toUpperCase()} ${direction(stage)}`

const direction = (stage: Stage) => (stage.direction === "toBroker" ? "→ broker" : "→ client")

/** A byte cut, in the coverage table. */
export const byteCutName = (stage: Stage): string => `${stage.flow} QoS ${stage.qos} ${direction(stage)} after N bytes`

const networkName = (network: Network): string =>
  network._tag === "Plain" ? "" : network._tag === "Delay" ? `, ${network.millis} ms latency` : ", 1-byte fragments"

export const describeCut = (cut: CutPoint): string => {
  const how = `seen by ${cut.side}${networkName(cut.network)}`
  return cut.at._tag === "Packet"
    ? `${stageName(cut.stage)} (${cut.at.nth}/${cut.batch}, ${cut.at.deliver ? "delivered" : "lost"}, ${how}` +
      `${cut.at.again === undefined ? "" : `; again on its resend, ${cut.at.again.deliver ? "delivered" : "lost"}`})`
    : `${cut.stage.flow} QoS ${cut.stage.qos} ${direction(cut.stage)} after ${cut.at.bytes} bytes ` +
      `(batch ${cut.batch}, ${how})`
}

/** The trial's payloads: `t<trial>-<j>`. */
const payloadOf = (trial: number, j: number) => `t${trial}-${j}`

/** Bytes a batch puts on the cut link in the stage's direction on its first pass (PUBLISH and acknowledgements). */
const batchBytes = (stage: Stage, batch: number, trial: number, topicLength: number): number => {
  let total = 0
  for (let j = 1; j <= batch; j++) {
    const publish = 2 + 2 + topicLength + 2 + payloadOf(trial, j).length
    const carriesPublish = (stage.flow === "outgoing") === (stage.direction === "toBroker")
    // PUBLISH and PUBREL go the publishing way; PUBACK, or PUBREC and PUBCOMP, come back.
    total += carriesPublish ? publish + (stage.qos === 2 ? 4 : 0) : stage.qos === 2 ? 8 : 4
  }
  return total
}

/**
 * The cut points of a run. Every fourth is a byte cut; the others are stage cuts, with stages and delivery taking
 * turns so every combination is covered; the rest (batch size, n, who sees the cut, bytes, network) from the seed.
 */
export const cutPoints = (
  count: number,
  seed: number,
  topicLength: number,
  maxBatch: number = 6
): ReadonlyArray<CutPoint> => {
  const rng = random(seed)
  let stageCuts = 0
  return Array.from({ length: count }, (_, i): CutPoint => {
    const side: FaultProxy.Side = rng.chance(0.6) ? "both" : rng.chance(0.5) ? "client" : "broker"
    const batch = rng.int(1, maxBatch)
    const roll = rng.next()
    const network: Network = roll < 0.7
      ? { _tag: "Plain" }
      : roll < 0.9
      ? { _tag: "Delay", millis: rng.int(2, 30) }
      : { _tag: "Fragment" }
    if (i % 4 === 3) {
      const stage = rng.pick(stages)
      const bytes = rng.int(1, batchBytes(stage, batch, i + 1, topicLength))
      return { stage, at: { _tag: "Bytes", bytes }, side, batch, network }
    }
    const n = stageCuts++
    const stage = stages[n % stages.length]!
    const deliver = Math.floor(n / stages.length) % 2 === 0
    const again = rng.chance(1 / 3) ? { deliver: rng.chance(0.5) } : undefined
    return { stage, at: { _tag: "Packet", nth: rng.int(1, batch), deliver, again }, side, batch, network }
  })
}

export interface QosCutsConfig {
  readonly trials: number
  readonly seed: number
  readonly log?: ((line: string) => void) | undefined
  /** Bound on each trial (default 30 s). */
  readonly trialTimeoutMillis?: number | undefined
  /** Largest batch (default 6). */
  readonly maxBatch?: number | undefined
  /** The publisher's in-flight window (default: the client's default, 65535). */
  readonly maxInflight?: number | undefined
}

export interface TrialResult {
  readonly cut: CutPoint
  readonly fired: boolean
  /** What the rule matched: connection, tag and packet id. */
  readonly firedOn: string | undefined
  readonly reconnected: boolean
  /** A second cut fired on the resend during the resume. */
  readonly secondCut: boolean
  readonly completed: boolean
  readonly millis: number
}

export interface QosCutsResult {
  readonly seed: number
  readonly trials: ReadonlyArray<TrialResult>
  readonly sent: number
  readonly sentQos2: number
  readonly delivered: number
  readonly lost: ReadonlyArray<string>
  readonly duplicatedQos2: ReadonlyArray<string>
  /** Extra copies of QoS 1 messages (allowed at least once). */
  readonly duplicatesQos1: number
  readonly failedPublishes: ReadonlyArray<string>
  readonly reconnects: number
  readonly unfired: number
  readonly cutsByStage: ReadonlyMap<string, number>
}

/** Runs `trials` cut points against a Mosquitto started here. */
export const runQosCuts = (config: QosCutsConfig) =>
  Effect.gen(function*() {
    const log = config.log ?? (() => {})
    const trialTimeout = config.trialTimeoutMillis ?? 30_000
    const broker = yield* Mosquitto.start()
    const pubProxy = yield* FaultProxy.make({ targetPort: broker.port })
    const subProxy = yield* FaultProxy.make({ targetPort: broker.port })
    // Fixed by the seed (the broker is this run's own): the byte cuts' sizes depend on the topic's length.
    const root = `em/cuts/${config.seed}`
    const clientOptions = (url: string, id: string) =>
      options(url, {
        clientId: id,
        cleanSession: false,
        keepalive: 1,
        pingTimeout: "1 second",
        connectTimeout: "2 seconds",
        reconnect: Schedule.spaced("20 millis")
      })
    const subscriber = yield* MqttClient.make(clientOptions(subProxy.url, clientId("cutsub")))
    const subscriberEvents = yield* record(subscriber.events)
    const subscription = yield* subscriber.subscription(`${root}/#`, { qos: 2 })
    const received = yield* record(subscription.messages)
    const publisher = yield* MqttClient.make({
      ...clientOptions(pubProxy.url, clientId("cutpub")),
      ...(config.maxInflight !== undefined ? { maxInflight: config.maxInflight } : {})
    })
    const publisherEvents = yield* record(publisher.events)
    const connects = (events: { readonly items: ReadonlyArray<MqttClient.Event> }) =>
      events.items.filter((e) => e._tag === "Connected").length

    const tally = new Tally()
    let seen = 0
    const catchUp = () => {
      for (; seen < received.items.length; seen++) tally.add(text(received.items[seen]!.payload))
    }
    const expectedQos1: Array<string> = []
    const expectedQos2: Array<string> = []
    const failedPublishes: Array<string> = []
    const results: Array<TrialResult> = []
    const cutsByStage = new Map<string, number>()

    const topicLength = `${root}/q1`.length
    const points = cutPoints(config.trials, config.seed, topicLength, config.maxBatch)
    for (const [index, cut] of points.entries()) {
      const trial = index + 1
      const started = Date.now()
      const { stage } = cut
      const proxy = stage.flow === "outgoing" ? pubProxy : subProxy
      const cutEvents = stage.flow === "outgoing" ? publisherEvents : subscriberEvents
      const connectsBefore = connects(cutEvents)
      const cutsBefore = proxy.stats.cuts
      const prefix = payloadOf(trial, 0).slice(0, -1)
      const topic = `${root}/q${stage.qos}`
      const payloads = Array.from({ length: cut.batch }, (_, j) => payloadOf(trial, j + 1))
      if (cut.network._tag === "Delay") yield* proxy.delay(`${cut.network.millis} millis`)
      if (cut.network._tag === "Fragment") yield* proxy.fragment()
      let rule: FaultProxy.RuleHandle | undefined
      const matches = (p: Packet.Packet) =>
        p._tag === stage.tag &&
        (p._tag !== "Publish" || (p.qos === stage.qos && text(p.payload).startsWith(prefix)))
      if (cut.at._tag === "Packet") {
        rule = yield* proxy.cutOn(stage.direction, FaultProxy.nth(cut.at.nth, matches), {
          deliver: cut.at.deliver,
          side: cut.side
        })
      } else {
        yield* proxy.cutAfterBytes(cut.at.bytes, { direction: stage.direction, side: cut.side })
      }
      for (const payload of payloads) (stage.qos === 1 ? expectedQos1 : expectedQos2).push(payload)
      const publishes = yield* Effect.forEach(payloads, (payload) =>
        Effect.forkChild(
          publisher.publish({ topic, payload, qos: stage.qos }).pipe(
            Effect.tapError((error) => Effect.sync(() => failedPublishes.push(`${payload}: ${error.message}`))),
            Effect.ignore
          ),
          { startImmediately: true }
        ))

      const fired = rule !== undefined
        ? Exit.getSuccess(yield* Effect.exit(rule.awaitFired(trialTimeout)))
        : Exit.getSuccess(
          yield* Effect.exit(
            Effect.as(
              waitUntil(`the byte cut (trial ${trial})`, () => proxy.stats.cuts > cutsBefore, trialTimeout),
              undefined
            )
          )
        )
      let reconnected = false
      let again: FaultProxy.RuleHandle | undefined
      if (Option.isSome(fired)) {
        const first = fired.value?.connection
        if (cut.at._tag === "Packet" && cut.at.again !== undefined) {
          again = yield* proxy.cutOn(stage.direction, (p, context) => context.connection !== first && matches(p), {
            deliver: cut.at.again.deliver,
            side: "both"
          })
        }
        const key = cut.at._tag === "Packet" ? stageName(stage) : byteCutName(stage)
        cutsByStage.set(key, (cutsByStage.get(key) ?? 0) + 1)
        const reconnect = waitUntil(
          `the cut client to reconnect (trial ${trial})`,
          () => connects(cutEvents) > connectsBefore,
          trialTimeout
        )
        reconnected = Exit.isSuccess(yield* Effect.exit(reconnect))
      } else {
        if (rule !== undefined) yield* rule.remove
      }
      const joined = yield* Effect.timeoutOption(Fiber.joinAll(publishes), trialTimeout)
      const arrived = yield* Effect.exit(
        waitUntil(`trial ${trial}'s messages`, () => {
          catchUp()
          return payloads.every((p) => tally.get(p) > 0)
        }, trialTimeout)
      )
      // A second cut that fired reconnects the client once more: wait for it, so the next trial starts connected.
      if (again !== undefined && again.fired > 0) {
        const twice = () => connects(cutEvents) > connectsBefore + 1
        yield* Effect.exit(waitUntil(`the second reconnect (trial ${trial})`, twice, trialTimeout))
      }
      yield* proxy.restore
      const completed = Option.isSome(joined) && arrived._tag === "Success"
      const firedAgain = again === undefined ? "" : again.fired > 0 ? ", cut again on the resend" : ", no resend to cut"
      const firedOn = Option.isSome(fired)
        ? fired.value === undefined
          ? `cut on conn ${proxy.stats.accepted - (reconnected ? 1 : 0)}`
          : `conn ${fired.value.connection} ${fired.value.packet._tag}#${
            (fired.value.packet as { readonly packetId?: number }).packetId ?? "-"
          }${firedAgain}`
        : undefined
      const millis = Date.now() - started
      const secondCut = again !== undefined && again.fired > 0
      const result: TrialResult = {
        cut,
        fired: Option.isSome(fired),
        firedOn,
        reconnected,
        secondCut,
        completed,
        millis
      }
      results.push(result)
      log(
        `trial ${trial}/${points.length}: ${describeCut(cut)} → ${firedOn ?? "NOT FIRED"}` +
          `${reconnected ? ", reconnected" : ", NO RECONNECT"}${completed ? "" : ", INCOMPLETE"} in ${result.millis} ms`
      )
    }

    // Settle: everything acknowledged, then a quiet second for late duplicates.
    const idle = Effect.map(publisher.pendingCount, (n) => n === 0)
    yield* Effect.exit(waitUntil("the publisher to have nothing pending", idle, 30_000))
    let last = -1
    yield* Effect.exit(waitUntil("no new message for 1 s", Effect.gen(function*() {
      const count = received.items.length
      if (count === last) return true
      last = count
      yield* Effect.sleep("1 second")
      return false
    }), 60_000))
    catchUp()

    const expected = [...expectedQos1, ...expectedQos2]
    const result: QosCutsResult = {
      seed: config.seed,
      trials: results,
      sent: expected.length,
      sentQos2: expectedQos2.length,
      delivered: expected.length - tally.missing(expected).length,
      lost: tally.missing(expected),
      duplicatedQos2: expectedQos2.filter((p) => tally.get(p) > 1).map((p) => `${p}×${tally.get(p)}`),
      duplicatesQos1: tally.extra(expectedQos1),
      failedPublishes,
      reconnects: connects(publisherEvents) + connects(subscriberEvents),
      unfired: results.filter((r) => !r.fired).length,
      cutsByStage
    }
    return result
  })

/** Whether a run kept every promise. */
export const passed = (result: QosCutsResult): boolean =>
  result.lost.length === 0 && result.duplicatedQos2.length === 0 && result.failedPublishes.length === 0 &&
  result.trials.every((t) => t.completed && (!t.fired || t.reconnected))

export const scenario: Scenario = {
  name: "qos-cuts",
  title: "Connection cut at each stage of the QoS 1 and QoS 2 flows",
  proves: "0 lost and 0 QoS 2 duplicates when the link dies after PUBLISH, PUBACK, PUBREC, PUBREL or PUBCOMP (the " +
    "packet arrived or was lost with the link), again during the resume, or after any number of bytes, in both " +
    "directions of message flow, with persistent sessions against Mosquitto",
  run: (context: Context) =>
    Effect.gen(function*() {
      // Three of every four are stage cuts: full runs cut each of the 12 stages 20 times (10 delivered, 10 lost).
      const trials = context.mode === "full" ? 320 : 64
      const result = yield* runQosCuts({ trials, seed: context.seed, log: context.log })
      const ok = passed(result)
      const count = (predicate: (trial: TrialResult) => boolean) => result.trials.filter(predicate).length
      const details = [
        `${result.trials.length} cut points (seed ${result.seed}); ${result.unfired} did not fire; ` +
          `${count((t) => t.secondCut)} stage cuts cut the link again on the resend of their packet; ` +
          `${result.duplicatesQos1} extra QoS 1 copies (allowed: at least once).`,
        "",
        "| stage (packet after which the link dies) | packet arrived, then cut | packet lost with the link |",
        "| --- | ---: | ---: |",
        ...stages.map((stage) => {
          const cuts = result.trials.filter((t) => t.fired && t.cut.stage === stage && t.cut.at._tag === "Packet")
          const delivered = cuts.filter((t) => t.cut.at._tag === "Packet" && t.cut.at.deliver).length
          return `| ${stageName(stage)} | ${delivered} | ${cuts.length - delivered} |`
        }),
        "",
        "| byte cut (the link dies after N bytes this way, mid-packet as a rule) | cuts |",
        "| --- | ---: |",
        ...[...new Set(stages.map(byteCutName))].map((name) => {
          const cuts = result.trials.filter((t) =>
            t.fired && t.cut.at._tag === "Bytes" && byteCutName(t.cut.stage) === name
          )
          return `| ${name} | ${cuts.length} |`
        }),
        ...(result.lost.length > 0 ? ["", `Lost: ${result.lost.slice(0, 20).join(", ")}`] : []),
        ...(result.duplicatedQos2.length > 0
          ? ["", `QoS 2 duplicates: ${result.duplicatedQos2.slice(0, 20).join(", ")}`]
          : []),
        ...(result.failedPublishes.length > 0
          ? ["", `Failed publishes: ${result.failedPublishes.slice(0, 5).join("; ")}`]
          : []),
        ...result.trials.filter((t) => !t.completed || (t.fired && !t.reconnected)).slice(0, 10)
          .map((t) => `- incomplete: ${describeCut(t.cut)} → ${t.firedOn ?? "not fired"}`),
        "",
        `Network during the cut trials: ${count((t) => t.cut.network._tag === "Plain")} plain, ` +
        `${count((t) => t.cut.network._tag === "Delay")} with 2–30 ms latency, ` +
        `${count((t) => t.cut.network._tag === "Fragment")} with 1-byte fragments. Cuts seen by both ends: ` +
        `${count((t) => t.cut.side === "both")}, by the client only: ${count((t) => t.cut.side === "client")}, ` +
        `by the broker only (the client notices by keepalive): ${count((t) => t.cut.side === "broker")}.`
      ]
      return {
        ok,
        details,
        rows: [{
          scenario: `QoS 1/2 cuts (${result.trials.length} cut points)`,
          sent: result.sent,
          delivered: result.delivered,
          lost: result.lost.length,
          duplicated: result.duplicatedQos2.length,
          reconnects: result.reconnects,
          peakRssBytes: peakRss(),
          ok
        }]
      } satisfies Outcome
    })
}
