/**
 * The Session service: runs the `SessionState` machine against whichever connection is current, and completes the
 * callers waiting on it.
 *
 * It owns the pending operations — a caller waiting for PUBACK, PUBCOMP, SUBACK or UNSUBACK, keyed by packet id —
 * and the in-flight window's waiters. `attach` hands it a new link (resending what the session requires), `detach`
 * takes it away (publishes are then queued offline or fail), `handle` feeds it each packet from the broker and returns
 * the message to deliver, if any. The session outlives connections [MQTT-4.1.0-1]; it knows nothing of sockets,
 * subscriptions as streams, or reconnect policy (see `MqttClient`).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import type * as Packet from "../Codec/Packet.ts"
import type * as Connection from "../Connection/Connection.ts"
import * as MqttError from "../Errors/MqttError.ts"
import * as SessionState from "./SessionState.ts"
import type * as SessionStore from "./SessionStore.ts"

/**
 * Settings of a session.
 *
 * @since 0.1.0
 */
export interface Options extends Partial<SessionState.Config> {
  /** When the in-flight window is full: wait for a slot (default) or fail with `MaxMessagesInflight`. */
  readonly onInflightFull?: "wait" | "fail" | undefined
}

/**
 * The Session service.
 *
 * @since 0.1.0
 */
export class Session extends Context.Service<Session, {
  /** The state machine (read its counters; do not call its methods directly). */
  readonly state: SessionState.SessionState
  /**
   * Publishes: QoS 0 completes when written (or queued offline), QoS 1 on PUBACK, QoS 2 on PUBCOMP. Returns the
   * packet id for QoS 1 and 2.
   */
  readonly publish: (request: SessionState.PublishRequest) => Effect.Effect<Packet.PacketId | undefined, MqttError.MqttError>
  /** Sends SUBSCRIBE and waits for SUBACK; returns its return codes, one per filter. */
  readonly subscribe: (
    subscriptions: ReadonlyArray<Packet.Subscription>
  ) => Effect.Effect<ReadonlyArray<Packet.SubackReturnCode>, MqttError.MqttError>
  /** Sends UNSUBSCRIBE and waits for UNSUBACK. */
  readonly unsubscribe: (topicFilters: ReadonlyArray<string>) => Effect.Effect<void, MqttError.MqttError>
  /**
   * Takes over a stored session (before the first connection): restores its flights and incoming QoS 2 ids, and
   * from now on stores every change before the packet that follows it is sent. Returns how many flights it restored.
   */
  readonly useJournal: (journal: SessionStore.Journal) => Effect.Effect<number>
  /** Stores the changes not yet stored (a no-op without a journal). */
  readonly flush: Effect.Effect<void, MqttError.MqttError>
  /** Whether `step` must wait for `flush` before its message is delivered and its packets sent. */
  readonly mustFlush: (step: SessionState.Step) => boolean
  /** A connection was established: resends what the session requires on it (after storing the changes). */
  readonly attach: (link: Connection.Link) => Effect.Effect<void, MqttError.MqttError>
  /** The connection was lost. */
  readonly detach: Effect.Effect<void>
  /**
   * Handles one packet from the broker: sends the acknowledgements it requires and completes the operations it
   * finishes. Returns the message to deliver, if any, and a warning to log for an unexpected packet.
   */
  readonly handle: (packet: Packet.ServerPacket) => SessionState.Step
  /** Sends the acknowledgements of a step, after its message was delivered. */
  readonly acknowledge: (step: SessionState.Step) => void
  /** Operations not yet complete, including publishes waiting for a slot in the in-flight window. */
  readonly pending: () => number
  /** Waits until no operation is pending (every publish acknowledged, every SUBACK and UNSUBACK received). */
  readonly awaitIdle: Effect.Effect<void>
  /**
   * Fails every pending operation with `error` and refuses new ones with `Disconnected` (the client closed). A store
   * keeps the unacknowledged publishes: the next run resends them.
   */
  readonly dropAll: (error: MqttError.MqttError) => Effect.Effect<void>
}>()("effect-mqtt/Client/Session") {}

type Waiter = (completion: SessionState.Completion) => void

const incomplete = (operation: string) =>
  MqttError.make(new MqttError.OperationIncomplete({ operation, detail: "the broker's answer did not match" }))

/**
 * Builds a session.
 *
 * @since 0.1.0
 */
export const make = (options: Options = {}): Session["Service"] => {
  const state = new SessionState.SessionState(options)
  const failWhenFull = options.onInflightFull === "fail"
  const waiters = new Map<Packet.PacketId, Waiter>()
  let windowWaiters: Array<(error?: MqttError.MqttError) => void> = []
  let idleWaiters: Array<() => void> = []
  let link: Connection.Link | undefined
  let closed = false
  let journal: SessionStore.Journal | undefined
  /**
   * With a journal only (made on first use): operations started whose waiter is not registered yet, their flight
   * being stored, each with the completion that arrived meanwhile, if any.
   */
  let storing: Map<Packet.PacketId, SessionState.Completion | undefined> | undefined
  const closedError = (operation: string) => MqttError.make(new MqttError.Disconnected({ operation }))

  const wakeWindow = () => {
    if (windowWaiters.length === 0 || !state.windowOpen) return
    const woken = windowWaiters
    windowWaiters = []
    for (const wake of woken) wake()
  }

  const complete = (completions: ReadonlyArray<SessionState.Completion>) => {
    for (const completion of completions) {
      const waiter = waiters.get(completion.packetId)
      if (waiter !== undefined) {
        waiters.delete(completion.packetId)
        waiter(completion)
      } else if (storing?.has(completion.packetId) === true) {
        storing.set(completion.packetId, completion)
      }
    }
    if (completions.length > 0) {
      wakeWindow()
      wakeIdle()
    }
  }

  const wakeIdle = () => {
    if (idleWaiters.length === 0 || state.pending > 0) return
    const woken = idleWaiters
    idleWaiters = []
    for (const wake of woken) wake()
  }

  const sendAll = (packets: ReadonlyArray<Packet.ClientPacket>) => {
    const current = link
    if (current === undefined) return
    for (const packet of packets) {
      // A failed offer means the link is dying; the session keeps the flight and resends it on the next link.
      if (current.offer(packet as Connection.OutgoingPacket) !== undefined) return
    }
  }

  /**
   * Starts an operation and waits for its answer, in one synchronous step: the flight is created, its waiter
   * registered and its packet sent before any other fiber can run, so no answer can arrive unawaited. Interrupting
   * the caller stops the wait; the flight stays in the session and is still delivered.
   */
  const operation = <A>(
    start: () => Result.Result<{ readonly packetId: Packet.PacketId; readonly send: Packet.ClientPacket | undefined }, MqttError.MqttError>,
    onCompletion: (completion: SessionState.Completion) => Effect.Effect<A, MqttError.MqttError>
  ) =>
    journal === undefined
      ? Effect.callback<A, MqttError.MqttError>((resume) => {
        if (closed) return resume(Effect.fail(closedError("operation")))
        const started = start()
        if (Result.isFailure(started)) return resume(Effect.fail(started.failure))
        const { packetId, send } = started.success
        waiters.set(packetId, (completion) => resume(onCompletion(completion)))
        if (send !== undefined) sendAll([send])
        return Effect.sync(() => {
          waiters.delete(packetId)
        })
      })
      : storedOperation(start, onCompletion)

  /**
   * With a store: the flight is stored before its packet is sent (write-ahead). A completion that arrives while it
   * is being stored (a reconnect resent it meanwhile) is kept for the waiter. If storing fails, the flight is
   * forgotten and the caller gets the `PersistenceError`: nothing is sent that the store does not hold.
   */
  const storedOperation = <A>(
    start: () => Result.Result<{ readonly packetId: Packet.PacketId; readonly send: Packet.ClientPacket | undefined }, MqttError.MqttError>,
    onCompletion: (completion: SessionState.Completion) => Effect.Effect<A, MqttError.MqttError>
  ) =>
    Effect.suspend(() => {
      if (closed) return Effect.fail(closedError("operation"))
      const started = start()
      if (Result.isFailure(started)) return Effect.fail(started.failure)
      const { packetId, send } = started.success
      const pending = storing ??= new Map()
      pending.set(packetId, undefined)
      return flush.pipe(
        Effect.tapError(() =>
          Effect.sync(() => {
            pending.delete(packetId)
            state.abandon(packetId)
            wakeWindow()
          })
        ),
        Effect.andThen(Effect.callback<A, MqttError.MqttError>((resume) => {
          const done = pending.get(packetId)
          pending.delete(packetId)
          if (done !== undefined) return resume(onCompletion(done))
          waiters.set(packetId, (completion) => resume(onCompletion(completion)))
          if (send !== undefined && state.outgoing.has(packetId)) sendAll([send])
          return Effect.sync(() => {
            waiters.delete(packetId)
          })
        }))
      )
    })

  const flush: Effect.Effect<void, MqttError.MqttError> = Effect.suspend(() =>
    journal !== undefined && state.journalPending ? journal.append(state.takeJournal()) : Effect.void
  )

  const awaitWindow = Effect.callback<void, MqttError.MqttError>((resume) => {
    if (state.windowOpen) return resume(Effect.void)
    const wake = (error?: MqttError.MqttError) => resume(error === undefined ? Effect.void : Effect.fail(error))
    windowWaiters.push(wake)
    return Effect.sync(() => {
      windowWaiters = windowWaiters.filter((w) => w !== wake)
    })
  })

  const isWindowFull = (error: MqttError.MqttError) => !failWhenFull && error.reason._tag === "MaxMessagesInflight"

  const disconnectedError = () => MqttError.make(new MqttError.Disconnected({ operation: "publish" }))

  const publishQos0 = (request: SessionState.PublishRequest) =>
    Effect.suspend((): Effect.Effect<undefined, MqttError.MqttError> => {
      if (closed) return Effect.fail(closedError("publish"))
      const started = state.publish(request)
      if (Result.isFailure(started)) return Effect.fail(started.failure)
      // QoS 0 completes when written; one queued offline is complete once queued.
      if (started.success.queued) return Effect.succeed(undefined)
      const current = link
      if (current === undefined) return Effect.fail(disconnectedError())
      return Effect.as(current.send(started.success.packet), undefined)
    })

  const publishOnce = (request: SessionState.PublishRequest) =>
    operation(
      () =>
        Result.map(state.publish(request), ({ packet, queued }) => ({
          packetId: packet.packetId!,
          send: queued ? undefined : packet
        })),
      (completion) => completion._tag === "Dropped" ? Effect.fail(completion.error) : Effect.succeed(completion.packetId)
    )

  const publish = (request: SessionState.PublishRequest): Effect.Effect<Packet.PacketId | undefined, MqttError.MqttError> =>
    request.qos === 0
      ? publishQos0(request)
      : Effect.catchIf(publishOnce(request), isWindowFull, () => Effect.andThen(awaitWindow, publish(request)))

  const subscribe = (subscriptions: ReadonlyArray<Packet.Subscription>) =>
    operation(
      () =>
        Result.map(state.subscribe(subscriptions), (packet) => ({
          packetId: packet.packetId,
          send: state.isConnected ? packet : undefined
        })),
      (completion): Effect.Effect<ReadonlyArray<Packet.SubackReturnCode>, MqttError.MqttError> => {
        switch (completion._tag) {
          case "Subscribed":
            return Effect.succeed(completion.returnCodes)
          case "Dropped":
            return Effect.fail(completion.error)
          default:
            return Effect.fail(incomplete("subscribe"))
        }
      }
    )

  const unsubscribe = (topicFilters: ReadonlyArray<string>) =>
    operation(
      () =>
        Result.map(state.unsubscribe(topicFilters), (packet) => ({
          packetId: packet.packetId,
          send: state.isConnected ? packet : undefined
        })),
      (completion): Effect.Effect<void, MqttError.MqttError> =>
        completion._tag === "Unsubscribed"
          ? Effect.void
          : Effect.fail(completion._tag === "Dropped" ? completion.error : incomplete("unsubscribe"))
    )

  const awaitIdle = Effect.callback<void>((resume) => {
    if (state.pending === 0) return resume(Effect.void)
    const wake = () => resume(Effect.void)
    idleWaiters.push(wake)
    return Effect.sync(() => {
      idleWaiters = idleWaiters.filter((w) => w !== wake)
    })
  })

  return Session.of({
    state,
    pending: () => state.pending + windowWaiters.length,
    awaitIdle,
    publish,
    subscribe,
    unsubscribe,
    useJournal: (opened) =>
      Effect.sync(() => {
        journal = opened
        state.enableJournal()
        state.restore(opened.snapshot)
        return opened.snapshot.flights.length
      }),
    flush,
    mustFlush: (step) =>
      journal !== undefined && state.journalPending && (step.send.length > 0 || step.deliver !== undefined),
    attach: (next) =>
      Effect.suspend(() => {
        link = next
        const step = state.resume(next.connack.sessionPresent)
        // Stored before the resends go out: a crash right after them resumes from this state.
        return Effect.map(flush, () => {
          sendAll(step.send)
          complete(step.completions)
          wakeIdle()
        })
      }),
    detach: Effect.sync(() => {
      link = undefined
      state.disconnected()
    }),
    handle: (packet) => {
      const step = state.handle(packet)
      complete(step.completions)
      return step
    },
    acknowledge: (step) => {
      if (step.send.length > 0) sendAll(step.send)
    },
    dropAll: (error) =>
      Effect.sync(() => {
        closed = true
        // A publish waiting for a window slot was pending too: it fails with the same error (taken before the
        // completions below would wake it to retry).
        const waiting = windowWaiters
        windowWaiters = []
        for (const wake of waiting) wake(error)
        complete(state.dropAll(error, journal !== undefined))
        const idle = idleWaiters
        idleWaiters = []
        for (const wake of idle) wake()
      })
  })
}

/**
 * The Session service as a layer.
 *
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Session> => Layer.sync(Session)(() => make(options))
