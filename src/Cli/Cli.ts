/**
 * The `effect-mqtt` command line, built with `effect/cli`: the root command with its subcommands `pub`, `sub` and
 * `bench`, and `run`, which parses arguments, runs the command and turns every failure into one line on stderr and an
 * exit code (see `Exit`). The built-in `-h` and `-v` aliases of `--help` and `--version` are dropped, because
 * mosquitto's flags use `-h` for the host and `-v` for verbose; usage errors print on stderr only, so stdout carries
 * nothing but data. The commands use effect-mqtt's public API only (`../index.ts`), as an application would.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { CliConfig, CliError, CliOutput, Command, Flag, GlobalFlag } from "effect/cli"
import { MqttError } from "../index.ts"
import * as Bench from "./Bench.ts"
import * as Exit from "./Exit.ts"
import * as Pub from "./Pub.ts"
import * as Sub from "./Sub.ts"

/**
 * The version printed by `--version`.
 *
 * @since 0.1.0
 */
export const version = "0.1.0"

/**
 * The root command.
 *
 * @since 0.1.0
 */
export const command = Command.make("effect-mqtt").pipe(
  Command.withDescription("MQTT 3.1.1 from the command line, on effect-mqtt"),
  Command.withSubcommands([Pub.command, Sub.command, Bench.command])
)

const help = GlobalFlag.Action({
  flag: Flag.Boolean("help").pipe(Flag.withDescription("Show help information"), Flag.withDefault(false)),
  run: GlobalFlag.Help.run
})

const versionFlag = GlobalFlag.Action({
  flag: Flag.Boolean("version").pipe(Flag.withDescription("Show version information"), Flag.withDefault(false)),
  run: GlobalFlag.Version.run
})

/** Help and version on stdout; invalid invocations as `error:` lines on stderr, with a pointer to `--help`. */
const presenter: CliOutput.Presenter = {
  present: (event) =>
    Effect.gen(function*() {
      const formatter = yield* CliOutput.Formatter
      switch (event._tag) {
        case "Help":
          return yield* Console.log(formatter.formatHelpDoc(event.helpDoc))
        case "Version":
          return yield* Console.log(formatter.formatVersion(event.name, event.version))
        case "InvalidInvocation":
          for (const error of event.errors) yield* Console.error(`error: ${error.message}`)
          return yield* Console.error(`run "${event.commandPath.join(" ")} --help" for usage`)
      }
    })
}

/**
 * The CLI's configuration: built-in flags without `-h`/`-v`, the presenter, no colors in help.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<never> = Layer.mergeAll(
  CliConfig.layer({ builtIns: [help, versionFlag, GlobalFlag.Completions, GlobalFlag.LogLevel] }),
  CliOutput.layerPresenter(presenter),
  CliOutput.layer(CliOutput.defaultFormatter({ colors: false }))
)

const isFailure = (error: unknown): error is Exit.CliFailure =>
  MqttError.isMqttError(error) ||
  (typeof error === "object" && error !== null && "_tag" in error &&
    (error._tag === "UsageError" || error._tag === "Timeout" || error._tag === "Failure"))

/**
 * Runs the CLI on `args`; fails with `Exit.Exit` (already reported on stderr) when the process must exit non-zero.
 *
 * @since 0.1.0
 */
export const run = (args: ReadonlyArray<string>) =>
  Command.runWith(command, { version })(args).pipe(
    Effect.catchCause((cause): Effect.Effect<never, Exit.Exit> => {
      const error = Option.getOrUndefined(Cause.findErrorOption(cause))
      if (error !== undefined && CliError.isCliError(error)) {
        // Parse errors and a missing subcommand were presented already.
        return Effect.fail(new Exit.Exit({ code: Exit.ExitCode.Usage }))
      }
      if (error !== undefined && isFailure(error)) {
        const { code, line } = Exit.report(error)
        return Effect.andThen(Console.error(line), Effect.fail(new Exit.Exit({ code })))
      }
      if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
      return Effect.andThen(
        Console.error(`error: unexpected failure:\n${Cause.pretty(cause)}`),
        Effect.fail(new Exit.Exit({ code: Exit.ExitCode.Failure }))
      )
    }),
    Effect.provide(layer)
  )
