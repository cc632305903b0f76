/**
 * Keepalive: when to send PINGREQ and when to give up on a silent broker.
 *
 * `decide` is the whole policy, a pure function of the link's timestamps and the current time. A client must never
 * let more than the keepalive interval pass without sending a packet, and sends PINGREQ when it has nothing else to
 * send [MQTT-3.1.2-23]. Like Paho, it also sends PINGREQ when the broker has been silent for the interval, so a
 * connection that only publishes still notices a broker that stopped answering. After a PINGREQ, if nothing at all
 * arrives within the ping timeout, the connection is dead (§3.1.2.10): `KeepaliveTimeout`. Keepalive 0 turns all of
 * this off.
 *
 * The `Keepalive` service runs that policy against a `Link` on the `Clock` (so tests drive it with `TestClock`); it
 * owns no connection and no session state.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as MqttError from "../Errors/MqttError.ts"
import * as Packet from "../Codec/Packet.ts"
import type * as Connection from "./Connection.ts"

/**
 * The keepalive settings of a connection, in milliseconds.
 *
 * @since 0.1.0
 */
export interface Config {
  /** The keepalive interval; 0 disables keepalive. */
  readonly keepaliveMillis: number
  /** How long to wait for any packet after a PINGREQ. */
  readonly pingTimeoutMillis: number
  /**
   * Whether the reader is deliberately not reading (a subscriber is applying backpressure): the ping timeout does
   * not run out while it is, since unread bytes may be waiting in the socket.
   */
  readonly isPaused?: (() => boolean) | undefined
}

/**
 * What the policy looks at: when bytes were last sent and received, and when the outstanding PINGREQ (if any) went.
 *
 * @since 0.1.0
 */
export interface Timers {
  readonly lastSentAt: number
  readonly lastReceivedAt: number
  /** When the first PINGREQ not yet answered was queued (the ping timeout runs from it), or the last answered one. */
  readonly pingSentAt: number | undefined
  /** Whether anything arrived after that PINGREQ. */
  readonly pingAnswered: boolean
  /** When the most recent PINGREQ was queued (default `pingSentAt`): a ping counts as a packet sent. */
  readonly lastPingAt?: number | undefined
}

/**
 * What to do now.
 *
 * @since 0.1.0
 */
export type Decision =
  | { readonly _tag: "Disabled" }
  | { readonly _tag: "Wait"; readonly millis: number }
  | { readonly _tag: "SendPing" }
  | { readonly _tag: "Timeout" }

const disabled: Decision = { _tag: "Disabled" }
const sendPing: Decision = { _tag: "SendPing" }
const timeout: Decision = { _tag: "Timeout" }

/**
 * The keepalive policy; see the module documentation.
 *
 * @since 0.1.0
 */
export const decide = (config: Config, timers: Timers, now: number): Decision => {
  if (config.keepaliveMillis <= 0) return disabled
  const pingSentAt = timers.pingSentAt
  // A PINGREQ counts as sent when queued, even before the writer has written it.
  const lastPingAt = timers.lastPingAt ?? pingSentAt
  const sentAt = lastPingAt !== undefined && lastPingAt > timers.lastSentAt ? lastPingAt : timers.lastSentAt
  if (pingSentAt !== undefined && !timers.pingAnswered) {
    // §3.1.2.10: no packet since the PINGREQ; the connection is dead once the ping timeout passes.
    const deadline = pingSentAt + config.pingTimeoutMillis
    if (now >= deadline) return timeout
    // [MQTT-3.1.2-23] still holds while waiting: with a ping timeout longer than the interval, ping again.
    const sendDue = sentAt + config.keepaliveMillis
    if (now >= sendDue) return sendPing
    return { _tag: "Wait", millis: Math.min(deadline, sendDue) - now }
  }
  // [MQTT-3.1.2-23]: never more than the interval without sending; also probe a broker silent for the interval.
  const due = Math.min(sentAt, timers.lastReceivedAt) + config.keepaliveMillis
  return now >= due ? sendPing : { _tag: "Wait", millis: due - now }
}


/**
 * The Keepalive service.
 *
 * @since 0.1.0
 */
export class Keepalive extends Context.Service<Keepalive, {
  /**
   * Runs keepalive on a link until it fails: sends PINGREQ when due and, when the broker stays silent after one,
   * aborts the link (closing its socket) and fails with `KeepaliveTimeout`. Never succeeds; with keepalive 0 it
   * never completes. `onPing` is called with the `Clock` time when a PINGREQ is queued.
   */
  readonly run: (
    link: Connection.Link,
    config: Config,
    onPing?: ((now: number) => void) | undefined
  ) => Effect.Effect<never, MqttError.MqttError>
}>()("effect-mqtt/Connection/Keepalive") {}

/**
 * The standard keepalive: `decide` on the `Clock`.
 *
 * @since 0.1.0
 */
export const make: Keepalive["Service"] = Keepalive.of({
  run: (link, config, onPing) =>
    Effect.gen(function*() {
      const clock = yield* Clock.Clock
      let pingSentAt: number | undefined
      let lastPingAt: number | undefined
      let receivedAtPing = 0
      while (true) {
        const now = clock.currentTimeMillisUnsafe()
        const decision = decide(
          config,
          {
            lastSentAt: link.lastSentAt(),
            lastReceivedAt: link.lastReceivedAt(),
            pingSentAt,
            pingAnswered: link.receivedCount() > receivedAtPing,
            lastPingAt
          },
          now
        )
        switch (decision._tag) {
          case "Disabled":
            return yield* Effect.never
          case "Wait":
            yield* Effect.sleep(Duration.millis(decision.millis))
            break
          case "SendPing": {
            // Counted before the offer: an answer can arrive as soon as the PINGREQ is written.
            const received = link.receivedCount()
            const failure = link.offer(Packet.pingreq)
            if (failure !== undefined) return yield* Effect.fail(failure)
            // The ping timeout runs from the first unanswered PINGREQ; later ones only keep [MQTT-3.1.2-23].
            if (pingSentAt === undefined || received > receivedAtPing) {
              pingSentAt = now
              receivedAtPing = received
            }
            lastPingAt = now
            onPing?.(now)
            break
          }
          case "Timeout": {
            if (config.isPaused?.() === true) {
              // Unread bytes may hold the answer: give the broker a full ping timeout from now.
              pingSentAt = now
              receivedAtPing = link.receivedCount()
              break
            }
            const error = MqttError.make(
              new MqttError.KeepaliveTimeout({
                keepaliveSeconds: config.keepaliveMillis / 1000,
                timeoutMillis: config.pingTimeoutMillis
              })
            )
            yield* link.abort(error)
            return yield* Effect.fail(error)
          }
        }
      }
    })
})

/**
 * The standard keepalive as a layer.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<Keepalive> = Layer.succeed(Keepalive)(make)
