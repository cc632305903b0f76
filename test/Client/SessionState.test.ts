/**
 * Scenario tables for the session state machine, in the style of rumqttc's `MqttState` tests: each test is a
 * sequence of inputs (a publish request, a packet from the broker, a new connection) with the exact packets to
 * send, the message to deliver, the operations completed and the warning, plus the counters after each step.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import * as SessionState from "../../src/Client/SessionState.ts"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as MqttError from "../../src/Errors/MqttError.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Packets and requests
// ---------------------------------------------------------------------------------------------------------------------

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

const request = (
  qos: Packet.QoS,
  topic: string = "a/b",
  payload: string = "m",
  retain: boolean = false
): SessionState.PublishRequest => ({ topic, payload: bytes(payload), qos, retain })

/** A PUBLISH exactly as the state machine builds it: no `packetId` key at QoS 0 [MQTT-2.3.1-5]. */
const publish = (
  qos: Packet.QoS,
  packetId: Packet.PacketId | undefined,
  options: {
    readonly topic?: string
    readonly payload?: string
    readonly dup?: boolean
    readonly retain?: boolean
  } = {}
): Packet.Publish => {
  const base = {
    _tag: "Publish" as const,
    topic: options.topic ?? "a/b",
    payload: bytes(options.payload ?? "m"),
    qos,
    retain: options.retain ?? false,
    dup: options.dup ?? false
  }
  return packetId === undefined ? base : { ...base, packetId }
}

const puback = (packetId: Packet.PacketId): Packet.Puback => ({ _tag: "Puback", packetId })
const pubrec = (packetId: Packet.PacketId): Packet.Pubrec => ({ _tag: "Pubrec", packetId })
const pubrel = (packetId: Packet.PacketId): Packet.Pubrel => ({ _tag: "Pubrel", packetId })
const pubcomp = (packetId: Packet.PacketId): Packet.Pubcomp => ({ _tag: "Pubcomp", packetId })
const suback = (packetId: Packet.PacketId, returnCodes: ReadonlyArray<Packet.SubackReturnCode>): Packet.Suback => ({
  _tag: "Suback",
  packetId,
  returnCodes
})
const unsuback = (packetId: Packet.PacketId): Packet.Unsuback => ({ _tag: "Unsuback", packetId })
const subscribePacket = (
  packetId: Packet.PacketId,
  subscriptions: ReadonlyArray<Packet.Subscription>
): Packet.Subscribe => ({ _tag: "Subscribe", packetId, subscriptions })
const unsubscribePacket = (packetId: Packet.PacketId, topicFilters: ReadonlyArray<string>): Packet.Unsubscribe => ({
  _tag: "Unsubscribe",
  packetId,
  topicFilters
})

const published = (packetId: Packet.PacketId): SessionState.Completion => ({ _tag: "Published", packetId })

/** A full expected step: every field not given is empty. */
const step = (expected: Partial<SessionState.Step> = {}): SessionState.Step => ({
  send: [],
  deliver: undefined,
  completions: [],
  warning: undefined,
  ...expected
})

/** The step for an acknowledgement that names nothing awaiting it (the exact texts are pinned in one table below). */
const unknown = (name: "PUBACK" | "PUBREC" | "PUBCOMP" | "SUBACK" | "UNSUBACK", packetId: Packet.PacketId) =>
  step({
    warning: `${name} for packet id ${packetId}, which awaits no ${
      name === "PUBREC" ? "QoS 2 acknowledgement" : name
    }: ignored`
  })

// ---------------------------------------------------------------------------------------------------------------------
// Scenario tables
// ---------------------------------------------------------------------------------------------------------------------

interface Failure {
  readonly fail: MqttError.ReasonTag
  readonly code: number
}

const fails = (fail: MqttError.ReasonTag, code: number): Failure => ({ fail, code })

interface Counters {
  readonly inflight?: number
  readonly buffered?: number
  readonly pending?: number
  readonly windowOpen?: boolean
  readonly isConnected?: boolean
  /** The outgoing packet ids, in creation order. */
  readonly outgoing?: ReadonlyArray<Packet.PacketId>
  readonly incomingQos2?: ReadonlyArray<Packet.PacketId>
}

/**
 * What `publish` should answer: a bare PUBLISH is one to send now (`queued: false`); `queued(packet)` one kept for the
 * next connection, which the caller must not send (`queued: true`).
 */
interface Queued {
  readonly queued: Packet.Publish
}

const queued = (packet: Packet.Publish): Queued => ({ queued: packet })

const started = (expected: Packet.Publish | Queued): SessionState.Started =>
  "queued" in expected ? { packet: expected.queued, queued: true } : { packet: expected, queued: false }

type Row =
  | { readonly publish: SessionState.PublishRequest; readonly result: Packet.Publish | Queued | Failure }
  | { readonly subscribe: ReadonlyArray<Packet.Subscription>; readonly result: Packet.Subscribe | Failure }
  | { readonly unsubscribe: ReadonlyArray<string>; readonly result: Packet.Unsubscribe | Failure }
  /** A packet from the broker; `unchanged` asserts the state is exactly as before. */
  | { readonly handle: Packet.ServerPacket; readonly step: SessionState.Step; readonly unchanged?: boolean }
  | { readonly resume: boolean; readonly step: SessionState.Step }
  | { readonly disconnected: true }
  | { readonly expect: Counters }

const isFailure = (value: unknown): value is Failure =>
  typeof value === "object" && value !== null && "fail" in value && "code" in value

const assertResult = <A>(actual: Result.Result<A, MqttError.MqttError>, expected: A | Failure, label: string) => {
  if (isFailure(expected)) {
    assert.isTrue(Result.isFailure(actual), `${label}: expected ${expected.fail}, got success`)
    if (Result.isFailure(actual)) {
      assert.isTrue(MqttError.isMqttError(actual.failure), label)
      assert.strictEqual(actual.failure.reason._tag, expected.fail, `${label}: ${actual.failure.message}`)
      assert.strictEqual(actual.failure.code, expected.code, label)
    }
    return
  }
  assert.isTrue(
    Result.isSuccess(actual),
    `${label}: expected success, got ${Result.isFailure(actual) ? actual.failure.message : ""}`
  )
  if (Result.isSuccess(actual)) assert.deepStrictEqual(actual.success, expected, label)
}

/** Everything observable about a state, to assert that an ignored packet left it unchanged. */
const snapshot = (state: SessionState.SessionState) => ({
  outgoing: [...state.outgoing.entries()].map(([id, flight]) => [id, { ...flight }]),
  incomingQos2: [...state.incomingQos2],
  inflight: state.inflight,
  buffered: state.buffered,
  pending: state.pending,
  windowOpen: state.windowOpen,
  isConnected: state.isConnected
})

const assertCounters = (state: SessionState.SessionState, expected: Counters, label: string) => {
  if (expected.inflight !== undefined) assert.strictEqual(state.inflight, expected.inflight, `${label}: inflight`)
  if (expected.buffered !== undefined) assert.strictEqual(state.buffered, expected.buffered, `${label}: buffered`)
  if (expected.pending !== undefined) assert.strictEqual(state.pending, expected.pending, `${label}: pending`)
  if (expected.windowOpen !== undefined) assert.strictEqual(state.windowOpen, expected.windowOpen, `${label}: window`)
  if (expected.isConnected !== undefined) {
    assert.strictEqual(state.isConnected, expected.isConnected, `${label}: isConnected`)
  }
  if (expected.outgoing !== undefined) {
    assert.deepStrictEqual([...state.outgoing.keys()], expected.outgoing, `${label}: outgoing ids`)
  }
  if (expected.incomingQos2 !== undefined) {
    assert.deepStrictEqual([...state.incomingQos2], expected.incomingQos2, `${label}: incoming QoS 2 ids`)
  }
}

/** Runs a table against a state, asserting every row; returns the state for further checks. */
const run = (state: SessionState.SessionState, rows: ReadonlyArray<Row>): SessionState.SessionState => {
  rows.forEach((row, i) => {
    const label = `row ${i} (${Object.keys(row)[0]})`
    if ("publish" in row) {
      assertResult(state.publish(row.publish), isFailure(row.result) ? row.result : started(row.result), label)
    } else if ("subscribe" in row) {
      assertResult(state.subscribe(row.subscribe), row.result, label)
    } else if ("unsubscribe" in row) {
      assertResult(state.unsubscribe(row.unsubscribe), row.result, label)
    } else if ("handle" in row) {
      const before = row.unchanged === true ? snapshot(state) : undefined
      assert.deepStrictEqual(state.handle(row.handle), row.step, label)
      if (before !== undefined) assert.deepStrictEqual(snapshot(state), before, `${label}: state changed`)
    } else if ("resume" in row) {
      assert.deepStrictEqual(state.resume(row.resume), row.step, label)
    } else if ("disconnected" in row) {
      state.disconnected()
    } else {
      assertCounters(state, row.expect, label)
    }
  })
  return state
}

/** A state on an established connection with a fresh session. */
const connected = (config: Partial<SessionState.Config> = {}): SessionState.SessionState =>
  run(new SessionState.SessionState(config), [{ resume: false, step: step() }])

const idle: Counters = { inflight: 0, buffered: 0, pending: 0, windowOpen: true, outgoing: [] }

// ---------------------------------------------------------------------------------------------------------------------
// Outgoing publishes
// ---------------------------------------------------------------------------------------------------------------------

describe("SessionState outgoing QoS 0", () => {
  it("[MQTT-4.3.1-1] [MQTT-3.3.1-2] [MQTT-2.3.1-5] QoS 0: PUBLISH QoS 0, DUP 0, no id, nothing kept", () => {
    run(connected(), [
      { publish: request(0), result: publish(0, undefined) },
      {
        publish: request(0, "x/y", "hello", true),
        result: publish(0, undefined, { topic: "x/y", payload: "hello", retain: true })
      },
      { expect: idle },
      // QoS 0 takes no id: the first id is still 1.
      { publish: request(1), result: publish(1, 1) }
    ])
  })

  it("[MQTT-4.3.1-1] QoS 0 publishes are not limited by the in-flight window", () => {
    run(connected({ maxInflight: 1 }), [
      { publish: request(1), result: publish(1, 1) },
      { expect: { windowOpen: false } },
      { publish: request(0), result: publish(0, undefined) }
    ])
  })
})

describe("SessionState outgoing QoS 1", () => {
  it("[MQTT-4.3.2-1] [MQTT-2.3.1-1] [MQTT-2.3.1-3] PUBLISH id 1 DUP 0; PUBACK completes it, frees the id", () => {
    const state = run(connected(), [
      { publish: request(1), result: publish(1, 1) },
      { expect: { inflight: 1, buffered: 0, pending: 1, windowOpen: true, outgoing: [1] } },
      { handle: puback(1), step: step({ completions: [published(1)] }) },
      { expect: idle },
      // Acknowledged: a second PUBACK for it is a duplicate.
      { handle: puback(1), step: unknown("PUBACK", 1), unchanged: true },
      { publish: request(1, "a/b", "next"), result: publish(1, 2, { payload: "next" }) }
    ])
    assert.isFalse(state.outgoing.has(1))
  })

  it("[MQTT-4.3.2-1] the flight keeps the packet as sent, stage puback", () => {
    const state = run(connected(), [
      { publish: request(1, "t", "x", true), result: publish(1, 1, { topic: "t", payload: "x", retain: true }) }
    ])
    assert.deepStrictEqual(state.outgoing.get(1), {
      _tag: "Publish",
      packet: publish(1, 1, { topic: "t", payload: "x", retain: true }),
      stage: "puback",
      sent: true
    })
  })

  it("[MQTT-2.3.1-6] PUBACKs complete the flight they name, in any order", () => {
    run(connected(), [
      { publish: request(1, "a", "1"), result: publish(1, 1, { topic: "a", payload: "1" }) },
      { publish: request(1, "a", "2"), result: publish(1, 2, { topic: "a", payload: "2" }) },
      { publish: request(1, "a", "3"), result: publish(1, 3, { topic: "a", payload: "3" }) },
      { handle: puback(2), step: step({ completions: [published(2)] }) },
      { expect: { inflight: 2, pending: 2, outgoing: [1, 3] } },
      { handle: puback(3), step: step({ completions: [published(3)] }) },
      { handle: puback(1), step: step({ completions: [published(1)] }) },
      { expect: idle }
    ])
  })

  it("[MQTT-4.3.2-1] PUBREC and PUBCOMP for a QoS 1 flight are ignored with a warning", () => {
    run(connected(), [
      { publish: request(1), result: publish(1, 1) },
      { handle: pubrec(1), step: unknown("PUBREC", 1), unchanged: true },
      { handle: pubcomp(1), step: unknown("PUBCOMP", 1), unchanged: true },
      { handle: puback(1), step: step({ completions: [published(1)] }) }
    ])
  })
})

describe("SessionState outgoing QoS 2", () => {
  it("[MQTT-4.3.3-1] [MQTT-2.3.1-6] PUBLISH DUP 0 → PUBREC → PUBREL (same id) → PUBCOMP completes; id free", () => {
    const state = run(connected(), [
      { publish: request(2), result: publish(2, 1) },
      { expect: { inflight: 1, pending: 1, outgoing: [1] } },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      // Still in flight until PUBCOMP [MQTT-2.3.1-3].
      { expect: { inflight: 1, pending: 1, outgoing: [1] } }
    ])
    const flight = state.outgoing.get(1)
    assert.strictEqual(flight?._tag === "Publish" ? flight.stage : undefined, "pubcomp")
    run(state, [
      { handle: pubcomp(1), step: step({ completions: [published(1)] }) },
      { expect: idle },
      { handle: pubcomp(1), step: unknown("PUBCOMP", 1), unchanged: true }
    ])
  })

  it("[MQTT-4.3.3-1] a duplicate PUBREC in the pubcomp stage is answered with PUBREL again, never PUBLISH", () => {
    run(connected(), [
      { publish: request(2), result: publish(2, 1) },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      { expect: { inflight: 1, pending: 1, outgoing: [1] } },
      { handle: pubcomp(1), step: step({ completions: [published(1)] }) },
      { expect: idle }
    ])
  })

  it("[MQTT-4.3.3-1] PUBACK for a QoS 2 flight is ignored with a warning, in either stage", () => {
    run(connected(), [
      { publish: request(2), result: publish(2, 1) },
      { handle: puback(1), step: unknown("PUBACK", 1), unchanged: true },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      { handle: puback(1), step: unknown("PUBACK", 1), unchanged: true },
      { expect: { inflight: 1, outgoing: [1] } }
    ])
  })

  it("[MQTT-4.3.3-1] PUBCOMP before PUBREC is ignored: the flow still awaits PUBREC", () => {
    run(connected(), [
      { publish: request(2), result: publish(2, 1) },
      { handle: pubcomp(1), step: unknown("PUBCOMP", 1), unchanged: true },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      { handle: pubcomp(1), step: step({ completions: [published(1)] }) }
    ])
  })

  it("[MQTT-4.6.0-4] PUBRELs go out in the order the PUBRECs arrive", () => {
    const state = connected()
    for (const id of [1, 2, 3]) {
      run(state, [{ publish: request(2, "a", `${id}`), result: publish(2, id, { topic: "a", payload: `${id}` }) }])
    }
    const sent = [3, 1, 2].flatMap((id) => state.handle(pubrec(id)).send)
    assert.deepStrictEqual(sent, [pubrel(3), pubrel(1), pubrel(2)])
  })

  // Only visible with a broker that acknowledges out of order (itself a breach of [MQTT-4.6.0-3]); the client's rule
  // binds the client all the same. (Was a bug: PUBRELs were resent in PUBLISH order.)
  it("[MQTT-4.6.0-4] [MQTT-4.4.0-1] [MQTT-4.6.0-1] resent PUBRELs keep the PUBREC order, PUBLISHes theirs", () => {
    const state = connected()
    for (const id of [1, 2, 3, 4, 5]) state.publish(request(2, "a", `${id}`))
    for (const id of [4, 1, 3]) state.handle(pubrec(id))
    state.disconnected()
    assert.deepStrictEqual(state.resume(true).send, [
      publish(2, 2, { topic: "a", payload: "2", dup: true }),
      publish(2, 5, { topic: "a", payload: "5", dup: true }),
      pubrel(4),
      pubrel(1),
      pubrel(3)
    ])
  })
})

describe("SessionState acknowledgements for unknown packet ids", () => {
  const table: ReadonlyArray<readonly [Packet.ServerPacket, string]> = [
    [puback(9), "PUBACK for packet id 9, which awaits no PUBACK: ignored"],
    [pubcomp(9), "PUBCOMP for packet id 9, which awaits no PUBCOMP: ignored"],
    [pubrec(9), "PUBREC for packet id 9, which awaits no QoS 2 acknowledgement: ignored"],
    [suback(9, [0]), "SUBACK for packet id 9, which awaits no SUBACK: ignored"],
    [unsuback(9), "UNSUBACK for packet id 9, which awaits no UNSUBACK: ignored"]
  ]

  it("[MQTT-2.3.1-6] an acknowledgement for an id awaiting nothing: a warning, nothing sent, state unchanged", () => {
    for (const [packet, warning] of table) {
      // With other flights outstanding, so that "unchanged" means something.
      const state = run(connected(), [
        { publish: request(1), result: publish(1, 1) },
        { publish: request(2), result: publish(2, 2) },
        { subscribe: [{ topicFilter: "s/#", qos: 1 }], result: subscribePacket(3, [{ topicFilter: "s/#", qos: 1 }]) },
        { unsubscribe: ["u"], result: unsubscribePacket(4, ["u"]) }
      ])
      run(state, [
        { handle: packet, step: step({ warning }), unchanged: true },
        { expect: { inflight: 2, pending: 4, outgoing: [1, 2, 3, 4] } }
      ])
    }
  })

  it("[MQTT-2.3.1-6] an acknowledgement of the wrong kind for a known id is ignored with a warning", () => {
    const state = run(connected(), [
      { publish: request(1), result: publish(1, 1) },
      { subscribe: [{ topicFilter: "s", qos: 0 }], result: subscribePacket(2, [{ topicFilter: "s", qos: 0 }]) },
      { unsubscribe: ["u"], result: unsubscribePacket(3, ["u"]) }
    ])
    run(state, [
      { handle: suback(1, [0]), step: unknown("SUBACK", 1), unchanged: true },
      { handle: unsuback(1), step: unknown("UNSUBACK", 1), unchanged: true },
      { handle: puback(2), step: unknown("PUBACK", 2), unchanged: true },
      { handle: pubrec(2), step: unknown("PUBREC", 2), unchanged: true },
      { handle: unsuback(2), step: unknown("UNSUBACK", 2), unchanged: true },
      { handle: suback(3, [0]), step: unknown("SUBACK", 3), unchanged: true },
      { handle: pubcomp(3), step: unknown("PUBCOMP", 3), unchanged: true },
      { expect: { inflight: 1, pending: 3, outgoing: [1, 2, 3] } }
    ])
  })

  it("PINGRESP does nothing; a second CONNACK is ignored with a warning", () => {
    run(connected(), [
      { publish: request(1), result: publish(1, 1) },
      { handle: { _tag: "Pingresp" }, step: step(), unchanged: true },
      {
        handle: { _tag: "Connack", sessionPresent: false, returnCode: 0 },
        step: step({ warning: "CONNACK after the connection was established: ignored" }),
        unchanged: true
      }
    ])
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// Incoming publishes
// ---------------------------------------------------------------------------------------------------------------------

describe("SessionState incoming publishes", () => {
  it("[MQTT-3.3.4-1] an incoming QoS 0 PUBLISH is delivered, nothing sent, nothing kept", () => {
    const message = publish(0, undefined, { topic: "in", payload: "zero" })
    run(connected(), [
      { handle: message, step: step({ deliver: message }) },
      { handle: message, step: step({ deliver: message }) },
      { expect: { ...idle, incomingQos2: [] } }
    ])
  })

  it("[MQTT-4.3.2-2] [MQTT-2.3.1-6] [MQTT-4.5.0-2] incoming QoS 1: PUBACK with the same id and delivered", () => {
    const first = publish(1, 7, { topic: "in", payload: "one" })
    run(connected(), [
      { handle: first, step: step({ send: [puback(7)], deliver: first }) },
      { expect: { ...idle, incomingQos2: [] } }
    ])
  })

  it("[MQTT-4.3.2-2] after PUBACK, the same id is a new message whatever DUP says: delivered again", () => {
    const first = publish(1, 7, { topic: "in", payload: "one" })
    const again = publish(1, 7, { topic: "in", payload: "one", dup: true })
    const next = publish(1, 7, { topic: "in", payload: "two" })
    run(connected(), [
      { handle: first, step: step({ send: [puback(7)], deliver: first }) },
      { handle: again, step: step({ send: [puback(7)], deliver: again }) },
      { handle: next, step: step({ send: [puback(7)], deliver: next }) }
    ])
  })

  it("[MQTT-4.3.3-2] [MQTT-2.3.1-6] incoming QoS 2: PUBREC with the id and delivered once, the id held", () => {
    const message = publish(2, 5, { topic: "in", payload: "two" })
    run(connected(), [
      { handle: message, step: step({ send: [pubrec(5)], deliver: message }) },
      { expect: { incomingQos2: [5], pending: 0, inflight: 0 } }
    ])
  })

  it("[MQTT-4.3.3-2] [MQTT-3.3.1-1] a repeated PUBLISH (DUP 1) before PUBREL: PUBREC again, NOT delivered", () => {
    const message = publish(2, 5, { topic: "in", payload: "two" })
    const duplicate = publish(2, 5, { topic: "in", payload: "two", dup: true })
    run(connected(), [
      { handle: message, step: step({ send: [pubrec(5)], deliver: message }) },
      { handle: duplicate, step: step({ send: [pubrec(5)] }) },
      { handle: duplicate, step: step({ send: [pubrec(5)] }) },
      // Even with DUP 0: until PUBREL the id names the same message.
      { handle: message, step: step({ send: [pubrec(5)] }) },
      { expect: { incomingQos2: [5] } }
    ])
  })

  it("[MQTT-4.3.3-2] PUBREL → PUBCOMP and frees the id; the same id again is a new message, delivered", () => {
    const message = publish(2, 5, { topic: "in", payload: "two" })
    const next = publish(2, 5, { topic: "in", payload: "three" })
    run(connected(), [
      { handle: message, step: step({ send: [pubrec(5)], deliver: message }) },
      { handle: pubrel(5), step: step({ send: [pubcomp(5)] }) },
      { expect: { incomingQos2: [] } },
      { handle: next, step: step({ send: [pubrec(5)], deliver: next }) },
      { expect: { incomingQos2: [5] } },
      { handle: pubrel(5), step: step({ send: [pubcomp(5)] }) },
      { expect: { incomingQos2: [] } }
    ])
  })

  it("[MQTT-4.3.3-2] a repeated PUBREL, or one for an unknown id, is answered with PUBCOMP", () => {
    run(connected(), [
      { handle: pubrel(42), step: step({ send: [pubcomp(42)] }), unchanged: true },
      { handle: publish(2, 1), step: step({ send: [pubrec(1)], deliver: publish(2, 1) }) },
      { handle: pubrel(1), step: step({ send: [pubcomp(1)] }) },
      { handle: pubrel(1), step: step({ send: [pubcomp(1)] }), unchanged: true }
    ])
  })

  it("incoming and outgoing packet ids are separate: an incoming QoS 2 id does not block the same outgoing id", () => {
    run(connected(), [
      { handle: publish(2, 1), step: step({ send: [pubrec(1)], deliver: publish(2, 1) }) },
      { publish: request(2), result: publish(2, 1) },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      { expect: { incomingQos2: [1], outgoing: [1] } },
      { handle: pubcomp(1), step: step({ completions: [published(1)] }) },
      { expect: { incomingQos2: [1], outgoing: [] } }
    ])
  })

  it("[MQTT-4.6.0-2] [MQTT-4.6.0-3] [MQTT-4.5.0-2] acknowledgements go out in the order the PUBLISHes arrived", () => {
    const state = connected()
    const incoming: Array<Packet.Publish> = []
    for (let i = 0; i < 60; i++) {
      const qos = ([1, 2, 0] as const)[i % 3]
      const id = 1000 - i * 7
      incoming.push(qos === 0 ? publish(0, undefined, { payload: `${i}` }) : publish(qos, id, { payload: `${i}` }))
    }
    const sent: Array<Packet.ClientPacket> = []
    const delivered: Array<Packet.Publish> = []
    for (const packet of incoming) {
      const result = state.handle(packet)
      sent.push(...result.send)
      if (result.deliver !== undefined) delivered.push(result.deliver)
    }
    const expected = incoming.flatMap((p): Array<Packet.ClientPacket> =>
      p.qos === 1 ? [puback(p.packetId!)] : p.qos === 2 ? [pubrec(p.packetId!)] : []
    )
    assert.deepStrictEqual(sent, expected)
    assert.deepStrictEqual(delivered, incoming)
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// SUBSCRIBE and UNSUBSCRIBE
// ---------------------------------------------------------------------------------------------------------------------

describe("SessionState SUBSCRIBE and UNSUBSCRIBE", () => {
  const subscriptions: ReadonlyArray<Packet.Subscription> = [
    { topicFilter: "a/+", qos: 0 },
    { topicFilter: "secret/#", qos: 1 },
    { topicFilter: "b", qos: 2 }
  ]

  it("[MQTT-2.3.1-1] [MQTT-2.3.1-3] SUBSCRIBE gets an id; SUBACK completes with its codes (0x80 kept)", () => {
    run(connected(), [
      { subscribe: subscriptions, result: subscribePacket(1, subscriptions) },
      // A pending operation, but not a publish: the window does not count it.
      { expect: { inflight: 0, buffered: 0, pending: 1, windowOpen: true, outgoing: [1] } },
      {
        handle: suback(1, [0x00, 0x80, 0x02]),
        step: step({ completions: [{ _tag: "Subscribed", packetId: 1, returnCodes: [0x00, 0x80, 0x02] }] })
      },
      { expect: idle },
      { handle: suback(1, [0]), step: unknown("SUBACK", 1) }
    ])
  })

  it("a SUBACK with too few return codes is padded with 0x80, with a warning", () => {
    run(connected(), [
      { subscribe: subscriptions, result: subscribePacket(1, subscriptions) },
      {
        handle: suback(1, [1]),
        step: step({
          completions: [{ _tag: "Subscribed", packetId: 1, returnCodes: [1, 0x80, 0x80] }],
          warning: "SUBACK for packet id 1 has 1 return codes for 3 filters"
        })
      },
      { expect: idle }
    ])
  })

  it("a SUBACK with too many return codes is cut to one per filter, with a warning", () => {
    run(connected(), [
      { subscribe: [{ topicFilter: "a", qos: 1 }], result: subscribePacket(1, [{ topicFilter: "a", qos: 1 }]) },
      {
        handle: suback(1, [1, 2, 0]),
        step: step({
          completions: [{ _tag: "Subscribed", packetId: 1, returnCodes: [1] }],
          warning: "SUBACK for packet id 1 has 3 return codes for 1 filters"
        })
      },
      { expect: idle }
    ])
  })

  it("[MQTT-2.3.1-1] [MQTT-2.3.1-3] UNSUBSCRIBE gets an id; UNSUBACK completes Unsubscribed, id freed", () => {
    run(connected(), [
      { unsubscribe: ["a/+", "b"], result: unsubscribePacket(1, ["a/+", "b"]) },
      { expect: { inflight: 0, pending: 1, outgoing: [1] } },
      { handle: unsuback(1), step: step({ completions: [{ _tag: "Unsubscribed", packetId: 1 }] }) },
      { expect: idle },
      { handle: unsuback(1), step: unknown("UNSUBACK", 1) }
    ])
  })

  it("[MQTT-2.3.1-2] publishes, subscribes and unsubscribes share one id space", () => {
    run(connected(), [
      { publish: request(1), result: publish(1, 1) },
      { subscribe: [{ topicFilter: "s", qos: 0 }], result: subscribePacket(2, [{ topicFilter: "s", qos: 0 }]) },
      { unsubscribe: ["s"], result: unsubscribePacket(3, ["s"]) },
      { publish: request(2), result: publish(2, 4) },
      { expect: { inflight: 2, pending: 4, outgoing: [1, 2, 3, 4] } }
    ])
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// Packet id allocation
// ---------------------------------------------------------------------------------------------------------------------

const subscription: ReadonlyArray<Packet.Subscription> = [{ topicFilter: "s", qos: 0 }]

/** The id of a new SUBSCRIBE, or 0 if it failed (asserted by the callers, in bulk: chai is slow 65535 times over). */
const allocate = (state: SessionState.SessionState): Packet.PacketId => {
  const result = state.subscribe(subscription)
  return Result.isSuccess(result) ? result.success.packetId : 0
}

describe("SessionState packet id allocation", () => {
  it("[MQTT-2.3.1-2] ids follow the last one given, not the lowest free one", () => {
    run(connected(), [
      { publish: request(1), result: publish(1, 1) },
      { publish: request(1), result: publish(1, 2) },
      { publish: request(1), result: publish(1, 3) },
      { handle: puback(2), step: step({ completions: [published(2)] }) },
      { handle: puback(1), step: step({ completions: [published(1)] }) },
      { publish: request(1), result: publish(1, 4) }
    ])
  })

  it("[MQTT-2.3.1-1] [MQTT-2.3.1-2] ids wrap from 65535 to 1 and skip ids still in use", () => {
    const state = connected()
    assert.strictEqual(allocate(state), 1)
    assert.strictEqual(allocate(state), 2)
    assert.strictEqual(allocate(state), 3)
    state.handle(suback(2, [0]))
    const wrong: Array<readonly [number, number]> = []
    for (let id = 4; id <= 65535; id++) {
      const given = allocate(state)
      if (given !== id) wrong.push([id, given])
      state.handle(suback(id, [0]))
    }
    assert.deepStrictEqual(wrong, [], "[expected, given] ids")
    // 1 and 3 are still awaiting their SUBACK.
    run(state, [
      { publish: request(1), result: publish(1, 2) },
      { publish: request(2), result: publish(2, 4) },
      { expect: { outgoing: [1, 3, 2, 4], inflight: 2, pending: 4 } }
    ])
  })

  it("[MQTT-2.3.1-2] with all 65535 ids in use: NoMoreMsgids (-10); freeing one makes it the next id", () => {
    const state = connected()
    const wrong: Array<readonly [number, number]> = []
    for (let id = 1; id <= 65535; id++) {
      const given = allocate(state)
      if (given !== id) wrong.push([id, given])
    }
    assert.deepStrictEqual(wrong, [], "[expected, given] ids")
    run(state, [
      { expect: { pending: 65535, inflight: 0 } },
      { publish: request(1), result: fails("NoMoreMsgids", -10) },
      { publish: request(2), result: fails("NoMoreMsgids", -10) },
      { subscribe: subscription, result: fails("NoMoreMsgids", -10) },
      { unsubscribe: ["s"], result: fails("NoMoreMsgids", -10) },
      // QoS 0 needs no id.
      { publish: request(0), result: publish(0, undefined) },
      { expect: { pending: 65535, inflight: 0 } },
      { handle: suback(7, [0]), step: step({ completions: [{ _tag: "Subscribed", packetId: 7, returnCodes: [0] }] }) },
      { publish: request(1), result: publish(1, 7) },
      { subscribe: subscription, result: fails("NoMoreMsgids", -10) },
      { expect: { pending: 65535, inflight: 1 } }
    ])
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// In-flight window
// ---------------------------------------------------------------------------------------------------------------------

describe("SessionState in-flight window", () => {
  it("maxInflight 2: a third QoS 1 publish fails MaxMessagesInflight (-4) without taking an id; PUBACK reopens", () => {
    const state = connected({ maxInflight: 2 })
    run(state, [
      { expect: { windowOpen: true } },
      { publish: request(1), result: publish(1, 1) },
      { expect: { windowOpen: true, inflight: 1 } },
      { publish: request(1), result: publish(1, 2) },
      { expect: { windowOpen: false, inflight: 2 } },
      { publish: request(1), result: fails("MaxMessagesInflight", -4) },
      { publish: request(2), result: fails("MaxMessagesInflight", -4) },
      { expect: { windowOpen: false, inflight: 2, pending: 2, outgoing: [1, 2] } },
      // SUBSCRIBE is not a publish: not windowed.
      { subscribe: subscription, result: subscribePacket(3, subscription) },
      { handle: puback(1), step: step({ completions: [published(1)] }) },
      { expect: { windowOpen: true, inflight: 1 } },
      { publish: request(2), result: publish(2, 4) },
      { expect: { windowOpen: false, inflight: 2 } }
    ])
    const failed = state.publish(request(1))
    assert.isTrue(Result.isFailure(failed))
    if (Result.isFailure(failed)) {
      assert.strictEqual((failed.failure.reason as MqttError.MaxMessagesInflight).maxInflight, 2)
      assert.isTrue(failed.failure.isRetryable)
    }
  })

  it("[MQTT-4.3.3-1] a QoS 2 publish holds its window slot until PUBCOMP, not PUBREC", () => {
    run(connected({ maxInflight: 1 }), [
      { publish: request(2), result: publish(2, 1) },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      { expect: { windowOpen: false, inflight: 1 } },
      { publish: request(1), result: fails("MaxMessagesInflight", -4) },
      { handle: pubcomp(1), step: step({ completions: [published(1)] }) },
      { expect: { windowOpen: true, inflight: 0 } },
      { publish: request(1), result: publish(1, 2) }
    ])
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// Invalid input
// ---------------------------------------------------------------------------------------------------------------------

describe("SessionState invalid input fails before an id is allocated", () => {
  it("[MQTT-3.3.1-4] [MQTT-3.3.2-2] [MQTT-4.7.1-1] [MQTT-4.7.3-1] bad publishes fail, no id taken", () => {
    run(connected(), [
      { publish: { ...request(1), qos: 3 as Packet.QoS }, result: fails("BadQos", -9) },
      { publish: { ...request(1), qos: -1 as Packet.QoS }, result: fails("BadQos", -9) },
      { publish: request(1, "a/+"), result: fails("InvalidTopic", -1) },
      { publish: request(2, "a/#"), result: fails("InvalidTopic", -1) },
      { publish: request(0, "#"), result: fails("InvalidTopic", -1) },
      { publish: request(1, ""), result: fails("InvalidTopic", -1) },
      { publish: { ...request(1), payload: "text" as unknown as Uint8Array }, result: fails("BadStructure", -8) },
      { expect: idle },
      { publish: request(1), result: publish(1, 1) }
    ])
  })

  it("[MQTT-3.8.3-3] [MQTT-3.10.3-2] [MQTT-4.7.1-2] [MQTT-4.7.1-3] bad SUBSCRIBE and UNSUBSCRIBE", () => {
    run(connected(), [
      { subscribe: [], result: fails("BadStructure", -8) },
      { subscribe: [{ topicFilter: "a/#/b", qos: 0 }], result: fails("InvalidTopic", -1) },
      { subscribe: [{ topicFilter: "ok", qos: 0 }, { topicFilter: "a+", qos: 1 }], result: fails("InvalidTopic", -1) },
      { subscribe: [{ topicFilter: "", qos: 0 }], result: fails("InvalidTopic", -1) },
      { subscribe: [{ topicFilter: "a", qos: 3 as Packet.QoS }], result: fails("BadQos", -9) },
      { unsubscribe: [], result: fails("BadStructure", -8) },
      { unsubscribe: ["a/b#"], result: fails("InvalidTopic", -1) },
      { expect: idle },
      { subscribe: subscription, result: subscribePacket(1, subscription) }
    ])
  })

  it("validation comes first: offline, or with the window full, a bad request still fails with its own reason", () => {
    run(new SessionState.SessionState({ maxInflight: 1, maxBufferedMessages: 0 }), [
      { publish: { ...request(1), qos: 3 as Packet.QoS }, result: fails("BadQos", -9) },
      { publish: request(1, "+"), result: fails("InvalidTopic", -1) },
      { publish: request(1), result: fails("Disconnected", -3) },
      { resume: false, step: step() },
      { publish: request(1), result: publish(1, 1) },
      { publish: { ...request(1), qos: 3 as Packet.QoS }, result: fails("BadQos", -9) },
      { publish: request(2, "a/#"), result: fails("InvalidTopic", -1) },
      { handle: puback(1), step: step({ completions: [published(1)] }) },
      { publish: request(1), result: publish(1, 2) }
    ])
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// Offline
// ---------------------------------------------------------------------------------------------------------------------

describe("SessionState offline", () => {
  it("before the first connection, QoS 1 and 2 publishes are queued (not to be sent), counted as buffered", () => {
    run(new SessionState.SessionState(), [
      { expect: { isConnected: false, ...idle } },
      { publish: request(1, "a", "1"), result: queued(publish(1, 1, { topic: "a", payload: "1" })) },
      { publish: request(2, "a", "2"), result: queued(publish(2, 2, { topic: "a", payload: "2" })) },
      { expect: { inflight: 2, buffered: 2, pending: 2, outgoing: [1, 2], isConnected: false } },
      // Queued publishes go out DUP 0 [MQTT-4.3.2-1] [MQTT-4.3.3-1]: they were never sent.
      {
        resume: false,
        step: step({ send: [publish(1, 1, { topic: "a", payload: "1" }), publish(2, 2, { topic: "a", payload: "2" })] })
      },
      { expect: { inflight: 2, buffered: 0, pending: 2, outgoing: [1, 2], isConnected: true } }
    ])
  })

  it("the same on resume(true): a never-sent publish goes out DUP 0, not as a re-delivery", () => {
    run(new SessionState.SessionState(), [
      { publish: request(2), result: queued(publish(2, 1)) },
      { resume: true, step: step({ send: [publish(2, 1)] }) },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      { handle: pubcomp(1), step: step({ completions: [published(1)] }) },
      { expect: idle }
    ])
  })

  it("maxBufferedMessages: the next publish fails MaxBufferedMessages (-12), without taking an id", () => {
    run(new SessionState.SessionState({ maxBufferedMessages: 2 }), [
      { publish: request(1), result: queued(publish(1, 1)) },
      { publish: request(2), result: queued(publish(2, 2)) },
      { publish: request(1), result: fails("MaxBufferedMessages", -12) },
      { publish: request(2), result: fails("MaxBufferedMessages", -12) },
      { expect: { buffered: 2, inflight: 2, pending: 2, outgoing: [1, 2] } },
      { resume: false, step: step({ send: [publish(1, 1), publish(2, 2)] }) },
      // Connected: the offline limit no longer applies.
      { publish: request(1), result: publish(1, 3) },
      { expect: { buffered: 0, inflight: 3 } }
    ])
  })

  it("[MQTT-3.3.1-2] QoS 0 offline fails Disconnected (-3), unless bufferQos0: then queued and counted", () => {
    run(new SessionState.SessionState(), [
      { publish: request(0), result: fails("Disconnected", -3) },
      { expect: idle }
    ])
    run(new SessionState.SessionState({ bufferQos0: true, maxBufferedMessages: 3 }), [
      { publish: request(0, "z", "0"), result: queued(publish(0, undefined, { topic: "z", payload: "0" })) },
      { publish: request(1, "o", "1"), result: queued(publish(1, 1, { topic: "o", payload: "1" })) },
      { publish: request(0, "z", "00"), result: queued(publish(0, undefined, { topic: "z", payload: "00" })) },
      { expect: { buffered: 3, inflight: 1, pending: 3, outgoing: [1] } },
      { publish: request(0), result: fails("MaxBufferedMessages", -12) },
      { publish: request(1), result: fails("MaxBufferedMessages", -12) },
      {
        resume: true,
        step: step({
          send: [
            publish(0, undefined, { topic: "z", payload: "0" }),
            publish(1, 1, { topic: "o", payload: "1" }),
            publish(0, undefined, { topic: "z", payload: "00" })
          ]
        })
      },
      { expect: { buffered: 0, inflight: 1, pending: 1 } },
      // Sent once: a later connection does not send the QoS 0 again.
      { disconnected: true },
      { resume: true, step: step({ send: [publish(1, 1, { topic: "o", payload: "1", dup: true })] }) }
    ])
  })

  it("[MQTT-4.6.0-1] queued offline goes out after the re-sends, in the order asked for, whatever the QoS", () => {
    const s1: ReadonlyArray<Packet.Subscription> = [{ topicFilter: "s/+", qos: 1 }]
    run(connected({ bufferQos0: true }), [
      { publish: request(1, "t", "old"), result: publish(1, 1, { topic: "t", payload: "old" }) },
      { disconnected: true },
      { publish: request(0, "t", "a"), result: queued(publish(0, undefined, { topic: "t", payload: "a" })) },
      { subscribe: s1, result: subscribePacket(2, s1) },
      { publish: request(2, "t", "b"), result: queued(publish(2, 3, { topic: "t", payload: "b" })) },
      { unsubscribe: ["u"], result: unsubscribePacket(4, ["u"]) },
      { publish: request(0, "t", "c"), result: queued(publish(0, undefined, { topic: "t", payload: "c" })) },
      { publish: request(1, "t", "d"), result: queued(publish(1, 5, { topic: "t", payload: "d" })) },
      { expect: { inflight: 3, buffered: 4, pending: 7, outgoing: [1, 2, 3, 4, 5] } },
      {
        resume: true,
        step: step({
          send: [
            publish(1, 1, { topic: "t", payload: "old", dup: true }),
            publish(0, undefined, { topic: "t", payload: "a" }),
            subscribePacket(2, s1),
            publish(2, 3, { topic: "t", payload: "b" }),
            unsubscribePacket(4, ["u"]),
            publish(0, undefined, { topic: "t", payload: "c" }),
            publish(1, 5, { topic: "t", payload: "d" })
          ]
        })
      },
      { expect: { inflight: 3, buffered: 0, pending: 5, outgoing: [1, 2, 3, 4, 5] } }
    ])
  })

  it("maxBufferedMessages 0 disables offline queueing: every publish fails Disconnected (-3)", () => {
    run(new SessionState.SessionState({ maxBufferedMessages: 0, bufferQos0: true }), [
      { publish: request(0), result: fails("Disconnected", -3) },
      { publish: request(1), result: fails("Disconnected", -3) },
      { publish: request(2), result: fails("Disconnected", -3) },
      { expect: { ...idle, isConnected: false } },
      { resume: false, step: step() },
      { publish: request(1), result: publish(1, 1) }
    ])
  })

  it("after disconnected(), publishes are queued again (nothing to send) and go out on the next connection", () => {
    run(connected(), [
      { publish: request(1, "a", "online"), result: publish(1, 1, { topic: "a", payload: "online" }) },
      { disconnected: true },
      { expect: { isConnected: false } },
      { publish: request(1, "a", "offline"), result: queued(publish(1, 2, { topic: "a", payload: "offline" })) },
      { expect: { inflight: 2, buffered: 1, pending: 2 } },
      {
        resume: true,
        step: step({
          send: [
            publish(1, 1, { topic: "a", payload: "online", dup: true }),
            publish(1, 2, { topic: "a", payload: "offline" })
          ]
        })
      },
      { expect: { inflight: 2, buffered: 0, pending: 2, isConnected: true } }
    ])
  })

  it("SUBSCRIBE and UNSUBSCRIBE made offline get their ids and go out on the next connection, in order", () => {
    run(new SessionState.SessionState(), [
      { subscribe: subscription, result: subscribePacket(1, subscription) },
      { publish: request(1), result: queued(publish(1, 2)) },
      { unsubscribe: ["s"], result: unsubscribePacket(3, ["s"]) },
      { expect: { pending: 3, inflight: 1, buffered: 1 } },
      {
        resume: false,
        step: step({ send: [subscribePacket(1, subscription), publish(1, 2), unsubscribePacket(3, ["s"])] })
      }
    ])
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// Reconnection
// ---------------------------------------------------------------------------------------------------------------------

const incoming9 = publish(2, 9, { topic: "in" })

/**
 * Outgoing: QoS 1 (1), QoS 2 awaiting PUBREC (2), QoS 2 past PUBREC (3), QoS 1 acknowledged (4), SUBSCRIBE (5), and
 * offline a QoS 1 (6) and a QoS 0. PUBREC moved 3 behind 5: flights past PUBREC are kept in PUBREC order.
 */
const midFlight = (config: Partial<SessionState.Config> = {}): SessionState.SessionState =>
  run(connected({ bufferQos0: true, ...config }), [
    { publish: request(1, "t", "1"), result: publish(1, 1, { topic: "t", payload: "1" }) },
    { publish: request(2, "t", "2"), result: publish(2, 2, { topic: "t", payload: "2" }) },
    { publish: request(2, "t", "3"), result: publish(2, 3, { topic: "t", payload: "3" }) },
    { publish: request(1, "t", "4"), result: publish(1, 4, { topic: "t", payload: "4" }) },
    { subscribe: subscription, result: subscribePacket(5, subscription) },
    { handle: pubrec(3), step: step({ send: [pubrel(3)] }) },
    { handle: puback(4), step: step({ completions: [published(4)] }) },
    { handle: incoming9, step: step({ send: [pubrec(9)], deliver: incoming9 }) },
    { disconnected: true },
    { publish: request(1, "t", "6"), result: queued(publish(1, 6, { topic: "t", payload: "6" })) },
    { publish: request(0, "t", "7"), result: queued(publish(0, undefined, { topic: "t", payload: "7" })) },
    { expect: { inflight: 4, buffered: 2, pending: 6, outgoing: [1, 2, 5, 3, 6], incomingQos2: [9] } }
  ])

describe("SessionState resume(true): the broker kept the session", () => {
  // [MQTT-4.4.0-1] [MQTT-4.6.0-1] [MQTT-3.3.1-1] [MQTT-4.3.3-1] [MQTT-2.3.1-3]
  it("[MQTT-4.4.0-1] unacked PUBLISH DUP 1 same id, PUBREL past PUBREC, in order; queued last, DUP 0", () => {
    run(midFlight(), [
      {
        resume: true,
        step: step({
          send: [
            publish(1, 1, { topic: "t", payload: "1", dup: true }),
            publish(2, 2, { topic: "t", payload: "2", dup: true }),
            subscribePacket(5, subscription),
            pubrel(3),
            publish(1, 6, { topic: "t", payload: "6" }),
            publish(0, undefined, { topic: "t", payload: "7" })
          ]
        })
      },
      { expect: { inflight: 4, buffered: 0, pending: 5, outgoing: [1, 2, 5, 3, 6], isConnected: true } },
      { handle: puback(1), step: step({ completions: [published(1)] }) },
      { handle: pubrec(2), step: step({ send: [pubrel(2)] }) },
      { handle: pubcomp(2), step: step({ completions: [published(2)] }) },
      { handle: pubcomp(3), step: step({ completions: [published(3)] }) },
      { handle: suback(5, [0]), step: step({ completions: [{ _tag: "Subscribed", packetId: 5, returnCodes: [0] }] }) },
      { handle: puback(6), step: step({ completions: [published(6)] }) },
      { expect: idle }
    ])
  })

  it("[MQTT-4.1.0-1] [MQTT-3.1.2-4] [MQTT-4.3.3-2] incoming QoS 2 ids survive: a re-delivery is not delivered", () => {
    run(midFlight(), [
      { resume: true, step: step({ send: [
        publish(1, 1, { topic: "t", payload: "1", dup: true }),
        publish(2, 2, { topic: "t", payload: "2", dup: true }),
        subscribePacket(5, subscription),
        pubrel(3),
        publish(1, 6, { topic: "t", payload: "6" }),
        publish(0, undefined, { topic: "t", payload: "7" })
      ] }) },
      { expect: { incomingQos2: [9] } },
      { handle: publish(2, 9, { topic: "in", dup: true }), step: step({ send: [pubrec(9)] }) },
      { handle: pubrel(9), step: step({ send: [pubcomp(9)] }) },
      { expect: { incomingQos2: [] } }
    ])
  })

  it("[MQTT-3.3.1-1] [MQTT-4.3.2-1] re-sends leave the stored packet as it was: DUP 1 each time, DUP 0 if new", () => {
    const state = connected()
    run(state, [
      { publish: request(1), result: publish(1, 1) },
      { disconnected: true },
      { resume: true, step: step({ send: [publish(1, 1, { dup: true })] }) },
      { disconnected: true },
      { resume: true, step: step({ send: [publish(1, 1, { dup: true })] }) },
      { disconnected: true },
      { resume: false, step: step({ send: [publish(1, 1)] }) }
    ])
    const flight = state.outgoing.get(1)
    assert.strictEqual(flight?._tag === "Publish" && flight.packet.dup, false)
  })

  it("[MQTT-4.3.3-1] reconnected in the pubcomp stage, a repeated PUBREC still gets PUBREL, never PUBLISH", () => {
    run(connected(), [
      { publish: request(2), result: publish(2, 1) },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      { disconnected: true },
      { resume: true, step: step({ send: [pubrel(1)] }) },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      { handle: pubcomp(1), step: step({ completions: [published(1)] }) },
      { expect: idle }
    ])
  })
})

describe("SessionState resume(false): the broker has no session", () => {
  // QoS 1 and QoS 2 awaiting PUBREC are resent as new messages (DUP 0, same id); QoS 2 past PUBREC completes.
  it("[MQTT-3.1.2-6] [MQTT-3.3.1-1] \"resend\": unacknowledged publishes resent as new, DUP 0", () => {
    run(midFlight(), [
      {
        resume: false,
        step: step({
          send: [
            publish(1, 1, { topic: "t", payload: "1" }),
            publish(2, 2, { topic: "t", payload: "2" }),
            subscribePacket(5, subscription),
            publish(1, 6, { topic: "t", payload: "6" }),
            publish(0, undefined, { topic: "t", payload: "7" })
          ],
          completions: [published(3)]
        })
      },
      { expect: { inflight: 3, buffered: 0, pending: 4, outgoing: [1, 2, 5, 6], incomingQos2: [] } },
      { handle: pubrec(2), step: step({ send: [pubrel(2)] }) },
      { handle: pubcomp(2), step: step({ completions: [published(2)] }) },
      { handle: pubcomp(3), step: unknown("PUBCOMP", 3) }
    ])
  })

  it("[MQTT-3.1.2-6] the incoming QoS 2 ids are forgotten: the same id is a new message, delivered", () => {
    const state = midFlight()
    state.resume(false)
    run(state, [
      { expect: { incomingQos2: [] } },
      { handle: incoming9, step: step({ send: [pubrec(9)], deliver: incoming9 }) }
    ])
  })

  it("[MQTT-3.1.2-6] \"fail\": unacknowledged publishes Dropped (-11); past PUBREC completes", () => {
    const state = midFlight({ onSessionLost: "fail" })
    const result = state.resume(false)
    assert.deepStrictEqual(result.send, [
      subscribePacket(5, subscription),
      publish(1, 6, { topic: "t", payload: "6" }),
      publish(0, undefined, { topic: "t", payload: "7" })
    ])
    assert.isUndefined(result.deliver)
    assert.isUndefined(result.warning)
    assert.deepStrictEqual(result.completions.map((c) => [c._tag, c.packetId]), [
      ["Dropped", 1],
      ["Dropped", 2],
      ["Published", 3]
    ])
    for (const completion of result.completions) {
      if (completion._tag !== "Dropped") continue
      assert.strictEqual(completion.error.reason._tag, "OperationIncomplete")
      assert.strictEqual(completion.error.code, -11)
      assert.strictEqual((completion.error.reason as MqttError.OperationIncomplete).operation, "publish")
    }
    run(state, [
      { expect: { inflight: 1, buffered: 0, pending: 2, outgoing: [5, 6], incomingQos2: [], windowOpen: true } },
      { handle: puback(1), step: unknown("PUBACK", 1), unchanged: true },
      { handle: puback(6), step: step({ completions: [published(6)] }) }
    ])
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// dropAll
// ---------------------------------------------------------------------------------------------------------------------

describe("SessionState dropAll", () => {
  it("completes every pending operation as Dropped with the error given, and resets the counters", () => {
    const state = midFlight()
    const error = MqttError.make(new MqttError.OperationIncomplete({ operation: "publish", detail: "client closed" }))
    let made = 0
    const completions = state.dropAll(() => {
      made++
      return error
    })
    assert.strictEqual(made, 1, "one error for all of them")
    assert.deepStrictEqual(completions.map((c) => [c._tag, c.packetId]), [
      ["Dropped", 1],
      ["Dropped", 2],
      ["Dropped", 5],
      ["Dropped", 3],
      ["Dropped", 6]
    ])
    for (const c of completions) assert.strictEqual(c._tag === "Dropped" && c.error, error)
    run(state, [
      { expect: idle },
      { expect: { isConnected: false } },
      { handle: puback(1), step: unknown("PUBACK", 1), unchanged: true },
      // Nothing left to resend; the queued QoS 0 is gone too.
      { resume: true, step: step() },
      { publish: request(1), result: publish(1, 7) }
    ])
  })

  it("with nothing pending, returns nothing and makes no error (closing an idle client is cheap)", () => {
    const state = connected()
    let made = 0
    const error = () => {
      made++
      return MqttError.make(new MqttError.Disconnected({ operation: "close" }))
    }
    assert.deepStrictEqual(state.dropAll(error), [])
    assert.strictEqual(made, 0)
    run(state, [{ expect: idle }])
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// Acknowledgements for publishes that were never sent
// ---------------------------------------------------------------------------------------------------------------------

describe("SessionState acknowledgements for an operation queued offline and never sent", () => {
  // Such a packet is stale: decoded from the lost connection and handled after `disconnected()`, or a broker bug.
  // The broker cannot acknowledge what it never received. (Were bugs: the PUBACK completed the publish and left
  // `buffered` 1 forever; the PUBREC moved it to the pubcomp stage, and `resume` then sent the PUBLISH after PUBREL.)
  it("[MQTT-2.3.1-6] [MQTT-4.3.2-1] PUBACK or PUBCOMP for a never-sent publish: ignored, counters stay true", () => {
    const state = new SessionState.SessionState({ maxBufferedMessages: 1 })
    run(state, [
      { publish: request(1), result: queued(publish(1, 1)) },
      { handle: puback(1), step: unknown("PUBACK", 1), unchanged: true },
      { handle: pubcomp(1), step: unknown("PUBCOMP", 1), unchanged: true },
      { expect: { inflight: 1, buffered: 1, pending: 1, outgoing: [1] } },
      { resume: false, step: step({ send: [publish(1, 1)] }) },
      { handle: puback(1), step: step({ completions: [published(1)] }) },
      { disconnected: true },
      // The offline queue has its slot back.
      { publish: request(1), result: queued(publish(1, 2)) }
    ])
  })

  it("[MQTT-4.3.3-1] PUBREC for a never-sent QoS 2 publish: ignored; it goes out as PUBLISH DUP 0, then PUBREL", () => {
    run(new SessionState.SessionState(), [
      { publish: request(2), result: queued(publish(2, 1)) },
      { handle: pubrec(1), step: unknown("PUBREC", 1), unchanged: true },
      { resume: true, step: step({ send: [publish(2, 1)] }) },
      { handle: pubrec(1), step: step({ send: [pubrel(1)] }) },
      { handle: pubcomp(1), step: step({ completions: [published(1)] }) },
      { expect: idle }
    ])
  })

  // Regression: found by this test and fixed in src.
  it("[MQTT-2.3.1-6] SUBACK or UNSUBACK for a never-sent SUBSCRIBE or UNSUBSCRIBE: ignored; it is sent", () => {
    run(new SessionState.SessionState(), [
      { subscribe: subscription, result: subscribePacket(1, subscription) },
      { unsubscribe: ["s"], result: unsubscribePacket(2, ["s"]) },
      { handle: suback(1, [0]), step: unknown("SUBACK", 1), unchanged: true },
      { handle: unsuback(2), step: unknown("UNSUBACK", 2), unchanged: true },
      { resume: true, step: step({ send: [subscribePacket(1, subscription), unsubscribePacket(2, ["s"])] }) }
    ])
  })
})
