/**
 * Scenario "blackhole": the network silently drops everything (sockets stay open, no FIN, no RST) and the client
 * notices by keepalive alone, within 1.5 times the keepalive interval plus the ping timeout, then reconnects once the
 * network is back and delivers everything it accepted meanwhile.
 *
 * A client (keepalive 1 s, ping timeout 1 s, connect timeout 1 s, persistent session, reconnect every 100 ms) reaches
 * a real Mosquitto through a `FaultProxy`; a second client, connected directly, subscribes at QoS 2. Each round
 * publishes a batch (QoS 1 and 2 alternating), black-holes the proxy, measures the time from the black hole to the
 * client's `Disconnected` event (which must carry `KeepaliveTimeout`), waits for at least one reconnect attempt to
 * fail inside the black hole, restores the network, and checks that every message of the round arrives. Odd rounds
 * are busy (the client keeps publishing into the black hole, so it is never idle for the keepalive interval), even
 * rounds idle.
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import { clientId, options, record, text, topicRoot, waitUntil } from "../../test/utils/clients.ts"
import * as FaultProxy from "../../test/utils/FaultProxy.ts"
import * as Mosquitto from "../../test/utils/Mosquitto.ts"
import { type Context, type Outcome, peakRss, type Scenario, Tally } from "./Scenario.ts"

export interface BlackholeConfig {
  readonly rounds: number
  readonly log?: ((line: string) => void) | undefined
}

export interface BlackholeRound {
  readonly busy: boolean
  /** From the black hole to the `Disconnected` event. */
  readonly detectionMillis: number
  /** The reason of the `Disconnected` error. */
  readonly reason: string
  /** Reconnect attempts that failed while the network was black-holed. */
  readonly failedAttempts: number
  /** From the restore to `Connected`. */
  readonly reconnectMillis: number
  readonly sent: number
}

export interface BlackholeResult {
  readonly keepaliveSeconds: number
  readonly pingTimeoutMillis: number
  /** 1.5 × keepalive + ping timeout. */
  readonly boundMillis: number
  readonly rounds: ReadonlyArray<BlackholeRound>
  readonly sent: number
  readonly sentQos2: number
  readonly delivered: number
  readonly lost: ReadonlyArray<string>
  readonly duplicatedQos2: ReadonlyArray<string>
  readonly reconnects: number
}

const KEEPALIVE_SECONDS = 1
const PING_TIMEOUT_MILLIS = 1_000

/** Runs `rounds` black holes against a Mosquitto started here. */
export const runBlackhole = (config: BlackholeConfig) =>
  Effect.gen(function*() {
    const log = config.log ?? (() => {})
    const broker = yield* Mosquitto.start()
    const proxy = yield* FaultProxy.make({ targetPort: broker.port })
    const topic = `${topicRoot("blackhole")}/t`
    const watcher = yield* MqttClient.make(options(broker.url, { clientId: clientId("bhsub") }))
    const subscription = yield* watcher.subscription(topic, { qos: 2 })
    const received = yield* record(subscription.messages)
    const client = yield* MqttClient.make(
      options(proxy.url, {
        clientId: clientId("bh"),
        cleanSession: false,
        keepalive: KEEPALIVE_SECONDS,
        pingTimeout: `${PING_TIMEOUT_MILLIS} millis`,
        connectTimeout: "1 second",
        reconnect: Schedule.spaced("100 millis")
      })
    )
    // Events with the wall-clock time they were seen.
    const events = yield* record(client.events.pipe(Stream.map((event) => ({ at: Date.now(), event }))))
    const tally = new Tally()
    const expectedQos1: Array<string> = []
    const expectedQos2: Array<string> = []
    let sequence = 0
    const publish = (round: number) => {
      const n = ++sequence
      const qos = n % 2 === 0 ? 2 : 1
      const payload = `r${round}-${n}`
      ;(qos === 1 ? expectedQos1 : expectedQos2).push(payload)
      return client.publish({ topic, payload, qos })
    }
    let seen = 0
    const catchUp = () => {
      for (; seen < received.items.length; seen++) tally.add(text(received.items[seen]!.payload))
    }
    const arrived = (payloads: ReadonlyArray<string>) => () => {
      catchUp()
      return payloads.every((p) => tally.get(p) > 0)
    }
    const rounds: Array<BlackholeRound> = []

    for (let round = 1; round <= config.rounds; round++) {
      const busy = round % 2 === 1
      const before = sequence
      const eventIndex = events.items.length
      for (let i = 0; i < 5; i++) yield* publish(round)
      const background = yield* Effect.forkChild(
        busy
          ? Effect.forever(
            // Each publish outlives the loop: stopping the load must not interrupt a publish waiting for its ack.
            Effect.andThen(
              Effect.forkScoped(Effect.ignore(Effect.suspend(() => publish(round))), { startImmediately: true }),
              Effect.sleep("50 millis")
            )
          )
          : Effect.never,
        { startImmediately: true }
      )
      const t0 = Date.now()
      yield* proxy.blackhole()
      const down = yield* events.waitFor(
        `Disconnected after the black hole (round ${round})`,
        (es) => es.slice(eventIndex).some((e) => e.event._tag === "Disconnected"),
        10_000
      )
      const disconnected = down.slice(eventIndex).find((e) => e.event._tag === "Disconnected")!
      const error = (disconnected.event as Extract<MqttClient.Event, { _tag: "Disconnected" }>).error
      // At least one attempt must fail inside the black hole (its CONNECT goes nowhere: ConnectTimeout).
      yield* events.waitFor(
        `a failed reconnect attempt inside the black hole (round ${round})`,
        (es) => es.slice(eventIndex).some((e) => e.event._tag === "Reconnecting" && e.event.attempt >= 2),
        10_000
      )
      const failedAttempts = Math.max(
        ...events.items.slice(eventIndex).map((e) => (e.event._tag === "Reconnecting" ? e.event.attempt - 1 : 0))
      )
      const restoredAt = Date.now()
      yield* proxy.restore
      const up = yield* events.waitFor(
        `Connected after the restore (round ${round})`,
        (es) => es.slice(eventIndex).some((e) => e.event._tag === "Connected" && e.at >= restoredAt),
        10_000
      )
      const connectedAt = up.slice(eventIndex).find((e) => e.event._tag === "Connected" && e.at >= restoredAt)!.at
      yield* Fiber.interrupt(background)
      for (let i = 0; i < 5; i++) yield* publish(round)
      const payloads = Array.from({ length: sequence - before }, (_, i) => `r${round}-${before + i + 1}`)
      yield* waitUntil(`round ${round}'s messages`, arrived(payloads), 20_000)
      const result: BlackholeRound = {
        busy,
        detectionMillis: disconnected.at - t0,
        reason: error.reason._tag,
        failedAttempts,
        reconnectMillis: connectedAt - restoredAt,
        sent: payloads.length
      }
      rounds.push(result)
      log(
        `round ${round} (${busy ? "busy" : "idle"}): ${result.reason} after ${result.detectionMillis} ms, ` +
          `${failedAttempts} attempt(s) failed in the black hole, reconnected ${result.reconnectMillis} ms after ` +
          `restore, ${result.sent} messages`
      )
    }
    yield* waitUntil("the client to have nothing pending", Effect.map(client.pendingCount, (n) => n === 0), 20_000)
    yield* Effect.sleep("500 millis")
    catchUp()
    const expected = [...expectedQos1, ...expectedQos2]
    const result: BlackholeResult = {
      keepaliveSeconds: KEEPALIVE_SECONDS,
      pingTimeoutMillis: PING_TIMEOUT_MILLIS,
      boundMillis: 1.5 * KEEPALIVE_SECONDS * 1000 + PING_TIMEOUT_MILLIS,
      rounds,
      sent: expected.length,
      sentQos2: expectedQos2.length,
      delivered: expected.length - tally.missing(expected).length,
      lost: tally.missing(expected),
      duplicatedQos2: expectedQos2.filter((p) => tally.get(p) > 1),
      reconnects: events.items.filter((e) => e.event._tag === "Connected").length
    }
    return result
  })

export const passed = (result: BlackholeResult): boolean =>
  result.lost.length === 0 && result.duplicatedQos2.length === 0 &&
  result.rounds.every((r) => r.reason === "KeepaliveTimeout" && r.detectionMillis <= result.boundMillis)

export const scenario: Scenario = {
  name: "blackhole",
  title: "Black hole: detected by keepalive, then reconnect",
  proves: "a silent network is detected within 1.5 × keepalive + ping timeout (KeepaliveTimeout), the client " +
    "reconnects once it is back, and nothing accepted meanwhile is lost",
  run: (context: Context) =>
    Effect.gen(function*() {
      const result = yield* runBlackhole({ rounds: context.mode === "full" ? 10 : 4, log: context.log })
      const ok = passed(result)
      const worst = Math.max(...result.rounds.map((r) => r.detectionMillis))
      return {
        ok,
        details: [
          `Keepalive ${result.keepaliveSeconds} s, ping timeout ${result.pingTimeoutMillis} ms: bound ` +
          `${result.boundMillis} ms; worst detection ${worst} ms over ${result.rounds.length} rounds (busy and idle).`,
          "",
          "| round | load | detected after | reason | failed attempts in the black hole | reconnected after restore |",
          "| --- | --- | --- | --- | --- | --- |",
          ...result.rounds.map((r, i) =>
            `| ${i + 1} | ${r.busy ? "publishing" : "idle"} | ${r.detectionMillis} ms | ${r.reason} | ` +
            `${r.failedAttempts} | ${r.reconnectMillis} ms |`
          ),
          ...(result.lost.length > 0 ? ["", `Lost: ${result.lost.slice(0, 20).join(", ")}`] : [])
        ],
        rows: [{
          scenario: `Black hole (${result.rounds.length} rounds, worst detection ${worst} ms)`,
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
