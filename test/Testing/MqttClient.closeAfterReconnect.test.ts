/**
 * Regression, found while comparing `MqttTest` with Aedes: after a reconnect, closing the client's scope must be a
 * graceful disconnect. Reconnected links once lived in scopes forked after the client's `disconnect` finalizer, so
 * closing the client cut them first (no DISCONNECT, the will published) and then waited `disconnectTimeout` for
 * acknowledgements that could no longer arrive. Every link's scope now comes from one scope forked before it.
 */
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as MqttClient from "../../src/Client/MqttClient.ts"
import * as Aedes from "../utils/Aedes.ts"
import { awaitStatus, clientId, isStatus, options, waitUntil } from "../utils/clients.ts"

it.live("after a reconnect, closing the client's scope sends DISCONNECT (no will) and returns at once", () =>
  Effect.gen(function*() {
    const broker = yield* Aedes.start()
    const wills: Array<string> = []
    broker.broker.on("publish", (packet) => {
      if (packet.topic === "will/close") wills.push(packet.payload.toString())
    })
    const closingAt = yield* Effect.scoped(Effect.gen(function*() {
      const client = yield* MqttClient.make(options(broker.url, {
        clientId: clientId("close"),
        reconnect: Schedule.spaced("100 millis"),
        will: { topic: "will/close", payload: "gone" }
      }))
      yield* client.subscription("a/in", { qos: 1 })
      yield* broker.dropConnections
      yield* awaitStatus(client, "Reconnecting", isStatus("Reconnecting"))
      yield* awaitStatus(client, "Connected", isStatus("Connected"))
      // The drop published the will; the graceful close that follows must not.
      yield* waitUntil("the will of the drop", () => wills.length === 1)
      wills.length = 0
      return Date.now()
    }))
    const took = Date.now() - closingAt
    yield* Effect.sleep("100 millis")
    assert.deepStrictEqual(wills, [], "a graceful close discards the will [MQTT-3.1.2-10]")
    assert.isBelow(took, 1_000, `closing took ${took} ms (disconnectTimeout is 2 s)`)
  }))
