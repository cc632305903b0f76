/**
 * Keepalive: the pure `decide` policy (scenario tables and fast-check properties) and the `Keepalive` service run
 * against a link to the scripted `FakeBroker`, on the `TestClock`; `start` on the system clock (a Node timer, driven by
 * vitest's fake timers) and on the `TestClock`.
 */
import { afterEach, assert, beforeEach, describe, it, vi } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import type * as Packet from "../../src/Codec/Packet.ts"
import * as ConnectOptions from "../../src/Connection/ConnectOptions.ts"
import * as Connection from "../../src/Connection/Connection.ts"
import * as Keepalive from "../../src/Connection/Keepalive.ts"
import type * as MqttError from "../../src/Errors/MqttError.ts"
import * as FakeBroker from "../utils/FakeBroker.ts"
import { withLiveClock } from "../utils/live.ts"

const K = 10_000
const PING_TIMEOUT = 5_000
const config: Keepalive.Config = { keepaliveMillis: K, pingTimeoutMillis: PING_TIMEOUT }

// ---------------------------------------------------------------------------------------------------------------------
// decide: scenario tables
// ---------------------------------------------------------------------------------------------------------------------

const timers = (
  lastSentAt: number,
  lastReceivedAt: number,
  ping?: { readonly at: number; readonly answered: boolean }
): Keepalive.Timers => ({
  lastSentAt,
  lastReceivedAt,
  pingSentAt: ping?.at,
  pingAnswered: ping?.answered ?? false
})

const wait = (millis: number): Keepalive.Decision => ({ _tag: "Wait", millis })
const sendPing: Keepalive.Decision = { _tag: "SendPing" }
const timeout: Keepalive.Decision = { _tag: "Timeout" }
const disabled: Keepalive.Decision = { _tag: "Disabled" }

describe("Keepalive.decide", () => {
  it.each([
    ["no traffic yet", timers(0, 0), 0],
    ["an unanswered ping", timers(0, 0, { at: 10, answered: false }), 1_000_000],
    ["a long silence", timers(0, 0), 1_000_000_000]
  ] as const)("keepalive 0 is Disabled (%s)", (_, t, now) => {
    assert.deepStrictEqual(Keepalive.decide({ keepaliveMillis: 0, pingTimeoutMillis: PING_TIMEOUT }, t, now), disabled)
  })

  describe("idle connection: wait exactly until lastSent + K, then ping [MQTT-3.1.2-23]", () => {
    it.each([
      [0, wait(K)],
      [1, wait(K - 1)],
      [K - 1, wait(1)],
      [K, sendPing],
      [K + 1, sendPing],
      [10 * K, sendPing]
    ] as const)("at %i ms: %o", (now, expected) => {
      assert.deepStrictEqual(Keepalive.decide(config, timers(0, 0), now), expected)
    })
  })

  it.each([
    ["traffic both ways postpones the ping", timers(8_000, 9_000), 10_000, wait(8_000)],
    ["...until K after the older of the two", timers(8_000, 9_000), 18_000, sendPing],
    ["we send, the broker is silent: ping at K after the last receive", timers(9_500, 0), K, sendPing],
    ["we send, the broker answered at 2 s: ping at 2 s + K", timers(9_500, 2_000), K, wait(2_000)],
    ["the broker sends, we are silent: ping at K after the last send", timers(0, 9_900), K, sendPing],
    ["the broker sends, we sent at 3 s: ping at 3 s + K", timers(3_000, 9_900), K, wait(3_000)]
  ] as const)("%s", (_, t, now, expected) => {
    assert.deepStrictEqual(Keepalive.decide(config, t, now), expected)
  })

  describe("an outstanding, unanswered ping: wait until ping + timeout, then Timeout", () => {
    const ping = { at: K, answered: false }
    it.each([
      [K, wait(PING_TIMEOUT)],
      [K + 1, wait(PING_TIMEOUT - 1)],
      [K + PING_TIMEOUT - 1, wait(1)],
      [K + PING_TIMEOUT, timeout],
      [K + PING_TIMEOUT + 1, timeout]
    ] as const)("at %i ms: %o", (now, expected) => {
      assert.deepStrictEqual(Keepalive.decide(config, timers(K, 0, ping), now), expected)
    })

    it("packets we send do not answer the ping", () => {
      assert.deepStrictEqual(Keepalive.decide(config, timers(K + 4_000, 0, ping), K + PING_TIMEOUT), timeout)
    })
  })

  describe("an answered ping: the next is due K after the ping", () => {
    const ping = { at: K, answered: true }
    it.each([
      ["answered at once", timers(K, K + 50, ping), K + 50, wait(K - 50)],
      ["1 ms before due", timers(K, K + 50, ping), 2 * K - 1, wait(1)],
      ["due", timers(K, K + 50, ping), 2 * K, sendPing],
      ["queued but not yet written (lastSentAt older than the ping)", timers(0, K + 50, ping), K + 50, wait(K - 50)],
      ["answered, then traffic both ways", timers(K + 3_000, K + 4_000, ping), 2 * K, wait(3_000)]
    ] as const)("%s", (_, t, now, expected) => {
      assert.deepStrictEqual(Keepalive.decide(config, t, now), expected)
    })
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// decide: properties
// ---------------------------------------------------------------------------------------------------------------------

const time = fc.integer({ min: 0, max: 1_000_000 })

const arbitraryCase = fc.record({
  keepaliveMillis: fc.integer({ min: 1, max: 100_000 }),
  pingTimeoutMillis: fc.integer({ min: 1, max: 100_000 }),
  lastSentAt: time,
  lastReceivedAt: time,
  ping: fc.option(fc.record({ at: time, answered: fc.boolean() }), { nil: undefined }),
  now: fc.integer({ min: 0, max: 2_500_000 })
})

describe("Keepalive.decide: properties", () => {
  it("never returns Wait with millis <= 0 (nor a fraction or infinity)", () => {
    fc.assert(
      fc.property(arbitraryCase, (c) => {
        const decision = Keepalive.decide(c, timers(c.lastSentAt, c.lastReceivedAt, c.ping), c.now)
        if (decision._tag === "Wait") {
          assert.isAbove(decision.millis, 0)
          assert.isTrue(Number.isSafeInteger(decision.millis))
        }
      })
    )
  })

  it("without an outstanding ping, the ping is never later than min(lastSent, lastReceived) + K", () => {
    fc.assert(
      fc.property(arbitraryCase, (c) => {
        // A ping already written counts in lastSentAt: pingSentAt <= lastSentAt.
        const ping = c.ping === undefined ? undefined : { at: Math.min(c.ping.at, c.lastSentAt), answered: true }
        const decision = Keepalive.decide(c, timers(c.lastSentAt, c.lastReceivedAt, ping), c.now)
        const due = Math.min(c.lastSentAt, c.lastReceivedAt) + c.keepaliveMillis
        if (c.now >= due) assert.deepStrictEqual(decision, sendPing)
        else assert.deepStrictEqual(decision, wait(due - c.now))
      })
    )
  })

  it("with an unanswered ping: Timeout at ping + timeout; meanwhile still a packet every K [MQTT-3.1.2-23]", () => {
    fc.assert(
      fc.property(arbitraryCase, time, (c, at) => {
        const decision = Keepalive.decide(c, timers(c.lastSentAt, c.lastReceivedAt, { at, answered: false }), c.now)
        const deadline = at + c.pingTimeoutMillis
        const sendDue = Math.max(c.lastSentAt, at) + c.keepaliveMillis
        if (c.now >= deadline) assert.deepStrictEqual(decision, timeout)
        else if (c.now >= sendDue) assert.deepStrictEqual(decision, { _tag: "SendPing" })
        else assert.deepStrictEqual(decision, wait(Math.min(deadline, sendDue) - c.now))
      })
    )
  })

  it("Disabled exactly when keepalive is 0", () => {
    fc.assert(
      fc.property(arbitraryCase, fc.boolean(), (c, off) => {
        const decision = Keepalive.decide(
          { ...c, keepaliveMillis: off ? 0 : c.keepaliveMillis },
          timers(c.lastSentAt, c.lastReceivedAt, c.ping),
          c.now
        )
        assert.strictEqual(decision._tag === "Disabled", off)
      })
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// The service, against the fake broker
// ---------------------------------------------------------------------------------------------------------------------

const resolve = (keepaliveSeconds: number): ConnectOptions.Resolved => {
  const result = ConnectOptions.resolve(
    { url: "mqtt://fake.broker", clientId: "keepalive-test", keepalive: keepaliveSeconds },
    new Uint8Array(6)
  )
  if (Result.isFailure(result)) throw new Error(result.failure.message)
  return result.success
}

const publish = (packetId: number): Packet.Publish => ({
  _tag: "Publish",
  topic: "traffic",
  payload: new Uint8Array([packetId & 0xff]),
  qos: 1,
  retain: false,
  dup: false,
  packetId
})

/**
 * Connects at time 0, starts a fiber that pulls the link (so that received packets count, as the client's reader
 * does) and the keepalive service, and returns what a test observes.
 */
const setup = (script: FakeBroker.Script, keepaliveConfig: Keepalive.Config = config) =>
  Effect.gen(function*() {
    const broker = yield* FakeBroker.make(script)
    const link = yield* Connection.connect(broker.socket, resolve(keepaliveConfig.keepaliveMillis / 1000))
    const conn = yield* broker.connection()
    yield* conn.expectPacket("Connect")
    const pulled: Array<Packet.ServerPacket> = []
    const reader = yield* Effect.forkChild(
      Effect.forever(Effect.flatMap(link.pull, (packets) => Effect.sync(() => pulled.push(...packets))))
    )
    let pings = 0
    const keepalive = yield* Effect.forkChild(Keepalive.make.run(link, keepaliveConfig, () => pings++))
    yield* Effect.yieldNow
    return { broker, link, conn, pulled, reader, keepalive, pings: () => pings }
  })

const pingsAt = (conn: FakeBroker.Conn): Array<number> =>
  conn.received.flatMap((packet, i) => (packet._tag === "Pingreq" ? [conn.receivedAt[i]!] : []))

const awaitBounded = <A, E>(fiber: Fiber.Fiber<A, E>, what: string) =>
  Fiber.await(fiber).pipe(
    Effect.timeoutOrElse({ duration: Duration.seconds(2), orElse: () => Effect.die(new Error(`hung: ${what}`)) }),
    withLiveClock
  )

/** The error of a fiber expected to fail, waiting for it with a real-time bound. */
const failureOf = <A>(fiber: Fiber.Fiber<A, MqttError.MqttError>, what: string) =>
  Effect.flatMap(awaitBounded(fiber, what), (exit) => Effect.flip(exit))

describe("Keepalive service", () => {
  it.effect("sends PINGREQ after exactly K of silence, not 1 ms earlier [MQTT-3.1.2-23]", () =>
    Effect.gen(function*() {
      const { conn, pings } = yield* setup({})
      yield* TestClock.adjust(K - 1)
      assert.deepStrictEqual(conn.tags(), ["Connect"])
      assert.strictEqual(pings(), 0)
      yield* TestClock.adjust(1)
      yield* conn.expectPacket("Pingreq")
      assert.strictEqual(pings(), 1)
      assert.deepStrictEqual([...conn.writes[conn.writes.length - 1]!], [0xc0, 0x00])
      assert.deepStrictEqual(pingsAt(conn), [K])
    }))

  it.effect("the PINGRESP arrives to the link's pull, and the next PINGREQ is due K after the ping", () =>
    Effect.gen(function*() {
      const { conn, pulled } = yield* setup({})
      yield* TestClock.adjust(K)
      yield* conn.expectPacket("Pingreq")
      yield* Effect.yieldNow
      assert.deepStrictEqual(pulled.map((p) => p._tag), ["Pingresp"])
      yield* TestClock.adjust(K - 1)
      assert.deepStrictEqual(pingsAt(conn), [K])
      yield* TestClock.adjust(1)
      yield* conn.expectPacket("Pingreq")
      yield* TestClock.adjust(K)
      yield* conn.expectPacket("Pingreq")
      assert.deepStrictEqual(pingsAt(conn), [K, 2 * K, 3 * K])
      yield* Effect.yieldNow
      assert.deepStrictEqual(pulled.map((p) => p._tag), ["Pingresp", "Pingresp", "Pingresp"])
    }))

  it.effect("no PINGREQ while traffic flows both ways every K/2; one K after the traffic stops", () =>
    Effect.gen(function*() {
      const { conn, link, pulled } = yield* setup({ ackPublish: true })
      for (let i = 1; i <= 10; i++) {
        yield* TestClock.adjust(K / 2)
        yield* link.send(publish(i))
        yield* conn.expectPacket("Publish")
      }
      yield* Effect.yieldNow
      assert.strictEqual(pulled.filter((p) => p._tag === "Puback").length, 10)
      assert.deepStrictEqual(pingsAt(conn), [])
      const lastTraffic = 10 * (K / 2)
      yield* TestClock.adjust(K - 1)
      assert.deepStrictEqual(pingsAt(conn), [])
      yield* TestClock.adjust(1)
      yield* conn.expectPacket("Pingreq")
      assert.deepStrictEqual(pingsAt(conn), [lastTraffic + K])
    }))

  it.effect("we send every K/2 but the broker is silent: PINGREQ at K after the last receive", () =>
    Effect.gen(function*() {
      const { conn, link } = yield* setup({ ackPublish: false })
      yield* TestClock.adjust(K / 2)
      yield* link.send(publish(1))
      yield* TestClock.adjust(K / 2 - 1)
      assert.deepStrictEqual(pingsAt(conn), [])
      yield* TestClock.adjust(1)
      yield* conn.expectPacket("Publish")
      yield* conn.expectPacket("Pingreq")
      assert.deepStrictEqual(pingsAt(conn), [K])
    }))

  it.effect("a silent broker: KeepaliveTimeout after K + ping timeout, and the link's pull fails too", () =>
    Effect.gen(function*() {
      const { conn, reader, keepalive } = yield* setup({ pingresp: false })
      yield* TestClock.adjust(K)
      yield* conn.expectPacket("Pingreq")
      yield* TestClock.adjust(PING_TIMEOUT - 1)
      assert.isUndefined(keepalive.pollUnsafe(), "still waiting 1 ms before the ping timeout")
      assert.isTrue(conn.isOpen)
      yield* TestClock.adjust(1)
      const error = yield* failureOf(keepalive, "the keepalive after the ping timeout")
      assert.strictEqual(error.reason._tag, "KeepaliveTimeout")
      if (error.reason._tag === "KeepaliveTimeout") {
        assert.strictEqual(error.reason.keepaliveSeconds, K / 1000)
        assert.strictEqual(error.reason.timeoutMillis, PING_TIMEOUT)
      }
      assert.isTrue(error.isRetryable)
      // The link was aborted: the pending pull fails with the same error and the socket is closed.
      assert.strictEqual(yield* failureOf(reader, "the link's pull after the timeout"), error)
      yield* conn.awaitClosed
      assert.strictEqual(conn.closedBy, "client")
      assert.deepStrictEqual(conn.tags(), ["Connect", "Pingreq"])
    }))

  it.effect("any packet after the PINGREQ answers it (not only PINGRESP)", () =>
    Effect.gen(function*() {
      const { conn, keepalive } = yield* setup({ pingresp: false })
      yield* TestClock.adjust(K)
      yield* conn.expectPacket("Pingreq")
      yield* conn.send({ _tag: "Puback", packetId: 1 })
      yield* TestClock.adjust(PING_TIMEOUT)
      assert.isUndefined(keepalive.pollUnsafe())
      assert.isTrue(conn.isOpen)
    }))

  it.effect("keepalive 0 never pings", () =>
    Effect.gen(function*() {
      const { conn, keepalive, pings } = yield* setup({}, { keepaliveMillis: 0, pingTimeoutMillis: PING_TIMEOUT })
      assert.strictEqual((conn.received[0] as Packet.Connect).keepalive, 0)
      yield* TestClock.adjust(Duration.days(3))
      assert.deepStrictEqual(conn.tags(), ["Connect"])
      assert.strictEqual(pings(), 0)
      assert.isUndefined(keepalive.pollUnsafe())
      assert.isTrue(conn.isOpen)
    }))

  it.effect("a PINGREQ that cannot be queued fails the keepalive with the link's error", () =>
    Effect.gen(function*() {
      const { conn, link, keepalive } = yield* setup({})
      yield* link.disconnect
      yield* TestClock.adjust(K)
      const error = yield* failureOf(keepalive, "the keepalive after DISCONNECT")
      assert.strictEqual(error.reason._tag, "Disconnected")
      assert.deepStrictEqual(conn.tags(), ["Connect", "Disconnect"])
    }))

  // Regression: found by this test and fixed in src.
  it.effect("ping timeout > K: after an answered ping the next PINGREQ is still at K [MQTT-3.1.2-23]", () =>
    Effect.gen(function*() {
      const long: Keepalive.Config = { keepaliveMillis: K, pingTimeoutMillis: 2.5 * K }
      const { conn } = yield* setup({}, long)
      yield* TestClock.adjust(K)
      yield* conn.expectPacket("Pingreq")
      yield* TestClock.adjust(K)
      assert.deepStrictEqual(pingsAt(conn), [K, 2 * K], "no PINGREQ for more than the keepalive interval")
    }))

  // Regression: found by this test and fixed in src.
  it.effect("a PINGRESP delivered synchronously with the write still answers the ping", () =>
    Effect.gen(function*() {
      const { conn, keepalive, pulled } = yield* setup({ answerSynchronously: true })
      yield* TestClock.adjust(K)
      yield* conn.expectPacket("Pingreq")
      assert.deepStrictEqual(pulled.map((p) => p._tag), ["Pingresp"])
      yield* TestClock.adjust(PING_TIMEOUT)
      assert.isUndefined(keepalive.pollUnsafe(), "the keepalive failed although the ping was answered")
      assert.isTrue(conn.isOpen)
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// start: on the system clock a Node timer (driven here by vitest's fake timers), on any other clock a fiber
// ---------------------------------------------------------------------------------------------------------------------

/** A link whose timestamps and received count the test sets, recording what is offered and aborted. */
const scriptedLink = (at: number) => {
  const state = {
    lastSentAt: at,
    lastReceivedAt: at,
    receivedCount: 0,
    offered: [] as Array<string>,
    aborted: [] as Array<MqttError.MqttError>,
    refuse: undefined as MqttError.MqttError | undefined
  }
  const link: Connection.Link = {
    connack: { _tag: "Connack", sessionPresent: false, returnCode: 0 },
    url: "mqtt://scripted",
    pull: Effect.never,
    offer: (packet) => {
      if (state.refuse !== undefined) return state.refuse
      state.offered.push(packet._tag)
      return undefined
    },
    send: () => Effect.void,
    awaitWritten: () => Effect.void,
    disconnect: Effect.void,
    lastSentAt: () => state.lastSentAt,
    lastReceivedAt: () => state.lastReceivedAt,
    receivedCount: () => state.receivedCount,
    abort: (error) => Effect.sync(() => void state.aborted.push(error))
  }
  return { state, link }
}

describe("Keepalive.start on the system clock: one timer, no fiber", () => {
  beforeEach(() => void vi.useFakeTimers())
  afterEach(() => void vi.useRealTimers())

  const started = (keepaliveConfig: Keepalive.Config = config) => {
    const { state, link } = scriptedLink(Date.now())
    const pings: Array<number> = []
    const scope = Effect.runSync(Scope.make())
    Effect.runSync(Scope.provide(Keepalive.make.start(link, keepaliveConfig, (now) => pings.push(now)), scope))
    return { state, pings, scope, t0: Date.now() }
  }

  it("sends PINGREQ after exactly K of silence and again K after it [MQTT-3.1.2-23]", () => {
    const { state, pings, t0 } = started()
    assert.strictEqual(vi.getTimerCount(), 1)
    vi.advanceTimersByTime(K - 1)
    assert.deepStrictEqual(state.offered, [])
    vi.advanceTimersByTime(1)
    assert.deepStrictEqual(state.offered, ["Pingreq"])
    assert.deepStrictEqual(pings, [t0 + K])
    // Answered: the next PINGREQ is due K after the first.
    state.receivedCount++
    state.lastReceivedAt = Date.now()
    vi.advanceTimersByTime(K)
    assert.deepStrictEqual(state.offered, ["Pingreq", "Pingreq"])
    assert.deepStrictEqual(state.aborted, [])
  })

  it("a broker silent for the ping timeout after PINGREQ: the link is aborted with KeepaliveTimeout, no timer left", () => {
    const { state } = started()
    vi.advanceTimersByTime(K)
    vi.advanceTimersByTime(PING_TIMEOUT - 1)
    assert.deepStrictEqual(state.aborted, [])
    vi.advanceTimersByTime(1)
    assert.deepStrictEqual(state.aborted.map((e) => e.reason._tag), ["KeepaliveTimeout"])
    assert.strictEqual(vi.getTimerCount(), 0)
  })

  it("a PINGREQ that cannot be queued aborts the link with the link's error", () => {
    const { state } = started()
    const refused = { reason: { _tag: "Disconnected" } } as unknown as MqttError.MqttError
    state.refuse = refused
    vi.advanceTimersByTime(K)
    assert.deepStrictEqual(state.aborted, [refused])
    assert.strictEqual(vi.getTimerCount(), 0)
  })

  it("closing the scope clears the timer: no PINGREQ after the link's end", () => {
    const { state, scope } = started()
    Effect.runSync(Scope.close(scope, Exit.void))
    assert.strictEqual(vi.getTimerCount(), 0)
    vi.advanceTimersByTime(10 * K)
    assert.deepStrictEqual(state.offered, [])
  })

  it("keepalive 0 arms no timer", () => {
    const { state } = started({ keepaliveMillis: 0, pingTimeoutMillis: PING_TIMEOUT })
    assert.strictEqual(vi.getTimerCount(), 0)
    assert.deepStrictEqual(state.offered, [])
  })
})

describe("Keepalive.start on another clock", () => {
  it.effect("forks `run`: PINGREQ on the TestClock, and a ping timeout aborts the link", () =>
    Effect.gen(function*() {
      const { state, link } = scriptedLink(0)
      yield* Keepalive.make.start(link, config)
      yield* TestClock.adjust(K)
      assert.deepStrictEqual(state.offered, ["Pingreq"])
      yield* TestClock.adjust(PING_TIMEOUT)
      assert.deepStrictEqual(state.aborted.map((e) => e.reason._tag), ["KeepaliveTimeout"])
    }))
})
