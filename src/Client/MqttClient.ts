/**
 * The public MQTT client: publish, subscriptions as `Stream`s, connection status and events, reconnect by `Schedule`.
 *
 * `MqttClient.layer(options)` (or `make(options)` inside any `Scope`) connects on build and fails with `MqttError`
 * when the first connection fails for a reason retrying cannot fix, or the reconnect schedule gives up. After that a
 * supervisor fiber keeps the client connected: when a connection drops it reconnects by the schedule (resetting it
 * after every successful CONNACK), resumes the session — resending unacknowledged publishes [MQTT-4.4.0-1] — and
 * subscribes again to every live filter when the broker kept no session. Closing the scope disconnects gracefully.
 *
 * It owns the supervisor (connect → resume → read loop and keepalive → reconnect), the table of local
 * subscriptions and their bounded buffers, status and events. Protocol state lives in `Session`, wire rules in
 * `Connection`, ping decisions in `Keepalive`.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import type * as Socket from "effect/socket/Socket"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type * as Packet from "../Codec/Packet.ts"
import * as ConnectOptions from "../Connection/ConnectOptions.ts"
import * as Connection from "../Connection/Connection.ts"
import * as Keepalive from "../Connection/Keepalive.ts"
import * as NodeTransport from "../Connection/NodeTransport.ts"
import * as MqttError from "../Errors/MqttError.ts"
import * as LocalSubscriptions from "./LocalSubscriptions.ts"
import * as Reconnect from "./Reconnect.ts"
import * as Session from "./Session.ts"
import * as SessionState from "./SessionState.ts"
import * as SessionStore from "./SessionStore.ts"

/**
 * A message received from the broker: the PUBLISH as it arrived. `payload` is a view of the received bytes.
 *
 * @since 0.1.0
 */
export type Message = Packet.Publish

/**
 * What to publish. A string payload is sent as UTF-8.
 *
 * @since 0.1.0
 */
export interface PublishInput {
  readonly topic: string
  readonly payload: string | Uint8Array
  /** Default 0. */
  readonly qos?: Packet.QoS | undefined
  /** Default false. */
  readonly retain?: boolean | undefined
}

/**
 * Topic filters to subscribe to: one filter, several (all at `options.qos`), or each with its own QoS.
 *
 * @since 0.1.0
 */
export type Filters =
  | string
  | ReadonlyArray<string>
  | ReadonlyArray<Packet.Subscription>
  | { readonly [topicFilter: string]: Packet.QoS }

/**
 * How a subscription buffers messages its consumer has not taken yet.
 *
 * @since 0.1.0
 */
export interface SubscribeOptions {
  /** QoS for filters given without one (default 0). */
  readonly qos?: Packet.QoS | undefined
  /** Messages held for this stream (default 1024). */
  readonly bufferSize?: number | undefined
  /**
   * When the buffer is full: `"suspend"` (default) stops reading from the broker until there is room — nothing is
   * lost, memory stays bounded, other subscriptions wait too; `"dropping"` drops the new message; `"sliding"` drops
   * the oldest. Acknowledgements are sent once a message is in a buffer (or dropped by choice).
   */
  readonly strategy?: "suspend" | "dropping" | "sliding" | undefined
  /** Send UNSUBSCRIBE when the last stream on a filter ends (default: the client's `unsubscribeOnEnd`). */
  readonly unsubscribeOnEnd?: boolean | undefined
}

/**
 * A subscription: the QoS the broker granted per filter, and its messages.
 *
 * @since 0.1.0
 */
export interface Subscription {
  readonly granted: ReadonlyArray<Packet.Subscription>
  readonly messages: Stream.Stream<Message, MqttError.MqttError>
}

/**
 * The connection status.
 *
 * @since 0.1.0
 */
export type Status =
  | { readonly _tag: "Connecting" }
  | { readonly _tag: "Connected"; readonly sessionPresent: boolean }
  | { readonly _tag: "Reconnecting"; readonly attempt: number; readonly error: MqttError.MqttError }
  | { readonly _tag: "Disconnected"; readonly error: MqttError.MqttError }
  | { readonly _tag: "Closed" }

/**
 * Lifecycle events.
 *
 * - `Connected`: CONNACK accepted (`sessionPresent`).
 * - `Disconnected`: the connection dropped (`error`); `Reconnecting` follows unless the client is closing.
 * - `Reconnecting`: a new connection attempt is about to start (`attempt` counts from 1).
 * - `Offline`: the reconnect schedule gave up (`error`); operations fail from now on.
 * - `Closed`: the client was closed.
 * - `Ping`, `Pong`: keepalive PINGREQ sent, PINGRESP received (`rttMillis`).
 * - `Published`: a publish completed (QoS 0 written, QoS 1 PUBACK, QoS 2 PUBCOMP).
 * - `Resubscribed`: after a reconnect without a session, the broker acknowledged the live filters again.
 *
 * @since 0.1.0
 */
export type Event =
  | { readonly _tag: "Connected"; readonly sessionPresent: boolean }
  | { readonly _tag: "Disconnected"; readonly error: MqttError.MqttError }
  | { readonly _tag: "Reconnecting"; readonly attempt: number }
  | { readonly _tag: "Offline"; readonly error: MqttError.MqttError }
  | { readonly _tag: "Closed" }
  | { readonly _tag: "Ping" }
  | { readonly _tag: "Pong"; readonly rttMillis: number }
  | { readonly _tag: "Published"; readonly topic: string; readonly qos: Packet.QoS; readonly packetId: number | undefined }
  | { readonly _tag: "Resubscribed"; readonly topicFilters: ReadonlyArray<string> }

/**
 * Options of a client: the connection options, the session options, and reconnect.
 *
 * @since 0.1.0
 */
export interface Options extends ConnectOptions.ConnectOptions, Session.Options {
  /**
   * The reconnect schedule, stepped with each failed attempt's error; it restarts after every successful connection.
   * Default: exponential from 1 s, capped at 30 s, jittered, unlimited. `false`: never reconnect.
   * Non-retryable errors (bad credentials, TLS verification, invalid options) stop reconnecting whatever it says.
   */
  readonly reconnect?: Schedule.Schedule<unknown, MqttError.MqttError> | false | undefined
  /**
   * Retry the first connection by `reconnect` too (default `true`). `false`: building the client fails at once
   * when the broker cannot be reached, and only later drops are retried (CLIs, health checks).
   */
  readonly retryFirstConnect?: boolean | undefined
  /** How long closing the scope waits for in-flight acknowledgements before DISCONNECT (default 5 seconds). */
  readonly disconnectTimeout?: Duration.Input | undefined
  /**
   * Messages held when no stream matches them, handed to the first stream that does (default 1000 with a persistent
   * session, 0 with a clean one). A broker resuming a persistent session sends what it queued right after CONNACK,
   * before the application can start its streams: these are kept, not lost. When full, the oldest is dropped.
   */
  readonly unclaimedBufferSize?: number | undefined
  /**
   * Send UNSUBSCRIBE when the last stream on a filter ends. Default: `true` with a clean session, `false` with a
   * persistent one, whose subscriptions are meant to outlive the program's streams (use `unsubscribe` to end them).
   */
  readonly unsubscribeOnEnd?: boolean | undefined
  /**
   * Where to keep the session across crashes: `SessionStore.makeFile({ directory })` or `SessionStore.makeMemory()`
   * (or provide the `SessionStore` service). Default: none, the session lives in memory only. Use with a fixed
   * `clientId` and `cleanSession: false`.
   */
  readonly sessionStore?: SessionStore.SessionStore["Service"] | undefined
  /**
   * A span per publish (`mqtt.publish`, producer) and per delivered message (`mqtt.deliver`, consumer), with topic,
   * QoS and packet id attributes. Default `false`: connect spans and metrics are always on, per-message spans cost
   * about a microsecond each and are opt-in.
   */
  readonly tracing?: boolean | undefined
}

/**
 * Options of `disconnect`.
 *
 * @since 0.1.0
 */
export interface DisconnectOptions {
  /** How long to wait for in-flight acknowledgements before DISCONNECT (default 5 seconds). */
  readonly timeout?: Duration.Input | undefined
  /** Close the connection at once, without waiting or DISCONNECT. */
  readonly force?: boolean | undefined
}

/**
 * The MqttClient service.
 *
 * @since 0.1.0
 */
export class MqttClient extends Context.Service<MqttClient, {
  /**
   * Publishes a message. QoS 0 completes when written, QoS 1 on PUBACK, QoS 2 on PUBCOMP; returns the packet id for
   * QoS 1 and 2. Offline, QoS 1 and 2 are queued and sent after reconnect.
   */
  readonly publish: (input: PublishInput) => Effect.Effect<number | undefined, MqttError.MqttError>
  /**
   * Publishes several messages, in order, as one operation: nothing is sent if one is invalid; as many are sent at
   * once as the in-flight window allows and the rest as acknowledgements free it; completes when every message is
   * complete (as `publish`), and fails with the first error. One wait for the whole batch instead of one per message:
   * the way to publish a stream's chunks (`Stream.runForEachArray(stream, client.publishAll)`). Returns the packet
   * ids (`undefined` for QoS 0).
   *
   * **Gotchas**: the batch is held, and its QoS 0 messages queued for writing, all at once (the in-flight window
   * bounds only QoS 1 and 2): pass chunks of a stream, not the whole of it.
   */
  readonly publishAll: (
    inputs: Iterable<PublishInput>
  ) => Effect.Effect<ReadonlyArray<number | undefined>, MqttError.MqttError>
  /**
   * Publishes a stream's messages in order: `Stream.run(messages, client.publishSink)`. Each chunk is started as the
   * in-flight window allows without waiting for the chunks before it to complete, so the window stays full for the
   * whole stream, and the stream is pulled as slots free up (QoS 0 chunks once written). Completes with the number of
   * messages once every one has completed (as `publish`). Nothing of a chunk is sent when one of its messages is
   * invalid; fails with the first error, and the messages already started stay in the session (they are still
   * delivered, as an interrupted `publish`'s are). With a session store each message completes before the next.
   */
  readonly publishSink: Sink.Sink<number, PublishInput, never, MqttError.MqttError>
  /**
   * Subscribes while the returned stream runs: SUBSCRIBE when it starts, UNSUBSCRIBE when the last stream on a
   * filter ends (with a clean session; see `unsubscribeOnEnd`). A filter the broker refuses (SUBACK 0x80) fails the
   * stream with `SubscribeRejected`.
   */
  readonly subscribe: (filters: Filters, options?: SubscribeOptions) => Stream.Stream<Message, MqttError.MqttError>
  /** Like `subscribe`, in a `Scope`, also returning the QoS the broker granted per filter. */
  readonly subscription: (
    filters: Filters,
    options?: SubscribeOptions
  ) => Effect.Effect<Subscription, MqttError.MqttError, Scope.Scope>
  /** Sends UNSUBSCRIBE and waits for UNSUBACK (local streams on these filters keep running but receive nothing). */
  readonly unsubscribe: (filters: string | ReadonlyArray<string>) => Effect.Effect<void, MqttError.MqttError>
  /** Every message received, whatever subscription brought it (bounded like a subscription). */
  readonly messages: (options?: Omit<SubscribeOptions, "qos">) => Stream.Stream<Message, MqttError.MqttError>
  /**
   * The publishes restored from the session store when the client started, which it resends (empty without a
   * store). A restarted application checks here what it must not publish again.
   */
  readonly restored: ReadonlyArray<Message>
  readonly status: SubscriptionRef.SubscriptionRef<Status>
  readonly events: Stream.Stream<Event>
  readonly isConnected: Effect.Effect<boolean>
  /** Operations not yet complete: in-flight and queued publishes, pending subscribe and unsubscribe. */
  readonly pendingCount: Effect.Effect<number>
  /**
   * Closes the client: waits up to `timeout` for in-flight acknowledgements, sends DISCONNECT and closes the
   * connection; with `force`, closes at once. Pending operations then fail with `OperationIncomplete`, streams end.
   */
  readonly disconnect: (options?: DisconnectOptions) => Effect.Effect<void>
}>()("effect-mqtt/Client/MqttClient") {}

// ---------------------------------------------------------------------------------------------------------------------
// Local subscriptions
// ---------------------------------------------------------------------------------------------------------------------

const encoder = new TextEncoder()

const notAnInput = (field: string, value: unknown, detail: string) =>
  MqttError.make(new MqttError.BadStructure({ field, value: typeof value, detail }))

/**
 * `publishAll`'s inputs as session requests (strings encoded as UTF-8), or the error for an argument that is not an
 * iterable of objects: the rest of each message is checked by the session, before anything is sent. Shared by every
 * implementation of the service.
 *
 * @since 0.1.0
 */
export const toPublishRequests = (
  inputs: Iterable<PublishInput>
): Result.Result<Array<SessionState.PublishRequest>, MqttError.MqttError> => {
  if (inputs === null || typeof inputs !== "object" || typeof inputs[Symbol.iterator] !== "function") {
    return Result.fail(notAnInput("inputs", inputs, "must be an iterable of messages"))
  }
  const requests: Array<SessionState.PublishRequest> = []
  for (const input of inputs) {
    if (input === null || typeof input !== "object") return Result.fail(notAnInput("message", input, "must be an object"))
    const payload = typeof input.payload === "string" ? encoder.encode(input.payload) : input.payload
    requests.push({ topic: input.topic, payload, qos: input.qos ?? 0, retain: input.retain ?? false })
  }
  return Result.succeed(requests)
}

/**
 * The subscriptions a `Filters` argument asks for, one per filter at the highest QoS given for it (filters given
 * without a QoS get `qos`). Shared by every implementation of the service.
 *
 * @since 0.1.0
 */
export const toSubscriptions = (filters: Filters, qos: Packet.QoS): Array<Packet.Subscription> =>
  dedupe(normalize(filters, qos))

const normalize = (filters: Filters, qos: Packet.QoS): Array<Packet.Subscription> => {
  if (typeof filters === "string") return [{ topicFilter: filters, qos }]
  if (Array.isArray(filters)) {
    return (filters as ReadonlyArray<string | Packet.Subscription>).map((f) =>
      typeof f === "string" ? { topicFilter: f, qos } : f
    )
  }
  return Object.entries(filters as { readonly [topicFilter: string]: Packet.QoS }).map(([topicFilter, q]) => ({
    topicFilter,
    qos: q
  }))
}

/** One entry per filter, at the highest QoS asked for it. */
const dedupe = (subscriptions: ReadonlyArray<Packet.Subscription>): Array<Packet.Subscription> => {
  const byFilter = new Map<string, Packet.QoS>()
  for (const { topicFilter, qos } of subscriptions) {
    const seen = byFilter.get(topicFilter)
    byFilter.set(topicFilter, seen === undefined || qos > seen ? qos : seen)
  }
  return [...byFilter].map(([topicFilter, qos]) => ({ topicFilter, qos }))
}

/** `reconnect: false`: no retry. One schedule for every such client (a schedule is immutable). */
const noReconnect: Schedule.Schedule<unknown, MqttError.MqttError> = Schedule.recurs(0)

const defaultReconnect: Schedule.Schedule<unknown, MqttError.MqttError> = Schedule.exponential("1 second").pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(30)))),
  Schedule.jittered
)

const RESUBSCRIBE_BATCH = 100

/** The client's spans carry no stack trace: it would point into this module, and each capture costs a stack walk. */
const noStackTrace = { captureStackTrace: false } as const

/**
 * The client's metrics, updated without allocating effects on the message path. Names follow the OpenTelemetry
 * messaging conventions where they exist.
 *
 * @since 0.1.0
 */
export const metrics = {
  sent: [0, 1, 2].map((qos) =>
    Metric.counter("mqtt_messages_sent", {
      description: "publishes completed (QoS 0 written, QoS 1 PUBACK, QoS 2 PUBCOMP)",
      attributes: { qos: String(qos) },
      incremental: true
    })
  ),
  received: [0, 1, 2].map((qos) =>
    Metric.counter("mqtt_messages_received", {
      description: "messages delivered to the application",
      attributes: { qos: String(qos) },
      incremental: true
    })
  ),
  inflight: Metric.gauge("mqtt_inflight", { description: "QoS 1 and 2 publishes awaiting acknowledgement" }),
  buffered: Metric.gauge("mqtt_buffered", { description: "publishes queued while offline" }),
  reconnects: Metric.counter("mqtt_reconnects", { description: "reconnect attempts", incremental: true }),
  keepaliveRtt: Metric.histogram("mqtt_keepalive_rtt_ms", {
    description: "PINGREQ to PINGRESP round trip, in milliseconds",
    boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 12 })
  })
} as const

/** The options `makeNoDeps` takes: a client's options, the URL being optional (the Connection service has it). */
type MakeOptions = Omit<Options, "url"> & { readonly url?: string | undefined }

/** A connection made and not yet closed: the link and the scope that closes it. */
interface OpenLink {
  readonly link: Connection.Link
  readonly linkScope: Scope.Closeable
}

/**
 * One running client: its state and the operations on it. One instance per client, its generators defined once for
 * the module (`Effect.fnUntraced`) — a generator function written inside per-client code is a new function object,
 * with its own prototype and hidden classes, for every client and every call, and an idle process holds thousands.
 */
class ClientImpl implements Keepalive.Config, Reconnect.Hooks {
  readonly connection: Connection.Connection["Service"]
  readonly keepalive: Keepalive.Keepalive["Service"]
  readonly session: Session.Session["Service"]
  readonly resolved: ConnectOptions.Resolved
  readonly clientScope: Scope.Scope
  /**
   * Links live in a scope of their own, forked before the graceful-disconnect finalizer is registered. Finalizers
   * run in reverse order, so closing the client disconnects a (re)connected link before cutting it.
   */
  readonly linksScope: Scope.Closeable
  readonly context: Context.Context<never>
  readonly tracing: boolean
  readonly schedule: Schedule.Schedule<unknown, MqttError.MqttError>
  /** The keepalive settings: the client is its own `Keepalive.Config` (no object and closure more per client). */
  readonly keepaliveMillis: number
  readonly pingTimeoutMillis: number
  readonly unsubscribeOnEnd: boolean
  readonly local: LocalSubscriptions.LocalSubscriptions
  /**
   * The status as plain data; its `SubscriptionRef` (a replaying hub and a semaphore, about 2 KB) is made for the
   * first reader of `status`, since most clients never look.
   */
  currentStatus: Status = { _tag: "Connecting" }
  statusRef: SubscriptionRef.SubscriptionRef<Status> | undefined = undefined
  /** Created for the first `events` subscriber: most clients never listen, and a hub preallocates its buffer. */
  events: PubSub.PubSub<Event> | undefined = undefined
  /**
   * UNSUBSCRIBEs of filters whose last stream ended, until UNSUBACK (made on first use). A new SUBSCRIBE for such a
   * filter waits for it: brokers may process the two concurrently (Aedes does), and the UNSUBSCRIBE must not win.
   */
  unsubscribing: Map<string, Fiber.Fiber<void>> | undefined = undefined
  closing = false
  closed = false
  currentLink: Connection.Link | undefined = undefined
  currentLinkScope: Scope.Closeable | undefined = undefined
  readerPaused = false
  pingSentAt = 0
  supervisor: Fiber.Fiber<void> | undefined = undefined
  restored: ReadonlyArray<Message> = []

  constructor(
    connection: Connection.Connection["Service"],
    keepalive: Keepalive.Keepalive["Service"],
    session: Session.Session["Service"],
    options: MakeOptions,
    clientScope: Scope.Scope,
    linksScope: Scope.Closeable,
    context: Context.Context<never>
  ) {
    this.connection = connection
    this.keepalive = keepalive
    this.session = session
    this.clientScope = clientScope
    this.linksScope = linksScope
    this.context = context
    const resolved = connection.options
    this.resolved = resolved
    this.tracing = options.tracing === true
    this.schedule = options.reconnect === false ? noReconnect : (options.reconnect ?? defaultReconnect)
    this.keepaliveMillis = resolved.keepalive * 1000
    this.pingTimeoutMillis = Duration.toMillis(resolved.pingTimeout)
    this.unsubscribeOnEnd = options.unsubscribeOnEnd ?? resolved.cleanSession
    this.local = new LocalSubscriptions.LocalSubscriptions(
      options.unclaimedBufferSize ?? (resolved.cleanSession ? 0 : 1000)
    )
  }

  /** Keepalive: whether the read loop is waiting for a subscriber's buffer (unread bytes may hold the PINGRESP). */
  isPaused(): boolean {
    return this.readerPaused
  }

  emit(event: Event): void {
    if (this.events !== undefined) PubSub.publishUnsafe(this.events, event)
  }

  setStatus(next: Status): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.currentStatus = next
      return this.statusRef === undefined ? Effect.void : SubscriptionRef.set(this.statusRef, next)
    })
  }

  // Reconnect.Hooks. Status: reconnecting from the moment the connection is lost, through the schedule's delay.
  // Event: an attempt is about to start (none when the schedule gives up).
  onReconnectWait(attempt: number, failure: MqttError.MqttError): Effect.Effect<void> {
    return this.setStatus({ _tag: "Reconnecting", attempt, error: failure })
  }

  onReconnectAttempt(attempt: number, failure: MqttError.MqttError): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.emit({ _tag: "Reconnecting", attempt })
      metrics.reconnects.updateUnsafe(1, this.context)
      return Effect.logDebug(`reconnecting to ${this.resolved.url} (attempt ${attempt}) after: ${failure.message}`)
    })
  }

  readonly onPing = (now: number): void => {
    this.pingSentAt = now
    this.emit(pingEvent)
  }

  /** Runs a link until it fails (attaching it first unless it already is); returns the error. */
  runLink(open: OpenLink, attached: boolean): Effect.Effect<MqttError.MqttError> {
    const { link, linkScope } = open
    return Effect.ensuring(
      Effect.flip(runLinkBody(this, link, linkScope, attached)),
      Effect.suspend(() => {
        this.currentLink = undefined
        this.currentLinkScope = undefined
        return Effect.andThen(this.session.detach, Scope.close(linkScope, Exit.void))
      })
    )
  }

  get connectOnce(): Effect.Effect<OpenLink, MqttError.MqttError> {
    const resolved = this.resolved
    return connectOnceBody(this).pipe(
      Effect.withSpan("mqtt.connect", {
        attributes: {
          "messaging.system": "mqtt",
          "server.address": resolved.host,
          "server.port": resolved.port,
          "messaging.client.id": resolved.clientId,
          "network.transport": resolved.transport
        }
      }, noStackTrace)
    )
  }

  publish(input: PublishInput): Effect.Effect<number | undefined, MqttError.MqttError> {
    // A closing client takes no new work: disconnect waits only for what was in flight.
    if (this.closing) return Effect.fail(closedError("publish"))
    const qos = input.qos ?? 0
    const payload = typeof input.payload === "string" ? encoder.encode(input.payload) : input.payload
    const published = Effect.map(
      this.session.publish({ topic: input.topic, payload, qos, retain: input.retain ?? false }),
      (packetId) => {
        metrics.sent[qos]?.updateUnsafe(1, this.context)
        // Per message: the event is not even made while nobody listens.
        if (this.events !== undefined) this.emit({ _tag: "Published", topic: input.topic, qos, packetId })
        return packetId
      }
    )
    if (!this.tracing) return published
    return published.pipe(
      Effect.tap((packetId) => Effect.annotateCurrentSpan("messaging.mqtt.packet_id", packetId ?? 0)),
      Effect.withSpan("mqtt.publish", {
        kind: "producer",
        attributes: {
          "messaging.system": "mqtt",
          "messaging.destination.name": input.topic,
          "messaging.mqtt.qos": qos,
          "messaging.mqtt.retain": input.retain ?? false,
          "messaging.message.body.size": payload.length
        }
      }, noStackTrace)
    )
  }

  /** Counts completed publishes (by QoS) in `mqtt_messages_sent`, one update per QoS, and zeroes the counts. */
  recordSent(sent: Array<number>): void {
    for (let qos = 0; qos < 3; qos++) {
      if (sent[qos]! > 0) metrics.sent[qos]!.updateUnsafe(sent[qos]!, this.context)
      sent[qos] = 0
    }
  }

  publishAll(inputs: Iterable<PublishInput>): Effect.Effect<ReadonlyArray<number | undefined>, MqttError.MqttError> {
    return Effect.suspend(() => {
      if (this.closing) return Effect.fail(closedError("publish"))
      const requests = toPublishRequests(inputs)
      return Result.isSuccess(requests) ? this.#publishAll(requests.success) : Effect.fail(requests.failure)
    })
  }

  #publishAll(
    requests: ReadonlyArray<SessionState.PublishRequest>
  ): Effect.Effect<ReadonlyArray<number | undefined>, MqttError.MqttError> {
    const published = Effect.map(this.session.publishAll(requests), (packetIds) => {
      // One metric update per QoS for the batch.
      const sent = [0, 0, 0]
      for (let i = 0; i < requests.length; i++) sent[requests[i]!.qos]!++
      this.recordSent(sent)
      if (this.events !== undefined) {
        for (let i = 0; i < requests.length; i++) {
          const { topic, qos } = requests[i]!
          this.emit({ _tag: "Published", topic, qos, packetId: packetIds[i] })
        }
      }
      return packetIds
    })
    if (!this.tracing) return published
    return published.pipe(publishAllSpan(requests.length))
  }

  get publishSink(): Sink.Sink<number, PublishInput, never, MqttError.MqttError> {
    return Sink.unwrap(Effect.suspend(() => {
      let count = 0
      // Metrics are updated once per chunk (and when the sink ends), events per message.
      const sent = [0, 0, 0]
      const onPublished: Session.OnPublished = (request, packetId) => {
        sent[request.qos]!++
        if (this.events !== undefined) {
          this.emit({ _tag: "Published", topic: request.topic, qos: request.qos, packetId })
        }
      }
      return Effect.map(this.session.publisher(onPublished), (publisher) => {
        const updateMetrics = Effect.sync(() => this.recordSent(sent))
        const offer = (inputs: ReadonlyArray<PublishInput>): Effect.Effect<void, MqttError.MqttError> => {
          if (this.closing) return Effect.fail(closedError("publish"))
          const requests = toPublishRequests(inputs)
          if (Result.isFailure(requests)) return Effect.fail(requests.failure)
          count += requests.success.length
          const offered = Effect.ensuring(publisher.offer(requests.success), updateMetrics)
          if (!this.tracing) return offered
          return offered.pipe(publishAllSpan(requests.success.length))
        }
        return Sink.forEachArray((inputs: ReadonlyArray<PublishInput>) => Effect.suspend(() => offer(inputs))).pipe(
          Sink.mapEffect(() => Effect.as(Effect.ensuring(publisher.drain, updateMetrics), count))
        )
      })
    }))
  }

  unsubscribe(filters: string | ReadonlyArray<string>): Effect.Effect<void, MqttError.MqttError> {
    return Effect.suspend(() => {
      if (this.closing) return Effect.fail(closedError("unsubscribe"))
      const list = typeof filters === "string" ? [filters] : filters
      for (const filter of list) this.local.active.delete(filter)
      return this.session.unsubscribe(list)
    })
  }

  get sendDisconnect(): Effect.Effect<void> {
    return this.currentLink !== undefined ? this.currentLink.disconnect : Effect.void
  }

  get status(): SubscriptionRef.SubscriptionRef<Status> {
    return this.statusRef ??= Effect.runSync(SubscriptionRef.make(this.currentStatus))
  }

  get eventStream(): Stream.Stream<Event> {
    return Stream.unwrap(
      Effect.sync(() => {
        this.events ??= Effect.runSync(PubSub.sliding<Event>(1024))
        return Stream.fromPubSub(this.events)
      })
    )
  }

}

/** The MqttClient service's shape. */
type Service = MqttClient["Service"]

/**
 * The public service object of one client: plain functions over it, so that they can be passed around unbound, each
 * made on first read, and `status` made on first read too. A class, not an object literal: a literal with a getter
 * is created in V8's slow (dictionary) mode, which every later `client.publish` lookup pays for.
 */
class ClientService implements Service {
  readonly #client: ClientImpl
  #publish: Service["publish"] | undefined = undefined
  #publishAll: Service["publishAll"] | undefined = undefined
  #publishSink: Service["publishSink"] | undefined = undefined
  #subscribe: Service["subscribe"] | undefined = undefined
  #subscription: Service["subscription"] | undefined = undefined
  #unsubscribe: Service["unsubscribe"] | undefined = undefined
  #messages: Service["messages"] | undefined = undefined
  #disconnect: Service["disconnect"] | undefined = undefined

  constructor(client: ClientImpl) {
    this.#client = client
  }

  // The operations are made on first read and kept (so `client.publish === client.publish`, and destructuring
  // works): most clients use two or three of them, and each would be a closure per client. The closures are made by
  // functions outside the getters, so that a getter allocates nothing once its operation exists.
  get publish(): Service["publish"] {
    return this.#publish ??= publishOf(this.#client)
  }

  get publishAll(): Service["publishAll"] {
    return this.#publishAll ??= publishAllOf(this.#client)
  }

  get publishSink(): Service["publishSink"] {
    return this.#publishSink ??= this.#client.publishSink
  }

  get subscribe(): Service["subscribe"] {
    return this.#subscribe ??= subscribeOf(this.#client)
  }

  get subscription(): Service["subscription"] {
    return this.#subscription ??= subscriptionOf(this.#client)
  }

  get unsubscribe(): Service["unsubscribe"] {
    return this.#unsubscribe ??= unsubscribeOf(this.#client)
  }

  get messages(): Service["messages"] {
    return this.#messages ??= messagesOf(this.#client)
  }

  get disconnect(): Service["disconnect"] {
    return this.#disconnect ??= disconnectOf(this.#client)
  }

  // Values made when read: most clients never read them, and each would be an object or two per client.
  get status(): SubscriptionRef.SubscriptionRef<Status> {
    return this.#client.status
  }

  get restored(): ReadonlyArray<Message> {
    return this.#client.restored
  }

  get events(): Stream.Stream<Event> {
    return this.#client.eventStream
  }

  get isConnected(): Effect.Effect<boolean> {
    const client = this.#client
    return Effect.sync(() => client.currentStatus._tag === "Connected")
  }

  get pendingCount(): Effect.Effect<number> {
    const session = this.#client.session
    return Effect.sync(() => session.pending())
  }
}

const publishOf = (client: ClientImpl): Service["publish"] => (input) => client.publish(input)

const publishAllOf = (client: ClientImpl): Service["publishAll"] => (inputs) => client.publishAll(inputs)

const subscribeOf = (client: ClientImpl): Service["subscribe"] => (filters, options) =>
  Stream.unwrap(Effect.map(subscriptionBody(client, filters, options), (s) => s.messages))

const subscriptionOf = (client: ClientImpl): Service["subscription"] => (filters, options) =>
  subscriptionBody(client, filters, options)

const unsubscribeOf = (client: ClientImpl): Service["unsubscribe"] => (filters) => client.unsubscribe(filters)

const messagesOf = (client: ClientImpl): Service["messages"] => (options) =>
  Stream.unwrap(messagesBody(client, options))

const disconnectOf = (client: ClientImpl): Service["disconnect"] => (options) => disconnectBody(client, options)

/** The span of a batch of publishes (`publishAll`, or a chunk of `publishSink`). */
const publishAllSpan = (count: number) =>
  Effect.withSpan("mqtt.publish_all", {
    kind: "producer",
    attributes: { "messaging.system": "mqtt", "messaging.batch.message_count": count }
  }, noStackTrace)

const pingEvent: Event = { _tag: "Ping" }

/** What the operations pending when the client closes fail with (made only if there are any). */
const clientClosed = () =>
  MqttError.make(new MqttError.OperationIncomplete({ operation: "operation", detail: "the client was closed" }))

const closedError = (operation: string) => MqttError.make(new MqttError.Disconnected({ operation }))


const deliverySpan = (message: Message) =>
  Effect.withSpan(Effect.void, "mqtt.deliver", {
    kind: "consumer",
    captureStackTrace: false,
    attributes: {
      "messaging.system": "mqtt",
      "messaging.destination.name": message.topic,
      "messaging.mqtt.qos": message.qos,
      "messaging.mqtt.packet_id": message.packetId ?? 0,
      "messaging.mqtt.retain": message.retain,
      "messaging.mqtt.dup": message.dup
    }
  })

const resubscribe = Effect.fnUntraced(function*(client: ClientImpl, link: Connection.Link) {
  const { local, session } = client
  if (link.connack.sessionPresent || local.active.size === 0) return
  // A SUBSCRIBE still pending in the session is resent by the resume: not subscribed twice.
  const pending = new Set<string>()
  for (const flight of session.state.outgoing.values()) {
    if (flight._tag === "Subscribe") for (const s of flight.packet.subscriptions) pending.add(s.topicFilter)
  }
  const all = local.resubscriptions().filter((s) => !pending.has(s.topicFilter))
  if (all.length === 0) return
  const batches: Array<Effect.Effect<void>> = []
  for (let i = 0; i < all.length; i += RESUBSCRIBE_BATCH) {
    const batch = all.slice(i, i + RESUBSCRIBE_BATCH)
    batches.push(
      session.subscribe(batch).pipe(
        Effect.flatMap((codes) =>
          Effect.forEach(batch, (s, index) =>
            codes[index] === 0x80 ? rejectFilter(client, s.topicFilter) : Effect.void, { discard: true })
        ),
        Effect.ignore
      )
    )
  }
  // Started at once, so the SUBSCRIBEs are queued before `Connected` is announced; `Resubscribed` follows
  // the SUBACKs, when messages on those filters flow again.
  yield* Effect.forkIn(
    Effect.all(batches, { concurrency: "unbounded", discard: true }).pipe(
      Effect.andThen(
        Effect.sync(() => client.emit({ _tag: "Resubscribed", topicFilters: all.map((s) => s.topicFilter) }))
      )
    ),
    client.clientScope,
    { startImmediately: true }
  )
})

const rejectFilter = Effect.fnUntraced(function*(client: ClientImpl, topicFilter: string) {
  const error = MqttError.make(new MqttError.SubscribeRejected({ topicFilter }))
  client.local.active.delete(topicFilter)
  for (const subscriber of client.local.subscribers) {
    if (subscriber.filters?.includes(topicFilter)) yield* Queue.fail(subscriber.queue, error)
  }
})

/** Makes an established link current: resumes the session on it and subscribes again if needed. */
const attach = Effect.fnUntraced(function*(client: ClientImpl, link: Connection.Link) {
  client.currentLink = link
  yield* client.session.attach(link)
  yield* resubscribe(client, link)
  client.emit({ _tag: "Connected", sessionPresent: link.connack.sessionPresent })
  yield* client.setStatus({ _tag: "Connected", sessionPresent: link.connack.sessionPresent })
})

/**
 * Runs one link until it fails: keepalive beside it, the session resumed on it unless already attached, then the
 * read loop — in this one generator, so an idle client holds one suspended generator for it, not two.
 */
const runLinkBody = Effect.fnUntraced(function*(
  client: ClientImpl,
  link: Connection.Link,
  linkScope: Scope.Closeable,
  attached: boolean
) {
  client.currentLinkScope = linkScope
  // Keepalive runs beside the read loop in the link's scope, which ends it with the link. It never needs to stop
  // the loop itself: a ping timeout aborts the link, which fails the loop's pull with that error.
  yield* Scope.provide(client.keepalive.start(link, client, client.onPing), linkScope)
  if (!attached) yield* attach(client, link)
  // The read loop.
  const session = client.session
  const local = client.local
  const context = client.context
  const received = [0, 0, 0]
  while (true) {
    const packets = yield* link.pull
    for (let i = 0; i < packets.length; i++) {
      const packet = packets[i]!
      if (packet._tag === "Pingresp") {
        const rttMillis = Math.max(0, link.lastReceivedAt() - client.pingSentAt)
        metrics.keepaliveRtt.updateUnsafe(rttMillis, context)
        client.emit({ _tag: "Pong", rttMillis })
        continue
      }
      const step = session.handle(packet)
      if (step.warning !== undefined) yield* Effect.logDebug(step.warning)
      // With a session store: what this packet changed is stored before its message is delivered and its
      // acknowledgement sent, so a crash cannot lose or repeat it.
      if (session.mustFlush(step)) yield* session.flush
      if (step.deliver !== undefined) {
        const message = step.deliver
        received[message.qos]++
        const blocked = local.deliver(message)
        if (client.tracing) yield* deliverySpan(message)
        if (blocked !== undefined) {
          client.readerPaused = true
          yield* blocked
          client.readerPaused = false
        }
      }
      // [MQTT-4.5.0-2] [MQTT-4.6.0-2] [MQTT-4.6.0-3]: acknowledged in arrival order, once buffered.
      session.acknowledge(step)
    }
    // Metrics once per batch: a metric update looks its state up in the context.
    for (let qos = 0; qos < 3; qos++) {
      if (received[qos]! > 0) {
        metrics.received[qos]!.updateUnsafe(received[qos]!, context)
        received[qos] = 0
      }
    }
    metrics.inflight.updateUnsafe(session.state.inflight, context)
    metrics.buffered.updateUnsafe(session.state.buffered, context)
    // Hand the batch to waiting consumers now: a queue alone wakes them on a later turn of the event loop.
    local.flush()
  }
}) as (
  client: ClientImpl,
  link: Connection.Link,
  linkScope: Scope.Closeable,
  attached: boolean
) => Effect.Effect<never, MqttError.MqttError>

const connectOnceBody = Effect.fnUntraced(function*(client: ClientImpl) {
  // A child of the client's scope: no connection outlives the client, whatever is interrupted where.
  const linkScope = yield* Scope.fork(client.linksScope)
  const connection = client.connection
  // In the link's own scope when the service allows it: no scope of the connection's own inside it.
  const connect = connection.connectIn !== undefined
    ? connection.connectIn(linkScope)
    : Scope.provide(connection.connect, linkScope)
  const link = yield* connect.pipe(
    Effect.onError((cause) => Scope.close(linkScope, Exit.failCause(cause)))
  )
  yield* Effect.annotateCurrentSpan("messaging.mqtt.session_present", link.connack.sessionPresent)
  return { link, linkScope } satisfies OpenLink
})

/**
 * Connects, retrying by the client's schedule (`Reconnect.connectWithRetry`); `after` is the error that ended the
 * previous connection. The client is its own `Reconnect.Hooks`.
 */
const connectWithRetry = (client: ClientImpl, after: MqttError.MqttError | undefined) =>
  Reconnect.connectWithRetry(client.schedule, after, client.connectOnce, client)

const supervise = Effect.fnUntraced(function*(client: ClientImpl, first: OpenLink) {
  let current = first
  let attached = true
  while (true) {
    const error = yield* client.runLink(current, attached)
    if (client.closing) return
    client.emit({ _tag: "Disconnected", error })
    const next = yield* Effect.exit(connectWithRetry(client, error))
    if (client.closing) {
      // Closed while reconnecting: a connection made meanwhile is closed properly, never left open.
      if (Exit.isSuccess(next)) {
        yield* next.value.link.disconnect
        yield* Scope.close(next.value.linkScope, Exit.void)
      }
      return
    }
    if (Exit.isFailure(next)) {
      const final = Reconnect.failureOf(next) ?? error
      client.emit({ _tag: "Offline", error: final })
      yield* client.setStatus({ _tag: "Disconnected", error: final })
      yield* client.session.dropAll(() => final)
      for (const subscriber of client.local.subscribers) yield* Queue.fail(subscriber.queue, final)
      return
    }
    current = next.value
    attached = false
  }
})

const release = Effect.fnUntraced(function*(client: ClientImpl, subscriber: LocalSubscriptions.Subscriber) {
  const unused = client.local.remove(subscriber)
  yield* Queue.end(subscriber.queue)
  if (client.closing || unused.length === 0 || !subscriber.unsubscribeOnEnd) return
  // UNSUBSCRIBE is queued now, so that a SUBSCRIBE for the same filter made next goes out after it; its answer is
  // awaited in the background: a stream's end never waits for the broker.
  const fiber = yield* Effect.forkIn(Effect.ignore(client.session.unsubscribe(unused)), client.clientScope, {
    startImmediately: true
  })
  const unsubscribing = client.unsubscribing ??= new Map()
  for (const filter of unused) unsubscribing.set(filter, fiber)
  fiber.addObserver(() => {
    for (const filter of unused) if (unsubscribing.get(filter) === fiber) unsubscribing.delete(filter)
  })
})

const subscriptionBody = Effect.fnUntraced(function*(
  client: ClientImpl,
  filters: Filters,
  options: SubscribeOptions | undefined
) {
  if (client.closing) return yield* Effect.fail(closedError("subscribe"))
  const requested = toSubscriptions(filters, options?.qos ?? 0)
  const invalid = SessionState.validateSubscriptions(requested)
  if (invalid !== undefined) return yield* Effect.fail(invalid)
  const subscriber = yield* LocalSubscriptions.makeSubscriber(
    requested,
    options,
    options?.unsubscribeOnEnd ?? client.unsubscribeOnEnd
  )
  const effective = client.local.add(subscriber)
  yield* Scope.addFinalizerExit(yield* Effect.scope, () => release(client, subscriber))
  for (const { topicFilter } of requested) {
    const pending = client.unsubscribing?.get(topicFilter)
    // Bounded: a broker that never answers UNSUBSCRIBE must not stall every later subscription.
    if (pending !== undefined) yield* Effect.timeoutOption(Fiber.await(pending), client.resolved.connectTimeout)
  }
  const codes = yield* client.session.subscribe(effective)
  const granted = yield* Effect.fromResult(client.local.granted(subscriber, codes))
  return { granted, messages: Stream.fromQueue(subscriber.queue) } satisfies Subscription
}) as (
  client: ClientImpl,
  filters: Filters,
  options: SubscribeOptions | undefined
) => Effect.Effect<Subscription, MqttError.MqttError, Scope.Scope>

const messagesBody = Effect.fnUntraced(function*(
  client: ClientImpl,
  options: Omit<SubscribeOptions, "qos"> | undefined
) {
  const subscriber = yield* LocalSubscriptions.makeSubscriber(undefined, options, false)
  client.local.add(subscriber)
  yield* Scope.addFinalizerExit(yield* Effect.scope, () => release(client, subscriber))
  return Stream.fromQueue(subscriber.queue)
})

const disconnectBody = (client: ClientImpl, options?: DisconnectOptions): Effect.Effect<void> =>
  Effect.uninterruptible(disconnectSteps(client, options))

const disconnectSteps = Effect.fnUntraced(function*(client: ClientImpl, options: DisconnectOptions | undefined) {
  if (client.closed) return
  client.closing = true
  if (options?.force !== true) {
    yield* Effect.timeoutOption(client.session.awaitIdle, options?.timeout ?? Duration.seconds(5))
    yield* client.sendDisconnect
  }
  client.closed = true
  if (client.supervisor !== undefined) yield* Fiber.interrupt(client.supervisor)
  // The supervisor closes the link it runs; this closes one it had not started running yet.
  if (client.currentLinkScope !== undefined) yield* Scope.close(client.currentLinkScope, Exit.void)
  yield* client.session.dropAll(clientClosed)
  // Completions not yet stored (a store keeps what is still unacknowledged, for the next run).
  yield* client.session.flush.pipe(Effect.catch((error) => Effect.logWarning(`session store: ${error.message}`)))
  for (const subscriber of client.local.subscribers) yield* Queue.end(subscriber.queue)
  client.emit({ _tag: "Closed" })
  yield* client.setStatus({ _tag: "Closed" })
})

/**
 * Builds a client from the Connection, Keepalive and Session services, in the current scope.
 *
 * @since 0.1.0
 */
export const makeNoDeps = (
  options: MakeOptions = {}
): Effect.Effect<
  MqttClient["Service"],
  MqttError.MqttError,
  Connection.Connection | Keepalive.Keepalive | Session.Session | Scope.Scope
> =>
  Effect.gen(function*() {
    return yield* makeClient(yield* Connection.Connection, yield* Keepalive.Keepalive, yield* Session.Session, options)
  })

/**
 * `makeNoDeps` with its services given: `make` passes them directly rather than providing them, so a client's fibers
 * run in the caller's context, not in three more layers of it made for each client.
 */
const makeClient = (
  connection: Connection.Connection["Service"],
  keepalive: Keepalive.Keepalive["Service"],
  session: Session.Session["Service"],
  options: MakeOptions
): Effect.Effect<MqttClient["Service"], MqttError.MqttError, Scope.Scope> =>
  Effect.gen(function*() {
    const clientScope = yield* Effect.scope
    const client = new ClientImpl(
      connection,
      keepalive,
      session,
      options,
      clientScope,
      yield* Scope.fork(clientScope),
      yield* Effect.context<never>()
    )
    const resolved = client.resolved

    // A stored session is restored before the first connection, which resends what it holds.
    const store = options.sessionStore !== undefined
      ? Option.some(options.sessionStore)
      : yield* Effect.serviceOption(SessionStore.SessionStore)
    if (Option.isSome(store)) {
      const journal = yield* store.value.open(resolved.clientId)
      const count = yield* session.useJournal(journal)
      if (count > 0) yield* Effect.logDebug(`restored ${count} unacknowledged operations from the session store`)
      client.restored = journal.snapshot.flights.flatMap((flight) => (flight._tag === "Publish" ? [flight.packet] : []))
    }

    // The first connection happens while the client is built: its failure is the build's failure.
    const first = yield* (options.retryFirstConnect === false ? client.connectOnce : connectWithRetry(client, undefined))
      .pipe(Effect.tapError((error) => client.setStatus({ _tag: "Disconnected", error })))
    yield* attach(client, first.link)
    client.currentLinkScope = first.linkScope
    client.supervisor = yield* Effect.forkIn(supervise(client, first), clientScope, { startImmediately: true })

    // The effect is made when the scope closes: until then the client holds one closure for it, not the effect.
    yield* Scope.addFinalizerExit(
      clientScope,
      () => disconnectBody(client, { timeout: options.disconnectTimeout ?? Duration.seconds(5) })
    )
    return MqttClient.of(new ClientService(client))
  })

/**
 * The client layer over the Connection, Keepalive and Session services.
 *
 * @since 0.1.0
 */
export const layerNoDeps = (
  options: Omit<Options, "url"> = {}
): Layer.Layer<MqttClient, MqttError.MqttError, Connection.Connection | Keepalive.Keepalive | Session.Session> =>
  Layer.effect(MqttClient)(makeNoDeps(options))

/**
 * The client over any `Socket.Socket` (custom transports, tests): the URL still supplies the options.
 *
 * @since 0.1.0
 */
export const layerSocket = (options: Options): Layer.Layer<MqttClient, MqttError.MqttError, Socket.Socket> =>
  layerNoDeps(options).pipe(
    Layer.provide([
      Layer.unwrap(Effect.map(resolve(options), (resolved) => Connection.layerSocket(resolved))),
      Keepalive.layer,
      Session.layer(options)
    ])
  )

/** Random bytes are only needed to generate a client id. */
const noRandom = new Uint8Array(6)

const resolve = (options: Options) =>
  Effect.fromResult(
    ConnectOptions.resolve(options, options.clientId === undefined ? crypto.getRandomValues(new Uint8Array(6)) : noRandom)
  )

/**
 * The client for a broker URL over the Node transport it selects; connects on build.
 *
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<MqttClient, MqttError.MqttError> =>
  layerNoDeps(options).pipe(
    Layer.provide([NodeTransport.layerConnection(options), Keepalive.layer, Session.layer(options)])
  )

/**
 * A client in the current scope (several clients in one program: tests, bridges); closing the scope disconnects.
 *
 * @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<MqttClient["Service"], MqttError.MqttError, Scope.Scope> =>
  Effect.gen(function*() {
    // The same services as `layer`, built directly: no layer graph per client (1,000 clients in one process).
    const resolved = yield* resolve(options)
    const socket = yield* NodeTransport.make(resolved)
    return yield* makeClient(Connection.make(socket, resolved), Keepalive.make, Session.make(options), options)
  })

// ---------------------------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------------------------

/**
 * The options read from configuration (environment variables by default): `MQTT_URL` (required), `MQTT_CLIENT_ID`,
 * `MQTT_USERNAME`, `MQTT_PASSWORD` (kept `Redacted`), `MQTT_CLEAN_SESSION`, `MQTT_KEEPALIVE` (seconds),
 * `MQTT_CONNECT_TIMEOUT` (a duration such as `10 seconds`). Missing or malformed values fail with `ConfigError`.
 *
 * @since 0.1.0
 */
export const config: Config.Config<Options> = Config.all({
  url: Config.String("MQTT_URL"),
  clientId: Config.option(Config.String("MQTT_CLIENT_ID")),
  username: Config.option(Config.String("MQTT_USERNAME")),
  password: Config.option(Config.Redacted("MQTT_PASSWORD")),
  cleanSession: Config.option(Config.Boolean("MQTT_CLEAN_SESSION")),
  keepalive: Config.option(Config.Int("MQTT_KEEPALIVE")),
  connectTimeout: Config.option(Config.Duration("MQTT_CONNECT_TIMEOUT"))
}).pipe(
  Config.map((c): Options => ({
    url: c.url,
    ...(Option.isSome(c.clientId) ? { clientId: c.clientId.value } : {}),
    ...(Option.isSome(c.username) ? { username: c.username.value } : {}),
    ...(Option.isSome(c.password) ? { password: c.password.value } : {}),
    ...(Option.isSome(c.cleanSession) ? { cleanSession: c.cleanSession.value } : {}),
    ...(Option.isSome(c.keepalive) ? { keepalive: c.keepalive.value } : {}),
    ...(Option.isSome(c.connectTimeout) ? { connectTimeout: c.connectTimeout.value } : {})
  }))
)

/**
 * The client layer with its options read from configuration (see `config`); `overrides` are applied on top.
 *
 * @since 0.1.0
 */
export const layerConfig = (
  overrides: Partial<Options> = {}
): Layer.Layer<MqttClient, MqttError.MqttError | Config.ConfigError> =>
  Layer.unwrap(
    Effect.gen(function*() {
      const options = yield* config
      return layer({ ...options, ...overrides })
    })
  )

// ---------------------------------------------------------------------------------------------------------------------
// Schema payloads
// ---------------------------------------------------------------------------------------------------------------------

/**
 * Publishes a value as JSON, encoded with `schema`. A value the schema cannot encode fails with `PayloadInvalid`
 * before anything is sent.
 *
 * @since 0.1.0
 */
export const publishJson = <S extends Schema.Top>(
  schema: S,
  input: Omit<PublishInput, "payload"> & { readonly value: S["Type"] }
): Effect.Effect<number | undefined, MqttError.MqttError, MqttClient | S["EncodingServices"]> =>
  Effect.gen(function*() {
    const client = yield* MqttClient
    const json = yield* Schema.encodeEffect(Schema.fromJsonString(Schema.toCodecJson(schema)))(input.value).pipe(
      Effect.mapError((error) =>
        MqttError.make(new MqttError.PayloadInvalid({ topic: input.topic, direction: "encode", detail: error.message }))
      )
    )
    return yield* client.publish({ ...input, payload: json })
  })

/**
 * A message whose payload was decoded by a schema.
 *
 * @since 0.1.0
 */
export interface JsonMessage<A> {
  readonly value: A
  readonly message: Message
}

/**
 * Subscribes and decodes each payload as JSON with `schema`. Each element is a `Result`: the decoded message, or
 * `PayloadInvalid` naming the topic — one bad payload does not end the subscription. With `onInvalid: "fail"` the
 * first bad payload fails the stream instead.
 *
 * @since 0.1.0
 */
export const subscribeJson = <S extends Schema.Top>(
  filters: Filters,
  schema: S,
  options?: SubscribeOptions & { readonly onInvalid?: "emit" | "fail" | undefined }
): Stream.Stream<
  Result.Result<JsonMessage<S["Type"]>, MqttError.MqttError>,
  MqttError.MqttError,
  MqttClient | S["DecodingServices"]
> => {
  const decode = Schema.decodeUnknownEffect(Schema.fromJsonString(Schema.toCodecJson(schema)))
  const text = new TextDecoder()
  return Stream.unwrap(Effect.map(Effect.service(MqttClient), (client) => client.subscribe(filters, options))).pipe(
    Stream.mapEffect((message) =>
      decode(text.decode(message.payload)).pipe(
        Effect.map((value): Result.Result<JsonMessage<S["Type"]>, MqttError.MqttError> =>
          Result.succeed({ value, message })
        ),
        Effect.catch((error) => {
          const invalid = MqttError.make(
            new MqttError.PayloadInvalid({ topic: message.topic, direction: "decode", detail: error.message })
          )
          return options?.onInvalid === "fail" ? Effect.fail(invalid) : Effect.succeed(Result.fail(invalid))
        })
      )
    )
  )
}
