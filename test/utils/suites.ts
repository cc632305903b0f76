/**
 * Vitest suite gates for tests that need a real Mosquitto: `describeMosquitto` runs the suite when the broker (and,
 * if asked, `mosquitto_passwd`) is installed, skips it with a visible console warning when it is not, and under CI
 * (`process.env.CI` set) turns a missing broker into a failing test instead, so CI never silently skips.
 */
import { describe, it } from "vitest"
import * as Mosquitto from "./Mosquitto.ts"

export interface Requirements {
  /** The suite also needs `mosquitto_passwd` (the `auth` listener). */
  readonly passwd?: boolean
}

/** What a suite should do: run, skip (with a warning) or fail (CI), given what is missing. */
export type SuiteMode =
  | { readonly _tag: "Run" }
  | { readonly _tag: "Skip"; readonly missing: ReadonlyArray<string> }
  | { readonly _tag: "Fail"; readonly missing: ReadonlyArray<string> }

/** The decision behind `describeMosquitto`, exposed for tests. */
export const suiteMode = (
  available: { readonly mosquitto: boolean; readonly passwd: boolean },
  requirements: Requirements,
  env: Readonly<Record<string, string | undefined>>
): SuiteMode => {
  const missing = [
    ...(available.mosquitto ? [] : ["mosquitto"]),
    ...(requirements.passwd === true && !available.passwd ? ["mosquitto_passwd"] : [])
  ]
  if (missing.length === 0) return { _tag: "Run" }
  const ci = env.CI !== undefined && env.CI !== "" && env.CI !== "false" && env.CI !== "0"
  return ci ? { _tag: "Fail", missing } : { _tag: "Skip", missing }
}

/** Whether Mosquitto (and optionally mosquitto_passwd) is installed. */
export const mosquittoAvailable = (requirements: Requirements = {}): boolean =>
  Mosquitto.isAvailable() && (requirements.passwd !== true || Mosquitto.isPasswdAvailable())

/** `describe` for suites needing a real Mosquitto broker; see the module comment for skip/fail rules. */
export const describeMosquitto = (name: string, fn: () => void, requirements: Requirements = {}): void => {
  const mode = suiteMode(
    { mosquitto: Mosquitto.isAvailable(), passwd: Mosquitto.isPasswdAvailable() },
    requirements,
    process.env
  )
  switch (mode._tag) {
    case "Run":
      describe(name, fn)
      return
    case "Skip":
      console.warn(`[effect-mqtt] SKIPPING suite "${name}": ${mode.missing.join(", ")} not installed`)
      describe.skip(name, fn)
      return
    case "Fail":
      describe(name, () => {
        it("has a Mosquitto broker to test against", () => {
          throw new Error(`${mode.missing.join(", ")} not installed, and CI is set: refusing to skip "${name}"`)
        })
      })
      return
  }
}
