/**
 * The ElevenLabs simulator: one model of the service ({@link Simulator}) with
 * two faces, an in-process `HttpClient` ({@link InProcess}) for virtual time and
 * a real HTTP server ({@link Server}) for any client, including the official SDK.
 * The real-time TTS WebSocket endpoints are the model's engine
 * (`Simulator.Service.realtime`), reached in process through a
 * `Socket.WebSocketConstructor` ({@link RealtimeInProcess}) and on the server by
 * a WebSocket upgrade.
 *
 * @since 0.1.0
 */
export * as Audio from "./Audio.ts"
export * as Catalog from "./Catalog.ts"
export * as InProcess from "./InProcess.ts"
export * as Prng from "./Prng.ts"
export * as RealtimeInProcess from "./RealtimeInProcess.ts"
export * as Server from "./Server.ts"
export * as Simulator from "./Simulator.ts"
