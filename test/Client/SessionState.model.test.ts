/**
 * Model-based test of the session state machine: random interleavings of publishes, subscriptions, broker
 * acknowledgements (right, wrong, duplicated, for unknown ids), incoming publishes and PUBRELs, disconnections and
 * reconnections, run against `SessionState` while a plain reference model predicts every answer and a ledger follows
 * every message the client promised to deliver.
 *
 * Offline, broker packets are ones decoded from the lost connection and handled late; those naming a publish queued
 * offline (never sent) must be ignored. Those naming a SUBSCRIBE or UNSUBSCRIBE queued offline are covered by a
 * scenario in SessionState.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import * as fc from "fast-check"
import { isDeepStrictEqual } from "node:util"
import * as SessionState from "../../src/Client/SessionState.ts"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as MqttError from "../../src/Errors/MqttError.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------------------------------

type AckKind = "Puback" | "Pubrec" | "Pubcomp" | "Suback" | "Unsuback"

type Command =
  | { readonly _tag: "Publish"; readonly qos: number; readonly topic: string; readonly retain: boolean }
  | { readonly _tag: "Subscribe"; readonly filters: ReadonlyArray<string>; readonly qos: Packet.QoS }
  | { readonly _tag: "Unsubscribe"; readonly filters: ReadonlyArray<string> }
  /** An acknowledgement for an outstanding id (`pick` chooses which): the one it awaits, or one of another kind. */
  | { readonly _tag: "Ack"; readonly pick: number; readonly kind: AckKind | "right"; readonly codes: number }
  /** An acknowledgement for any id: mostly unknown ones, sometimes one just completed, sometimes a live one. */
  | { readonly _tag: "StrayAck"; readonly packetId: number; readonly kind: AckKind }
  /** A duplicate of an acknowledgement the broker sent before. */
  | { readonly _tag: "Replay"; readonly pick: number }
  | { readonly _tag: "Incoming"; readonly qos: Packet.QoS; readonly packetId: number; readonly dup: boolean }
  | { readonly _tag: "IncomingPubrel"; readonly packetId: number }
  | { readonly _tag: "Disconnect" }
  /** A new connection (after a disconnection, if connected); CONNACK session present or not. */
  | { readonly _tag: "Resume"; readonly sessionPresent: boolean }
  | { readonly _tag: "DropAll" }

const validTopics = ["a", "a/b", "s/1/x", "$SYS/up"]
const invalidTopics = ["a/+", "#", ""]
const validFilters = ["a/+", "#", "x", "y/#"]
const invalidFilters = ["a/#/b", "a+"]
const ackKinds: ReadonlyArray<AckKind> = ["Puback", "Pubrec", "Pubcomp", "Suback", "Unsuback"]

const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      _tag: fc.constant("Publish" as const),
      qos: fc.oneof({ weight: 20, arbitrary: fc.constantFrom(0, 1, 2) }, { weight: 1, arbitrary: fc.constant(3) }),
      topic: fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...validTopics) }, fc.constantFrom(...invalidTopics)),
      retain: fc.boolean()
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Subscribe" as const),
      filters: fc.array(
        fc.oneof({ weight: 10, arbitrary: fc.constantFrom(...validFilters) }, fc.constantFrom(...invalidFilters)),
        { maxLength: 3 }
      ),
      qos: fc.constantFrom(0, 1, 2)
    })
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Unsubscribe" as const),
      filters: fc.array(fc.constantFrom(...validFilters, ...invalidFilters), { maxLength: 2 })
    })
  },
  {
    weight: 8,
    arbitrary: fc.record({
      _tag: fc.constant("Ack" as const),
      pick: fc.nat(),
      kind: fc.oneof({ weight: 6, arbitrary: fc.constant("right" as const) }, fc.constantFrom(...ackKinds)),
      codes: fc.nat()
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("StrayAck" as const),
      packetId: fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 12 })),
      kind: fc.constantFrom(...ackKinds)
    })
  },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Replay" as const), pick: fc.nat() }) },
  {
    weight: 5,
    arbitrary: fc.record({
      _tag: fc.constant("Incoming" as const),
      qos: fc.constantFrom(0, 1, 2),
      packetId: fc.integer({ min: 1, max: 4 }),
      dup: fc.boolean()
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("IncomingPubrel" as const), packetId: fc.integer({ min: 1, max: 5 }) })
  },
  { weight: 2, arbitrary: fc.constant({ _tag: "Disconnect" as const }) },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Resume" as const), sessionPresent: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "DropAll" as const }) }
)

const configArbitrary: fc.Arbitrary<SessionState.Config> = fc.record({
  maxInflight: fc.constantFrom(1, 2, 5, 65535),
  maxBufferedMessages: fc.constantFrom(0, 1, 3, 65535),
  bufferQos0: fc.boolean(),
  onSessionLost: fc.constantFrom("resend" as const, "fail" as const)
})

// ---------------------------------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------------------------------

type ModelFlight =
  | { readonly _tag: "Publish"; readonly packet: Packet.Publish; stage: "puback" | "pubrec" | "pubcomp"; sent: boolean }
  | { readonly _tag: "Subscribe"; readonly packet: Packet.Subscribe; sent: boolean }
  | { readonly _tag: "Unsubscribe"; readonly packet: Packet.Unsubscribe; sent: boolean }

/** What the model expects a step to be; `warning` only says whether there is one. */
interface Expected {
  readonly send: ReadonlyArray<Packet.ClientPacket>
  readonly deliver: Packet.Publish | undefined
  readonly completions: ReadonlyArray<SessionState.Completion>
  readonly warning: boolean
}

const expected = (partial: Partial<Expected> = {}): Expected => ({
  send: [],
  deliver: undefined,
  completions: [],
  warning: false,
  ...partial
})

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A QoS 1 or 2 message carries its ledger token as its payload, `m<token>`. */
const tokenOf = (packet: Packet.Publish): number => Number(decoder.decode(packet.payload).slice(1))

class Model {
  readonly outgoing = new Map<Packet.PacketId, ModelFlight>()
  /** What was queued offline, in the order asked for: ids of unsent flights, and QoS 0 PUBLISHes. */
  offline: Array<Packet.PacketId | Packet.Publish> = []
  readonly incomingQos2 = new Set<Packet.PacketId>()
  connected = false
  lastPacketId = 0
  readonly config: SessionState.Config
  constructor(config: SessionState.Config) {
    this.config = config
  }

  get inflight(): number {
    let n = 0
    for (const f of this.outgoing.values()) if (f._tag === "Publish") n++
    return n
  }

  get offlineQos0(): number {
    return this.offline.filter((item) => typeof item !== "number").length
  }

  get buffered(): number {
    let n = this.offlineQos0
    for (const f of this.outgoing.values()) if (f._tag === "Publish" && !f.sent) n++
    return n
  }

  nextPacketId(): Packet.PacketId {
    let id = this.lastPacketId
    do {
      id = id === 65535 ? 1 : id + 1
    } while (this.outgoing.has(id))
    this.lastPacketId = id
    return id
  }

  /** The expected result of a publish: the failure's reason tag, or the packet and whether it is queued. */
  publish(request: SessionState.PublishRequest): MqttError.ReasonTag | SessionState.Started {
    if (request.qos !== 0 && request.qos !== 1 && request.qos !== 2) return "BadQos"
    if (invalidTopics.includes(request.topic)) return "InvalidTopic"
    if (!this.connected) {
      if (this.config.maxBufferedMessages === 0 || (request.qos === 0 && !this.config.bufferQos0)) {
        return "Disconnected"
      }
      if (this.buffered >= this.config.maxBufferedMessages) return "MaxBufferedMessages"
    }
    const base = {
      _tag: "Publish" as const,
      topic: request.topic,
      payload: request.payload,
      qos: request.qos,
      retain: request.retain,
      dup: false
    }
    if (request.qos === 0) {
      if (!this.connected) this.offline.push(base)
      return { packet: base, queued: !this.connected }
    }
    if (this.inflight >= this.config.maxInflight) return "MaxMessagesInflight"
    const packet: Packet.Publish = { ...base, packetId: this.nextPacketId() }
    const stage = request.qos === 1 ? "puback" : "pubrec"
    this.outgoing.set(packet.packetId!, { _tag: "Publish", packet, stage, sent: this.connected })
    if (!this.connected) this.offline.push(packet.packetId!)
    return { packet, queued: !this.connected }
  }

  subscribe(subscriptions: ReadonlyArray<Packet.Subscription>): MqttError.ReasonTag | Packet.Subscribe {
    if (subscriptions.length === 0) return "BadStructure"
    if (subscriptions.some((s) => invalidFilters.includes(s.topicFilter))) return "InvalidTopic"
    const packet: Packet.Subscribe = { _tag: "Subscribe", packetId: this.nextPacketId(), subscriptions }
    this.outgoing.set(packet.packetId, { _tag: "Subscribe", packet, sent: this.connected })
    if (!this.connected) this.offline.push(packet.packetId)
    return packet
  }

  unsubscribe(topicFilters: ReadonlyArray<string>): MqttError.ReasonTag | Packet.Unsubscribe {
    if (topicFilters.length === 0) return "BadStructure"
    if (topicFilters.some((f) => invalidFilters.includes(f))) return "InvalidTopic"
    const packet: Packet.Unsubscribe = { _tag: "Unsubscribe", packetId: this.nextPacketId(), topicFilters }
    this.outgoing.set(packet.packetId, { _tag: "Unsubscribe", packet, sent: this.connected })
    if (!this.connected) this.offline.push(packet.packetId)
    return packet
  }

  handle(packet: Packet.ServerPacket): Expected {
    const ignored = expected({ warning: true })
    switch (packet._tag) {
      case "Publish": {
        const id = packet.packetId!
        if (packet.qos === 0) return expected({ deliver: packet })
        if (packet.qos === 1) return expected({ send: [{ _tag: "Puback", packetId: id }], deliver: packet })
        const fresh = !this.incomingQos2.has(id)
        this.incomingQos2.add(id)
        return expected({ send: [{ _tag: "Pubrec", packetId: id }], deliver: fresh ? packet : undefined })
      }
      case "Pubrel":
        this.incomingQos2.delete(packet.packetId)
        return expected({ send: [{ _tag: "Pubcomp", packetId: packet.packetId }] })
      case "Puback":
      case "Pubcomp": {
        const f = this.outgoing.get(packet.packetId)
        const awaited = packet._tag === "Puback" ? "puback" : "pubcomp"
        if (f?._tag !== "Publish" || f.stage !== awaited || !f.sent) return ignored
        this.outgoing.delete(packet.packetId)
        return expected({ completions: [{ _tag: "Published", packetId: packet.packetId }] })
      }
      case "Pubrec": {
        const f = this.outgoing.get(packet.packetId)
        if (f?._tag !== "Publish" || f.packet.qos !== 2 || !f.sent) return ignored
        if (f.stage === "pubrec") {
          // Past PUBREC, flights are kept in PUBREC order, for the PUBRELs resent on reconnection [MQTT-4.6.0-4].
          f.stage = "pubcomp"
          this.outgoing.delete(packet.packetId)
          this.outgoing.set(packet.packetId, f)
        }
        return expected({ send: [{ _tag: "Pubrel", packetId: packet.packetId }] })
      }
      case "Suback": {
        const f = this.outgoing.get(packet.packetId)
        if (f?._tag !== "Subscribe") return ignored
        this.outgoing.delete(packet.packetId)
        const n = f.packet.subscriptions.length
        const returnCodes = f.packet.subscriptions.map((_, i) => packet.returnCodes[i] ?? 0x80)
        return expected({
          completions: [{ _tag: "Subscribed", packetId: packet.packetId, returnCodes }],
          warning: packet.returnCodes.length !== n
        })
      }
      case "Unsuback": {
        const f = this.outgoing.get(packet.packetId)
        if (f?._tag !== "Unsubscribe") return ignored
        this.outgoing.delete(packet.packetId)
        return expected({ completions: [{ _tag: "Unsubscribed", packetId: packet.packetId }] })
      }
      default:
        return ignored
    }
  }

  resume(sessionPresent: boolean): Expected {
    this.connected = true
    if (!sessionPresent) this.incomingQos2.clear()
    const send: Array<Packet.ClientPacket> = []
    const completions: Array<SessionState.Completion> = []
    // First the flights sent on an earlier connection, in map order.
    for (const [id, f] of [...this.outgoing]) {
      if (!f.sent) continue
      if (f._tag !== "Publish") {
        send.push(f.packet)
      } else if (sessionPresent) {
        send.push(f.stage === "pubcomp" ? { _tag: "Pubrel", packetId: id } : { ...f.packet, dup: true })
      } else if (f.stage === "pubcomp") {
        this.outgoing.delete(id)
        completions.push({ _tag: "Published", packetId: id })
      } else if (this.config.onSessionLost === "fail") {
        this.outgoing.delete(id)
        completions.push({ _tag: "Dropped", packetId: id, error: sessionLost })
      } else {
        send.push(f.packet)
      }
    }
    // Then what was queued offline, DUP 0, in the order asked for, whatever its QoS [MQTT-3.3.1-2].
    for (const item of this.offline) {
      if (typeof item !== "number") {
        send.push(item)
        continue
      }
      const f = this.outgoing.get(item)!
      f.sent = true
      send.push(f.packet)
    }
    this.offline = []
    return expected({ send, completions })
  }

  dropAll(error: MqttError.MqttError): ReadonlyArray<SessionState.Completion> {
    const completions = [...this.outgoing.keys()].map((packetId) => ({ _tag: "Dropped" as const, packetId, error }))
    this.outgoing.clear()
    this.offline = []
    return completions
  }
}

/** `assert.deepStrictEqual`, with a fast path: chai's comparison is slow, and runs here ~100,000 times. */
const same = <A>(actual: A, expected: A, message: string): void => {
  if (!isDeepStrictEqual(actual, expected)) assert.deepStrictEqual(actual, expected, message)
}

/** Stands for the `OperationIncomplete` error of a publish dropped by a new session; compared by reason only. */
const sessionLost = MqttError.make(new MqttError.OperationIncomplete({ operation: "publish", detail: "session lost" }))

// ---------------------------------------------------------------------------------------------------------------------
// The harness: runs a command against the state and the model, checking every property after each step
// ---------------------------------------------------------------------------------------------------------------------

interface Entry {
  readonly qos: 1 | 2
  completed: number
  outcome: "Published" | "Dropped" | undefined
  /** Sent on some connection already: a later send of it is a re-delivery. */
  everSent: boolean
  /** PUBREC received: the PUBLISH must never go out again [MQTT-4.3.3-1]. */
  pastPubrec: boolean
}

class Harness {
  readonly state: SessionState.SessionState
  readonly model: Model
  /** Every QoS 1 and 2 message the client promised to deliver, by token. */
  readonly ledger = new Map<number, Entry>()
  /** Acknowledgements the broker sent, for replays. */
  readonly history: Array<Packet.ServerPacket> = []
  /** Incoming QoS 2: deliveries of each id since its first PUBLISH, until PUBREL (or a new session). */
  readonly deliveries = new Map<Packet.PacketId, number>()
  nextToken = 0
  qos0 = 0

  readonly config: SessionState.Config

  constructor(config: SessionState.Config) {
    this.config = config
    this.state = new SessionState.SessionState(config)
    this.model = new Model(config)
  }

  /**
   * Gives `count` packet ids before the run (connected, then disconnected again), freeing all but a few of the first
   * ones, so that the run's ids wrap from 65535 to 1 and must skip the ones still in use [MQTT-2.3.1-2]. The SUBSCRIBEs
   * kept pending are the model's too.
   */
  warmUp(count: number): void {
    if (count === 0) return
    this.state.resume(false)
    for (let i = 1; i <= count; i++) {
      const result = this.state.subscribe([{ topicFilter: "warm", qos: 0 }])
      if (!Result.isSuccess(result)) assert.fail("warm-up subscribe failed")
      const packet = result.success
      if (i <= 30 && i % 3 !== 0) this.model.outgoing.set(packet.packetId, { _tag: "Subscribe", packet, sent: true })
      else this.state.handle({ _tag: "Suback", packetId: packet.packetId, returnCodes: [0] })
    }
    this.state.disconnected()
    this.model.lastPacketId = count
    this.check()
  }

  run(command: Command): void {
    switch (command._tag) {
      case "Publish":
        return this.publish(command)
      case "Subscribe":
        return this.subscribe(command.filters.map((topicFilter) => ({ topicFilter, qos: command.qos })))
      case "Unsubscribe":
        return this.unsubscribe(command.filters)
      case "Ack": {
        const ids = [...this.model.outgoing.keys()]
        if (ids.length === 0) return
        const id = ids[command.pick % ids.length]!
        return this.broker(
          command.kind === "right" ? this.rightAck(id, command.codes) : this.ack(command.kind, id, command.codes)
        )
      }
      case "StrayAck":
        return this.broker(this.ack(command.kind, command.packetId, command.packetId))
      case "Replay": {
        if (this.history.length === 0) return
        return this.broker(this.history[command.pick % this.history.length]!)
      }
      case "Incoming": {
        const payload = encoder.encode(`in${command.packetId}`)
        const base = { _tag: "Publish" as const, topic: "in", payload, retain: false }
        return this.broker(
          command.qos === 0
            ? { ...base, qos: 0, dup: false }
            : { ...base, qos: command.qos, dup: command.dup, packetId: command.packetId }
        )
      }
      case "IncomingPubrel":
        return this.broker({ _tag: "Pubrel", packetId: command.packetId })
      case "Disconnect":
        if (this.model.connected) this.disconnect()
        return
      case "Resume":
        if (this.model.connected) this.disconnect()
        return this.resume(command.sessionPresent)
      case "DropAll": {
        const error = MqttError.make(new MqttError.OperationIncomplete({ operation: "publish", detail: "closed" }))
        const tokens = this.tokensById()
        const actual = this.state.dropAll(() => error)
        assert.deepStrictEqual(actual, this.model.dropAll(error))
        this.complete(actual, tokens)
        return this.check()
      }
    }
  }

  publish(command: Extract<Command, { _tag: "Publish" }>): void {
    const token = this.nextToken++
    const qos = command.qos as Packet.QoS
    const payload = encoder.encode(qos === 0 ? `q${this.qos0++}` : `m${token}`)
    const request: SessionState.PublishRequest = { topic: command.topic, payload, qos, retain: command.retain }
    const before = new Set(this.model.outgoing.keys())
    const connected = this.model.connected
    const want = this.model.publish(request)
    const actual = this.state.publish(request)
    if (typeof want === "string") {
      assert.isTrue(Result.isFailure(actual), `publish should fail with ${want}`)
      if (Result.isFailure(actual)) assert.strictEqual(actual.failure.reason._tag, want, actual.failure.message)
      return this.check()
    }
    assert.isTrue(Result.isSuccess(actual), Result.isFailure(actual) ? actual.failure.message : "")
    if (!Result.isSuccess(actual)) return
    same(actual.success, want, "publish")
    // Offline, nothing is to be sent: the publish is queued for the next connection.
    assert.strictEqual(actual.success.queued, !connected)
    const packetId = actual.success.packet.packetId
    if (qos === 0) {
      assert.isUndefined(packetId) // [MQTT-2.3.1-5]
    } else {
      this.assertNewId(packetId, before)
      this.ledger.set(token, { qos, completed: 0, outcome: undefined, everSent: false, pastPubrec: false })
    }
    if (!actual.success.queued) this.sent([actual.success.packet], false)
    this.check()
  }

  subscribe(subscriptions: ReadonlyArray<Packet.Subscription>): void {
    const before = new Set(this.model.outgoing.keys())
    const want = this.model.subscribe(subscriptions)
    const actual = this.state.subscribe(subscriptions)
    if (typeof want === "string") {
      assert.isTrue(Result.isFailure(actual) && actual.failure.reason._tag === want, `subscribe should fail: ${want}`)
    } else {
      assert.isTrue(Result.isSuccess(actual))
      if (Result.isSuccess(actual)) {
        assert.deepStrictEqual(actual.success, want)
        this.assertNewId(actual.success.packetId, before)
      }
    }
    this.check()
  }

  unsubscribe(topicFilters: ReadonlyArray<string>): void {
    const before = new Set(this.model.outgoing.keys())
    const want = this.model.unsubscribe(topicFilters)
    const actual = this.state.unsubscribe(topicFilters)
    if (typeof want === "string") {
      assert.isTrue(Result.isFailure(actual) && actual.failure.reason._tag === want, `unsubscribe should fail: ${want}`)
    } else {
      assert.isTrue(Result.isSuccess(actual))
      if (Result.isSuccess(actual)) {
        assert.deepStrictEqual(actual.success, want)
        this.assertNewId(actual.success.packetId, before)
      }
    }
    this.check()
  }

  /** [MQTT-2.3.1-1] [MQTT-2.3.1-2]: a non-zero 16-bit id that no outstanding operation holds. */
  assertNewId(packetId: number | undefined, inUse: ReadonlySet<number>): void {
    assert.isTrue(Number.isInteger(packetId) && packetId! >= 1 && packetId! <= 65535, `packet id ${packetId}`)
    assert.isFalse(inUse.has(packetId!), `packet id ${packetId} given to two outstanding operations`)
  }

  /** The acknowledgement the flight awaits, as a well-behaved broker sends it. */
  rightAck(packetId: Packet.PacketId, codes: number): Packet.ServerPacket {
    const f = this.model.outgoing.get(packetId)!
    switch (f._tag) {
      case "Publish":
        return f.stage === "puback"
          ? { _tag: "Puback", packetId }
          : f.stage === "pubrec"
          ? { _tag: "Pubrec", packetId }
          : { _tag: "Pubcomp", packetId }
      case "Subscribe": {
        // Now and then with the wrong number of return codes.
        if (codes % 5 === 0) return this.ack("Suback", packetId, codes / 5)
        const returnCodes = f.packet.subscriptions.map((_, i) => ([0, 1, 2, 0x80] as const)[(codes + i) % 4]!)
        return { _tag: "Suback", packetId, returnCodes }
      }
      case "Unsubscribe":
        return { _tag: "Unsuback", packetId }
    }
  }

  ack(kind: AckKind, packetId: Packet.PacketId, codes: number): Packet.ServerPacket {
    if (kind !== "Suback") return { _tag: kind, packetId }
    const returnCodes = Array.from({ length: codes % 4 }, (_, i) => ([0, 1, 2, 0x80] as const)[(codes + i) % 4]!)
    return { _tag: "Suback", packetId, returnCodes }
  }

  /** A packet from the broker; offline, it is one decoded from the lost connection and handled late. */
  broker(packet: Packet.ServerPacket): void {
    const isAck = packet._tag !== "Publish" && packet._tag !== "Pubrel" && "packetId" in packet
    // See the module documentation: no acknowledgement naming a SUBSCRIBE or UNSUBSCRIBE that was never sent.
    const named = isAck ? this.model.outgoing.get(packet.packetId) : undefined
    if (named !== undefined && named._tag !== "Publish" && !named.sent) return
    const tokens = this.tokensById()
    if (isAck) this.history.push(packet)
    const before = packet._tag === "Publish" && packet.qos === 2 ? this.model.incomingQos2.has(packet.packetId!) : false
    const want = this.model.handle(packet)
    const actual = this.state.handle(packet)
    same({ ...actual, warning: actual.warning !== undefined }, want, `handle ${packet._tag}`)
    if (packet._tag === "Publish" && packet.qos === 2) {
      // [MQTT-4.3.3-2]: delivered exactly once between the first PUBLISH and PUBREL, whatever the duplicates.
      const id = packet.packetId!
      const count = (before ? this.deliveries.get(id) ?? 0 : 0) + (actual.deliver === undefined ? 0 : 1)
      assert.strictEqual(count, 1, `incoming QoS 2 id ${id} delivered ${count} times before PUBREL`)
      this.deliveries.set(id, count)
    }
    if (packet._tag === "Pubrel") this.deliveries.delete(packet.packetId)
    this.complete(actual.completions, tokens)
    this.markPastPubrec()
    // Offline the answers cannot go out: the next `resume` must make up for them.
    if (this.model.connected) this.sent(actual.send, false)
    this.check()
  }

  disconnect(): void {
    this.state.disconnected()
    this.model.connected = false
    this.check()
  }

  resume(sessionPresent: boolean): void {
    const tokens = this.tokensById()
    const want = this.model.resume(sessionPresent)
    const actual = this.state.resume(sessionPresent)
    const dropped = (c: SessionState.Completion) => c._tag === "Dropped" ? { ...c, error: c.error.reason._tag } : c
    assert.deepStrictEqual(
      { ...actual, warning: actual.warning !== undefined, completions: actual.completions.map(dropped) },
      { ...want, completions: want.completions.map(dropped) },
      `resume(${sessionPresent})`
    )
    if (!sessionPresent) this.deliveries.clear()
    this.complete(actual.completions, tokens)
    this.sent(actual.send, sessionPresent)
    this.check()
  }

  /**
   * What each outstanding packet id names, before a step (the model is in step with the state): a publish's message
   * token, or `"subscription"` for a SUBSCRIBE or UNSUBSCRIBE.
   */
  tokensById(): Map<Packet.PacketId, number | "subscription"> {
    const tokens = new Map<Packet.PacketId, number | "subscription">()
    for (const [id, f] of this.model.outgoing) tokens.set(id, f._tag === "Publish" ? tokenOf(f.packet) : "subscription")
    return tokens
  }

  /** Every completion of a publish names a message that was outstanding, and completes it once [MQTT-2.3.1-3]. */
  complete(
    completions: ReadonlyArray<SessionState.Completion>,
    tokens: ReadonlyMap<Packet.PacketId, number | "subscription">
  ): void {
    for (const c of completions) {
      const token = tokens.get(c.packetId)
      assert.isDefined(token, `${c._tag} for packet id ${c.packetId}, which names no outstanding operation`)
      if (c._tag === "Subscribed" || c._tag === "Unsubscribed") {
        assert.strictEqual(token, "subscription", `${c._tag} for a publish, id ${c.packetId}`)
        continue
      }
      if (token === "subscription") {
        assert.strictEqual(c._tag, "Dropped", `${c._tag} for a subscription, id ${c.packetId}`)
        continue
      }
      const entry = this.ledger.get(token!)!
      entry.completed++
      entry.outcome = c._tag
      assert.strictEqual(entry.completed, 1, `message ${token} completed twice`)
    }
  }

  outstanding(): Set<number> {
    const tokens = new Set<number>()
    for (const f of this.state.outgoing.values()) if (f._tag === "Publish") tokens.add(tokenOf(f.packet))
    return tokens
  }

  markPastPubrec(): void {
    for (const f of this.model.outgoing.values()) {
      if (f._tag === "Publish" && f.stage === "pubcomp") this.ledger.get(tokenOf(f.packet))!.pastPubrec = true
    }
  }

  /** Checks what goes on the wire: [MQTT-4.3.3-1] [MQTT-3.3.1-1] [MQTT-3.3.1-2] [MQTT-4.3.2-1]. */
  sent(packets: ReadonlyArray<Packet.ClientPacket>, resumedSession: boolean): void {
    assert.isTrue(this.model.connected, "nothing is sent while offline")
    for (const p of packets) {
      if (p._tag !== "Publish") continue
      if (p.qos === 0) {
        assert.isFalse(p.dup, "QoS 0 PUBLISH with DUP 1")
        continue
      }
      const entry = this.ledger.get(tokenOf(p))!
      assert.isFalse(entry.pastPubrec, `PUBLISH ${p.packetId} sent again after PUBREC [MQTT-4.3.3-1]`)
      const flight = this.model.outgoing.get(p.packetId!)
      assert.isFalse(flight?._tag === "Publish" && flight.stage === "pubcomp", `PUBLISH ${p.packetId} in pubcomp stage`)
      // DUP 1 exactly when re-delivering to a broker that kept the session.
      assert.strictEqual(p.dup, resumedSession && entry.everSent, `PUBLISH ${p.packetId} DUP ${p.dup}`)
      entry.everSent = true
    }
  }

  /** The state and the model agree; the counters follow from the outgoing map; no message is lost. */
  check(): void {
    const { model, state } = this
    same([...state.outgoing.keys()], [...model.outgoing.keys()], "outgoing ids")
    for (const [id, f] of state.outgoing) {
      assert.isTrue(Number.isInteger(id) && id >= 1 && id <= 65535, `packet id ${id}`)
      same<SessionState.Flight>(f, { ...model.outgoing.get(id)! }, `flight ${id}`)
    }
    same([...state.incomingQos2].sort(), [...model.incomingQos2].sort(), "incoming QoS 2 ids")
    assert.strictEqual(state.isConnected, model.connected, "isConnected")
    assert.strictEqual(state.inflight, model.inflight, "inflight")
    assert.isAtMost(state.inflight, this.config.maxInflight, "inflight ≤ maxInflight")
    assert.strictEqual(state.windowOpen, state.inflight < this.config.maxInflight, "windowOpen")
    assert.strictEqual(state.buffered, model.buffered, "buffered")
    assert.strictEqual(state.pending, model.outgoing.size + model.offlineQos0, "pending")
    // Never lost, never completed twice: each message is outstanding or completed, not both.
    const outstanding = this.outstanding()
    for (const [token, entry] of this.ledger) {
      assert.strictEqual(
        (outstanding.has(token) ? 1 : 0) + entry.completed,
        1,
        `message ${token}: outstanding ${outstanding.has(token)}, completed ${entry.completed}`
      )
    }
  }

  /** A well-behaved broker acknowledges everything, with a reconnection (session present) halfway. */
  drain(sessionPresent: boolean, reconnectAt: number): void {
    if (!this.model.connected) this.resume(sessionPresent)
    for (let round = 0; this.model.outgoing.size > 0; round++) {
      assert.isBelow(round, 10_000, "drain does not terminate")
      if (round === reconnectAt) {
        this.disconnect()
        this.resume(true)
      }
      const [id] = this.model.outgoing.keys()
      this.broker(this.rightAck(id!, 1))
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------------------------------

describe("SessionState model", () => {
  // [MQTT-2.3.1-1] [MQTT-2.3.1-2] [MQTT-2.3.1-3] [MQTT-2.3.1-5] [MQTT-2.3.1-6] [MQTT-3.3.1-1] [MQTT-3.3.1-2]
  // [MQTT-4.1.0-1] [MQTT-4.3.2-1] [MQTT-4.3.2-2] [MQTT-4.3.3-1] [MQTT-4.3.3-2] [MQTT-4.4.0-1] [MQTT-4.6.0-1]
  // [MQTT-4.6.0-4] [MQTT-3.1.2-6]
  it("[MQTT-2.3.1-2] [MQTT-4.3.3-1] [MQTT-4.3.3-2] random interleavings match the model; none lost or twice", () => {
    fc.assert(
      fc.property(
        configArbitrary,
        fc.array(commandArbitrary, { maxLength: 150, size: "max" }),
        fc.boolean(),
        fc.nat({ max: 20 }),
        fc.oneof({ weight: 7, arbitrary: fc.constant(0) }, fc.integer({ min: 65510, max: 65535 })),
        (config, commands, sessionPresent, reconnectAt, warmUp) => {
          const harness = new Harness(config)
          harness.check()
          harness.warmUp(warmUp)
          for (const command of commands) harness.run(command)
          harness.drain(sessionPresent, reconnectAt)
          // Everything the client promised is settled, exactly once.
          assert.strictEqual(harness.state.pending, 0)
          assert.strictEqual(harness.state.inflight, 0)
          assert.strictEqual(harness.state.buffered, 0)
          for (const [token, entry] of harness.ledger) {
            assert.strictEqual(entry.completed, 1, `message ${token} completed ${entry.completed} times`)
          }
        }
      ),
      { numRuns: 400 }
    )
  })

  it("[MQTT-4.3.3-1] [MQTT-4.4.0-1] [MQTT-4.6.0-1] sessions kept, acks delivered: each message Published once", () => {
    const kept = commandArbitrary.filter((c) => c._tag !== "DropAll" && !(c._tag === "Resume" && !c.sessionPresent))
    fc.assert(
      fc.property(
        configArbitrary,
        fc.array(kept, { maxLength: 150, size: "max" }),
        fc.nat({ max: 20 }),
        (config, commands, reconnectAt) => {
          const harness = new Harness(config)
          // The first connection: no session to lose yet.
          for (const command of commands) harness.run(command)
          harness.drain(true, reconnectAt)
          for (const [token, entry] of harness.ledger) {
            assert.strictEqual(entry.outcome, "Published", `message ${token}`)
            assert.strictEqual(entry.completed, 1, `message ${token}`)
          }
        }
      ),
      { numRuns: 300 }
    )
  })

  it("[MQTT-3.1.2-6] with onSessionLost \"resend\" and no dropAll, no message is ever Dropped", () => {
    const noDrop = commandArbitrary.filter((c) => c._tag !== "DropAll")
    fc.assert(
      fc.property(
        configArbitrary.map((c) => ({ ...c, onSessionLost: "resend" as const })),
        fc.array(noDrop, { maxLength: 150, size: "max" }),
        fc.boolean(),
        fc.nat({ max: 20 }),
        (config, commands, sessionPresent, reconnectAt) => {
          const harness = new Harness(config)
          for (const command of commands) harness.run(command)
          harness.drain(sessionPresent, reconnectAt)
          for (const [token, entry] of harness.ledger) {
            assert.strictEqual(entry.outcome, "Published", `message ${token}`)
          }
        }
      ),
      { numRuns: 300 }
    )
  })
})
