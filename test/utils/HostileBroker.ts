/**
 * A hostile MQTT broker for tests: a real TCP server on 127.0.0.1 (so the client's Node transport, socket reads and
 * backpressure are exercised, not an in-memory socket), scripted per connection, as a scoped resource. It owns the
 * listening socket, every connection it accepted and the record of what each one received and sent; closing the
 * scope destroys them all.
 *
 * Every connection is answered with CONNACK (return code 0, no session; or raw bytes of the test's choosing) and then
 * served like a small, well-behaved broker — PINGRESP, SUBACK granting what was asked, UNSUBACK, PUBACK / PUBREC /
 * PUBCOMP for the client's publishes — except that connection number `n` (from 1) also runs the `n`-th `Attack` of the
 * script when its `Trigger` comes (right after CONNACK, after the client's first PUBLISH, or after its first
 * SUBSCRIBE). Attacks send raw bytes (malformed packets, a second CONNACK, packets a server may never send,
 * acknowledgements for unknown ids, QoS 3, bad topics), a fixed header announcing a huge packet followed by a bounded
 * body, or a flood of PUBLISH written as fast as TCP accepts them, without waiting for the client's acknowledgements.
 * Connections past the script behave, so a test can watch the client reconnect.
 *
 * `cases` is the catalogue of hostile cases with what a correct client must do with each: fail the connection with
 * `MalformedPacket` or `ProtocolViolation` (and reconnect), or tolerate it. Bounded: every write respects TCP
 * backpressure, floods and oversize bodies have fixed sizes, and the broker reads at most `maxPacketSize` bytes per
 * client packet.
 */
import * as net from "node:net"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import * as Codec from "../../src/Codec/Codec.ts"
import type * as Packet from "../../src/Codec/Packet.ts"
import { bounded } from "./clients.ts"
import { withLiveClock } from "./live.ts"
import * as Loopback from "./loopback.ts"

/** What a scripted connection does besides behaving. */
export type Attack =
  | {
    readonly _tag: "Raw"
    /** Bytes written at once, as one write (or one per element). */
    readonly bytes: Uint8Array | ReadonlyArray<Uint8Array>
    readonly after?: Trigger | undefined
  }
  | {
    readonly _tag: "Oversize"
    /** The first byte of the fixed header (default 0x30: PUBLISH QoS 0). */
    readonly firstByte?: number | undefined
    /** The remaining length announced (at most 268,435,455, the largest 4 bytes can say). */
    readonly announced: number
    /** How many body bytes to write at most (zeros, in 64 KiB writes) before giving up. */
    readonly bodyBytes: number
    readonly after?: Trigger | undefined
  }
  | {
    readonly _tag: "Flood"
    readonly count: number
    readonly qos: Packet.QoS
    readonly payloadBytes: number
    /** The topic of every message (default: the first filter the client subscribed to, `+` and `#` filled in). */
    readonly topic?: string | undefined
    /** Default "subscribe". */
    readonly after?: Trigger | undefined
  }

/**
 * When an attack starts: right after CONNACK (it may then share a TCP read with the CONNACK and fail the handshake
 * itself), after the client's first PUBLISH (default for bytes: the client is surely connected; a test publishes
 * anything to start it), or after the client's first SUBSCRIBE was acknowledged (default for floods).
 */
export type Trigger = "connack" | "publish" | "subscribe"

/** One connection as the broker saw it. */
export interface HostileConnection {
  /** 1 for the first connection, ... */
  readonly id: number
  /** The attack it ran, if any. */
  readonly attack: Attack | undefined
  /** Packets received from the client, decoded. */
  readonly received: ReadonlyArray<Packet.Packet>
  /** Bytes written to the client (CONNACK included). */
  readonly bytesWritten: number
  /** Whether the attack has been written completely (a flood or oversize body may be cut short by the client). */
  readonly attackDone: boolean
  /** Who closed the connection, once closed. */
  readonly closedBy: "client" | "broker" | undefined
  readonly isOpen: boolean
  /** Whether the client sent bytes the broker could not decode. */
  readonly malformed: string | undefined
}

export interface HostileBrokerOptions {
  /** The attack of connection 1, 2, ...; later connections behave. */
  readonly script: ReadonlyArray<Attack | undefined>
  /**
   * Raw bytes written instead of the CONNACK on connection `n` (one write: e.g. a CONNACK and garbage in the same
   * read, or a PUBLISH before any CONNACK); undefined: the normal CONNACK.
   */
  readonly connack?: ((connection: number) => Uint8Array | undefined) | undefined
  /** Largest packet read from the client (default 1 MiB). */
  readonly maxPacketSize?: number | undefined
}

export interface HostileBroker {
  readonly port: number
  /** `mqtt://127.0.0.1:PORT` */
  readonly url: string
  readonly connections: ReadonlyArray<HostileConnection>
  /** Waits until connection `id` exists (bounded, default 10 s). */
  readonly connection: (id: number, timeout?: number) => Effect.Effect<HostileConnection>
  /** Waits until connection `id` is closed (bounded). */
  readonly awaitClosed: (id: number, timeout?: number) => Effect.Effect<HostileConnection>
  /** Waits until connection `id` finished its attack or closed (bounded). */
  readonly awaitAttack: (id: number, timeout?: number) => Effect.Effect<HostileConnection>
}

// ---------------------------------------------------------------------------------------------------------------------
// Packet bytes
// ---------------------------------------------------------------------------------------------------------------------

const encoder = new TextEncoder()

/** Encodes a packet with our codec (it must be valid). */
export const encode = (packet: Packet.Packet): Uint8Array => {
  const encoded = Codec.encode(packet)
  if (Result.isFailure(encoded)) {
    throw new Error(`HostileBroker: cannot encode ${packet._tag}: ${encoded.failure.message}`)
  }
  return encoded.success
}

const remainingLength = (n: number): Array<number> => {
  const out: Array<number> = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    out.push(byte)
  } while (n > 0)
  return out
}

/** A packet from a first byte and a body, with the remaining length computed. */
export const frame = (firstByte: number, body: ReadonlyArray<number> | Uint8Array): Uint8Array =>
  Uint8Array.from([firstByte, ...remainingLength(body.length), ...body])

/** A PUBLISH with any first byte (QoS bits included) and raw topic bytes. */
export const rawPublish = (
  firstByte: number,
  topic: ReadonlyArray<number> | Uint8Array,
  packetId: number | undefined,
  payload: ReadonlyArray<number> | Uint8Array = [0x21]
): Uint8Array =>
  frame(firstByte, [
    topic.length >> 8,
    topic.length & 0xff,
    ...topic,
    ...(packetId === undefined ? [] : [packetId >> 8, packetId & 0xff]),
    ...payload
  ])

const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

// ---------------------------------------------------------------------------------------------------------------------
// The catalogue
// ---------------------------------------------------------------------------------------------------------------------

/** What a correct client does with a hostile case. */
export type Expectation = "MalformedPacket" | "ProtocolViolation" | "tolerated"

export interface HostileCase {
  readonly name: string
  readonly attack: Attack
  readonly expect: Expectation
  /** Client options the case needs (e.g. `maximumPacketSize`). */
  readonly clientOptions?: { readonly maximumPacketSize?: number } | undefined
  /** The client subscribes to `hostile/#` before the attack (for attacks after SUBSCRIBE). */
  readonly subscribe?: boolean | undefined
  /** A check of what the client sent on the hostile connection: a problem, or undefined. */
  readonly verify?: ((connection: HostileConnection) => string | undefined) | undefined
}

/** The largest remaining length 4 bytes can announce: 268,435,455 bytes (256 MiB). */
export const MAX_REMAINING_LENGTH = 268_435_455

const topicBytes = encoder.encode("hostile/t")

/** A case that writes `bytes` once the client is connected. */
const raw = (name: string, bytes: Uint8Array | ReadonlyArray<number>, expect: Expectation): HostileCase => ({
  name,
  attack: { _tag: "Raw", bytes: Uint8Array.from(bytes) },
  expect
})

const connack = encode({ _tag: "Connack", sessionPresent: false, returnCode: 0 })
const subscribe = encode({ _tag: "Subscribe", packetId: 1, subscriptions: [{ topicFilter: "a", qos: 0 }] })
const connect = encode({ _tag: "Connect", protocolLevel: 4, clientId: "evil", cleanSession: true, keepalive: 0 })
const unknownAcks = concat([
  encode({ _tag: "Puback", packetId: 4242 }),
  encode({ _tag: "Pubrec", packetId: 4243 }),
  encode({ _tag: "Pubcomp", packetId: 4244 }),
  encode({ _tag: "Suback", packetId: 4245, returnCodes: [0] }),
  encode({ _tag: "Unsuback", packetId: 4246 })
])

/** Every hostile case, in a fixed order. */
export const cases: ReadonlyArray<HostileCase> = [
  raw("reserved packet type 0", [0x00, 0x00], "MalformedPacket"),
  raw("reserved packet type 15", [0xf0, 0x00], "MalformedPacket"),
  // 0x80 0x80 0x80 0x80 0x04 would be 4 * 128^4 = 1 GiB, but a remaining length has at most 4 bytes (§2.2.3).
  raw("remaining length of 5 bytes announcing 1 GiB", [0x30, 0x80, 0x80, 0x80, 0x80, 0x04], "MalformedPacket"),
  {
    name: "oversize PUBLISH: header announcing 256 MiB, client limit 64 KiB, 32 MiB of body offered",
    attack: { _tag: "Oversize", announced: MAX_REMAINING_LENGTH, bodyBytes: 32 * 1024 * 1024 },
    expect: "MalformedPacket",
    clientOptions: { maximumPacketSize: 64 * 1024 }
  },
  raw("second CONNACK", connack, "ProtocolViolation"),
  raw("PUBLISH with QoS 3", rawPublish(0x36, topicBytes, 1), "MalformedPacket"),
  raw("PUBLISH topic not well-formed UTF-8", rawPublish(0x30, [0x61, 0x2f, 0xc3, 0x28], undefined), "MalformedPacket"),
  raw(
    "PUBLISH topic with an overlong UTF-8 encoding of '/'",
    rawPublish(0x30, [0x61, 0xc0, 0xaf, 0x62], undefined),
    "MalformedPacket"
  ),
  raw("PUBLISH topic containing U+0000", rawPublish(0x30, [0x61, 0x00, 0x62], undefined), "MalformedPacket"),
  raw("PUBLISH topic with a wildcard", rawPublish(0x30, encoder.encode("a/+"), undefined), "MalformedPacket"),
  raw("PUBLISH QoS 1 with packet id 0", rawPublish(0x32, topicBytes, 0), "MalformedPacket"),
  raw("PUBACK with reserved flags set", [0x42, 0x02, 0x00, 0x01], "MalformedPacket"),
  raw("PUBACK with remaining length 3", [0x40, 0x03, 0x00, 0x01, 0x00], "MalformedPacket"),
  raw("PUBREL without its fixed flags", [0x60, 0x02, 0x00, 0x01], "MalformedPacket"),
  raw("PINGRESP with a body", [0xd0, 0x01, 0x00], "MalformedPacket"),
  raw("SUBSCRIBE from the broker", subscribe, "ProtocolViolation"),
  raw("PINGREQ from the broker", encode({ _tag: "Pingreq" }), "ProtocolViolation"),
  raw("DISCONNECT from the broker", encode({ _tag: "Disconnect" }), "ProtocolViolation"),
  raw("CONNECT from the broker", connect, "ProtocolViolation"),
  raw("acknowledgements for unknown packet ids (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK)", unknownAcks, "tolerated"),
  {
    ...raw(
      "PUBREL for an unknown packet id (answered with PUBCOMP)",
      encode({ _tag: "Pubrel", packetId: 4247 }),
      "tolerated"
    ),
    verify: (connection) =>
      connection.received.some((p) => p._tag === "Pubcomp" && p.packetId === 4247)
        ? undefined
        : "no PUBCOMP for packet id 4247 [MQTT-4.3.3-2]"
  },
  {
    name: "flood of 20,000 QoS 1 PUBLISH of 16 KiB (320 MiB), acknowledgements not awaited",
    attack: { _tag: "Flood", count: 20_000, qos: 1, payloadBytes: 16 * 1024 },
    expect: "tolerated",
    subscribe: true
  },
  {
    name: "flood of 20,000 QoS 0 PUBLISH of 16 KiB (320 MiB)",
    attack: { _tag: "Flood", count: 20_000, qos: 0, payloadBytes: 16 * 1024 },
    expect: "tolerated",
    subscribe: true
  }
]

// ---------------------------------------------------------------------------------------------------------------------
// The broker
// ---------------------------------------------------------------------------------------------------------------------

interface State {
  id: number
  attack: Attack | undefined
  received: Array<Packet.Packet>
  bytesWritten: number
  attackDone: boolean
  closedBy: "client" | "broker" | undefined
  isOpen: boolean
  malformed: string | undefined
}

const CHUNK = 64 * 1024

/** Writes `next()` chunks until it returns undefined or the socket closes, respecting backpressure. */
const writeAll = (socket: net.Socket, state: State, next: () => Uint8Array | undefined, done: () => void) => {
  const loop = () => {
    while (!socket.destroyed && socket.writable) {
      const chunk = next()
      if (chunk === undefined) {
        done()
        return
      }
      state.bytesWritten += chunk.length
      if (!socket.write(chunk)) {
        socket.once("drain", loop)
        return
      }
    }
  }
  loop()
}

/** Starts a hostile broker for the current scope. */
export const start = (options: HostileBrokerOptions): Effect.Effect<HostileBroker, Error, Scope.Scope> =>
  withLiveClock(Effect.gen(function*() {
    const states: Array<State> = []
    const sockets = new Set<net.Socket>()
    const waiters = new Set<() => void>()
    const notify = () => {
      for (const wake of [...waiters]) wake()
    }
    const maxPacketSize = options.maxPacketSize ?? 1024 * 1024

    const server = net.createServer((socket) => {
      socket.setNoDelay(true)
      sockets.add(socket)
      const state: State = {
        id: states.length + 1,
        attack: options.script[states.length],
        received: [],
        bytesWritten: 0,
        attackDone: false,
        closedBy: undefined,
        isOpen: true,
        malformed: undefined
      }
      states.push(state)
      const decoder = new Codec.Decoder({ maximumPacketSize: maxPacketSize })
      let subscribedTopic: string | undefined
      let attacked = false

      const send = (bytes: Uint8Array) => {
        if (socket.destroyed || !socket.writable) return
        state.bytesWritten += bytes.length
        socket.write(bytes)
      }
      const close = () => {
        if (state.closedBy === undefined) state.closedBy = "broker"
        socket.destroy()
      }
      const finish = () => {
        state.attackDone = true
        notify()
      }

      const runAttack = () => {
        const attack = state.attack
        if (attack === undefined || attacked) return
        attacked = true
        switch (attack._tag) {
          case "Raw": {
            const chunks = attack.bytes instanceof Uint8Array ? [attack.bytes] : attack.bytes
            for (const chunk of chunks) send(chunk)
            finish()
            return
          }
          case "Oversize": {
            const announced = Math.min(attack.announced, MAX_REMAINING_LENGTH)
            send(Uint8Array.from([attack.firstByte ?? 0x30, ...remainingLength(announced)]))
            const zeros = new Uint8Array(CHUNK)
            let left = Math.min(attack.bodyBytes, announced)
            writeAll(socket, state, () => {
              if (left <= 0) return undefined
              const n = Math.min(CHUNK, left)
              left -= n
              return n === CHUNK ? zeros : zeros.subarray(0, n)
            }, finish)
            return
          }
          case "Flood": {
            const topic = encoder.encode(attack.topic ?? subscribedTopic ?? "hostile/flood")
            const idBytes = attack.qos > 0 ? 2 : 0
            const bodyLength = 2 + topic.length + idBytes + attack.payloadBytes
            const header = [0x30 | (attack.qos << 1), ...remainingLength(bodyLength)]
            let sent = 0
            writeAll(socket, state, () => {
              if (sent >= attack.count) return undefined
              sent++
              // One allocation per packet; the message number in the first 4 bytes of the payload.
              const packet = Buffer.alloc(header.length + bodyLength)
              packet.set(header, 0)
              let offset = header.length
              offset = packet.writeUInt16BE(topic.length, offset)
              packet.set(topic, offset)
              offset += topic.length
              if (idBytes > 0) offset = packet.writeUInt16BE(((sent - 1) % 65_535) + 1, offset)
              if (attack.payloadBytes >= 4) packet.writeUInt32BE(sent, offset)
              return packet
            }, finish)
            return
          }
        }
      }
      const afterOf = (attack: Attack | undefined): Trigger | undefined =>
        attack === undefined ? undefined : attack.after ?? (attack._tag === "Flood" ? "subscribe" : "publish")

      const answer = (packet: Packet.Packet) => {
        switch (packet._tag) {
          case "Connect":
            if (state.received.filter((p) => p._tag === "Connect").length > 1) return close()
            send(options.connack?.(state.id) ?? encode({ _tag: "Connack", sessionPresent: false, returnCode: 0 }))
            if (afterOf(state.attack) === "connack") runAttack()
            return
          case "Pingreq":
            return send(encode({ _tag: "Pingresp" }))
          case "Subscribe": {
            const returnCodes = packet.subscriptions.map((s) => s.qos)
            send(encode({ _tag: "Suback", packetId: packet.packetId, returnCodes }))
            subscribedTopic ??= packet.subscriptions[0]?.topicFilter.replace(/\+/g, "x").replace(/#$/, "x")
            if (afterOf(state.attack) === "subscribe") runAttack()
            return
          }
          case "Unsubscribe":
            return send(encode({ _tag: "Unsuback", packetId: packet.packetId }))
          case "Publish":
            if (packet.qos === 1) send(encode({ _tag: "Puback", packetId: packet.packetId! }))
            if (packet.qos === 2) send(encode({ _tag: "Pubrec", packetId: packet.packetId! }))
            if (afterOf(state.attack) === "publish") runAttack()
            return
          case "Pubrel":
            return send(encode({ _tag: "Pubcomp", packetId: packet.packetId }))
          case "Disconnect":
            return close()
          default:
            return
        }
      }

      socket.on("data", (chunk: Buffer) => {
        const decoded = decoder.push(chunk)
        if (Result.isFailure(decoded)) {
          state.malformed = decoded.failure.message
          close()
          return
        }
        for (const packet of decoded.success) {
          state.received.push(packet)
          answer(packet)
        }
        notify()
      })
      socket.on("error", () => {})
      socket.on("close", () => {
        if (state.closedBy === undefined) state.closedBy = "client"
        state.isOpen = false
        sockets.delete(socket)
        notify()
      })
      notify()
    })

    const port = yield* Loopback.listen(server, () => sockets)

    const until = (id: number, what: string, done: (state: State) => boolean, timeout?: number) =>
      bounded(
        Effect.callback<HostileConnection>((resume) => {
          const check = () => {
            const state = states[id - 1]
            if (state === undefined || !done(state)) return
            waiters.delete(check)
            resume(Effect.succeed(state))
          }
          waiters.add(check)
          check()
          return Effect.sync(() => {
            waiters.delete(check)
          })
        }),
        () => `hostile broker connection ${id} ${what} (connections so far: ${states.length})`,
        timeout ?? 10_000
      )

    const broker: HostileBroker = {
      port,
      url: `mqtt://127.0.0.1:${port}`,
      connections: states,
      connection: (id, timeout) => until(id, "to exist", () => true, timeout),
      awaitClosed: (id, timeout) => until(id, "to close", (s) => !s.isOpen, timeout),
      awaitAttack: (id, timeout) => until(id, "to finish its attack", (s) => s.attackDone || !s.isOpen, timeout)
    }
    return broker
  }))
