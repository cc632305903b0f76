/**
 * Loopback TCP port helpers for the real-broker harness: `freePort` asks the kernel for an unused port on 127.0.0.1
 * (listen on port 0, read the port, close), never handing out the same port twice in one process, and `canConnect`
 * probes whether something accepts TCP connections on a host and port.
 */
import * as net from "node:net"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"

/** The kernel refused to give a port. */
export class PortError extends Data.TaggedError("PortError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

// Ports already handed out by this process: a broker may not have bound the previous one yet.
const handedOut = new Set<number>()

const listenOnZero = (host: string): Effect.Effect<number, PortError> =>
  Effect.callback<number, PortError>((resume) => {
    const server = net.createServer()
    server.unref()
    server.once("error", (cause) =>
      resume(Effect.fail(new PortError({ message: `cannot listen on ${host}:0`, cause })))
    )
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() =>
        resume(port > 0 ? Effect.succeed(port) : Effect.fail(new PortError({ message: `no port from ${host}:0` })))
      )
    })
  })

/** A free TCP port on `host` (default 127.0.0.1), different from every port handed out before in this process. */
export const freePortOn = Effect.fnUntraced(function*(host: string = "127.0.0.1") {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = yield* listenOnZero(host)
    if (!handedOut.has(port)) {
      handedOut.add(port)
      return port
    }
  }
  return yield* new PortError({ message: `no fresh port on ${host} after 50 attempts` })
})

/** A free TCP port on 127.0.0.1. */
export const freePort: Effect.Effect<number, PortError> = freePortOn("127.0.0.1")

/** Whether a TCP connection to `host:port` is accepted within `timeoutMs` (the socket is closed at once). */
export const canConnect = (host: string, port: number, timeoutMs: number = 1_000): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const socket = net.connect({ host, port })
    const done = (ok: boolean) => {
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed(ok))
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })
