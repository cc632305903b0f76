/**
 * Request/response over topics, with two clients in one program. The responder subscribes to `svc/echo/request` with
 * `MqttClient.subscribeJson` and answers each request on the `replyTo` topic the request carries, echoing its
 * `correlationId`. The requester subscribes to a reply topic of its own, sends 3 requests with `MqttClient.publishJson`
 * and waits for the answer with the same correlation id, with a timeout per attempt; a request that times out is sent
 * again with the same id (a late or duplicate answer is ignored). It prints each answer and its round trip.
 * Run against a broker: `node --conditions=@effect-mqtt/source examples/request-response.ts mqtt://localhost:1883`.
 */
import { Console, Deferred, Effect, Option, Result, Schema, Stream } from "effect"
import { MqttClient } from "effect-mqtt"

const url = process.argv[2] ?? "mqtt://localhost:1883"

const requestTopic = "svc/echo/request"

const Request = Schema.Struct({ correlationId: Schema.String, replyTo: Schema.String, text: Schema.String })
const Response = Schema.Struct({ correlationId: Schema.String, text: Schema.String })

/** The responder: answers every valid request on its `replyTo` topic; a payload that does not decode is skipped. */
const responder = MqttClient.subscribeJson(requestTopic, Request, { qos: 1 }).pipe(
  Stream.runForEach((result) => {
    if (Result.isFailure(result)) return Console.log(`responder: skipped ${result.failure.message}`)
    const { correlationId, replyTo, text } = result.success.value
    const value = { correlationId, text: text.toUpperCase() }
    return Effect.asVoid(MqttClient.publishJson(Response, { topic: replyTo, value, qos: 1 }))
  })
)

const decodeResponse = Schema.decodeUnknownEffect(Schema.fromJsonString(Response))
const decoder = new TextDecoder()

/** The requester: sends each text and waits for the answer carrying its correlation id. */
const requester = Effect.gen(function*() {
  const client = yield* MqttClient.MqttClient
  const replyTo = `svc/echo/reply/${crypto.randomUUID()}`
  const waiting = new Map<string, Deferred.Deferred<string>>()
  // Subscribed (SUBACK) before the first request goes out, so no answer can be missed.
  const replies = yield* client.subscription(replyTo, { qos: 1 })
  yield* replies.messages.pipe(
    Stream.mapEffect((message) => Effect.option(decodeResponse(decoder.decode(message.payload)))),
    Stream.filterMap((response) => (Option.isSome(response) ? Result.succeed(response.value) : Result.failVoid)),
    Stream.runForEach((response) => {
      const deferred = waiting.get(response.correlationId)
      waiting.delete(response.correlationId)
      return deferred === undefined ? Effect.void : Deferred.succeed(deferred, response.text)
    }),
    Effect.forkScoped
  )

  const request = Effect.fnUntraced(function*(text: string) {
    const correlationId = crypto.randomUUID()
    const answer = yield* Deferred.make<string>()
    waiting.set(correlationId, answer)
    const started = performance.now()
    // Each attempt waits 2 seconds; the same request (same id) is sent at most 3 times.
    const value = { correlationId, replyTo, text }
    yield* MqttClient.publishJson(Request, { topic: requestTopic, value, qos: 1 }).pipe(
      Effect.andThen(Deferred.await(answer).pipe(Effect.timeout("2 seconds"))),
      Effect.retry({ times: 2 })
    )
    const reply = yield* Deferred.await(answer)
    const millis = Math.round(performance.now() - started)
    yield* Console.log(`request ${correlationId.slice(0, 8)} "${text}" → "${reply}" in ${millis} ms`)
  })

  for (const text of ["hello", "effect", "mqtt"]) yield* request(text)
}).pipe(Effect.scoped)

const program = Effect.gen(function*() {
  // Two clients, each a `MqttClient` service for its own part; both disconnect when the scope closes.
  const responderClient = yield* MqttClient.make({ url, clientId: "echo-responder" })
  yield* responder.pipe(
    Effect.provideService(MqttClient.MqttClient, responderClient),
    Effect.forkScoped({ startImmediately: true })
  )
  yield* Console.log(`responder: answering ${requestTopic}`)
  const requesterClient = yield* MqttClient.make({ url, clientId: "echo-requester" })
  yield* requester.pipe(Effect.provideService(MqttClient.MqttClient, requesterClient))
  yield* Console.log("3 requests answered")
}).pipe(Effect.scoped)

program.pipe(Effect.runPromise).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
