/**
 * The raw client: the practical ceiling for an MQTT 3.1.1 client on Node. A `net.Socket`, `mqtt-packet`'s `generate`
 * for what it sends and its `parser` for what it receives, and nothing else: packets queued in one turn of the event
 * loop go out in one socket write (pipelined, never waiting for acknowledgements), acknowledgements are four fixed
 * bytes, packet ids come from a counter checked against a `Map` of outstanding ones. No reconnect, no offline queue,
 * no validation, no keepalive pings (the runs are shorter than the keepalive).
 */
import * as net from "node:net"
import * as MqttPacket from "mqtt-packet"
import { forEachLimited, now, payloadIndex, makePayload, pump, type Meter } from "../meter.ts"
import type { ConnectionsParams, LatencyParams, QoS, ThroughputParams } from "../scenarios.ts"
import { type Driver, type Target, topics } from "./driver.ts"

const ack = (type: number, id: number): Buffer => Buffer.from([type, 2, id >> 8, id & 0xff])
const PUBACK = 0x40
const PUBREC = 0x50
const PUBREL = 0x62
const PUBCOMP = 0x70

type Waiter = (error?: Error) => void

export class RawConnection {
  readonly socket: net.Socket
  onMessage: (topic: string, payload: Buffer) => void = () => {}
  private readonly parser = MqttPacket.parser({ protocolVersion: 4 })
  private queued: Array<Buffer> = []
  private queuedBytes = 0
  private written: Array<() => void> = []
  private scheduled = false
  /** Outgoing QoS 1/2 publishes, SUBSCRIBE and UNSUBSCRIBE awaiting their answer, by packet id. */
  private readonly outstanding = new Map<number, Waiter>()
  private nextId = 0
  private connack: Waiter | undefined
  private closed: Error | undefined

  private constructor(socket: net.Socket) {
    this.socket = socket
    socket.setNoDelay(true)
    socket.on("data", (chunk: Buffer) => this.parser.parse(chunk))
    socket.on("error", (error) => this.fail(error))
    socket.on("close", () => this.fail(new Error("connection closed")))
    this.parser.on("error", (error) => this.fail(error))
    this.parser.on("packet", (packet) => this.onPacket(packet))
  }

  static connect(url: string, clientId: string): Promise<RawConnection> {
    const parsed = new URL(url)
    const socket = net.connect({ host: parsed.hostname.replace(/^\[|\]$/g, ""), port: Number(parsed.port || 1883) })
    const connection = new RawConnection(socket)
    return new Promise((resolve, reject) => {
      connection.connack = (error) => (error === undefined ? resolve(connection) : reject(error))
      connection.send(
        MqttPacket.generate({
          cmd: "connect",
          protocolId: "MQTT",
          protocolVersion: 4,
          clean: true,
          clientId,
          keepalive: 60
        })
      )
    })
  }

  private fail(error: Error): void {
    if (this.closed !== undefined) return
    this.closed = error
    this.connack?.(error)
    this.connack = undefined
    for (const waiter of this.outstanding.values()) waiter(error)
    this.outstanding.clear()
  }

  private onPacket(packet: MqttPacket.Packet): void {
    switch (packet.cmd) {
      case "publish": {
        const id = packet.messageId ?? 0
        if (packet.qos === 1) this.send(ack(PUBACK, id))
        else if (packet.qos === 2) this.send(ack(PUBREC, id))
        this.onMessage(packet.topic, packet.payload as Buffer)
        return
      }
      case "pubrel":
        this.send(ack(PUBCOMP, packet.messageId ?? 0))
        return
      case "pubrec":
        this.send(ack(PUBREL, packet.messageId ?? 0))
        return
      case "puback":
      case "pubcomp":
      case "suback":
      case "unsuback":
        return this.complete(packet.messageId ?? 0, packet.cmd === "suback" && packet.granted.includes(0x80))
      case "connack": {
        const waiter = this.connack
        this.connack = undefined
        waiter?.(packet.returnCode === 0 ? undefined : new Error(`CONNACK return code ${packet.returnCode}`))
        return
      }
      default:
        return
    }
  }

  private complete(id: number, refused: boolean): void {
    const waiter = this.outstanding.get(id)
    if (waiter === undefined) return
    this.outstanding.delete(id)
    waiter(refused ? new Error("SUBACK refused a filter") : undefined)
  }

  private allocate(waiter: Waiter): number {
    for (let i = 0; i < 65535; i++) {
      this.nextId = this.nextId === 65535 ? 1 : this.nextId + 1
      if (!this.outstanding.has(this.nextId)) {
        this.outstanding.set(this.nextId, waiter)
        return this.nextId
      }
    }
    throw new Error("no free packet id")
  }

  /** Queues bytes; everything queued in this turn is written at once. `onWritten` runs once they are written. */
  send(bytes: Buffer, onWritten?: () => void): void {
    this.queued.push(bytes)
    this.queuedBytes += bytes.length
    if (onWritten !== undefined) this.written.push(onWritten)
    if (!this.scheduled) {
      this.scheduled = true
      process.nextTick(() => this.flush())
    }
  }

  private flush(): void {
    this.scheduled = false
    const queued = this.queued
    const written = this.written
    this.queued = []
    this.written = []
    const bytes = this.queuedBytes
    this.queuedBytes = 0
    const callback = written.length === 0 ? undefined : () => {
      for (const done of written) done()
    }
    if (this.closed !== undefined) return
    if (queued.length === 1 || bytes / queued.length < 2048) {
      // Small packets: one copy into one buffer beats a writev of many tiny pieces.
      this.socket.write(queued.length === 1 ? queued[0]! : Buffer.concat(queued, bytes), callback)
    } else {
      // Large packets: a writev of the pieces, no copy.
      this.socket.cork()
      for (let i = 0; i < queued.length; i++) {
        this.socket.write(queued[i]!, i === queued.length - 1 ? callback : undefined)
      }
      this.socket.uncork()
    }
  }

  /** Publishes; `done` runs when written (QoS 0), on PUBACK (QoS 1) or on PUBCOMP (QoS 2). */
  publish(topic: string, payload: Buffer, qos: QoS, done: Waiter): void {
    if (this.closed !== undefined) return done(this.closed)
    if (qos === 0) {
      this.send(MqttPacket.generate({ cmd: "publish", topic, payload, qos: 0, retain: false, dup: false }), done)
      return
    }
    const messageId = this.allocate(done)
    this.send(MqttPacket.generate({ cmd: "publish", topic, payload, qos, messageId, retain: false, dup: false }))
  }

  subscribe(filter: string, qos: QoS): Promise<void> {
    return new Promise((resolve, reject) => {
      const messageId = this.allocate((error) => (error === undefined ? resolve() : reject(error)))
      this.send(MqttPacket.generate({ cmd: "subscribe", messageId, subscriptions: [{ topic: filter, qos }] }))
    })
  }

  /** DISCONNECT, then end the socket; bounded. */
  end(): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed !== undefined || this.socket.destroyed) return resolve()
      const timer = setTimeout(() => {
        this.socket.destroy()
        resolve()
      }, 2_000)
      this.socket.once("close", () => {
        clearTimeout(timer)
        resolve()
      })
      this.send(MqttPacket.generate({ cmd: "disconnect" }), () => this.socket.end())
    })
  }
}

const publishAsync = (connection: RawConnection, topic: string, payload: Buffer, qos: QoS) =>
  new Promise<void>((resolve, reject) =>
    connection.publish(topic, payload, qos, (error) => (error === undefined ? resolve() : reject(error)))
  )

const throughput = async (target: Target, params: ThroughputParams, meter: Meter): Promise<void> => {
  const { topic, filter } = topics(target.prefix, params.subscribers)
  const receivers = await Promise.all(
    Array.from({ length: params.subscribers }, (_, i) => RawConnection.connect(target.url, `${target.prefix}s${i}`))
  )
  for (const receiver of receivers) {
    receiver.onMessage = () => meter.deliver(1)
    await receiver.subscribe(filter, params.qos)
  }
  const publisher = await RawConnection.connect(target.url, `${target.prefix}p`)
  const payload = makePayload(params.payloadSize)
  const qos = params.qos
  meter.begin()
  await pump(params.count, params.window, (done) =>
    publisher.publish(topic, payload, qos, (error) => {
      meter.published++
      done(error)
    }))
  await meter.awaitDeliveries(params.idleMs)
  meter.phase = "disconnecting"
  await Promise.all([publisher, ...receivers].map((c) => c.end()))
}

const latency = async (target: Target, params: LatencyParams, meter: Meter): Promise<void> => {
  const { topic } = topics(target.prefix, 1)
  const receiver = await RawConnection.connect(target.url, `${target.prefix}s`)
  let sentAt = 0
  let waiting = -1
  let delivered: (() => void) | undefined
  receiver.onMessage = (_topic, payload) => {
    if (payloadIndex(payload) !== waiting) return
    meter.samples.push((now() - sentAt) * 1000)
    meter.deliver(1)
    waiting = -1
    delivered?.()
  }
  await receiver.subscribe(topic, params.qos)
  const publisher = await RawConnection.connect(target.url, `${target.prefix}p`)
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
  await Promise.all([publisher.end(), receiver.end()])
}

const connections = async (
  target: Target,
  params: ConnectionsParams,
  meter: Meter,
  measure: () => Promise<void>
): Promise<void> => {
  const clients: Array<RawConnection> = []
  meter.begin("connecting")
  await forEachLimited(params.count, params.concurrency, async (i) => {
    const client = await RawConnection.connect(target.url, `${target.prefix}c${i}`)
    clients.push(client)
    await client.subscribe(`bench/${target.prefix}/idle/${i}`, 1)
    meter.deliver(1)
  })
  meter.finish(now())
  meter.phase = "idle"
  await new Promise((resolve) => setTimeout(resolve, params.idleMs))
  await measure()
  meter.phase = "disconnecting"
  await Promise.all(clients.map((c) => c.end()))
}

export const driver: Driver = { throughput, latency, connections }
