/**
 * Real Mosquitto brokers for tests, as scoped resources: `start(options)` writes a generated config into a fresh temp
 * directory, spawns `mosquitto -c` with a plain TCP listener on 127.0.0.1 plus the requested TLS, mutual-TLS,
 * password and IPv6 (::1) listeners (each on its own free port unless fixed), waits until every listener accepts TCP
 * connections and returns a handle that can stop, kill and restart the broker on the same ports. Closing the scope
 * stops the process by PID (SIGTERM, then SIGKILL) and removes the temp directory. Never touches port 1883.
 */
import { execFile } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import { hasExited, type LogBuffer, makeLogBuffer, spawnLogged, terminate, waitExit } from "./childProcess.ts"
import { withLiveClock } from "./live.ts"
import { type ListenerConfig, renderConfig } from "./MosquittoConfig.ts"
import { canConnect, freePort, freePortOn } from "./ports.ts"
import * as Tls from "./tls.ts"

/** Why a broker could not be started; `message` includes the broker's output when it ran. */
export class MosquittoError extends Data.TaggedError("MosquittoError")<{
  readonly reason: "NotInstalled" | "Setup" | "PortInUse" | "Exited" | "Timeout"
  readonly message: string
  readonly cause?: unknown
}> {}

export interface MosquittoOptions {
  /** Fixed port of the plain listener (default: a free port), e.g. to replace a stopped broker on the same port. */
  readonly port?: number
  /** Server-authenticated TLS listener on 127.0.0.1. */
  readonly tls?: boolean | { readonly port?: number }
  /** Mutual-TLS listener (`require_certificate true`); `useIdentityAsUsername` makes the client cert CN the user. */
  readonly mtls?: boolean | { readonly port?: number; readonly useIdentityAsUsername?: boolean }
  /** Listener that refuses anonymous clients and checks a `mosquitto_passwd` file made from `users`. */
  readonly auth?: { readonly users: Readonly<Record<string, string>>; readonly port?: number }
  /** Plain listener on ::1. */
  readonly ipv6?: boolean | { readonly port?: number }
  /** Server certificate, its key and the CA clients are checked against (default: the committed fixtures). */
  readonly certificates?: { readonly ca: string; readonly cert: string; readonly key: string }
  /** `true`: a persistence dir inside the temp dir (kept across `restart`); `{ dir }`: that dir (left in place). */
  readonly persistence?: boolean | { readonly dir: string }
  /** Default 1000 (Mosquitto's own default, 20, drops QoS 2 traffic beyond it). */
  readonly maxInflightMessages?: number
  /** Default 100000. */
  readonly maxQueuedMessages?: number
  /** Contents of an ACL file applied to every listener. */
  readonly acl?: string
  /** Extra global config lines (security settings belong to listeners: `per_listener_settings true`). */
  readonly extraConfig?: ReadonlyArray<string>
  /** `log_type all` (every packet) instead of errors, warnings, notices and information. */
  readonly verbose?: boolean
  /** Also append the broker's output to this file. */
  readonly logFile?: string
  /** Bound on waiting for every listener to accept connections, per (re)start. Default 10 seconds. */
  readonly startTimeout?: Duration.Input
}

export interface MosquittoBroker {
  readonly host: "127.0.0.1"
  readonly port: number
  /** `mqtt://127.0.0.1:PORT` */
  readonly url: string
  readonly tlsPort?: number
  /** `mqtts://localhost:PORT` (the fixture server certificate names localhost, 127.0.0.1 and ::1). */
  readonly tlsUrl?: string
  readonly mtlsPort?: number
  readonly mtlsUrl?: string
  readonly authPort?: number
  readonly authUrl?: string
  readonly ipv6Port?: number
  /** `mqtt://[::1]:PORT` */
  readonly ipv6Url?: string
  /** PID of the current (or, once stopped, the last) broker process. */
  readonly pid: number
  /** The private temp directory holding the config, certificates and password file. */
  readonly dir: string
  readonly configFile: string
  /** Whether the broker process is running. */
  readonly isRunning: Effect.Effect<boolean>
  /** Stops the broker gracefully (SIGTERM, SIGKILL after 5 s); completes once the process is gone. */
  readonly stop: Effect.Effect<void>
  /** Kills the broker with SIGKILL (a crash: nothing is persisted); completes once the process is gone. */
  readonly kill: Effect.Effect<void>
  /** Stops the broker if it runs, then starts it again with the same config and ports and waits until ready. */
  readonly restart: Effect.Effect<void, MosquittoError>
  /** Everything the broker processes printed so far (bounded, newest kept). */
  readonly logs: Effect.Effect<string>
}

const isExecutable = (file: string): boolean => {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

const findExecutable = (name: string, fallbacks: ReadonlyArray<string>): string | undefined => {
  const dirs = (process.env.PATH ?? "").split(path.delimiter).filter((dir) => dir.length > 0)
  return [...dirs.map((dir) => path.join(dir, name)), ...fallbacks].find(isExecutable)
}

/** Path of the `mosquitto` binary: on PATH, else /usr/sbin/mosquitto; undefined when absent. */
export const binaryPath = (): string | undefined =>
  findExecutable("mosquitto", ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"])

/** Path of `mosquitto_passwd` (Debian ships it in the `mosquitto` package); undefined when absent. */
export const passwdPath = (): string | undefined =>
  findExecutable("mosquitto_passwd", ["/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd"])

/** Whether a Mosquitto binary is installed. */
export const isAvailable = (): boolean => binaryPath() !== undefined

/** Whether `mosquitto_passwd` is installed (needed by the `auth` listener). */
export const isPasswdAvailable = (): boolean => passwdPath() !== undefined

const setupError = (message: string) => (cause: unknown) =>
  new MosquittoError({ reason: "Setup", message: `${message}: ${String(cause)}`, cause })

const sync = <A>(message: string, f: () => A): Effect.Effect<A, MosquittoError> =>
  Effect.try({ try: f, catch: setupError(message) })

// Mosquitto started as root drops privileges to `mosquitto`: whatever it reads must be world-readable (644 in 755).
const copyReadable = (from: string, dir: string, name: string): Effect.Effect<string, MosquittoError> =>
  sync(`cannot copy ${from}`, () => {
    const to = path.join(dir, name)
    fs.copyFileSync(from, to)
    fs.chmodSync(to, 0o644)
    return to
  })

const writeReadable = (file: string, text: string): Effect.Effect<string, MosquittoError> =>
  sync(`cannot write ${file}`, () => {
    fs.writeFileSync(file, text)
    fs.chmodSync(file, 0o644)
    return file
  })

const runPasswd = (args: ReadonlyArray<string>): Effect.Effect<void, MosquittoError> =>
  Effect.callback<void, MosquittoError>((resume) => {
    const bin = passwdPath()
    if (bin === undefined) {
      return resume(
        Effect.fail(
          new MosquittoError({
            reason: "NotInstalled",
            message: "mosquitto_passwd not found (Debian: apt-get install mosquitto); the auth listener needs it"
          })
        )
      )
    }
    execFile(bin, [...args], (error, _stdout, stderr) =>
      resume(error === null ? Effect.void : Effect.fail(setupError(`mosquitto_passwd failed: ${stderr}`)(error))))
  })

const makePasswordFile = Effect.fnUntraced(function*(file: string, users: Readonly<Record<string, string>>) {
  const entries = Object.entries(users)
  if (entries.length === 0) {
    return yield* new MosquittoError({ reason: "Setup", message: "auth listener needs at least one user" })
  }
  for (const [index, [user, password]] of entries.entries()) {
    yield* runPasswd(index === 0 ? ["-b", "-c", file, user, password] : ["-b", file, user, password])
  }
  return yield* sync(`cannot chmod ${file}`, () => {
    fs.chmodSync(file, 0o644)
    return file
  })
})

type ListenerKind = "plain" | "tls" | "mtls" | "auth" | "ipv6"
type Ports = Readonly<Partial<Record<ListenerKind, number>>> & { readonly plain: number }

const fixedPort = (option: boolean | { readonly port?: number } | undefined): number | undefined =>
  typeof option === "object" ? option.port : undefined

const wanted = (options: MosquittoOptions): ReadonlyArray<ListenerKind> =>
  (["plain", "tls", "mtls", "auth", "ipv6"] as const).filter((kind) =>
    kind === "plain" || (options[kind] !== undefined && options[kind] !== false)
  )

const fixedPorts = (options: MosquittoOptions): Partial<Record<ListenerKind, number>> => ({
  ...(options.port !== undefined ? { plain: options.port } : {}),
  ...(fixedPort(options.tls) !== undefined ? { tls: fixedPort(options.tls)! } : {}),
  ...(fixedPort(options.mtls) !== undefined ? { mtls: fixedPort(options.mtls)! } : {}),
  ...(options.auth?.port !== undefined ? { auth: options.auth.port } : {}),
  ...(fixedPort(options.ipv6) !== undefined ? { ipv6: fixedPort(options.ipv6)! } : {})
})

const choosePorts = Effect.fnUntraced(function*(options: MosquittoOptions) {
  const fixed = fixedPorts(options)
  const ports: Partial<Record<ListenerKind, number>> = {}
  for (const kind of wanted(options)) {
    ports[kind] = fixed[kind] ?? (kind === "ipv6" ? yield* freePortOn("::1") : yield* freePort)
  }
  return ports as Ports
}, Effect.mapError(setupError("cannot find a free port")))

const hostOf = (kind: ListenerKind): string => (kind === "ipv6" ? "::1" : "127.0.0.1")

interface Files {
  readonly dir: string
  readonly ca?: string
  readonly cert?: string
  readonly key?: string
  readonly passwordFile?: string
  readonly aclFile?: string
  readonly persistenceDir?: string
}

const prepareFiles = Effect.fnUntraced(function*(dir: string, options: MosquittoOptions) {
  const certs = options.certificates ?? { ca: Tls.paths.ca, cert: Tls.paths.serverCert, key: Tls.paths.serverKey }
  const needsTls = wanted(options).some((kind) => kind === "tls" || kind === "mtls")
  const tls = needsTls
    ? {
      ca: yield* copyReadable(certs.ca, dir, "ca.crt"),
      cert: yield* copyReadable(certs.cert, dir, "server.crt"),
      key: yield* copyReadable(certs.key, dir, "server.key")
    }
    : {}
  const passwordFile = options.auth === undefined
    ? undefined
    : yield* makePasswordFile(path.join(dir, "passwd"), options.auth.users)
  const aclFile = options.acl === undefined ? undefined : yield* writeReadable(path.join(dir, "acl"), options.acl)
  const persistence = options.persistence ?? false
  const persistenceDir = persistence === false
    ? undefined
    : yield* sync("cannot prepare the persistence dir", () => {
      const target = persistence === true ? path.join(dir, "persistence") : persistence.dir
      fs.mkdirSync(target, { recursive: true })
      fs.chmodSync(target, 0o777) // written by the unprivileged `mosquitto` user
      return target
    })
  const files: Files = {
    dir,
    ...tls,
    ...(passwordFile !== undefined ? { passwordFile } : {}),
    ...(aclFile !== undefined ? { aclFile } : {}),
    ...(persistenceDir !== undefined ? { persistenceDir } : {})
  }
  return files
})

const listenerOf = (kind: ListenerKind, port: number, files: Files, options: MosquittoOptions): ListenerConfig => {
  const tlsFiles = (requireCertificate: boolean, useIdentityAsUsername: boolean) => ({
    cafile: files.ca!,
    certfile: files.cert!,
    keyfile: files.key!,
    requireCertificate,
    useIdentityAsUsername
  })
  return {
    port,
    address: hostOf(kind),
    allowAnonymous: kind !== "auth",
    ...(kind === "auth" ? { passwordFile: files.passwordFile! } : {}),
    ...(files.aclFile !== undefined ? { aclFile: files.aclFile } : {}),
    ...(kind === "tls" ? { tls: tlsFiles(false, false) } : {}),
    ...(kind === "mtls"
      ? { tls: tlsFiles(true, typeof options.mtls === "object" && options.mtls.useIdentityAsUsername === true) }
      : {})
  }
}

const writeConfig = (configFile: string, ports: Ports, files: Files, options: MosquittoOptions) =>
  writeReadable(
    configFile,
    renderConfig({
      persistenceDir: files.persistenceDir,
      maxInflightMessages: options.maxInflightMessages ?? 1000,
      maxQueuedMessages: options.maxQueuedMessages ?? 100_000,
      verbose: options.verbose ?? false,
      extraConfig: options.extraConfig ?? [],
      listeners: wanted(options).map((kind) => listenerOf(kind, ports[kind]!, files, options))
    })
  )

const accepting = (ports: Ports): Effect.Effect<ReadonlyArray<string>> =>
  Effect.forEach(
    Object.entries(ports) as Array<[ListenerKind, number]>,
    ([kind, port]) =>
      canConnect(hostOf(kind), port, 500).pipe(Effect.map((accepts) => (accepts ? [`${hostOf(kind)}:${port}`] : []))),
    { concurrency: "unbounded" }
  ).pipe(Effect.map((found) => found.flat()))

/**
 * Spawns the broker and waits until every listener accepts TCP; on failure the process is gone. A port that already
 * accepts before the spawn fails at once: polling could not tell that listener from the broker's.
 */
const launch = (bin: string, configFile: string, ports: Ports, logs: LogBuffer, timeout: Duration.Input) =>
  Effect.gen(function*() {
    const busy = yield* accepting(ports)
    if (busy.length > 0) {
      return yield* new MosquittoError({
        reason: "PortInUse",
        message: `something already accepts connections on ${busy.join(", ")} (a broker left running?)`
      })
    }
    const allAccept = accepting(ports).pipe(Effect.map((found) => found.length === Object.keys(ports).length))
    logs.append(`--- ${bin} -c ${configFile} (${JSON.stringify(ports)}) ---\n`)
    const child = yield* spawnLogged(bin, ["-c", configFile], logs).pipe(
      Effect.mapError((error) => new MosquittoError({ reason: "Setup", message: error.message, cause: error.cause }))
    )
    const poll = Effect.gen(function*() {
      while (!(yield* allAccept)) yield* Effect.sleep(Duration.millis(20))
    })
    const died = Effect.suspend(() =>
      Effect.fail(
        new MosquittoError({
          reason: "Exited",
          message: `mosquitto exited during startup (code ${child.exitCode}, signal ${child.signalCode}). Output:\n${
            logs.text()
          }`
        })
      )
    )
    yield* Effect.raceFirst(poll, waitExit(child).pipe(Effect.andThen(died))).pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () =>
          Effect.suspend(() =>
            Effect.fail(
              new MosquittoError({
                reason: "Timeout",
                message: `mosquitto listeners ${JSON.stringify(ports)} not accepting connections after ${
                  Duration.format(Duration.fromInputUnsafe(timeout))
                }. Output:\n${logs.text()}`
              })
            )
          )
      }),
      Effect.onError(() => terminate(child, { signal: "SIGKILL" }))
    )
    return child
  })

/**
 * Starts a Mosquitto broker for the current scope. Fails with `MosquittoError` when the binary (or, for `auth`,
 * `mosquitto_passwd`) is missing or the broker does not come up; free ports that lose a race are re-chosen (3 tries).
 */
export const start = (options: MosquittoOptions = {}): Effect.Effect<MosquittoBroker, MosquittoError, Scope.Scope> =>
  withLiveClock(Effect.gen(function*() {
    const bin = binaryPath()
    if (bin === undefined) {
      return yield* new MosquittoError({
        reason: "NotInstalled",
        message: "mosquitto not found on PATH nor at /usr/sbin/mosquitto (Debian: apt-get install mosquitto)"
      })
    }
    const dir = yield* Effect.acquireRelease(
      sync("cannot create a temp dir", () => {
        const made = fs.mkdtempSync(path.join(os.tmpdir(), "effect-mqtt-mosquitto-"))
        fs.chmodSync(made, 0o755)
        return made
      }),
      (made) => Effect.sync(() => fs.rmSync(made, { recursive: true, force: true }))
    )
    const files = yield* prepareFiles(dir, options)
    const configFile = path.join(dir, "mosquitto.conf")
    const logs = makeLogBuffer(options.logFile !== undefined ? { file: options.logFile } : {})
    const timeout = options.startTimeout ?? Duration.seconds(10)
    const lock = yield* Semaphore.make(1)
    let current: ChildProcess | undefined

    yield* Effect.addFinalizer(() =>
      withLiveClock(Effect.suspend(() => (current === undefined ? Effect.void : terminate(current))))
    )

    // A free port can be taken by someone else before the broker binds it: then try again with fresh ports.
    const allFixed = wanted(options).every((kind) => fixedPorts(options)[kind] !== undefined)
    const lostPortRace = (error: MosquittoError, logStart: number) =>
      error.reason === "PortInUse" ||
      (error.reason === "Exited" && logs.text().slice(logStart).includes("Address already in use"))
    let ports: Ports | undefined
    for (let attempt = 1; current === undefined; attempt++) {
      ports = yield* choosePorts(options)
      yield* writeConfig(configFile, ports, files, options)
      const logStart = logs.text().length
      const launched = yield* Effect.result(launch(bin, configFile, ports, logs, timeout))
      if (launched._tag === "Success") current = launched.success
      else if (allFixed || attempt >= 3 || !lostPortRace(launched.failure, logStart)) return yield* launched.failure
    }
    const chosen = ports!
    let lastPid = current!.pid ?? 0

    const stopWith = (signal: NodeJS.Signals) =>
      lock.withPermits(1)(
        withLiveClock(Effect.suspend(() => (current === undefined ? Effect.void : terminate(current, { signal }))))
      )
    const restart = lock.withPermits(1)(withLiveClock(Effect.gen(function*() {
      if (current !== undefined) yield* terminate(current)
      logs.append("--- restart ---\n")
      current = yield* launch(bin, configFile, chosen, logs, timeout)
      lastPid = current.pid ?? 0
    })))

    const broker: MosquittoBroker = {
      host: "127.0.0.1",
      port: chosen.plain,
      url: `mqtt://127.0.0.1:${chosen.plain}`,
      ...(chosen.tls !== undefined ? { tlsPort: chosen.tls, tlsUrl: `mqtts://localhost:${chosen.tls}` } : {}),
      ...(chosen.mtls !== undefined ? { mtlsPort: chosen.mtls, mtlsUrl: `mqtts://localhost:${chosen.mtls}` } : {}),
      ...(chosen.auth !== undefined ? { authPort: chosen.auth, authUrl: `mqtt://127.0.0.1:${chosen.auth}` } : {}),
      ...(chosen.ipv6 !== undefined ? { ipv6Port: chosen.ipv6, ipv6Url: `mqtt://[::1]:${chosen.ipv6}` } : {}),
      get pid() {
        return lastPid
      },
      dir,
      configFile,
      isRunning: Effect.sync(() => current !== undefined && !hasExited(current)),
      stop: stopWith("SIGTERM"),
      kill: stopWith("SIGKILL"),
      restart,
      logs: Effect.sync(() => logs.text())
    }
    return broker
  }))
