/**
 * The test kit: an in-memory MQTT 3.1.1 broker (`Broker`) and a client of it that implements the whole `MqttClient`
 * service, so application code that depends on `MqttClient` can be unit-tested without sockets, brokers or timers.
 *
 * `layer(options)` provides a fresh broker and one client connected to it; `makeBroker` and `makeClient(broker,
 * options)` give several clients on one broker (a service and a probe, a publisher and a subscriber). The broker keeps
 * the 3.1.1 rules an application can observe: topic matching with `+` and `#`, filters starting with a wildcard never
 * matching `$` topics [MQTT-4.7.2-1]; retained messages (delivered to new subscriptions with RETAIN 1, cleared by an
 * empty retained payload); delivery at min(published, granted) QoS [MQTT-3.8.4-6], one copy per client at the highest
 * QoS of its overlapping subscriptions [MQTT-3.3.5-1]; wills, published when a connection is lost (`crash`) or the
 * client closes with `force`, never after a graceful disconnect; persistent sessions keyed by client id, which keep
 * subscriptions and queue QoS 1 and 2 messages while the client is away; session takeover by a second connection with
 * the same client id; refusal hooks (`authenticate`: a CONNACK return code; `authorizeSubscribe`: SUBACK 0x80 or a
 * lower QoS); and an inspection API (published log, retained map, subscriptions, sessions, connected clients, waits).
 *
 * The client validates exactly as the real one (same reasons, same Paho codes), runs subscriptions as bounded `Stream`s
 * with the same buffer strategies, keeps the same status and events, queues publishes while disconnected, and after a
 * `crash` reconnects by its `reconnect` schedule (default: exponential from 1 second, capped at 30 seconds, without
 * jitter, so `TestClock.adjust` drives it) and subscribes again when the broker kept no session. Everything is
 * synchronous and deterministic: a publish is routed, and delivered to every stream with room, before it returns;
 * nothing sleeps except the reconnect schedule. What the kit does not model: the wire (packets, keepalive, `Ping` and
 * `Pong` events, packet size limits of the transport), in-flight windows (acknowledgements are immediate), and
 * broker-side QoS 2 retransmission.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as LocalSubscriptions from "../Client/LocalSubscriptions.ts"
import * as MqttClient from "../Client/MqttClient.ts"
import * as Reconnect from "../Client/Reconnect.ts"
import * as SessionState from "../Client/SessionState.ts"
import type * as Packet from "../Codec/Packet.ts"
import * as Topic from "../Codec/Topic.ts"
import * as Validate from "../Codec/Validate.ts"
import * as ConnectOptions from "../Connection/ConnectOptions.ts"
import * as MqttError from "../Errors/MqttError.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------------------------------

/**
 * A CONNACK return code: 0 accepted, 1..5 refused (§3.2.2.3).
 *
 * @since 0.1.0
 */
export type ConnackReturnCode = 0 | 1 | 2 | 3 | 4 | 5

/**
 * What a client sent in CONNECT, as `authenticate` sees it.
 *
 * @since 0.1.0
 */
export interface ConnectRequest {
  readonly clientId: string
  readonly username: string | undefined
  readonly password: Uint8Array | undefined
  readonly cleanSession: boolean
  readonly will: Packet.Will | undefined
}

/**
 * Options of an in-memory broker.
 *
 * @since 0.1.0
 */
export interface BrokerOptions {
  /**
   * Decides each CONNECT: `true` or `0` accepts; `false` refuses with 5 (not authorized); 1..5 refuses with that
   * return code, which the client reports as `ConnectionRefused` (retried by its schedule only for 3).
   */
  readonly authenticate?: ((request: ConnectRequest) => boolean | ConnackReturnCode) | undefined
  /**
   * Decides each filter of a SUBSCRIBE: `true` grants the requested QoS, `false` refuses it (SUBACK 0x80, which the
   * client reports as `SubscribeRejected`), a QoS grants at most that.
   */
  readonly authorizeSubscribe?:
    | ((clientId: string, subscription: Packet.Subscription) => boolean | Packet.QoS)
    | undefined
  /** The highest QoS the broker grants (default 2). */
  readonly maximumQos?: Packet.QoS | undefined
  /**
   * Messages queued per persistent session while its client is away (default 1000); when full, new messages for
   * that session are dropped (as Mosquitto's `max_queued_messages`).
   */
  readonly maxQueuedMessages?: number | undefined
}

/**
 * A message the broker received, in the published log.
 *
 * - `origin`: `"client"` (a PUBLISH), `"will"` (a will the broker published for `clientId`), `"broker"` (`publish`).
 *
 * @since 0.1.0
 */
export interface PublishedMessage {
  readonly origin: "client" | "will" | "broker"
  /** The client that published it (or whose will it is); `undefined` for `Broker.publish`. */
  readonly clientId: string | undefined
  readonly topic: string
  readonly payload: Uint8Array
  readonly qos: Packet.QoS
  readonly retain: boolean
}

/**
 * A retained message, as the broker stores it.
 *
 * @since 0.1.0
 */
export interface RetainedMessage {
  readonly topic: string
  readonly payload: Uint8Array
  readonly qos: Packet.QoS
}

/**
 * One subscription held by the broker for a session (connected or not).
 *
 * @since 0.1.0
 */
export interface SubscriptionInfo {
  readonly clientId: string
  readonly topicFilter: string
  /** The granted QoS. */
  readonly qos: Packet.QoS
}

/**
 * A client connected now.
 *
 * @since 0.1.0
 */
export interface ClientInfo {
  readonly clientId: string
  readonly cleanSession: boolean
  readonly username: string | undefined
  readonly will: Packet.Will | undefined
}

/**
 * A session held by the broker: every connected client has one; a persistent session outlives its connection.
 *
 * @since 0.1.0
 */
export interface SessionInfo {
  readonly clientId: string
  readonly cleanSession: boolean
  readonly connected: boolean
  readonly subscriptions: ReadonlyArray<Packet.Subscription>
  /** QoS 1 and 2 messages queued for the client while it is away, oldest first. */
  readonly queued: ReadonlyArray<MqttClient.Message>
}

/**
 * The in-memory broker: its inspection API and the faults a test can cause.
 *
 * @since 0.1.0
 */
export class Broker extends Context.Service<Broker, {
  /** Every PUBLISH the broker received, oldest first: from clients, wills, and `publish`. */
  readonly published: Effect.Effect<ReadonlyArray<PublishedMessage>>
  /** The retained messages, by topic. */
  readonly retained: Effect.Effect<ReadonlyMap<string, RetainedMessage>>
  /** Every subscription of every session (persistent sessions of absent clients included), by client then filter. */
  readonly subscriptions: Effect.Effect<ReadonlyArray<SubscriptionInfo>>
  /** The clients connected now. */
  readonly clients: Effect.Effect<ReadonlyArray<ClientInfo>>
  /** Every session the broker holds. */
  readonly sessions: Effect.Effect<ReadonlyArray<SessionInfo>>
  /**
   * Publishes as the broker itself (a `$SYS` topic, a message from a device the test does not model). Validated like
   * a client's publish: `BadQos`, `InvalidTopic`, `BadUtf8String`, `TopicnameTruncated`.
   */
  readonly publish: (input: MqttClient.PublishInput) => Effect.Effect<void, MqttError.MqttError>
  /**
   * Cuts a client's connection as a network failure would: the broker publishes its will, keeps its session if it is
   * persistent (queueing QoS 1 and 2 messages from now on), and the client reconnects by its schedule. Returns
   * whether the client was connected.
   */
  readonly crash: (clientId: string) => Effect.Effect<boolean>
  /**
   * Waits for the first message of the published log (earlier ones included) that satisfies `predicate`. Waits on
   * the broker, not on a clock: bound it yourself if it may never come.
   */
  readonly awaitPublished: (predicate: (message: PublishedMessage) => boolean) => Effect.Effect<PublishedMessage>
  /** Waits until a session (of `clientId`, if given) holds a subscription to exactly `topicFilter`. */
  readonly awaitSubscribed: (topicFilter: string, clientId?: string) => Effect.Effect<SubscriptionInfo>
  /** Waits until no session (of `clientId`, if given) holds a subscription to `topicFilter`. */
  readonly awaitUnsubscribed: (topicFilter: string, clientId?: string) => Effect.Effect<void>
  /** Waits until `clientId` is connected. */
  readonly awaitConnected: (clientId: string) => Effect.Effect<ClientInfo>
}>()("effect-mqtt/Testing/MqttTest/Broker") {}

/**
 * Options of a test client: those of `MqttClient` (the URL is optional and never dialed). Transport options (TLS,
 * keepalive, timeouts, packet size) are validated and otherwise ignored; `maxInflight`, `onInflightFull` and
 * `disconnectTimeout` have no effect (acknowledgements are immediate, so nothing is ever in flight); `sessionStore` is
 * ignored (`restored` is always empty: the broker's persistent sessions are modelled, a client-side store is not).
 *
 * @since 0.1.0
 */
export interface ClientOptions extends Omit<MqttClient.Options, "url"> {
  /** Default `mqtt://mqtt-test`; its credentials, if any, are used as with the real client. */
  readonly url?: string | undefined
}

/**
 * Options of `layer`: the client's, and the broker's under `broker`.
 *
 * @since 0.1.0
 */
export interface LayerOptions extends ClientOptions {
  readonly broker?: BrokerOptions | undefined
}

// ---------------------------------------------------------------------------------------------------------------------
// Broker internals
// ---------------------------------------------------------------------------------------------------------------------

/** What the broker calls on the client side of a connection. */
interface Peer {
  /** New messages are in the connection's outbox. */
  readonly wake: () => void
  /** The broker closed the connection without the client asking (crash, takeover). */
  readonly closed: (error: MqttError.MqttError) => Effect.Effect<void>
}

/** A client's connection as the client uses it. */
interface Link {
  readonly sessionPresent: boolean
  /** Messages sent to the client and not yet taken by it, oldest first. */
  readonly outbox: Array<Packet.Publish>
  readonly publish: (message: Omit<PublishedMessage, "origin" | "clientId">) => void
  readonly subscribe: (subscriptions: ReadonlyArray<Packet.Subscription>) => Array<Packet.SubackReturnCode>
  readonly unsubscribe: (topicFilters: ReadonlyArray<string>) => void
  /** DISCONNECT: the will is discarded. */
  readonly disconnect: () => void
  /** Closed by the client without DISCONNECT: the will is published. */
  readonly close: () => void
}

interface Connection {
  readonly session: Session
  readonly request: ConnectRequest
  readonly peer: Peer
  readonly outbox: Array<Packet.Publish>
  open: boolean
}

interface Session {
  readonly clientId: string
  readonly cleanSession: boolean
  readonly subscriptions: Map<string, Packet.QoS>
  queued: Array<Packet.Publish>
  connection: Connection | undefined
  lastPacketId: number
}

interface Internal {
  readonly connect: (request: ConnectRequest, peer: Peer) => Effect.Effect<Link, MqttError.MqttError>
  /** 6 bytes for `ConnectOptions.resolve`: a counter, so generated client ids are deterministic. */
  readonly nextClientIdBytes: () => Uint8Array
}

/** The internals of each broker, kept out of its public service. */
const internals = new WeakMap<Broker["Service"], Internal>()

const encoder = new TextEncoder()

const minQos = (a: Packet.QoS, b: Packet.QoS): Packet.QoS => (a < b ? a : b)

const brokerUrl = "mqtt-test://broker"

const connectionLost = (detail: string) =>
  MqttError.make(new MqttError.TransportError({ operation: "read", url: brokerUrl, detail }))

/** A PUBLISH to a client: DUP 0, a packet id exactly when QoS > 0 [MQTT-2.3.1-5]. */
const publishPacket = (
  topic: string,
  payload: Uint8Array,
  qos: Packet.QoS,
  retain: boolean,
  packetId: number | undefined
): Packet.Publish =>
  qos === 0 || packetId === undefined
    ? { _tag: "Publish", topic, payload, qos, retain, dup: false }
    : { _tag: "Publish", topic, payload, qos, retain, dup: false, packetId }

/**
 * Checks a publish as the real client does, in the same order: QoS, topic name, payload type, then the packet limits.
 */
const validatePublish = (
  topic: string,
  payload: unknown,
  qos: unknown,
  retain: unknown
): MqttError.MqttError | undefined =>
  Validate.qos(qos, "publish") ??
    Topic.validateTopicName(topic) ??
    (payload instanceof Uint8Array
      ? Validate.packet(
        qos === 0
          ? { _tag: "Publish", topic, payload, qos, retain: retain as boolean, dup: false }
          : {
            _tag: "Publish",
            topic,
            payload,
            qos: qos as Packet.QoS,
            retain: retain as boolean,
            dup: false,
            packetId: 1
          }
      )
      : MqttError.make(
        new MqttError.BadStructure({ field: "payload", value: typeof payload, detail: "must be a Uint8Array" })
      ))

/**
 * Makes an in-memory broker. Brokers are independent: each test can have its own.
 *
 * @since 0.1.0
 */
export const makeBroker = (options: BrokerOptions = {}): Effect.Effect<Broker["Service"]> =>
  Effect.sync(() => makeBrokerUnsafe(options))

const makeBrokerUnsafe = (options: BrokerOptions): Broker["Service"] => {
  const maximumQos = options.maximumQos ?? 2
  const maxQueued = Math.max(0, options.maxQueuedMessages ?? 1000)
  const sessions = new Map<string, Session>()
  const retained = new Map<string, RetainedMessage>()
  const published: Array<PublishedMessage> = []
  /** Waits on broker state, checked after every change; a check returning true is done. */
  const waiters = new Set<() => boolean>()
  let generatedIds = 0
  let assignedIds = 0

  const changed = () => {
    for (const waiter of [...waiters]) if (waiter()) waiters.delete(waiter)
  }

  const waitFor = <A>(find: () => A | undefined): Effect.Effect<A> =>
    Effect.callback<A>((resume) => {
      const found = find()
      if (found !== undefined) return resume(Effect.succeed(found))
      const waiter = () => {
        const value = find()
        if (value === undefined) return false
        resume(Effect.succeed(value))
        return true
      }
      waiters.add(waiter)
      return Effect.sync(() => {
        waiters.delete(waiter)
      })
    })

  const nextPacketId = (session: Session) => {
    session.lastPacketId = session.lastPacketId >= 65535 ? 1 : session.lastPacketId + 1
    return session.lastPacketId
  }

  /** Sends a message to a session: to its connection's outbox, or to its queue while its client is away. */
  const send = (
    session: Session,
    message: { readonly topic: string; readonly payload: Uint8Array },
    qos: Packet.QoS,
    retain: boolean,
    woken: Set<Connection>
  ) => {
    const connection = session.connection
    if (connection !== undefined) {
      const packetId = qos === 0 ? undefined : nextPacketId(session)
      connection.outbox.push(publishPacket(message.topic, message.payload, qos, retain, packetId))
      woken.add(connection)
    } else if (!session.cleanSession && qos > 0 && session.queued.length < maxQueued) {
      // [MQTT-3.1.2-5] QoS 1 and 2 messages are stored for an absent client of a persistent session.
      session.queued.push(publishPacket(message.topic, message.payload, qos, retain, nextPacketId(session)))
    }
  }

  const wakeAll = (woken: Set<Connection>) => {
    for (const connection of woken) if (connection.open) connection.peer.wake()
  }

  /** Routes a received PUBLISH: logs it, updates the retained store, sends one copy to every matching session. */
  const route = (message: PublishedMessage) => {
    published.push(message)
    if (message.retain) {
      // [MQTT-3.3.1-10] [MQTT-3.3.1-11] an empty retained payload removes the retained message; [MQTT-3.3.1-5]
      // otherwise it replaces it.
      if (message.payload.length === 0) retained.delete(message.topic)
      else retained.set(message.topic, { topic: message.topic, payload: message.payload, qos: message.qos })
    }
    const woken = new Set<Connection>()
    for (const session of sessions.values()) {
      // [MQTT-3.3.5-1] one copy per client, at the highest QoS of its matching subscriptions.
      let granted = -1
      for (const [topicFilter, qos] of session.subscriptions) {
        if (qos > granted && Topic.matches(topicFilter, message.topic)) granted = qos
      }
      if (granted < 0) continue
      // [MQTT-3.8.4-6] delivered at min(published, granted); [MQTT-3.3.1-9] RETAIN 0 to existing subscriptions.
      send(session, message, minQos(message.qos, granted as Packet.QoS), false, woken)
    }
    changed()
    wakeAll(woken)
  }

  /** Ends a connection: the session stays if persistent (with the unsent messages back in its queue). */
  const endConnection = (connection: Connection, publishWill: boolean) => {
    if (!connection.open) return
    connection.open = false
    const session = connection.session
    if (session.connection === connection) session.connection = undefined
    if (session.cleanSession) {
      // [MQTT-3.1.2-6] a clean session lasts as long as its connection.
      if (sessions.get(session.clientId) === session) sessions.delete(session.clientId)
    } else {
      const unsent = connection.outbox.filter((message) => message.qos > 0)
      session.queued = [...unsent.map((m) => (m.dup ? m : { ...m, dup: true })), ...session.queued]
    }
    connection.outbox.length = 0
    const will = connection.request.will
    // [MQTT-3.1.2-8] the will is published when the connection is lost; [MQTT-3.1.2-10] discarded on DISCONNECT.
    if (publishWill && will !== undefined) {
      route({
        origin: "will",
        clientId: session.clientId,
        topic: will.topic,
        payload: will.payload.slice(),
        qos: will.qos,
        retain: will.retain
      })
    } else {
      changed()
    }
  }

  const subscribe = (session: Session, subscriptions: ReadonlyArray<Packet.Subscription>) => {
    const codes: Array<Packet.SubackReturnCode> = []
    const accepted: Array<Packet.Subscription> = []
    for (const subscription of subscriptions) {
      const decision = options.authorizeSubscribe?.(session.clientId, subscription) ?? true
      if (decision === false) {
        codes.push(0x80)
        continue
      }
      const cap = decision === true ? 2 : decision
      const granted = minQos(minQos(subscription.qos, cap), maximumQos)
      // [MQTT-3.8.4-3] a subscription to the same filter replaces the previous one.
      session.subscriptions.set(subscription.topicFilter, granted)
      accepted.push({ topicFilter: subscription.topicFilter, qos: granted })
      codes.push(granted)
    }
    // [MQTT-3.3.1-6] [MQTT-3.3.1-8] retained messages matching the new filters, with RETAIN 1, once per topic.
    const woken = new Set<Connection>()
    for (const message of retained.values()) {
      let granted = -1
      for (const { topicFilter, qos } of accepted) {
        if (qos > granted && Topic.matches(topicFilter, message.topic)) granted = qos
      }
      if (granted >= 0) send(session, message, minQos(message.qos, granted as Packet.QoS), true, woken)
    }
    changed()
    wakeAll(woken)
    return codes
  }

  const connect = (request: ConnectRequest, peer: Peer): Effect.Effect<Link, MqttError.MqttError> =>
    Effect.gen(function*() {
      const decision = options.authenticate?.(request) ?? true
      const returnCode = decision === true ? 0 : decision === false ? 5 : decision
      if (returnCode !== 0) {
        return yield* Effect.fail(MqttError.make(new MqttError.ConnectionRefused({ returnCode })))
      }
      // [MQTT-3.1.3-6] an empty client id (clean session only) gets an id from the broker.
      const clientId = request.clientId === "" ? `mqtt-test-assigned-${++assignedIds}` : request.clientId
      const previous = sessions.get(clientId)
      const taken = previous?.connection
      if (taken !== undefined) {
        // [MQTT-3.1.4-2] a second connection with the same client id takes over: the first one is closed.
        endConnection(taken, true)
        yield* taken.peer.closed(connectionLost("another connection with the same client id took over the session"))
      }
      // [MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-3.2.2-3] session present only when a persistent session is resumed.
      const existing = sessions.get(clientId)
      const sessionPresent = !request.cleanSession && existing !== undefined
      const session: Session = sessionPresent
        ? existing!
        : {
          clientId,
          cleanSession: request.cleanSession,
          subscriptions: new Map(),
          queued: [],
          connection: undefined,
          lastPacketId: 0
        }
      sessions.set(clientId, session)
      // Queued messages follow CONNACK: they wait in the outbox for the client to attach the link.
      const connection: Connection = { session, request, peer, outbox: session.queued, open: true }
      session.queued = []
      session.connection = connection
      changed()
      const link: Link = {
        sessionPresent,
        outbox: connection.outbox,
        publish: (message) => {
          if (!connection.open) return
          route({ origin: "client", clientId, ...message, payload: message.payload.slice() })
        },
        subscribe: (subscriptions) => (connection.open ? subscribe(session, subscriptions) : []),
        unsubscribe: (topicFilters) => {
          if (!connection.open) return
          for (const topicFilter of topicFilters) session.subscriptions.delete(topicFilter)
          changed()
        },
        disconnect: () => endConnection(connection, false),
        close: () => endConnection(connection, true)
      }
      return link
    })

  const service = Broker.of({
    published: Effect.sync(() => [...published]),
    retained: Effect.sync(() => new Map(retained)),
    subscriptions: Effect.sync(() => {
      const all: Array<SubscriptionInfo> = []
      for (const session of sessions.values()) {
        for (const [topicFilter, qos] of session.subscriptions) {
          all.push({ clientId: session.clientId, topicFilter, qos })
        }
      }
      return all
    }),
    clients: Effect.sync(() => connectedClients()),
    sessions: Effect.sync(() =>
      [...sessions.values()].map((session): SessionInfo => ({
        clientId: session.clientId,
        cleanSession: session.cleanSession,
        connected: session.connection !== undefined,
        subscriptions: [...session.subscriptions].map(([topicFilter, qos]) => ({ topicFilter, qos })),
        queued: [...session.queued]
      }))
    ),
    publish: (input) =>
      Effect.suspend(() => {
        const qos = input.qos ?? 0
        const retain = input.retain ?? false
        const payload = typeof input.payload === "string" ? encoder.encode(input.payload) : input.payload
        const invalid = validatePublish(input.topic, payload, qos, retain)
        if (invalid !== undefined) return Effect.fail(invalid)
        route({ origin: "broker", clientId: undefined, topic: input.topic, payload: payload.slice(), qos, retain })
        return Effect.void
      }),
    crash: (clientId) =>
      Effect.suspend(() => {
        const connection = sessions.get(clientId)?.connection
        if (connection === undefined) return Effect.succeed(false)
        endConnection(connection, true)
        return Effect.as(connection.peer.closed(connectionLost("the connection was lost (MqttTest crash)")), true)
      }),
    awaitPublished: (predicate) => waitFor(() => published.find(predicate)),
    awaitSubscribed: (topicFilter, clientId) =>
      waitFor(() => {
        for (const session of sessions.values()) {
          if (clientId !== undefined && session.clientId !== clientId) continue
          const qos = session.subscriptions.get(topicFilter)
          if (qos !== undefined) return { clientId: session.clientId, topicFilter, qos }
        }
        return undefined
      }),
    awaitUnsubscribed: (topicFilter, clientId) =>
      waitFor(() => {
        for (const session of sessions.values()) {
          if (clientId !== undefined && session.clientId !== clientId) continue
          if (session.subscriptions.has(topicFilter)) return undefined
        }
        return true
      }).pipe(Effect.asVoid),
    awaitConnected: (clientId) => waitFor(() => connectedClients().find((client) => client.clientId === clientId))
  })

  const connectedClients = (): Array<ClientInfo> => {
    const all: Array<ClientInfo> = []
    for (const session of sessions.values()) {
      const connection = session.connection
      if (connection === undefined) continue
      all.push({
        clientId: session.clientId,
        cleanSession: session.cleanSession,
        username: connection.request.username,
        will: connection.request.will
      })
    }
    return all
  }

  internals.set(service, {
    connect,
    nextClientIdBytes: () => {
      let n = ++generatedIds
      const bytes = new Uint8Array(6)
      for (let i = 5; i >= 0; i--) {
        bytes[i] = n & 0xff
        n = Math.floor(n / 256)
      }
      return bytes
    }
  })
  return service
}

// ---------------------------------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------------------------------

/** An operation made while disconnected, done in order when the client connects again. */
interface OfflineOperation {
  readonly publish: boolean
  /** Filters a SUBSCRIBE carries (not subscribed again by the resubscribe after it). */
  readonly filters: ReadonlyArray<string>
  readonly run: (link: Link) => void
  readonly fail: (error: MqttError.MqttError) => void
}

/** The default reconnect schedule: the real client's, without jitter, so a `TestClock` drives it exactly. */
const defaultReconnect: Schedule.Schedule<unknown, MqttError.MqttError> = Schedule.exponential("1 second").pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(30))))
)

/**
 * A client of an in-memory broker, in the current scope: connects at once (failing like the real client: invalid
 * options, `ConnectionRefused` from `authenticate`), and disconnects gracefully when the scope closes.
 *
 * @since 0.1.0
 */
export const makeClient = (
  broker: Broker["Service"],
  options: ClientOptions = {}
): Effect.Effect<MqttClient.MqttClient["Service"], MqttError.MqttError, Scope.Scope> =>
  Effect.gen(function*() {
    const internal = internals.get(broker)
    if (internal === undefined) return yield* Effect.die(new Error("MqttTest.makeClient: not a MqttTest broker"))
    const random = options.clientId === undefined ? internal.nextClientIdBytes() : new Uint8Array(6)
    const resolved = yield* Effect.fromResult(
      ConnectOptions.resolve({ ...options, url: options.url ?? "mqtt://mqtt-test" }, random)
    )
    const request: ConnectRequest = {
      clientId: resolved.clientId,
      username: resolved.username,
      password: resolved.password === undefined ? undefined : ConnectOptions.connectPacket(resolved).password,
      cleanSession: resolved.cleanSession,
      will: resolved.will
    }
    const clientScope = yield* Effect.scope
    const status = yield* SubscriptionRef.make<MqttClient.Status>({ _tag: "Connecting" })
    const events = yield* PubSub.sliding<MqttClient.Event>(1024)
    const schedule = options.reconnect === false ? Schedule.recurs(0) : (options.reconnect ?? defaultReconnect)
    const maxBuffered = options.maxBufferedMessages ?? 65535
    const bufferQos0 = options.bufferQos0 ?? false
    const unsubscribeOnEnd = options.unsubscribeOnEnd ?? resolved.cleanSession
    const local = new LocalSubscriptions.LocalSubscriptions(
      options.unclaimedBufferSize ?? (resolved.cleanSession ? 0 : 1000)
    )
    let offline: Array<OfflineOperation> = []
    let link: Link | undefined
    let closing = false
    let closed = false
    /** Set when the reconnect schedule gave up: operations fail from then on. */
    let offlineError: MqttError.MqttError | undefined
    let lastPacketId = 0
    /** A delivery waiting for room in a full `"suspend"` buffer; the reader fiber waits for it. */
    let blocked: Effect.Effect<void> | undefined
    const readerWake = yield* Queue.unbounded<void>()
    /** Connections the broker closed, for the supervisor. */
    const drops = yield* Queue.unbounded<MqttError.MqttError>()

    const emit = (event: MqttClient.Event) => {
      PubSub.publishUnsafe(events, event)
    }
    const setStatus = (next: MqttClient.Status) => SubscriptionRef.set(status, next)
    const closedError = (operation: string) => MqttError.make(new MqttError.Disconnected({ operation }))
    const allocatePacketId = () => {
      lastPacketId = lastPacketId >= 65535 ? 1 : lastPacketId + 1
      return lastPacketId
    }

    // ----- delivery --------------------------------------------------------------------------------------------------

    /**
     * Takes what the broker sent, synchronously, until a suspending buffer is full; the reader fiber then waits for
     * room and carries on. A message is taken (acknowledged) before it is delivered, so it is delivered exactly once.
     */
    const drain = () => {
      const current = link
      if (current === undefined || blocked !== undefined) return
      const outbox = current.outbox
      while (outbox.length > 0) {
        const wait = local.deliver(outbox.shift()!)
        if (wait !== undefined) {
          blocked = wait
          Queue.offerUnsafe(readerWake, undefined)
          return
        }
      }
    }

    const reader = Effect.gen(function*() {
      while (true) {
        yield* Queue.take(readerWake)
        const wait = blocked
        if (wait === undefined) continue
        yield* wait
        blocked = undefined
        drain()
      }
    })

    // ----- connection ------------------------------------------------------------------------------------------------

    const rejectFilter = (topicFilter: string) =>
      Effect.gen(function*() {
        const error = MqttError.make(new MqttError.SubscribeRejected({ topicFilter }))
        local.active.delete(topicFilter)
        for (const subscriber of local.subscribers) {
          if (subscriber.filters?.includes(topicFilter)) yield* Queue.fail(subscriber.queue, error)
        }
      })

    const connectOnce = Effect.suspend(() => {
      let self: Link | undefined
      const peer: Peer = {
        wake: () => {
          if (self !== undefined && link === self) drain()
        },
        closed: (error) => onDropped(self, error)
      }
      return Effect.map(internal.connect(request, peer), (established) => {
        self = established
        return established
      })
    })

    /** Makes a new link current: does what was asked offline, subscribes again if the session was lost. */
    const attach = (established: Link) =>
      Effect.gen(function*() {
        if (closing) {
          // Closed while connecting: the new connection is closed properly, never left open.
          established.disconnect()
          return
        }
        link = established
        // Connected first: what follows completes on the new connection, as acknowledgements do after CONNACK.
        emit({ _tag: "Connected", sessionPresent: established.sessionPresent })
        yield* setStatus({ _tag: "Connected", sessionPresent: established.sessionPresent })
        const operations = offline
        offline = []
        const pendingFilters = new Set<string>()
        for (const operation of operations) {
          for (const filter of operation.filters) pendingFilters.add(filter)
          operation.run(established)
        }
        if (!established.sessionPresent && local.active.size > 0) {
          const again = local.resubscriptions().filter((s) => !pendingFilters.has(s.topicFilter))
          if (again.length > 0) {
            const codes = established.subscribe(again)
            for (let i = 0; i < again.length; i++) if (codes[i] === 0x80) yield* rejectFilter(again[i]!.topicFilter)
          }
        }
        drain()
      })

    /** The schedule gave up (or the error cannot be retried): operations and streams fail from now on. */
    const goOffline = (error: MqttError.MqttError) =>
      Effect.gen(function*() {
        offlineError = error
        emit({ _tag: "Offline", error })
        yield* setStatus({ _tag: "Disconnected", error })
        const operations = offline
        offline = []
        for (const operation of operations) operation.fail(error)
        for (const subscriber of local.subscribers) yield* Queue.fail(subscriber.queue, error)
      })

    /** The broker closed `dropped` (run by whoever closed it: the status is up to date when `crash` returns). */
    const onDropped = (dropped: Link | undefined, error: MqttError.MqttError) =>
      Effect.gen(function*() {
        if (closing || dropped === undefined || link !== dropped) return
        link = undefined
        emit({ _tag: "Disconnected", error })
        // Without reconnect the client is offline at once; otherwise the supervisor reconnects by the schedule.
        if (options.reconnect === false || !error.isRetryable) return yield* goOffline(error)
        yield* setStatus({ _tag: "Reconnecting", attempt: 1, error })
        Queue.offerUnsafe(drops, error)
      })

    /**
     * Connects and attaches the new link (one uninterruptible step: no connection is left half made), retrying by the
     * schedule; `after` is the error that ended the previous connection (the status already says `Reconnecting`
     * attempt 1 for it).
     */
    const connectWithRetry = (after: MqttError.MqttError | undefined) =>
      Reconnect.connectWithRetry(schedule, after, Effect.uninterruptible(Effect.flatMap(connectOnce, attach)), {
        onReconnectWait: (attempt, failure) =>
          attempt > 1 || after === undefined ? setStatus({ _tag: "Reconnecting", attempt, error: failure }) : Effect.void,
        onReconnectAttempt: (attempt) => Effect.sync(() => emit({ _tag: "Reconnecting", attempt }))
      })

    const supervise = Effect.gen(function*() {
      while (true) {
        const error = yield* Queue.take(drops)
        if (closing) return
        const next = yield* Effect.exit(connectWithRetry(error))
        if (closing) return
        if (Exit.isFailure(next)) {
          const final = Reconnect.failureOf(next) ?? error
          yield* goOffline(final)
          return
        }
      }
    })

    // The first connection happens while the client is built: its failure is the build's failure.
    yield* connectWithRetry(undefined).pipe(Effect.tapError((error) => setStatus({ _tag: "Disconnected", error })))
    const readerFiber = yield* Effect.forkIn(reader, clientScope)
    const supervisor = yield* Effect.forkIn(supervise, clientScope)

    // ----- operations ------------------------------------------------------------------------------------------------

    /** Waits for the next connection to run `run`, unless the client goes offline or closes first. */
    const whenConnected = <A>(filters: ReadonlyArray<string>, publish: boolean, run: (link: Link) => A) =>
      Effect.callback<A, MqttError.MqttError>((resume) => {
        let waiting = true
        offline.push({
          publish,
          filters,
          run: (established) => {
            const value = run(established)
            if (waiting) resume(Effect.succeed(value))
          },
          fail: (error) => {
            if (waiting) resume(Effect.fail(error))
          }
        })
        // Interrupting the caller stops the wait; the operation stays queued and is still done (as the real client).
        return Effect.sync(() => {
          waiting = false
        })
      })

    const publish = (input: MqttClient.PublishInput): Effect.Effect<number | undefined, MqttError.MqttError> =>
      Effect.suspend(() => {
        if (closing || offlineError !== undefined) return Effect.fail(closedError("publish"))
        const topic = input.topic
        const qos = input.qos ?? 0
        const retain = input.retain ?? false
        const payload = typeof input.payload === "string" ? encoder.encode(input.payload) : input.payload
        const invalid = validatePublish(topic, payload, qos, retain)
        if (invalid !== undefined) return Effect.fail(invalid)
        const send = (established: Link, packetId: number | undefined) => {
          established.publish({ topic, payload, qos, retain })
          emit({ _tag: "Published", topic, qos, packetId })
          return packetId
        }
        const current = link
        if (current !== undefined) return Effect.succeed(send(current, qos === 0 ? undefined : allocatePacketId()))
        // Offline: queued (QoS 1 and 2, and QoS 0 with bufferQos0) and sent after reconnecting, in order.
        if (maxBuffered === 0 || (qos === 0 && !bufferQos0)) return Effect.fail(closedError("publish"))
        if (offline.filter((operation) => operation.publish).length >= maxBuffered) {
          return Effect.fail(
            MqttError.make(new MqttError.MaxBufferedMessages({ maxBufferedMessages: maxBuffered }))
          )
        }
        if (qos === 0) {
          // A QoS 0 publish queued offline is complete once queued.
          offline.push({
            publish: true,
            filters: [],
            run: (established) => send(established, undefined),
            fail: () => {}
          })
          return Effect.succeed(undefined)
        }
        const packetId = allocatePacketId()
        return whenConnected([], true, (established) => send(established, packetId))
      })

    // As the real client: nothing is published when one message is invalid; then each in order.
    const publishAll = (
      inputs: Iterable<MqttClient.PublishInput>
    ): Effect.Effect<ReadonlyArray<number | undefined>, MqttError.MqttError> =>
      Effect.suspend(() => {
        const requests = MqttClient.toPublishRequests(inputs)
        if (Result.isFailure(requests)) return Effect.fail(requests.failure)
        for (const { topic, payload, qos, retain } of requests.success) {
          const invalid = validatePublish(topic, payload, qos, retain)
          if (invalid !== undefined) return Effect.fail(invalid)
        }
        return Effect.forEach(requests.success, publish)
      })

    const subscribeAtBroker = (subscriptions: ReadonlyArray<Packet.Subscription>) =>
      Effect.suspend(() => {
        const current = link
        return current !== undefined
          ? Effect.succeed(current.subscribe(subscriptions))
          : whenConnected(
            subscriptions.map((s) => s.topicFilter),
            false,
            (established) => established.subscribe(subscriptions)
          )
      })

    const unsubscribeAtBroker = (topicFilters: ReadonlyArray<string>) =>
      Effect.suspend(() => {
        const current = link
        if (current === undefined) {
          return whenConnected([], false, (established) => established.unsubscribe(topicFilters))
        }
        current.unsubscribe(topicFilters)
        return Effect.void
      })

    const release = (subscriber: LocalSubscriptions.Subscriber) =>
      Effect.gen(function*() {
        const unused = local.remove(subscriber)
        yield* Queue.end(subscriber.queue)
        if (closing || unused.length === 0 || !subscriber.unsubscribeOnEnd) return
        // A stream's end never waits for the broker: offline, the UNSUBSCRIBE is queued in the background.
        const current = link
        if (current !== undefined) current.unsubscribe(unused)
        else yield* Effect.forkIn(Effect.ignore(unsubscribeAtBroker(unused)), clientScope, { startImmediately: true })
      })

    const subscription = (filters: MqttClient.Filters, subscribeOptions?: MqttClient.SubscribeOptions) =>
      Effect.gen(function*() {
        if (closing || offlineError !== undefined) return yield* Effect.fail(closedError("subscribe"))
        const requested = MqttClient.toSubscriptions(filters, subscribeOptions?.qos ?? 0)
        const invalid = SessionState.validateSubscriptions(requested)
        if (invalid !== undefined) return yield* Effect.fail(invalid)
        const subscriber = yield* LocalSubscriptions.makeSubscriber(
          requested,
          subscribeOptions,
          subscribeOptions?.unsubscribeOnEnd ?? unsubscribeOnEnd
        )
        // Registered before SUBSCRIBE: the retained messages are delivered with the SUBACK.
        const effective = local.add(subscriber)
        yield* Effect.addFinalizer(() => release(subscriber))
        const codes = yield* subscribeAtBroker(effective)
        const granted = yield* Effect.fromResult(local.granted(subscriber, codes))
        return { granted, messages: Stream.fromQueue(subscriber.queue) } satisfies MqttClient.Subscription
      })

    const messages = (messagesOptions?: Omit<MqttClient.SubscribeOptions, "qos">) =>
      Stream.unwrap(
        Effect.gen(function*() {
          const subscriber = yield* LocalSubscriptions.makeSubscriber(undefined, messagesOptions, false)
          local.add(subscriber)
          yield* Effect.addFinalizer(() => release(subscriber))
          return Stream.fromQueue(subscriber.queue)
        })
      )

    const unsubscribe = (filters: string | ReadonlyArray<string>) =>
      Effect.suspend(() => {
        if (closing || offlineError !== undefined) return Effect.fail(closedError("unsubscribe"))
        const list = typeof filters === "string" ? [filters] : filters
        if (list.length === 0) {
          return Effect.fail(
            MqttError.make(
              new MqttError.BadStructure({
                field: "unsubscribe",
                value: 0,
                detail: "needs at least one topic filter [MQTT-3.8.3-3] [MQTT-3.10.3-2]"
              })
            )
          )
        }
        for (const filter of list) {
          const invalid = Topic.validateTopicFilter(filter)
          if (invalid !== undefined) return Effect.fail(invalid)
        }
        for (const filter of list) local.active.delete(filter)
        return unsubscribeAtBroker(list)
      })

    const disconnect = (disconnectOptions?: MqttClient.DisconnectOptions) =>
      Effect.gen(function*() {
        if (closed) return
        closing = true
        closed = true
        const current = link
        link = undefined
        // Nothing is ever in flight on a link: a graceful close has nothing to wait for. `force` closes without
        // DISCONNECT, so the broker publishes the will.
        if (current !== undefined) {
          if (disconnectOptions?.force === true) current.close()
          else current.disconnect()
        }
        yield* Fiber.interrupt(supervisor)
        yield* Fiber.interrupt(readerFiber)
        const operations = offline
        offline = []
        const incomplete = MqttError.make(
          new MqttError.OperationIncomplete({ operation: "operation", detail: "the client was closed" })
        )
        for (const operation of operations) operation.fail(incomplete)
        for (const subscriber of local.subscribers) yield* Queue.end(subscriber.queue)
        emit({ _tag: "Closed" })
        yield* setStatus({ _tag: "Closed" })
      }).pipe(Effect.uninterruptible)

    yield* Effect.addFinalizer(() => disconnect())

    return MqttClient.MqttClient.of({
      publish,
      publishAll,
      // Each chunk as `publishAll` (a test broker answers at once: there is no window to keep full).
      publishSink: Sink.unwrap(Effect.sync(() => {
        let count = 0
        return Sink.forEachArray((inputs: ReadonlyArray<MqttClient.PublishInput>) =>
          Effect.map(publishAll(inputs), (ids) => {
            count += ids.length
          })
        ).pipe(Sink.mapEffect(() => Effect.sync(() => count)))
      })),
      subscribe: (filters, subscribeOptions) =>
        Stream.unwrap(Effect.map(subscription(filters, subscribeOptions), (s) => s.messages)),
      subscription,
      unsubscribe,
      messages,
      // Nothing is ever left unacknowledged: a test client has no session store to restore from.
      restored: [],
      status,
      events: Stream.fromPubSub(events),
      isConnected: Effect.map(SubscriptionRef.get(status), (s) => s._tag === "Connected"),
      pendingCount: Effect.sync(() => offline.length),
      disconnect
    })
  })

// ---------------------------------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------------------------------

/**
 * A fresh in-memory broker.
 *
 * @since 0.1.0
 */
export const layerBroker = (options: BrokerOptions = {}): Layer.Layer<Broker> =>
  Layer.effect(Broker)(makeBroker(options))

/**
 * A test client of the `Broker` in the environment; connects when built, disconnects gracefully when released.
 *
 * @since 0.1.0
 */
export const layerClient = (
  options: ClientOptions = {}
): Layer.Layer<MqttClient.MqttClient, MqttError.MqttError, Broker> =>
  Layer.effect(MqttClient.MqttClient)(
    Effect.gen(function*() {
      return yield* makeClient(yield* Broker, options)
    })
  )

/**
 * A fresh in-memory broker and a client connected to it: provide it instead of `MqttClient.layer` in tests, and use
 * `Broker` to inspect what the application did or to act as the rest of the world.
 *
 * @since 0.1.0
 */
export const layer = (
  options: LayerOptions = {}
): Layer.Layer<MqttClient.MqttClient | Broker, MqttError.MqttError> => {
  const { broker, ...client } = options
  return layerClient(client).pipe(Layer.provideMerge(layerBroker(broker)))
}
