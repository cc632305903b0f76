/**
 * Child processes for the CLI and demo tests: `spawnNode(args)` starts this Node (process.execPath) with the
 * `@effect-mqtt/source` condition in the repository root, captures stdout and stderr, optionally feeds stdin, and kills
 * the process by PID (SIGKILL) when the scope closes if it still runs. `cli(args)` runs `src/Cli/bin.ts` to its end
 * within a bound and returns exit code and output; `Running.waitFor` waits (bounded) for text from a running process.
 * Every wait is bounded and dies with the captured output, so a failing test explains itself.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"

/** The repository root. */
export const root: string = fileURLToPath(new URL("../../", import.meta.url))

/** The CLI entry point, relative to the root. */
export const binPath = "src/Cli/bin.ts"

/** How a process ended, and everything it printed. */
export interface Output {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** A running process. */
export interface Running {
  readonly pid: number | undefined
  readonly stdout: () => string
  readonly stderr: () => string
  /** Completes when the process has exited, bounded by `timeout` (default 30 s); past it the test dies. */
  readonly exit: (timeout?: Duration.Input) => Effect.Effect<Output>
  /** Waits (bounded, default 30 s) until stdout or stderr contains `text`; dies if the process exits first. */
  readonly waitFor: (text: string, timeout?: Duration.Input) => Effect.Effect<void>
}

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

/** Starts `node --conditions=@effect-mqtt/source ...args` in the repository root for the current scope. */
export const spawnNode = (
  args: ReadonlyArray<string>,
  options: { readonly stdin?: string } = {}
): Effect.Effect<Running, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, ["--conditions=@effect-mqtt/source", ...args], {
        cwd: root,
        stdio: [options.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
        env: { ...process.env, NO_COLOR: "1" }
      })
      let stdout = ""
      let stderr = ""
      child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
      child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
      if (options.stdin !== undefined) {
        child.stdin?.on("error", () => {})
        child.stdin?.end(options.stdin)
      }
      const closed = new Promise<void>((resolve) => child.once("close", () => resolve()))
      return { child, closed, stdout: () => stdout, stderr: () => stderr }
    }),
    ({ child, closed }) =>
      exited(child)
        ? Effect.void
        : Effect.andThen(
          Effect.sync(() => child.kill("SIGKILL")),
          Effect.promise(() => closed).pipe(Effect.timeoutOption("5 seconds"))
        )
  ).pipe(
    Effect.map(({ child, closed, stdout, stderr }): Running => ({
      pid: child.pid,
      stdout,
      stderr,
      waitFor: (text, timeout = Duration.seconds(30)) => {
        const found = () => stdout().includes(text) || stderr().includes(text)
        const describe = (what: string) =>
          new Error(
            `${what} ${JSON.stringify(text)}: node ${args.join(" ")}\nstdout:\n${stdout()}\nstderr:\n${stderr()}`
          )
        return Effect.callback<void>((resume) => {
          const check = () => {
            if (found()) resume(Effect.void)
            else if (exited(child)) resume(Effect.die(describe("exited before printing")))
          }
          child.stdout?.on("data", check)
          child.stderr?.on("data", check)
          child.once("close", check)
          setImmediate(check)
          return Effect.sync(() => {
            child.stdout?.off("data", check)
            child.stderr?.off("data", check)
            child.off("close", check)
          })
        }).pipe(
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () =>
              Effect.die(describe(`nothing after ${Duration.format(Duration.fromInputUnsafe(timeout))} matched`))
          })
        )
      },
      exit: (timeout = Duration.seconds(30)) =>
        Effect.promise(() => closed).pipe(
          Effect.timeoutOption(timeout),
          Effect.flatMap((done) =>
            Option.isSome(done)
              ? Effect.succeed({ code: child.exitCode, signal: child.signalCode, stdout: stdout(), stderr: stderr() })
              : Effect.die(
                new Error(
                  `node ${args.join(" ")} still running after ${Duration.format(Duration.fromInputUnsafe(timeout))}` +
                    `\nstdout:\n${stdout()}\nstderr:\n${stderr()}`
                )
              )
          )
        )
    }))
  )

/** Runs the CLI to its end (bounded, default 30 s). */
export const cli = (
  args: ReadonlyArray<string>,
  options: { readonly stdin?: string; readonly timeout?: Duration.Input } = {}
): Effect.Effect<Output> =>
  Effect.scoped(
    Effect.flatMap(
      spawnNode([binPath, ...args], options.stdin === undefined ? {} : { stdin: options.stdin }),
      (running) => running.exit(options.timeout)
    )
  )

/** Starts the CLI in the background for the current scope. */
export const cliBackground = (args: ReadonlyArray<string>): Effect.Effect<Running, never, Scope.Scope> =>
  spawnNode([binPath, ...args])
