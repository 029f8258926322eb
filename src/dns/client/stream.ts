// DNS over a byte stream: TCP (RFC 1035 4.2.2, RFC 7766) or TLS (RFC 7858). Each message is framed by a
// two-octet length. One DnsStream is one connection: a DNS Push session (RFC 8765), LLQ over TCP/TLS,
// or pipelined queries (request/response matched by message ID).

import net from 'node:net'
import tls from 'node:tls'
import { TcpDeframer } from '../tcp-framing.js'

const LEN_PREFIX = 2

export interface StreamTarget {
  readonly host: string
  readonly port: number
  /** DNS over TLS. `rejectUnauthorized: false` accepts a self-signed server certificate (then pin `fingerprint256`). */
  readonly tls?: { readonly servername?: string; readonly ca?: string | Buffer; readonly rejectUnauthorized?: boolean }
  /** SHA-256 fingerprint ("AB:CD:...") the server certificate must have, when set. */
  readonly fingerprint256?: string
  /** Source address to connect from (many connections to one server need several: one ephemeral port range each). */
  readonly localAddress?: string
}

export type StreamHandler = (msg: Buffer) => void

export class DnsStream {
  readonly #sock: net.Socket
  readonly #deframer = new TcpDeframer()
  #onMessage: StreamHandler = () => {}
  readonly #onClose: ((err?: Error) => void)[] = []
  #closed = false

  private constructor(sock: net.Socket) {
    this.#sock = sock
    sock.setNoDelay(true)
    sock.on('data', (d: Buffer) => this.#data(d))
    sock.on('error', (e) => this.#close(e))
    sock.on('close', () => this.#close())
  }

  /** Connects (and completes the TLS handshake); rejects on failure or after `timeoutMs`. */
  static connect(t: StreamTarget, timeoutMs = 5000): Promise<DnsStream> {
    return new Promise((resolve, reject) => {
      let done = false
      const sock: net.Socket = t.tls
        ? tls.connect({
            host: t.host,
            port: t.port,
            servername: t.tls.servername ?? (net.isIP(t.host) ? undefined : t.host),
            ...(t.tls.ca ? { ca: t.tls.ca } : {}),
            rejectUnauthorized: t.tls.rejectUnauthorized ?? true,
            ...(t.localAddress ? { localAddress: t.localAddress } : {}),
          })
        : net.connect({ host: t.host, port: t.port, ...(t.localAddress ? { localAddress: t.localAddress } : {}) })
      const timer = setTimeout(() => fail(new Error(`connect ${t.host}:${t.port} timed out`)), timeoutMs)
      const fail = (e: Error): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        sock.destroy()
        reject(e)
      }
      sock.once('error', fail)
      sock.once(t.tls ? 'secureConnect' : 'connect', () => {
        if (done) return
        if (t.fingerprint256 && t.tls) {
          const fp = (sock as tls.TLSSocket).getPeerCertificate().fingerprint256
          if (fp?.toUpperCase() !== t.fingerprint256.toUpperCase())
            return fail(new Error(`server certificate fingerprint ${fp} does not match`))
        }
        done = true
        clearTimeout(timer)
        sock.off('error', fail)
        resolve(new DnsStream(sock))
      })
    })
  }

  get closed(): boolean {
    return this.#closed
  }

  onMessage(h: StreamHandler): void {
    this.#onMessage = h
  }

  onClose(h: (err?: Error) => void): void {
    if (this.#closed) h()
    else this.#onClose.push(h)
  }

  send(msg: Buffer): void {
    if (this.#closed) return
    const len = Buffer.allocUnsafe(LEN_PREFIX)
    len.writeUInt16BE(msg.length, 0)
    this.#sock.write(Buffer.concat([len, msg]))
  }

  close(): void {
    this.#sock.end()
    this.#sock.destroy()
    this.#close()
  }

  #data(d: Buffer): void {
    for (const m of this.#deframer.push(d)) {
      try {
        this.#onMessage(m)
      } catch {
        // A handler error must not kill the read loop; handlers count their own drops.
      }
    }
  }

  #close(err?: Error): void {
    if (this.#closed) return
    this.#closed = true
    this.#sock.destroy()
    for (const h of this.#onClose.splice(0)) h(err)
  }
}
