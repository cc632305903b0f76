/**
 * The connection flags every `effect-mqtt` command shares — broker (`--url`, or `-h`/`-p`), client id, credentials,
 * TLS files, keepalive, will, clean session, debug — and their translation into `MqttClient.Options`, as
 * mosquitto_pub/sub read them: a TLS flag with `-h`/`-p` selects TLS (port 8883 unless `-p`), `-c` needs `-i`. Also
 * the logging setup (`-d`: Effect logs at debug level; logs always go to stderr, stdout carries data) and the
 * reconnect policy of the CLI: the first connection is tried once, later drops reconnect every second.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as References from "effect/References"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { Flag } from "effect/cli"
import { MqttClient, type MqttError, type Packet } from "../index.ts"
import { UsageError } from "./Exit.ts"

/**
 * The shared connection flags, as a `Command` config record.
 *
 * @since 0.1.0
 */
export const flags = {
  url: Flag.String("url").pipe(
    Flag.withDescription("Broker URL: mqtt://, mqtts://, ws://, wss:// (instead of -h/-p)"),
    Flag.optional
  ),
  host: Flag.String("host").pipe(
    Flag.withAlias("h"),
    Flag.withDescription("Broker host (default localhost)"),
    Flag.optional
  ),
  port: Flag.Int("port").pipe(
    Flag.withAlias("p"),
    Flag.withDescription("Broker port (default 1883, 8883 with TLS)"),
    Flag.optional
  ),
  id: Flag.String("id").pipe(
    Flag.withAlias("i"),
    Flag.withDescription("Client id (default: effect-mqtt- and 12 random hex digits)"),
    Flag.optional
  ),
  username: Flag.String("username").pipe(Flag.withAlias("u"), Flag.withDescription("User name"), Flag.optional),
  password: Flag.Redacted("pw").pipe(Flag.withAlias("P"), Flag.withDescription("Password"), Flag.optional),
  cafile: Flag.String("cafile").pipe(
    Flag.withDescription("PEM file of the CA certificates to trust (selects TLS with -h/-p)"),
    Flag.optional
  ),
  cert: Flag.String("cert").pipe(Flag.withDescription("PEM client certificate (mutual TLS)"), Flag.optional),
  key: Flag.String("key").pipe(Flag.withDescription("PEM client private key (mutual TLS)"), Flag.optional),
  insecure: Flag.Boolean("insecure").pipe(
    Flag.withDescription("Do not verify the broker's certificate (selects TLS with -h/-p)"),
    Flag.withoutNegation,
    Flag.withDefault(false)
  ),
  keepalive: Flag.Int("keepalive").pipe(
    Flag.withAlias("k"),
    Flag.withDescription("Keepalive in seconds, 0 disables (default 60)"),
    Flag.withDefault(60)
  ),
  connectTimeout: Flag.Int("connect-timeout").pipe(
    Flag.withDescription("Seconds to wait for CONNACK (default 30)"),
    Flag.withDefault(30)
  ),
  willTopic: Flag.String("will-topic").pipe(Flag.withDescription("Topic of the will"), Flag.optional),
  willPayload: Flag.String("will-payload").pipe(Flag.withDescription("Message of the will"), Flag.optional),
  willQos: Flag.Int("will-qos").pipe(Flag.withDescription("QoS of the will (default 0)"), Flag.withDefault(0)),
  willRetain: Flag.Boolean("will-retain").pipe(
    Flag.withDescription("Retain the will"),
    Flag.withoutNegation,
    Flag.withDefault(false)
  ),
  disableCleanSession: Flag.Boolean("disable-clean-session").pipe(
    Flag.withAlias("c"),
    Flag.withDescription("Keep the session at the broker (needs -i)"),
    Flag.withoutNegation,
    Flag.withDefault(false)
  ),
  debug: Flag.Boolean("debug").pipe(
    Flag.withAlias("d"),
    Flag.withDescription("Print debug logs (connection events, packet ids) to stderr"),
    Flag.withoutNegation,
    Flag.withDefault(false)
  )
} as const

/**
 * The parsed connection flags.
 *
 * @since 0.1.0
 */
export interface Flags {
  readonly url: Option.Option<string>
  readonly host: Option.Option<string>
  readonly port: Option.Option<number>
  readonly id: Option.Option<string>
  readonly username: Option.Option<string>
  readonly password: Option.Option<Redacted.Redacted<string>>
  readonly cafile: Option.Option<string>
  readonly cert: Option.Option<string>
  readonly key: Option.Option<string>
  readonly insecure: boolean
  readonly keepalive: number
  readonly connectTimeout: number
  readonly willTopic: Option.Option<string>
  readonly willPayload: Option.Option<string>
  readonly willQos: number
  readonly willRetain: boolean
  readonly disableCleanSession: boolean
  readonly debug: boolean
}

/**
 * Whether the flags name a broker (`--url`, `-h` or `-p`); `bench` starts an embedded one when they do not.
 *
 * @since 0.1.0
 */
export const namesBroker = (flags: Flags): boolean =>
  Option.isSome(flags.url) || Option.isSome(flags.host) || Option.isSome(flags.port)

const usesTls = (flags: Flags): boolean =>
  Option.isSome(flags.cafile) || Option.isSome(flags.cert) || flags.insecure

/**
 * The broker URL: `--url`, or built from `-h`/`-p` (`mqtts://` when a TLS flag is given).
 *
 * @since 0.1.0
 */
export const brokerUrl = (flags: Flags): Effect.Effect<string, UsageError> => {
  if (Option.isSome(flags.url)) {
    return Option.isSome(flags.host) || Option.isSome(flags.port)
      ? Effect.fail(new UsageError({ message: "give the broker as --url or as -h/-p, not both" }))
      : Effect.succeed(flags.url.value)
  }
  const tls = usesTls(flags)
  const host = Option.getOrElse(flags.host, () => "localhost")
  const port = Option.getOrElse(flags.port, () => (tls ? 8883 : 1883))
  const bracketed = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host
  return Effect.succeed(`${tls ? "mqtts" : "mqtt"}://${bracketed}:${port}`)
}

/**
 * A URL as printed: a password in it is masked.
 *
 * @since 0.1.0
 */
export const displayUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password === "") return url
    parsed.password = "***"
    return parsed.toString()
  } catch {
    return url
  }
}

const readFile = (fs: FileSystem.FileSystem, flag: string, path: string) =>
  fs.readFile(path).pipe(
    Effect.mapError((error) => new UsageError({ message: `cannot read --${flag} ${path}: ${error.message}` }))
  )

/**
 * Turns the flags into client options (reading the TLS files); `overrides` wins.
 *
 * @since 0.1.0
 */
export const options = Effect.fnUntraced(function*(
  flags: Flags,
  overrides: Partial<MqttClient.Options> = {}
) {
  const fs = yield* FileSystem.FileSystem
  const url = overrides.url ?? (yield* brokerUrl(flags))
  if (flags.disableCleanSession && Option.isNone(flags.id)) {
    return yield* new UsageError({ message: "-c (--disable-clean-session) needs a client id (-i)" })
  }
  if (Option.isNone(flags.willTopic) && (Option.isSome(flags.willPayload) || flags.willRetain)) {
    return yield* new UsageError({ message: "--will-payload and --will-retain need --will-topic" })
  }
  if (Option.isSome(flags.key) !== Option.isSome(flags.cert)) {
    return yield* new UsageError({ message: "--cert and --key go together" })
  }
  const ca = Option.isSome(flags.cafile) ? yield* readFile(fs, "cafile", flags.cafile.value) : undefined
  const cert = Option.isSome(flags.cert) ? yield* readFile(fs, "cert", flags.cert.value) : undefined
  const key = Option.isSome(flags.key) ? yield* readFile(fs, "key", flags.key.value) : undefined
  const tls: MqttClient.Options["tls"] = usesTls(flags)
    ? {
      ...(ca !== undefined ? { ca } : {}),
      ...(cert !== undefined ? { cert } : {}),
      ...(key !== undefined ? { key } : {}),
      ...(flags.insecure ? { verify: "none" as const } : {})
    }
    : undefined
  const result: MqttClient.Options = {
    url,
    ...(Option.isSome(flags.id) ? { clientId: flags.id.value } : {}),
    ...(Option.isSome(flags.username) ? { username: flags.username.value } : {}),
    ...(Option.isSome(flags.password) ? { password: flags.password.value } : {}),
    cleanSession: !flags.disableCleanSession,
    keepalive: flags.keepalive,
    connectTimeout: `${flags.connectTimeout} seconds`,
    disconnectTimeout: "5 seconds",
    ...(tls !== undefined ? { tls } : {}),
    ...(Option.isSome(flags.willTopic)
      ? {
        will: {
          topic: flags.willTopic.value,
          payload: Option.getOrElse(flags.willPayload, () => ""),
          qos: flags.willQos as Packet.QoS,
          retain: flags.willRetain
        }
      }
      : {}),
    ...overrides
  }
  return result
})

/**
 * Connects a client for the current scope with the CLI's reconnect policy; with `-d`, logs its lifecycle events.
 *
 * @since 0.1.0
 */
export const connect = (
  options: MqttClient.Options
): Effect.Effect<MqttClient.MqttClient["Service"], MqttError.MqttError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* Effect.logDebug(`connecting to ${displayUrl(options.url)}`)
    // The first connection is tried once, so an unreachable broker fails at once; after that a drop is retried
    // every second (as mosquitto_sub does).
    const client = yield* MqttClient.make({ reconnect: Schedule.spaced("1 second"), retryFirstConnect: false, ...options })
    const status = yield* SubscriptionRef.get(client.status)
    yield* Effect.logDebug(
      `connected: ${status._tag === "Connected" ? `sessionPresent ${status.sessionPresent}` : status._tag}`
    )
    const level = yield* References.MinimumLogLevel
    if (level === "Debug" || level === "Trace" || level === "All") {
      yield* client.events.pipe(
        Stream.runForEach((event) => Effect.logDebug(`event ${describeEvent(event)}`)),
        Effect.forkScoped
      )
    }
    return client
  })

const packetIdText = (packetId: number | undefined) => (packetId === undefined ? "" : `, packet id ${packetId}`)

const describeEvent = (event: MqttClient.Event): string => {
  switch (event._tag) {
    case "Connected":
      return `Connected (sessionPresent ${event.sessionPresent})`
    case "Disconnected":
    case "Offline":
      return `${event._tag}: ${event.error.reason._tag}: ${event.error.message}`
    case "Reconnecting":
      return `Reconnecting (attempt ${event.attempt})`
    case "Pong":
      return `Pong (${event.rttMillis} ms)`
    case "Published":
      return `Published ${event.topic} QoS ${event.qos}${packetIdText(event.packetId)}`
    default:
      return event._tag
  }
}

/**
 * Logging for a command: always to stderr (stdout carries messages); debug level with `-d`.
 *
 * @since 0.1.0
 */
export const logging = (debug: boolean): Layer.Layer<never> =>
  Layer.mergeAll(
    Layer.succeed(Logger.LogToStderr, true),
    debug ? Layer.succeed(References.MinimumLogLevel, "Debug") : Layer.empty
  )
