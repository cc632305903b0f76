/**
 * Durable session storage: where a client keeps what it must not forget across a crash — outgoing QoS 1 and 2
 * messages not yet complete, and incoming QoS 2 packet ids awaiting PUBREL (§4.1, [MQTT-4.1.0-1]).
 *
 * `SessionStore` is a port: `open(clientId)` returns the stored snapshot and an `append` that makes journal entries
 * durable before it returns. The client writes ahead: a PUBLISH, PUBREL, PUBREC or PUBCOMP is sent only after the
 * change it follows is stored, so a process killed at any moment resumes exactly where the broker expects it. Two
 * implementations: `layerMemory` (kept in the process, for tests and for clients that reconnect within one program),
 * and `layerFile({ directory })`, one directory per client id holding an append-only log of checksummed records,
 * compacted on open by writing a temporary file, syncing it and renaming it over the log. A torn last record (the
 * process died mid-write) is detected by its checksum and ignored. Without a store (the default) nothing is
 * journaled, at no cost. Every failure is `PersistenceError`.
 *
 * @since 0.1.0
 */
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { crc32 } from "node:zlib"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import type * as Packet from "../Codec/Packet.ts"
import * as MqttError from "../Errors/MqttError.ts"
import * as SessionState from "./SessionState.ts"

/**
 * An open store for one client id.
 *
 * @since 0.1.0
 */
export interface Journal {
  /** What was stored when the journal was opened. */
  readonly snapshot: SessionState.Snapshot
  /** Makes entries durable, in order; returns once they are. */
  readonly append: (entries: ReadonlyArray<SessionState.JournalEntry>) => Effect.Effect<void, MqttError.MqttError>
}

/**
 * The SessionStore service.
 *
 * @since 0.1.0
 */
export class SessionStore extends Context.Service<SessionStore, {
  /** Opens the stored session of a client id; the journal is closed with the scope. */
  readonly open: (clientId: string) => Effect.Effect<Journal, MqttError.MqttError, Scope.Scope>
}>()("effect-mqtt/Client/SessionStore") {}

const persistenceError = (operation: string, cause: unknown) =>
  MqttError.make(new MqttError.PersistenceError({ operation, cause }))

// ---------------------------------------------------------------------------------------------------------------------
// In memory
// ---------------------------------------------------------------------------------------------------------------------

/**
 * A store kept in this process: a later client with the same id (in the same program) resumes the session.
 *
 * @since 0.1.0
 */
export const makeMemory = (): SessionStore["Service"] => {
  const sessions = new Map<string, SessionState.Snapshot>()
  return SessionStore.of({
    open: (clientId) =>
      Effect.sync(() => {
        const snapshot = sessions.get(clientId) ?? SessionState.emptySnapshot
        return {
          snapshot,
          append: (entries) =>
            Effect.sync(() => {
              sessions.set(clientId, SessionState.replay(sessions.get(clientId) ?? SessionState.emptySnapshot, entries))
            })
        }
      })
  })
}

/** @since 0.1.0 */
export const layerMemory: Layer.Layer<SessionStore> = Layer.sync(SessionStore)(makeMemory)

// ---------------------------------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------------------------------

type Json = string | number | boolean | null | { readonly [key: string]: Json } | ReadonlyArray<Json>

const encodePacket = (packet: Packet.Publish | Packet.Subscribe | Packet.Unsubscribe): Json => {
  switch (packet._tag) {
    case "Publish":
      return {
        _tag: "Publish",
        topic: packet.topic,
        payload: Buffer.from(packet.payload.buffer, packet.payload.byteOffset, packet.payload.byteLength).toString("base64"),
        qos: packet.qos,
        retain: packet.retain,
        dup: packet.dup,
        packetId: packet.packetId ?? null
      }
    case "Subscribe":
      return {
        _tag: "Subscribe",
        packetId: packet.packetId,
        subscriptions: packet.subscriptions.map((s) => ({ topicFilter: s.topicFilter, qos: s.qos }))
      }
    case "Unsubscribe":
      return { _tag: "Unsubscribe", packetId: packet.packetId, topicFilters: [...packet.topicFilters] }
  }
}

const encodeEntry = (entry: SessionState.JournalEntry): Json => {
  if (entry._tag !== "PutFlight") return entry as unknown as Json
  const flight = entry.flight
  return {
    _tag: "PutFlight",
    flight: {
      _tag: flight._tag,
      sent: flight.sent,
      stage: flight._tag === "Publish" ? flight.stage : null,
      packet: encodePacket(flight.packet)
    }
  }
}

/** The stored shape of a flight: what `encodeEntry` writes (records are trusted once their checksum matches). */
interface FlightJson {
  readonly _tag: "Publish" | "Subscribe" | "Unsubscribe"
  readonly sent: boolean
  readonly stage: "puback" | "pubrec" | "pubcomp" | null
  readonly packet: {
    readonly topic: string
    readonly payload: string
    readonly qos: Packet.QoS
    readonly retain: boolean
    readonly dup: boolean
    readonly packetId: number
    readonly subscriptions: ReadonlyArray<Packet.Subscription>
    readonly topicFilters: ReadonlyArray<string>
  }
}

const decodeFlight = (json: FlightJson): SessionState.Flight => {
  const packet = json.packet
  switch (json._tag) {
    case "Publish":
      return {
        _tag: "Publish",
        stage: json.stage ?? "puback",
        sent: json.sent,
        packet: {
          _tag: "Publish",
          topic: packet.topic,
          payload: Buffer.from(packet.payload, "base64"),
          qos: packet.qos,
          retain: packet.retain,
          dup: packet.dup,
          packetId: packet.packetId
        }
      }
    case "Subscribe":
      return {
        _tag: "Subscribe",
        sent: json.sent,
        packet: { _tag: "Subscribe", packetId: packet.packetId, subscriptions: packet.subscriptions }
      }
    case "Unsubscribe":
      return {
        _tag: "Unsubscribe",
        sent: json.sent,
        packet: { _tag: "Unsubscribe", packetId: packet.packetId, topicFilters: packet.topicFilters }
      }
  }
}

const decodeEntry = (json: unknown): SessionState.JournalEntry => {
  const entry = json as SessionState.JournalEntry | { readonly _tag: "PutFlight"; readonly flight: FlightJson }
  return entry._tag === "PutFlight"
    ? { _tag: "PutFlight", flight: decodeFlight(entry.flight as unknown as FlightJson) }
    : entry
}

/** One record: 4-byte length, 4-byte CRC-32 of the body, then the body (a JSON array of entries). */
const encodeRecord = (entries: ReadonlyArray<SessionState.JournalEntry>): Buffer => {
  const body = Buffer.from(JSON.stringify(entries.map(encodeEntry)))
  const record = Buffer.allocUnsafe(8 + body.length)
  record.writeUInt32BE(body.length, 0)
  record.writeUInt32BE(crc32(body), 4)
  body.copy(record, 8)
  return record
}

/** Reads records until the end or the first one that is incomplete or fails its checksum (a torn write). */
const decodeLog = (bytes: Buffer): Array<SessionState.JournalEntry> => {
  const entries: Array<SessionState.JournalEntry> = []
  let offset = 0
  while (offset + 8 <= bytes.length) {
    const length = bytes.readUInt32BE(offset)
    const checksum = bytes.readUInt32BE(offset + 4)
    const end = offset + 8 + length
    if (end > bytes.length) break
    const body = bytes.subarray(offset + 8, end)
    if (crc32(body) !== checksum) break
    try {
      for (const json of JSON.parse(body.toString("utf8")) as Array<unknown>) entries.push(decodeEntry(json))
    } catch {
      break
    }
    offset = end
  }
  return entries
}

const snapshotEntries = (snapshot: SessionState.Snapshot): Array<SessionState.JournalEntry> => [
  ...snapshot.flights.map((flight): SessionState.JournalEntry => ({ _tag: "PutFlight", flight })),
  ...snapshot.incomingQos2.map((packetId): SessionState.JournalEntry => ({ _tag: "AddIncoming", packetId }))
]

/** A client id as a directory name: letters, digits, `-` and `_` kept, everything else escaped. */
const directoryName = (clientId: string): string =>
  clientId === "" ? "_empty" : clientId.replace(/[^A-Za-z0-9_-]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(4, "0")}`)

/**
 * A store in files: `directory/<client id>/session.log`.
 *
 * @since 0.1.0
 */
export const makeFile = (options: { readonly directory: string }): SessionStore["Service"] =>
  SessionStore.of({
    open: (clientId) =>
      Effect.gen(function*() {
        const dir = Path.join(options.directory, directoryName(clientId))
        const log = Path.join(dir, "session.log")
        const tmp = Path.join(dir, "session.log.tmp")
        const snapshot = yield* Effect.tryPromise({
          try: async () => {
            await Fs.mkdir(dir, { recursive: true })
            const bytes = await Fs.readFile(log).catch((error: NodeJS.ErrnoException) => {
              if (error.code === "ENOENT") return Buffer.alloc(0)
              throw error
            })
            const snapshot = SessionState.replay(SessionState.emptySnapshot, decodeLog(bytes))
            // Compact: the snapshot alone, written aside, synced, then renamed over the log (crash-safe).
            const handle = await Fs.open(tmp, "w")
            try {
              await handle.writeFile(encodeRecord(snapshotEntries(snapshot)))
              await handle.sync()
            } finally {
              await handle.close()
            }
            await Fs.rename(tmp, log)
            const dirHandle = await Fs.open(dir, "r")
            try {
              await dirHandle.sync()
            } finally {
              await dirHandle.close()
            }
            return snapshot
          },
          catch: (cause) => persistenceError(`open ${log}`, cause)
        })
        const handle = yield* Effect.acquireRelease(
          Effect.tryPromise({ try: () => Fs.open(log, "a"), catch: (cause) => persistenceError(`open ${log}`, cause) }),
          (handle) => Effect.promise(() => handle.close().catch(() => undefined))
        )
        // Appends are chained so that records land in the order they were asked for.
        let tail: Promise<void> = Promise.resolve()
        const append = (entries: ReadonlyArray<SessionState.JournalEntry>) =>
          entries.length === 0
            ? Effect.void
            : Effect.tryPromise({
              try: () => {
                const record = encodeRecord(entries)
                const next = tail.then(async () => {
                  await handle.write(record)
                  await handle.datasync()
                })
                tail = next.catch(() => undefined)
                return next
              },
              catch: (cause) => persistenceError(`append to ${log}`, cause)
            })
        return { snapshot, append } satisfies Journal
      })
  })

/**
 * The file store as a layer.
 *
 * @since 0.1.0
 */
export const layerFile = (options: { readonly directory: string }): Layer.Layer<SessionStore> =>
  Layer.succeed(SessionStore)(makeFile(options))
