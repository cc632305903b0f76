/**
 * A `Connection.Link` that is open and never receives anything, for tests and benchmarks of the layers above the
 * connection. Packets offered or sent to it are recorded in `sent` when one is given.
 */
import * as Effect from "effect/Effect"
import type * as Connection from "../../src/Connection/Connection.ts"

export const idleLink = (sent?: Array<Connection.OutgoingPacket>): Connection.Link => ({
  connack: { _tag: "Connack", sessionPresent: false, returnCode: 0 },
  url: "mqtt://idle",
  pull: Effect.never,
  offer: (packet) => {
    sent?.push(packet)
    return undefined
  },
  send: (packet) => Effect.sync(() => void sent?.push(packet)),
  awaitWritten: () => Effect.void,
  disconnect: Effect.void,
  lastSentAt: () => 0,
  lastReceivedAt: () => 0,
  receivedCount: () => 0,
  abort: () => Effect.void
})
