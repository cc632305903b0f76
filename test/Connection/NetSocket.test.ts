/**
 * `NetSocket` (the `node:net` / `node:tls` `Socket.Socket`) against loopback servers made here with `node:net` and
 * `node:tls`: bytes pulled intact and in order, backpressure (pause at the high-water mark, resume on pull), the end of
 * the stream after the data, dial failures (nothing listening, an unverified certificate, a dropped handshake), TLS
 * verification on by default and a verified round trip, the writer (order, `CloseEvent`, no connection, graceful close
 * with the reader's scope), `directWriter`, and one connection per acquisition of the reader.
 *
 * Everything waits on events (server `connection`, `data`, `end`, `close`; the client's `pause`), each wait bounded by a
 * timeout on the live clock so nothing can hang; there are no sleeps.
 */
import * as Net from "node:net"
import * as Tls from "node:tls"
import { assert, describe, it } from "@effect/vitest"
import type { NonEmptyReadonlyArray } from "effect/Array"
import type * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import * as NetSocket from "../../src/Connection/NetSocket.ts"
import { withLiveClock } from "../utils/live.ts"
import { freePort } from "../utils/ports.ts"
import { read } from "../utils/tls.ts"
import * as Loopback from "../utils/loopback.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

/** Bound of every wait: generous, only there so a broken build fails instead of hanging. */
const BOUND = "5 seconds"

/** The module's high-water mark of unpulled bytes (Node's default socket buffer). */
const HIGH_WATER_MARK = 64 * 1024

const bounded = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.timeout(self, BOUND)

/** Runs a test body on the live clock (the servers live in wall-clock time). */
const live = <A, E, R>(self: Effect.Effect<A, E, R>) => withLiveClock(self)


/** The server's side of one accepted connection, recording everything it sees from the moment it is accepted. */
class Peer {
  readonly socket: Net.Socket
  chunks: Array<Buffer> = []
  length = 0
  ended = false
  closed = false

  constructor(socket: Net.Socket) {
    this.socket = socket
    socket.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk)
      this.length += chunk.length
    })
    socket.on("end", () => {
      this.ended = true
    })
    socket.on("close", () => {
      this.closed = true
    })
    socket.on("error", () => {})
  }

  get received(): Buffer {
    return Buffer.concat(this.chunks)
  }

  /** The first `n` bytes received, once they are there. */
  receive(n: number) {
    return bounded(Loopback.waitUntil(this.socket, ["data"], () => this.length >= n)).pipe(
      Effect.map(() => this.received.subarray(0, n))
    )
  }

  /** The client's FIN has arrived (after every byte it sent). */
  get awaitEnd(): Effect.Effect<void, Cause.TimeoutError> {
    return bounded(Loopback.waitUntil(this.socket, ["end"], () => this.ended))
  }

  /** The connection is closed both ways. */
  get awaitClose(): Effect.Effect<void, Cause.TimeoutError> {
    return bounded(Loopback.waitUntil(this.socket, ["close"], () => this.closed))
  }
}

interface TestServer {
  readonly port: number
  /** The next connection the server accepted (TLS: once its handshake is done). */
  readonly accepted: Effect.Effect<Peer, unknown>
  /** How many connections it has accepted so far. */
  readonly count: () => number
}

/**
 * Listens on 127.0.0.1, port 0, for the test's scope; closing the scope destroys every connection and the server.
 * `onPeer` runs synchronously for each accepted connection.
 */
const serve = (
  server: Net.Server,
  acceptEvent: "connection" | "secureConnection",
  onPeer: (peer: Peer) => void = () => {}
): Effect.Effect<TestServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<Peer>()
    const raw = new Set<Net.Socket>()
    let count = 0
    server.on("connection", (socket: Net.Socket) => {
      raw.add(socket)
      socket.on("error", () => {})
    })
    server.on(acceptEvent, (socket: Net.Socket) => {
      raw.add(socket)
      count++
      const peer = new Peer(socket)
      onPeer(peer)
      Queue.offerUnsafe(queue, peer)
    })
    server.on("tlsClientError", () => {})
    const port = yield* Loopback.listen(server, () => raw)
    return { port, accepted: bounded(Queue.take(queue)), count: () => count }
  })

const tcpServer = (onPeer?: (peer: Peer) => void) => serve(Net.createServer(), "connection", onPeer)

const tlsServer = () =>
  serve(Tls.createServer({ cert: read("serverCert"), key: read("serverKey") }), "secureConnection")

const tcp = (port: number) => NetSocket.make({ transport: "tcp", host: "127.0.0.1", port })

/** A TCP socket to `server`, its reader and writer acquired for the test's scope, and the server's side of it. */
const connected = (server: TestServer) =>
  Effect.gen(function*() {
    const reader = yield* tcp(server.port).reader
    return { reader, peer: yield* server.accepted }
  })

/** Like `connected`, with the writer too (acquired after the reader, as `Connection` does). */
const connectedWithWriter = (server: TestServer) =>
  Effect.gen(function*() {
    const socket = tcp(server.port)
    const reader = yield* socket.reader
    const writer = yield* socket.writer
    return { reader, writer, peer: yield* server.accepted }
  })

/** A connected socket whose reader lives in a scope of its own, which the test closes: its writer and server side. */
const connectedInOwnScope = (server: TestServer) =>
  Effect.gen(function*() {
    const socket = tcp(server.port)
    const writer = yield* socket.writer
    const readerScope = yield* Scope.make()
    yield* Scope.provide(socket.reader, readerScope)
    return { writer, readerScope, peer: yield* server.accepted }
  })

/** `n` bytes whose every 4-byte word is its own index (offset by `seed`): any loss, duplication or reordering shows. */
/**
 * Aborts `socket` with a fresh cause: `waiting` (a dial or a pull) fails with `tag` carrying that very cause, and the
 * server sees the connection close.
 */
const assertAbortFails = (
  socket: Socket.Socket,
  waiting: Fiber.Fiber<Socket.SocketError, unknown>,
  peer: Peer,
  tag: "SocketOpenError" | "SocketReadError"
) =>
  Effect.gen(function*() {
    const abort = NetSocket.abortConnection(socket)
    if (abort === undefined) return assert.fail("a NetSocket has abortConnection")
    const cause = new Error("deadline")
    abort(cause)
    const error = yield* Fiber.join(waiting).pipe(bounded)
    assert.strictEqual(error.reason._tag, tag)
    assert.strictEqual((error.reason as { readonly cause?: unknown }).cause, cause)
    yield* peer.awaitClose
  })

const pattern = (n: number, seed = 0): Buffer => {
  const bytes = Buffer.alloc(n)
  for (let i = 0; i + 4 <= n; i += 4) bytes.writeUInt32BE((seed + i / 4) >>> 0, i)
  return bytes
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

type Pull = Effect.Effect<NonEmptyReadonlyArray<Uint8Array | string>, Socket.SocketError>

/** A pulled chunk, which from a TCP or TLS socket is always bytes. */
const bytesOf = (chunk: Uint8Array | string): Uint8Array =>
  typeof chunk === "string" ? assert.fail(`a string frame from a byte stream: ${chunk}`) : chunk

/** Pulls until at least `n` bytes came, returning them concatenated and the size of each pulled batch. */
const pullBytes = (pull: Pull, n: number) =>
  Effect.gen(function*() {
    const parts: Array<Uint8Array> = []
    const batches: Array<number> = []
    let length = 0
    while (length < n) {
      const chunks = yield* pull
      let batch = 0
      for (const item of chunks) {
        const chunk = bytesOf(item)
        parts.push(chunk)
        batch += chunk.length
      }
      batches.push(batch)
      length += batch
    }
    return { bytes: Buffer.concat(parts), batches }
  }).pipe(bounded)

/** Pulls until the pull fails, returning the bytes that came before and the failure. */
const pullToEnd = (pull: Pull) =>
  Effect.gen(function*() {
    const parts: Array<Uint8Array> = []
    while (true) {
      const result = yield* Effect.result(pull)
      if (Result.isFailure(result)) return { bytes: Buffer.concat(parts), error: result.failure }
      for (const chunk of result.success) parts.push(bytesOf(chunk))
    }
  }).pipe(bounded)

/**
 * Writes 256 KiB blocks with `writeNow` until it reports Node's buffer full (the caller has paused the server, so the
 * kernel's buffers fill up first), returning everything written. Fails past 64 MiB rather than loop forever.
 */
const writeUntilFull = (direct: NetSocket.DirectWriter) =>
  Effect.suspend(() => {
    const written: Array<Buffer> = []
    for (let seed = 0; seed < 256; seed++) {
      const block = pattern(256 * 1024, seed * 65536)
      written.push(block)
      if (direct.writeNow([block])) return Effect.succeed(Buffer.concat(written))
    }
    return Effect.fail(new Error("writeNow never reported a full buffer"))
  })

const assertSameBytes = (actual: Uint8Array, expected: Uint8Array) => {
  assert.strictEqual(actual.length, expected.length)
  assert.strictEqual(Buffer.compare(actual, expected), 0, "bytes differ")
}

/** The `code` of an error cause (`ECONNREFUSED`, `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, ...), if it has one. */
const codeOf = (cause: unknown): unknown =>
  typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined

/**
 * Counts `pause()` and `resume()` calls on the client's `Net.Socket` (the one whose remote port is `port`) for the
 * test's scope, by wrapping the prototype's methods; `paused` completes at the first pause.
 */
const watchPauses = (port: number) =>
  Effect.gen(function*() {
    const paused = yield* Deferred.make<void>()
    const counts = { pauses: 0, resumesAfterPause: 0 }
    const proto = Net.Socket.prototype
    const pause = proto.pause
    const resume = proto.resume
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        // The original runs first: the waiting test fiber may resume (and pull) inside `doneUnsafe`.
        proto.pause = function(this: Net.Socket) {
          const self = pause.call(this)
          if (this.remotePort === port) {
            counts.pauses++
            Deferred.doneUnsafe(paused, Effect.void)
          }
          return self
        }
        proto.resume = function(this: Net.Socket) {
          if (this.remotePort === port && counts.pauses > 0) counts.resumesAfterPause++
          return resume.call(this)
        }
      }),
      () =>
        Effect.sync(() => {
          proto.pause = pause
          proto.resume = resume
        })
    )
    return { counts, paused: bounded(Deferred.await(paused)) }
  })

// ---------------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------------

describe("NetSocket", () => {
  describe("reader", () => {
    it.effect("bytes written by the server arrive through pull intact and in order", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const { peer, reader } = yield* connected(server)
        const sent = [pattern(1, 0), pattern(100, 1), pattern(4096, 2), pattern(70_000, 3), pattern(7, 4)]
        for (const chunk of sent) peer.socket.write(chunk)
        const { bytes } = yield* pullBytes(reader.pull, Buffer.concat(sent).length)
        assertSameBytes(bytes, Buffer.concat(sent))
      })))

    it.effect("1 MiB the test does not pull pauses the socket at the high-water mark and arrives intact once pulled", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const watch = yield* watchPauses(server.port)
        const readChunks = yield* Socket.readerBytes(tcp(server.port))
        const peer = yield* server.accepted
        const sent = pattern(1024 * 1024, 7)
        // 64 writes of 16 KiB, all queued at once: the server's buffer holds what the kernel does not take.
        for (let offset = 0; offset < sent.length; offset += 16 * 1024) {
          peer.socket.write(sent.subarray(offset, offset + 16 * 1024))
        }
        // Nobody pulls until the client has stopped reading.
        yield* watch.paused
        const { bytes, batches } = yield* pullBytes(readChunks, sent.length)
        assertSameBytes(bytes, sent)
        assert.isAtLeast(watch.counts.pauses, 1)
        assert.isAtLeast(watch.counts.resumesAfterPause, 1)
        // What was kept while nobody pulled is bounded: under the mark plus the chunk that crossed it.
        assert.isAtLeast(batches[0]!, HIGH_WATER_MARK)
        assert.isBelow(batches[0]!, 2 * HIGH_WATER_MARK)
      })))

    it.effect("when the server ends the connection, the data received first is pulled, then SocketCloseError 1000", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const reader = yield* tcp(server.port).reader
        const peer = yield* server.accepted
        peer.socket.write("hello, ")
        peer.socket.end("world")
        // Closed both ways: the client saw the end (and answered it) before the test pulls anything.
        yield* peer.awaitClose
        const { bytes, error } = yield* pullToEnd(reader.pull)
        assert.strictEqual(bytes.toString(), "hello, world")
        assert.isTrue(Socket.isSocketError(error))
        assert.strictEqual(error.reason._tag, "SocketCloseError")
        assert.strictEqual(error.reason._tag === "SocketCloseError" ? error.reason.code : undefined, 1000)
        // The end stays: pulling again fails the same way.
        const again = yield* Effect.flip(reader.pull)
        assert.strictEqual(again.reason._tag, "SocketCloseError")
      })))

    it.effect("each acquisition of the reader dials a new connection", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const socket = tcp(server.port)
        const first = yield* Effect.scoped(Effect.gen(function*() {
          yield* socket.reader
          return yield* server.accepted
        }))
        yield* first.awaitClose
        const second = yield* Effect.scoped(Effect.gen(function*() {
          yield* socket.reader
          return yield* server.accepted
        }))
        assert.notStrictEqual(first, second)
        assert.strictEqual(server.count(), 2)
      })))

    it.effect("upgrade is refused: TLS is dialed with transport tls", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const reader = yield* tcp(server.port).reader
        const error = yield* Effect.flip(reader.upgrade())
        assert.strictEqual(error.reason._tag, "SocketUpgradeError")
      })))
  })

  describe("dialing", () => {
    it.effect("dialing a port with nothing listening fails with SocketOpenError", () =>
      live(Effect.gen(function*() {
        const port = yield* freePort
        const error = yield* Effect.flip(Effect.scoped(tcp(port).reader)).pipe(bounded)
        assert.strictEqual(error.reason._tag, "SocketOpenError")
        assert.strictEqual(error.reason._tag === "SocketOpenError" ? codeOf(error.reason.cause) : undefined, "ECONNREFUSED")
      })))

    it.effect("TLS verifies the server certificate by default: without the CA the dial fails with SocketOpenError", () =>
      live(Effect.gen(function*() {
        const server = yield* tlsServer()
        const socket = NetSocket.make({ transport: "tls", host: "127.0.0.1", port: server.port })
        const error = yield* Effect.flip(Effect.scoped(socket.reader)).pipe(bounded)
        assert.strictEqual(error.reason._tag, "SocketOpenError")
        const code = error.reason._tag === "SocketOpenError" ? codeOf(error.reason.cause) : undefined
        assert.isString(code)
        assert.include(["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "SELF_SIGNED_CERT_IN_CHAIN"], code)
        assert.strictEqual(server.count(), 0)
      })))

    it.effect("TLS with the test CA and servername localhost connects and round-trips bytes both ways", () =>
      live(Effect.gen(function*() {
        const server = yield* tlsServer()
        const socket = NetSocket.make({
          transport: "tls",
          host: "127.0.0.1",
          port: server.port,
          ca: read("ca"),
          servername: "localhost"
        })
        const reader = yield* socket.reader
        const writer = yield* socket.writer
        const peer = yield* server.accepted
        const up = pattern(10_000, 1)
        yield* writer.write(up)
        assertSameBytes(yield* peer.receive(up.length), up)
        const down = pattern(100_000, 2)
        peer.socket.write(down)
        const { bytes } = yield* pullBytes(reader.pull, down.length)
        assertSameBytes(bytes, down)
      })))

    it.effect("a TLS handshake the server drops fails with SocketOpenError and leaves nothing open", () =>
      live(Effect.gen(function*() {
        // A plain TCP server: it half-closes as soon as the ClientHello comes, and its side only closes once the
        // client's socket has closed too.
        const server = yield* tcpServer((peer) => peer.socket.once("data", () => peer.socket.end()))
        const socket = NetSocket.make({ transport: "tls", host: "127.0.0.1", port: server.port })
        const error = yield* Effect.flip(Effect.scoped(socket.reader)).pipe(bounded)
        assert.strictEqual(error.reason._tag, "SocketOpenError")
        const peer = yield* server.accepted
        yield* peer.awaitClose
      })))

    it.effect("TLS options Node refuses synchronously fail the dial with SocketOpenError, not a defect", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const socket = NetSocket.make({
          transport: "tls",
          host: "127.0.0.1",
          port: server.port,
          cert: "not a PEM",
          key: "not a PEM"
        })
        const error = yield* Effect.flip(Effect.scoped(socket.reader)).pipe(bounded)
        assert.strictEqual(error.reason._tag, "SocketOpenError")
        assert.strictEqual(server.count(), 0)
      })))

    it.effect("a dial that never completes is interruptible (the connect timeout) and leaves nothing open", () =>
      live(Effect.gen(function*() {
        // A plain TCP server that never answers the ClientHello: the TLS handshake would wait forever.
        const server = yield* tcpServer()
        const socket = NetSocket.make({ transport: "tls", host: "127.0.0.1", port: server.port })
        const dialing = yield* Effect.forkChild(Effect.scoped(socket.reader))
        const peer = yield* server.accepted
        const exit = yield* Fiber.interrupt(dialing).pipe(Effect.andThen(Fiber.await(dialing)), bounded)
        assert.isTrue(Exit.hasInterrupts(exit))
        yield* peer.awaitClose
      })))
  })

  describe("abortConnection (the connect timeout on the system clock)", () => {
    it.effect("during a dial: the dial fails with SocketOpenError carrying the cause, nothing is left open", () =>
      live(Effect.gen(function*() {
        // A plain TCP server that never answers the ClientHello: the TLS handshake would wait forever.
        const server = yield* tcpServer()
        const socket = NetSocket.make({ transport: "tls", host: "127.0.0.1", port: server.port })
        const dialing = yield* Effect.forkChild(Effect.flip(Effect.scoped(socket.reader)))
        yield* assertAbortFails(socket, dialing, yield* server.accepted, "SocketOpenError")
      })))

    it.effect("on an open connection: a pending pull fails with SocketReadError carrying the cause", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const socket = tcp(server.port)
        const reader = yield* socket.reader
        const peer = yield* server.accepted
        const pulling = yield* Effect.forkChild(Effect.flip(reader.pull), { startImmediately: true })
        yield* assertAbortFails(socket, pulling, peer, "SocketReadError")
      })))

    it.effect("with nothing dialed or open it does nothing; any other socket has none", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const socket = tcp(server.port)
        NetSocket.abortConnection(socket)!(new Error("too early"))
        const reader = yield* socket.reader
        const peer = yield* server.accepted
        peer.socket.write("still open")
        const { bytes } = yield* pullBytes(reader.pull, 10)
        assert.strictEqual(new TextDecoder().decode(bytes), "still open")
        assert.isUndefined(
          NetSocket.abortConnection(Socket.make({ reader: Effect.die("unused"), writer: Effect.die("unused") }))
        )
      })))
  })

  describe("writer", () => {
    it.effect("writeAll([a, b, c]) arrives at the server in order", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const { peer, writer } = yield* connectedWithWriter(server)
        const chunks = [pattern(10, 1), pattern(3000, 2), pattern(200_000, 3)] as const
        yield* writer.writeAll(chunks)
        yield* writer.writeAll([text("d")])
        const expected = Buffer.concat([...chunks, text("d")])
        assertSameBytes(yield* peer.receive(expected.length), expected)
      })))

    it.effect("write(CloseEvent(1006)) destroys the connection: the server sees it close and pull fails", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const { peer, reader, writer } = yield* connectedWithWriter(server)
        yield* writer.write(new Socket.CloseEvent(1006, "x"))
        yield* peer.awaitClose
        const error = yield* Effect.flip(reader.pull).pipe(bounded)
        assert.isTrue(Socket.isSocketError(error))
        // Writing to the destroyed connection is a typed write error, not a hang.
        const writeError = yield* Effect.flip(writer.write(text("late"))).pipe(bounded)
        assert.strictEqual(writeError.reason._tag, "SocketWriteError")
      })))

    it.effect("writing with no connection open fails with SocketWriteError", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const socket = tcp(server.port)
        const writer = yield* socket.writer
        // The reader was never acquired.
        const before = yield* Effect.flip(writer.write(text("x")))
        assert.strictEqual(before.reason._tag, "SocketWriteError")
        const beforeAll = yield* Effect.flip(writer.writeAll([text("x"), text("y")]))
        assert.strictEqual(beforeAll.reason._tag, "SocketWriteError")
        // The reader's scope has closed.
        const peer = yield* Effect.scoped(Effect.gen(function*() {
          yield* socket.reader
          return yield* server.accepted
        }))
        const after = yield* Effect.flip(writer.write(text("x")))
        assert.strictEqual(after.reason._tag, "SocketWriteError")
        yield* peer.awaitClose
        assert.strictEqual(peer.length, 0)
      })))

    it.effect("closing the reader's scope after a write flushes the bytes, then the server sees the end", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const { peer, readerScope, writer } = yield* connectedInOwnScope(server)
        const small = pattern(100, 1)
        yield* writer.write(small)
        assertSameBytes(yield* peer.receive(small.length), small)
        // The server stops reading and the client writes until Node's own buffer is full: bytes are still pending in
        // the client when its reader's scope closes.
        peer.socket.pause()
        const direct = NetSocket.directWriter(writer)
        if (direct === undefined) return assert.fail("no direct writer")
        const pending = yield* writeUntilFull(direct)
        yield* Scope.close(readerScope, Exit.void)
        peer.socket.resume()
        yield* peer.awaitEnd
        assertSameBytes(peer.received, Buffer.concat([small, pending]))
        yield* peer.awaitClose
      })))
  })

  describe("closing", () => {
    it.effect("a server that never reads again cannot keep a closed connection open: it is destroyed after a grace", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const clientSocket = yield* Loopback.nextClientSocket
        const { peer, readerScope, writer } = yield* connectedInOwnScope(server)
        const client = yield* bounded(clientSocket)
        // Bytes pending in the client that the server will never read: the FIN queued behind them never leaves.
        peer.socket.pause()
        const direct = NetSocket.directWriter(writer)
        if (direct === undefined) return assert.fail("no direct writer")
        yield* writeUntilFull(direct)
        yield* Scope.close(readerScope, Exit.void)
        assert.isFalse(client.destroyed, "destroyed at once: the bytes written before the close were not given a chance")
        // The client gives up on flushing after its grace and destroys the socket (a reset: nothing more is sent).
        yield* bounded(Loopback.waitUntil(client, ["close"], () => client.destroyed && client.closed))
        assert.isFalse(peer.ended)
      })))
  })

  describe("directWriter", () => {
    it.effect("is defined for this module's writer only; writeNow delivers bytes and onDrained calls back at once", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const { peer, writer } = yield* connectedWithWriter(server)
        const other: Socket.Writer = { write: () => Effect.void, writeAll: () => Effect.void }
        assert.isUndefined(NetSocket.directWriter(other))
        const direct = NetSocket.directWriter(writer)
        assert.isDefined(direct)
        if (direct === undefined) return
        // Small writes: not full, and nothing to wait for (onDrained calls back synchronously).
        assert.isFalse(direct.writeNow([text("one")]))
        assert.isFalse(direct.writeNow([text("two"), text("three")]))
        const calls: Array<Socket.SocketError | undefined> = []
        direct.onDrained((error) => calls.push(error))
        assert.deepStrictEqual(calls, [undefined])
        assert.strictEqual((yield* peer.receive(11)).toString(), "onetwothree")
        // The server stops reading until the client's buffer is full: the callback then waits for the drain, which
        // comes once the server reads again.
        peer.socket.pause()
        const pending = yield* writeUntilFull(direct)
        const drained = yield* Deferred.make<Socket.SocketError | undefined>()
        direct.onDrained((error) => Deferred.doneUnsafe(drained, Exit.succeed(error)))
        yield* Effect.yieldNow
        assert.isFalse(Deferred.isDoneUnsafe(drained), "called back while the server was not reading")
        peer.socket.resume()
        assert.isUndefined(yield* bounded(Deferred.await(drained)))
        const expected = Buffer.concat([text("onetwothree"), pending])
        assertSameBytes(yield* peer.receive(expected.length), expected)
      })))

    it.effect("onDrained: the connection closing first calls back with the error once; a cancelled call never comes", () =>
      live(Effect.gen(function*() {
        const server = yield* tcpServer()
        const { peer, readerScope, writer } = yield* connectedInOwnScope(server)
        const direct = NetSocket.directWriter(writer)
        if (direct === undefined) return assert.fail("no direct writer")
        peer.socket.pause()
        yield* writeUntilFull(direct)
        const calls: Array<Socket.SocketError | undefined> = []
        const called = yield* Deferred.make<void>()
        const cancelled: Array<Socket.SocketError | undefined> = []
        direct.onDrained((error) => {
          calls.push(error)
          Deferred.doneUnsafe(called, Exit.void)
        })
        const cancel = direct.onDrained((error) => cancelled.push(error))
        cancel()
        yield* Scope.close(readerScope, Exit.void)
        peer.socket.destroy()
        yield* bounded(Deferred.await(called))
        assert.strictEqual(calls.length, 1)
        assert.strictEqual(calls[0]?.reason._tag, "SocketWriteError")
        assert.deepStrictEqual(cancelled, [])
        // No connection open: called back at once, with the error.
        direct.onDrained((error) => calls.push(error))
        assert.strictEqual(calls.length, 2)
        assert.strictEqual(calls[1]?.reason._tag, "SocketWriteError")
      })))
  })
})
