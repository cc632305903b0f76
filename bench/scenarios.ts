/**
 * The benchmark's vocabulary, shared by the parent (`run.ts`) and the child processes (`child.ts`): the clients
 * measured, the scenarios of issue 7 as cases with their full and `--quick` sizes, the spec a child receives and the
 * result it reports. Pure data: no I/O and no Effect here, so a child measuring MQTT.js or the raw client loads
 * nothing of Effect.
 */

/** The clients measured in every scenario, in their default order. */
export const clientNames = ["effect-mqtt", "mqttjs", "raw"] as const
export type ClientName = (typeof clientNames)[number]

/** How a client is named in tables. */
export const clientLabel: Readonly<Record<ClientName, string>> = {
  "effect-mqtt": "effect-mqtt",
  mqttjs: "MQTT.js",
  raw: "raw (net + mqtt-packet)"
}

export type QoS = 0 | 1 | 2

/**
 * One publisher connection publishes `count` messages to one topic with at most `window` publishes outstanding
 * (QoS 0: not yet written, QoS 1: no PUBACK yet, QoS 2: no PUBCOMP yet); `subscribers` separate connections of the
 * same client subscribe to `filter` (a wildcard when fanning out) and receive everything.
 */
export interface ThroughputParams {
  readonly count: number
  readonly qos: QoS
  readonly payloadSize: number
  readonly window: number
  readonly subscribers: number
  /** Once publishing completed, stop waiting after this long without a delivery (QoS 0 may be dropped). */
  readonly idleMs: number
}

/** `count` sequential publishes, each awaited (acknowledgement and delivery) before the next. */
export interface LatencyParams {
  readonly count: number
  readonly qos: QoS
  readonly payloadSize: number
}

/** `count` clients in one process connect (at most `concurrency` at a time), subscribe, then idle for `idleMs`. */
export interface ConnectionsParams {
  readonly count: number
  readonly concurrency: number
  readonly idleMs: number
}

export type Workload =
  | { readonly _tag: "Throughput"; readonly params: ThroughputParams }
  | { readonly _tag: "Latency"; readonly params: LatencyParams }
  | { readonly _tag: "Connections"; readonly params: ConnectionsParams }

/** What the parent hands a child (as JSON in argv). */
export interface ChildSpec {
  readonly client: ClientName
  readonly caseId: string
  readonly url: string
  /** Unique per child: client ids and topics start with it, so runs never see each other's messages. */
  readonly prefix: string
  readonly workload: Workload
  /** The child gives up (and says where it was stuck) after this long. */
  readonly deadlineMs: number
  /** Write a V8 CPU profile of the measured window (first publish to last delivery) to this file. */
  readonly profileFile?: string | undefined
  /** Sampling interval of that profile, µs (default 100). */
  readonly profileIntervalUs?: number | undefined
  /** Connections workload: write a heap snapshot to this file while every client is connected and idle. */
  readonly heapSnapshotFile?: string | undefined
}

export interface LatencyFigures {
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly mean: number
}

export interface ConnectionFigures {
  readonly count: number
  /** From the first connect to the last SUBACK. */
  readonly connectMs: number
  readonly rssPerConnection: number
  readonly heapPerConnection: number
  readonly cpuUsPerConnection: number
  /** Closing every client gracefully (DISCONNECT, then the socket closed), after the idle period. */
  readonly closeMs: number
  readonly cpuUsPerClose: number
}

export interface MemoryFigures {
  /** After loading the client library and a GC, before connecting. */
  readonly baselineRss: number
  readonly baselineHeap: number
  /** Highest sampled values: heap every 20 ms, RSS every 100 ms, both at the end. */
  readonly peakRss: number
  readonly peakHeapUsed: number
  /** `process.resourceUsage().maxRSS`: the kernel's high-water mark, in bytes. */
  readonly maxRss: number
  /** Time the sampler itself took (ms), and how many RSS samples it took. */
  readonly samplerMs: number
  readonly samplerCount: number
}

/** What a child reports (one JSON line on stdout). */
export interface ChildResult {
  readonly client: ClientName
  readonly caseId: string
  readonly sent: number
  readonly expected: number
  readonly delivered: number
  /** The measured window: first publish to last delivery (connections: first connect to last SUBACK). */
  readonly windowMs: number
  /** Deliveries per second over the window. */
  readonly rate: number
  /** Payload megabytes (10^6) delivered per second. */
  readonly mbPerSecond: number
  readonly cpuUserUs: number
  readonly cpuSystemUs: number
  /** Client-process CPU (user + system) in the window per delivered message. */
  readonly cpuUsPerMessage: number
  readonly latency?: LatencyFigures
  readonly connections?: ConnectionFigures
  readonly memory: MemoryFigures
}

/** A measured case: what the parent runs for every client and round. */
export interface CaseDef {
  readonly id: string
  readonly scenario: number
  readonly title: string
  readonly workload: Workload
  /** Bound on one child's run. */
  readonly deadlineMs: number
}

const KiB = 1024

/** The cases of scenarios 1–7 (scenario 8, the codec, runs `bench/codec.ts`). */
export const makeCases = (quick: boolean, connections?: number | undefined): ReadonlyArray<CaseDef> => {
  const n = (full: number, small: number) => (quick ? small : full)
  const deadlineMs = quick ? 30_000 : 180_000
  const throughput = (params: ThroughputParams): Workload => ({ _tag: "Throughput", params })
  const fmt = (x: number) => x.toLocaleString("en-US")
  const qos0 = n(100_000, 10_000)
  const qos1 = n(50_000, 5_000)
  const qos2 = n(20_000, 2_000)
  const latency = n(2_000, 200)
  const large = n(2_000, 200)
  const fanout = n(10_000, 1_000)
  const conns = connections ?? n(1_000, 200)
  return [
    {
      id: "qos0",
      scenario: 1,
      title: `QoS 0 throughput: ${fmt(qos0)} × 64 B, end to end`,
      workload: throughput({ count: qos0, qos: 0, payloadSize: 64, window: 100, subscribers: 1, idleMs: 1_000 }),
      deadlineMs
    },
    {
      id: "qos1",
      scenario: 2,
      title: `QoS 1 throughput: ${fmt(qos1)} × 64 B, 100 in flight`,
      workload: throughput({ count: qos1, qos: 1, payloadSize: 64, window: 100, subscribers: 1, idleMs: 5_000 }),
      deadlineMs
    },
    {
      id: "qos2",
      scenario: 3,
      title: `QoS 2 throughput: ${fmt(qos2)} × 64 B, 100 in flight`,
      workload: throughput({ count: qos2, qos: 2, payloadSize: 64, window: 100, subscribers: 1, idleMs: 5_000 }),
      deadlineMs
    },
    {
      id: "latency",
      scenario: 4,
      title: `QoS 1 latency: ${fmt(latency)} sequential publishes × 64 B, publish to delivery`,
      workload: { _tag: "Latency", params: { count: latency, qos: 1, payloadSize: 64 } },
      deadlineMs
    },
    {
      id: "large-qos0",
      scenario: 5,
      title: `Large payloads, QoS 0: ${fmt(large)} × 64 KiB, 100 outstanding`,
      workload: throughput({ count: large, qos: 0, payloadSize: 64 * KiB, window: 100, subscribers: 1, idleMs: 1_000 }),
      deadlineMs
    },
    {
      id: "large-qos1",
      scenario: 5,
      title: `Large payloads, QoS 1: ${fmt(large)} × 64 KiB, 100 in flight`,
      workload: throughput({ count: large, qos: 1, payloadSize: 64 * KiB, window: 100, subscribers: 1, idleMs: 5_000 }),
      deadlineMs
    },
    {
      id: "fanout",
      scenario: 6,
      title: `Fan-out: 1 publisher, 20 subscribers on a wildcard, ${fmt(fanout)} × 64 B at QoS 0`,
      workload: throughput({ count: fanout, qos: 0, payloadSize: 64, window: 100, subscribers: 20, idleMs: 1_000 }),
      deadlineMs
    },
    {
      id: "connections",
      scenario: 7,
      title: `Many connections: ${fmt(conns)} clients connect, subscribe and idle`,
      workload: { _tag: "Connections", params: { count: conns, concurrency: 100, idleMs: quick ? 500 : 2_000 } },
      deadlineMs
    }
  ]
}
