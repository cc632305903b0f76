/**
 * How the `effect-mqtt` CLI ends: its exit codes, the errors of the CLI itself (`UsageError`, `Timeout`), and the one
 * line each failure prints to stderr. An `MqttError` is printed as `error: <ReasonTag> (Paho <code> <PAHO_NAME>):
 * <message>` and mapped to an exit code by its reason: 2 for invalid input (bad flags, QoS, topic, options), 3 when
 * the broker or TLS refused us, 4 for a timeout, 1 for everything else (a broker that cannot be reached is a transport
 * error: 1). Owns nothing else: commands decide what fails.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Runtime from "effect/Runtime"
import { MqttError } from "../index.ts"

/**
 * The CLI's exit codes.
 *
 * @since 0.1.0
 */
export const ExitCode = {
  /** Everything worked. */
  Ok: 0,
  /** Anything else: the broker could not be reached or closed the connection, a subscription was refused, … */
  Failure: 1,
  /** Bad flags, or input effect-mqtt refuses before sending it (QoS, topic, client id, options). */
  Usage: 2,
  /** The broker refused the connection (CONNACK 1..5: bad credentials, not authorized) or TLS verification failed. */
  Refused: 3,
  /** No CONNACK in time, no answer to PINGREQ, or `-W` expired. */
  Timeout: 4
} as const

/** @since 0.1.0 */
export type ExitCode = typeof ExitCode[keyof typeof ExitCode]

/**
 * A usage error found by the CLI itself (flags that contradict each other, an unreadable file).
 *
 * @since 0.1.0
 */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/**
 * `-W` expired, or a wait the CLI bounds (bench) ran out.
 *
 * @since 0.1.0
 */
export class Timeout extends Data.TaggedError("Timeout")<{ readonly message: string }> {}

/**
 * A failure of the CLI that is not a usage error, an MQTT error or a timeout (bench lost messages, aedes missing).
 *
 * @since 0.1.0
 */
export class Failure extends Data.TaggedError("Failure")<{ readonly message: string }> {}

/**
 * What a command can fail with.
 *
 * @since 0.1.0
 */
export type CliFailure = MqttError.MqttError | UsageError | Timeout | Failure

/**
 * The end of a failed run, already reported on stderr: the process exits with `code`.
 *
 * @since 0.1.0
 */
export class Exit extends Data.TaggedError("Exit")<{ readonly code: number }> {
  override get [Runtime.errorExitCode](): number {
    return this.code
  }
  override get [Runtime.errorReported](): boolean {
    return true
  }
}

const usageReasons: ReadonlySet<MqttError.ReasonTag> = new Set<MqttError.ReasonTag>([
  "BadQos",
  "BadUtf8String",
  "TopicnameTruncated",
  "InvalidTopic",
  "BadStructure",
  "BadProtocol",
  "BadMqttOption",
  "WrongMqttVersion",
  "ZeroLenWillTopic"
])

/**
 * The exit code of an `MqttError`, by reason.
 *
 * @since 0.1.0
 */
export const exitCodeOf = (error: MqttError.MqttError): ExitCode => {
  const tag = error.reason._tag
  if (usageReasons.has(tag)) return ExitCode.Usage
  if (tag === "ConnectionRefused" || tag === "TlsVerificationFailed") return ExitCode.Refused
  if (tag === "ConnectTimeout" || tag === "KeepaliveTimeout") return ExitCode.Timeout
  return ExitCode.Failure
}

/**
 * The line printed to stderr for a failure, and the exit code.
 *
 * @since 0.1.0
 */
export const report = (error: CliFailure): { readonly line: string; readonly code: ExitCode } => {
  switch (error._tag) {
    case "MqttError":
      return {
        line: `error: ${error.reason._tag} (Paho ${error.code} ${error.pahoName}): ${error.message}`,
        code: exitCodeOf(error)
      }
    case "UsageError":
      return { line: `error: ${error.message}`, code: ExitCode.Usage }
    case "Timeout":
      return { line: `error: Timeout: ${error.message}`, code: ExitCode.Timeout }
    case "Failure":
      return { line: `error: ${error.message}`, code: ExitCode.Failure }
  }
}
