/**
 * What a reliability scenario is and what it reports: the `Scenario` record that `reliability/run.ts` runs (each in
 * its own child process, see `reliability/scenario.ts`) and that the tests in `test/Reliability` call with smaller
 * counts; the `Row` of the report table (scenario, messages sent, delivered, lost, duplicated at QoS 2, reconnects,
 * peak RSS); and the small helpers every scenario shares — a seeded random generator so that a failing run
 * reproduces from its printed seed, counting deliveries, and reading the process's peak resident memory.
 */
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** `quick`: small counts for CI (the whole report within a few minutes); `full`: the counts issue 8 asks for. */
export type Mode = "quick" | "full"

/** What a scenario is given. */
export interface Context {
  readonly mode: Mode
  /** Every random choice derives from it; printed with the results. */
  readonly seed: number
  /** Progress lines (the runner prints them as they come). */
  readonly log: (line: string) => void
}

/** One line of the report table. */
export interface Row {
  readonly scenario: string
  readonly sent: number
  /** Distinct messages received. */
  readonly delivered: number
  /** Messages published (and acknowledged, or still pending) that never arrived. */
  readonly lost: number
  /** Extra copies of QoS 2 messages; `undefined` when the scenario sends no QoS 2 ("n/a"). */
  readonly duplicated: number | undefined
  /** Connections re-established after a loss, summed over the scenario's clients. */
  readonly reconnects: number
  /** Peak resident memory of the measured process (the scenario's own process unless said otherwise). */
  readonly peakRssBytes: number
  readonly ok: boolean
}

/** What a scenario returns: its rows, whether it passed, and Markdown detail lines for RELIABILITY.md. */
export interface Outcome {
  readonly rows: ReadonlyArray<Row>
  readonly ok: boolean
  readonly details: ReadonlyArray<string>
}

/**
 * A scenario of the reliability report. `run` gets a scope (brokers, proxies and clients it starts close with it);
 * it fails only when it cannot run at all (no broker, say): a broken guarantee is a row with `ok: false`.
 */
export interface Scenario {
  /** Command-line name: `npm run reliability -- --only=NAME`. */
  readonly name: string
  /** Heading in RELIABILITY.md. */
  readonly title: string
  /** One sentence: the guarantee it checks. */
  readonly proves: string
  readonly run: (context: Context) => Effect.Effect<Outcome, unknown, Scope.Scope>
}

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

/** A seeded pseudo-random generator (mulberry32): the same seed gives the same choices. */
export interface Random {
  /** In [0, 1). */
  readonly next: () => number
  /** An integer in [min, max]. */
  readonly int: (min: number, max: number) => number
  readonly pick: <A>(items: ReadonlyArray<A>) => A
  /** True with probability `p`. */
  readonly chance: (p: number) => boolean
}

export const random = (seed: number): Random => {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (items) => items[Math.floor(next() * items.length)]!,
    chance: (p) => next() < p
  }
}

/** A fresh seed (printed by whoever uses it): `RELIABILITY_SEED` when set, else random. */
export const seedFromEnv = (): number => {
  const fromEnv = Number(process.env.RELIABILITY_SEED)
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 1 + Math.floor(Math.random() * 2_147_483_646)
}

/** The high-water mark of this process's resident memory, in bytes. */
export const peakRss = (): number => process.resourceUsage().maxRSS * 1024

/** How many times each key was seen. */
export class Tally {
  readonly counts = new Map<string, number>()
  add(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1)
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0
  }
  /** Keys of `expected` never seen. */
  missing(expected: Iterable<string>): Array<string> {
    const out: Array<string> = []
    for (const key of expected) if (!this.counts.has(key)) out.push(key)
    return out
  }
  /** Extra copies of the keys of `expected` (each key seen n > 1 times counts n - 1). */
  extra(expected: Iterable<string>): number {
    let n = 0
    for (const key of expected) n += Math.max(0, this.get(key) - 1)
    return n
  }
}

/** Bytes as MiB with one decimal. */
export const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`
