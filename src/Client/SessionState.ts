/**
 * The MQTT session as a state machine: what a client must remember between packets and across connections (§4.1),
 * and what each packet from the broker requires it to do.
 *
 * It owns packet id allocation [MQTT-2.3.1-2], the outgoing QoS 1 and QoS 2 flows with their stages
 * [MQTT-4.3.2-1] [MQTT-4.3.3-1], pending SUBSCRIBE and UNSUBSCRIBE, the in-flight window, publishes queued while
 * offline, the incoming QoS 2 packet ids held until PUBREL [MQTT-4.3.3-2], and what to resend when a connection is
 * established [MQTT-4.4.0-1]. Each method takes an input (a publish request, a packet from the broker, a new
 * connection) and returns the packets to send and the operations it completes; it performs no I/O, reads no clock
 * and allocates no fibers, so it is tested with plain scenario tables and property tests. `Session` runs it.
 *
 * It is a mutable object rather than immutable data, like rumqttc's `MqttState`: one step per packet at 50,000
 * messages a second must not copy maps. Every mutation happens inside a method; the fields are read-only outside.
 *
 * @since 0.1.0
 */
import type { LazyArg } from "effect/Function"
import * as Result from "effect/Result"
import type * as Packet from "../Codec/Packet.ts"
import * as Topic from "../Codec/Topic.ts"
import * as Validate from "../Codec/Validate.ts"
import * as MqttError from "../Errors/MqttError.ts"

/**
 * What a caller asks to publish.
 *
 * @since 0.1.0
 */
export interface PublishRequest {
  readonly topic: string
  readonly payload: Uint8Array
  readonly qos: Packet.QoS
  readonly retain: boolean
}

/**
 * A publish the session accepted: the packet, and whether it was queued offline rather than to be sent now.
 *
 * @since 0.1.0
 */
export interface Started {
  readonly packet: Packet.Publish
  readonly queued: boolean
}

/**
 * An outgoing packet awaiting its acknowledgement, in the order it was created.
 *
 * - `Publish` at QoS 1 waits for PUBACK (`stage: "puback"`); at QoS 2 for PUBREC (`"pubrec"`), then PUBCOMP
 *   (`"pubcomp"`), after which only PUBREL is ever resent [MQTT-4.3.3-1].
 * - `sent` is false for a publish queued while offline: it goes out with DUP 0 when a connection is established.
 *
 * @since 0.1.0
 */
export type Flight =
  | {
    readonly _tag: "Publish"
    readonly packet: Packet.Publish
    readonly stage: "puback" | "pubrec" | "pubcomp"
    readonly sent: boolean
  }
  | { readonly _tag: "Subscribe"; readonly packet: Packet.Subscribe; readonly sent: boolean }
  | { readonly _tag: "Unsubscribe"; readonly packet: Packet.Unsubscribe; readonly sent: boolean }

/**
 * An operation the session finished: a publish acknowledged (PUBACK, or PUBCOMP), a subscription answered
 * (SUBACK with its return codes), an unsubscription answered (UNSUBACK), or an operation dropped.
 *
 * @since 0.1.0
 */
export type Completion =
  | { readonly _tag: "Published"; readonly packetId: Packet.PacketId }
  | { readonly _tag: "Subscribed"; readonly packetId: Packet.PacketId; readonly returnCodes: ReadonlyArray<Packet.SubackReturnCode> }
  | { readonly _tag: "Unsubscribed"; readonly packetId: Packet.PacketId }
  | { readonly _tag: "Dropped"; readonly packetId: Packet.PacketId; readonly error: MqttError.MqttError }

/**
 * What one step asks the caller to do: send these packets (in order), deliver this message to the application,
 * complete these operations; `warning` explains a packet that was ignored (an unexpected or duplicate
 * acknowledgement is logged, never fatal).
 *
 * @since 0.1.0
 */
export interface Step {
  readonly send: ReadonlyArray<Packet.ClientPacket>
  readonly deliver: Packet.Publish | undefined
  readonly completions: ReadonlyArray<Completion>
  readonly warning: string | undefined
}

/**
 * Settings of a session.
 *
 * @since 0.1.0
 */
export interface Config {
  /** Most QoS 1 and 2 publishes awaiting acknowledgement at once (1..65535). */
  readonly maxInflight: number
  /** Most publishes queued while offline; 0 disables offline queueing. */
  readonly maxBufferedMessages: number
  /** Queue QoS 0 publishes made while offline too (otherwise they fail with `Disconnected`). */
  readonly bufferQos0: boolean
  /**
   * When a connection starts without the broker's session (CONNACK session present 0): `"resend"` sends the
   * unacknowledged publishes again as new messages (QoS 1 stays at-least-once; a QoS 2 message past PUBREC is
   * complete, since the broker owns it), `"fail"` drops them with `OperationIncomplete`.
   */
  readonly onSessionLost: "resend" | "fail"
}

/** @since 0.1.0 */
export const defaultConfig: Config = {
  maxInflight: 65535,
  maxBufferedMessages: 65535,
  bufferQos0: false,
  onSessionLost: "resend"
}

/**
 * A change to the durable part of the session, for a `SessionStore` to record: an outgoing flight created or moved
 * to its next stage, a flight completed, an incoming QoS 2 id held or released, or everything forgotten (a new
 * session, or a forced close).
 *
 * @since 0.1.0
 */
export type JournalEntry =
  | { readonly _tag: "PutFlight"; readonly flight: Flight }
  | { readonly _tag: "RemoveFlight"; readonly packetId: Packet.PacketId }
  | { readonly _tag: "AddIncoming"; readonly packetId: Packet.PacketId }
  | { readonly _tag: "RemoveIncoming"; readonly packetId: Packet.PacketId }
  | { readonly _tag: "ClearIncoming" }
  | { readonly _tag: "ClearOutgoing" }

/**
 * The durable part of a session, as a store gives it back: outgoing flights in their order, and the incoming QoS 2
 * ids awaiting PUBREL.
 *
 * @since 0.1.0
 */
export interface Snapshot {
  readonly flights: ReadonlyArray<Flight>
  readonly incomingQos2: ReadonlyArray<Packet.PacketId>
}

/** @since 0.1.0 */
export const emptySnapshot: Snapshot = { flights: [], incomingQos2: [] }

/**
 * Replays journal entries over a snapshot: what a store does on load.
 *
 * @since 0.1.0
 */
export const replay = (snapshot: Snapshot, entries: Iterable<JournalEntry>): Snapshot => {
  const flights = new Map<Packet.PacketId, Flight>()
  for (const flight of snapshot.flights) flights.set(flight.packet.packetId!, flight)
  const incoming = new Set(snapshot.incomingQos2)
  for (const entry of entries) {
    switch (entry._tag) {
      case "PutFlight": {
        const id = entry.flight.packet.packetId!
        // A flight's new stage moves it to the end, as in the live map (PUBREL order, [MQTT-4.6.0-4]).
        flights.delete(id)
        flights.set(id, entry.flight)
        break
      }
      case "RemoveFlight":
        flights.delete(entry.packetId)
        break
      case "AddIncoming":
        incoming.add(entry.packetId)
        break
      case "RemoveIncoming":
        incoming.delete(entry.packetId)
        break
      case "ClearIncoming":
        incoming.clear()
        break
      case "ClearOutgoing":
        flights.clear()
        break
    }
  }
  return { flights: [...flights.values()], incomingQos2: [...incoming] }
}

/** The empty list of a step's packets or completions, shared: a step per received packet allocates no empty arrays. */
const none: ReadonlyArray<never> = []

const noStep: Step = { send: none, deliver: undefined, completions: none, warning: undefined }

const sendOnly = (packet: Packet.ClientPacket): Step => ({
  send: [packet],
  deliver: undefined,
  completions: none,
  warning: undefined
})

const warn = (warning: string): Step => ({ send: none, deliver: undefined, completions: none, warning })

const MAX_PACKET_ID = 65535

const payloadError = (payload: unknown) =>
  MqttError.make(new MqttError.BadStructure({ field: "payload", value: typeof payload, detail: "must be a Uint8Array" }))

/**
 * What `publish` checks of a request before it takes a packet id: its QoS, its topic name (no wildcards
 * [MQTT-3.3.2-2] [MQTT-4.7.1-1], well-formed UTF-8, not empty) and that its payload is bytes [MQTT-3.3.1-4].
 *
 * @since 0.1.0
 */
export const validatePublish = (request: PublishRequest): MqttError.MqttError | undefined =>
  Validate.qos(request.qos, "publish") ??
    Topic.validateTopicName(request.topic) ??
    (request.payload instanceof Uint8Array ? undefined : payloadError(request.payload))

const emptyError = (field: string) =>
  MqttError.make(new MqttError.BadStructure({ field, value: 0, detail: "needs at least one topic filter [MQTT-3.8.3-3] [MQTT-3.10.3-2]" }))

/**
 * Checks the subscriptions of a SUBSCRIBE before anything is allocated or sent: at least one [MQTT-3.8.3-3], each
 * filter valid [MQTT-4.7.1-2] [MQTT-4.7.1-3], each QoS 0..2.
 *
 * @since 0.1.0
 */
export const validateSubscriptions = (
  subscriptions: ReadonlyArray<Packet.Subscription>
): MqttError.MqttError | undefined => {
  if (subscriptions.length === 0) return emptyError("subscribe")
  for (const s of subscriptions) {
    const invalid = Topic.validateTopicFilter(s.topicFilter) ?? Validate.qos(s.qos, `subscribe ${s.topicFilter}`)
    if (invalid !== undefined) return invalid
  }
  return undefined
}

const validateFilters = (topicFilters: ReadonlyArray<string>): MqttError.MqttError | undefined => {
  if (topicFilters.length === 0) return emptyError("unsubscribe")
  for (const filter of topicFilters) {
    const invalid = Topic.validateTopicFilter(filter)
    if (invalid !== undefined) return invalid
  }
  return undefined
}

/** The flights of a session with none in flight. */
const noFlights: ReadonlyMap<Packet.PacketId, Flight> = new Map()

/** The incoming QoS 2 ids of a session that never received one. */
const noPacketIds: ReadonlySet<Packet.PacketId> = new Set()

/**
 * The session state machine; see the module documentation.
 *
 * @since 0.1.0
 */
export class SessionState {
  readonly config: Config
  /** Outgoing packets awaiting acknowledgement; made for the first and dropped with the last (idle: none). */
  #outgoing: Map<Packet.PacketId, Flight> | undefined = undefined
  /** Incoming QoS 2 packet ids delivered and awaiting PUBREL [MQTT-4.3.3-2]; made on first use. */
  #incomingQos2: Set<Packet.PacketId> | undefined = undefined
  /**
   * What was queued while offline, in the order it was asked for: the packet id of an unsent flight (a QoS 1 or 2
   * publish, SUBSCRIBE, UNSUBSCRIBE), or a QoS 0 PUBLISH (when `bufferQos0`).
   */
  #offline: Array<Packet.PacketId | Packet.Publish> = []
  #offlineQos0 = 0
  #lastPacketId = 0
  /** Entries not yet taken by the store; `undefined` when nothing is persisted (no cost then). */
  #journal: Array<JournalEntry> | undefined = undefined
  #inflight = 0
  #unsent = 0
  #connected = false
  /** See `#windowFull`. */
  #windowFullError: MqttError.MqttError | undefined = undefined

  /** Outgoing packets awaiting acknowledgement, by packet id, in creation order. */
  get outgoing(): ReadonlyMap<Packet.PacketId, Flight> {
    return this.#outgoing ?? noFlights
  }

  #setFlight(id: Packet.PacketId, flight: Flight): void {
    ;(this.#outgoing ??= new Map()).set(id, flight)
  }

  #deleteFlight(id: Packet.PacketId): void {
    const outgoing = this.#outgoing
    if (outgoing !== undefined && outgoing.delete(id) && outgoing.size === 0) this.#outgoing = undefined
  }

  /** Incoming QoS 2 packet ids delivered and awaiting PUBREL [MQTT-4.3.3-2]. */
  get incomingQos2(): ReadonlySet<Packet.PacketId> {
    return this.#incomingQos2 ?? noPacketIds
  }

  /** The set of incoming QoS 2 ids, made when the first one arrives: most sessions never receive QoS 2. */
  #incoming(): Set<Packet.PacketId> {
    return this.#incomingQos2 ??= new Set()
  }

  constructor(config: Partial<Config> = {}) {
    this.config = { ...defaultConfig, ...config }
  }

  /** Starts recording `JournalEntry`s for a store (see `takeJournal`). */
  enableJournal(): void {
    this.#journal ??= []
  }

  /** The entries recorded since the last call, oldest first. */
  takeJournal(): Array<JournalEntry> {
    const journal = this.#journal
    if (journal === undefined || journal.length === 0) return []
    this.#journal = []
    return journal
  }

  /** Whether entries are waiting to be taken. */
  get journalPending(): boolean {
    return this.#journal !== undefined && this.#journal.length > 0
  }

  /**
   * Restores a stored session before the first connection: its flights (which the next `resume` resends) and its
   * incoming QoS 2 ids [MQTT-4.1.0-1].
   */
  restore(snapshot: Snapshot): void {
    for (const flight of snapshot.flights) {
      const id = flight.packet.packetId!
      this.#setFlight(id, flight)
      if (flight._tag === "Publish") this.#inflight++
      if (!flight.sent) {
        if (flight._tag === "Publish") this.#unsent++
        this.#offline.push(id)
      }
      this.#lastPacketId = id
    }
    for (const id of snapshot.incomingQos2) this.#incoming().add(id)
  }

  #putFlight(id: Packet.PacketId, flight: Flight): void {
    this.#setFlight(id, flight)
    this.#journal?.push({ _tag: "PutFlight", flight })
  }

  #removeFlight(id: Packet.PacketId): void {
    this.#deleteFlight(id)
    this.#journal?.push({ _tag: "RemoveFlight", packetId: id })
  }

  /** Whether a connection is established. */
  get isConnected(): boolean {
    return this.#connected
  }

  /** QoS 1 and 2 publishes awaiting acknowledgement (or queued while offline). */
  get inflight(): number {
    return this.#inflight
  }

  /** Publishes queued while offline and not yet sent (any QoS). */
  get buffered(): number {
    return this.#unsent + this.#offlineQos0
  }

  /** Every operation not yet complete: in-flight and queued publishes, pending subscribe and unsubscribe. */
  get pending(): number {
    return this.outgoing.size + this.#offlineQos0
  }

  /**
   * The refusal of a publish for a full window, made on the first and given to every later one (its field never
   * varies): publishers beyond the window are refused once per freed slot, and an error's stack trace costs more
   * than the publish.
   */
  #windowFull(): MqttError.MqttError {
    return this.#windowFullError ??= MqttError.make(
      new MqttError.MaxMessagesInflight({ maxInflight: this.config.maxInflight })
    )
  }

  /** Whether a QoS 1 or 2 publish would fit the in-flight window now. */
  get windowOpen(): boolean {
    return this.#inflight < this.config.maxInflight
  }

  /**
   * A currently unused packet id [MQTT-2.3.1-2]: the next after the last one given, skipping ids in use, wrapping
   * from 65535 to 1; `NoMoreMsgids` when all 65535 are in use.
   */
  #allocatePacketId(): Packet.PacketId | MqttError.MqttError {
    if (this.outgoing.size >= MAX_PACKET_ID) return MqttError.make(new MqttError.NoMoreMsgids({}))
    let id = this.#lastPacketId
    do {
      id = id >= MAX_PACKET_ID ? 1 : id + 1
    } while (this.outgoing.has(id))
    this.#lastPacketId = id
    return id
  }

  /**
   * Starts a publish. QoS 0: the packet to send now, or, offline, queued (`bufferQos0`) or `Disconnected`. QoS 1
   * and 2: a new packet id and a flight awaiting its acknowledgement; offline it is queued and sent on the next
   * connection. Fails with `MaxMessagesInflight` when the window is full (the caller waits for `windowOpen` or fails),
   * `MaxBufferedMessages` when offline and the queue is full, `NoMoreMsgids`, `Disconnected` when offline queueing is
   * off.
   *
   * @returns the PUBLISH, and whether it was queued (offline) rather than to be sent now.
   */
  publish(request: PublishRequest): Result.Result<Started, MqttError.MqttError> {
    // Checked before an id is taken.
    const invalid = validatePublish(request)
    if (invalid !== undefined) return Result.fail(invalid)
    if (!this.#connected) {
      if (this.config.maxBufferedMessages === 0 || (request.qos === 0 && !this.config.bufferQos0)) {
        return Result.fail(MqttError.make(new MqttError.Disconnected({ operation: "publish" })))
      }
      if (this.buffered >= this.config.maxBufferedMessages) {
        return Result.fail(
          MqttError.make(new MqttError.MaxBufferedMessages({ maxBufferedMessages: this.config.maxBufferedMessages }))
        )
      }
    }
    if (request.qos === 0) {
      // [MQTT-4.3.1-1] [MQTT-3.3.1-2]: QoS 0, DUP 0, no packet id [MQTT-2.3.1-5].
      const packet: Packet.Publish = {
        _tag: "Publish",
        topic: request.topic,
        payload: request.payload,
        qos: 0,
        retain: request.retain,
        dup: false
      }
      if (this.#connected) return Result.succeed({ packet, queued: false })
      this.#offline.push(packet)
      this.#offlineQos0++
      return Result.succeed({ packet, queued: true })
    }
    if (this.#inflight >= this.config.maxInflight) return Result.fail(this.#windowFull())
    const packetId = this.#allocatePacketId()
    if (typeof packetId !== "number") return Result.fail(packetId)
    // [MQTT-4.3.2-1] [MQTT-4.3.3-1]: a new packet id, DUP 0, unacknowledged until PUBACK / PUBREC.
    const packet: Packet.Publish = {
      _tag: "Publish",
      topic: request.topic,
      payload: request.payload,
      qos: request.qos,
      retain: request.retain,
      dup: false,
      packetId
    }
    const sent = this.#connected
    this.#putFlight(packetId, { _tag: "Publish", packet, stage: request.qos === 1 ? "puback" : "pubrec", sent })
    this.#inflight++
    if (!sent) {
      this.#unsent++
      this.#offline.push(packetId)
    }
    return Result.succeed({ packet, queued: !sent })
  }

  /**
   * Starts a SUBSCRIBE with a new packet id [MQTT-2.3.1-1]; offline it is sent on the next connection.
   *
   * @returns the SUBSCRIBE (send it now when connected).
   */
  subscribe(subscriptions: ReadonlyArray<Packet.Subscription>): Result.Result<Packet.Subscribe, MqttError.MqttError> {
    const invalid = validateSubscriptions(subscriptions)
    if (invalid !== undefined) return Result.fail(invalid)
    const packetId = this.#allocatePacketId()
    if (typeof packetId !== "number") return Result.fail(packetId)
    const packet: Packet.Subscribe = { _tag: "Subscribe", packetId, subscriptions }
    this.#putFlight(packetId, { _tag: "Subscribe", packet, sent: this.#connected })
    if (!this.#connected) this.#offline.push(packetId)
    return Result.succeed(packet)
  }

  /**
   * Starts an UNSUBSCRIBE with a new packet id; offline it is sent on the next connection.
   *
   * @returns the UNSUBSCRIBE (send it now when connected).
   */
  unsubscribe(topicFilters: ReadonlyArray<string>): Result.Result<Packet.Unsubscribe, MqttError.MqttError> {
    const invalid = validateFilters(topicFilters)
    if (invalid !== undefined) return Result.fail(invalid)
    const packetId = this.#allocatePacketId()
    if (typeof packetId !== "number") return Result.fail(packetId)
    const packet: Packet.Unsubscribe = { _tag: "Unsubscribe", packetId, topicFilters }
    this.#putFlight(packetId, { _tag: "Unsubscribe", packet, sent: this.#connected })
    if (!this.#connected) this.#offline.push(packetId)
    return Result.succeed(packet)
  }

  /**
   * Handles one packet from the broker (anything but CONNACK, which `resume` takes).
   */
  handle(packet: Packet.ServerPacket): Step {
    switch (packet._tag) {
      case "Publish":
        return this.#incomingPublish(packet)
      case "Pubrel":
        // [MQTT-4.3.3-2]: PUBREL frees the id and is answered with PUBCOMP, known or not. [MQTT-2.3.1-6]
        if (this.#incomingQos2 !== undefined && this.#incomingQos2.delete(packet.packetId)) {
          this.#journal?.push({ _tag: "RemoveIncoming", packetId: packet.packetId })
        }
        return sendOnly({ _tag: "Pubcomp", packetId: packet.packetId })
      case "Puback":
        return this.#ack(packet.packetId, "puback", "PUBACK")
      case "Pubrec": {
        const flight = this.outgoing.get(packet.packetId)
        if (flight?._tag !== "Publish" || flight.packet.qos !== 2 || !flight.sent) {
          return warn(`PUBREC for packet id ${packet.packetId}, which awaits no QoS 2 acknowledgement: ignored`)
        }
        // [MQTT-4.3.3-1]: PUBREC moves the flow to PUBREL (same id) [MQTT-2.3.1-6]; a repeated PUBREC is answered
        // with PUBREL again. The PUBLISH itself is never sent again. The flight moves to the end of the map, so
        // PUBRELs are resent in the order the PUBRECs arrived [MQTT-4.6.0-4] while PUBLISHes keep theirs.
        if (flight.stage === "pubrec") {
          this.#deleteFlight(packet.packetId)
          this.#putFlight(packet.packetId, { ...flight, stage: "pubcomp" })
        }
        return sendOnly({ _tag: "Pubrel", packetId: packet.packetId })
      }
      case "Pubcomp":
        return this.#ack(packet.packetId, "pubcomp", "PUBCOMP")
      case "Suback": {
        const flight = this.outgoing.get(packet.packetId)
        if (flight?._tag !== "Subscribe" || !flight.sent) {
          return warn(`SUBACK for packet id ${packet.packetId}, which awaits no SUBACK: ignored`)
        }
        // [MQTT-2.3.1-3]: the id is free again after SUBACK.
        this.#removeFlight(packet.packetId)
        const expected = flight.packet.subscriptions.length
        const returnCodes = packet.returnCodes.length === expected
          ? packet.returnCodes
          : Array.from({ length: expected }, (_, i) => packet.returnCodes[i] ?? 0x80)
        return {
          send: none,
          deliver: undefined,
          completions: [{ _tag: "Subscribed", packetId: packet.packetId, returnCodes }],
          warning: packet.returnCodes.length === expected
            ? undefined
            : `SUBACK for packet id ${packet.packetId} has ${packet.returnCodes.length} return codes for ${expected} filters`
        }
      }
      case "Unsuback": {
        const flight = this.outgoing.get(packet.packetId)
        if (flight?._tag !== "Unsubscribe" || !flight.sent) {
          return warn(`UNSUBACK for packet id ${packet.packetId}, which awaits no UNSUBACK: ignored`)
        }
        this.#removeFlight(packet.packetId)
        return {
          send: none,
          deliver: undefined,
          completions: [{ _tag: "Unsubscribed", packetId: packet.packetId }],
          warning: undefined
        }
      }
      case "Pingresp":
        return noStep
      case "Connack":
        return warn("CONNACK after the connection was established: ignored")
    }
  }

  #incomingPublish(packet: Packet.Publish): Step {
    switch (packet.qos) {
      case 0:
        return { send: none, deliver: packet, completions: none, warning: undefined }
      case 1:
        // [MQTT-4.3.2-2] [MQTT-3.3.4-1]: PUBACK with the same id; a later PUBLISH with that id is a new message.
        return {
          send: [{ _tag: "Puback", packetId: packet.packetId! }],
          deliver: packet,
          completions: none,
          warning: undefined
        }
      case 2: {
        // [MQTT-4.3.3-2]: PUBREC with the id; until PUBREL, a PUBLISH with that id is the same message: answered
        // with PUBREC again and never delivered twice.
        const packetId = packet.packetId!
        const pubrec: Packet.Pubrec = { _tag: "Pubrec", packetId }
        if (this.incomingQos2.has(packetId)) {
          return { send: [pubrec], deliver: undefined, completions: none, warning: undefined }
        }
        this.#incoming().add(packetId)
        this.#journal?.push({ _tag: "AddIncoming", packetId })
        return { send: [pubrec], deliver: packet, completions: none, warning: undefined }
      }
    }
  }

  #ack(packetId: Packet.PacketId, stage: "puback" | "pubcomp", name: string): Step {
    const flight = this.outgoing.get(packetId)
    // A flight queued offline was never sent: an acknowledgement for its id answers something else.
    if (flight?._tag !== "Publish" || flight.stage !== stage || !flight.sent) {
      return warn(`${name} for packet id ${packetId}, which awaits no ${name}: ignored`)
    }
    // [MQTT-2.3.1-3]: the id is free again after PUBACK (QoS 1) or PUBCOMP (QoS 2).
    this.#removeFlight(packetId)
    this.#inflight--
    return { send: none, deliver: undefined, completions: [{ _tag: "Published", packetId }], warning: undefined }
  }

  /**
   * A connection was established (CONNACK return code 0). Returns what to send first, in order, and the operations
   * this completes or drops.
   *
   * **Details**: with `sessionPresent`, the broker kept the session: every unacknowledged PUBLISH is resent with its
   * original id and DUP 1, every PUBLISH past PUBREC as PUBREL, in their original order [MQTT-4.4.0-1]
   * [MQTT-4.6.0-1] [MQTT-3.3.1-1]; pending SUBSCRIBE and UNSUBSCRIBE are resent. Without it the broker has no
   * session, and neither has the client [MQTT-3.1.2-6]: the incoming QoS 2 ids are forgotten, and unacknowledged
   * publishes are resent as new messages or dropped (`onSessionLost`). Publishes queued offline go out last, DUP 0.
   */
  resume(sessionPresent: boolean): Step {
    this.#connected = true
    const send: Array<Packet.ClientPacket> = []
    const completions: Array<Completion> = []
    if (!sessionPresent && this.#incomingQos2 !== undefined && this.#incomingQos2.size > 0) {
      this.#incomingQos2.clear()
      this.#journal?.push({ _tag: "ClearIncoming" })
    }
    for (const [packetId, flight] of this.outgoing) {
      // Queued offline: sent below, in the order asked for.
      if (!flight.sent) continue
      if (flight._tag !== "Publish") {
        send.push(flight.packet)
        continue
      }
      if (sessionPresent) {
        // [MQTT-4.3.3-1]: never the PUBLISH again once PUBREL was sent.
        send.push(flight.stage === "pubcomp" ? { _tag: "Pubrel", packetId } : { ...flight.packet, dup: true })
        continue
      }
      if (flight.stage === "pubcomp") {
        // The broker acknowledged with PUBREC: it owns the message and will deliver it.
        this.#removeFlight(packetId)
        this.#inflight--
        completions.push({ _tag: "Published", packetId })
      } else if (this.config.onSessionLost === "fail") {
        this.#removeFlight(packetId)
        this.#inflight--
        completions.push({
          _tag: "Dropped",
          packetId,
          error: MqttError.make(
            new MqttError.OperationIncomplete({
              operation: "publish",
              detail: "the broker started a new session before acknowledging it"
            })
          )
        })
      } else {
        // A new session: the message is new to it (DUP 0), with the id it had [MQTT-3.3.1-1].
        send.push(flight.packet)
      }
    }
    // What was queued offline goes last, DUP 0, in the order it was asked for, whatever its QoS.
    for (const item of this.#offline) {
      if (typeof item !== "number") {
        send.push(item)
        continue
      }
      const flight = this.outgoing.get(item)
      if (flight === undefined || flight.sent) continue
      this.#setFlight(item, { ...flight, sent: true })
      if (flight._tag === "Publish") this.#unsent--
      send.push(flight.packet)
    }
    this.#offline = []
    this.#offlineQos0 = 0
    return { send, deliver: undefined, completions, warning: undefined }
  }

  /** The connection was lost: until `resume`, publishes are queued (or fail) instead of sent. */
  disconnected(): void {
    this.#connected = false
  }

  /**
   * Forgets a flight just started, as if it had never been (its store write failed, so it must not be sent).
   */
  abandon(packetId: Packet.PacketId): void {
    const flight = this.outgoing.get(packetId)
    if (flight === undefined) return
    this.#deleteFlight(packetId)
    if (flight._tag === "Publish") {
      this.#inflight--
      if (!flight.sent) this.#unsent--
    }
    if (!flight.sent) this.#offline = this.#offline.filter((item) => item !== packetId)
  }

  /**
   * Drops every pending operation (forced close, or a clean session the caller will not resume): their
   * completions fail with `error()`. With `keepStored`, a store keeps the flights, to resend them on the next run.
   */
  dropAll(error: LazyArg<MqttError.MqttError>, keepStored = false): ReadonlyArray<Completion> {
    const completions: Array<Completion> = []
    // The error is made only when an operation is dropped: closing an idle client makes none.
    let made: MqttError.MqttError | undefined
    for (const packetId of this.outgoing.keys()) completions.push({ _tag: "Dropped", packetId, error: made ??= error() })
    this.#outgoing = undefined
    if (!keepStored) this.#journal?.push({ _tag: "ClearOutgoing" })
    this.#offline = []
    this.#offlineQos0 = 0
    this.#inflight = 0
    this.#unsent = 0
    return completions
  }
}
