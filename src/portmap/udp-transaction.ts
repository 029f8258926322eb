// Request/response over UDP with the RFC 6886 3.1 retransmission schedule, shared by NAT-PMP and PCP:
// send, wait `initialMs`, resend, doubling the wait each time, `maxTries` sends in all, then give up after
// one more doubled wait. (RFC 6887 8.1.1 starts PCP at 3 s; the issue asks for 250 ms for both.)

import type { Clock, TimerHandle } from '../io/clock.js'
import type { DatagramSocket, RemoteInfo } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import { PortmapAbortedError, PortmapTimeoutError, PortmapWireError } from './errors.js'
import type { AddrPort, PortmapProtocol, RetrySchedule } from './types.js'

/** Returns the decoded answer, or undefined when the datagram is not the answer to this request. */
export type ResponseMatcher<T> = (msg: Buffer, from: RemoteInfo) => T | undefined

interface Pending {
  readonly match: ResponseMatcher<unknown>
  readonly resolve: (v: unknown) => void
  readonly reject: (e: unknown) => void
  timer: TimerHandle | undefined
}

/** Wait after send number `n` (1-based): initialMs * 2^(n-1). */
export function retransmitDelayMs(schedule: RetrySchedule, n: number): number {
  return schedule.initialMs * 2 ** (n - 1)
}

export class UdpTransaction {
  readonly #clock: Clock
  readonly #log: Logger
  readonly #socket: DatagramSocket
  readonly #protocol: PortmapProtocol
  readonly #server: AddrPort
  #pending: Pending | undefined
  /** Datagrams dropped: unparseable, from elsewhere, or not answering the pending request. */
  drops = 0
  /** Requests sent, retransmissions included. */
  sends = 0

  constructor(
    deps: { clock: Clock; log: Logger; socket: DatagramSocket },
    protocol: PortmapProtocol,
    server: AddrPort,
  ) {
    this.#clock = deps.clock
    this.#log = deps.log
    this.#socket = deps.socket
    this.#protocol = protocol
    this.#server = server
    this.#socket.onMessage((msg, from) => this.#onMessage(msg, from))
  }

  get server(): AddrPort {
    return this.#server
  }

  request<T>(payload: Buffer, match: ResponseMatcher<T>, schedule: RetrySchedule): Promise<T> {
    if (this.#pending) return Promise.reject(new Error(`${this.#protocol}: request already in flight`))
    return new Promise<T>((resolve, reject) => {
      const p: Pending = { match, resolve: resolve as (v: unknown) => void, reject, timer: undefined }
      this.#pending = p
      let n = 0
      const send = (): void => {
        if (this.#pending !== p) return
        if (n === schedule.maxTries) {
          this.#pending = undefined
          reject(new PortmapTimeoutError(this.#protocol, n))
          return
        }
        n++
        this.sends++
        this.#socket.send(payload, 0, payload.length, this.#server.port, this.#server.address)
        p.timer = this.#clock.setTimeout(send, retransmitDelayMs(schedule, n))
      }
      send()
    })
  }

  /** Fails the request in flight (client closed, network changed). */
  abort(): void {
    const p = this.#pending
    if (!p) return
    this.#pending = undefined
    this.#clock.clearTimeout(p.timer)
    p.reject(new PortmapAbortedError(this.#protocol))
  }

  #onMessage(msg: Buffer, from: RemoteInfo): void {
    const p = this.#pending
    if (!p || from.address !== this.#server.address || from.port !== this.#server.port) {
      this.#drop('unexpected', from)
      return
    }
    let v: unknown
    try {
      v = p.match(msg, from)
    } catch (e) {
      if (e instanceof PortmapWireError) {
        this.#drop(e.message, from)
        return
      }
      this.#pending = undefined
      this.#clock.clearTimeout(p.timer)
      p.reject(e)
      return
    }
    if (v === undefined) {
      this.#drop('not-matching', from)
      return
    }
    this.#pending = undefined
    this.#clock.clearTimeout(p.timer)
    p.resolve(v)
  }

  #drop(reason: string, from: RemoteInfo): void {
    this.drops++
    if (this.#log.enabled('debug')) this.#log.debug(`${this.#protocol}.drop`, { reason, from: from.address })
  }
}
