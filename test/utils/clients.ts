/**
 * Small helpers for client tests against real brokers: bounded waits on streams and conditions (`collect`, `record`,
 * `waitUntil`, `awaitStatus`), a TCP proxy that can cut or refuse connections (`tcpProxy`), and an independent
 * MQTT.js observer client (`observer`) to check what a broker delivers without going through effect-mqtt.
 *
 * Every wait is bounded (10 seconds unless told) and dies with a message naming what it waited for and what it saw,
 * so a failing test explains itself instead of timing out.
 */
import * as net from "node:net"
import { assert } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { connect, type IClientOptions, type IClientPublishOptions, type MqttClient as RawClient } from "mqtt"
import type * as MqttClient from "../../src/Client/MqttClient.ts"
import type * as MqttError from "../../src/Errors/MqttError.ts"
import { withLiveClock } from "./live.ts"
import * as Loopback from "./loopback.ts"

/** Options that reconnect at once and notice a dead connection within about a second (fault-injection tests). */
export const fastRecovery = { reconnect: Schedule.spaced("20 millis"), keepalive: 1, pingTimeout: "1 second" } as const

/** Client options for tests: bounded connect, no reconnect unless asked, quick graceful close. */
export const options = (url: string, overrides: Partial<MqttClient.Options> = {}): MqttClient.Options => ({
  url,
  connectTimeout: "5 seconds",
  reconnect: false,
  disconnectTimeout: "2 seconds",
  ...overrides
})

let sequence = 0
const random = () => Math.random().toString(16).slice(2, 8)

/** A client id of at most 23 characters, unique in this run. */
export const clientId = (role: string): string => `${role.slice(0, 6)}-${++sequence}-${random()}`

/** A topic prefix unique in this run. */
export const topicRoot = (name: string): string => `em/${name}/${++sequence}-${random()}`

/** The MqttError an exit failed with; success or a defect fails the test. */
export const exitFailure = <A>(exit: Exit.Exit<A, MqttError.MqttError>): MqttError.MqttError => {
  if (Exit.isSuccess(exit)) return assert.fail("expected a failure, but it succeeded")
  const error = Cause.findErrorOption(exit.cause)
  if (Option.isNone(error)) return assert.fail(`expected a typed MqttError, got ${Cause.pretty(exit.cause)}`)
  return error.value
}

/** The MqttError an effect fails with; success or a defect fails the test. */
export const failureOf = <A, R>(
  effect: Effect.Effect<A, MqttError.MqttError, R>
): Effect.Effect<MqttError.MqttError, never, R> => Effect.map(Effect.exit(effect), exitFailure)

/** The default bound on every wait. */
export const waitBound: Duration.Duration = Duration.seconds(10)

const decoder = new TextDecoder()

/** A payload as text (UTF-8). */
export const text = (payload: Uint8Array): string => decoder.decode(payload)

/** Runs `effect`, dying with `what` if it does not complete within `timeout`. */
export const bounded = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  what: string | (() => string),
  timeout: Duration.Input = waitBound
): Effect.Effect<A, E, R> =>
  withLiveClock(
    Effect.timeoutOrElse(effect, {
      duration: timeout,
      orElse: () => {
        const after = Duration.format(Duration.fromInputUnsafe(timeout))
        return Effect.die(new Error(`timed out after ${after} waiting for ${typeof what === "string" ? what : what()}`))
      }
    })
  )

/** The first `n` elements of `stream` (bounded). */
export const collect = <A, E, R>(
  stream: Stream.Stream<A, E, R>,
  n: number,
  timeout: Duration.Input = waitBound
): Effect.Effect<Array<A>, E, R> => {
  const seen: Array<A> = []
  return bounded(
    stream.pipe(Stream.tap((a) => Effect.sync(() => seen.push(a))), Stream.take(n), Stream.runCollect),
    () => `${n} elements of a stream; received ${seen.length}: ${show(seen)}`,
    timeout
  )
}

/** Polls `check` every 20 ms until it holds (bounded). */
export const waitUntil = <E = never, R = never>(
  what: string,
  check: Effect.Effect<boolean, E, R> | (() => boolean),
  timeout: Duration.Input = waitBound
): Effect.Effect<void, E, R> => {
  const test = typeof check === "function" ? Effect.sync(check) : check
  return bounded(
    Effect.gen(function*() {
      while (!(yield* test)) yield* Effect.sleep(Duration.millis(20))
    }),
    what,
    timeout
  )
}

/** Waits until the client's status satisfies `predicate` (the current status counts); returns it. */
export const awaitStatus = <S extends MqttClient.Status>(
  client: MqttClient.MqttClient["Service"],
  what: string,
  predicate: (status: MqttClient.Status) => status is S,
  timeout: Duration.Input = waitBound
): Effect.Effect<S> => {
  const seen: Array<string> = []
  return bounded(
    SubscriptionRef.changes(client.status).pipe(
      Stream.tap((status) => Effect.sync(() => seen.push(status._tag))),
      Stream.filter(predicate),
      Stream.runHead,
      Effect.map(Option.getOrThrow)
    ),
    () => `status ${what}; statuses seen: ${seen.join(", ")}`,
    timeout
  )
}

/** Type guards for `awaitStatus`. */
export const isStatus = <T extends MqttClient.Status["_tag"]>(tag: T) =>
(status: MqttClient.Status): status is Extract<MqttClient.Status, { readonly _tag: T }> => status._tag === tag

// ---------------------------------------------------------------------------------------------------------------------
// Recording a stream
// ---------------------------------------------------------------------------------------------------------------------

/** A stream running in the background, its elements recorded as they arrive. */
export interface Recorder<A, E> {
  /** Everything received so far (live). */
  readonly items: ReadonlyArray<A>
  /** How the stream ended, once it has. */
  readonly end: Option.Option<Exit.Exit<void, E>>
  /** Waits until `done` holds for the elements received so far (bounded); returns them. */
  readonly waitFor: (
    what: string,
    done: (items: ReadonlyArray<A>) => boolean,
    timeout?: Duration.Input
  ) => Effect.Effect<ReadonlyArray<A>>
  /** Waits until `n` elements were received (bounded). */
  readonly waitForCount: (n: number, timeout?: Duration.Input) => Effect.Effect<ReadonlyArray<A>>
  /** Waits until the stream ends (bounded); returns how. */
  readonly waitForEnd: (timeout?: Duration.Input) => Effect.Effect<Exit.Exit<void, E>>
}

const show = (items: ReadonlyArray<unknown>): string => {
  const shown = items.slice(0, 20).map((item) => {
    if (typeof item === "object" && item !== null && "topic" in item && "payload" in item) {
      const m = item as { topic: string; payload: Uint8Array; qos?: number; retain?: boolean }
      return `${m.topic}=${JSON.stringify(text(m.payload))}(q${m.qos ?? "?"}${m.retain === true ? ",r" : ""})`
    }
    if (typeof item === "object" && item !== null && "_tag" in item) return String((item as { _tag: string })._tag)
    return JSON.stringify(item)
  })
  return `[${shown.join(", ")}${items.length > 20 ? ", …" : ""}]`
}

/**
 * Runs `stream` in a fiber of the current scope (started at once, so a stream that subscribes to a PubSub is
 * subscribed when this returns) and records its elements.
 */
export const record = <A, E>(stream: Stream.Stream<A, E>): Effect.Effect<Recorder<A, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const items: Array<A> = []
    let end: Option.Option<Exit.Exit<void, E>> = Option.none()
    const waiters = new Set<() => void>()
    const notify = () => {
      for (const wake of [...waiters]) wake()
    }
    yield* Stream.runForEach(stream, (a) =>
      Effect.sync(() => {
        items.push(a)
        notify()
      })).pipe(
        Effect.exit,
        Effect.tap((exit) =>
          Effect.sync(() => {
            end = Option.some(exit)
            notify()
          })
        ),
        Effect.forkScoped({ startImmediately: true })
      )
    const until = (check: () => boolean) =>
      Effect.callback<void>((resume) => {
        if (check()) return resume(Effect.void)
        const wake = () => {
          if (!check()) return
          waiters.delete(wake)
          resume(Effect.void)
        }
        waiters.add(wake)
        return Effect.sync(() => {
          waiters.delete(wake)
        })
      })
    const endText = () =>
      Option.isSome(end) ? ` (stream ended: ${Exit.isSuccess(end.value) ? "done" : "failed"})` : ""
    const waitFor = (what: string, done: (items: ReadonlyArray<A>) => boolean, timeout?: Duration.Input) =>
      bounded(
        Effect.as(until(() => done(items)), items as ReadonlyArray<A>),
        () => `${what}; received ${items.length}: ${show(items)}${endText()}`,
        timeout
      )
    const recorder: Recorder<A, E> = {
      items,
      get end() {
        return end
      },
      waitFor,
      waitForCount: (n, timeout) => waitFor(`${n} elements`, (received) => received.length >= n, timeout),
      waitForEnd: (timeout) =>
        bounded(
          Effect.map(until(() => Option.isSome(end)), () => Option.getOrThrow(end)),
          () => `the stream to end; received ${items.length}: ${show(items)}`,
          timeout
        )
    }
    return recorder
  })

// ---------------------------------------------------------------------------------------------------------------------
// TCP proxy
// ---------------------------------------------------------------------------------------------------------------------

/** MQTT control packet types (the high nibble of the first byte), for `TcpProxy.dropFromBroker`. */
export const PacketType = {
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBACK: 9,
  UNSUBACK: 11,
  PINGRESP: 13
} as const

/**
 * A TCP proxy on 127.0.0.1 in front of a broker port, for faults seen from the network side: cutting connections,
 * refusing new ones, swallowing chosen packets from the broker, freezing a connection (a black hole).
 */
export interface TcpProxy {
  readonly port: number
  /** `mqtt://127.0.0.1:PORT` */
  readonly url: string
  /** Client connections accepted so far (including refused ones while blocked). */
  readonly accepted: number
  /** Proxied connections currently open. */
  readonly open: number
  /** Packets swallowed by `dropFromBroker` so far, by packet type. */
  readonly dropped: ReadonlyMap<number, number>
  /** Destroys every proxied connection on both sides, without any MQTT packet: an abrupt network drop. */
  readonly dropConnections: Effect.Effect<void>
  /** Drops every connection and closes new ones at once (the broker looks unreachable) until `unblock`. */
  readonly block: Effect.Effect<void>
  readonly unblock: Effect.Effect<void>
  /** From now on, swallows packets from the broker whose type is in `types` (none: forward everything). */
  readonly dropFromBroker: (...types: ReadonlyArray<number>) => Effect.Effect<void>
  /** Stops forwarding anything, both ways, on the connections open now (they stay open): a silent network. */
  readonly freeze: Effect.Effect<void>
}

interface Pair {
  readonly client: net.Socket
  readonly upstream: net.Socket
  frozen: boolean
  /** Bytes from the broker not yet forming a whole packet. */
  pending: Buffer
}

/** Splits `buffer` into whole MQTT packets; returns them and the incomplete rest. */
const frames = (buffer: Buffer): { readonly packets: Array<Buffer>; readonly rest: Buffer } => {
  const packets: Array<Buffer> = []
  let offset = 0
  while (offset < buffer.length) {
    let remaining = 0
    let multiplier = 1
    let i = offset + 1
    let complete = false
    for (; i < buffer.length && i < offset + 5; i++) {
      remaining += (buffer[i]! & 0x7f) * multiplier
      multiplier *= 128
      if ((buffer[i]! & 0x80) === 0) {
        complete = true
        i++
        break
      }
    }
    if (!complete || i + remaining > buffer.length) break
    packets.push(buffer.subarray(offset, i + remaining))
    offset = i + remaining
  }
  return { packets, rest: buffer.subarray(offset) }
}

/** Starts a TCP proxy to `127.0.0.1:targetPort` for the current scope. */
export const tcpProxy = (targetPort: number): Effect.Effect<TcpProxy, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const pairs = new Set<Pair>()
    const dropped = new Map<number, number>()
    let accepted = 0
    let blocked = false
    let dropTypes: ReadonlySet<number> = new Set()
    const server = net.createServer((client) => {
      accepted++
      if (blocked) {
        client.destroy()
        return
      }
      const upstream = net.connect({ host: "127.0.0.1", port: targetPort })
      const pair: Pair = { client, upstream, frozen: false, pending: Buffer.alloc(0) }
      pairs.add(pair)
      const close = () => {
        pairs.delete(pair)
        client.destroy()
        upstream.destroy()
      }
      client.on("error", close).on("close", close)
      upstream.on("error", close).on("close", close)
      client.on("data", (chunk: Buffer) => {
        if (!pair.frozen) upstream.write(chunk)
      })
      upstream.on("data", (chunk: Buffer) => {
        if (pair.frozen) return
        const { packets, rest } = frames(Buffer.concat([pair.pending, chunk]))
        pair.pending = Buffer.from(rest)
        for (const packet of packets) {
          const type = packet[0]! >> 4
          if (dropTypes.has(type)) dropped.set(type, (dropped.get(type) ?? 0) + 1)
          else client.write(packet)
        }
      })
    })
    const port = yield* Loopback.listen(server, () => [...pairs].flatMap(({ client, upstream }) => [client, upstream]))
    const dropConnections = Effect.sync(() => {
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy()
        upstream.resetAndDestroy()
      }
      pairs.clear()
    })
    const proxy: TcpProxy = {
      port,
      url: `mqtt://127.0.0.1:${port}`,
      get accepted() {
        return accepted
      },
      get open() {
        return pairs.size
      },
      dropped,
      dropConnections,
      block: Effect.andThen(
        Effect.sync(() => {
          blocked = true
        }),
        dropConnections
      ),
      unblock: Effect.sync(() => {
        blocked = false
      }),
      dropFromBroker: (...types) =>
        Effect.sync(() => {
          dropTypes = new Set(types)
        }),
      freeze: Effect.sync(() => {
        for (const pair of pairs) pair.frozen = true
      })
    }
    return proxy
  })

// ---------------------------------------------------------------------------------------------------------------------
// MQTT.js observer
// ---------------------------------------------------------------------------------------------------------------------

/** A message as MQTT.js received it. */
export interface Observed {
  readonly topic: string
  readonly payload: Uint8Array
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  readonly dup: boolean
}

/** An MQTT.js client (3.1.1, no reconnect) recording every message it receives. */
export interface Observer {
  readonly client: RawClient
  readonly messages: Recorder<Observed, never>
  readonly publish: (
    topic: string,
    payload: string | Uint8Array,
    options?: IClientPublishOptions
  ) => Effect.Effect<void, Error>
}

/**
 * Connects an MQTT.js client and subscribes it to `filters` (waiting for SUBACK); open until the scope closes. An
 * independent client, to observe what a broker delivers (wills, retained messages) without effect-mqtt.
 */
export const observer = (
  url: string,
  filters: Readonly<Record<string, 0 | 1 | 2>>,
  options: IClientOptions = {}
): Effect.Effect<Observer, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const client = yield* Effect.acquireRelease(
      bounded(
        Effect.callback<RawClient, Error>((resume) => {
          const c = connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...options })
          c.once("connect", () => resume(Effect.succeed(c)))
          c.once("error", (error) => {
            c.end(true)
            resume(Effect.fail(error))
          })
          return Effect.sync(() => c.end(true))
        }),
        `MQTT.js to connect to ${url}`
      ),
      (c) => Effect.callback<void>((resume) => void c.end(true, {}, () => resume(Effect.void)))
    )
    const messages = yield* record(
      Stream.callback<Observed>((queue) =>
        Effect.sync(() => {
          client.on("message", (topic, payload, packet) => {
            Queue.offerUnsafe(queue, {
              topic,
              payload: new Uint8Array(payload),
              qos: packet.qos,
              retain: packet.retain,
              dup: packet.dup
            })
          })
        })
      )
    )
    if (Object.keys(filters).length > 0) {
      yield* bounded(
        Effect.callback<void, Error>((resume) => {
          const map: Record<string, { qos: 0 | 1 | 2 }> = {}
          for (const [filter, qos] of Object.entries(filters)) map[filter] = { qos }
          client.subscribe(map, (error, granted) => {
            if (error) return resume(Effect.fail(error))
            const refused = (granted ?? []).filter((g) => g.qos === 128)
            resume(
              refused.length > 0
                ? Effect.fail(new Error(`observer subscription refused: ${refused.map((g) => g.topic).join(", ")}`))
                : Effect.void
            )
          })
        }),
        `MQTT.js SUBACK for ${Object.keys(filters).join(", ")}`
      )
    }
    const publish = (topic: string, payload: string | Uint8Array, publishOptions: IClientPublishOptions = {}) =>
      bounded(
        Effect.callback<void, Error>((resume) => {
          client.publish(topic, typeof payload === "string" ? payload : Buffer.from(payload), publishOptions, (error) =>
            resume(error ? Effect.fail(error) : Effect.void))
        }),
        `MQTT.js to publish to ${topic}`
      )
    return { client, messages, publish } satisfies Observer
  })
