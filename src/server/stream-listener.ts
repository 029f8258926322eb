// DNS over TCP (RFC 1035 4.2.2, RFC 7766) and over TLS (RFC 7858): two-octet length prefix per message.
// Pipelining: every complete message is handed on at once, without waiting for earlier answers, and answers go
// out in the order they are ready (a query answered from memory overtakes an UPDATE waiting for its commit).
// A connection with no outstanding request and no traffic for the idle timeout is closed (RFC 7766 6.2.3);
// DSO sessions (RFC 8490) change it through setIdleTimeout. Bounded: at most `maxConnections` connections and
// `maxOutstanding` unanswered requests per connection (reading pauses beyond that).
// Against slot exhaustion without authentication (issue 16 finding 4, docs/security.md): a TLS handshake must
// finish within `handshakeTimeoutMs`, a message whose first octet arrived must be complete within
// `messageTimeoutMs` (one byte now and then no longer keeps a connection), and one source address holds at most
// `maxPerSource` connections, so one attacker cannot take the slots legitimate clients need.
import { createServer as createTcpServer, isIPv6, type Server, type Socket } from 'node:net'
import { createServer as createTlsServer, type TLSSocket } from 'node:tls'
import { frameTcp, TcpDeframer } from '../dns/tcp-framing.js'
import type { Logger } from '../io/log.js'
import type { InboundContext, MessageSink, PeerInfo, StreamConnection, TransportKind } from './transport.js'

/** Connections per listener unless `--max-connections` says otherwise (each costs a file descriptor). */
export const DEFAULT_MAX_CONNECTIONS = 1000
/** Connections one source address may hold per listener (`--max-connections-per-source`). */
export const DEFAULT_MAX_PER_SOURCE = 64
/** Time for a TLS handshake (`--tls-handshake-timeout`). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000
/** Time from a message's first octet to its last (`--tcp-message-timeout`). */
export const DEFAULT_MESSAGE_TIMEOUT_MS = 5000

export interface StreamOptions {
  readonly idleTimeoutMs?: number
  readonly maxConnections?: number
  /** @default DEFAULT_MAX_PER_SOURCE */
  readonly maxPerSource?: number
  /** @default DEFAULT_HANDSHAKE_TIMEOUT_MS */
  readonly handshakeTimeoutMs?: number
  /** @default DEFAULT_MESSAGE_TIMEOUT_MS */
  readonly messageTimeoutMs?: number
  readonly maxOutstanding?: number
  readonly tls?: { cert: Buffer; key: Buffer }
}

export class StreamListener {
  readonly #log: Logger
  readonly #sink: MessageSink
  readonly #kind: TransportKind
  readonly #idleMs: number
  readonly #maxOutstanding: number
  readonly #maxPerSource: number
  readonly #messageMs: number
  readonly #server: Server
  readonly #conns = new Set<Socket>()
  /** Open connections (TLS: from the TCP accept on) per source address. */
  readonly #perSource = new Map<string, number>()
  #nextId = 1
  #local = ''
  /** Connections refused because `maxConnections` were open. */
  dropped = 0
  /** Connections refused because their source held `maxPerSource` already. */
  droppedPerSource = 0
  /** Connections closed because a message or the TLS handshake did not complete in time. */
  timedOut = 0

  constructor(deps: { log: Logger; sink: MessageSink }, opts: StreamOptions = {}) {
    this.#log = deps.log
    this.#sink = deps.sink
    this.#kind = opts.tls ? 'tls' : 'tcp'
    this.#idleMs = opts.idleTimeoutMs ?? 10_000
    this.#maxOutstanding = opts.maxOutstanding ?? 256
    this.#maxPerSource = opts.maxPerSource ?? DEFAULT_MAX_PER_SOURCE
    this.#messageMs = opts.messageTimeoutMs ?? DEFAULT_MESSAGE_TIMEOUT_MS
    const onConn = (s: Socket): void => this.#accept(s)
    this.#server = opts.tls
      ? createTlsServer(
          {
            cert: opts.tls.cert,
            key: opts.tls.key,
            minVersion: 'TLSv1.2',
            handshakeTimeout: opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
          },
          onConn,
        )
      : createTcpServer({ noDelay: true }, onConn)
    this.#server.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS
    // Raw TCP accept (for TLS: before the handshake): the per-source cap applies from the first moment.
    this.#server.on('connection', (sock: Socket) => this.#admit(sock))
    this.#server.on('tlsClientError', (err: Error) => {
      if (/timed? ?out/i.test(err.message)) this.timedOut++
      this.#log.debug('tls.client_error', { err: err.message })
    })
    // Node closes connections beyond maxConnections at once; count them so the limit shows in metrics and logs.
    this.#server.on('drop', (d) => {
      this.dropped++
      if (this.dropped === 1 || this.#log.enabled('debug'))
        this.#log.warn(`${this.#kind}.max_connections`, { limit: this.#server.maxConnections, peer: d?.remoteAddress })
    })
  }

  get connections(): number {
    return this.#conns.size
  }

  listen(host: string, port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen({ host, port, exclusive: true }, () => {
        this.#server.off('error', reject)
        this.#server.on('error', (err) => this.#log.warn(`${this.#kind}.error`, { err: err.message }))
        const a = this.#server.address()
        const p = typeof a === 'object' && a ? a.port : port
        this.#local = `${isIPv6(host) ? `[${host}]` : host}:${p}`
        resolve(this.#local)
      })
    })
  }

  /** Stops accepting and closes every connection. */
  close(): Promise<void> {
    for (const s of this.#conns) s.destroy()
    return new Promise((resolve) => this.#server.close(() => resolve()))
  }

  #admit(sock: Socket): void {
    const src = sock.remoteAddress ?? ''
    const n = this.#perSource.get(src) ?? 0
    if (n >= this.#maxPerSource) {
      this.droppedPerSource++
      if (this.droppedPerSource === 1 || this.#log.enabled('debug'))
        this.#log.warn(`${this.#kind}.max_connections_per_source`, { limit: this.#maxPerSource, peer: src })
      sock.destroy()
      return
    }
    this.#perSource.set(src, n + 1)
    sock.once('close', () => {
      const m = (this.#perSource.get(src) ?? 1) - 1
      if (m <= 0) this.#perSource.delete(src)
      else this.#perSource.set(src, m)
    })
  }

  #accept(sock: Socket | TLSSocket): void {
    this.#conns.add(sock)
    sock.setNoDelay(true)
    const peer: PeerInfo = {
      transport: this.#kind,
      address: sock.remoteAddress ?? '',
      port: sock.remotePort ?? 0,
      // The address this connection arrived on (not the listener's, which may be a wildcard): the server answers
      // with it when it advertises no fixed address (src/server/advertise.ts).
      local: sock.localAddress
        ? `${isIPv6(sock.localAddress) ? `[${sock.localAddress}]` : sock.localAddress}:${sock.localPort}`
        : this.#local,
    }
    const deframer = new TcpDeframer()
    let outstanding = 0
    let idleMs = this.#idleMs
    let closed = false
    let paused = false
    const closeFns: (() => void)[] = []
    const armIdle = (): void => {
      sock.setTimeout(outstanding === 0 && idleMs > 0 ? idleMs : 0)
    }
    const conn: StreamConnection = {
      id: this.#nextId++,
      peer,
      state: new Map(),
      // One write of one buffer: cork + two writes cost a writev and its bookkeeping per message (bench/notify).
      send: (msg) => {
        if (closed || sock.destroyed) return false
        sock.write(frameTcp(msg))
        return true
      },
      sendFramed: (frame) => {
        if (closed || sock.destroyed) return false
        sock.write(frame)
        return true
      },
      // TLS octets must pass through the TLS socket's encryption: never direct.
      ...(this.#kind === 'tcp'
        ? {
            directFd: () => {
              if (closed || !sock.writable || sock.writableLength !== 0) return -1
              const h = (sock as unknown as { _handle?: { fd?: number; writeQueueSize?: number } | null })._handle
              return h && h.writeQueueSize === 0 && typeof h.fd === 'number' && h.fd >= 0 ? h.fd : -1
            },
          }
        : {}),
      get queued() {
        return sock.writableLength
      },
      setIdleTimeout: (ms) => {
        idleMs = ms
        armIdle()
      },
      close: () => {
        sock.end()
      },
      onClose: (fn) => {
        if (closed) fn()
        else closeFns.push(fn)
      },
      get closed() {
        return closed
      },
    }
    armIdle()
    sock.on('timeout', () => {
      this.#log.debug('stream.idle_close', { id: conn.id, peer: peer.address })
      sock.end()
    })
    sock.on('error', (err) => this.#log.debug('stream.error', { id: conn.id, err: err.message }))
    sock.on('close', () => {
      closed = true
      this.#conns.delete(sock)
      for (const fn of closeFns.splice(0)) {
        try {
          fn()
        } catch (e) {
          this.#log.error('stream.on_close_failed', { err: String(e) })
        }
      }
    })
    let messageTimer: NodeJS.Timeout | undefined
    const onMessageTimeout = (): void => {
      messageTimer = undefined
      this.timedOut++
      this.#log.debug('stream.message_timeout', { id: conn.id, peer: peer.address, ms: this.#messageMs })
      sock.destroy()
    }
    sock.once('close', () => clearTimeout(messageTimer))
    sock.on('data', (chunk: Buffer) => {
      const msgs = deframer.push(chunk)
      for (const msg of msgs) {
        outstanding++
        let answered = false
        const done = (): void => {
          if (answered) return
          answered = true
          outstanding--
          if (paused && outstanding < this.#maxOutstanding) {
            paused = false
            sock.resume()
          }
          armIdle()
        }
        const ctx: InboundContext = {
          peer,
          connection: conn,
          reply: (out) => {
            if (out) conn.send(out)
            done()
          },
          send: (out) => void conn.send(out),
        }
        armIdle()
        this.#sink(Buffer.from(msg), ctx)
      }
      // A started message must finish within messageTimeoutMs of its first octet (not of the last one).
      if (deframer.buffered === 0) {
        clearTimeout(messageTimer)
        messageTimer = undefined
      } else if (msgs.length > 0 || messageTimer === undefined) {
        clearTimeout(messageTimer)
        messageTimer = this.#messageMs > 0 ? setTimeout(onMessageTimeout, this.#messageMs) : undefined
      }
      if (outstanding >= this.#maxOutstanding && !paused) {
        paused = true
        sock.pause()
      }
    })
  }
}
