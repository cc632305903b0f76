/**
 * The foundation demo: encodes a few MQTT 3.1.1 packets, prints their bytes, decodes them back from a stream split
 * one byte at a time, and shows the typed errors that invalid input gets. Run: `npm start`.
 */
import { Effect, Result } from "effect"
import { Codec, MqttError, Topic } from "effect-mqtt"
import type { Packet } from "effect-mqtt"

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex").replace(/(..)/g, "$1 ").trim()

const packets: ReadonlyArray<Packet.Packet> = [
  { _tag: "Connect", protocolLevel: 4, clientId: "demo", cleanSession: true, keepalive: 60 },
  { _tag: "Subscribe", packetId: 1, subscriptions: [{ topicFilter: "sensors/+/temperature", qos: 1 }] },
  {
    _tag: "Publish",
    topic: "sensors/kitchen/temperature",
    payload: new TextEncoder().encode("21.5"),
    qos: 1,
    retain: false,
    dup: false,
    packetId: 2
  },
  { _tag: "Pingreq" }
]

const program = Effect.gen(function*() {
  const stream: Array<number> = []
  for (const packet of packets) {
    const bytes = yield* Effect.fromResult(Codec.encode(packet))
    yield* Effect.log(`${packet._tag.padEnd(10)} ${hex(bytes)}`)
    stream.push(...bytes)
  }

  const decoder = new Codec.Decoder({ maximumPacketSize: 1024 })
  const decoded: Array<Packet.Packet> = []
  for (const byte of stream) decoded.push(...(yield* Effect.fromResult(decoder.push(Uint8Array.of(byte)))))
  yield* Effect.log(`decoded ${decoded.length} packets from ${stream.length} single-byte chunks: ${decoded.map((p) => p._tag).join(", ")}`)

  yield* Effect.log(`"sensors/+/temperature" matches "sensors/kitchen/temperature": ${Topic.matches("sensors/+/temperature", "sensors/kitchen/temperature")}`)
  yield* Effect.log(`"#" matches "$SYS/uptime": ${Topic.matches("#", "$SYS/uptime")}`)

  // Invalid input is a typed MqttError, recovered here by reason and by Paho code.
  const badQos = Codec.encode({ _tag: "Publish", topic: "a", payload: new Uint8Array(), qos: 3 as 0, retain: false, dup: false })
  const wildcard = Codec.encode({ _tag: "Publish", topic: "a/#", payload: new Uint8Array(), qos: 0, retain: false, dup: false })
  for (const result of [badQos, wildcard]) {
    if (Result.isFailure(result)) {
      const error = result.failure
      yield* Effect.log(`rejected before sending: ${error.reason._tag} (Paho ${error.pahoName} ${error.code}): ${error.message}`)
    }
  }
  const oversize = new Codec.Decoder({ maximumPacketSize: 1024 }).push(Uint8Array.of(0x30, 0x80, 0x80, 0x40))
  if (Result.isFailure(oversize)) yield* Effect.log(`incoming packet refused from its header: ${oversize.failure.message}`)

  const recovered = yield* Effect.fromResult(Codec.encode({ _tag: "Subscribe", packetId: 0, subscriptions: [] })).pipe(
    Effect.catchIf(MqttError.hasCode(MqttError.PahoCode.BAD_STRUCTURE), (e) => Effect.succeed(`recovered by code: ${e.message}`))
  )
  yield* Effect.log(typeof recovered === "string" ? recovered : "encoded")
})

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exit(1)
})
