// The agent's HTTP listeners (issue 17), both off by default:
//   up --metrics ADDR:PORT      GET /metrics: Prometheus text format (metrics.ts), any address (as the server's)
//   up --status-page [ADDR:]PORT  GET /: the status page (status-page.ts), /status.json, /events (Server-Sent Events,
//                                one status snapshot per second while a page is open) and /metrics; loopback only:
//                                the page shows ULAs, endpoints and records, which other hosts need not see
// Nothing runs between requests: the event stream's timer exists only while a page is connected, so an idle agent
// with the page enabled costs nothing until someone looks.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { isIP } from 'node:net'
import type { Logger } from '../io/log.js'
import { renderAgentMetrics } from './metrics.js'
import { STATUS_PAGE_HTML } from './status-page.js'

export const EVENTS_INTERVAL_MS = 1000
const MAX_EVENT_CLIENTS = 16

export class HttpUsageError extends Error {
  override readonly name = 'HttpUsageError'
}

/** "PORT", "ADDR:PORT", "[V6]:PORT" -> host and port; the status page's host defaults to 127.0.0.1. */
export function parseListen(s: string, what: string, defaultHost = '127.0.0.1'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s) ?? /^()()(\d+)$/.exec(s)
  const port = Number(m?.[3])
  const host = m?.[1] || m?.[2] || defaultHost
  if (!m || !Number.isInteger(port) || port < 0 || port > 0xffff || !isIP(host))
    throw new HttpUsageError(`${what} ${JSON.stringify(s)}: want [ADDR:]PORT with an IP address, e.g. 127.0.0.1:8088`)
  return { host, port }
}

export function isLoopback(host: string): boolean {
  return host === '::1' || /^127\./.test(host)
}

export interface AgentHttpOptions {
  readonly host: string
  readonly port: number
  /** Serve the status page, /status.json and /events besides /metrics. */
  readonly statusPage: boolean
}

export class AgentHttp {
  readonly #server: Server
  readonly #status: () => unknown
  readonly #log: Logger
  readonly #clients = new Set<ServerResponse>()
  #timer: NodeJS.Timeout | undefined
  requests = 0

  constructor(
    deps: { status: () => unknown; log: Logger },
    readonly opts: AgentHttpOptions,
  ) {
    if (opts.statusPage && !isLoopback(opts.host))
      throw new HttpUsageError(
        `--status-page ${opts.host}: the status page is served on loopback only (127.0.0.1 or ::1); ` +
          'reach it from elsewhere through ssh -L',
      )
    this.#status = deps.status
    this.#log = deps.log
    this.#server = createServer((req, res) => this.#handle(req, res))
  }

  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(this.opts.port, this.opts.host, () => {
        this.#server.off('error', reject)
        const a = this.#server.address()
        resolve({ host: this.opts.host, port: typeof a === 'object' && a ? a.port : this.opts.port })
      })
    })
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests++
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    try {
      if (path === '/metrics')
        this.#send(
          res,
          'text/plain; version=0.0.4; charset=utf-8',
          renderAgentMetrics(this.#status(), { statusPageClients: this.#clients.size }),
        )
      else if (!this.opts.statusPage) res.writeHead(404).end()
      else if (path === '/') this.#send(res, 'text/html; charset=utf-8', STATUS_PAGE_HTML)
      else if (path === '/status.json') this.#send(res, 'application/json', JSON.stringify(this.#status()))
      else if (path === '/events') this.#events(res)
      else res.writeHead(404).end()
    } catch (e) {
      this.#log.warn('http.error', { path, err: (e as Error).message })
      if (!res.headersSent) res.writeHead(500).end()
    }
  }

  #send(res: ServerResponse, type: string, body: string): void {
    res.writeHead(200, {
      'content-type': type,
      'cache-control': 'no-store',
      // The page loads nothing from elsewhere: its own script and styles, its own origin for data.
      'content-security-policy':
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
      'x-content-type-options': 'nosniff',
    })
    res.end(body)
  }

  /** Server-Sent Events: a status snapshot now and every EVENTS_INTERVAL_MS while any page listens. */
  #events(res: ServerResponse): void {
    if (this.#clients.size >= MAX_EVENT_CLIENTS) {
      res.writeHead(503).end()
      return
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' })
    this.#clients.add(res)
    res.on('close', () => {
      this.#clients.delete(res)
      if (this.#clients.size === 0) {
        clearInterval(this.#timer)
        this.#timer = undefined
      }
    })
    res.write(`data: ${JSON.stringify(this.#status())}\n\n`)
    this.#timer ??= setInterval(() => {
      const data = `data: ${JSON.stringify(this.#status())}\n\n`
      for (const c of this.#clients) c.write(data)
    }, EVENTS_INTERVAL_MS)
  }

  async close(): Promise<void> {
    clearInterval(this.#timer)
    for (const c of this.#clients) c.destroy()
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

/**
 * The listeners `up --metrics` and `--status-page` ask for (checked before the agent starts: a bad address fails at
 * once); one listener serves both when they name the same address and port.
 */
export function planAgentHttp(o: {
  metrics?: string | undefined
  statusPage?: string | undefined
}): AgentHttpOptions[] {
  const out: AgentHttpOptions[] = []
  const page = o.statusPage ? parseListen(o.statusPage, '--status-page') : undefined
  const metrics = o.metrics ? parseListen(o.metrics, '--metrics') : undefined
  if (page && !isLoopback(page.host))
    throw new HttpUsageError(`--status-page ${o.statusPage}: loopback only (127.0.0.1 or ::1); reach it through ssh -L`)
  if (page) out.push({ ...page, statusPage: true })
  if (metrics && !(page && page.host === metrics.host && page.port === metrics.port))
    out.push({ ...metrics, statusPage: false })
  return out
}

export async function startAgentHttp(
  plan: readonly AgentHttpOptions[],
  deps: { status: () => unknown; log: Logger },
): Promise<AgentHttp[]> {
  const out: AgentHttp[] = []
  try {
    for (const p of plan) {
      const h = new AgentHttp(deps, p)
      const a = await h.listen()
      out.push(h)
      const url = `http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`
      deps.log.info('agent.http', { url, statusPage: p.statusPage, metrics: `${url}/metrics` })
    }
  } catch (e) {
    await Promise.allSettled(out.map((h) => h.close()))
    throw e
  }
  return out
}
