/**
 * A real `redis-server` for tests: started on a free loopback port in a temp
 * directory with persistence off (`--save "" --appendonly no`), stoppable and
 * restartable on the same port (for outage tests), removed on `close`.
 *
 * A missing binary is an error, never a skip: the distributed tests are only
 * worth something against a real server.
 *
 * @example
 * ```ts
 * const server = await startRedisServer()
 * // ... server.url
 * await server.stop(); await server.start() // outage and recovery, same port
 * await server.close()
 * ```
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** Whether the server process is running. */
  readonly running: () => boolean
  /** Stops the server (SIGTERM, then SIGKILL after 2 s); the port stays reserved for `start`. */
  readonly stop: () => Promise<void>
  /** Starts it again on the same port (empty data: persistence is off). */
  readonly start: () => Promise<void>
  /** Stops it and removes its directory. */
  readonly close: () => Promise<void>
}

const binary = process.env["REDIS_SERVER_BIN"] ?? "redis-server"

/** Throws, loudly, when `redis-server` is not installed. */
export const assertRedisServerInstalled = (): void => {
  const probe = spawnSync(binary, ["--version"], { encoding: "utf8" })
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      `redis-server is required by the distributed tests and was not found (${binary}: ${
        probe.error?.message ?? `exit ${probe.status}`
      }). Install Debian's redis-server: sudo apt-get install -y redis-server ` +
        `(or set REDIS_SERVER_BIN to its path).`
    )
  }
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      srv.close(() => resolve(port))
    })
  })

const ping = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    let data = ""
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.once("error", () => done(false))
    socket.once("connect", () => socket.write("PING\r\n"))
    socket.on("data", (chunk) => {
      data += chunk.toString()
      if (data.includes("\r\n")) done(data.startsWith("+PONG"))
    })
  })

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Starts a fresh `redis-server` on a free loopback port. */
export const startRedisServer = async (): Promise<RedisServer> => {
  assertRedisServerInstalled()
  const dir = mkdtempSync(join(tmpdir(), "elevenlabs-resilience-redis-"))
  const port = await freePort()
  let child: ChildProcess | undefined
  let stderr = ""

  const start = async () => {
    if (child !== undefined) return
    stderr = ""
    const proc = spawn(
      binary,
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir,
        "--protected-mode",
        "no"
      ],
      { cwd: dir, stdio: ["ignore", "ignore", "pipe"] }
    )
    proc.stderr?.on("data", (c) => (stderr += c.toString()))
    proc.once("exit", () => {
      if (child === proc) child = undefined
    })
    child = proc
    for (let i = 0; i < 200; i++) {
      if (await ping(port)) return
      if (child !== proc) break
      await sleep(25)
    }
    throw new Error(`redis-server did not start on port ${port}: ${stderr}`)
  }

  const stop = async () => {
    const proc = child
    if (proc === undefined) return
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()))
    proc.kill("SIGTERM")
    const timer = setTimeout(() => proc.kill("SIGKILL"), 2000)
    await exited
    clearTimeout(timer)
    child = undefined
  }

  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    running: () => child !== undefined,
    stop,
    start,
    close: async () => {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
