/**
 * One network connection to a broker: dial, CONNECT, CONNACK, then a `Link` to exchange packets over.
 *
 * `Connection.connect` runs inside a `Scope` that owns the socket: it dials through the `Socket.Socket` it was built
 * with, writes CONNECT as the very first packet [MQTT-3.1.0-1], and waits for CONNACK within the connect timeout
 * (§3.1.4). A refusal (return code 1..5) is `ConnectionRefused`; silence is `ConnectTimeout`; a socket fault is
 * `TransportError` (or `TlsVerificationFailed`). The `Link` it returns reads packets from the broker, and writes
 * packets through one writer per connection that sends everything queued since its last write in one socket write.
 * Nothing queued on a link can ever reach another connection: each connection has its own queue, and closing the
 * scope fails what was not yet written.
 *
 * This module owns the wire-level rules of a connection — CONNECT first and once [MQTT-3.1.0-2], nothing after
 * DISCONNECT [MQTT-3.14.4-2], only packets a server may send accepted [MQTT-4.8.0-1] — but no session state (see
 * `Session`) and no keepalive decisions (see `Keepalive`).
 *
 * @since 0.1.0
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import { Buffer } from "node:buffer"
import * as Codec from "../Codec/Codec.ts"
import * as Packet from "../Codec/Packet.ts"
import * as MqttError from "../Errors/MqttError.ts"
import * as ConnectOptions from "./ConnectOptions.ts"
import * as NetSocket from "./NetSocket.ts"
import { isSystemClock, MAX_TIMER_MILLIS } from "./SystemClock.ts"

/**
 * The packets a client may send on an established link (CONNECT is sent once, by `connect`).
 *
 * @since 0.1.0
 */
export type OutgoingPacket = Exclude<Packet.ClientPacket, Packet.Connect>

/**
 * An established connection: CONNACK received with return code 0.
 *
 * @since 0.1.0
 */
export interface Link {
  /** The CONNACK that accepted the connection; `sessionPresent` says whether the broker resumed a session. */
  readonly connack: Packet.Connack
  /** The broker URL, without password. */
  readonly url: string
  /**
   * The next packets from the broker, in order (a non-empty batch). Fails when the connection ends: `TransportError`
   * when the broker closes or the socket fails, `MalformedPacket` or `ProtocolViolation` when it sends something a
   * client must not accept — the connection is then closed [MQTT-4.8.0-1]. Pull from one fiber at a time.
   */
  readonly pull: Effect.Effect<ReadonlyArray<Packet.ServerPacket>, MqttError.MqttError>
  /**
   * Queues a packet for the writer and returns at once: `undefined` when queued, the validation error when the
   * packet cannot be encoded, `Disconnected` after the link closed or DISCONNECT was queued.
   */
  readonly offer: (packet: OutgoingPacket) => MqttError.MqttError | undefined
  /** Queues a packet and waits until it is written to the socket. */
  readonly send: (packet: OutgoingPacket) => Effect.Effect<void, MqttError.MqttError>
  /**
   * An effect that waits until the packets queued so far are written (or fails with the link's error). Take it right
   * after `offer`, in the same synchronous step: with nothing queued it waits for the next write.
   */
  readonly awaitWritten: () => Effect.Effect<void, MqttError.MqttError>
  /**
   * Sends DISCONNECT after everything queued before it and waits until it is written; nothing is sent after it
   * [MQTT-3.14.4-2]. Close the link's scope next, which ends the socket after the queued bytes [MQTT-3.14.4-1].
   */
  readonly disconnect: Effect.Effect<void>
  /** When the last bytes were written, in `Clock` milliseconds. */
  readonly lastSentAt: () => number
  /** When the last bytes were received, in `Clock` milliseconds. */
  readonly lastReceivedAt: () => number
  /** How many times bytes were received: a counter that tells "anything since" without comparing times. */
  readonly receivedCount: () => number
  /** Fails the link with `error` and closes the socket; pending and later pulls fail with `error`. */
  readonly abort: (error: MqttError.MqttError) => Effect.Effect<void>
}

/**
 * The Connection service: opens links to the configured broker.
 *
 * @since 0.1.0
 */
export class Connection extends Context.Service<Connection, {
  readonly options: ConnectOptions.Resolved
  /** Dials and completes the MQTT handshake; the link lives until the enclosing scope closes. */
  readonly connect: Effect.Effect<Link, MqttError.MqttError, Scope.Scope>
  /**
   * Optional: `connect` in `scope` itself, not in a scope of its own inside it; the caller closes `scope` when this
   * fails. The client connects each link in a scope it made for that link, so one scope fewer per connection.
   */
  readonly connectIn?: ((scope: Scope.Scope) => Effect.Effect<Link, MqttError.MqttError>) | undefined
}>()("effect-mqtt/Connection/Connection") {}

// ---------------------------------------------------------------------------------------------------------------------
// Socket errors as MqttError reasons
// ---------------------------------------------------------------------------------------------------------------------

/** Node and OpenSSL codes that mean "the certificates do not verify": retrying cannot help. */
const tlsVerificationCodes = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_REVOKED",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "CERT_SIGNATURE_FAILURE",
  "HOSTNAME_MISMATCH",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "ERR_TLS_CERT_ALTNAME_FORMAT",
  "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
  "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE",
  "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
  "ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN",
  "ERR_SSL_TLSV1_ALERT_ACCESS_DENIED",
  "ERR_OSSL_BAD_DECRYPT",
  "ERR_OSSL_EVP_BAD_DECRYPT"
])

interface ErrorLike {
  readonly code?: unknown
  readonly message?: unknown
  readonly error?: unknown
}

/** The underlying Node error of a socket failure (a WebSocket error event carries it as `error`). */
const rootCause = (cause: unknown): ErrorLike | undefined => {
  if (typeof cause !== "object" || cause === null) return undefined
  const like = cause as ErrorLike
  return like.error !== undefined && typeof like.error === "object" ? rootCause(like.error) : like
}

const describe = (cause: ErrorLike | undefined, fallback: string): string => {
  if (cause === undefined) return fallback
  const message = typeof cause.message === "string" && cause.message !== "" ? cause.message : fallback
  return typeof cause.code === "string" && !message.includes(cause.code) ? `${cause.code}: ${message}` : message
}

/**
 * Maps a socket failure to a reason: certificate problems to `TlsVerificationFailed` (not retryable), everything
 * else to `TransportError`.
 *
 * @since 0.1.0
 */
export const fromSocketError = (url: string, error: Socket.SocketError): MqttError.MqttError => {
  const reason = error.reason
  switch (reason._tag) {
    case "SocketCloseError":
      return MqttError.make(
        new MqttError.TransportError({
          operation: "read",
          url,
          detail: reason.code === 1000 ? "the broker closed the connection" : `connection closed (${reason.message})`
        })
      )
    case "SocketOpenError":
    case "SocketUpgradeError":
    case "SocketReadError":
    case "SocketWriteError": {
      const cause = rootCause(reason.cause)
      const code = typeof cause?.code === "string" ? cause.code : undefined
      if (code !== undefined && tlsVerificationCodes.has(code)) {
        const detail = typeof cause?.message === "string" && cause.message !== "" ? cause.message : reason.message
        return MqttError.make(new MqttError.TlsVerificationFailed({ url, tlsCode: code, detail }))
      }
      const operation = reason._tag === "SocketWriteError" ? "write" : reason._tag === "SocketReadError" ? "read" : "open"
      return MqttError.make(
        new MqttError.TransportError({ operation, url, detail: describe(cause, reason.message), cause: reason.cause })
      )
    }
  }
}

const protocolViolation = (detail: string) => MqttError.make(new MqttError.ProtocolViolation({ detail }))

const disconnected = (operation: string) => MqttError.make(new MqttError.Disconnected({ operation }))

let closedLink: MqttError.MqttError | undefined

/**
 * What a send on a closed link fails with: one error for every link (its fields never vary), made on the first
 * close, so that closing a link makes no error (an error's stack trace is most of what closing an idle client costs).
 */
const linkClosed = (): MqttError.MqttError => closedLink ??= disconnected("send")

// ---------------------------------------------------------------------------------------------------------------------
// The writer: one queue per connection, written from a microtask (or, over other transports, a writer fiber)
// ---------------------------------------------------------------------------------------------------------------------

/** What an outbox reports to its link. */
interface OutboxOwner {
  /** A batch was written. */
  readonly written: () => void
  /** The direct writer could not write (the connection closed while blocked): the link fails with this error. */
  readonly writeError: (error: Socket.SocketError) => void
}

/**
 * The outgoing side of one connection: packets are encoded when queued, and everything queued in one synchronous run
 * goes out in one write. Over a transport with a direct writer (`NetSocket`: TCP and TLS) the outbox writes that batch
 * itself in a microtask and, when Node's buffer is full, resumes on the writer's drain callback: no fiber at all;
 * over any other `Socket` a writer fiber sends it with one `writeAll`. Each batch has one `Deferred`, completed when
 * it is written.
 */
class Outbox {
  chunks: Array<Uint8Array> = []
  written: Deferred.Deferred<void, MqttError.MqttError> = Deferred.makeUnsafe()
  failure: MqttError.MqttError | undefined = undefined
  /** DISCONNECT queued: nothing more may be sent [MQTT-3.14.4-2]. */
  closed = false
  wake: (() => void) | undefined = undefined
  #wakeScheduled = false
  /**
   * The transport's synchronous writer, when it has one: batches are then written by the scheduled flush itself, and
   * after a full buffer by the drain callback (`blocked` until then) — no fiber.
   */
  readonly direct: NetSocket.DirectWriter | undefined
  /** A direct write filled Node's buffer (or found the socket closed): nothing is written until it drains. */
  blocked = false
  /** Cancels the drain callback a blocked outbox waits for. */
  cancelDrain: (() => void) | undefined = undefined
  /**
   * The batch whose write filled Node's buffer: complete once it drains, as `writeAll` completes, so a sender never
   * runs ahead of the socket by more than one batch.
   */
  draining: Deferred.Deferred<void, MqttError.MqttError> | undefined = undefined
  /** Told when a batch is written, and when the direct writer cannot write (the link then fails). */
  readonly owner: OutboxOwner

  constructor(direct: NetSocket.DirectWriter | undefined, owner: OutboxOwner) {
    this.direct = direct
    this.owner = owner
  }

  offer(packet: OutgoingPacket): MqttError.MqttError | undefined {
    if (this.failure !== undefined) return this.failure
    if (this.closed) return disconnected(packet._tag)
    if ((packet as Packet.Packet)._tag === "Connect") {
      // [MQTT-3.1.0-2]: CONNECT is sent once per connection, by `connect`.
      return protocolViolation("CONNECT may be sent only once per connection [MQTT-3.1.0-2]")
    }
    if (packet._tag === "Publish" && packet.payload.length >= LARGE_CHUNK) {
      // A large payload is written as its own chunk: never copied on the way out.
      const head = Codec.encodePublishHead(packet)
      if (Result.isFailure(head)) return head.failure
      this.chunks.push(head.success, packet.payload)
    } else {
      const encoded = Codec.encode(packet)
      if (Result.isFailure(encoded)) return encoded.failure
      this.chunks.push(encoded.success)
    }
    if (packet._tag === "Disconnect") this.closed = true
    this.#scheduleWake()
    return undefined
  }

  /**
   * Wakes the writer after the current synchronous run, not inside `offer`: a fiber resumes synchronously in Effect
   * 4, so waking at once would write every packet on its own. Everything offered in one run (a read batch's
   * acknowledgements, the publishes it lets through) goes out in one write.
   */
  #scheduleWake(): void {
    if (this.#wakeScheduled) return
    if (this.direct === undefined ? this.wake === undefined : this.blocked) return
    this.#wakeScheduled = true
    queueMicrotask(this.#flush)
  }

  readonly #flush = (): void => {
    this.#wakeScheduled = false
    if (this.direct !== undefined) return this.writeDirect()
    this.#wakeWriter()
  }

  #wakeWriter(): void {
    const wake = this.wake
    if (wake !== undefined) {
      this.wake = undefined
      wake()
    }
  }

  /**
   * Writes the queued batch through the direct writer. A full buffer, or a socket that can no longer be written to
   * (`writeNow` reports both as full), blocks the outbox until the writer's drain callback: it completes the batch,
   * or reports the socket's error, which fails the link and so the batch.
   */
  writeDirect(): void {
    if (this.blocked || this.failure !== undefined || this.chunks.length === 0) return
    const batch = this.take()!
    const direct = this.direct!
    const full = direct.writeNow(batch.chunks)
    this.owner.written()
    if (full) {
      this.blocked = true
      this.draining = batch.written
      this.cancelDrain = direct.onDrained(this.#onDrained)
      return
    }
    Deferred.doneUnsafe(batch.written, Exit.void)
  }

  readonly #onDrained = (error: Socket.SocketError | undefined): void => {
    this.cancelDrain = undefined
    if (error !== undefined) return this.owner.writeError(error)
    // Node's buffer drained: the batch that filled it is written, and what queued meanwhile goes out.
    const draining = this.draining
    this.draining = undefined
    this.blocked = false
    if (draining !== undefined) Deferred.doneUnsafe(draining, Exit.void)
    this.writeDirect()
  }

  /** Takes the queued batch, or undefined when empty; runs of small packets are joined into one buffer. */
  take(): { readonly chunks: NonEmptyReadonlyArray<Uint8Array>; readonly written: Deferred.Deferred<void, MqttError.MqttError> } | undefined {
    if (this.chunks.length === 0) return undefined
    const batch = { chunks: coalesce(this.chunks), written: this.written }
    this.chunks = []
    this.written = Deferred.makeUnsafe()
    return batch
  }

  fail(error: MqttError.MqttError): void {
    if (this.failure !== undefined) return
    this.failure = error
    this.chunks = []
    Deferred.doneUnsafe(this.written, Exit.fail(error))
    if (this.draining !== undefined) Deferred.doneUnsafe(this.draining, Exit.fail(error))
    this.draining = undefined
    this.cancelDrain?.()
    this.cancelDrain = undefined
    this.#wakeWriter()
  }
}

/** Payloads from this size on are written as their own chunk; smaller packets are joined. */
const LARGE_CHUNK = 2048

/** Joins runs of small chunks into one buffer (one copy, one write), keeping large chunks as they are. */
const coalesce = (chunks: Array<Uint8Array>): NonEmptyReadonlyArray<Uint8Array> => {
  if (chunks.length === 1) return chunks as unknown as NonEmptyReadonlyArray<Uint8Array>
  const out: Array<Uint8Array> = []
  let run: Array<Uint8Array> = []
  let runBytes = 0
  const flush = () => {
    if (run.length === 1) out.push(run[0]!)
    else if (run.length > 1) out.push(Buffer.concat(run, runBytes))
    run = []
    runBytes = 0
  }
  for (const chunk of chunks) {
    if (chunk.length >= LARGE_CHUNK) {
      flush()
      out.push(chunk)
    } else {
      run.push(chunk)
      runBytes += chunk.length
    }
  }
  flush()
  return out as unknown as NonEmptyReadonlyArray<Uint8Array>
}

// ---------------------------------------------------------------------------------------------------------------------
// connect
// ---------------------------------------------------------------------------------------------------------------------


/** What the handshake leaves for the link: the socket's reader and writer, the CONNACK and packets that came with it. */
interface Handshake {
  readonly readChunks: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError>
  readonly writer: Socket.Writer
  readonly connack: Packet.Connack
  readonly rest: ReadonlyArray<Packet.Packet>
  readonly sentAt: number
  readonly receivedAt: number
}

/** Dials through `socket` in `scope`, writes CONNECT and reads up to CONNACK (no timeout: `connect` adds it). */
const handshake = Effect.fnUntraced(function*(
  socket: Socket.Socket,
  url: string,
  scope: Scope.Scope,
  clock: Clock.Clock,
  decoder: Codec.Decoder,
  connectBytes: Uint8Array
) {
  const readChunks = yield* Scope.provide(Socket.readerBytes(socket), scope).pipe(
    Effect.mapError((error) => fromSocketError(url, error))
  )
  const writer = yield* Scope.provide(socket.writer, scope)
  // [MQTT-3.1.0-1]: CONNECT is the first packet on the connection, written before the outbox exists.
  yield* writer.write(connectBytes).pipe(Effect.mapError((error) => fromSocketError(url, error)))
  const sentAt = clock.currentTimeMillisUnsafe()
  let receivedAt = sentAt
  let early: Array<Packet.Packet> = []
  while (early.length === 0) {
    const chunks = yield* readChunks.pipe(Effect.mapError((error) => fromSocketError(url, error)))
    receivedAt = clock.currentTimeMillisUnsafe()
    for (const chunk of chunks) {
      const decoded = decoder.push(chunk)
      if (Result.isFailure(decoded)) return yield* Effect.fail(decoded.failure)
      early = early.length === 0 ? decoded.success : early.concat(decoded.success)
    }
  }
  const first = early[0]!
  if (first._tag !== "Connack") {
    // [MQTT-3.2.0-1]: the first packet from the server is CONNACK.
    return yield* Effect.fail(protocolViolation(`expected CONNACK, received ${first._tag}`))
  }
  if (first.returnCode !== 0) {
    return yield* Effect.fail(MqttError.make(new MqttError.ConnectionRefused({ returnCode: first.returnCode })))
  }
  return { readChunks, writer, connack: first, rest: early.slice(1), sentAt, receivedAt } satisfies Handshake
})

/**
 * The handshake, failing with `ConnectTimeout` when it takes longer than the connect timeout (§3.1.4: a client
 * waits a reasonable time for CONNACK, then closes the connection). Over this module's own sockets on the system clock
 * that is one Node timer which, when it fires, ends the dial or the connection (the handshake then fails at once);
 * elsewhere (`TestClock`, another transport) a race with a sleep on the fiber's clock, which costs two more fibers
 * per connection.
 */
const withinConnectTimeout = (
  shake: Effect.Effect<Handshake, MqttError.MqttError>,
  socket: Socket.Socket,
  options: ConnectOptions.Resolved,
  clock: Clock.Clock
): Effect.Effect<Handshake, MqttError.MqttError> => {
  const millis = Duration.toMillis(options.connectTimeout)
  const timeoutError = () =>
    MqttError.make(new MqttError.ConnectTimeout({ url: options.url, timeoutMillis: Math.round(millis) }))
  const abort = NetSocket.abortConnection(socket)
  // A timeout longer than Node's longest timer (or infinite) races too: a timer cannot express it.
  if (abort === undefined || !isSystemClock(clock) || !(millis <= MAX_TIMER_MILLIS)) {
    return Effect.timeoutOrElse(shake, { duration: options.connectTimeout, orElse: () => Effect.fail(timeoutError()) })
  }
  return Effect.suspend(() => {
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      abort(new Error(`no CONNACK within ${Math.round(millis)} ms`))
    }, Math.max(0, millis))
    return Effect.matchEffect(shake, {
      onFailure: (error) => Effect.fail(timedOut ? timeoutError() : error),
      // Fired after CONNACK was read but before the handshake ended: the connection it ended is no use.
      onSuccess: (done) => timedOut ? Effect.fail(timeoutError()) : Effect.succeed(done)
    }).pipe(Effect.onExit(() => Effect.sync(() => clearTimeout(timer))))
  })
}

/**
 * The most packets one pull decodes from a large read (over `LARGE_READ` bytes). A read of 64 KiB holds about 650
 * small PUBLISH: decoded at once, they would all be alive while the first are delivered, and a subscriber catching up
 * kept megabytes of them through every scavenge of the young generation (at QoS 0, 100,000 × 64 B: peak heap 70 →
 * 42 MB, peak RSS 205 → 155 MB with this limit, CPU unchanged). The rest of the read waits as bytes, and the next pull
 * decodes it without waiting for the socket. A smaller read is decoded whole: splitting the batches of a steady
 * QoS 1 flow cost it 5 % (more batches, so more writes of acknowledgements).
 */
const READ_BATCH = 64

/** Bytes from which a read is decoded in batches of `READ_BATCH` packets. */
const LARGE_READ = 16 * 1024

/** Checks a decoded batch: only packets a server may send, and no second CONNACK. */
const accept = (packets: ReadonlyArray<Packet.Packet>): ReadonlyArray<Packet.ServerPacket> | MqttError.MqttError => {
  for (let i = 0; i < packets.length; i++) {
    const packet = packets[i]!
    const tag = packet._tag
    if (!Packet.isServerPacket(packet)) return protocolViolation(`a server never sends ${tag} [MQTT-4.8.0-1]`)
    if (tag === "Connack") return protocolViolation("a second CONNACK on one connection [MQTT-3.2.0-1]")
  }
  return packets as ReadonlyArray<Packet.ServerPacket>
}

/**
 * An established link: the decoder and outbox of one connection, its timestamps, and its first error. One object
 * per connection, its operations methods rather than closures (an idle process holds thousands of links).
 */
class LinkImpl implements Link {
  readonly connack: Packet.Connack
  readonly url: string
  readonly pull: Effect.Effect<ReadonlyArray<Packet.ServerPacket>, MqttError.MqttError>
  readonly outbox: Outbox
  readonly #decoder: Codec.Decoder
  readonly #clock: Clock.Clock
  readonly #writer: Socket.Writer
  /** One read and the handling of its chunks, made once and run by every pull. */
  readonly #read: Effect.Effect<ReadonlyArray<Packet.ServerPacket>, MqttError.MqttError>
  #lastSentAt: number
  #lastReceivedAt: number
  #receivedCount = 0
  /** The first error of this link: every later send and pull fails with it. */
  aborted: MqttError.MqttError | undefined = undefined
  /** The link's scope closed: nothing may be written through its socket any more. */
  closed = false
  /** Packets that arrived with CONNACK, handed to the first pull. */
  #pending: ReadonlyArray<Packet.Packet> | undefined

  constructor(options: ConnectOptions.Resolved, clock: Clock.Clock, decoder: Codec.Decoder, shake: Handshake) {
    this.connack = shake.connack
    this.url = options.url
    this.#decoder = decoder
    this.#clock = clock
    this.#writer = shake.writer
    this.#lastSentAt = shake.sentAt
    this.#lastReceivedAt = shake.receivedAt
    this.#pending = shake.rest.length > 0 ? shake.rest : undefined
    this.outbox = new Outbox(NetSocket.directWriter(shake.writer), this)
    this.#read = Effect.matchEffect(shake.readChunks, {
      onFailure: (error) => this.#readError(error),
      onSuccess: (chunks) => this.#onChunks(chunks)
    })
    this.pull = Effect.suspend(() => this.#pull())
  }

  /** Made when asked for (once, at the end): an idle link keeps no effect for it. */
  get disconnect(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.outbox.closed || this.outbox.failure !== undefined) return Effect.void
      // [MQTT-3.14.4-2]: the outbox accepts nothing after DISCONNECT. [MQTT-3.14.4-1]: closing the link's scope
      // then ends the socket (FIN after the queued bytes), which closes the connection.
      return Effect.ignore(this.send(Packet.disconnect))
    })
  }

  offer(packet: OutgoingPacket): MqttError.MqttError | undefined {
    return this.outbox.offer(packet)
  }

  send(packet: OutgoingPacket): Effect.Effect<void, MqttError.MqttError> {
    return Effect.suspend(() => {
      const written = this.outbox.written
      const invalid = this.outbox.offer(packet)
      return invalid !== undefined ? Effect.fail(invalid) : Deferred.await(written)
    })
  }

  awaitWritten(): Effect.Effect<void, MqttError.MqttError> {
    return Deferred.await(this.outbox.written)
  }

  lastSentAt(): number {
    return this.#lastSentAt
  }

  lastReceivedAt(): number {
    return this.#lastReceivedAt
  }

  receivedCount(): number {
    return this.#receivedCount
  }

  abort(error: MqttError.MqttError): Effect.Effect<void> {
    return Effect.ignore(this.failLink(error))
  }

  /** The outbox wrote a batch. */
  written(): void {
    this.#lastSentAt = this.#clock.currentTimeMillisUnsafe()
  }

  /** The direct writer could not write (the connection closed while blocked): outside any fiber. */
  writeError(error: Socket.SocketError): void {
    // Failing the link and closing its socket are synchronous over a direct writer.
    Effect.runFork(this.abort(fromSocketError(this.url, error)))
  }

  /**
   * Fails the link with its first error: queued and later sends fail with it, the socket is closed (which wakes a
   * pending pull), and so does every later pull.
   */
  failLink(error: MqttError.MqttError): Effect.Effect<never, MqttError.MqttError> {
    this.aborted ??= error
    this.outbox.fail(this.aborted)
    return Effect.andThen(this.#closeSocket(this.aborted), Effect.fail(this.aborted))
  }

  /**
   * Closes this connection's socket. Once this link's scope is closed nothing may be written through its writer: a
   * transport's writer may outlive the connection it wrote to.
   */
  #closeSocket(error: MqttError.MqttError): Effect.Effect<void> {
    return this.closed ? Effect.void : Effect.ignore(this.#writer.write(new Socket.CloseEvent(1006, error.message)))
  }

  #pull(): Effect.Effect<ReadonlyArray<Packet.ServerPacket>, MqttError.MqttError> {
    if (this.aborted !== undefined) return Effect.fail(this.aborted)
    const pending = this.#pending
    if (pending !== undefined) {
      this.#pending = undefined
      return this.#accepted(pending)
    }
    // Bytes of an earlier read still to decode come first.
    if (this.#decoder.undecoded > 0) {
      const decoded = this.#decoder.next(READ_BATCH)
      if (Result.isFailure(decoded)) return this.failLink(decoded.failure)
      if (decoded.success.length > 0) return this.#accepted(decoded.success)
    }
    return this.#read
  }

  #accepted(packets: ReadonlyArray<Packet.Packet>): Effect.Effect<ReadonlyArray<Packet.ServerPacket>, MqttError.MqttError> {
    const accepted = accept(packets)
    return Array.isArray(accepted) ? Effect.succeed(accepted) : this.failLink(accepted as MqttError.MqttError)
  }

  #onChunks(
    chunks: NonEmptyReadonlyArray<Uint8Array>
  ): Effect.Effect<ReadonlyArray<Packet.ServerPacket>, MqttError.MqttError> {
    this.#lastReceivedAt = this.#clock.currentTimeMillisUnsafe()
    this.#receivedCount++
    let packets: Array<Packet.Packet> | undefined
    let bytes = 0
    for (let i = 0; i < chunks.length; i++) bytes += chunks[i]!.length
    // A large read: at most READ_BATCH packets now, the rest by the next pulls.
    const limit = bytes > LARGE_READ ? READ_BATCH : Infinity
    for (let i = 0; i < chunks.length; i++) {
      const decoded = this.#decoder.push(chunks[i]!, limit - (packets === undefined ? 0 : packets.length))
      if (Result.isFailure(decoded)) return this.failLink(decoded.failure)
      packets = packets === undefined ? decoded.success : packets.concat(decoded.success)
    }
    if (packets === undefined || packets.length === 0) return this.pull
    return this.#accepted(packets)
  }

  /** The connection ended: what is queued or sent later fails with the same error as the read, the first one. */
  #readError(error: Socket.SocketError): Effect.Effect<never, MqttError.MqttError> {
    this.aborted ??= fromSocketError(this.url, error)
    this.outbox.fail(this.aborted)
    return Effect.fail(this.aborted)
  }
}

/** The writer fiber of a transport without a direct writer: one `writeAll` per batch. */
const writeLoop = Effect.fnUntraced(function*(link: LinkImpl, writer: Socket.Writer) {
  const outbox = link.outbox
  while (true) {
    const batch = outbox.take()
    if (batch === undefined) {
      if (outbox.failure !== undefined) return
      yield* Effect.callback<void>((resume) => {
        // Something queued since `take` (the fiber may have yielded in between): no need to wait.
        if (outbox.chunks.length > 0 || outbox.failure !== undefined) return resume(Effect.void)
        outbox.wake = () => resume(Effect.void)
        return Effect.sync(() => {
          outbox.wake = undefined
        })
      })
      continue
    }
    const failure = yield* writer.writeAll(batch.chunks).pipe(
      // The scope closed while this batch was being written: its senders must not wait forever.
      Effect.onInterrupt(() =>
        Effect.sync(() => Deferred.doneUnsafe(batch.written, Exit.fail(link.aborted ?? disconnected("send"))))
      ),
      Effect.as(undefined),
      Effect.catch((error) => Effect.succeed(fromSocketError(link.url, error)))
    )
    if (failure !== undefined) {
      Deferred.doneUnsafe(batch.written, Exit.fail(failure))
      // A write failed: the connection is unusable.
      return yield* link.abort(failure)
    }
    link.written()
    Deferred.doneUnsafe(batch.written, Exit.void)
  }
}) as (link: LinkImpl, writer: Socket.Writer) => Effect.Effect<void>

/**
 * Dials, sends CONNECT and waits for CONNACK; see the module documentation. The connection lives in a scope of its
 * own inside the current one, closed at once when the handshake fails.
 *
 * @since 0.1.0
 */
export const connect = (
  socket: Socket.Socket,
  options: ConnectOptions.Resolved
): Effect.Effect<Link, MqttError.MqttError, Scope.Scope> =>
  Effect.flatMap(Effect.scope, (outer) =>
    Effect.flatMap(Scope.fork(outer), (scope) =>
      Effect.onError(connectIn(socket, options, scope), (cause) => Scope.close(scope, Exit.failCause(cause)))))

/**
 * `connect` in `scope` itself: what it opens is released when `scope` closes, which the caller does when this fails.
 *
 * @since 0.1.0
 */
export const connectIn: (
  socket: Socket.Socket,
  options: ConnectOptions.Resolved,
  scope: Scope.Scope
) => Effect.Effect<Link, MqttError.MqttError> = Effect.fnUntraced(
  // Defined once for the module: a generator function written inside per-connection code would be one more
  // function, prototype and hidden class per client.
  function*(socket: Socket.Socket, options: ConnectOptions.Resolved, scope: Scope.Scope) {
    const clock = yield* Clock.Clock
    const url = options.url
    const decoder = new Codec.Decoder({ maximumPacketSize: options.maximumPacketSize })
    const connectBytes = Codec.encode(ConnectOptions.connectPacket(options))
    if (Result.isFailure(connectBytes)) return yield* Effect.fail(connectBytes.failure)

    const shake = yield* withinConnectTimeout(
      handshake(socket, url, scope, clock, decoder, connectBytes.success),
      socket,
      options,
      clock
    )
    const link = new LinkImpl(options, clock, decoder, shake)
    // Closing the scope fails whatever was queued but not written, so no caller waits on a dead connection. (Its
    // effect is made when the scope closes: an idle link holds one closure for it, not an effect and two closures.)
    yield* Scope.addFinalizerExit(scope, () =>
      Effect.sync(() => {
        link.closed = true
        link.outbox.fail(link.aborted ?? linkClosed())
      }))
    // Over a direct writer the outbox writes by itself; any other transport gets a writer fiber.
    if (link.outbox.direct === undefined) yield* Effect.forkIn(writeLoop(link, shake.writer), scope, { startImmediately: true })
    return link as Link
  }
)


/**
 * Builds the Connection service from options and a socket.
 *
 * @since 0.1.0
 */
export const make = (
  socket: Socket.Socket,
  options: ConnectOptions.Resolved
): Connection["Service"] => Connection.of(new ConnectionImpl(socket, options))

/** The service of `make`: a client keeps it for its life, so a class, its operations made when asked for. */
class ConnectionImpl {
  readonly options: ConnectOptions.Resolved
  readonly #socket: Socket.Socket

  constructor(socket: Socket.Socket, options: ConnectOptions.Resolved) {
    this.options = options
    this.#socket = socket
  }

  /** Made when asked for: the client uses `connectIn`, so its clients keep no effect for it. */
  get connect(): Effect.Effect<Link, MqttError.MqttError, Scope.Scope> {
    return connect(this.#socket, this.options)
  }

  connectIn(scope: Scope.Scope): Effect.Effect<Link, MqttError.MqttError> {
    return connectIn(this.#socket, this.options, scope)
  }
}

/**
 * The Connection service over any `Socket.Socket` (custom transports, tests).
 *
 * @since 0.1.0
 */
export const layerSocket = (options: ConnectOptions.Resolved): Layer.Layer<Connection, never, Socket.Socket> =>
  Layer.effect(Connection)(Effect.map(Effect.service(Socket.Socket), (socket) => make(socket, options)))
