/**
 * Node child processes for scenarios that must measure or kill a client in a process of its own: `spawnNode` runs a
 * TypeScript file of this repository with the same Node and the `@effect-mqtt/source` condition, as a scoped
 * resource. The child reports by printing JSON objects, one per line, on stdout (`report` writes one); the parent
 * waits for them (`awaitMessage`, bounded), reads the rest of the output for diagnostics, and can kill the child with
 * any signal (SIGKILL for a crash). Closing the scope SIGKILLs a child still running, by its PID, and every child is
 * also killed if the parent process exits first.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { bounded } from "../../test/utils/clients.ts"
import { hasExited, terminate, waitExit } from "../../test/utils/childProcess.ts"

/** The repository root (the children run from it). */
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

/** A JSON object a child printed. */
export type Message = { readonly event: string } & Readonly<Record<string, unknown>>

export interface NodeChild {
  readonly pid: number
  readonly process: ChildProcess
  /** Every JSON line printed so far, in order. */
  readonly messages: ReadonlyArray<Message>
  /** The rest of stdout and all of stderr (the newest 64 KiB). */
  readonly output: () => string
  /** Waits for a message with this `event` (and `predicate`), bounded; returns it. */
  readonly awaitMessage: (
    event: string,
    timeoutMillis: number,
    predicate?: (message: Message) => boolean
  ) => Effect.Effect<Message>
  /** Waits for the process to exit, bounded; returns its code and signal. */
  readonly awaitExit: (
    timeoutMillis: number
  ) => Effect.Effect<{ readonly code: number | null; readonly signal: string | null }>
  /** Sends a signal (SIGKILL: a crash) and waits for the exit. */
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
}

const running = new Set<ChildProcess>()
let hooked = false

/** Prints one report line from inside a child. */
export const report = (message: Message): void => {
  process.stdout.write(`${JSON.stringify(message)}\n`)
}

/** Runs `script` (relative to the repository root) in a child Node process for the current scope. */
export const spawnNode = (
  script: string,
  args: ReadonlyArray<string>,
  options: {
    readonly env?: Readonly<Record<string, string>> | undefined
    /** Called with every stdout line that is not a JSON report, as it comes. */
    readonly onLine?: ((line: string) => void) | undefined
    /** Extra Node options (e.g. `--expose-gc`), before the script. */
    readonly nodeOptions?: ReadonlyArray<string> | undefined
  } = {}
): Effect.Effect<NodeChild, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<NodeChild, Error>((resume) => {
      const child = spawn(
        process.execPath,
        ["--conditions=@effect-mqtt/source", ...(options.nodeOptions ?? []), path.resolve(root, script), ...args],
        { cwd: root, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env } }
      )
      const messages: Array<Message> = []
      const waiters = new Set<() => void>()
      const notify = () => {
        for (const wake of [...waiters]) wake()
      }
      let output = ""
      const keep = (text: string) => {
        output = (output + text).slice(-65_536)
      }
      let partial = ""
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        const lines = (partial + chunk).split("\n")
        partial = lines.pop()!
        for (const line of lines) {
          if (line.startsWith("{")) {
            try {
              messages.push(JSON.parse(line) as Message)
              continue
            } catch {
              // Not a report: kept as output.
            }
          }
          keep(`${line}\n`)
          options.onLine?.(line)
        }
        notify()
      })
      child.stderr!.setEncoding("utf8").on("data", keep)
      child.on("exit", () => {
        running.delete(child)
        notify()
      })
      child.once("error", (cause) => resume(Effect.fail(new Error(`cannot spawn ${script}: ${cause.message}`))))
      child.once("spawn", () => {
        running.add(child)
        if (!hooked) {
          hooked = true
          process.once("exit", () => {
            for (const orphan of running) orphan.kill("SIGKILL")
          })
        }
        const until = <A>(what: () => string, check: () => A | undefined, timeoutMillis: number) =>
          bounded(
            Effect.callback<A>((done) => {
              const test = () => {
                const found = check()
                if (found === undefined) return
                waiters.delete(test)
                done(Effect.succeed(found))
              }
              waiters.add(test)
              test()
              return Effect.sync(() => {
                waiters.delete(test)
              })
            }),
            what,
            timeoutMillis
          )
        const handle: NodeChild = {
          pid: child.pid!,
          process: child,
          messages,
          output: () => output,
          awaitMessage: (event, timeoutMillis, predicate) =>
            until(
              () =>
                `a "${event}" report from ${script} (exit ${child.exitCode ?? child.signalCode ?? "none"}); ` +
                `output:\n${output}`,
              () => messages.find((m) => m.event === event && (predicate === undefined || predicate(m))),
              timeoutMillis
            ),
          awaitExit: (timeoutMillis) =>
            until(
              () => `${script} to exit; output:\n${output}`,
              () => (hasExited(child) ? { code: child.exitCode, signal: child.signalCode } : undefined),
              timeoutMillis
            ),
          kill: (signal) =>
            Effect.suspend(() => {
              if (hasExited(child)) return Effect.void
              child.kill(signal)
              return waitExit(child)
            })
        }
        resume(Effect.succeed(handle))
      })
    }),
    (handle) => terminate(handle.process, { signal: "SIGKILL" })
  )
