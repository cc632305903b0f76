/**
 * MQTT.js 5 as its users drive it: `connectAsync`, `subscribeAsync`, `publish(topic, payload, { qos }, callback)` with
 * a counter keeping at most N publishes outstanding (the callback runs when written for QoS 0, on PUBACK for QoS 1,
 * on PUBCOMP for QoS 2), and a `message` listener per subscriber connection. MQTT 3.1.1, clean sessions, no reconnect.
 */
import { connectAsync, type IClientOptions, type MqttClient } from "mqtt"
import { forEachLimited, now, payloadIndex, makePayload, pump, type Meter } from "../meter.ts"
import type { ConnectionsParams, LatencyParams, QoS, ThroughputParams } from "../scenarios.ts"
import { type Driver, type Target, topics } from "./driver.ts"

const options = (clientId: string): IClientOptions => ({
  clientId,
  protocolVersion: 4,
  clean: true,
  keepalive: 60,
  reconnectPeriod: 0,
  connectTimeout: 10_000
})

const connect = (target: Target, id: string): Promise<MqttClient> =>
  connectAsync(target.url, options(`${target.prefix}${id}`))

const end = (client: MqttClient): Promise<void> =>
  Promise.race([
    client.endAsync().catch(() => undefined),
    new Promise<void>((resolve) =>
      setTimeout(() => {
        client.end(true)
        resolve()
      }, 2_000).unref()
    )
  ])

const publishAsync = (client: MqttClient, topic: string, payload: Buffer, qos: QoS) =>
  new Promise<void>((resolve, reject) =>
    client.publish(topic, payload, { qos }, (error) => (error ? reject(error) : resolve()))
  )

const throughput = async (target: Target, params: ThroughputParams, meter: Meter): Promise<void> => {
  const { topic, filter } = topics(target.prefix, params.subscribers)
  const receivers = await Promise.all(Array.from({ length: params.subscribers }, (_, i) => connect(target, `s${i}`)))
  for (const receiver of receivers) {
    receiver.on("message", () => meter.deliver(1))
    await receiver.subscribeAsync(filter, { qos: params.qos })
  }
  const publisher = await connect(target, "p")
  const payload = makePayload(params.payloadSize)
  const publishOptions = { qos: params.qos }
  meter.begin()
  await pump(params.count, params.window, (done) =>
    publisher.publish(topic, payload, publishOptions, (error) => {
      meter.published++
      done(error)
    }))
  await meter.awaitDeliveries(params.idleMs)
  meter.phase = "disconnecting"
  await Promise.all([publisher, ...receivers].map(end))
}

const latency = async (target: Target, params: LatencyParams, meter: Meter): Promise<void> => {
  const { topic } = topics(target.prefix, 1)
  const receiver = await connect(target, "s")
  let sentAt = 0
  let waiting = -1
  let delivered: (() => void) | undefined
  receiver.on("message", (_topic, payload) => {
    if (payloadIndex(payload) !== waiting) return
    meter.samples.push((now() - sentAt) * 1000)
    meter.deliver(1)
    waiting = -1
    delivered?.()
  })
  await receiver.subscribeAsync(topic, { qos: params.qos })
  const publisher = await connect(target, "p")
  meter.begin()
  for (let i = 0; i < params.count; i++) {
    const payload = makePayload(params.payloadSize, i)
    const arrived = new Promise<void>((resolve) => {
      delivered = resolve
    })
    waiting = i
    sentAt = now()
    await publishAsync(publisher, topic, payload, params.qos)
    meter.published++
    if (waiting === i) await arrived
  }
  meter.finish()
  meter.phase = "disconnecting"
  await Promise.all([end(publisher), end(receiver)])
}

const connections = async (
  target: Target,
  params: ConnectionsParams,
  meter: Meter,
  measure: () => Promise<void>
): Promise<void> => {
  const clients: Array<MqttClient> = []
  meter.begin("connecting")
  await forEachLimited(params.count, params.concurrency, async (i) => {
    const client = await connect(target, `c${i}`)
    clients.push(client)
    await client.subscribeAsync(`bench/${target.prefix}/idle/${i}`, { qos: 1 })
    meter.deliver(1)
  })
  meter.finish(now())
  meter.phase = "idle"
  await new Promise((resolve) => setTimeout(resolve, params.idleMs))
  await measure()
  meter.phase = "disconnecting"
  await Promise.all(clients.map(end))
}

export const driver: Driver = { throughput, latency, connections }
