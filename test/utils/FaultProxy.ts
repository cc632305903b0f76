/**
 * A fault-injecting TCP proxy on loopback between an MQTT client and a broker, as a scoped resource: the network a
 * reliability test controls. It owns the listening socket, every proxied connection (a client socket and its upstream
 * socket to the broker), the faults applied to them and the counters a test reads; closing the scope closes all of it.
 *
 * Each direction of each connection is a pipe: bytes are framed into MQTT packets (fixed header and remaining length,
 * §2.2) and each frame is decoded with our own `Codec.Decoder`, so a test can act on packets — "cut right after the
 * broker sends PUBREC for id 7", "drop the next PUBACK" — through `addRule`, `cutOn` and `dropNext`. Proxy-wide modes
 * apply to every connection, current and future, until `restore`: `blackhole` (sockets stay open, every byte is
 * dropped, FIN included), `stall` (stop reading: the sender's TCP window fills), `delay` (added latency, order kept)
 * and `fragment` (forward one byte per write). `cut` closes connections now, on both sides or one: with `side:
 * "client"` only the client sees the close (the broker's socket stays open and silent, as after a lost FIN), with
 * `side: "broker"` only the broker does (the client must notice by keepalive). `cutAfterBytes` cuts once a number of
 * bytes went through, possibly in the middle of a packet.
 *
 * Bounded: at most `maxBytes` bytes in total (then every connection is cut and new ones refused: `overLimit`), at most
 * `maxLifetime` of real time (then the same: `expired`), frames larger than `maxFrameBytes` are not decoded but passed
 * through as bytes, each pipe reads no more than 1 MiB ahead of its destination (TCP backpressure is kept), and the
 * packet `log` keeps the newest `logSize` entries. Bytes that do not frame or decode as MQTT also pass through
 * undecoded (the proxy is not a validator). Only 127.0.0.1 / ::1 / localhost targets are accepted.
 */
import * as net from "node:net"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import * as Codec from "../../src/Codec/Codec.ts"
import type * as Packet from "../../src/Codec/Packet.ts"
import { bounded } from "./clients.ts"
import { withLiveClock } from "./live.ts"

/** The way bytes travel: from the client to the broker, or back. */
export type Direction = "toBroker" | "toClient"

/** One direction or both. */
export type Directions = Direction | "both"

/** Who sees a cut: both ends, only the client (the broker's socket stays open, silent), or only the broker. */
export type Side = "both" | "client" | "broker"

/** How a connection is cut. */
export interface CutOptions {
  /** Default `"both"`. */
  readonly side?: Side | undefined
  /**
   * `true` sends RST (and loses whatever the peer has not read yet); default `false`: FIN after the bytes already
   * forwarded, so a packet forwarded just before the cut is received.
   */
  readonly reset?: boolean | undefined
}

/**
 * What a rule does with a packet it matches: `"pass"` forwards it (an observer), `"drop"` swallows it and keeps the
 * connection, `"cutBefore"` swallows it and cuts (the packet is lost), `"cutAfter"` forwards it and then cuts (the
 * packet arrives, its answer cannot).
 */
export type RuleAction = "pass" | "drop" | "cutBefore" | "cutAfter"

/** Where a packet was seen. */
export interface PacketContext {
  /** 1 for the first connection accepted, 2 for the next, ... */
  readonly connection: number
  readonly direction: Direction
}

/** A rule on decoded packets, applied to every connection (current and future) until it retires. */
export interface Rule {
  /** Default `"both"`. */
  readonly direction?: Directions | undefined
  /**
   * Called once per packet, rules in the order they were added (it may count); the first rule that matches with an
   * action other than "pass" decides.
   */
  readonly match: (packet: Packet.Packet, context: PacketContext) => boolean
  readonly action: RuleAction
  /** For cuts. */
  readonly cut?: CutOptions | undefined
  /** How many matches before the rule retires (default 1; `Infinity` never retires). */
  readonly times?: number | undefined
}

/** A packet a rule matched, or one in the log. */
export interface PacketInfo extends PacketContext {
  readonly packet: Packet.Packet
  /** The frame's size in bytes. */
  readonly bytes: number
  /** `Date.now()` when the proxy read it. */
  readonly at: number
}

/** A rule added to a proxy. */
export interface RuleHandle {
  /** How many packets it matched so far. */
  readonly fired: number
  readonly matches: ReadonlyArray<PacketInfo>
  /** Waits for the first match (bounded: dies after `timeout`, default 10 s); returns it. */
  readonly awaitFired: (timeout?: Duration.Input) => Effect.Effect<PacketInfo>
  /** Retires the rule now. */
  readonly remove: Effect.Effect<void>
}

/** One line of the packet log. */
export interface LogEntry extends PacketContext {
  readonly at: number
  readonly tag: Packet.PacketTag
  readonly packetId: number | undefined
  readonly qos: number | undefined
  readonly dup: boolean | undefined
  /** What the proxy did with it. */
  readonly action: "forwarded" | "dropped" | "cutBefore" | "cutAfter"
}

/** Counters, live. */
export interface FaultProxyStats {
  /** Client connections accepted (refused ones included). */
  readonly accepted: number
  /** Connections closed at once because the proxy refused them. */
  readonly refused: number
  /** Connections with at least one socket still open. */
  readonly open: number
  /** Bytes read from each side. */
  readonly bytesIn: Readonly<Record<Direction, number>>
  /** Bytes written to the destination of each direction. */
  readonly bytesOut: Readonly<Record<Direction, number>>
  /** Bytes dropped (black hole, rules, cuts). */
  readonly bytesDropped: Readonly<Record<Direction, number>>
  /** Packets decoded, by direction and tag. */
  readonly packets: Readonly<Record<Direction, ReadonlyMap<Packet.PacketTag, number>>>
  /** Packets dropped by rules, or lost with a cut. */
  readonly packetsDropped: number
  /** Connections cut by `cut`, `cutAfterBytes` or a rule. */
  readonly cuts: number
  /** Frames passed through undecoded (over `maxFrameBytes`, or not MQTT). */
  readonly undecoded: number
  /** The traffic bound was reached: everything was cut and new connections are refused. */
  readonly overLimit: boolean
  /** The time bound was reached: everything was cut and new connections are refused. */
  readonly expired: boolean
}

export interface FaultProxyOptions {
  /** The broker's port. */
  readonly targetPort: number
  /** Default 127.0.0.1; only loopback is accepted. */
  readonly targetHost?: string | undefined
  /** Bound on all bytes read, both ways (default 1 GiB). */
  readonly maxBytes?: number | undefined
  /** Bound on the proxy's life (default 30 minutes). */
  readonly maxLifetime?: Duration.Input | undefined
  /** Largest frame decoded (default 1 MiB); larger ones pass through as bytes. */
  readonly maxFrameBytes?: number | undefined
  /** Entries kept in `log` (default 10,000). */
  readonly logSize?: number | undefined
}

export interface FaultProxy {
  readonly port: number
  /** `mqtt://127.0.0.1:PORT` */
  readonly url: string
  readonly stats: FaultProxyStats
  /** The newest packets seen, oldest first. */
  readonly log: ReadonlyArray<LogEntry>
  /** Back to a plain proxy: clears every mode, byte budget and rule, and accepts connections again. */
  readonly restore: Effect.Effect<void>
  /** Drops every byte (and FIN) in these directions (default both) on every connection, sockets kept open. */
  readonly blackhole: (directions?: Directions) => Effect.Effect<void>
  /** Stops reading in these directions (default both): bytes wait in the kernel and the sender's window fills. */
  readonly stall: (directions?: Directions) => Effect.Effect<void>
  /** Adds latency in these directions (default both); order is kept. `0` removes it. */
  readonly delay: (latency: Duration.Input, directions?: Directions) => Effect.Effect<void>
  /** Forwards one byte per write (each on its own event-loop turn) in these directions (default both). */
  readonly fragment: (directions?: Directions) => Effect.Effect<void>
  /** New connections are closed at once (`true`, default) or proxied again (`false`). */
  readonly refuse: (on?: boolean) => Effect.Effect<void>
  /** Cuts every open connection now. */
  readonly cut: (options?: CutOptions) => Effect.Effect<void>
  /** Cuts the connection that carries the `bytes`-th byte from now in `direction`, after forwarding that byte. */
  readonly cutAfterBytes: (
    bytes: number,
    options: CutOptions & { readonly direction: Direction }
  ) => Effect.Effect<void>
  readonly addRule: (rule: Rule) => Effect.Effect<RuleHandle>
  /** Drops the next `times` (default 1) packets in `direction` that `match`. */
  readonly dropNext: (
    direction: Directions,
    match: (packet: Packet.Packet, context: PacketContext) => boolean,
    times?: number
  ) => Effect.Effect<RuleHandle>
  /** Cuts on the next packet in `direction` that `match`es, after forwarding it (`deliver: true`) or instead of it. */
  readonly cutOn: (
    direction: Directions,
    match: (packet: Packet.Packet, context: PacketContext) => boolean,
    options: CutOptions & { readonly deliver: boolean }
  ) => Effect.Effect<RuleHandle>
  /** Waits until `accepted` reaches `n` (bounded, default 10 s). */
  readonly awaitAccepted: (n: number, timeout?: Duration.Input) => Effect.Effect<void>
}

/** A predicate on packets: this tag, and this packet id when given. */
export const packet = <T extends Packet.PacketTag>(tag: T, packetId?: number) => (p: Packet.Packet): boolean =>
  p._tag === tag && (packetId === undefined || (p as { readonly packetId?: number }).packetId === packetId)

/** A predicate that matches the `n`-th packet (from 1) that `match`es, counting from when the rule is made. */
export const nth = (n: number, match: (p: Packet.Packet, context: PacketContext) => boolean) => {
  let seen = 0
  return (p: Packet.Packet, context: PacketContext): boolean => match(p, context) && ++seen === n
}

const directionsOf = (directions: Directions | undefined): ReadonlyArray<Direction> =>
  directions === undefined || directions === "both" ? ["toBroker", "toClient"] : [directions]

const loopback = new Set(["127.0.0.1", "::1", "localhost"])

const HIGH_WATER = 1024 * 1024
const LOW_WATER = 256 * 1024

// ---------------------------------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------------------------------

type Item =
  | { readonly _tag: "Bytes"; bytes: Buffer; readonly due: number }
  | { readonly _tag: "Cut"; readonly options: CutOptions; readonly due: number }
  | { readonly _tag: "End"; readonly due: number }

interface Pipe {
  readonly direction: Direction
  readonly source: net.Socket
  readonly dest: net.Socket
  /** Bytes of an incomplete frame. */
  pending: Buffer
  /** Framing and decoding still in step with the stream. */
  decoding: boolean
  decoder: Codec.Decoder
  queue: Array<Item>
  queuedBytes: number
  timer: ReturnType<typeof setTimeout> | undefined
  /** Waiting for `drain`, or between the writes of a fragment. */
  busy: boolean
  /** Paused by backpressure (not by `stall`). */
  paused: boolean
  /** A cut is queued: what is read from now on is dropped. */
  closing: boolean
  /** Cut: the queue is dropped and nothing more is written. */
  stopped: boolean
}

interface Conn {
  readonly id: number
  readonly client: net.Socket
  readonly upstream: net.Socket
  readonly pipes: Record<Direction, Pipe>
  cut: boolean
  clientClosed: boolean
  upstreamClosed: boolean
}

interface LiveRule {
  readonly rule: Rule
  readonly directions: ReadonlySet<Direction>
  remaining: number
  readonly matches: Array<PacketInfo>
  readonly first: Deferred.Deferred<PacketInfo>
}

/** The frame length at the start of `buffer`: undefined when incomplete, "invalid" when not a valid header. */
const frameLength = (buffer: Buffer): number | "invalid" | undefined => {
  // Packet types 0 and 15 are reserved in MQTT 3.1.1: these bytes are not MQTT.
  const type = buffer[0]! >> 4
  if (type === 0 || type === 15) return "invalid"
  let remaining = 0
  let multiplier = 1
  for (let i = 1; i < 5; i++) {
    if (i >= buffer.length) return undefined
    const byte = buffer[i]!
    remaining += (byte & 0x7f) * multiplier
    multiplier *= 128
    if ((byte & 0x80) === 0) return 1 + i + remaining
  }
  return "invalid"
}

const describePacket = (p: Packet.Packet): Pick<LogEntry, "packetId" | "qos" | "dup"> => {
  const fields = p as { readonly packetId?: number; readonly qos?: number; readonly dup?: boolean }
  return {
    packetId: fields.packetId,
    qos: p._tag === "Publish" ? fields.qos : undefined,
    dup: p._tag === "Publish" ? fields.dup : undefined
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// make
// ---------------------------------------------------------------------------------------------------------------------

/** Starts a fault proxy to `targetHost:targetPort` for the current scope. */
export const make = (options: FaultProxyOptions): Effect.Effect<FaultProxy, Error, Scope.Scope> =>
  withLiveClock(Effect.gen(function*() {
    const targetHost = options.targetHost ?? "127.0.0.1"
    if (!loopback.has(targetHost)) {
      return yield* Effect.fail(new Error(`FaultProxy: only loopback targets are allowed, not ${targetHost}`))
    }
    const maxBytes = options.maxBytes ?? 1024 * 1024 * 1024
    const maxFrameBytes = options.maxFrameBytes ?? 1024 * 1024
    const logSize = options.logSize ?? 10_000
    const lifetimeMillis = Duration.toMillis(Duration.fromInputUnsafe(options.maxLifetime ?? Duration.minutes(30)))

    const conns = new Set<Conn>()
    let nextId = 0
    let refused = 0
    let refusing = false
    let overLimit = false
    let expired = false
    let cuts = 0
    let undecoded = 0
    let packetsDropped = 0
    let totalIn = 0
    const bytesIn: Record<Direction, number> = { toBroker: 0, toClient: 0 }
    const bytesOut: Record<Direction, number> = { toBroker: 0, toClient: 0 }
    const bytesDropped: Record<Direction, number> = { toBroker: 0, toClient: 0 }
    const packets: Record<Direction, Map<Packet.PacketTag, number>> = { toBroker: new Map(), toClient: new Map() }
    const log: Array<LogEntry> = []
    let logStart = 0

    // Proxy-wide modes.
    const blackholed: Record<Direction, boolean> = { toBroker: false, toClient: false }
    const stalled: Record<Direction, boolean> = { toBroker: false, toClient: false }
    const latency: Record<Direction, number> = { toBroker: 0, toClient: 0 }
    const fragmented: Record<Direction, boolean> = { toBroker: false, toClient: false }
    const budget: Record<Direction, { remaining: number; readonly cut: CutOptions } | undefined> = {
      toBroker: undefined,
      toClient: undefined
    }
    let rules: Array<LiveRule> = []
    const waiters = new Set<() => void>()
    const notify = () => {
      for (const wake of [...waiters]) wake()
    }

    const record = (entry: LogEntry) => {
      log.push(entry)
      if (log.length - logStart > logSize) {
        logStart++
        // Compact now and then rather than shifting on every packet.
        if (logStart > logSize) {
          log.splice(0, logStart)
          logStart = 0
        }
      }
    }

    // ----- closing ---------------------------------------------------------------------------------------------------

    const stopPipe = (pipe: Pipe) => {
      pipe.closing = true
      pipe.stopped = true
      for (const item of pipe.queue) if (item._tag === "Bytes") bytesDropped[pipe.direction] += item.bytes.length
      pipe.queue = []
      pipe.queuedBytes = 0
      if (pipe.timer !== undefined) clearTimeout(pipe.timer)
      pipe.timer = undefined
      // Keep reading (and dropping) so the sender sees an open, silent connection rather than a full window.
      if (pipe.paused && !pipe.source.destroyed) pipe.source.resume()
      pipe.paused = false
    }

    const closeSocket = (socket: net.Socket, reset: boolean) => {
      if (socket.destroyed) return
      if (reset) {
        socket.resetAndDestroy()
        return
      }
      socket.end()
      // FIN sent after the queued bytes; the peer may never answer with its own.
      setTimeout(() => socket.destroy(), 2_000).unref()
    }

    const cutConn = (conn: Conn, cutOptions: CutOptions) => {
      if (conn.cut) return
      conn.cut = true
      cuts++
      stopPipe(conn.pipes.toBroker)
      stopPipe(conn.pipes.toClient)
      const side = cutOptions.side ?? "both"
      const reset = cutOptions.reset ?? false
      if (side !== "broker") closeSocket(conn.client, reset)
      if (side !== "client") closeSocket(conn.upstream, reset)
      notify()
    }

    const cutAll = (cutOptions: CutOptions) => {
      for (const conn of conns) cutConn(conn, cutOptions)
    }

    // ----- writing ---------------------------------------------------------------------------------------------------

    const pump = (pipe: Pipe, owner: Conn) => {
      if (pipe.busy || pipe.stopped) return
      while (pipe.queue.length > 0) {
        const item = pipe.queue[0]!
        const wait = item.due - Date.now()
        if (wait > 0) {
          if (pipe.timer === undefined) {
            pipe.timer = setTimeout(() => {
              pipe.timer = undefined
              pump(pipe, owner)
            }, wait)
          }
          return
        }
        if (item._tag === "Cut") {
          pipe.queue.shift()
          cutConn(owner, item.options)
          return
        }
        if (item._tag === "End") {
          pipe.queue.shift()
          if (!pipe.dest.destroyed) pipe.dest.end()
          continue
        }
        if (pipe.dest.destroyed) {
          stopPipe(pipe)
          return
        }
        if (fragmented[pipe.direction] && item.bytes.length > 0) {
          const one = item.bytes.subarray(0, 1)
          item.bytes = item.bytes.subarray(1)
          if (item.bytes.length === 0) pipe.queue.shift()
          pipe.queuedBytes -= 1
          bytesOut[pipe.direction] += 1
          pipe.dest.write(one)
          pipe.busy = true
          setImmediate(() => {
            pipe.busy = false
            pump(pipe, owner)
          })
          return
        }
        pipe.queue.shift()
        pipe.queuedBytes -= item.bytes.length
        bytesOut[pipe.direction] += item.bytes.length
        if (!pipe.dest.write(item.bytes)) {
          pipe.busy = true
          pipe.dest.once("drain", () => {
            pipe.busy = false
            pump(pipe, owner)
          })
          return
        }
      }
      if (pipe.paused && pipe.queuedBytes + pipe.dest.writableLength < LOW_WATER) {
        pipe.paused = false
        if (!stalled[pipe.direction]) pipe.source.resume()
      }
    }

    const enqueue = (pipe: Pipe, owner: Conn, item: Item) => {
      pipe.queue.push(item)
      if (item._tag === "Bytes") pipe.queuedBytes += item.bytes.length
      if (!pipe.paused && pipe.queuedBytes + pipe.dest.writableLength > HIGH_WATER) {
        pipe.paused = true
        pipe.source.pause()
      }
      pump(pipe, owner)
    }

    /** Queues bytes under the byte budget of the direction; returns false once the budget cut the connection. */
    const forward = (pipe: Pipe, owner: Conn, bytes: Buffer, due: number): boolean => {
      const b = budget[pipe.direction]
      if (b !== undefined && bytes.length >= b.remaining) {
        budget[pipe.direction] = undefined
        const head = bytes.subarray(0, b.remaining)
        bytesDropped[pipe.direction] += bytes.length - head.length
        if (head.length > 0) enqueue(pipe, owner, { _tag: "Bytes", bytes: head, due })
        enqueue(pipe, owner, { _tag: "Cut", options: b.cut, due })
        pipe.closing = true
        return false
      }
      if (b !== undefined) b.remaining -= bytes.length
      enqueue(pipe, owner, { _tag: "Bytes", bytes, due })
      return true
    }

    // ----- reading ---------------------------------------------------------------------------------------------------

    const decide = (pipe: Pipe, decoded: Packet.Packet, bytes: number, connection: number): LiveRule | undefined => {
      const context: PacketContext = { connection, direction: pipe.direction }
      let decision: LiveRule | undefined
      let retired = false
      for (const live of rules) {
        if (live.remaining <= 0 || !live.directions.has(pipe.direction)) continue
        if (!live.rule.match(decoded, context)) continue
        const info: PacketInfo = { ...context, packet: decoded, bytes, at: Date.now() }
        live.matches.push(info)
        live.remaining--
        if (live.remaining <= 0) retired = true
        Deferred.doneUnsafe(live.first, Exit.succeed(info))
        if (live.rule.action !== "pass") {
          decision = live
          break
        }
      }
      if (retired) rules = rules.filter((live) => live.remaining > 0)
      if (retired || decision !== undefined) notify()
      return decision
    }

    const onData = (pipe: Pipe, owner: Conn, chunk: Buffer) => {
      const direction = pipe.direction
      bytesIn[direction] += chunk.length
      totalIn += chunk.length
      if (totalIn > maxBytes && !overLimit) {
        overLimit = true
        refusing = true
        cutAll({ reset: true })
        return
      }
      if (pipe.closing || owner.cut || blackholed[direction]) {
        bytesDropped[direction] += chunk.length
        // Bytes dropped mid-frame: the framer is out of step with this stream for good.
        if (blackholed[direction] && pipe.pending.length > 0) pipe.decoding = false
        return
      }
      const due = Date.now() + latency[direction]
      if (!pipe.decoding) {
        forward(pipe, owner, chunk, due)
        return
      }
      let buffer = pipe.pending.length === 0 ? chunk : Buffer.concat([pipe.pending, chunk])
      while (buffer.length > 0) {
        const length = frameLength(buffer)
        if (length === undefined) break
        if (length === "invalid" || length > maxFrameBytes) {
          // Not MQTT, or too large to hold: pass everything through undecoded from here on.
          pipe.decoding = false
          undecoded++
          pipe.pending = Buffer.alloc(0)
          forward(pipe, owner, buffer, due)
          return
        }
        if (buffer.length < length) break
        const frame = buffer.subarray(0, length)
        buffer = buffer.subarray(length)
        const decoded = pipe.decoder.push(frame)
        if (Result.isFailure(decoded) || decoded.success.length !== 1) {
          pipe.decoding = false
          undecoded++
          pipe.pending = Buffer.alloc(0)
          forward(pipe, owner, Buffer.concat([frame, buffer]), due)
          return
        }
        const p = decoded.success[0]!
        const counts = packets[direction]
        counts.set(p._tag, (counts.get(p._tag) ?? 0) + 1)
        const rule = decide(pipe, p, length, owner.id)
        const action = rule?.rule.action ?? "pass"
        const entry = { at: Date.now(), connection: owner.id, direction, tag: p._tag, ...describePacket(p) }
        switch (action) {
          case "pass":
            record({ ...entry, action: "forwarded" })
            if (!forward(pipe, owner, Buffer.from(frame), due)) {
              bytesDropped[direction] += buffer.length
              pipe.pending = Buffer.alloc(0)
              return
            }
            break
          case "drop":
            record({ ...entry, action: "dropped" })
            packetsDropped++
            bytesDropped[direction] += length
            break
          case "cutBefore":
          case "cutAfter": {
            record({ ...entry, action })
            const cutOptions = rule?.rule.cut ?? {}
            if (action === "cutAfter") {
              enqueue(pipe, owner, { _tag: "Bytes", bytes: Buffer.from(frame), due })
            } else {
              packetsDropped++
              bytesDropped[direction] += length
            }
            bytesDropped[direction] += buffer.length
            pipe.pending = Buffer.alloc(0)
            // Nothing after the cut point travels in either direction.
            pipe.closing = true
            const other = owner.pipes[direction === "toBroker" ? "toClient" : "toBroker"]
            stopPipe(other)
            enqueue(pipe, owner, { _tag: "Cut", options: cutOptions, due })
            return
          }
        }
      }
      // Copied: the chunk's memory must not be kept alive by a view.
      pipe.pending = buffer.length === 0 ? Buffer.alloc(0) : Buffer.from(buffer)
    }

    const onEnd = (pipe: Pipe, owner: Conn) => {
      // A FIN travels like data, after what is queued. A cut or a black hole swallows it: the peer that sent it gets
      // its connection closed, the other one hears nothing.
      if (pipe.closing || owner.cut || blackholed[pipe.direction]) {
        if (!pipe.source.destroyed) pipe.source.end()
        return
      }
      enqueue(pipe, owner, { _tag: "End", due: Date.now() + latency[pipe.direction] })
    }

    const makePipe = (direction: Direction, source: net.Socket, dest: net.Socket): Pipe => ({
      direction,
      source,
      dest,
      pending: Buffer.alloc(0),
      decoding: true,
      decoder: new Codec.Decoder({ maximumPacketSize: maxFrameBytes }),
      queue: [],
      queuedBytes: 0,
      timer: undefined,
      busy: false,
      paused: false,
      closing: false,
      stopped: false
    })

    const server = net.createServer({ allowHalfOpen: true }, (client) => {
      const id = ++nextId
      if (refusing) {
        refused++
        client.resetAndDestroy()
        notify()
        return
      }
      client.setNoDelay(true)
      const upstream = net.connect({ host: targetHost, port: options.targetPort, allowHalfOpen: true })
      upstream.setNoDelay(true)
      const owner: Conn = {
        id,
        client,
        upstream,
        pipes: { toBroker: makePipe("toBroker", client, upstream), toClient: makePipe("toClient", upstream, client) },
        cut: false,
        clientClosed: false,
        upstreamClosed: false
      }
      conns.add(owner)
      for (const direction of ["toBroker", "toClient"] as const) {
        if (stalled[direction]) owner.pipes[direction].source.pause()
      }
      const closed = () => {
        if (owner.clientClosed && owner.upstreamClosed) {
          stopPipe(owner.pipes.toBroker)
          stopPipe(owner.pipes.toClient)
          conns.delete(owner)
          notify()
        }
      }
      const lost = (socket: net.Socket, other: net.Socket) => () => {
        // A socket that failed (RST from its peer, say) takes its partner down unless a cut or black hole keeps the
        // partner open on purpose.
        if (!owner.cut && !socket.readableEnded && !other.destroyed) {
          const direction: Direction = socket === client ? "toBroker" : "toClient"
          if (!blackholed[direction]) other.destroy()
        }
      }
      client.on("data", (chunk: Buffer) => onData(owner.pipes.toBroker, owner, chunk))
      upstream.on("data", (chunk: Buffer) => onData(owner.pipes.toClient, owner, chunk))
      client.on("end", () => onEnd(owner.pipes.toBroker, owner))
      upstream.on("end", () => onEnd(owner.pipes.toClient, owner))
      client.on("error", () => {})
      upstream.on("error", () => {})
      client.on("close", () => {
        owner.clientClosed = true
        lost(client, upstream)()
        closed()
      })
      upstream.on("close", () => {
        owner.upstreamClosed = true
        lost(upstream, client)()
        closed()
      })
      notify()
    })

    const port = yield* Effect.acquireRelease(
      Effect.callback<number, Error>((resume) => {
        server.once("error", (error) => resume(Effect.fail(error)))
        server.listen({ host: "127.0.0.1", port: 0 }, () => {
          const address = server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      }),
      () =>
        Effect.callback<void>((resume) => {
          clearTimeout(lifetime)
          refusing = true
          for (const owner of conns) {
            stopPipe(owner.pipes.toBroker)
            stopPipe(owner.pipes.toClient)
            owner.client.destroy()
            owner.upstream.destroy()
          }
          conns.clear()
          server.close(() => resume(Effect.void))
        })
    )
    const lifetime = setTimeout(() => {
      expired = true
      refusing = true
      cutAll({ reset: true })
    }, lifetimeMillis)
    lifetime.unref()

    const eachDirection = (directions: Directions | undefined, f: (direction: Direction) => void) =>
      Effect.sync(() => {
        for (const direction of directionsOf(directions)) f(direction)
      })

    const addRule = (rule: Rule): Effect.Effect<RuleHandle> =>
      Effect.sync(() => {
        const live: LiveRule = {
          rule,
          directions: new Set(directionsOf(rule.direction)),
          remaining: rule.times ?? 1,
          matches: [],
          first: Deferred.makeUnsafe<PacketInfo>()
        }
        rules.push(live)
        const handle: RuleHandle = {
          get fired() {
            return live.matches.length
          },
          matches: live.matches,
          awaitFired: (timeout) =>
            bounded(
              Deferred.await(live.first),
              () => `a ${rule.action} rule on ${rule.direction ?? "both"} to fire; proxy: ${describe()}`,
              timeout
            ),
          remove: Effect.sync(() => {
            live.remaining = 0
            rules = rules.filter((r) => r !== live)
          })
        }
        return handle
      })

    const describe = () => {
      const last = log.slice(-8).map((e) =>
        `${e.connection}${e.direction === "toBroker" ? ">" : "<"}${e.tag}${e.packetId ?? ""}`
      )
      return `accepted ${nextId}, open ${conns.size}, cuts ${cuts}, ` +
        `bytes in ${bytesIn.toBroker}/${bytesIn.toClient}, last packets ${last.join(" ")}`
    }

    const stats: FaultProxyStats = {
      get accepted() {
        return nextId
      },
      get refused() {
        return refused
      },
      get open() {
        return conns.size
      },
      bytesIn,
      bytesOut,
      bytesDropped,
      packets,
      get packetsDropped() {
        return packetsDropped
      },
      get cuts() {
        return cuts
      },
      get undecoded() {
        return undecoded
      },
      get overLimit() {
        return overLimit
      },
      get expired() {
        return expired
      }
    }

    const proxy: FaultProxy = {
      port,
      url: `mqtt://127.0.0.1:${port}`,
      stats,
      get log() {
        return log.slice(logStart)
      },
      restore: Effect.sync(() => {
        for (const direction of ["toBroker", "toClient"] as const) {
          blackholed[direction] = false
          latency[direction] = 0
          fragmented[direction] = false
          budget[direction] = undefined
          if (stalled[direction]) {
            stalled[direction] = false
            for (const owner of conns) {
              const pipe = owner.pipes[direction]
              if (!pipe.paused && !pipe.source.destroyed) pipe.source.resume()
            }
          }
        }
        for (const live of rules) live.remaining = 0
        rules = []
        if (!overLimit && !expired) refusing = false
      }),
      blackhole: (directions) => eachDirection(directions, (direction) => (blackholed[direction] = true)),
      stall: (directions) =>
        eachDirection(directions, (direction) => {
          stalled[direction] = true
          for (const owner of conns) if (!owner.cut) owner.pipes[direction].source.pause()
        }),
      delay: (value, directions) => {
        const millis = Duration.toMillis(Duration.fromInputUnsafe(value))
        return eachDirection(directions, (direction) => (latency[direction] = millis))
      },
      fragment: (directions) => eachDirection(directions, (direction) => (fragmented[direction] = true)),
      refuse: (on = true) =>
        Effect.sync(() => {
          refusing = on || overLimit || expired
        }),
      cut: (cutOptions = {}) => Effect.sync(() => cutAll(cutOptions)),
      cutAfterBytes: (bytes, cutOptions) =>
        Effect.sync(() => {
          budget[cutOptions.direction] = { remaining: Math.max(1, Math.floor(bytes)), cut: cutOptions }
        }),
      addRule,
      dropNext: (direction, match, times = 1) => addRule({ direction, match, action: "drop", times }),
      cutOn: (direction, match, cutOptions) =>
        addRule({ direction, match, action: cutOptions.deliver ? "cutAfter" : "cutBefore", cut: cutOptions }),
      awaitAccepted: (n, timeout) =>
        bounded(
          Effect.callback<void>((resume) => {
            const check = () => {
              if (nextId < n) return
              waiters.delete(check)
              resume(Effect.void)
            }
            waiters.add(check)
            check()
            return Effect.sync(() => {
              waiters.delete(check)
            })
          }),
          () => `${n} connections accepted by the proxy (so far ${nextId})`,
          timeout
        )
    }
    return proxy
  }))
