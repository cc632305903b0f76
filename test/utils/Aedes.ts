/**
 * In-process Aedes brokers for tests, as scoped resources: `start(options)` creates a broker with
 * `Aedes.createBroker` (optionally with hooks such as `authenticate` or `authorizeSubscribe`), serves it over TCP on
 * a free 127.0.0.1 port and optionally over WebSocket (path `/mqtt`) on another, and on scope close destroys every
 * open client connection, closes both servers and then the broker, each step bounded so closing never hangs.
 */
import * as http from "node:http"
import * as net from "node:net"
import { Aedes, type AedesOptions } from "aedes"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { createWebSocketStream, type WebSocket, WebSocketServer } from "ws"
import { withLiveClock } from "./live.ts"
import { freePort } from "./ports.ts"

/** The broker or one of its servers could not be started. */
export class AedesError extends Data.TaggedError("AedesError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export interface AedesBrokerOptions {
  /** Options and hooks handed to `Aedes.createBroker` (authenticate, authorizeSubscribe, authorizePublish, …). */
  readonly aedes?: AedesOptions
  /** Fixed TCP port (default: a free one). */
  readonly port?: number
  /** Also serve MQTT over WebSocket on `ws://127.0.0.1:WSPORT/mqtt`; `{ port }` fixes the port. */
  readonly websocket?: boolean | { readonly port?: number }
}

export interface AedesBroker {
  readonly broker: Aedes
  readonly host: "127.0.0.1"
  readonly port: number
  /** `mqtt://127.0.0.1:PORT` */
  readonly url: string
  readonly wsPort?: number
  /** `ws://127.0.0.1:WSPORT/mqtt` */
  readonly wsUrl?: string
  /** Destroys every open client connection (TCP and WebSocket) without closing the servers: a network drop. */
  readonly dropConnections: Effect.Effect<void>
}

const closeTimeout = Duration.seconds(5)

/** Runs a callback-style close, bounded by `closeTimeout`; a close that hangs only logs a warning. */
const closeBounded = (what: string, close: (done: () => void) => void): Effect.Effect<void> =>
  Effect.callback<void>((resume) => close(() => resume(Effect.void))).pipe(
    Effect.timeoutOrElse({
      duration: closeTimeout,
      orElse: () => Effect.logWarning(`Aedes harness: closing ${what} timed out`)
    })
  )

const listen = (server: net.Server, port: number): Effect.Effect<void, AedesError> =>
  Effect.callback<void, AedesError>((resume) => {
    const onError = (cause: Error) =>
      resume(Effect.fail(new AedesError({ message: `cannot listen on 127.0.0.1:${port}: ${cause.message}`, cause })))
    server.once("error", onError)
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
      server.off("error", onError)
      resume(Effect.void)
    })
  })

/** Tracks a server's open sockets so they can be destroyed (a server's close waits for all of them). */
const trackSockets = (server: net.Server): Set<net.Socket> => {
  const sockets = new Set<net.Socket>()
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  })
  return sockets
}

const portOf = (option: number | undefined): Effect.Effect<number, AedesError> =>
  option !== undefined
    ? Effect.succeed(option)
    : freePort.pipe(Effect.mapError((error) => new AedesError({ message: error.message, cause: error })))

/** Starts an Aedes broker (TCP, optionally WebSocket) for the current scope. */
export const start = (options: AedesBrokerOptions = {}): Effect.Effect<AedesBroker, AedesError, Scope.Scope> =>
  withLiveClock(Effect.gen(function*() {
    const broker = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => Aedes.createBroker(options.aedes),
        catch: (cause) => new AedesError({ message: `Aedes.createBroker failed: ${String(cause)}`, cause })
      }),
      (broker) => withLiveClock(closeBounded("the broker", (done) => broker.close(done)))
    )

    const tcpServer = net.createServer((socket) => broker.handle(socket))
    const tcpSockets = trackSockets(tcpServer)
    const port = yield* portOf(options.port)
    yield* Effect.acquireRelease(listen(tcpServer, port), () =>
      withLiveClock(closeBounded("the TCP server", (done) => {
        tcpServer.close(() => done())
        for (const socket of tcpSockets) socket.destroy()
      })))

    const wsClients = new Set<WebSocket>()
    const wsOption = options.websocket ?? false
    const wsPort = wsOption === false
      ? undefined
      : yield* portOf(wsOption === true ? undefined : wsOption.port)
    if (wsPort !== undefined) {
      const httpServer = http.createServer((_request, response) => response.writeHead(426).end())
      const httpSockets = trackSockets(httpServer)
      const wss = new WebSocketServer({ server: httpServer, path: "/mqtt" })
      wss.on("connection", (websocket, request) => {
        wsClients.add(websocket)
        websocket.once("close", () => wsClients.delete(websocket))
        broker.handle(createWebSocketStream(websocket), request)
      })
      yield* Effect.acquireRelease(listen(httpServer, wsPort), () =>
        withLiveClock(closeBounded("the WebSocket server", (done) => {
          for (const websocket of wsClients) websocket.terminate()
          wss.close()
          httpServer.close(() => done())
          for (const socket of httpSockets) socket.destroy()
        })))
    }

    const dropConnections = Effect.sync(() => {
      for (const socket of tcpSockets) socket.destroy()
      for (const websocket of wsClients) websocket.terminate()
    })

    const handle: AedesBroker = {
      broker,
      host: "127.0.0.1",
      port,
      url: `mqtt://127.0.0.1:${port}`,
      ...(wsPort !== undefined ? { wsPort, wsUrl: `ws://127.0.0.1:${wsPort}/mqtt` } : {}),
      dropConnections
    }
    return handle
  }))
