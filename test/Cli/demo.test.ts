/**
 * The `npm start` demo runs to completion on its embedded Aedes broker: the same command as the npm script (this
 * Node, `--conditions=@effect-mqtt/source examples/demo.ts`) as a child process, bounded at 60 s, exit 0, and the
 * lines that show each step worked. With `--url` it fails fast (exit 1, one error line) on an unreachable broker.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { freePort } from "../utils/ports.ts"
import { spawnNode } from "./processes.ts"

describe("npm start (examples/demo.ts)", () => {
  it.live("runs every step on the embedded broker and exits 0", () =>
    Effect.gen(function*() {
      const demo = yield* spawnNode(["examples/demo.ts"])
      const output = yield* demo.exit("60 seconds")
      const explain = `exit ${output.code}\nstdout:\n${output.stdout}\nstderr:\n${output.stderr}`
      assert.strictEqual(output.code, 0, explain)
      assert.strictEqual(output.stderr, "", explain)
      const expected = [
        /broker: embedded Aedes at mqtt:\/\/127\.0\.0\.1:\d+/,
        /watcher {2}SUBSCRIBE demo\/# \(QoS 2\) → SUBACK, granted QoS 2/,
        /PUBLISH QoS 0 demo\/kitchen\/temperature "21\.5" → written to the socket/,
        /PUBLISH QoS 1 demo\/kitchen\/temperature "21\.6" → PUBACK, packet id \d+/,
        /PUBLISH QoS 2 demo\/kitchen\/temperature "21\.7" → PUBCOMP, packet id \d+/,
        /watcher {2}received demo\/kitchen\/temperature "21\.7" at QoS 2/,
        /sensor {3}a Stream of 10 readings → publishSink: 10 published at QoS 1/,
        /watcher {2}received demo\/kitchen\/humidity "40%" … "49%", in order/,
        /late {5}SUBSCRIBE demo\/kitchen\/status → received "online" retain=true/,
        /watcher {2}received demo\/devices\/thermostat\/status "offline": the broker published the will/,
        /watcher {2}status: Connected → Reconnecting \(attempt 1, after TransportError\) → Connected/,
        /watcher {2}events: Disconnected\(TransportError\) → Reconnecting\(attempt 1\) → Connected/,
        /watcher {2}received demo\/kitchen\/temperature "22\.0": subscription restored/,
        /│ drop and reconnect │ reconnected in \d+ ms, demo\/# receives again/,
        /All 8 steps passed\./
      ]
      for (const line of expected) assert.match(output.stdout, line, explain)
    }), 90_000)

  it.live("--url to a port nobody listens on: exit 1 with one error line, at once", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const demo = yield* spawnNode(["examples/demo.ts", "--url", `mqtt://127.0.0.1:${port}`])
      const output = yield* demo.exit("30 seconds")
      assert.strictEqual(output.code, 1, output.stderr)
      assert.match(
        output.stderr,
        /demo failed: TransportError \(Paho -1 FAILURE\): open mqtt:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/
      )
    }), 60_000)
})
