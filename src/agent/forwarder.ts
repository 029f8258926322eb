// Forwarding for the local resolver (resolver.ts): when the agent has put its resolver in /etc/resolv.conf
// (system-resolver.ts), every name outside the user's domain must still resolve, so those queries go, unchanged
// but for their ID, to the nameservers the machine had before (RFC 1035 7.1: a stub that forwards to a full
// resolver). One fresh, connected UDP socket per query (a random source port, and only the upstream's own
// replies reach it: RFC 5452 section 9's defences against spoofed answers, with a new random ID); over TCP
// (RFC 7766) when the client asked over TCP or the UDP answer came back truncated. Upstreams are tried in the
// order resolv.conf lists them, each with its own timeout, as glibc does.
import { randomInt } from 'node:crypto'
import dgram from 'node:dgram'
import net from 'node:net'

/** Per upstream and attempt; glibc's default is 5 s, but a dead first server should not stall every lookup. */
export const FORWARD_TIMEOUT_MS = 2000
/** Queries being forwarded at once; more are dropped (counted): the client retries. */
export const FORWARD_MAX_INFLIGHT = 256
const TCP_LEN = 2
const ID_LEN = 2
/** The TC bit: octet 2 of the header, 0x02 (RFC 1035 4.1.1). */
const FLAGS1_OFF = 2
const TC_MASK = 0x02

export interface Upstream {
  readonly address: string
  readonly port: number
}

export interface ForwarderCounters {
  forwarded: number
  answered: number
  timeouts: number
  dropped: number
}

export class Forwarder {
  readonly #upstreams: () => readonly Upstream[]
  readonly #timeoutMs: number
  readonly counters: ForwarderCounters = { forwarded: 0, answered: 0, timeouts: 0, dropped: 0 }
  #inflight = 0
  readonly #open = new Set<{ close(): void }>()

  constructor(opts: { upstreams: () => readonly Upstream[]; timeoutMs?: number }) {
    this.#upstreams = opts.upstreams
    this.#timeoutMs = opts.timeoutMs ?? FORWARD_TIMEOUT_MS
  }

  get enabled(): boolean {
    return this.#upstreams().length > 0
  }

  /** The upstream's answer to `query` with the client's ID put back, or undefined when none answered. */
  async forward(query: Buffer, tcp: boolean): Promise<Buffer | undefined> {
    if (query.length < ID_LEN + 1) return undefined
    if (this.#inflight >= FORWARD_MAX_INFLIGHT) {
      this.counters.dropped++
      return undefined
    }
    this.#inflight++
    this.counters.forwarded++
    try {
      const clientId = query.readUInt16BE(0)
      for (const u of this.#upstreams()) {
        const q = Buffer.from(query)
        const id = randomInt(0x10000)
        q.writeUInt16BE(id, 0)
        let r = tcp ? await this.#tcp(q, u) : await this.#udp(q, u)
        if (r && !tcp && (r[FLAGS1_OFF] ?? 0) & TC_MASK) r = (await this.#tcp(q, u)) ?? r
        if (!r || r.length < ID_LEN || r.readUInt16BE(0) !== id) continue
        r.writeUInt16BE(clientId, 0)
        this.counters.answered++
        return r
      }
      return undefined
    } finally {
      this.#inflight--
    }
  }

  close(): void {
    for (const s of this.#open) s.close()
    this.#open.clear()
  }

  #udp(q: Buffer, u: Upstream): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const s = dgram.createSocket(net.isIPv6(u.address.replace(/%.*$/, '')) ? 'udp6' : 'udp4')
      const h = { close: () => finish(undefined) }
      let done = false
      const finish = (r: Buffer | undefined): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        this.#open.delete(h)
        s.close()
        resolve(r)
      }
      const timer = setTimeout(() => {
        this.counters.timeouts++
        finish(undefined)
      }, this.#timeoutMs)
      this.#open.add(h)
      s.on('error', () => finish(undefined))
      s.on('message', (m) => {
        if (m.length >= ID_LEN && m.readUInt16BE(0) === q.readUInt16BE(0)) finish(m)
      })
      s.connect(u.port, u.address, () => s.send(q, (e) => e && finish(undefined)))
    })
  }

  #tcp(q: Buffer, u: Upstream): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const s = net.connect({ host: u.address, port: u.port })
      const h = { close: () => finish(undefined) }
      let done = false
      let buf = Buffer.alloc(0)
      const finish = (r: Buffer | undefined): void => {
        if (done) return
        done = true
        this.#open.delete(h)
        s.destroy()
        resolve(r)
      }
      this.#open.add(h)
      s.setTimeout(this.#timeoutMs, () => {
        this.counters.timeouts++
        finish(undefined)
      })
      s.on('error', () => finish(undefined))
      s.on('close', () => finish(undefined))
      s.on('connect', () => {
        const framed = Buffer.alloc(TCP_LEN + q.length)
        framed.writeUInt16BE(q.length, 0)
        q.copy(framed, TCP_LEN)
        s.write(framed)
      })
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c])
        if (buf.length >= TCP_LEN && buf.length >= TCP_LEN + buf.readUInt16BE(0))
          finish(Buffer.from(buf.subarray(TCP_LEN, TCP_LEN + buf.readUInt16BE(0))))
      })
    })
  }
}
