/**
 * Child-process plumbing for the broker harness: spawn a process with its output captured in a bounded in-memory log
 * (optionally teed to a file), wait for it to exit, and terminate it by PID (SIGTERM, then SIGKILL after a bounded
 * wait). Every process spawned here is also SIGKILLed if the test process exits while it still runs.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/** A process could not be spawned. */
export class SpawnError extends Data.TaggedError("SpawnError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** Captured output of one or more processes, newest kept when over `maxChars`. */
export interface LogBuffer {
  readonly append: (chunk: Buffer | string) => void
  readonly text: () => string
}

export const makeLogBuffer = (options: { readonly file?: string; readonly maxChars?: number } = {}): LogBuffer => {
  const maxChars = options.maxChars ?? 1_000_000
  let text = ""
  return {
    append: (chunk) => {
      const s = chunk.toString()
      text = text.length + s.length > maxChars ? (text + s).slice(-maxChars) : text + s
      if (options.file !== undefined) fs.appendFileSync(options.file, s)
    },
    text: () => text
  }
}

const running = new Set<ChildProcess>()
let exitHookInstalled = false

const track = (child: ChildProcess): void => {
  running.add(child)
  child.once("exit", () => running.delete(child))
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.once("exit", () => {
      for (const orphan of running) orphan.kill("SIGKILL")
    })
  }
}

/** Whether the process has exited (its PID is reaped once this is true). */
export const hasExited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null

/** Spawns `command`, resolving once the OS has started it; stdout and stderr go to `logs`. */
export const spawnLogged = (
  command: string,
  args: ReadonlyArray<string>,
  logs: LogBuffer
): Effect.Effect<ChildProcess, SpawnError> =>
  Effect.callback<ChildProcess, SpawnError>((resume) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] })
    child.stdout?.on("data", logs.append)
    child.stderr?.on("data", logs.append)
    child.once("spawn", () => {
      track(child)
      resume(Effect.succeed(child))
    })
    child.once("error", (cause) => resume(Effect.fail(new SpawnError({ message: `cannot spawn ${command}`, cause }))))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** Completes when the process has exited. */
export const waitExit = (child: ChildProcess): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (hasExited(child)) return resume(Effect.void)
    const onExit = () => resume(Effect.void)
    child.once("exit", onExit)
    return Effect.sync(() => child.off("exit", onExit))
  })

/**
 * Stops the process: `signal` (default SIGTERM), then SIGKILL if it is still alive after `grace`. Completes once it
 * has exited, or dies if even SIGKILL did not end it within another `grace`.
 */
export const terminate = (
  child: ChildProcess,
  options: { readonly signal?: NodeJS.Signals; readonly grace?: Duration.Input } = {}
): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (hasExited(child)) return
    const grace = options.grace ?? Duration.seconds(5)
    child.kill(options.signal ?? "SIGTERM")
    if (Option.isSome(yield* Effect.timeoutOption(waitExit(child), grace))) return
    child.kill("SIGKILL")
    if (Option.isSome(yield* Effect.timeoutOption(waitExit(child), grace))) return
    return yield* Effect.die(new Error(`process ${child.pid} survived SIGKILL`))
  })
