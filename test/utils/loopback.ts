/**
 * Loopback servers and Node events for tests: `listen` runs a `node:net` (or `node:tls`) server on 127.0.0.1 on a free
 * port for the current scope, and `waitUntil` waits for a condition that Node events make true. Every test server and
 * scripted peer under `test/` listens through here.
 */
import type { EventEmitter } from "node:events"
import type * as Net from "node:net"
import * as Effect from "effect/Effect"
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
