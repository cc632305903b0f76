/**
 * The `npm start` demo: a short scenario that shows effect-mqtt end to end. With no arguments it starts an embedded
 * Aedes broker on a free loopback port; with `--url mqtt://host:port` it runs against that broker instead (topics
 * under a unique prefix, the retained message cleared at the end). Steps: a subscriber on a wildcard filter; publishes
 * at QoS 0, 1 and 2 with their completion (packet ids); a stream of readings published through `publishSink`; a
 * retained message seen by a late subscriber; a will published by the broker when a client's connection is cut; a
 * forced connection drop followed by reconnect and resubscribe; a summary table. Connections are cut by a tiny in-process TCP proxy, so the same steps work against any broker.
 *
 * Run: `npm start` or `npm start -- --url mqtt://localhost:1883`. Exits 0 when every step worked, 1 otherwise.
 */
import * as net from "node:net"
import { NodeRuntime } from "@effect/platform-node"
import { Aedes } from "aedes"
import { Console, Data, Duration, Effect, Queue, Schedule, Stream, SubscriptionRef } from "effect"
import { MqttClient, MqttError } from "effect-mqtt"

class DemoError extends Data.TaggedError("DemoError")<{ readonly message: string }> {}

const usage = `usage: npm start [-- --url mqtt://host:port]

Runs the effect-mqtt demo on an embedded Aedes broker, or on the broker at --url.`

/** `--url URL` or `--url=URL`; undefined: the embedded broker. */
const parseArgs = (argv: ReadonlyArray<string>): { readonly url: string | undefined } | "help" | string => {
  let url: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--help" || arg === "-h") return "help"
    if (arg === "--url" && argv[i + 1] !== undefined) url = argv[++i]
    else if (arg.startsWith("--url=")) url = arg.slice("--url=".length)
    else return `unknown argument ${JSON.stringify(arg)}\n\n${usage}`
  }
  return { url }
}

// ---------------------------------------------------------------------------------------------------------------------
// The embedded broker and the proxy that cuts connections
// ---------------------------------------------------------------------------------------------------------------------

const listen = (server: net.Server): Effect.Effect<number, DemoError> =>
  Effect.callback<number, DemoError>((resume) => {
    server.once("error", (cause) => resume(Effect.fail(new DemoError({ message: `cannot listen: ${cause.message}` }))))
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const address = server.address()
      resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

/** Destroys the sockets, then closes the server (whose close waits for open sockets). */
const closeServer = (server: net.Server, sockets: Set<net.Socket>): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    server.close(() => resume(Effect.void))
    for (const socket of sockets) socket.destroy()
  }).pipe(Effect.timeoutOption("2 seconds"), Effect.asVoid)

const trackSockets = (server: net.Server): Set<net.Socket> => {
  const sockets = new Set<net.Socket>()
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  })
  return sockets
}

/** An Aedes broker on a free 127.0.0.1 port for the current scope; returns its URL. */
const embeddedBroker = Effect.gen(function*() {
  const broker = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () => Aedes.createBroker(),
      catch: (cause) => new DemoError({ message: `cannot start Aedes: ${String(cause)}` })
    }),
    (broker) =>
      Effect.callback<void>((resume) => broker.close(() => resume(Effect.void))).pipe(
        Effect.timeoutOption("2 seconds")
      )
  )
  const server = net.createServer((socket) => broker.handle(socket))
  const sockets = trackSockets(server)
  const port = yield* Effect.acquireRelease(listen(server), () => closeServer(server, sockets))
  return `mqtt://127.0.0.1:${port}`
})

interface Proxy {
  /** The broker URL rewritten to go through the proxy. */
  readonly url: string
  /** The TLS server name to keep verifying the broker's certificate through the proxy. */
  readonly servername: string | undefined
  /** Destroys every proxied connection on both sides, like a network failure; returns how many were cut. */
  readonly cut: Effect.Effect<number>
}

/** A TCP proxy on a free 127.0.0.1 port to the broker at `brokerUrl`, for the current scope. */
const proxyTo = (brokerUrl: string) =>
  Effect.gen(function*() {
    const target = new URL(brokerUrl)
    const host = target.hostname.replace(/^\[(.*)\]$/, "$1")
    const defaultPorts: Record<string, number> = {
      "mqtt:": 1883,
      "tcp:": 1883,
      "mqtts:": 8883,
      "ssl:": 8883,
      "tls:": 8883,
      "ws:": 80,
      "wss:": 443
    }
    const port = target.port === "" ? (defaultPorts[target.protocol] ?? 1883) : Number(target.port)
    const pairs = new Set<readonly [net.Socket, net.Socket]>()
    const server = net.createServer((client) => {
      const upstream = net.connect({ host, port })
      const pair = [client, upstream] as const
      pairs.add(pair)
      const close = () => {
        pairs.delete(pair)
        client.destroy()
        upstream.destroy()
      }
      client.on("error", close).on("close", close)
      upstream.on("error", close).on("close", close)
      client.pipe(upstream)
      upstream.pipe(client)
    })
    const sockets = trackSockets(server)
    const proxyPort = yield* Effect.acquireRelease(listen(server), () =>
      Effect.andThen(
        Effect.sync(() => {
          for (const [client, upstream] of pairs) {
            client.destroy()
            upstream.destroy()
          }
        }),
        closeServer(server, sockets)
      ))
    const url = new URL(brokerUrl)
    url.hostname = "127.0.0.1"
    url.port = String(proxyPort)
    const proxy: Proxy = {
      url: url.toString(),
      servername: net.isIP(host) === 0 ? host : undefined,
      cut: Effect.sync(() => {
        const n = pairs.size
        for (const [client, upstream] of pairs) {
          client.destroy()
          upstream.destroy()
        }
        return n
      })
    }
    return proxy
  })

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

const decoder = new TextDecoder()
const text = (payload: Uint8Array): string => decoder.decode(payload)
const quote = (s: string) => JSON.stringify(s)

/** The URL as printed: a password in it is masked. */
const withoutPassword = (url: string): string => {
  const parsed = new URL(url)
  if (parsed.password !== "") parsed.password = "***"
  return parsed.toString()
}

/** Fails with a message naming what was awaited when `self` takes longer than `seconds`. */
const within = <A, E, R>(what: string, seconds: number) => (self: Effect.Effect<A, E, R>) =>
  Effect.timeoutOrElse(self, {
    duration: Duration.seconds(seconds),
    orElse: () => Effect.fail(new DemoError({ message: `timed out after ${seconds} s waiting for ${what}` }))
  })

/** Takes messages until one on `topic` (with `payload`, if given) arrives; the others are shown and skipped. */
const expectMessage = (
  inbox: Queue.Queue<MqttClient.Message, MqttError.MqttError>,
  topic: string,
  payload?: string
): Effect.Effect<MqttClient.Message, DemoError | MqttError.MqttError> =>
  Effect.gen(function*() {
    while (true) {
      const message = yield* Queue.take(inbox)
      if (message.topic === topic && (payload === undefined || text(message.payload) === payload)) return message
      yield* Console.log(
        message.retain
          ? `   watcher  received ${message.topic} ${quote(text(message.payload))} retain=true (resent on SUBSCRIBE)`
          : `   watcher  received ${message.topic} ${quote(text(message.payload))}`
      )
    }
  }).pipe(within(`${topic}${payload === undefined ? "" : ` ${quote(payload)}`} to arrive`, 5))

const statusText = (status: MqttClient.Status): string => {
  switch (status._tag) {
    case "Connected":
      return `Connected (sessionPresent ${status.sessionPresent})`
    case "Reconnecting":
      return `Reconnecting (attempt ${status.attempt}, after ${status.error.reason._tag})`
    case "Disconnected":
      return `Disconnected (${status.error.reason._tag})`
    default:
      return status._tag
  }
}

const eventText = (event: MqttClient.Event): string => {
  switch (event._tag) {
    case "Connected":
      return `Connected(sessionPresent=${event.sessionPresent})`
    case "Disconnected":
    case "Offline":
      return `${event._tag}(${event.error.reason._tag})`
    case "Reconnecting":
      return `Reconnecting(attempt ${event.attempt})`
    default:
      return event._tag
  }
}

const isLifecycle = (event: MqttClient.Event) =>
  event._tag === "Connected" || event._tag === "Disconnected" || event._tag === "Reconnecting" ||
  event._tag === "Offline"

/** Waits until `status` satisfies `predicate`, bounded. */
const awaitStatus = (
  status: SubscriptionRef.SubscriptionRef<MqttClient.Status>,
  what: string,
  predicate: (status: MqttClient.Status) => boolean
) =>
  SubscriptionRef.changes(status).pipe(
    Stream.filter(predicate),
    Stream.runHead,
    within(`status ${what}`, 10)
  )

const table = (rows: ReadonlyArray<readonly [string, string]>): string => {
  const header = ["step", "result"] as const
  const w0 = Math.max(header[0].length, ...rows.map(([a]) => a.length))
  const w1 = Math.max(header[1].length, ...rows.map(([, b]) => b.length))
  const line = (l: string, m: string, r: string) => `${l}${"─".repeat(w0 + 2)}${m}${"─".repeat(w1 + 2)}${r}`
  const row = ([a, b]: readonly [string, string]) => `│ ${a.padEnd(w0)} │ ${b.padEnd(w1)} │`
  return [line("┌", "┬", "┐"), row(header), line("├", "┼", "┤"), ...rows.map(row), line("└", "┴", "┘")].join("\n")
}

// ---------------------------------------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------------------------------------

const scenario = (brokerUrl: string, embedded: boolean) =>
  Effect.gen(function*() {
    const run = Math.random().toString(16).slice(2, 8)
    const root = embedded ? "demo" : `effect-mqtt-demo/${run}`
    const id = (role: string) => `demo-${role}-${run}`
    const summary: Array<readonly [string, string]> = []
    const base = { connectTimeout: "5 seconds", disconnectTimeout: "2 seconds" } as const
    const viaProxy = (proxy: Proxy): MqttClient.Options => ({
      ...base,
      url: proxy.url,
      ...(proxy.servername !== undefined ? { tls: { servername: proxy.servername } } : {})
    })

    yield* Console.log("effect-mqtt demo")
    yield* Console.log(
      embedded
        ? `broker: embedded Aedes at ${brokerUrl} (pass --url mqtt://host:port to use a real broker)`
        : `broker: ${withoutPassword(brokerUrl)} (topics under ${root}/)`
    )

    // The publisher connects directly (an unreachable broker fails here, with the broker's own error). The reconnect
    // schedule also drives the first connection: without `reconnect: false` it would retry until the broker is up.
    const sensor = yield* MqttClient.make({ ...base, url: brokerUrl, clientId: id("sensor"), reconnect: false })

    // 1. A subscriber on a wildcard filter. It connects through a proxy, so that step 6 can cut its connection.
    yield* Console.log("\n1. Subscribe to a wildcard filter")
    const watcherProxy = yield* proxyTo(brokerUrl)
    // Reconnect every 200 ms once connected; the first connection is tried once (a demo should not wait for a
    // broker that is not there).
    const watcher = yield* MqttClient.make({
      ...viaProxy(watcherProxy),
      clientId: id("watcher"),
      reconnect: Schedule.spaced("200 millis"),
      retryFirstConnect: false
    })
    const watcherEvents: Array<MqttClient.Event> = []
    yield* watcher.events.pipe(
      Stream.runForEach((event) => Effect.sync(() => watcherEvents.push(event))),
      Effect.forkScoped
    )
    const filter = `${root}/#`
    const subscription = yield* watcher.subscription({ [filter]: 2 })
    // The watcher's messages, in order; a failed subscription fails whoever waits on the inbox.
    const inbox = yield* Queue.unbounded<MqttClient.Message, MqttError.MqttError>()
    yield* subscription.messages.pipe(
      Stream.runForEach((message) => Queue.offer(inbox, message)),
      Effect.catch((error) => Queue.fail(inbox, error)),
      Effect.forkScoped
    )
    const granted = subscription.granted.map((s) => s.qos).join(", ")
    yield* Console.log(`   watcher  SUBSCRIBE ${filter} (QoS 2) → SUBACK, granted QoS ${granted}`)
    summary.push([`subscribe ${filter}`, `SUBACK, granted QoS ${granted}`])

    // 2. Publishes at QoS 0, 1 and 2, each completing at its own point of the protocol.
    yield* Console.log("\n2. Publish at QoS 0, 1 and 2")
    const temperature = `${root}/kitchen/temperature`
    const completion = ["written to the socket", "PUBACK", "PUBCOMP"] as const
    const readings = ["21.5", "21.6", "21.7"] as const
    for (const qos of [0, 1, 2] as const) {
      const started = Date.now()
      const packetId = yield* sensor.publish({ topic: temperature, payload: readings[qos], qos })
      const ms = Date.now() - started
      const done = packetId === undefined ? completion[qos] : `${completion[qos]}, packet id ${packetId}`
      yield* Console.log(`   sensor   PUBLISH QoS ${qos} ${temperature} ${quote(readings[qos])} → ${done} (${ms} ms)`)
      const message = yield* expectMessage(inbox, temperature, readings[qos])
      yield* Console.log(`   watcher  received ${message.topic} ${quote(text(message.payload))} at QoS ${message.qos}`)
      summary.push([`publish QoS ${qos}`, `${done}; received at QoS ${message.qos}`])
    }

    // 3. A stream of messages: `publishSink` publishes it in order, as many in flight as the window allows, and
    // pulls the stream only as fast as acknowledgements come back.
    yield* Console.log("\n3. Publish a stream (publishSink)")
    const humidity = `${root}/kitchen/humidity`
    const series = Array.from({ length: 10 }, (_, i) => `${40 + i}%`)
    const count = yield* Stream.fromIterable(series).pipe(
      Stream.map((payload): MqttClient.PublishInput => ({ topic: humidity, payload, qos: 1 })),
      Stream.run(sensor.publishSink)
    )
    yield* Console.log(`   sensor   a Stream of ${series.length} readings → publishSink: ${count} published at QoS 1`)
    for (const payload of series) yield* expectMessage(inbox, humidity, payload)
    yield* Console.log(
      `   watcher  received ${humidity} ${quote(series[0]!)} … ${quote(series[series.length - 1]!)}, in order`
    )
    summary.push(["publish a stream", `${count} messages through publishSink, received in order`])

    // 4. A retained message: the broker keeps the last one per topic and hands it to every new subscriber.
    yield* Console.log("\n4. Retained message, seen by a late subscriber")
    const statusTopic = `${root}/kitchen/status`
    const retainedId = yield* sensor.publish({ topic: statusTopic, payload: "online", qos: 1, retain: true })
    yield* Console.log(`   sensor   PUBLISH QoS 1 retain ${statusTopic} "online" → PUBACK, packet id ${retainedId}`)
    yield* expectMessage(inbox, statusTopic, "online")
    const late = yield* MqttClient.make({ ...base, url: brokerUrl, clientId: id("late"), reconnect: false })
    const retained = yield* late.subscribe(statusTopic, { qos: 1 }).pipe(
      Stream.runHead,
      within("the retained message", 5)
    )
    const retainedText = retained._tag === "Some"
      ? `${quote(text(retained.value.payload))} retain=${retained.value.retain}`
      : "nothing"
    yield* Console.log(`   late     SUBSCRIBE ${statusTopic} → received ${retainedText} (stored by the broker)`)
    summary.push(["retained message", `late subscriber received ${retainedText}`])
    yield* late.disconnect()

    // 5. A will: the broker publishes it when a client's connection ends without DISCONNECT.
    yield* Console.log("\n5. Will, fired by an abrupt disconnect")
    const deviceProxy = yield* proxyTo(brokerUrl)
    const willTopic = `${root}/devices/thermostat/status`
    const device = yield* MqttClient.make({
      ...viaProxy(deviceProxy),
      clientId: id("device"),
      reconnect: false,
      will: { topic: willTopic, payload: "offline", qos: 1 }
    })
    yield* Console.log(`   device   CONNECT with will ${willTopic} "offline" (QoS 1)`)
    yield* deviceProxy.cut
    yield* Console.log("   proxy    cut the device's connection (no DISCONNECT sent)")
    const will = yield* expectMessage(inbox, willTopic, "offline")
    const deviceStatus = yield* awaitStatus(device.status, "Disconnected", (s) => s._tag === "Disconnected")
    yield* Console.log(`   watcher  received ${will.topic} ${quote(text(will.payload))}: the broker published the will`)
    if (deviceStatus._tag === "Some") yield* Console.log(`   device   status ${statusText(deviceStatus.value)}`)
    summary.push(["will", `broker published ${quote(text(will.payload))} after the cut`])

    // 6. A dropped connection: the client reconnects by its schedule and subscribes again (clean session).
    yield* Console.log("\n6. Connection drop, reconnect and resubscribe")
    const eventsBefore = watcherEvents.length
    const cutAt = Date.now()
    yield* watcherProxy.cut
    yield* Console.log("   proxy    cut the watcher's connection")
    // Status goes Reconnecting (for the schedule's 200 ms at least), then Connected again.
    const path = yield* SubscriptionRef.changes(watcher.status).pipe(
      Stream.dropWhile((status) => status._tag !== "Reconnecting"),
      Stream.takeUntil((status) => status._tag === "Connected"),
      Stream.runCollect,
      within("status Reconnecting, then Connected", 10)
    )
    const reconnectMs = Date.now() - cutAt
    // The broker kept no session (clean session), so the client subscribed again. A broker sends the retained
    // messages matching a filter on every SUBSCRIBE: their arrival shows the subscription is back at the broker.
    const resent = yield* expectMessage(inbox, statusTopic, "online")
    yield* Console.log(`   watcher  status: ${["Connected", ...path.map(statusText)].join(" → ")}`)
    yield* Console.log(
      `   watcher  events: ${watcherEvents.slice(eventsBefore).filter(isLifecycle).map(eventText).join(" → ")}`
    )
    yield* Console.log(
      `   watcher  resubscribed ${filter}: received ${statusTopic} ${quote(text(resent.payload))} ` +
        `retain=${resent.retain}`
    )
    const after = "22.0"
    yield* sensor.publish({ topic: temperature, payload: after, qos: 1 })
    yield* Console.log(`   sensor   PUBLISH QoS 1 ${temperature} ${quote(after)}`)
    const received = yield* expectMessage(inbox, temperature, after)
    yield* Console.log(`   watcher  received ${received.topic} ${quote(text(received.payload))}: subscription restored`)
    summary.push(["drop and reconnect", `reconnected in ${reconnectMs} ms, ${filter} receives again`])

    // Leave nothing behind on a shared broker: an empty retained message clears the retained one.
    yield* sensor.publish({ topic: statusTopic, payload: "", qos: 1, retain: true })
    yield* Effect.forEach([sensor, watcher, device], (client) => client.disconnect(), { discard: true })

    yield* Console.log("\nSummary")
    yield* Console.log(table(summary))
    yield* Console.log(`\nAll ${summary.length} steps passed.`)
  })

const program = Effect.gen(function*() {
  const args = parseArgs(process.argv.slice(2))
  if (args === "help") return yield* Console.log(usage)
  if (typeof args === "string") {
    yield* Console.error(args)
    return yield* new DemoError({ message: "bad arguments" })
  }
  const brokerUrl = args.url ?? (yield* embeddedBroker)
  yield* scenario(brokerUrl, args.url === undefined)
}).pipe(
  Effect.scoped,
  Effect.tapError((error) =>
    MqttError.isMqttError(error)
      ? Console.error(`\ndemo failed: ${error.reason._tag} (Paho ${error.code} ${error.pahoName}): ${error.message}`)
      : error.message === "bad arguments"
      ? Effect.void
      : Console.error(`\ndemo failed: ${error.message}`)
  )
)

// A failure was printed above: exit 1 without a second report. Success: exit 0 once everything is closed.
NodeRuntime.runMain(program, { disableErrorReporting: true })
