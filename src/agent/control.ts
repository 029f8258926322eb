// The agent's local control socket: a unix stream socket in the state directory (DIR/agent.sock, mode 0600), one
// JSON object per line each way. A request is {"id":N,"cmd":"status"|"down"|"browse",...}; its response is
// {"id":N,"ok":true,"result":...} or {"id":N,"ok":false,"error":"..."}. `autotunnel status|down|browse` are clients.
// A malformed or oversized line gets an error response (or the connection is closed), never a crash.
import { chmod, unlink } from 'node:fs/promises'
import net from 'node:net'
import { join } from 'node:path'
import type { Logger } from '../io/log.js'

export const CONTROL_SOCKET = 'agent.sock'
export const CONTROL_MAX_LINE = 64 * 1024

export interface ControlRequest {
  readonly id?: unknown
  readonly cmd: string
  readonly [k: string]: unknown
}

/** `afterReply(fn)` runs fn once the answer has been handed to the kernel (e.g. to close the socket after `down`). */
export interface ControlContext {
  afterReply(fn: () => void): void
}

export type ControlHandler = (req: ControlRequest, ctx: ControlContext) => Promise<unknown>

export class ControlError extends Error {
  override readonly name = 'ControlError'
  readonly code: string
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

export function controlSocketPath(stateDir: string): string {
  return join(stateDir, CONTROL_SOCKET)
}

export class ControlServer {
  readonly #log: Logger
  readonly #path: string
  readonly #server: net.Server
  readonly #conns = new Set<net.Socket>()
  /** Only a server that bound the path removes it: a refused listen() must leave another agent's socket alone. */
  #listening = false
  dropped = 0

  constructor(deps: { log: Logger }, path: string, handler: ControlHandler) {
    this.#log = deps.log
    this.#path = path
    this.#server = net.createServer((sock) => this.#serve(sock, handler))
  }

  get path(): string {
    return this.#path
  }

  /** Listens; a stale socket file is replaced, a live agent on it is an error (code EAGENTRUNNING). */
  async listen(): Promise<void> {
    if (await isListening(this.#path))
      throw new ControlError(`an agent is already running on ${this.#path}`, 'EAGENTRUNNING')
    await unlink(this.#path).catch(() => {})
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(this.#path, () => {
        this.#server.off('error', reject)
        resolve()
      })
    })
    this.#listening = true
    await chmod(this.#path, 0o600)
  }

  async close(): Promise<void> {
    for (const c of this.#conns) c.destroy()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
    if (!this.#listening) return
    this.#listening = false
    await unlink(this.#path).catch(() => {})
  }

  #serve(sock: net.Socket, handler: ControlHandler): void {
    this.#conns.add(sock)
    sock.on('close', () => this.#conns.delete(sock))
    sock.on('error', () => {})
    let buf = ''
    sock.setEncoding('utf8')
    sock.on('data', (chunk: string) => {
      buf += chunk
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        if (line.trim() !== '') void this.#answer(sock, line, handler)
      }
      if (buf.length > CONTROL_MAX_LINE) {
        this.dropped++
        this.#log.debug('control.line_too_long', { bytes: buf.length })
        sock.destroy()
      }
    })
  }

  async #answer(sock: net.Socket, line: string, handler: ControlHandler): Promise<void> {
    let id: unknown = null
    let reply: Record<string, unknown>
    const after: (() => void)[] = []
    try {
      const req = JSON.parse(line) as unknown
      if (typeof req !== 'object' || req === null || typeof (req as ControlRequest).cmd !== 'string')
        throw new ControlError('request must be a JSON object with a string "cmd"', 'EBADREQ')
      id = (req as ControlRequest).id ?? null
      reply = {
        id,
        ok: true,
        result: (await handler(req as ControlRequest, { afterReply: (fn) => after.push(fn) })) ?? null,
      }
    } catch (e) {
      this.dropped++
      const err = e as Error & { code?: string }
      this.#log.debug('control.error', { error: err.message })
      reply = { id, ok: false, error: err.message, code: err.code ?? 'EFAILED' }
    }
    const runAfter = (): void => {
      for (const fn of after) fn()
    }
    if (sock.destroyed) runAfter()
    else sock.write(`${JSON.stringify(reply)}\n`, runAfter)
  }
}

function isListening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(path)
    c.once('connect', () => {
      c.destroy()
      resolve(true)
    })
    c.once('error', () => resolve(false))
  })
}

/** One request over the control socket; rejects with ControlError (ENOAGENT when nothing listens). */
export function controlRequest(
  path: string,
  cmd: string,
  args: Record<string, unknown> = {},
  timeoutMs = 10_000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path)
    let buf = ''
    const timer = setTimeout(() => {
      sock.destroy()
      reject(new ControlError(`no answer from the agent within ${timeoutMs} ms`, 'ETIMEDOUT'))
    }, timeoutMs)
    const done = (fn: () => void): void => {
      clearTimeout(timer)
      sock.destroy()
      fn()
    }
    sock.setEncoding('utf8')
    sock.once('connect', () => sock.write(`${JSON.stringify({ id: 1, cmd, ...args })}\n`))
    sock.on('error', (e: NodeJS.ErrnoException) =>
      done(() =>
        reject(
          e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
            ? new ControlError(`no agent is running (no control socket at ${path})`, 'ENOAGENT', { cause: e })
            : e,
        ),
      ),
    )
    sock.on('data', (chunk: string) => {
      buf += chunk
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      done(() => {
        try {
          const r = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: string; code?: string }
          if (r.ok) resolve(r.result)
          else reject(new ControlError(r.error ?? 'agent error', r.code ?? 'EFAILED'))
        } catch (e) {
          reject(new ControlError('malformed answer from the agent', 'EBADREPLY', { cause: e }))
        }
      })
    })
    sock.on('end', () => done(() => reject(new ControlError('the agent closed the connection', 'ECLOSED'))))
  })
}
