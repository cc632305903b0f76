/**
 * What every benchmarked client implements, each in its own idiom (effect-mqtt with fibers and Streams, MQTT.js with
 * callbacks, the raw client with a socket): the three workloads of `scenarios.ts`, reporting to a `Meter`. The child
 * process (`child.ts`) picks one driver, so only that client's library is loaded.
 */
import type { Meter } from "../meter.ts"
import type { ConnectionsParams, LatencyParams, ThroughputParams } from "../scenarios.ts"

export interface Target {
  readonly url: string
  /** Unique per child: prefix of client ids and topics. */
  readonly prefix: string
}

export interface Driver {
  /**
   * Connects `subscribers` receivers (subscribed to the topic, or to a wildcard over it when more than one) and a
   * publisher; calls `meter.begin()` right before the first publish and `meter.deliver` for every delivery, keeps at
   * most `window` publishes outstanding, then `meter.awaitDeliveries(idleMs)`; disconnects.
   */
  readonly throughput: (target: Target, params: ThroughputParams, meter: Meter) => Promise<void>
  /**
   * One publisher and one subscriber: `count` publishes in sequence, each awaited together with its delivery; the
   * sample is the time from calling publish to the delivery, pushed to `meter.samples` (µs).
   */
  readonly latency: (target: Target, params: LatencyParams, meter: Meter) => Promise<void>
  /**
   * `count` clients connect and subscribe (at most `concurrency` at a time) between `meter.begin()` and
   * `meter.finish()`; they idle `idleMs`, then `measure()` reads memory while all are connected; then all disconnect.
   */
  readonly connections: (
    target: Target,
    params: ConnectionsParams,
    meter: Meter,
    measure: () => Promise<void>
  ) => Promise<void>
}

/** The topic a throughput or latency run publishes to, and what its subscribers subscribe to. */
export const topics = (prefix: string, subscribers: number) => {
  const topic = `bench/${prefix}/t/data`
  return { topic, filter: subscribers > 1 ? `bench/${prefix}/t/+` : topic }
}
