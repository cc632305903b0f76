/**
 * Node transports: the `Socket.Socket` a resolved URL asks for — TCP (`mqtt://`, `tcp://`) and TLS (`mqtts://`,
 * `ssl://`, `tls://`) from `NetSocket`, and WebSocket (`ws://`, `wss://`) over the `ws`
 * package with the `mqtt` subprotocol [MQTT-6.0.0-3] and the same TLS options as `mqtts://`.
 *
 * A `Socket.Socket` is a dialer: every acquisition of its reader opens a new connection, so one transport serves
 * every reconnect. This module only builds sockets; it does not speak MQTT (see `Connection`). TLS verification is on
 * unless `tls.verify` is `"none"`, in which case a warning is logged once per socket.
 *
 * @since 0.1.0
 */
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { WebSocket } from "@effect/platform-node/NodeWS"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Socket from "effect/socket/Socket"
import * as MqttError from "../Errors/MqttError.ts"
import * as ConnectOptions from "./ConnectOptions.ts"
import * as Connection from "./Connection.ts"
import * as NetSocket from "./NetSocket.ts"

type Pem = string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined

const toPem = (value: Pem): string | Buffer | Array<string | Buffer> | undefined => {
  if (value === undefined) return undefined
  const one = (v: string | Uint8Array) => (typeof v === "string" ? v : Buffer.from(v))
  return typeof value === "string" || value instanceof Uint8Array ? one(value) : value.map(one)
}

const plain = <A>(value: A | Redacted.Redacted<A> | undefined): A | undefined =>
  value === undefined ? undefined : Redacted.isRedacted(value) ? Redacted.value(value) : value

/**
 * The Node TLS options for resolved options: CA, client certificate and key (with passphrase), SNI for host names
 * (never for IP literals, which SNI does not allow), ALPN, and verification.
 *
 * @since 0.1.0
 */
export const tlsConnectionOptions = (
  resolved: ConnectOptions.Resolved
): Effect.Effect<Tls.ConnectionOptions, MqttError.MqttError> =>
  Effect.suspend(() => {
    const tls = resolved.tls ?? {}
    const key = plain(tls.key)
    const passphrase = plain(tls.passphrase)
    const servername = tls.servername ?? (Net.isIP(resolved.host) === 0 ? resolved.host : undefined)
    const contextOptions: Tls.SecureContextOptions = {
      ...(tls.ca !== undefined ? { ca: toPem(tls.ca) } : {}),
      ...(tls.cert !== undefined ? { cert: toPem(tls.cert) } : {}),
      ...(key !== undefined ? { key: typeof key === "string" ? key : Buffer.from(key) } : {}),
      ...(passphrase !== undefined ? { passphrase } : {})
    }
    // Built once, up front: a bad certificate, key or passphrase is a configuration error, not a connection error.
    return Effect.map(
      Effect.try({
        try: () => Tls.createSecureContext(contextOptions),
        catch: (cause) =>
          MqttError.make(
            new MqttError.BadMqttOption({
              option: "tls",
              value: "(certificates)",
              detail: `cannot load the TLS certificates or key: ${errorText(cause)}`
            })
          )
      }),
      (secureContext): Tls.ConnectionOptions => ({
        secureContext,
        ...(servername !== undefined ? { servername } : {}),
        ...(tls.alpnProtocols !== undefined ? { ALPNProtocols: [...tls.alpnProtocols] } : {}),
        rejectUnauthorized: tls.verify !== "none"
      })
    )
  })

const errorText = (cause: unknown): string => {
  if (typeof cause !== "object" || cause === null) return String(cause)
  const { code, message } = cause as { code?: unknown; message?: unknown }
  const text = typeof message === "string" ? message : String(cause)
  return typeof code === "string" && !text.includes(code) ? `${code}: ${text}` : text
}

/** Random bytes are only needed to generate a client id. */
const noRandom = new Uint8Array(6)

const warnUnverified = (resolved: ConnectOptions.Resolved) =>
  resolved.tls?.verify === "none"
    ? Effect.logWarning(`TLS certificate verification is off for ${resolved.url} (tls.verify: "none")`)
    : Effect.void

/**
 * Builds the socket for resolved options, by transport.
 *
 * @since 0.1.0
 */
export const make = (resolved: ConnectOptions.Resolved): Effect.Effect<Socket.Socket, MqttError.MqttError> =>
  Effect.flatMap(warnUnverified(resolved), () => {
    switch (resolved.transport) {
      case "tcp":
        return Effect.succeed(NetSocket.make({ transport: "tcp", host: resolved.host, port: resolved.port }))
      case "tls":
        return Effect.flatMap(
          tlsConnectionOptions(resolved),
          (tls) => Effect.succeed(NetSocket.make({ ...tls, transport: "tls", host: resolved.host, port: resolved.port }))
        )
      case "ws":
      case "wss":
        return Effect.flatMap(
          resolved.transport === "wss" ? tlsConnectionOptions(resolved) : Effect.succeed({}),
          (tls) => {
            const headers = resolved.wsHeaders !== undefined ? { headers: { ...resolved.wsHeaders } } : {}
            return Socket.makeWebSocket(resolved.wsUrl!, { protocols: ["mqtt"] }).pipe(
              Effect.provideService(
                Socket.WebSocketConstructor,
                (url, protocols) =>
                  new WebSocket(url, protocols as string | Array<string>, {
                    ...tls,
                    ...headers,
                    perMessageDeflate: false
                  }) as unknown as globalThis.WebSocket
              )
            )
          }
        )
    }
  })

/**
 * The Connection service for a broker URL, over the Node transport the URL selects. Fails with `MqttError` when the
 * options are invalid (`BadProtocol`, `BadMqttOption`, ...); dialing happens at each `connect`.
 *
 * @since 0.1.0
 */
export const layerConnection = (
  options: ConnectOptions.ConnectOptions
): Layer.Layer<Connection.Connection, MqttError.MqttError> =>
  Layer.effect(Connection.Connection)(
    Effect.gen(function*() {
      const resolved = yield* Effect.fromResult(ConnectOptions.resolve(options, options.clientId === undefined ? Crypto.getRandomValues(new Uint8Array(6)) : noRandom))
      const socket = yield* make(resolved)
      return Connection.make(socket, resolved)
    })
  )
