// One IKE SA (RFC 7296 2.1-2.3): its lifecycle, keys, message IDs with a window of one in each
// direction, retransmission with exponential back-off (2.1, 2.4), the responder's cache of its last
// response (2.1), and its Child SAs.
//
//  initiator:  [init-sent] --IKE_SA_INIT resp--> [auth-sent] --IKE_AUTH resp ok--> [established]
//  responder:  (IKE_SA_INIT req) --> [init-replied] --IKE_AUTH req ok--> [established]
//  [established] --rekeyed (CREATE_CHILD_SA for the IKE SA)--> [rekeyed] --delete--> [dead]
//  any --auth failure | retransmissions exhausted | Delete--> [dead]

import type { KeyObject } from 'node:crypto'
import type { Clock, TimerHandle } from '../io/clock.js'
import { HeaderFlag, IKE_SPI_LEN } from './constants.js'
import type { IkeSaKeys } from './crypto.js'
import { IkeTimeoutError, IkeWireError } from './errors.js'
import { decryptMessage, encodeEncryptedMessage, encodeMessage, type HeaderFields, type IkeMessage } from './message.js'
import type { Payload } from './payloads.js'
import type { ChildSuite, IkeSuite } from './proposals.js'
import type { Endpoint, PeerInfo } from './types.js'

export type IkeSaState =
  | { readonly kind: 'init-sent'; readonly attempt: number }
  | { readonly kind: 'auth-sent' }
  | { readonly kind: 'init-replied'; readonly sinceMs: number }
  | { readonly kind: 'established'; readonly sinceMs: number }
  | { readonly kind: 'rekeyed'; readonly sinceMs: number }
  | { readonly kind: 'dead'; readonly reason: string }

export type IkeSaEvent =
  | { readonly type: 'init-retry' }
  | { readonly type: 'init-done' }
  | { readonly type: 'auth-done'; readonly nowMs: number }
  | { readonly type: 'rekeyed'; readonly nowMs: number }
  | { readonly type: 'dead'; readonly reason: string }

/** The one transition function of an IKE SA (STYLE.md section 6). Invalid transitions keep the state. */
export function step(s: IkeSaState, e: IkeSaEvent): IkeSaState {
  if (s.kind === 'dead') return s
  switch (e.type) {
    case 'init-retry':
      return s.kind === 'init-sent' ? { kind: 'init-sent', attempt: s.attempt + 1 } : s
    case 'init-done':
      return s.kind === 'init-sent' ? { kind: 'auth-sent' } : s
    case 'auth-done':
      return s.kind === 'auth-sent' || s.kind === 'init-replied' ? { kind: 'established', sinceMs: e.nowMs } : s
    case 'rekeyed':
      return s.kind === 'established' ? { kind: 'rekeyed', sinceMs: e.nowMs } : s
    case 'dead':
      return { kind: 'dead', reason: e.reason }
  }
}

export interface ChildSa {
  readonly spiIn: number
  readonly spiOut: number
  readonly suite: ChildSuite
  readonly keyIn: Buffer
  readonly keyOut: Buffer
  readonly createdAtMs: number
  /** Set once a rekey or delete for it is under way, so timers do not start a second one. */
  retiring: boolean
  rekeyTimer?: TimerHandle
  /** Installed inbound only; outbound still on the SA it replaces (we answered the rekey). */
  outboundPending?: boolean
  /** Our CREATE_CHILD_SA rekeying this SA is in flight, with this Ni. */
  rekeyNi?: Buffer
  /** Our rekey of this SA got TEMPORARY_FAILURE and waits to be retried (RFC 7296 2.25). */
  rekeyWaiting?: boolean
  /** The peer rekeyed this SA while ours was in flight (2.8.1): its Ni, our Nr and the SA that made. */
  collision?: { peerNi: Buffer; ourNr: Buffer; created: ChildSa }
}

export interface Retransmit {
  readonly initialMs: number
  readonly factor: number
  readonly tries: number
}

interface Pending {
  readonly id: number
  readonly bytes: Buffer
  to: Endpoint
  tries: number
  timer: TimerHandle | undefined
  readonly resolve: (r: { payloads: Payload[]; msg: IkeMessage }) => void
  readonly reject: (e: Error) => void
  readonly encrypted: boolean
}

export interface IkeSaDeps {
  readonly clock: Clock
  readonly send: (buf: Buffer, to: Endpoint) => void
  readonly retransmit: Retransmit
}

const IV_COUNTER_LEN = 8

export class IkeSa {
  state: IkeSaState
  readonly initiator: boolean
  spiI: Buffer
  spiR: Buffer = Buffer.alloc(IKE_SPI_LEN)
  remote: Endpoint
  suite: IkeSuite | undefined
  keys: IkeSaKeys | undefined
  peer: PeerInfo | undefined
  /** The identity we expect (initiator) or learned (responder). */
  peerId: string | undefined
  ni: Buffer = Buffer.alloc(0)
  nr: Buffer = Buffer.alloc(0)
  initRequest: Buffer | undefined
  initResponse: Buffer | undefined
  natLocal = false
  natRemote = false
  peerMobike = false
  /** The peer key its AUTH verified with, or 'psk' (revalidation compares it with DNS). */
  authKey: KeyObject | 'psk' | undefined
  establishedAtMs = 0
  lastInboundMs = 0
  readonly children: ChildSa[] = []
  readonly timers = new Set<TimerHandle>()
  /** Our CREATE_CHILD_SA rekeying this IKE SA is in flight, with this Ni. */
  ikeRekeyNi: Buffer | undefined
  /** The peer rekeyed this IKE SA while ours was in flight (2.8.2): its Ni, our Nr and the SA that made. */
  ikeCollision: { peerNi: Buffer; ourNr: Buffer; next: IkeSa } | undefined
  /** Responder side: next request ID we expect, and the cached last response (2.1). */
  expectedId = 0
  lastResponse: { id: number; bytes: Buffer } | undefined
  /** A request with this ID is being processed (e.g. awaiting a key lookup): retransmits are dropped. */
  busyId: number | undefined
  readonly #deps: IkeSaDeps
  #nextId = 0
  #pending: Pending | undefined
  readonly #queue: (() => void)[] = []
  #iv = 0n

  constructor(deps: IkeSaDeps, initiator: boolean, spiI: Buffer, remote: Endpoint, state: IkeSaState) {
    this.#deps = deps
    this.initiator = initiator
    this.spiI = spiI
    this.remote = remote
    this.state = state
  }

  get ourSpi(): Buffer {
    return this.initiator ? this.spiI : this.spiR
  }
  get peerSpi(): Buffer {
    return this.initiator ? this.spiR : this.spiI
  }

  apply(e: IkeSaEvent): IkeSaState {
    this.state = step(this.state, e)
    return this.state
  }

  header(exchangeType: number, messageId: number, response: boolean): HeaderFields {
    return {
      spiI: this.spiI,
      spiR: this.spiR,
      exchangeType,
      messageId,
      flags: (this.initiator ? HeaderFlag.INITIATOR : 0) | (response ? HeaderFlag.RESPONSE : 0),
    }
  }

  #nextIv(): Buffer {
    const b = Buffer.alloc(IV_COUNTER_LEN)
    b.writeBigUInt64BE(this.#iv++, 0)
    return b
  }

  encrypt(exchangeType: number, messageId: number, response: boolean, payloads: readonly Payload[]): Buffer {
    if (!this.keys || !this.suite) throw new Error('IKE SA has no keys')
    const keymat = this.initiator ? this.keys.skEi : this.keys.skEr
    return encodeEncryptedMessage(
      this.header(exchangeType, messageId, response),
      payloads,
      { alg: this.suite.aead.alg, keymat },
      this.#nextIv(),
    )
  }

  /** Opens a message from the peer; undefined when the ICV fails. */
  decrypt(msg: IkeMessage): { payloads: Payload[]; unsupportedCritical: number | undefined } | undefined {
    if (!this.keys || !this.suite) return undefined
    const keymat = this.initiator ? this.keys.skEr : this.keys.skEi
    return decryptMessage(msg, { alg: this.suite.aead.alg, keymat })
  }

  /** Sends an encrypted request once the window (size 1) is free; resolves with the decrypted response. */
  request(exchangeType: number, payloads: readonly Payload[]): Promise<{ payloads: Payload[]; msg: IkeMessage }> {
    return new Promise((resolve, reject) => {
      const go = (): void => {
        if (this.state.kind === 'dead') {
          reject(new IkeTimeoutError('IKE SA is gone'))
          return
        }
        const id = this.#nextId++
        let bytes: Buffer
        try {
          bytes = this.encrypt(exchangeType, id, false, payloads)
        } catch (e) {
          reject(e as Error)
          this.#drain()
          return
        }
        this.#start({ id, bytes, to: this.remote, tries: 0, timer: undefined, resolve, reject, encrypted: true })
      }
      if (this.#pending) this.#queue.push(go)
      else go()
    })
  }

  /** IKE_SA_INIT (message ID 0, unencrypted). */
  requestInit(payloads: readonly Payload[], exchangeType: number): Promise<{ payloads: Payload[]; msg: IkeMessage }> {
    const bytes = encodeMessage(this.header(exchangeType, 0, false), payloads)
    this.initRequest = bytes
    this.#nextId = 1
    return new Promise((resolve, reject) => {
      this.#start({ id: 0, bytes, to: this.remote, tries: 0, timer: undefined, resolve, reject, encrypted: false })
    })
  }

  get hasPending(): boolean {
    return this.#pending !== undefined
  }

  #start(p: Pending): void {
    this.#pending = p
    this.#transmit(p)
  }

  #transmit(p: Pending): void {
    const { clock, retransmit } = this.#deps
    this.#deps.send(p.bytes, p.to)
    const delay = retransmit.initialMs * retransmit.factor ** p.tries
    p.timer = clock.setTimeout(() => {
      p.timer = undefined
      if (this.#pending !== p) return
      p.tries++
      if (p.tries > retransmit.tries) {
        this.#pending = undefined
        p.reject(new IkeTimeoutError(`no response to message ${p.id} after ${retransmit.tries} retransmissions`))
        this.#drain()
        return
      }
      p.to = this.remote
      this.#transmit(p)
    }, delay)
  }

  /** A response arrived: returns false when it does not match the outstanding request. */
  onResponse(msg: IkeMessage): boolean {
    const p = this.#pending
    if (!p || msg.header.messageId !== p.id) return false
    let payloads: Payload[]
    if (p.encrypted) {
      let opened: ReturnType<IkeSa['decrypt']>
      try {
        opened = this.decrypt(msg)
      } catch (e) {
        if (e instanceof IkeWireError) return false
        throw e
      }
      if (!opened) return false
      payloads = opened.payloads
    } else payloads = [...msg.payloads]
    this.#deps.clock.clearTimeout(p.timer)
    this.#pending = undefined
    p.resolve({ payloads, msg })
    this.#drain()
    return true
  }

  #drain(): void {
    const next = this.#queue.shift()
    if (next) next()
  }

  /** Encrypts, sends and caches a response to request `id`. */
  respond(exchangeType: number, id: number, payloads: readonly Payload[], to: Endpoint): void {
    const bytes = this.encrypt(exchangeType, id, true, payloads)
    this.lastResponse = { id, bytes }
    this.expectedId = id + 1
    this.busyId = undefined
    this.#deps.send(bytes, to)
  }

  /** Stops everything: the pending request fails, queued ones fail, timers stop. */
  close(reason: string): void {
    this.apply({ type: 'dead', reason })
    const p = this.#pending
    this.#pending = undefined
    if (p) {
      this.#deps.clock.clearTimeout(p.timer)
      p.reject(new IkeTimeoutError(reason))
    }
    for (const go of this.#queue.splice(0)) go()
    for (const t of this.timers) this.#deps.clock.clearTimeout(t)
    this.timers.clear()
    for (const c of this.children) this.#deps.clock.clearTimeout(c.rekeyTimer)
  }

  /** A one-shot timer owned by this SA (cleared on close). */
  after(ms: number, fn: () => void): TimerHandle {
    const h = this.#deps.clock.setTimeout(() => {
      this.timers.delete(h)
      fn()
    }, ms)
    this.timers.add(h)
    return h
  }
  cancel(h: TimerHandle | undefined): void {
    if (!h) return
    this.timers.delete(h)
    this.#deps.clock.clearTimeout(h)
  }
}
