/**
 * effect-mqtt: an Effect-native MQTT 3.1.1 client. Every module is exported as a namespace, Effect style:
 * `import { MqttError, Codec, Packet, Topic } from "effect-mqtt"`.
 *
 * @since 0.1.0
 */

/** The one public error, its reasons and the Paho MQTTAsync return codes. @since 0.1.0 */
export * as MqttError from "./Errors/MqttError.ts"

/** The MQTT packet model. @since 0.1.0 */
export * as Packet from "./Codec/Packet.ts"

/** Bytes to packets and back: `encode` and the incremental `Decoder`. @since 0.1.0 */
export * as Codec from "./Codec/Codec.ts"

/** Topic name and topic filter rules, and `matches(topicFilter, topicName)`. @since 0.1.0 */
export * as Topic from "./Codec/Topic.ts"

/** Validation of outgoing packets and options, as used before anything is sent. @since 0.1.0 */
export * as Validate from "./Codec/Validate.ts"

/** The public client: publish, subscriptions as Streams, status, events, reconnect. @since 0.1.0 */
export * as MqttClient from "./Client/MqttClient.ts"

/** Connection options, URL parsing and defaults. @since 0.1.0 */
export * as ConnectOptions from "./Connection/ConnectOptions.ts"

/** One network connection: dial, CONNECT, CONNACK, and a Link to exchange packets. @since 0.1.0 */
export * as Connection from "./Connection/Connection.ts"

/** Keepalive policy and service. @since 0.1.0 */
export * as Keepalive from "./Connection/Keepalive.ts"

/** Node transports (TCP, TLS, WebSocket) by URL. @since 0.1.0 */
export * as NodeTransport from "./Connection/NodeTransport.ts"

/** The session service: pending operations over the session state machine. @since 0.1.0 */
export * as Session from "./Client/Session.ts"

/** The pure MQTT session state machine. @since 0.1.0 */
export * as SessionState from "./Client/SessionState.ts"

/** Durable session storage: in memory or in files, for crash recovery. @since 0.1.0 */
export * as SessionStore from "./Client/SessionStore.ts"

/** In-memory broker and client for users' tests. @since 0.1.0 */
export * as MqttTest from "./Testing/MqttTest.ts"
