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
 * owns no connection and no session state. On the system clock `start` runs it on one Node timer per link instead of
 * a sleeping fiber: an idle connection is most of what a process with many clients holds.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as MqttError from "../Errors/MqttError.ts"
import * as Packet from "../Codec/Packet.ts"
import type * as Connection from "./Connection.ts"
import { isSystemClock, MAX_TIMER_MILLIS, systemClock } from "./SystemClock.ts"

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
 * One link's keepalive between decisions: what `decide` needs beyond the link's own timestamps, and the acting on
 * each decision. Shared by the timer-driven and the fiber-driven keepalive, so both follow one policy.
 */
class Pinger {
  /** When the first PINGREQ not yet answered was queued. */
  pingSentAt: number | undefined = undefined
  lastPingAt: number | undefined = undefined
  receivedAtPing = 0
  /** The broker stayed silent after a PINGREQ: the link must be aborted. */
  timedOut = false
  readonly link: Connection.Link
  readonly config: Config
  readonly onPing: ((now: number) => void) | undefined

  constructor(link: Connection.Link, config: Config, onPing: ((now: number) => void) | undefined) {
    this.link = link
    this.config = config
    this.onPing = onPing
  }

  /**
   * Acts on the policy at `now`, sending PINGREQ when due: returns how long to wait before the next step (`Infinity`
   * when keepalive is off), or the error that ends keepalive (`timedOut` tells a silent broker from a PINGREQ that
   * could not be queued).
   */
  step(now: number): number | MqttError.MqttError {
    const link = this.link
    while (true) {
      const decision = decide(
        this.config,
        {
          lastSentAt: link.lastSentAt(),
          lastReceivedAt: link.lastReceivedAt(),
          pingSentAt: this.pingSentAt,
          pingAnswered: link.receivedCount() > this.receivedAtPing,
          lastPingAt: this.lastPingAt
        },
        now
      )
      switch (decision._tag) {
        case "Disabled":
          return Infinity
        case "Wait":
          return decision.millis
        case "SendPing": {
          // Counted before the offer: an answer can arrive as soon as the PINGREQ is written.
          const received = link.receivedCount()
          const failure = link.offer(Packet.pingreq)
          if (failure !== undefined) return failure
          // The ping timeout runs from the first unanswered PINGREQ; later ones only keep [MQTT-3.1.2-23].
          if (this.pingSentAt === undefined || received > this.receivedAtPing) {
            this.pingSentAt = now
            this.receivedAtPing = received
          }
          this.lastPingAt = now
          this.onPing?.(now)
          break
        }
        case "Timeout": {
          if (this.config.isPaused?.() === true) {
            // Unread bytes may hold the answer: give the broker a full ping timeout from now.
            this.pingSentAt = now
            this.receivedAtPing = link.receivedCount()
            break
          }
          this.timedOut = true
          return MqttError.make(
            new MqttError.KeepaliveTimeout({
              keepaliveSeconds: this.config.keepaliveMillis / 1000,
              timeoutMillis: this.config.pingTimeoutMillis
            })
          )
        }
      }
    }
  }
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
  /**
   * Keeps a link alive for the life of the current scope, as `run` does, and returns at once. When the broker stays
   * silent after a PINGREQ, or a PINGREQ cannot be queued, it aborts the link with that error (the link's pull then
   * fails with it). On the default clock it runs on a Node timer, without a fiber: an idle connection holds one
   * timer, not a sleeping fiber (about 2 KB less per connection); on any other `Clock` (`TestClock`) it forks the loop
   * `run` runs.
   */
  readonly start: (
    link: Connection.Link,
    config: Config,
    onPing?: ((now: number) => void) | undefined
  ) => Effect.Effect<void, never, Scope.Scope>
}>()("effect-mqtt/Connection/Keepalive") {}

/** Steps `pinger` on the fiber's `Clock` until keepalive ends; fails with the error that ended it. */
const loop = (pinger: Pinger): Effect.Effect<never, MqttError.MqttError> =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    while (true) {
      const next = pinger.step(clock.currentTimeMillisUnsafe())
      if (typeof next !== "number") return yield* Effect.fail(next)
      yield* next === Infinity ? Effect.never : Effect.sleep(Duration.millis(next))
    }
  })

const run: Keepalive["Service"]["run"] = (link, config, onPing) =>
  Effect.suspend(() => {
    const pinger = new Pinger(link, config, onPing)
    return Effect.catch(
      loop(pinger),
      (error) => pinger.timedOut ? Effect.andThen(link.abort(error), Effect.fail(error)) : Effect.fail(error)
    )
  })

/** `start` on the system clock: a timer per link, rearmed after each step, cleared when the scope closes. */
const startOnTimer = (
  link: Connection.Link,
  config: Config,
  onPing: ((now: number) => void) | undefined
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.suspend(() => {
    const pinger = new Pinger(link, config, onPing)
    let handle: ReturnType<typeof setTimeout> | undefined
    let stopped = false
    const tick = (): void => {
      handle = undefined
      if (stopped) return
      const next = pinger.step(systemClock.currentTimeMillisUnsafe())
      if (typeof next === "number") {
        if (next !== Infinity) handle = setTimeout(tick, Math.min(next, MAX_TIMER_MILLIS))
        return
      }
      stopped = true
      Effect.runFork(link.abort(next))
    }
    tick()
    // The finalizer's effect is made when the scope closes: until then the link holds one closure for it.
    return Effect.flatMap(Effect.scope, (scope) =>
      Scope.addFinalizerExit(scope, () =>
        Effect.sync(() => {
          stopped = true
          if (handle !== undefined) clearTimeout(handle)
        })))
  })

/**
 * The standard keepalive: `decide` on the `Clock`.
 *
 * @since 0.1.0
 */
export const make: Keepalive["Service"] = Keepalive.of({
  run,
  start: (link, config, onPing) =>
    Effect.flatMap(Effect.service(Clock.Clock), (clock) =>
      isSystemClock(clock)
        ? startOnTimer(link, config, onPing)
        : Effect.asVoid(
          Effect.forkScoped(Effect.catch(loop(new Pinger(link, config, onPing)), (error) => link.abort(error)), {
            startImmediately: true
          })
        ))
})

/**
 * The standard keepalive as a layer.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<Keepalive> = Layer.succeed(Keepalive)(make)
