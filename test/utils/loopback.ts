/**
 * Loopback servers and Node events for tests: `listen` runs a `node:net` (or `node:tls`) server on 127.0.0.1 on a free
 * port for the current scope, `waitUntil` waits for a condition that Node events make true, and `nextClientSocket`
 * catches the client socket a test dials next. Every test server and scripted peer under `test/` listens through here.
 */
import * as DiagnosticsChannel from "node:diagnostics_channel"
import type { EventEmitter } from "node:events"
import type * as Net from "node:net"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"

/**
 * Listens on 127.0.0.1, port 0, and returns the port; closing the scope destroys the connections `open` lists (the
 * server's and any a test made beside them), then closes the server. A failure to listen is a defect.
 */
export const listen = (
  server: Net.Server,
  open: () => Iterable<{ destroy(): void }>
): Effect.Effect<number, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<number>((resume) => {
      server.once("error", (error) => resume(Effect.die(error)))
      server.listen({ host: "127.0.0.1", port: 0 }, () => {
        const address = server.address()
        resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
      })
    }),
    () =>
      Effect.callback<void>((resume) => {
        for (const socket of open()) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  )

/** Succeeds once `done()` holds, checking now and after each of `events` on `emitter`. */
export const waitUntil = (
  emitter: EventEmitter,
  events: ReadonlyArray<string>,
  done: () => boolean
): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (done()) return resume(Effect.void)
    const check = () => {
      if (!done()) return
      cleanup()
      resume(Effect.void)
    }
    const cleanup = () => {
      for (const event of events) emitter.off(event, check)
    }
    for (const event of events) emitter.on(event, check)
    return Effect.sync(cleanup)
  })

/**
 * The client `Net.Socket` dialed next: Node publishes every new client socket on the `net.client.socket` diagnostics
 * channel. Subscribe (run this) before dialing; the subscription ends with the scope. Bound the wait at the caller.
 */
export const nextClientSocket: Effect.Effect<Effect.Effect<Net.Socket>, never, Scope.Scope> = Effect.gen(function*() {
  const socket = yield* Deferred.make<Net.Socket>()
  const onMessage = (message: unknown) => {
    Deferred.doneUnsafe(socket, Exit.succeed((message as { readonly socket: Net.Socket }).socket))
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => DiagnosticsChannel.subscribe("net.client.socket", onMessage)),
    () => Effect.sync(() => DiagnosticsChannel.unsubscribe("net.client.socket", onMessage))
  )
  return Deferred.await(socket)
})
