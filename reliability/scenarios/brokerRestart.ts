/**
 * Scenario "broker-restart": Mosquitto (persistence on) is restarted again and again during a continuous QoS 1
 * stream, and every message arrives.
 *
 * A publisher and a subscriber, both effect-mqtt with persistent sessions (reconnect every 50 ms), connect directly to
 * a Mosquitto started with `persistence true`. The publisher streams `messages` QoS 1 publishes with 20 in flight at
 * a time; the restarts are spread evenly over the stream (restart `j` starts once `j / (restarts + 1)` of the stream
 * is acknowledged), each a graceful stop (SIGTERM: Mosquitto saves its database) and a start on the same port, and
 * the next one waits until both clients are connected again. During an outage the in-flight publishes wait, queued
 * offline; the subscriber's session (its subscription and the messages queued for it) survives in the database.
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import { clientId, options, record, text, topicRoot, waitUntil } from "../../test/utils/clients.ts"
import * as Mosquitto from "../../test/utils/Mosquitto.ts"
import { type Context, type Outcome, peakRss, type Scenario, Tally } from "./Scenario.ts"

export interface BrokerRestartConfig {
  readonly messages: number
  readonly restarts: number
  /** Of the stream and the subscription (default 1). */
  readonly qos?: 1 | 2 | undefined
  readonly log?: ((line: string) => void) | undefined
}

export interface BrokerRestartResult {
  readonly sent: number
  readonly delivered: number
  readonly lost: ReadonlyArray<string>
  /** Extra copies (allowed at QoS 1, not at QoS 2). */
  readonly duplicates: number
  readonly qos: 1 | 2
  readonly failedPublishes: ReadonlyArray<string>
  readonly restarts: number
  /** Per restart: from the stop until both clients were connected again. */
  readonly outageMillis: ReadonlyArray<number>
  readonly reconnects: number
  readonly millis: number
}

const connects = (events: { readonly items: ReadonlyArray<MqttClient.Event> }) =>
  events.items.filter((e) => e._tag === "Connected").length

export const runBrokerRestart = (config: BrokerRestartConfig) =>
  Effect.gen(function*() {
    const log = config.log ?? (() => {})
    const started = Date.now()
    const broker = yield* Mosquitto.start({ persistence: true })
    const topic = `${topicRoot("restart")}/t`
    const clientOptions = (id: string) =>
      options(broker.url, {
        clientId: id,
        cleanSession: false,
        keepalive: 5,
        connectTimeout: "2 seconds",
        reconnect: Schedule.spaced("50 millis"),
        disconnectTimeout: "5 seconds"
      })
    const subscriber = yield* MqttClient.make(clientOptions(clientId("rsub")))
    const subscriberEvents = yield* record(subscriber.events)
    const qos = config.qos ?? 1
    const subscription = yield* subscriber.subscription(topic, { qos })
    const received = yield* record(subscription.messages)
    const publisher = yield* MqttClient.make(clientOptions(clientId("rpub")))
    const publisherEvents = yield* record(publisher.events)

    let acknowledged = 0
    const failedPublishes: Array<string> = []
    const payloads = Array.from({ length: config.messages }, (_, i) => `m${i + 1}`)
    const stream = yield* Effect.forkChild(
      Effect.forEach(
        payloads,
        (payload) =>
          publisher.publish({ topic, payload, qos }).pipe(
            Effect.tap(() => Effect.sync(() => acknowledged++)),
            Effect.tapError((error) => Effect.sync(() => failedPublishes.push(`${payload}: ${error.message}`))),
            Effect.ignore
          ),
        { concurrency: 20, discard: true }
      ),
      { startImmediately: true }
    )

    let restarts = 0
    const outageMillis: Array<number> = []
    for (let j = 1; j <= config.restarts; j++) {
      const threshold = Math.floor((j * config.messages) / (config.restarts + 1))
      yield* waitUntil(
        `${threshold} publishes acknowledged before restart ${j}`,
        () => acknowledged >= threshold,
        120_000
      )
      const t = Date.now()
      const before = [connects(publisherEvents), connects(subscriberEvents)] as const
      yield* broker.restart
      restarts++
      yield* waitUntil(`both clients to reconnect after restart ${j}`, () =>
        connects(publisherEvents) > before[0] && connects(subscriberEvents) > before[1], 30_000)
      outageMillis.push(Date.now() - t)
      log(`restart ${j}/${config.restarts} at ${acknowledged} acknowledged, ${received.items.length} received: ` +
        `${Date.now() - t} ms until both reconnected`)
    }
    const settled = () => acknowledged + failedPublishes.length >= config.messages
    yield* waitUntil("every publish to complete", settled, 180_000)
    yield* Fiber.join(stream)
    const tally = new Tally()
    let seen = 0
    yield* Effect.exit(waitUntil("every message to arrive", () => {
      for (; seen < received.items.length; seen++) tally.add(text(received.items[seen]!.payload))
      return tally.missing(payloads).length === 0
    }, 60_000))
    const lost = tally.missing(payloads)
    const result: BrokerRestartResult = {
      sent: payloads.length,
      delivered: payloads.length - lost.length,
      lost,
      duplicates: tally.extra(payloads),
      qos,
      failedPublishes,
      restarts,
      outageMillis,
      reconnects: connects(subscriberEvents) + connects(publisherEvents),
      millis: Date.now() - started
    }
    return result
  })

export const passed = (result: BrokerRestartResult): boolean =>
  result.lost.length === 0 && result.failedPublishes.length === 0 && (result.qos === 1 || result.duplicates === 0)

export const scenario: Scenario = {
  name: "broker-restart",
  title: "Broker restart loop during a QoS 1 stream",
  proves: "Mosquitto (persistence on) restarted 20 times during a 10,000-message QoS 1 stream: every message arrives",
  run: (context: Context) =>
    Effect.gen(function*() {
      const full = context.mode === "full"
      const result = yield* runBrokerRestart({
        messages: full ? 10_000 : 2_000,
        restarts: full ? 20 : 5,
        log: context.log
      })
      const ok = passed(result)
      return {
        ok,
        details: [
          `${result.restarts} restarts (SIGTERM, start on the same port) spread over ${result.sent} QoS 1 publishes ` +
          `(20 in flight at a time) in ${(result.millis / 1000).toFixed(1)} s; each outage, from the stop until ` +
          `both clients were connected again, lasted ${Math.min(...result.outageMillis)}–` +
          `${Math.max(...result.outageMillis)} ms; ${result.duplicates} extra copies (allowed at QoS 1).`,
          ...(result.lost.length > 0 ? [`Lost: ${result.lost.slice(0, 20).join(", ")}`] : []),
          ...(result.failedPublishes.length > 0 ? [`Failed: ${result.failedPublishes.slice(0, 5).join("; ")}`] : [])
        ],
        rows: [{
          scenario: `Broker restarts (${result.restarts}) during a QoS 1 stream`,
          sent: result.sent,
          delivered: result.delivered,
          lost: result.lost.length,
          duplicated: undefined,
          reconnects: result.reconnects,
          peakRssBytes: peakRss(),
          ok
        }]
      } satisfies Outcome
    })
}
