import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Session from "../../src/Client/Session.ts"
import * as SessionState from "../../src/Client/SessionState.ts"
import * as SessionStore from "../../src/Client/SessionStore.ts"
import { idleLink } from "../utils/idleLink.ts"

const publish = (packetId: number, qos: 1 | 2, payload = "p"): SessionState.Flight => ({
  _tag: "Publish",
  stage: qos === 1 ? "puback" : "pubrec",
  sent: true,
  packet: { _tag: "Publish", topic: "t/x", payload: new TextEncoder().encode(payload), qos, retain: false, dup: false, packetId }
})

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-mqtt-store-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

const openIn = (store: SessionStore.SessionStore["Service"], clientId: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const journal = yield* Scope.provide(store.open(clientId), scope)
    return { journal, close: Scope.close(scope, Exit.void) }
  })

const comparable = (snapshot: SessionState.Snapshot) =>
  JSON.stringify(snapshot, (_, v) => (v instanceof Uint8Array ? Array.from(v) : v))

describe("SessionState.replay", () => {
  it("applies entries in order; a new stage moves a flight to the end (PUBREL order) [MQTT-4.6.0-4]", () => {
    const snapshot = SessionState.replay(SessionState.emptySnapshot, [
      { _tag: "PutFlight", flight: publish(1, 2) },
      { _tag: "PutFlight", flight: publish(2, 1) },
      { _tag: "PutFlight", flight: { ...publish(1, 2), stage: "pubcomp" } as SessionState.Flight },
      { _tag: "AddIncoming", packetId: 7 },
      { _tag: "AddIncoming", packetId: 8 },
      { _tag: "RemoveIncoming", packetId: 7 },
      { _tag: "RemoveFlight", packetId: 2 }
    ])
    assert.deepStrictEqual(snapshot.flights.map((f) => f.packet.packetId), [1])
    assert.deepStrictEqual(snapshot.incomingQos2, [8])
    const cleared = SessionState.replay(snapshot, [{ _tag: "ClearOutgoing" }, { _tag: "ClearIncoming" }])
    assert.deepStrictEqual(cleared, SessionState.emptySnapshot)
  })
})

describe("SessionStore.makeFile", () => {
  it.effect("stores flights and incoming QoS 2 ids across reopen, payload bytes intact [MQTT-4.1.0-1]", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const store = SessionStore.makeFile({ directory })
      const first = yield* openIn(store, "client/1")
      assert.deepStrictEqual(first.journal.snapshot, SessionState.emptySnapshot)
      yield* first.journal.append([{ _tag: "PutFlight", flight: publish(1, 1, "héllo") }])
      yield* first.journal.append([{ _tag: "PutFlight", flight: publish(2, 2) }, { _tag: "AddIncoming", packetId: 9 }])
      yield* first.journal.append([{ _tag: "RemoveFlight", packetId: 1 }])
      yield* first.close
      const second = yield* openIn(store, "client/1")
      assert.deepStrictEqual(second.journal.snapshot.flights.map((f) => f.packet.packetId), [2])
      assert.deepStrictEqual(second.journal.snapshot.incomingQos2, [9])
      const flight = second.journal.snapshot.flights[0]!
      assert.strictEqual(flight._tag, "Publish")
      if (flight._tag === "Publish") assert.deepStrictEqual(Array.from(flight.packet.payload), [0x70])
      yield* second.close
      // Client ids are kept apart, whatever characters they hold.
      const other = yield* openIn(store, "client:1")
      assert.deepStrictEqual(other.journal.snapshot, SessionState.emptySnapshot)
      yield* other.close
    }))

  it.effect("a torn last record (the process died mid-write) is ignored; the records before it count", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const store = SessionStore.makeFile({ directory })
      const first = yield* openIn(store, "torn")
      yield* first.journal.append([{ _tag: "PutFlight", flight: publish(1, 1) }])
      yield* first.journal.append([{ _tag: "PutFlight", flight: publish(2, 1) }])
      yield* first.close
      const log = Path.join(directory, "torn", "session.log")
      const bytes = Fs.readFileSync(log)
      // Cut the last record in half, and in a second run flip a byte of its body.
      Fs.writeFileSync(log, bytes.subarray(0, bytes.length - 10))
      const second = yield* openIn(store, "torn")
      assert.deepStrictEqual(second.journal.snapshot.flights.map((f) => f.packet.packetId), [1])
      yield* second.journal.append([{ _tag: "PutFlight", flight: publish(3, 1) }])
      yield* second.close
      const compacted = Fs.readFileSync(log)
      compacted[compacted.length - 3] ^= 0xff
      Fs.writeFileSync(log, compacted)
      const third = yield* openIn(store, "torn")
      assert.deepStrictEqual(third.journal.snapshot.flights.map((f) => f.packet.packetId), [1])
      yield* third.close
    }))

  it.effect("opening compacts the log to the snapshot, atomically (no temporary file left)", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const store = SessionStore.makeFile({ directory })
      const first = yield* openIn(store, "compact")
      for (let i = 1; i <= 50; i++) {
        yield* first.journal.append([{ _tag: "PutFlight", flight: publish(i, 1) }, { _tag: "RemoveFlight", packetId: i }])
      }
      yield* first.close
      const log = Path.join(directory, "compact", "session.log")
      const before = Fs.statSync(log).size
      const second = yield* openIn(store, "compact")
      yield* second.close
      assert.isBelow(Fs.statSync(log).size, before / 10)
      assert.deepStrictEqual(Fs.readdirSync(Path.join(directory, "compact")), ["session.log"])
    }))

  it.effect("a store that cannot write fails with PersistenceError (-2), surfaced", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const blocked = Path.join(directory, "file")
      Fs.writeFileSync(blocked, "not a directory")
      const error = yield* Effect.flip(Effect.scoped(SessionStore.makeFile({ directory: blocked }).open("x")))
      assert.strictEqual(error.reason._tag, "PersistenceError")
      assert.strictEqual(error.code, -2)
    }))
})

describe("SessionStore.makeMemory and SessionState journaling", () => {
  it.effect("a journaled session restores into a new SessionState that resends with DUP 1 [MQTT-4.4.0-1]", () =>
    Effect.gen(function*() {
      const store = SessionStore.makeMemory()
      const first = yield* openIn(store, "m")
      const state = new SessionState.SessionState()
      state.enableJournal()
      state.resume(false)
      state.publish({ topic: "a", payload: new Uint8Array([1]), qos: 1, retain: false })
      state.publish({ topic: "b", payload: new Uint8Array([2]), qos: 2, retain: false })
      state.handle({ _tag: "Publish", topic: "in", payload: new Uint8Array(), qos: 2, retain: false, dup: false, packetId: 40 })
      state.handle({ _tag: "Pubrec", packetId: 2 })
      yield* first.journal.append(state.takeJournal())
      yield* first.close

      const second = yield* openIn(store, "m")
      const restored = new SessionState.SessionState()
      restored.restore(second.journal.snapshot)
      assert.strictEqual(restored.inflight, 2)
      const step = restored.resume(true)
      assert.deepStrictEqual(step.send.map((p) => [p._tag, "packetId" in p ? p.packetId : undefined, "dup" in p ? p.dup : undefined]), [
        ["Publish", 1, true],
        ["Pubrel", 2, undefined]
      ])
      // The incoming QoS 2 id survived: the broker's resend is not delivered twice [MQTT-4.3.3-2].
      const again = restored.handle({ _tag: "Publish", topic: "in", payload: new Uint8Array(), qos: 2, retain: false, dup: true, packetId: 40 })
      assert.isUndefined(again.deliver)
      assert.strictEqual(comparable(second.journal.snapshot).length > 0, true)
      yield* second.close
    }))

  it("abandon forgets a flight just started, without journaling it", () => {
    const state = new SessionState.SessionState()
    state.enableJournal()
    const started = state.publish({ topic: "a", payload: new Uint8Array(), qos: 1, retain: false })
    assert.strictEqual(started._tag, "Success")
    state.takeJournal()
    if (started._tag === "Success") state.abandon(started.success.packet.packetId!)
    assert.strictEqual(state.inflight, 0)
    assert.strictEqual(state.buffered, 0)
    assert.strictEqual(state.pending, 0)
    assert.deepStrictEqual(state.takeJournal(), [])
    assert.deepStrictEqual(state.resume(false).send, [])
  })
})

describe("Session with a journal", () => {
  it.effect("an acknowledgement that arrives while its flight is being stored completes the publish once stored", () =>
    Effect.gen(function*() {
      const session = Session.make()
      let hold: { readonly started: Deferred.Deferred<void>; readonly release: Deferred.Deferred<void> } | undefined
      let stored: ReadonlyArray<SessionState.JournalEntry> = []
      yield* session.useJournal({
        snapshot: SessionState.emptySnapshot,
        append: (entries) =>
          Effect.suspend(() => {
            stored = stored.concat(entries)
            return hold === undefined ? Effect.void : Deferred.succeed(hold.started, undefined).pipe(
              Effect.andThen(Deferred.await(hold.release))
            )
          })
      })
      yield* session.attach(idleLink())
      hold = { started: yield* Deferred.make<void>(), release: yield* Deferred.make<void>() }
      const publishing = yield* Effect.forkChild(
        session.publish({ topic: "t/x", payload: new Uint8Array([1]), qos: 1, retain: false })
      )
      yield* Deferred.await(hold.started)
      // The flight is being stored, no waiter yet: its PUBACK (for a resend, say) must not be lost.
      const put = stored.find((entry) => entry._tag === "PutFlight")
      assert.isDefined(put)
      const packetId = put._tag === "PutFlight" && put.flight._tag === "Publish" ? put.flight.packet.packetId! : 0
      session.handle({ _tag: "Puback", packetId })
      yield* Deferred.succeed(hold.release, undefined)
      assert.strictEqual(yield* Fiber.join(publishing), packetId)
      assert.strictEqual(session.pending(), 0)
    }))
})
