/**
 * A scripted, in-memory MQTT broker for unit tests of timing and malformed input.
 *
 * `FakeBroker.make(script)` returns a broker whose `socket` is a `Socket.Socket` as the transports build it: every
 * acquisition of its reader is one new in-memory connection (`connections` counts them), and its writer writes to the
 * newest open connection, suspending while there is none. Everything a client writes on a connection is recorded
 * there: `writes` holds the raw bytes of each socket write (a `writeAll` batch is one write), `received` the packets
 * decoded from them with our own `Codec.Decoder`, in order, and `receivedAt` the `Clock` time each arrived.
 *
 * The broker answers from its `Script`: CONNECT with CONNACK 0 (or a chosen return code and session-present flag, raw
 * bytes, silence, or a close), PINGREQ with PINGRESP (switch it off for a black hole), and optionally SUBSCRIBE,
 * UNSUBSCRIBE and PUBLISH/PUBREL with their acknowledgements. A test (or the script's `onPacket`) can also answer by
 * hand on a connection: `send` packets (encoded with `Codec.encode`), `sendRaw` bytes (for malformed input, optionally
 * split into small chunks), `close` the connection from the broker side, or `hold` the client's writes
 * (backpressure). Like a real broker, it closes a connection whose first packet is not CONNECT, that sends CONNECT
 * twice, or that sends bytes it cannot decode (recorded in `violations`). Scripted answers go out after the client's
 * write has returned, as over a network; `answerSynchronously` answers inside the write instead.
 *
 * Nothing in here runs on a timer, so it works under `TestClock`: every wait (`nextPacket`, `expectPacket`,
 * `awaitClosed`, `connection`) waits on an event and is bounded by `waitLimit` of real time (default 2 s) so that a
 * broken test fails with a message instead of hanging. Closing the reader's scope closes the fake connection; a pull
 * suspended on it then fails, as the `Socket` contract requires.
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import * as Codec from "../../src/Codec/Codec.ts"
import type * as Packet from "../../src/Codec/Packet.ts"
import type * as MqttError from "../../src/Errors/MqttError.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Script
// ---------------------------------------------------------------------------------------------------------------------

/**
 * How the broker answers CONNECT: a CONNACK (return code 0 and no session by default), raw bytes in place of the
 * CONNACK, no answer at all, or closing the connection.
 */
export type ConnackScript =
  | { readonly returnCode?: number | undefined; readonly sessionPresent?: boolean | undefined }
  | { readonly raw: Uint8Array }
  | "silent"
  | "close"

/** What `onPacket` returns: `"handled"` skips the default answer to that packet. */
export type Handled = "handled" | void

export interface Script {
  /** The answer to CONNECT, or a function of the connection (e.g. refuse the first, accept the second). */
  readonly connack?: ConnackScript | ((conn: Conn) => ConnackScript) | undefined
  /** Answer PINGREQ with PINGRESP (default `true`); `false` is a black hole. */
  readonly pingresp?: boolean | undefined
  /** Answer SUBSCRIBE with SUBACK granting the requested QoS, or with the codes of a function (default off). */
  readonly ackSubscribe?:
    | boolean
    | ((subscribe: Packet.Subscribe) => ReadonlyArray<Packet.SubackReturnCode>)
    | undefined
  /** Answer UNSUBSCRIBE with UNSUBACK (default off). */
  readonly ackUnsubscribe?: boolean | undefined
  /** Answer PUBLISH QoS 1 with PUBACK, PUBLISH QoS 2 with PUBREC and PUBREL with PUBCOMP (default off). */
  readonly ackPublish?: boolean | undefined
  /** Close the connection when the client sends DISCONNECT (default off, so tests see the client close it). */
  readonly closeOnDisconnect?: boolean | undefined
  /** Fail every reader acquisition with a `SocketOpenError`, as a refused TCP connection does (default off). */
  readonly refuse?: boolean | undefined
  /**
   * Answer inside the client's write, before it returns (default `false`: the client's write completes and its fiber
   * moves on first, as over a network). `true` models a transport that delivers synchronously.
   */
  readonly answerSynchronously?: boolean | undefined
  /** The most chunks one pull returns (default: all that are pending). 1 makes every chunk its own read. */
  readonly chunksPerPull?: number | undefined
  /**
   * Called for every packet the client sends, after it is recorded and before the default answer. Runs inside the
   * client's write, so keep it short: answer with `conn.send`/`sendRaw`/`close`, do not sleep. Return `"handled"` to
   * skip the default answer.
   */
  readonly onPacket?: ((packet: Packet.Packet, conn: Conn) => Effect.Effect<Handled>) | undefined
  /** How long (real time) the waiting helpers wait before failing the test (default 2 seconds). */
  readonly waitLimit?: Duration.Input | undefined
}

// ---------------------------------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------------------------------

/** One in-memory connection: what the client sent on it, and the broker's side of it. */
export interface Conn {
  /** 1 for the first connection, 2 for the second, ... */
  readonly id: number
  /** The packets the client sent, decoded, in order. */
  readonly received: ReadonlyArray<Packet.Packet>
  /** When each packet of `received` arrived, in `Clock` milliseconds (the `TestClock` under `it.effect`). */
  readonly receivedAt: ReadonlyArray<number>
  /** The raw bytes of each socket write the client made (one entry per `write` or `writeAll`). */
  readonly writes: ReadonlyArray<Uint8Array>
  /** Every byte the client wrote, concatenated. */
  readonly bytes: () => Uint8Array
  /** The tags of `received`, for compact assertions. */
  readonly tags: () => ReadonlyArray<Packet.PacketTag>
  /** Set when the client wrote bytes our decoder rejects (the connection is then closed). */
  readonly malformed: MqttError.MqttError | undefined
  /** Server-side protocol rules the client broke on this connection (the connection is then closed). */
  readonly violations: ReadonlyArray<string>
  readonly isOpen: boolean
  /** Who closed the connection: the broker (`close`), or the client (its reader scope, or a `CloseEvent`). */
  readonly closedBy: "broker" | "client" | undefined
  /** The code of the client's `CloseEvent`, or 1006 when the client closed its reader scope. */
  readonly clientCloseCode: number | undefined
  /** Whether the client released its writer (half-close: TCP FIN). */
  readonly clientEnded: boolean
  /** Sends packets to the client, each encoded with `Codec.encode` (an invalid packet is a defect). */
  readonly send: (...packets: ReadonlyArray<Packet.Packet>) => Effect.Effect<void>
  /** Sends raw bytes to the client; `split` cuts them into chunks of at most that many bytes. */
  readonly sendRaw: (bytes: Uint8Array, options?: { readonly split?: number | undefined }) => Effect.Effect<void>
  /** Closes the connection from the broker side: bytes already sent are still read, then the client's pull fails. */
  readonly close: Effect.Effect<void>
  /** Holds the client's writes (they suspend, as on a full TCP window) until `release`. */
  readonly hold: Effect.Effect<void>
  readonly release: Effect.Effect<void>
  /** How many client writes are suspended by `hold` right now. */
  readonly heldWrites: number
  /** Waits until at least one client write is suspended by `hold`. */
  readonly awaitHeldWrite: Effect.Effect<void>
  /** The next packet the client sent that no `nextPacket`/`expectPacket` has returned yet; waits for it. */
  readonly nextPacket: Effect.Effect<Packet.Packet>
  /** `nextPacket`, failing the test unless it has this tag. */
  readonly expectPacket: <T extends Packet.PacketTag>(tag: T) => Effect.Effect<Extract<Packet.Packet, { _tag: T }>>
  /** Waits until the connection is closed, by either side. */
  readonly awaitClosed: Effect.Effect<void>
}

const liveClock = Clock.Clock.defaultValue()

const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  let length = 0
  for (const chunk of chunks) length += chunk.length
  const out = new Uint8Array(length)
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

const encodeOrDie = (packet: Packet.Packet): Uint8Array => {
  const encoded = Codec.encode(packet)
  if (Result.isFailure(encoded)) {
    throw new Error(`FakeBroker: cannot encode ${packet._tag}: ${encoded.failure.message}`)
  }
  return encoded.success
}

const closeError = (code: number, reason?: string) =>
  new Socket.SocketError({ reason: new Socket.SocketCloseError({ code, closeReason: reason }) })

const writeError = (detail: string) =>
  new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause: new Error(detail) }) })

const textEncoder = new TextEncoder()

type Resume<A, E = never> = (effect: Effect.Effect<A, E>) => void

/** A set of one-shot callbacks, all called on the next `notify`. */
class Signal {
  #waiters: Array<() => void> = []
  notify(): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const waiter of waiters) waiter()
  }
  /** Waits for the next `notify`. */
  readonly wait: Effect.Effect<void> = Effect.callback<void>((resume) => {
    const waiter = () => resume(Effect.void)
    this.#waiters.push(waiter)
    return Effect.sync(() => {
      const index = this.#waiters.indexOf(waiter)
      if (index !== -1) this.#waiters.splice(index, 1)
    })
  })
}

class FakeConnection implements Conn {
  readonly received: Array<Packet.Packet> = []
  readonly receivedAt: Array<number> = []
  readonly writes: Array<Uint8Array> = []
  readonly violations: Array<string> = []
  malformed: MqttError.MqttError | undefined = undefined
  isOpen = true
  closedBy: "broker" | "client" | undefined = undefined
  clientCloseCode: number | undefined = undefined
  clientEnded = false

  readonly #broker: Broker
  readonly #decoder = new Codec.Decoder()
  /** Chunks sent to the client and not yet pulled. */
  #inbound: Array<Uint8Array> = []
  /** The failure of the client's pulls once everything pending was read. */
  #readError: Socket.SocketError | undefined = undefined
  #reader: Resume<NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError> | undefined = undefined
  #cursor = 0
  #holding = false
  heldWrites = 0
  readonly #changed = new Signal()

  readonly id: number
  readonly nextPacket: Effect.Effect<Packet.Packet>
  readonly awaitClosed: Effect.Effect<void>
  readonly awaitHeldWrite: Effect.Effect<void>

  constructor(id: number, broker: Broker) {
    this.id = id
    this.#broker = broker
    this.nextPacket = broker.bounded(
      Effect.gen({ self: this }, function*() {
        while (true) {
          if (this.#cursor < this.received.length) return this.received[this.#cursor++]!
          if (!this.isOpen) {
            return yield* Effect.die(
              new Error(`FakeBroker: connection ${this.id} closed with no further packet (received ${this.#list()})`)
            )
          }
          yield* this.#changed.wait
        }
      }),
      () => `a packet from the client on connection ${this.id} (received so far: ${this.#list()})`
    )
    this.awaitClosed = broker.bounded(
      Effect.gen({ self: this }, function*() {
        while (this.isOpen) yield* this.#changed.wait
      }),
      () => `connection ${this.id} to close`
    )
    this.awaitHeldWrite = broker.bounded(
      Effect.gen({ self: this }, function*() {
        while (this.heldWrites === 0) yield* this.#changed.wait
      }),
      () => `a held write on connection ${this.id}`
    )
  }

  #list(): string {
    return this.received.length === 0 ? "none" : this.tags().join(", ")
  }

  bytes = (): Uint8Array => concat(this.writes)

  tags = (): ReadonlyArray<Packet.PacketTag> => this.received.map((packet) => packet._tag)

  // -- broker → client ------------------------------------------------------------------------------------------------

  #deliver(chunks: ReadonlyArray<Uint8Array>): void {
    if (!this.isOpen) return
    for (const chunk of chunks) if (chunk.length > 0) this.#inbound.push(chunk)
    this.#drain()
  }

  /** Resumes a suspended pull with pending chunks, or with the read error once nothing is pending. */
  #drain(): void {
    const resume = this.#reader
    if (resume === undefined) return
    if (this.#inbound.length > 0) {
      const count = Math.min(this.#inbound.length, this.#broker.chunksPerPull())
      const batch = this.#inbound.splice(0, count) as unknown as NonEmptyReadonlyArray<Uint8Array>
      this.#reader = undefined
      resume(Effect.succeed(batch))
    } else if (this.#readError !== undefined) {
      this.#reader = undefined
      resume(Effect.fail(this.#readError))
    }
  }

  readonly pull: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError> = Effect.callback((resume) => {
    this.#reader = resume
    this.#drain()
    if (this.#reader !== resume) return
    return Effect.sync(() => {
      if (this.#reader === resume) this.#reader = undefined
    })
  })

  send = (...packets: ReadonlyArray<Packet.Packet>): Effect.Effect<void> =>
    Effect.sync(() => this.#deliver(packets.map(encodeOrDie)))

  sendRaw = (bytes: Uint8Array, options?: { readonly split?: number | undefined }): Effect.Effect<void> =>
    Effect.sync(() => {
      const size = options?.split
      if (size === undefined || size <= 0) return this.#deliver([bytes])
      const chunks: Array<Uint8Array> = []
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size))
      this.#deliver(chunks)
    })

  readonly close: Effect.Effect<void> = Effect.sync(() => this.closeBy("broker", 1000))

  readonly hold: Effect.Effect<void> = Effect.sync(() => {
    this.#holding = true
  })

  readonly release: Effect.Effect<void> = Effect.sync(() => {
    this.#holding = false
    this.#changed.notify()
  })

  /**
   * Ends the connection. The broker's close is an orderly EOF: what was sent is still read, then pulls fail with close
   * code 1000. The client's close discards what it did not read and fails a suspended pull with its code.
   */
  closeBy(side: "broker" | "client", code: number): void {
    if (!this.isOpen) return
    this.isOpen = false
    this.closedBy = side
    if (side === "client") {
      this.clientCloseCode = code
      this.#inbound = []
      this.#readError = closeError(code, "closed by the client")
    } else {
      this.#readError = closeError(code, "closed by the broker")
    }
    this.#drain()
    this.#changed.notify()
    this.#broker.onClose()
  }

  endByClient(): void {
    this.clientEnded = true
    this.#changed.notify()
  }

  // -- client → broker ------------------------------------------------------------------------------------------------

  /** One socket write of the client: waits while held, records it, decodes it and answers per the script. */
  write(chunks: ReadonlyArray<Uint8Array>): Effect.Effect<void, Socket.SocketError> {
    return Effect.gen({ self: this }, function*() {
      if (this.#holding && this.isOpen) {
        this.heldWrites++
        this.#changed.notify()
        yield* Effect.gen({ self: this }, function*() {
          while (this.#holding && this.isOpen) yield* this.#changed.wait
        }).pipe(Effect.ensuring(Effect.sync(() => this.heldWrites--)))
      }
      if (!this.isOpen) return yield* Effect.fail(writeError(`EPIPE: connection ${this.id} is closed`))
      this.writes.push(concat(chunks))
      const now = yield* Clock.currentTimeMillis
      const first = this.received.length
      for (const chunk of chunks) {
        const decoded = this.#decoder.push(chunk)
        if (Result.isFailure(decoded)) {
          this.malformed = decoded.failure
          this.violation(`malformed bytes from the client: ${decoded.failure.message}`)
          break
        }
        for (const packet of decoded.success) {
          this.received.push(packet)
          this.receivedAt.push(now)
        }
      }
      this.#changed.notify()
      const count = this.received.length
      if (count === first || !this.isOpen) return
      // A broker answers after a round trip: the client's write completes (and its fiber moves on) first.
      if (!this.#broker.answersSynchronously()) yield* Effect.yieldNow
      for (let i = first; i < count && this.isOpen; i++) yield* this.#broker.answer(this.received[i]!, i, this)
    })
  }

  /** A server-side rule broken by the client: record it and close, as a broker does [MQTT-4.8.0-1]. */
  violation(detail: string): void {
    this.violations.push(detail)
    this.closeBy("broker", 1000)
  }

  // -- waiting --------------------------------------------------------------------------------------------------------

  expectPacket = <T extends Packet.PacketTag>(tag: T): Effect.Effect<Extract<Packet.Packet, { _tag: T }>> =>
    Effect.flatMap(this.nextPacket, (packet) =>
      packet._tag === tag
        ? Effect.succeed(packet as Extract<Packet.Packet, { _tag: T }>)
        : Effect.die(new Error(`FakeBroker: expected ${tag} on connection ${this.id}, received ${packet._tag}`)))
}

// ---------------------------------------------------------------------------------------------------------------------
// The broker
// ---------------------------------------------------------------------------------------------------------------------

export interface FakeBroker {
  /** The socket to hand to `Connection.connect`: each reader acquisition is a new connection. */
  readonly socket: Socket.Socket
  /** How many connections were opened (reader acquisitions that succeeded). */
  readonly connections: number
  /** Every connection, oldest first. */
  readonly all: ReadonlyArray<Conn>
  /** The newest connection, if any. */
  readonly latest: Conn | undefined
  /** Waits for connection number `n` (1-based; default 1). */
  readonly connection: (n?: number) => Effect.Effect<Conn>
  /** Changes the script from now on (e.g. stop answering PINGREQ). */
  readonly configure: (script: Script) => Effect.Effect<void>
}

class Broker implements FakeBroker {
  readonly all: Array<FakeConnection> = []
  #script: Script
  #current: FakeConnection | undefined = undefined
  readonly #changed = new Signal()
  readonly #waitLimit: Duration.Duration
  readonly socket: Socket.Socket

  constructor(script: Script) {
    this.#script = script
    this.#waitLimit = Duration.fromInputUnsafe(script.waitLimit ?? Duration.seconds(2))
    this.socket = Socket.make({ reader: this.#reader, writer: this.#writer })
  }

  get connections(): number {
    return this.all.length
  }

  get latest(): Conn | undefined {
    return this.all[this.all.length - 1]
  }

  configure = (script: Script): Effect.Effect<void> =>
    Effect.sync(() => {
      this.#script = { ...this.#script, ...script }
    })

  answersSynchronously = (): boolean => this.#script.answerSynchronously === true

  chunksPerPull = (): number => {
    const n = this.#script.chunksPerPull
    return n === undefined || n < 1 ? Number.POSITIVE_INFINITY : n
  }

  /** Bounds a wait by real time, so a test that waits for something that never happens fails with `what`. */
  bounded<A>(self: Effect.Effect<A>, what: () => string): Effect.Effect<A> {
    const limit = this.#waitLimit
    return self.pipe(
      Effect.timeoutOrElse({
        duration: limit,
        orElse: () => Effect.die(new Error(`FakeBroker: waited ${Duration.format(limit)} for ${what()}`))
      }),
      Effect.provideService(Clock.Clock, liveClock)
    )
  }

  connection = (n = 1): Effect.Effect<Conn> =>
    this.bounded(
      Effect.gen({ self: this }, function*() {
        while (this.all.length < n) yield* this.#changed.wait
        return this.all[n - 1]!
      }),
      () => `connection ${n} (${this.all.length} opened)`
    )

  onClose(): void {
    this.#changed.notify()
  }

  readonly #reader: Socket.Socket["reader"] = Effect.gen({ self: this }, function*() {
    if (this.#script.refuse === true) {
      const cause = Object.assign(new Error("connect ECONNREFUSED (FakeBroker)"), { code: "ECONNREFUSED" })
      return yield* Effect.fail(
        new Socket.SocketError({ reason: new Socket.SocketOpenError({ kind: "Unknown", cause }) })
      )
    }
    const scope = yield* Effect.scope
    const conn = new FakeConnection(this.all.length + 1, this)
    this.all.push(conn)
    this.#current = conn
    yield* Scope.addFinalizer(
      scope,
      Effect.sync(() => {
        conn.closeBy("client", 1006)
        // Like a Node socket, the writer targets this connection until its reader scope closes, even after a close.
        if (this.#current === conn) this.#current = undefined
      })
    )
    this.#changed.notify()
    const reader: Socket.Reader<Uint8Array> = {
      pull: conn.pull,
      upgrade: () =>
        Effect.fail(
          new Socket.SocketError({
            reason: new Socket.SocketUpgradeError({ cause: new Error("FakeBroker does not support TLS upgrades") })
          })
        )
    }
    return reader
  })

  /**
   * The connection writes go to: the newest one whose reader scope is open (even when the connection itself was
   * closed, so a write then fails). Waits while there is none, as a `Socket` writer does between connections.
   */
  readonly #currentConnection: Effect.Effect<FakeConnection> = Effect.gen({ self: this }, function*() {
    while (this.#current === undefined) yield* this.#changed.wait
    return this.#current
  })

  readonly #writer: Socket.Socket["writer"] = Effect.acquireRelease(
    Effect.sync((): Socket.Writer => ({
      write: (chunk) => {
        if (Socket.isCloseEvent(chunk)) {
          return Effect.map(this.#currentConnection, (conn) => conn.closeBy("client", chunk.code))
        }
        return Effect.flatMap(
          this.#currentConnection,
          (conn) => conn.write([typeof chunk === "string" ? textEncoder.encode(chunk) : chunk])
        )
      },
      writeAll: (chunks) =>
        Effect.flatMap(
          this.#currentConnection,
          (conn) => conn.write(chunks.map((chunk) => (typeof chunk === "string" ? textEncoder.encode(chunk) : chunk)))
        )
    })),
    () => Effect.sync(() => this.#current?.endByClient())
  )

  /** The script's answer to one packet from the client. */
  answer(packet: Packet.Packet, index: number, conn: FakeConnection): Effect.Effect<void> {
    const script = this.#script
    const isFirst = index === 0
    if (isFirst && packet._tag !== "Connect") {
      // [MQTT-3.1.0-1]: a broker closes a connection whose first packet is not CONNECT.
      return Effect.sync(() => conn.violation(`the first packet was ${packet._tag}, not CONNECT [MQTT-3.1.0-1]`))
    }
    if (!isFirst && packet._tag === "Connect") {
      // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation; the broker disconnects.
      return Effect.sync(() => conn.violation("a second CONNECT on one connection [MQTT-3.1.0-2]"))
    }
    const custom: Effect.Effect<Handled> = script.onPacket === undefined ? Effect.void : script.onPacket(packet, conn)
    return Effect.flatMap(custom, (handled) =>
      handled === "handled" || !conn.isOpen ? Effect.void : this.#defaultAnswer(script, packet, conn))
  }

  #defaultAnswer(script: Script, packet: Packet.Packet, conn: FakeConnection): Effect.Effect<void> {
    switch (packet._tag) {
      case "Connect": {
        const connack = typeof script.connack === "function" ? script.connack(conn) : script.connack ?? {}
        if (connack === "silent") return Effect.void
        if (connack === "close") return conn.close
        if ("raw" in connack) return conn.sendRaw(connack.raw)
        return conn.send({
          _tag: "Connack",
          returnCode: connack.returnCode ?? 0,
          sessionPresent: connack.sessionPresent ?? false
        })
      }
      case "Pingreq":
        return script.pingresp === false ? Effect.void : conn.send({ _tag: "Pingresp" })
      case "Subscribe": {
        const ack = script.ackSubscribe
        if (ack === undefined || ack === false) return Effect.void
        const returnCodes = ack === true ? packet.subscriptions.map((s) => s.qos) : ack(packet)
        return conn.send({ _tag: "Suback", packetId: packet.packetId, returnCodes })
      }
      case "Unsubscribe":
        return script.ackUnsubscribe === true ? conn.send({ _tag: "Unsuback", packetId: packet.packetId }) : Effect.void
      case "Publish":
        if (script.ackPublish !== true || packet.qos === 0) return Effect.void
        return conn.send(
          packet.qos === 1
            ? { _tag: "Puback", packetId: packet.packetId! }
            : { _tag: "Pubrec", packetId: packet.packetId! }
        )
      case "Pubrel":
        return script.ackPublish === true ? conn.send({ _tag: "Pubcomp", packetId: packet.packetId }) : Effect.void
      case "Disconnect":
        return script.closeOnDisconnect === true ? conn.close : Effect.void
      default:
        return Effect.void
    }
  }
}

/**
 * Makes a fake broker; see the module documentation.
 */
export const make = (script: Script = {}): Effect.Effect<FakeBroker> => Effect.sync(() => new Broker(script))

// ---------------------------------------------------------------------------------------------------------------------
// Helpers for tests
// ---------------------------------------------------------------------------------------------------------------------

/** Bytes from hex digits, spaces allowed: `hex("20 02 00 00")`. */
export const hex = (digits: string): Uint8Array => Uint8Array.from(Buffer.from(digits.replace(/\s+/g, ""), "hex"))

/** The encoding of a packet (an invalid packet is a defect). */
export const encode = encodeOrDie
