/**
 * The Session service: runs the `SessionState` machine against whichever connection is current, and completes the
 * callers waiting on it.
 *
 * It owns the pending operations — a caller waiting for PUBACK, PUBCOMP, SUBACK or UNSUBACK, keyed by packet id —
 * the in-flight window's waiters, and the runs of publishes that `publishAll` and a `Publisher` start as the window
 * allows. `attach` hands it a new link (resending what the session requires), `detach` takes it away (publishes are
 * then queued offline or fail), `handle` feeds it each packet from the broker and returns the message to deliver, if
 * any. The session outlives connections [MQTT-4.1.0-1]; it knows nothing of sockets, subscriptions as streams, or
 * reconnect policy (see `MqttClient`).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type { LazyArg } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
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
  /**
   * Publishes `requests` in order as one operation: as many are started at once as the in-flight window allows, the
   * rest as slots free up, and the caller waits once for all of them (each completes as with `publish`). Nothing is
   * sent when one of them is invalid. Fails with the first error; the messages already started stay in the session,
   * as an interrupted `publish`'s do. Returns the packet ids (`undefined` for QoS 0).
   */
  readonly publishAll: (
    requests: ReadonlyArray<SessionState.PublishRequest>
  ) => Effect.Effect<ReadonlyArray<Packet.PacketId | undefined>, MqttError.MqttError>
  /**
   * A `Publisher` for a stream's chunks (the window stays full across chunks), until the scope closes: the flights
   * started then stay in the session. Each message that completes is told to `onPublished`. With a store, each
   * message is stored and completes before the next starts.
   */
  readonly publisher: (onPublished?: OnPublished) => Effect.Effect<Publisher, never, Scope.Scope>
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
  readonly dropAll: (error: LazyArg<MqttError.MqttError>) => Effect.Effect<void>
}>()("effect-mqtt/Client/Session") {}

type Waiter = (completion: SessionState.Completion) => void

/**
 * Told of each message of a `Publisher` that completed (as `publish` completes), with its packet id (`undefined` for
 * QoS 0).
 */
export type OnPublished = (request: SessionState.PublishRequest, packetId: Packet.PacketId | undefined) => void

/**
 * Publishes a stream's chunks one after another: each chunk is started as the in-flight window allows, without
 * waiting for the chunks before it to complete, so the window stays full across chunks.
 *
 * @since 0.1.0
 */
export interface Publisher {
  /**
   * Adds `requests` after those offered before; they start as the window allows. Completes once every message
   * offered before this chunk has started (taken a window slot, or been queued offline; QoS 0 ones written), so the
   * next chunk can be fetched while this one starts: at most two chunks are held. Nothing of the chunk is sent when
   * one of its messages is invalid. Fails with the first error of any message offered so far.
   */
  readonly offer: (requests: ReadonlyArray<SessionState.PublishRequest>) => Effect.Effect<void, MqttError.MqttError>
  /** Waits until every message offered has completed; fails with the first error. */
  readonly drain: Effect.Effect<void, MqttError.MqttError>
}

/** What a wait on a run waits for: every chunk but the last started, or every message complete. */
type Until = "accepted" | "complete"

/** What a wait on a run resumes with: the writes of the QoS 0 publishes started since the last wait, and those. */
interface Writes {
  readonly writes: ReadonlyArray<Effect.Effect<void, MqttError.MqttError>>
  readonly written: ReadonlyArray<SessionState.PublishRequest>
  readonly onPublished: OnPublished | undefined
}

/** Publishes started in order as the window allows (see `#openRun`). */
interface PublishRun {
  /** Adds `requests` (validated), started after those added before as the window allows. */
  readonly add: (requests: ReadonlyArray<SessionState.PublishRequest>) => void
  /** Resumes once what `until` names is reached, or with the run's first error. */
  readonly wait: (until: Until, resume: (effect: Effect.Effect<Writes, MqttError.MqttError>) => void) => void
  /** Ends the run: the flights started stay in the session; their waiters go. */
  readonly close: () => void
}

const afterWrites = ({ onPublished, writes, written }: Writes): Effect.Effect<void, MqttError.MqttError> => {
  if (writes.length === 0) return Effect.void
  const all = Effect.all(writes, { discard: true })
  if (onPublished === undefined) return all
  return Effect.map(all, () => {
    for (const request of written) onPublished(request, undefined)
  })
}

/** Waits on a run; interrupting the wait ends the run. */
const waitFor = (run: PublishRun, until: Until): Effect.Effect<void, MqttError.MqttError> =>
  Effect.flatMap(
    Effect.callback<Writes, MqttError.MqttError>((resume) => {
      run.wait(until, resume)
      return Effect.sync(run.close)
    }),
    afterWrites
  )

const firstInvalid = (requests: ReadonlyArray<SessionState.PublishRequest>): MqttError.MqttError | undefined => {
  for (let i = 0; i < requests.length; i++) {
    const invalid = SessionState.validatePublish(requests[i]!)
    if (invalid !== undefined) return invalid
  }
  return undefined
}

type Started = Result.Result<
  { readonly packetId: Packet.PacketId; readonly send: Packet.ClientPacket | undefined },
  MqttError.MqttError
>

const incomplete = (operation: string) =>
  MqttError.make(new MqttError.OperationIncomplete({ operation, detail: "the broker's answer did not match" }))

const closedError = (operation: string) => MqttError.make(new MqttError.Disconnected({ operation }))

const publishCompletion = (completion: SessionState.Completion): Effect.Effect<Packet.PacketId, MqttError.MqttError> =>
  completion._tag === "Dropped" ? Effect.fail(completion.error) : Effect.succeed(completion.packetId)

const subscribeCompletion = (
  completion: SessionState.Completion
): Effect.Effect<ReadonlyArray<Packet.SubackReturnCode>, MqttError.MqttError> => {
  switch (completion._tag) {
    case "Subscribed":
      return Effect.succeed(completion.returnCodes)
    case "Dropped":
      return Effect.fail(completion.error)
    default:
      return Effect.fail(incomplete("subscribe"))
  }
}

const unsubscribeCompletion = (completion: SessionState.Completion): Effect.Effect<void, MqttError.MqttError> =>
  completion._tag === "Unsubscribed"
    ? Effect.void
    : Effect.fail(completion._tag === "Dropped" ? completion.error : incomplete("unsubscribe"))

const isWindowFull = (error: MqttError.MqttError) => error.reason._tag === "MaxMessagesInflight"
const neverWaits = () => false

/**
 * The session as one object: its methods live on the prototype, so a client costs its fields, not a closure per
 * method (1,000 clients in one process). Effect-valued members are getters, built when used.
 */
type Service = Session["Service"]

class SessionImpl implements Service {
  readonly state: SessionState.SessionState
  /** Whether a publish refused for a full in-flight window waits for a slot: never, with `onInflightFull: "fail"`. */
  readonly #waitsForSlot: (error: MqttError.MqttError) => boolean
  /** Waiters by packet id; made when an operation starts and dropped when the last one completes (idle: none). */
  #waiters: Map<Packet.PacketId, Waiter> | undefined = undefined
  #windowWaiters: Array<(error?: MqttError.MqttError) => void> = []
  #idleWaiters: Array<() => void> = []
  #link: Connection.Link | undefined = undefined
  #closed = false
  #journal: SessionStore.Journal | undefined = undefined
  /**
   * With a journal only (made on first use): operations started whose waiter is not registered yet, their flight
   * being stored, each with the completion that arrived meanwhile, if any.
   */
  #storing: Map<Packet.PacketId, SessionState.Completion | undefined> | undefined = undefined

  constructor(options: Options) {
    this.state = new SessionState.SessionState(options)
    this.#waitsForSlot = options.onInflightFull === "fail" ? neverWaits : isWindowFull
  }

  /**
   * Wakes the window's waiters in order while a slot is free: a woken publish takes its slot before the next waiter
   * is looked at (fibers resume synchronously), so a freed slot wakes one waiter, not every one of them only for all
   * but one to wait again.
   */
  #wakeWindow(): void {
    while (this.#windowWaiters.length > 0 && this.state.windowOpen) this.#windowWaiters.shift()!()
  }

  #wakeIdle(): void {
    if (this.#idleWaiters.length === 0 || this.state.pending > 0) return
    const woken = this.#idleWaiters
    this.#idleWaiters = []
    for (const wake of woken) wake()
  }

  #complete(completions: ReadonlyArray<SessionState.Completion>): void {
    for (const completion of completions) {
      const waiter = this.#waiters?.get(completion.packetId)
      if (waiter !== undefined) {
        this.#removeWaiter(completion.packetId)
        waiter(completion)
      } else if (this.#storing?.has(completion.packetId) === true) {
        this.#storing.set(completion.packetId, completion)
      }
    }
    if (completions.length > 0) {
      this.#wakeWindow()
      this.#wakeIdle()
    }
  }

  #addWaiter(packetId: Packet.PacketId, waiter: Waiter): void {
    ;(this.#waiters ??= new Map()).set(packetId, waiter)
  }

  #removeWaiter(packetId: Packet.PacketId): void {
    const waiters = this.#waiters
    if (waiters !== undefined && waiters.delete(packetId) && waiters.size === 0) this.#waiters = undefined
  }

  #sendAll(packets: ReadonlyArray<Packet.ClientPacket>): void {
    const current = this.#link
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
  #operation<A>(
    start: () => Started,
    onCompletion: (completion: SessionState.Completion) => Effect.Effect<A, MqttError.MqttError>
  ): Effect.Effect<A, MqttError.MqttError> {
    if (this.#journal !== undefined) return this.#storedOperation(start, onCompletion)
    return Effect.callback<A, MqttError.MqttError>((resume) => {
      if (this.#closed) return resume(Effect.fail(closedError("operation")))
      const started = start()
      if (Result.isFailure(started)) return resume(Effect.fail(started.failure))
      const { packetId, send } = started.success
      this.#addWaiter(packetId, (completion) => resume(onCompletion(completion)))
      if (send !== undefined) this.#sendAll([send])
      return Effect.sync(() => {
        this.#removeWaiter(packetId)
      })
    })
  }

  /**
   * With a store: the flight is stored before its packet is sent (write-ahead). A completion that arrives while it
   * is being stored (a reconnect resent it meanwhile) is kept for the waiter. If storing fails, the flight is
   * forgotten and the caller gets the `PersistenceError`: nothing is sent that the store does not hold.
   */
  #storedOperation<A>(
    start: () => Started,
    onCompletion: (completion: SessionState.Completion) => Effect.Effect<A, MqttError.MqttError>
  ): Effect.Effect<A, MqttError.MqttError> {
    return Effect.suspend(() => {
      if (this.#closed) return Effect.fail(closedError("operation"))
      const started = start()
      if (Result.isFailure(started)) return Effect.fail(started.failure)
      const { packetId, send } = started.success
      const pending = this.#storing ??= new Map()
      pending.set(packetId, undefined)
      return this.flush.pipe(
        Effect.tapError(() =>
          Effect.sync(() => {
            pending.delete(packetId)
            this.state.abandon(packetId)
            this.#wakeWindow()
          })
        ),
        Effect.andThen(Effect.callback<A, MqttError.MqttError>((resume) => {
          const done = pending.get(packetId)
          pending.delete(packetId)
          if (done !== undefined) return resume(onCompletion(done))
          this.#addWaiter(packetId, (completion) => resume(onCompletion(completion)))
          if (send !== undefined && this.state.outgoing.has(packetId)) this.#sendAll([send])
          return Effect.sync(() => {
            this.#removeWaiter(packetId)
          })
        }))
      )
    })
  }

  get flush(): Effect.Effect<void, MqttError.MqttError> {
    return Effect.suspend(() =>
      this.#journal !== undefined && this.state.journalPending ? this.#journal.append(this.state.takeJournal()) : Effect.void
    )
  }

  get #awaitWindow(): Effect.Effect<void, MqttError.MqttError> {
    return Effect.callback<void, MqttError.MqttError>((resume) => {
      if (this.state.windowOpen) return resume(Effect.void)
      const wake = (error?: MqttError.MqttError) => resume(error === undefined ? Effect.void : Effect.fail(error))
      this.#windowWaiters.push(wake)
      return Effect.sync(() => {
        this.#windowWaiters = this.#windowWaiters.filter((w) => w !== wake)
      })
    })
  }

  #publishQos0(request: SessionState.PublishRequest): Effect.Effect<undefined, MqttError.MqttError> {
    return Effect.suspend((): Effect.Effect<undefined, MqttError.MqttError> => {
      if (this.#closed) return Effect.fail(closedError("publish"))
      const started = this.state.publish(request)
      if (Result.isFailure(started)) return Effect.fail(started.failure)
      // QoS 0 completes when written; one queued offline is complete once queued.
      if (started.success.queued) return Effect.succeed(undefined)
      const current = this.#link
      if (current === undefined) return Effect.fail(closedError("publish"))
      return Effect.as(current.send(started.success.packet), undefined)
    })
  }

  publish(request: SessionState.PublishRequest): Effect.Effect<Packet.PacketId | undefined, MqttError.MqttError> {
    if (request.qos === 0) return this.#publishQos0(request)
    const once = this.#operation(
      () =>
        Result.map(this.state.publish(request), ({ packet, queued }) => ({
          packetId: packet.packetId!,
          send: queued ? undefined : packet
        })),
      publishCompletion
    )
    return Effect.catchIf(
      once,
      this.#waitsForSlot,
      () => Effect.andThen(this.#awaitWindow, this.publish(request))
    )
  }

  publishAll(
    requests: ReadonlyArray<SessionState.PublishRequest>
  ): Effect.Effect<ReadonlyArray<Packet.PacketId | undefined>, MqttError.MqttError> {
    const invalid = firstInvalid(requests)
    if (invalid !== undefined) return Effect.fail(invalid)
    // With a store every flight is stored before it is sent: one at a time, as `publish` does.
    if (this.#journal !== undefined || requests.length === 0) {
      return Effect.forEach(requests, (request) => this.publish(request))
    }
    return Effect.suspend(() => {
      const ids: Array<Packet.PacketId | undefined> = []
      const run = this.#openRun(undefined, ids)
      run.add(requests)
      return Effect.as(waitFor(run, "complete"), ids)
    })
  }

  publisher(onPublished?: OnPublished): Effect.Effect<Publisher, never, Scope.Scope> {
    return Effect.map(
      Effect.acquireRelease(Effect.sync(() => this.#openRun(onPublished)), (run) => Effect.sync(run.close)),
      (run): Publisher => ({
        offer: (requests) => {
          const invalid = firstInvalid(requests)
          if (invalid !== undefined) return Effect.fail(invalid)
          if (this.#journal !== undefined) {
            return Effect.forEach(requests, (request) =>
              Effect.map(this.publish(request), (packetId) => onPublished?.(request, packetId)), { discard: true })
          }
          return Effect.suspend(() => {
            run.add(requests)
            return waitFor(run, "accepted")
          })
        },
        drain: Effect.suspend(() => waitFor(run, "complete"))
      })
    )
  }

  /**
   * Opens a run: publishes started in order, synchronously, as far as the window allows, and continued from the
   * window's waiters as slots free up (no fiber resumes per message), with one waiter at a time for all of them. The
   * first error (a flight dropped, the session closed, a packet the link refuses) ends the run; the flights already
   * started stay in the session, as an interrupted `publish`'s do. The packet ids go to `ids`, when given, and each
   * completion to `onPublished`.
   */
  #openRun(onPublished?: OnPublished, ids?: Array<Packet.PacketId | undefined>): PublishRun {
    /** The chunks added and not all started: the first is being started, from `next`. */
    const chunks: Array<ReadonlyArray<SessionState.PublishRequest>> = []
    let next = 0
    /** The QoS 1 and 2 flights started and not complete, with their requests. */
    const unacknowledged = new Map<Packet.PacketId, SessionState.PublishRequest>()
    /** The writes of the QoS 0 publishes started since the last wait, with those publishes. */
    let writes: Array<Effect.Effect<void, MqttError.MqttError>> = []
    let written: Array<SessionState.PublishRequest> = []
    let failure: MqttError.MqttError | undefined
    let closed = false
    let windowWake: ((error?: MqttError.MqttError) => void) | undefined
    let waiting: { readonly until: Until; readonly resume: (effect: Effect.Effect<Writes, MqttError.MqttError>) => void } | undefined

    const settle = (): void => {
      if (waiting === undefined) return
      if (failure === undefined) {
        if (waiting.until === "accepted" ? chunks.length > 1 : chunks.length > 0 || unacknowledged.size > 0) return
      }
      const { resume } = waiting
      waiting = undefined
      if (failure !== undefined) return resume(Effect.fail(failure))
      const taken: Writes = { writes, written, onPublished }
      writes = []
      written = []
      resume(Effect.succeed(taken))
    }
    const close = (): void => {
      closed = true
      chunks.length = 0
      // The waiters of the flights not complete go (an id whose flight completed may serve another operation by
      // now: only this run's own waiter is removed).
      for (const packetId of unacknowledged.keys()) {
        if (this.#waiters?.get(packetId) === onCompletion) this.#removeWaiter(packetId)
      }
      unacknowledged.clear()
      const wake = windowWake
      windowWake = undefined
      if (wake !== undefined) this.#windowWaiters = this.#windowWaiters.filter((w) => w !== wake)
    }
    const fail = (error: MqttError.MqttError): void => {
      failure ??= error
      close()
      settle()
    }
    const onCompletion: Waiter = (completion) => {
      if (completion._tag === "Dropped") return fail(completion.error)
      const request = unacknowledged.get(completion.packetId)
      unacknowledged.delete(completion.packetId)
      if (request !== undefined) onPublished?.(request, completion.packetId)
      if (unacknowledged.size === 0) settle()
    }
    // Made once: while the window stays full, the run waits for a slot once per message.
    const onWindow = (error?: MqttError.MqttError): void => {
      windowWake = undefined
      if (error !== undefined) fail(error)
      else start()
    }
    const waitForWindow = (): void => {
      windowWake = onWindow
      this.#windowWaiters.push(onWindow)
    }
    const start = (): void => {
      let link: Connection.Link | undefined
      while (chunks.length > 0 && !closed) {
        const requests = chunks[0]!
        if (next === requests.length) {
          chunks.shift()
          next = 0
          continue
        }
        if (this.#closed) return fail(closedError("publish"))
        const request = requests[next]!
        const started = this.state.publish(request)
        if (Result.isFailure(started)) {
          if (!this.#waitsForSlot(started.failure)) return fail(started.failure)
          // The window is full: go on when a slot frees up.
          waitForWindow()
          break
        }
        next++
        const { packet, queued } = started.success
        if (packet.qos === 0) {
          ids?.push(undefined)
          // Offline, a QoS 0 publish is complete once queued.
          if (queued) {
            onPublished?.(request, undefined)
            continue
          }
          const current = this.#link
          if (current === undefined) return fail(closedError("publish"))
          const invalid = current.offer(packet)
          if (invalid !== undefined) return fail(invalid)
          link = current
          if (onPublished !== undefined) written.push(request)
          continue
        }
        const packetId = packet.packetId!
        ids?.push(packetId)
        unacknowledged.set(packetId, request)
        this.#addWaiter(packetId, onCompletion)
        if (!queued) this.#sendAll([packet])
      }
      // One wait for every QoS 0 publish this step queued: they are written together.
      if (link !== undefined) writes.push(link.awaitWritten())
      settle()
    }
    return {
      add: (requests) => {
        if (failure !== undefined || closed) return
        chunks.push(requests)
        // Started at once unless the chunks before it still wait for the window (they go on from its waiter).
        if (chunks.length === 1) start()
      },
      wait: (until, resume) => {
        waiting = { until, resume }
        if (closed && failure === undefined) failure = closedError("publish")
        settle()
      },
      close
    }
  }

  subscribe(
    subscriptions: ReadonlyArray<Packet.Subscription>
  ): Effect.Effect<ReadonlyArray<Packet.SubackReturnCode>, MqttError.MqttError> {
    return this.#operation(
      () =>
        Result.map(this.state.subscribe(subscriptions), (packet) => ({
          packetId: packet.packetId,
          send: this.state.isConnected ? packet : undefined
        })),
      subscribeCompletion
    )
  }

  unsubscribe(topicFilters: ReadonlyArray<string>): Effect.Effect<void, MqttError.MqttError> {
    return this.#operation(
      () =>
        Result.map(this.state.unsubscribe(topicFilters), (packet) => ({
          packetId: packet.packetId,
          send: this.state.isConnected ? packet : undefined
        })),
      unsubscribeCompletion
    )
  }

  get awaitIdle(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.state.pending === 0) return resume(Effect.void)
      const wake = () => resume(Effect.void)
      this.#idleWaiters.push(wake)
      return Effect.sync(() => {
        this.#idleWaiters = this.#idleWaiters.filter((w) => w !== wake)
      })
    })
  }

  pending(): number {
    return this.state.pending + this.#windowWaiters.length
  }

  useJournal(opened: SessionStore.Journal): Effect.Effect<number> {
    return Effect.sync(() => {
      this.#journal = opened
      this.state.enableJournal()
      this.state.restore(opened.snapshot)
      return opened.snapshot.flights.length
    })
  }

  mustFlush(step: SessionState.Step): boolean {
    return this.#journal !== undefined && this.state.journalPending &&
      (step.send.length > 0 || step.deliver !== undefined)
  }

  attach(next: Connection.Link): Effect.Effect<void, MqttError.MqttError> {
    return Effect.suspend(() => {
      this.#link = next
      const step = this.state.resume(next.connack.sessionPresent)
      // Stored before the resends go out: a crash right after them resumes from this state.
      return Effect.map(this.flush, () => {
        this.#sendAll(step.send)
        this.#complete(step.completions)
        this.#wakeIdle()
      })
    })
  }

  get detach(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.#link = undefined
      this.state.disconnected()
    })
  }

  handle(packet: Packet.ServerPacket): SessionState.Step {
    const step = this.state.handle(packet)
    this.#complete(step.completions)
    return step
  }

  acknowledge(step: SessionState.Step): void {
    if (step.send.length > 0) this.#sendAll(step.send)
  }

  dropAll(error: LazyArg<MqttError.MqttError>): Effect.Effect<void> {
    return Effect.sync(() => {
      this.#closed = true
      // Made once, and only when something is dropped: closing an idle client makes no error.
      let made: MqttError.MqttError | undefined
      const dropped = () => made ??= error()
      // A publish waiting for a window slot was pending too: it fails with the same error (taken before the
      // completions below would wake it to retry).
      const waiting = this.#windowWaiters
      this.#windowWaiters = []
      for (const wake of waiting) wake(dropped())
      this.#complete(this.state.dropAll(dropped, this.#journal !== undefined))
      const idle = this.#idleWaiters
      this.#idleWaiters = []
      for (const wake of idle) wake()
    })
  }
}

/**
 * Builds a session.
 *
 * @since 0.1.0
 */
export const make = (options: Options = {}): Session["Service"] => Session.of(new SessionImpl(options))

/**
 * The Session service as a layer.
 *
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Session> => Layer.sync(Session)(() => make(options))
