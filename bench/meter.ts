/**
 * Measurement inside one benchmark child process, the same for every client: the `Meter` a client driver reports to
 * (first publish, each delivery, latency samples, connection setup), the memory sampler, the bounded wait for the last
 * delivery, and `pump`, which keeps at most N callback-style publishes outstanding. Plain Node, no Effect: the
 * MQTT.js and raw children must not load it. Hot-path methods only count and read the clock.
 */
import { performance } from "node:perf_hooks"
import * as v8 from "node:v8"

/** Counts and times what a driver does; `phase` says where a stuck child is stuck. */
export class Meter {
  readonly expected: number
  delivered = 0
  /** Publishes completed (QoS 0 written, QoS 1 PUBACK, QoS 2 PUBCOMP). */
  published = 0
  phase = "starting"
  startAt = 0
  endAt = 0
  lastDeliveryAt = 0
  cpuStart: NodeJS.CpuUsage = { user: 0, system: 0 }
  cpuEnd: NodeJS.CpuUsage = { user: 0, system: 0 }
  finished = false
  /** Latency samples in µs (latency workload). */
  readonly samples: Array<number> = []
  private onFinish: Array<() => void> = []
  /** Called when the window opens and when it closes (the child's window profiler). */
  hooks: { readonly begin: () => void; readonly end: () => void } | undefined = undefined

  constructor(expected: number) {
    this.expected = expected
  }

  /** Starts the measured window: call right before the first publish (or connect). */
  begin(phase = "publishing"): void {
    this.phase = phase
    this.hooks?.begin()
    this.cpuStart = process.cpuUsage()
    this.startAt = performance.now()
    this.lastDeliveryAt = this.startAt
  }

  /** `n` messages were delivered to the application. */
  deliver(n: number): void {
    this.delivered += n
    this.lastDeliveryAt = performance.now()
    if (this.delivered >= this.expected && !this.finished) this.finish()
  }

  /** Ends the window at the last delivery (or now when nothing is delivered, e.g. after connecting). */
  finish(end?: number): void {
    if (this.finished) return
    this.cpuEnd = process.cpuUsage()
    this.endAt = end ?? this.lastDeliveryAt
    this.finished = true
    this.hooks?.end()
    const callbacks = this.onFinish
    this.onFinish = []
    for (const callback of callbacks) callback()
  }

  /**
   * Resolves once every expected message arrived, or — after publishing completed — once `idleMs` passed without a
   * delivery (a broker may drop QoS 0 under load: the result then reports delivered < sent).
   */
  awaitDeliveries(idleMs: number): Promise<void> {
    this.phase = "waiting for the last deliveries"
    if (this.finished) return Promise.resolve()
    const since = performance.now()
    return new Promise((resolve) => {
      const timer = setInterval(() => {
        const quietFor = performance.now() - Math.max(this.lastDeliveryAt, since)
        if (quietFor >= idleMs) this.finish()
      }, 20)
      this.onFinish.push(() => {
        clearInterval(timer)
        resolve()
      })
    })
  }

  /** What the meter saw so far, for a timeout message. */
  describe(): string {
    return `phase: ${this.phase}; published ${this.published}, delivered ${this.delivered}/${this.expected}`
  }
}

/**
 * Peak `heapUsed` (sampled every `everyMs`, cheap) and peak `rss` (every `rssEvery`-th sample: reading it costs
 * 0.2–1 ms on a busy process here, as it reads /proc), plus both on demand. The kernel's own high-water mark
 * (`process.resourceUsage().maxRSS`) is reported beside it.
 */
export class MemorySampler {
  peakRss = 0
  peakHeapUsed = 0
  /** Time spent sampling, ms: the sampler's own cost, reported with the figures. */
  costMs = 0
  samples = 0
  private readonly timer: NodeJS.Timeout
  private ticks = 0

  constructor(everyMs = 20, rssEvery = 5) {
    this.sample()
    this.timer = setInterval(() => {
      if (++this.ticks % rssEvery === 0) this.sample()
      else this.sampleHeap()
    }, everyMs)
    this.timer.unref()
  }

  private sampleHeap(): void {
    const start = performance.now()
    const heapUsed = v8.getHeapStatistics().used_heap_size
    if (heapUsed > this.peakHeapUsed) this.peakHeapUsed = heapUsed
    this.costMs += performance.now() - start
  }

  /** `rss` and `heapUsed` now (both also count towards the peaks). */
  sample(): { readonly rss: number; readonly heapUsed: number } {
    const start = performance.now()
    const usage = process.memoryUsage()
    if (usage.rss > this.peakRss) this.peakRss = usage.rss
    if (usage.heapUsed > this.peakHeapUsed) this.peakHeapUsed = usage.heapUsed
    this.costMs += performance.now() - start
    this.samples++
    return usage
  }

  stop(): void {
    clearInterval(this.timer)
    this.sample()
  }
}

/** Runs a full GC when the process was started with `--expose-gc` (twice: weak references need a second pass). */
export const collectGarbage = async (): Promise<void> => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) return
  gc()
  await new Promise((resolve) => setImmediate(resolve))
  gc()
}

/**
 * Starts `total` operations with at most `window` outstanding: `start(done)` begins one and calls `done` when it
 * completes (synchronously or later). No recursion, whatever the client does with its callbacks.
 */
export const pump = (total: number, window: number, start: (done: (error?: unknown) => void) => void): Promise<void> =>
  new Promise((resolve, reject) => {
    let issued = 0
    let completed = 0
    let running = false
    let failed = false
    const done = (error?: unknown) => {
      if (failed) return
      if (error !== undefined && error !== null) {
        failed = true
        reject(error instanceof Error ? error : new Error(String(error)))
        return
      }
      completed++
      if (completed === total) resolve()
      else next()
    }
    const next = () => {
      if (running) return
      running = true
      while (!failed && issued < total && issued - completed < window) {
        issued++
        start(done)
      }
      running = false
    }
    if (total === 0) resolve()
    else next()
  })

/** Runs `task(i)` for i in 0..total-1 with at most `concurrency` running. */
export const forEachLimited = async (
  total: number,
  concurrency: number,
  task: (index: number) => Promise<void>
): Promise<void> => {
  let next = 0
  const worker = async () => {
    while (next < total) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker))
}

/** A payload of `size` bytes carrying `index` in its first 4 bytes (big-endian). */
export const makePayload = (size: number, index = 0): Buffer => {
  const payload = Buffer.alloc(size, 0x61)
  if (size >= 4) payload.writeUInt32BE(index >>> 0, 0)
  return payload
}

/** The index `makePayload` wrote. */
export const payloadIndex = (payload: Uint8Array): number =>
  ((payload[0]! << 24) | (payload[1]! << 16) | (payload[2]! << 8) | payload[3]!) >>> 0

/** p50, p99, max and mean of latency samples (µs). */
export const percentiles = (samples: ReadonlyArray<number>) => {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0
  const mean = sorted.length === 0 ? 0 : sorted.reduce((s, x) => s + x, 0) / sorted.length
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] ?? 0, mean }
}

export const now = (): number => performance.now()
