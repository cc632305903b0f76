/**
 * Connection options: what a user configures, their defaults, and `resolve`, which turns them into a validated
 * `Resolved` value or a typed error before any byte is sent.
 *
 * The broker is chosen by URL, as MQTT.js and Paho do: `mqtt://` and `tcp://` (TCP, port 1883), `mqtts://`, `ssl://`
 * and `tls://` (TLS, 8883), `ws://` (80) and `wss://` (443) with the path defaulting to `/mqtt`. `user:password@` in
 * the URL supplies credentials unless the options name them; IPv6 literals are written in brackets
 * (`mqtt://[::1]:1883`). Pure: no I/O, no clock; the generated client id takes its randomness as an argument.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as MqttError from "../Errors/MqttError.ts"
import type * as Packet from "../Codec/Packet.ts"
import * as Topic from "../Codec/Topic.ts"
import * as Validate from "../Codec/Validate.ts"
import { MAX_PACKET_SIZE } from "../Codec/Codec.ts"

/**
 * The transport a URL selects.
 *
 * @since 0.1.0
 */
export type Transport = "tcp" | "tls" | "ws" | "wss"

/**
 * TLS settings for `mqtts://`, `ssl://`, `tls://` and `wss://`.
 *
 * @since 0.1.0
 */
export interface TlsOptions {
  /** Trusted CA certificates (PEM); the system store when omitted. */
  readonly ca?: string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined
  /** Client certificate chain (PEM) for mutual TLS. */
  readonly cert?: string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined
  /** Client private key (PEM). */
  readonly key?: string | Uint8Array | Redacted.Redacted<string | Uint8Array> | undefined
  /** Passphrase of an encrypted client key. */
  readonly passphrase?: string | Redacted.Redacted<string> | undefined
  /** Server name for SNI and certificate verification; defaults to the URL host when it is a name. */
  readonly servername?: string | undefined
  /** ALPN protocols to offer. */
  readonly alpnProtocols?: ReadonlyArray<string> | undefined
  /**
   * `"required"` (default): the broker's certificate must chain to a trusted CA and match the host name.
   * `"none"`: accept any certificate (tests, self-signed development brokers); logged once as a warning.
   */
  readonly verify?: "required" | "none" | undefined
}

/**
 * The will message the broker publishes if the connection is lost without DISCONNECT (§3.1.2.5).
 *
 * @since 0.1.0
 */
export interface WillOptions {
  readonly topic: string
  readonly payload?: string | Uint8Array | undefined
  readonly qos?: Packet.QoS | undefined
  readonly retain?: boolean | undefined
}

/**
 * What a user configures for a connection.
 *
 * @since 0.1.0
 */
export interface ConnectOptions {
  /** The broker, e.g. `mqtt://localhost`, `mqtts://broker:8883`, `ws://host:8080/mqtt`. */
  readonly url: string
  /** Client identifier; generated (`effect-mqtt-` and 12 hex digits) when omitted. May be empty with a clean session. */
  readonly clientId?: string | undefined
  readonly username?: string | undefined
  readonly password?: string | Uint8Array | Redacted.Redacted<string | Uint8Array> | undefined
  /** Start a new session and discard any previous one (default `true`). */
  readonly cleanSession?: boolean | undefined
  readonly will?: WillOptions | undefined
  /** Keepalive in seconds, 0..65535 (default 60); 0 turns keepalive off. */
  readonly keepalive?: number | undefined
  /** How long to wait for CONNACK after dialing (default 30 seconds). */
  readonly connectTimeout?: Duration.Input | undefined
  /** How long to wait for any packet after a PINGREQ (default: the keepalive interval, at most 30 seconds). */
  readonly pingTimeout?: Duration.Input | undefined
  /** Largest incoming packet accepted, in bytes (default: the protocol maximum, 268,435,460). */
  readonly maximumPacketSize?: number | undefined
  readonly tls?: TlsOptions | undefined
  /** WebSocket handshake headers (ws/wss only). */
  readonly wsHeaders?: Readonly<Record<string, string>> | undefined
}

/**
 * Validated options with every default applied.
 *
 * @since 0.1.0
 */
export interface Resolved {
  /** The URL with any password removed, safe to log. */
  readonly url: string
  readonly transport: Transport
  /** Host without IPv6 brackets. */
  readonly host: string
  readonly port: number
  /** ws/wss: the full URL to dial, password removed. */
  readonly wsUrl: string | undefined
  readonly clientId: string
  readonly username: string | undefined
  readonly password: Redacted.Redacted<Uint8Array> | undefined
  readonly cleanSession: boolean
  readonly will: Packet.Will | undefined
  readonly keepalive: number
  readonly connectTimeout: Duration.Duration
  readonly pingTimeout: Duration.Duration
  readonly maximumPacketSize: number
  readonly tls: TlsOptions | undefined
  readonly wsHeaders: Readonly<Record<string, string>> | undefined
}

const schemes: Readonly<Record<string, { readonly transport: Transport; readonly port: number }>> = {
  "mqtt:": { transport: "tcp", port: 1883 },
  "tcp:": { transport: "tcp", port: 1883 },
  "mqtts:": { transport: "tls", port: 8883 },
  "ssl:": { transport: "tls", port: 8883 },
  "tls:": { transport: "tls", port: 8883 },
  "ws:": { transport: "ws", port: 80 },
  "wss:": { transport: "wss", port: 443 }
}

const encoder = new TextEncoder()

const badOption = (option: string, value: unknown, detail: string) =>
  MqttError.make(new MqttError.BadMqttOption({ option, value, detail }))

const redactedBytes = (value: string | Uint8Array | Redacted.Redacted<string | Uint8Array>): Redacted.Redacted<Uint8Array> => {
  const plain = Redacted.isRedacted(value) ? Redacted.value(value) : value
  return Redacted.make(typeof plain === "string" ? encoder.encode(plain) : plain)
}

const safeDecode = (component: string): string | undefined => {
  try {
    return decodeURIComponent(component)
  } catch {
    return undefined
  }
}

const toDuration = (option: string, input: Duration.Input): Result.Result<Duration.Duration, MqttError.MqttError> => {
  const duration = Duration.fromInput(input)
  if (Option.isNone(duration) || !Duration.isFinite(duration.value) || Duration.toMillis(duration.value) <= 0) {
    return Result.fail(badOption(option, input, "must be a positive, finite duration"))
  }
  return Result.succeed(duration.value)
}

/**
 * Makes a client id from 6 random bytes: `effect-mqtt-` and 12 hex digits (23 characters, the length every 3.1.1
 * broker must accept, [MQTT-3.1.3-5]).
 *
 * @since 0.1.0
 */
export const generateClientId = (random: Uint8Array): string => {
  let hex = ""
  for (let i = 0; i < 6; i++) hex += (random[i] ?? 0).toString(16).padStart(2, "0")
  return `effect-mqtt-${hex}`
}

/**
 * Validates options and applies defaults.
 *
 * **Details**: fails with `BadProtocol` for an unknown URL scheme, `BadMqttOption` for an invalid option (an empty
 * client id with a persistent session [MQTT-3.1.3-7], a password without a user name [MQTT-3.1.2-22], a keepalive
 * outside 0..65535), `ZeroLenWillTopic`, `BadQos` and the string errors of `Topic.validateString`.
 *
 * @param random 6 or more random bytes, used only when the client id must be generated.
 * @since 0.1.0
 */
export const resolve = (
  options: ConnectOptions,
  random: Uint8Array
): Result.Result<Resolved, MqttError.MqttError> => {
  if (typeof options !== "object" || options === null) {
    return Result.fail(badOption("options", options, "must be an object"))
  }
  if (typeof options.url !== "string") return Result.fail(badOption("url", options.url, "must be a string"))
  let url: URL
  try {
    url = new URL(options.url)
  } catch {
    return Result.fail(MqttError.make(new MqttError.BadProtocol({ url: options.url, detail: "not a valid URL" })))
  }
  const scheme = schemes[url.protocol]
  if (scheme === undefined) {
    return Result.fail(
      MqttError.make(
        new MqttError.BadProtocol({
          url: options.url,
          detail: `scheme ${url.protocol.slice(0, -1)} is not one of mqtt, tcp, mqtts, ssl, tls, ws, wss`
        })
      )
    )
  }
  const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname
  if (host === "") return Result.fail(MqttError.make(new MqttError.BadProtocol({ url: options.url, detail: "no host" })))
  const port = url.port === "" ? scheme.port : Number(url.port)

  // Credentials: explicit options win over the URL's user:password@.
  const urlUsername = url.username === "" ? undefined : safeDecode(url.username)
  const urlPassword = url.password === "" ? undefined : safeDecode(url.password)
  if ((url.username !== "" && urlUsername === undefined) || (url.password !== "" && urlPassword === undefined)) {
    return Result.fail(MqttError.make(new MqttError.BadProtocol({ url: "(redacted)", detail: "bad %-escape in credentials" })))
  }
  const username = options.username ?? urlUsername
  const passwordInput = options.password ?? urlPassword
  if (username !== undefined) {
    if (typeof username !== "string") return Result.fail(badOption("username", username, "must be a string"))
    const invalid = Topic.validateString("username", username) // [MQTT-3.1.3-11]
    if (invalid !== undefined) return Result.fail(invalid)
  }
  if (passwordInput !== undefined && username === undefined) {
    return Result.fail(badOption("password", "(redacted)", "a password needs a user name [MQTT-3.1.2-22]"))
  }
  const password = passwordInput === undefined ? undefined : redactedBytes(passwordInput)
  if (password !== undefined && Redacted.value(password).length > 65535) {
    return Result.fail(badOption("password", "(redacted)", "longer than 65535 bytes"))
  }
  url.password = ""
  const safeUrl = url.toString()

  const cleanSession = options.cleanSession ?? true
  if (typeof cleanSession !== "boolean") return Result.fail(badOption("cleanSession", cleanSession, "must be a boolean"))
  const clientId = options.clientId ?? generateClientId(random)
  if (typeof clientId !== "string") return Result.fail(badOption("clientId", clientId, "must be a string"))
  const invalidClientId = Validate.clientId(clientId, cleanSession) // [MQTT-3.1.3-7]
  if (invalidClientId !== undefined) return Result.fail(invalidClientId)

  const keepalive = options.keepalive ?? 60
  if (!Number.isInteger(keepalive) || keepalive < 0 || keepalive > 65535) {
    return Result.fail(badOption("keepalive", keepalive, "must be an integer number of seconds in 0..65535"))
  }

  let will: Packet.Will | undefined
  if (options.will !== undefined) {
    const w = options.will
    if (typeof w !== "object" || w === null) return Result.fail(badOption("will", w, "must be an object"))
    const payload = w.payload ?? new Uint8Array(0)
    will = {
      topic: w.topic,
      payload: typeof payload === "string" ? encoder.encode(payload) : payload,
      qos: w.qos ?? 0,
      retain: w.retain ?? false
    }
    const invalidWill = Validate.will(will)
    if (invalidWill !== undefined) return Result.fail(invalidWill)
  }

  const connectTimeout = toDuration("connectTimeout", options.connectTimeout ?? Duration.seconds(30))
  if (Result.isFailure(connectTimeout)) return Result.fail(connectTimeout.failure)
  const defaultPing = Duration.seconds(keepalive === 0 ? 30 : Math.min(keepalive, 30))
  const pingTimeout = toDuration("pingTimeout", options.pingTimeout ?? defaultPing)
  if (Result.isFailure(pingTimeout)) return Result.fail(pingTimeout.failure)

  const maximumPacketSize = options.maximumPacketSize ?? MAX_PACKET_SIZE
  if (!Number.isInteger(maximumPacketSize) || maximumPacketSize < 2 || maximumPacketSize > MAX_PACKET_SIZE) {
    return Result.fail(badOption("maximumPacketSize", maximumPacketSize, `must be an integer in 2..${MAX_PACKET_SIZE}`))
  }

  const secure = scheme.transport === "tls" || scheme.transport === "wss"
  if (options.tls !== undefined && !secure) {
    return Result.fail(badOption("tls", "(options)", `TLS options need an mqtts://, ssl://, tls:// or wss:// URL, not ${url.protocol}//`))
  }
  const verify = options.tls?.verify ?? "required"
  if (verify !== "required" && verify !== "none") {
    return Result.fail(badOption("tls.verify", verify, `must be "required" or "none"`))
  }
  if (options.tls?.key !== undefined && options.tls.cert === undefined) {
    return Result.fail(badOption("tls.key", "(redacted)", "a client key needs a client certificate (tls.cert)"))
  }

  let wsUrl: string | undefined
  if (scheme.transport === "ws" || scheme.transport === "wss") {
    const ws = new URL(safeUrl)
    ws.username = ""
    if (ws.pathname === "" || ws.pathname === "/") ws.pathname = "/mqtt"
    wsUrl = ws.toString()
  }

  return Result.succeed({
    url: safeUrl,
    transport: scheme.transport,
    host,
    port,
    wsUrl,
    clientId,
    username,
    password,
    cleanSession,
    will,
    keepalive,
    connectTimeout: connectTimeout.success,
    pingTimeout: pingTimeout.success,
    maximumPacketSize,
    tls: secure ? { ...options.tls, verify } : undefined,
    wsHeaders: options.wsHeaders
  })
}

/**
 * The CONNECT packet for resolved options ([MQTT-3.1.0-1]: the first packet on every connection).
 *
 * @since 0.1.0
 */
export const connectPacket = (resolved: Resolved): Packet.Connect => ({
  _tag: "Connect",
  protocolLevel: 4,
  clientId: resolved.clientId,
  cleanSession: resolved.cleanSession,
  keepalive: resolved.keepalive,
  ...(resolved.username !== undefined ? { username: resolved.username } : {}),
  ...(resolved.password !== undefined ? { password: Redacted.value(resolved.password) } : {}),
  ...(resolved.will !== undefined ? { will: resolved.will } : {})
})
