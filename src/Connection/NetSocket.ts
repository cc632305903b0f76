/**
 * A `Socket.Socket` over `node:net` and `node:tls`: the TCP and TLS transport of `mqtt://` and `mqtts://`.
 *
 * Each acquisition of the reader dials one connection (TLS: until the handshake is done, verifying the broker's
 * certificate unless told not to) and closes it with the reader's scope. The socket reads in flowing mode: every
 * chunk Node receives is kept as it came (no copy, no `nextTick` hop before the read loop sees it) and handed to a
 * waiting pull at once; when the chunks nobody pulled reach `highWaterMark` bytes the socket is paused, so the kernel
 * window closes and the broker waits — a slow consumer costs bounded memory. Writes go straight to the socket; the
 * writer also offers them synchronously (`directWriter`), which lets `Connection` write a batch without a fiber and
 * be called back on `drain` when Node's buffer is full (256 KiB on TCP, Node's 16 KiB on TLS). Closing the reader's
 * scope ends the connection after what was written, or resets it when that has not left within `CLOSE_GRACE_MILLIS`
 * (a broker that stopped reading).
 *
 * It replaces `@effect/platform-node`'s `NodeSocket` for TCP and TLS (WebSockets still use `NodeWS`): that adapter
 * reads in paused mode (a `nextTick` and a concatenating `read()` per batch), has no synchronous write, and holds
 * 1.7 KB more heap per idle connection (`npm run bench:footprint`). Errors are the same `Socket.SocketError` reasons it uses: `SocketOpenError`
 * when dialing or the handshake fails, `SocketReadError` on a socket error, `SocketCloseError` at the end of the
 * stream, `SocketWriteError` for a write to a closed connection. The writer is released with the reader: closing the
 * reader's scope ends the connection, and there is no half-close of the writing side alone.
 *
 * @since 0.1.0
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import * as Net from "node:net"
import * as Tls from "node:tls"

/**
 * What `Connection`'s outbox uses to write without a fiber: `writeNow` writes a batch and returns `true` when Node's
 * buffer is over its high-water mark, after which nothing more may be written before `onDrained` calls back. It also
 * returns `true`, writing nothing, when no connection is open, it is ending, or the broker ended its side:
 * `onDrained` then calls back with the error.
 *
 * @since 0.1.0
 */
export interface DirectWriter {
  readonly writeNow: (chunks: NonEmptyReadonlyArray<Uint8Array>) => boolean
  /**
   * Calls `callback` once, without an error when Node's buffer has room, with one when no connection is open or it
   * closes first; synchronously when that is already so. Returns a function that cancels the call.
   */
  readonly onDrained: (callback: (error: Socket.SocketError | undefined) => void) => () => void
}

/**
 * The synchronous writer of a writer made by this module (the socket itself, see `NetSocketImpl`), or `undefined`
 * for any other transport.
 *
 * @since 0.1.0
 */
export const directWriter = (writer: Socket.Writer): DirectWriter | undefined =>
  (writer as unknown) instanceof NetSocketImpl ? (writer as unknown as NetSocketImpl) : undefined

/**
 * Where to dial.
 *
 * @since 0.1.0
 */
export type DialOptions =
  | { readonly transport: "tcp"; readonly host: string; readonly port: number }
  | ({ readonly transport: "tls"; readonly host: string; readonly port: number } & Tls.ConnectionOptions)

/** Unpulled bytes from which the socket stops reading; Node's own default buffer for a socket. */
const HIGH_WATER_MARK = 64 * 1024

/** Bytes Node may buffer for writing before a write reports the buffer full (its default is 16 KiB). */
const WRITE_HIGH_WATER_MARK = 256 * 1024

/** The options with the larger write buffer (Node accepts it; its typings of connect options omit it). */
const withWriteBuffer = (options: Net.NetConnectOpts): Net.NetConnectOpts => {
  const withBuffer = { ...options, writableHighWaterMark: WRITE_HIGH_WATER_MARK }
  return withBuffer
}

/** How long a closed connection may take to flush what was written to it before it is destroyed. */
const CLOSE_GRACE_MILLIS = 2000

const closeError = (code: number) => new Socket.SocketError({ reason: new Socket.SocketCloseError({ code }) })

const openError = (cause: unknown) =>
  new Socket.SocketError({ reason: new Socket.SocketOpenError({ kind: "Unknown", cause }) })

const writeError = (cause: unknown) => new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause }) })

/** Destroys a connection whose peer does not read: TCP with a reset (the kernel drops what is unsent), TLS plainly. */
const reset = (conn: Net.Socket): void => {
  if (conn instanceof Tls.TLSSocket) conn.destroy()
  else conn.resetAndDestroy()
}

/** One open connection: its chunks not yet pulled, the pull waiting for them, and how it ended. */
class Connection {
  chunks: Array<Uint8Array> = []
  bytes = 0
  paused = false
  /** How it ended: the error, or a close code whose error is made only when a pull needs it (most closes: none). */
  ended: Socket.SocketError | number | undefined = undefined
  waiter: ((effect: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError>) => void) | undefined =
    undefined

  readonly conn: Net.Socket

  constructor(conn: Net.Socket) {
    this.conn = conn
    // The listeners are shared by every connection and find theirs on the socket: no closures per connection.
    ;(conn as ConnectionSocket)[connectionKey] = this
    conn.on("data", onData)
    conn.on("end", onEnd)
    conn.on("close", onClose)
    // An error is followed by `close`; this listener also keeps it from being thrown.
    conn.on("error", onError)
  }

  data(chunk: Buffer): void {
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      return waiter(Effect.succeed([chunk]))
    }
    this.chunks.push(chunk)
    this.bytes += chunk.length
    if (this.bytes >= HIGH_WATER_MARK && !this.paused) {
      this.paused = true
      this.conn.pause()
    }
  }

  /** Chunks received before the end are still pulled first; then the pull fails with the error (a close code's). */
  end(reason: Socket.SocketError | number): void {
    this.ended ??= reason
    const waiter = this.waiter
    if (waiter !== undefined && this.chunks.length === 0) {
      this.waiter = undefined
      waiter(Effect.fail(this.endError()))
    }
  }

  endError(): Socket.SocketError {
    const ended = this.ended!
    return typeof ended === "number" ? (this.ended = closeError(ended)) : ended
  }

  readonly cancelPull = Effect.sync(() => {
    this.waiter = undefined
  })

  readonly awaitChunks = Effect.callback<NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError>((resume) => {
    this.waiter = resume
    return this.cancelPull
  })

  readonly pull: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError> = Effect.suspend(() => {
    if (this.chunks.length > 0) {
      const chunks = this.chunks as unknown as NonEmptyReadonlyArray<Uint8Array>
      this.chunks = []
      this.bytes = 0
      if (this.paused && this.ended === undefined) {
        this.paused = false
        this.conn.resume()
      }
      return Effect.succeed(chunks)
    }
    return this.ended !== undefined ? Effect.fail(this.endError()) : this.awaitChunks
  })

  /**
   * Closes the connection: after the bytes already written when it was open (within `CLOSE_GRACE_MILLIS`: a broker
   * that stops reading must not keep the socket, and the process, alive), at once otherwise.
   */
  close(): void {
    this.end(1006)
    const conn = this.conn
    if (conn.destroyed) return
    if (conn.connecting || conn.pending) return void conn.destroy()
    conn.destroySoon()
    if (conn.destroyed) return
    const timer = setTimeout(() => reset(conn), CLOSE_GRACE_MILLIS)
    timer.unref()
    conn.once("close", () => clearTimeout(timer))
  }
}

const connectionKey = Symbol.for("effect-mqtt/NetSocket/Connection")

interface ConnectionSocket extends Net.Socket {
  [connectionKey]: Connection
}

function onData(this: ConnectionSocket, chunk: Buffer): void {
  this[connectionKey].data(chunk)
}

function onEnd(this: ConnectionSocket): void {
  this[connectionKey].end(1000)
}

function onError(this: ConnectionSocket, cause: Error): void {
  this[connectionKey].end(new Socket.SocketError({ reason: new Socket.SocketReadError({ cause }) }))
}

function onClose(this: ConnectionSocket, hadError: boolean): void {
  this[connectionKey].end(hadError ? 1006 : 1000)
}

/**
 * Dials; the connection's listeners are attached before anything else can run, so no error goes unheard. The socket
 * being dialed is `owner.dialing` until the dial ends, so that `abort` can end it.
 */
const dial = (options: DialOptions, owner: NetSocketImpl): Effect.Effect<Connection, Socket.SocketError> =>
  Effect.callback<Connection, Socket.SocketError>((resume) => {
    let conn: Net.Socket
    try {
      conn = options.transport === "tls"
        ? Tls.connect(options)
        : Net.createConnection(withWriteBuffer(options))
    } catch (cause) {
      // Node refuses some options synchronously (an unusable CA or certificate, say): a failed open, not a defect.
      return resume(Effect.fail(openError(cause)))
    }
    owner.dialing = conn
    const ready = options.transport === "tls" ? "secureConnect" : "connect"
    const onReady = () => {
      owner.dialing = undefined
      conn.off("error", onDialError)
      conn.setNoDelay(true)
      resume(Effect.succeed(new Connection(conn)))
    }
    const onDialError = (cause: Error) => {
      owner.dialing = undefined
      conn.off(ready, onReady)
      resume(Effect.fail(openError(cause)))
    }
    conn.once(ready, onReady)
    conn.once("error", onDialError)
    // Interrupted while dialing (the connect timeout on another clock): nothing is left open.
    return Effect.sync(() => {
      owner.dialing = undefined
      conn.off(ready, onReady)
      conn.off("error", onDialError)
      conn.on("error", () => {})
      conn.destroy()
    })
  })

const notConnectedError = () => writeError(new Error("not connected"))

const noop = (): void => {}

const socketClosed = () => writeError(new Error("socket closed"))

/**
 * `Effect.acquireRelease` with an interruptible acquire and a synchronous release that needs no services: unlike it,
 * the release does not keep the acquiring fiber's context (its services, and the span a connect runs in) alive for
 * as long as the socket lives.
 */
const acquireInScope = <A, E>(
  acquire: Effect.Effect<A, E>,
  release: (a: A) => void
): Effect.Effect<A, E, Scope.Scope> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.scope, (scope) => Effect.tap(restore(acquire), (a) => releaseOnClose(scope, release, a)))
  )

/**
 * Registers `release(a)` for when `scope` closes. A function of its own so that the finalizer's closure captures only
 * these three: written inside `acquireInScope`, it would share that function's context, and with it keep the acquire
 * effect (the dial, with its closures) for as long as the connection lives.
 */
const releaseOnClose = <A>(scope: Scope.Scope, release: (a: A) => void, a: A): Effect.Effect<void> =>
  Scope.addFinalizerExit(scope, () => Effect.sync(() => release(a)))

const upgradeError = new Socket.SocketError({
  reason: new Socket.SocketUpgradeError({ cause: new Error("dial with mqtts:// for TLS") })
})

const noUpgrade = () => Effect.fail(upgradeError)

/**
 * The socket of one `make`, and the `Socket.Socket` itself: the connection open now, the reader that dials, and the
 * writer (this object too: its `write`/`writeAll` are the `Socket.Writer`, its `writeNow`/`onDrained` the
 * `DirectWriter`). Methods rather than closures, and the reader and writer effects made at each acquisition rather
 * than kept: a process may hold thousands of idle sockets.
 */
class NetSocketImpl implements DirectWriter, Socket.Socket {
  readonly [Socket.TypeId] = Socket.TypeId
  readonly options: DialOptions
  current: Connection | undefined = undefined
  /** The socket being dialed, until it connects or fails. */
  dialing: Net.Socket | undefined = undefined

  constructor(options: DialOptions) {
    this.options = options
  }

  get reader(): Socket.Socket["reader"] {
    return Effect.map(
      // A dial is interruptible (the connect timeout on another clock): `dial` then destroys the half-open socket.
      acquireInScope(
        Effect.map(dial(this.options, this), (connection) => (this.current = connection)),
        (connection) => this.release(connection)
      ),
      (connection): Socket.Reader => ({ pull: connection.pull, upgrade: noUpgrade })
    )
  }

  /**
   * No release of its own: it writes to the connection the reader opened, and the reader's release ends that
   * connection after what was written (`Connection.close`). A finalizer for it cost 0.6 KB per client.
   */
  get writer(): Socket.Socket["writer"] {
    return Effect.succeed(this as unknown as Socket.Writer)
  }

  /** Ends the dial in progress, or else the open connection, with `cause` (see `abortConnection`). */
  abort(cause: Error): void {
    ;(this.dialing ?? this.current?.conn)?.destroy(cause)
  }

  release(connection: Connection): void {
    if (this.current === connection) this.current = undefined
    connection.close()
  }

  /** Open, not ending, and the broker has not ended its side (without `allowHalfOpen` Node refuses writes then). */
  writable(): boolean {
    const conn = this.current?.conn
    return conn !== undefined && !conn.destroyed && !conn.writableEnded && !conn.readableEnded
  }

  onDrained(callback: (error: Socket.SocketError | undefined) => void): () => void {
    const connection = this.current
    if (connection === undefined) {
      callback(notConnectedError())
      return noop
    }
    if (!this.writable()) {
      callback(socketClosed())
      return noop
    }
    const conn = connection.conn
    if (!conn.writableNeedDrain) {
      callback(undefined)
      return noop
    }
    const cleanup = () => {
      conn.off("drain", onDrain)
      conn.off("close", onClosedFirst)
    }
    const onDrain = () => {
      cleanup()
      callback(undefined)
    }
    const onClosedFirst = () => {
      cleanup()
      callback(socketClosed())
    }
    conn.on("drain", onDrain)
    conn.on("close", onClosedFirst)
    return cleanup
  }

  get drained(): Effect.Effect<void, Socket.SocketError> {
    return Effect.callback<void, Socket.SocketError>((resume) => {
      const cancel = this.onDrained((error) => resume(error === undefined ? Effect.void : Effect.fail(error)))
      return Effect.sync(cancel)
    })
  }

  writeNow(chunks: NonEmptyReadonlyArray<Uint8Array | string>): boolean {
    if (!this.writable()) return true
    const conn = this.current!.conn
    if (chunks.length === 1) return !conn.write(chunks[0]!)
    conn.cork()
    let full = false
    for (let i = 0; i < chunks.length; i++) full = !conn.write(chunks[i]!) || full
    conn.uncork()
    return full
  }

  writeAll(chunks: NonEmptyReadonlyArray<Uint8Array | string>): Effect.Effect<void, Socket.SocketError> {
    return Effect.suspend(() => {
      if (this.current === undefined) return Effect.fail(notConnectedError())
      return this.writeNow(chunks) ? this.drained : Effect.void
    })
  }

  write(chunk: Uint8Array | string | Socket.CloseEvent): Effect.Effect<void, Socket.SocketError> {
    return Socket.isCloseEvent(chunk)
      ? Effect.sync(() => {
        this.current?.conn.destroy(chunk.code > 1000 ? new Error(`closed with code ${chunk.code}`) : undefined)
      })
      : this.writeAll([chunk])
  }
}

/**
 * A socket that dials `options` at every acquisition of its reader; its writer writes to the connection open at the
 * time (acquire the reader first).
 *
 * @since 0.1.0
 */
export const make = (options: DialOptions): Socket.Socket => new NetSocketImpl(options)

/**
 * For a socket made by this module, a function that ends its dial in progress (TCP connect, TLS handshake), or else
 * its open connection, with `cause`: the dial fails with `SocketOpenError`, a pending read with `SocketReadError`,
 * each carrying `cause`. It lets `Connection` bound the handshake with one timer instead of a racing fiber.
 * `undefined` for any other socket.
 *
 * @since 0.1.0
 */
export const abortConnection = (socket: Socket.Socket): ((cause: Error) => void) | undefined =>
  socket instanceof NetSocketImpl ? (cause) => socket.abort(cause) : undefined
