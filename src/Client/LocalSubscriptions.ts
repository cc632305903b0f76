/**
 * The local side of subscriptions: which streams want which messages, and what the broker must hold for them.
 *
 * It owns the table of live streams (each with its filters, the QoS it asked for, and a bounded queue), the count of
 * streams per filter and QoS (the broker holds one QoS per filter, so a filter is subscribed at the highest any live
 * stream asked for, and unsubscribed when its last stream ends), routing an incoming message to every matching stream
 * once (the streams a topic goes to are remembered for the next message on it until a stream comes or goes), and
 * the messages no stream matched yet (a resumed persistent session delivers before the application starts its
 * streams). Shared by `MqttClient` and `MqttTest`; it sends nothing itself.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import type * as Packet from "../Codec/Packet.ts"
import * as Topic from "../Codec/Topic.ts"
import * as MqttError from "../Errors/MqttError.ts"

/**
 * How a stream buffers messages its consumer has not taken yet (see `MqttClient.SubscribeOptions`).
 *
 * @since 0.1.0
 */
export interface BufferOptions {
  readonly bufferSize?: number | undefined
  readonly strategy?: "suspend" | "dropping" | "sliding" | undefined
}

/**
 * One live stream.
 *
 * @since 0.1.0
 */
export interface Subscriber {
  /** Topic filters of this stream; `undefined` receives every message (`messages`). */
  readonly filters: ReadonlyArray<string> | undefined
  /** The filters with the QoS this stream asked for (and the broker did not refuse). */
  requested: ReadonlyArray<Packet.Subscription>
  readonly unsubscribeOnEnd: boolean
  readonly queue: Queue.Queue<Packet.Publish, MqttError.MqttError | Cause.Done>
  readonly suspend: boolean
}

/**
 * A stream's queue: bounded (default 1024), suspending, dropping or sliding when full.
 *
 * @since 0.1.0
 */
export const makeSubscriber = (
  requested: ReadonlyArray<Packet.Subscription> | undefined,
  options: BufferOptions | undefined,
  unsubscribeOnEnd: boolean
): Effect.Effect<Subscriber> => {
  const size = options?.bufferSize ?? 1024
  const capacity = Number.isInteger(size) && size > 0 ? size : 1024
  const queue = options?.strategy === "dropping"
    ? Queue.dropping<Packet.Publish, MqttError.MqttError | Cause.Done>(capacity)
    : options?.strategy === "sliding"
    ? Queue.sliding<Packet.Publish, MqttError.MqttError | Cause.Done>(capacity)
    : Queue.bounded<Packet.Publish, MqttError.MqttError | Cause.Done>(capacity)
  return Effect.map(queue, (queue) => ({
    filters: requested?.map((s) => s.topicFilter),
    requested: requested ?? [],
    unsubscribeOnEnd: requested !== undefined && unsubscribeOnEnd,
    queue,
    suspend: options?.strategy === undefined || options.strategy === "suspend"
  }))
}

const highest = (counts: readonly [number, number, number]): Packet.QoS => (counts[2] > 0 ? 2 : counts[1] > 0 ? 1 : 0)

/** Topics whose streams are remembered at most: past it the routes start over (a stream of ever new topics). */
const ROUTES_LIMIT = 1024

/**
 * Up to this many filters in all, every message tries them all: cheaper than a route lookup, and it costs nothing
 * when every message has a topic of its own (one stream on `devices/#`). Beyond it, routes are remembered.
 */
const DIRECT_FILTERS = 4

const matchesAny = (subscriber: Subscriber, topic: string): boolean => {
  const filters = subscriber.filters
  if (filters === undefined) return true
  for (let i = 0; i < filters.length; i++) {
    if (Topic.matches(filters[i]!, topic)) return true
  }
  return false
}

/**
 * The table; see the module documentation.
 *
 * @since 0.1.0
 */
export class LocalSubscriptions {
  readonly subscribers = new Set<Subscriber>()
  /** Filters subscribed at the broker, with how many live streams asked for each QoS. */
  readonly active = new Map<string, [number, number, number]>()
  #unclaimed: Array<Packet.Publish> = []
  readonly #unclaimedLimit: number
  /**
   * The streams each recent topic went to, in the order the streams were added, when there are more than
   * `DIRECT_FILTERS` filters; made on the first such message and cleared whenever a stream is added or removed.
   * Without it every message tries every filter of every stream.
   */
  #routes: Map<string, ReadonlyArray<Subscriber>> | undefined = undefined
  /** The filters of the live streams, counted when first needed after a change. */
  #filters: number | undefined = undefined

  /** @param unclaimedLimit messages kept for streams not started yet (0: none). */
  constructor(unclaimedLimit: number) {
    this.#unclaimedLimit = Math.max(0, unclaimedLimit)
  }

  /**
   * Registers a stream (before its SUBSCRIBE goes out: retained messages can follow SUBACK at once), hands it the
   * unclaimed messages it matches, and returns the subscriptions to send: each filter at the highest QoS any live
   * stream asked for.
   */
  add(subscriber: Subscriber): Array<Packet.Subscription> {
    this.subscribers.add(subscriber)
    this.#routes = undefined
    this.#filters = undefined
    this.#claim(subscriber)
    return subscriber.requested.map(({ topicFilter, qos }) => {
      const counts = this.active.get(topicFilter) ?? [0, 0, 0]
      counts[qos]++
      this.active.set(topicFilter, counts)
      return { topicFilter, qos: highest(counts) }
    })
  }

  /** Unregisters a stream; returns the filters no live stream uses any more (to UNSUBSCRIBE). */
  remove(subscriber: Subscriber): Array<string> {
    this.subscribers.delete(subscriber)
    this.#routes = undefined
    this.#filters = undefined
    const unused: Array<string> = []
    for (const { topicFilter, qos } of subscriber.requested) {
      if (this.#release(topicFilter, qos)) unused.push(topicFilter)
    }
    return unused
  }

  /** The broker refused a filter of this stream (SUBACK 0x80): it is not subscribed, nothing to UNSUBSCRIBE. */
  refused(subscriber: Subscriber, topicFilter: string, qos: Packet.QoS): void {
    this.#release(topicFilter, qos)
    subscriber.requested = subscriber.requested.filter((s) => s.topicFilter !== topicFilter)
  }

  /**
   * Reads a stream's SUBACK return codes, one per requested filter: the QoS granted per filter, or
   * `SubscribeRejected` for the first filter the broker refused (0x80), which is then not subscribed and will not be
   * unsubscribed when the stream is released.
   */
  granted(
    subscriber: Subscriber,
    codes: ReadonlyArray<Packet.SubackReturnCode>
  ): Result.Result<Array<Packet.Subscription>, MqttError.MqttError> {
    const requested = subscriber.requested
    const granted: Array<Packet.Subscription> = []
    for (let i = 0; i < requested.length; i++) {
      const code = codes[i]
      const { topicFilter, qos } = requested[i]!
      if (code === 0x80 || code === undefined) {
        this.refused(subscriber, topicFilter, qos)
        return Result.fail(MqttError.make(new MqttError.SubscribeRejected({ topicFilter })))
      }
      granted.push({ topicFilter, qos: code })
    }
    return Result.succeed(granted)
  }

  /** Every filter subscribed at the broker, at its highest QoS: what a new session must subscribe again. */
  resubscriptions(): Array<Packet.Subscription> {
    return [...this.active].map(([topicFilter, counts]) => ({ topicFilter, qos: highest(counts) }))
  }

  /**
   * Offers a message to every matching stream, once each; returns an effect to wait on when a suspending buffer is
   * full. A message no stream matches is kept for a later stream (up to the limit; the oldest is dropped).
   */
  deliver(message: Packet.Publish): Effect.Effect<void> | undefined {
    let blocked: Array<Effect.Effect<boolean>> | undefined
    let claimed = false
    if (this.#filterCount() <= DIRECT_FILTERS) {
      // Few filters: trying them is cheaper than remembering routes for topics that may never come again.
      for (const subscriber of this.subscribers) {
        if (!matchesAny(subscriber, message.topic)) continue
        claimed = true
        if (!Queue.offerUnsafe(subscriber.queue, message) && subscriber.suspend) {
          ;(blocked ??= []).push(Queue.offer(subscriber.queue, message))
        }
      }
    } else {
      const route = this.#route(message.topic)
      claimed = route.length > 0
      for (let i = 0; i < route.length; i++) {
        const subscriber = route[i]!
        if (!Queue.offerUnsafe(subscriber.queue, message) && subscriber.suspend) {
          ;(blocked ??= []).push(Queue.offer(subscriber.queue, message))
        }
      }
    }
    if (!claimed && this.#unclaimedLimit > 0) {
      if (this.#unclaimed.length >= this.#unclaimedLimit) this.#unclaimed.shift()
      this.#unclaimed.push(message)
    }
    return blocked === undefined ? undefined : Effect.asVoid(Effect.all(blocked))
  }

  /** How many filters the live streams have (a stream of every message counts as one), counted after each change. */
  #filterCount(): number {
    if (this.#filters === undefined) {
      let count = 0
      for (const subscriber of this.subscribers) count += subscriber.filters?.length ?? 1
      this.#filters = count
    }
    return this.#filters
  }

  /** The live streams whose filters match `topic`, once each, in the order they were added. */
  #route(topic: string): ReadonlyArray<Subscriber> {
    const routes = this.#routes ??= new Map()
    const known = routes.get(topic)
    if (known !== undefined) return known
    const route: Array<Subscriber> = []
    for (const subscriber of this.subscribers) {
      if (matchesAny(subscriber, topic)) route.push(subscriber)
    }
    if (routes.size >= ROUTES_LIMIT) routes.clear()
    routes.set(topic, route)
    return route
  }

  /** Wakes consumers waiting on their queues now (a queue alone wakes them on a later turn of the event loop). */
  flush(): void {
    for (const subscriber of this.subscribers) Queue.flushUnsafe(subscriber.queue)
  }

  /** Hands a new stream the unclaimed messages it matches, oldest first, as far as its buffer allows. */
  #claim(subscriber: Subscriber): void {
    if (this.#unclaimed.length === 0) return
    const rest: Array<Packet.Publish> = []
    for (const message of this.#unclaimed) {
      if (!matchesAny(subscriber, message.topic) || !Queue.offerUnsafe(subscriber.queue, message)) rest.push(message)
    }
    this.#unclaimed = rest
  }

  /** One stream less on a filter at a QoS; true when no stream uses the filter any more. */
  #release(topicFilter: string, qos: Packet.QoS): boolean {
    const counts = this.active.get(topicFilter)
    if (counts === undefined) return false
    counts[qos] = Math.max(0, counts[qos] - 1)
    if (counts[0] + counts[1] + counts[2] > 0) return false
    this.active.delete(topicFilter)
    return true
  }
}
