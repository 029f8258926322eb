// The IKEv2 engine (RFC 7296): one per host. It owns the table of IKE SAs keyed by our SPI, receives
// datagrams from an IkeTransport, answers IKE_SA_INIT statelessly with COOKIE when too many SAs are
// half-open (2.6), and emits Child SA keys for the ESP data plane. The exchanges themselves live in
// exchange-init.ts (IKE_SA_INIT + IKE_AUTH), exchange-child.ts (CREATE_CHILD_SA) and
// exchange-info.ts (INFORMATIONAL: DPD, Delete, MOBIKE).

export type { IkeEngineOpts, IkeStats, ResolvedOpts } from './options.js'

import type { Clock, TimerHandle } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import type { Random } from '../io/random.js'
import { ExchangeType, HeaderFlag, IKE_SPI_LEN, NotifyType } from './constants.js'
import { IkeWireError } from './errors.js'
import { createChild, handleChildRequest, rekeyChild, rekeyIke } from './exchange-child.js'
import { deleteIkeSa, dpd, handleInfoRequest, mobikeUpdate } from './exchange-info.js'
import { handleAuthRequest, handleInitRequest, initiate } from './exchange-init.js'
import { decodeMessage, encodeMessage, type IkeMessage, isResponse, majorVersion } from './message.js'
import { CookieJar } from './nat.js'
import { type IkeEngineOpts, type IkeStats, newStats, type ResolvedOpts, resolveOpts } from './options.js'
import type { Payload } from './payloads.js'
import type { ChildSa, IkeSa, IkeSaDeps } from './sa.js'
import type { ChildSaKeys, Endpoint, IkeEvents, IkeSaSummary, IkeTransport, PeerInfo } from './types.js'
import { notify } from './util.js'
import { childSaKeys, ikeSaSummary } from './views.js'

export interface IkeEngineDeps {
  readonly transport: IkeTransport
  readonly clock: Clock
  readonly random: Random
  readonly log: Logger
}

const NONCE_LEN = 32
const CHILD_SPI_MIN = 0x100
const COOKIE_ROTATE_MS = 60_000
const OUTBOUND_SWITCH_MS = 5_000

export class IkeEngine {
  readonly deps: IkeEngineDeps
  readonly opts: ResolvedOpts
  readonly events: IkeEvents
  readonly stats: IkeStats = newStats()
  readonly cookies: CookieJar
  /** IKE SAs by our SPI (hex). */
  readonly sas = new Map<string, IkeSa>()
  /** Half-open responder SAs by "address:port:SPIi" (retransmitted IKE_SA_INIT). */
  readonly halfOpen = new Map<string, IkeSa>()
  /** Child SA inbound SPIs in use. */
  readonly childSpis = new Set<number>()
  readonly #connecting = new Map<string, Promise<ChildSaKeys>>()
  readonly #timers = new Set<TimerHandle>()
  /** Callers of wait() still waiting: close() lets them go, so nothing awaits a timer that will never fire. */
  readonly #waiting = new Set<() => void>()
  #closed = false

  constructor(deps: IkeEngineDeps, opts: IkeEngineOpts, events: IkeEvents = {}) {
    this.deps = deps
    this.events = events
    this.opts = resolveOpts(opts)
    if (this.opts.auth === 'signature' && !this.opts.hostKey) throw new TypeError('signature auth needs a hostKey')
    this.cookies = new CookieJar(deps.random)
    deps.transport.onMessage((buf, from) => this.receive(buf, from))
    this.#every(COOKIE_ROTATE_MS, () => this.cookies.rotate())
    if (this.opts.revalidateMs > 0) this.#every(this.opts.revalidateMs, () => void this.revalidate())
  }

  #every(ms: number, fn: () => void): void {
    const tick = (): void => {
      this.#timers.delete(h)
      if (this.#closed) return
      fn()
      h = this.deps.clock.setTimeout(tick, ms)
      this.#timers.add(h)
    }
    let h = this.deps.clock.setTimeout(tick, ms)
    this.#timers.add(h)
  }

  // ---- public API ----

  /**
   * Makes sure an IKE SA with a Child SA exists to `peerId` (initiating one if needed; concurrent calls
   * share the attempt). Resolves with the Child SA keys, which were also passed to events.childUp.
   */
  connect(peerId: string, endpoint?: Endpoint): Promise<ChildSaKeys> {
    const key = peerId.toLowerCase()
    const have = this.findSa(key)
    const child = have?.children.find((c) => !c.retiring)
    if (have && child) return Promise.resolve(this.childKeys(have, child))
    const running = this.#connecting.get(key)
    if (running) return running
    const p = (have ? createChild(this, have) : initiate(this, key, endpoint)).finally(() =>
      this.#connecting.delete(key),
    )
    this.#connecting.set(key, p)
    return p
  }

  /** Rekeys the newest Child SA with the peer (CREATE_CHILD_SA, PFS when enabled). */
  async rekeyChild(peerId: string): Promise<ChildSaKeys> {
    const sa = this.#need(peerId)
    const child = [...sa.children].reverse().find((c) => !c.retiring)
    if (!child) throw new Error(`no Child SA with ${peerId}`)
    return rekeyChild(this, sa, child)
  }

  /** Rekeys the IKE SA with the peer (CREATE_CHILD_SA, new KE), moving its Child SAs over. */
  async rekeyIke(peerId: string): Promise<void> {
    await rekeyIke(this, this.#need(peerId))
  }

  /** Liveness check: an empty INFORMATIONAL; false (and the SA deleted) when the peer does not answer. */
  async dpd(peerId: string): Promise<boolean> {
    return dpd(this, this.#need(peerId))
  }

  /** Deletes the IKE SA (and so its Child SAs) with the peer, telling the peer. */
  async disconnect(peerId: string, reason = 'disconnect'): Promise<void> {
    const sa = this.findSa(peerId)
    if (sa) await deleteIkeSa(this, sa, reason)
  }

  /** Our address changed: tell every MOBIKE peer (RFC 4555 UPDATE_SA_ADDRESSES) at once. */
  async updateAddresses(): Promise<void> {
    const sas = [...this.sas.values()].filter((s) => s.state.kind === 'established' && s.peerMobike)
    await Promise.allSettled(sas.map((s) => mobikeUpdate(this, s)))
  }

  /** Looks every established peer up again; deletes SAs whose peer is gone or whose key was removed. */
  async revalidate(): Promise<void> {
    for (const sa of [...this.sas.values()]) {
      if (sa.state.kind !== 'established' || !sa.peerId) continue
      let info: PeerInfo | undefined
      try {
        info = await this.opts.lookupPeer(sa.peerId)
      } catch {
        continue
      }
      if (!stillTrusted(sa, info)) {
        this.stats.revoked++
        this.deps.log.info('ike.revoked', { peer: sa.peerId })
        await deleteIkeSa(this, sa, 'revoked').catch(() => {})
      }
    }
  }

  list(): IkeSaSummary[] {
    return [...this.sas.values()].filter((s) => s.state.kind === 'established').map((s) => this.summary(s))
  }

  /**
   * Stops the engine. With `deletePeers` every established IKE SA is deleted at the peer first (waiting at most
   * about 2 s), so peers drop their SAs at once instead of after dead peer detection.
   */
  async close(opts: { deletePeers?: boolean } = {}): Promise<void> {
    if (opts.deletePeers && !this.#closed) {
      const up = [...this.sas.values()].filter((s) => s.state.kind === 'established')
      await Promise.allSettled(up.map((s) => deleteIkeSa(this, s, 'shutdown')))
    }
    this.#closed = true
    for (const t of this.#timers) this.deps.clock.clearTimeout(t)
    this.#timers.clear()
    for (const done of [...this.#waiting]) done()
    for (const sa of [...this.sas.values()]) this.dropSa(sa, 'shutdown')
    this.halfOpen.clear()
  }

  // ---- internals shared with the exchange modules ----

  /** Resolves after `ms` on the engine's clock, or as soon as the engine closes (callers check `closed`). */
  wait(ms: number): Promise<void> {
    if (this.#closed) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        this.#timers.delete(h)
        this.#waiting.delete(done)
        resolve()
      }
      const h = this.deps.clock.setTimeout(done, ms)
      this.#timers.add(h)
      this.#waiting.add(done)
    })
  }

  get closed(): boolean {
    return this.#closed
  }

  saDeps(): IkeSaDeps {
    return { clock: this.deps.clock, send: (b, to) => this.send(b, to), retransmit: this.opts.retransmit }
  }

  send(buf: Buffer, to: Endpoint): void {
    if (!this.#closed) this.deps.transport.send(buf, to)
  }

  newIkeSpi(): Buffer {
    for (;;) {
      const s = this.deps.random.bytes(IKE_SPI_LEN)
      if (!s.every((x) => x === 0) && !this.sas.has(s.toString('hex'))) return s
    }
  }
  newChildSpi(): number {
    for (;;) {
      const n = this.deps.random.bytes(4).readUInt32BE(0)
      if (n >= CHILD_SPI_MIN && !this.childSpis.has(n)) {
        this.childSpis.add(n)
        return n
      }
    }
  }
  nonce(): Buffer {
    return this.deps.random.bytes(NONCE_LEN)
  }

  register(sa: IkeSa): void {
    this.sas.set(sa.ourSpi.toString('hex'), sa)
  }
  unregister(sa: IkeSa): void {
    const k = sa.ourSpi.toString('hex')
    if (this.sas.get(k) === sa) this.sas.delete(k)
  }

  /** The established IKE SA with a peer (the newest when a rekey left two). */
  findSa(peerId: string): IkeSa | undefined {
    const id = peerId.toLowerCase()
    let best: IkeSa | undefined
    for (const sa of this.sas.values())
      if (sa.state.kind === 'established' && sa.peerId === id && (!best || sa.establishedAtMs >= best.establishedAtMs))
        best = sa
    return best
  }
  #need(peerId: string): IkeSa {
    const sa = this.findSa(peerId)
    if (!sa) throw new Error(`no IKE SA with ${peerId}`)
    return sa
  }

  childKeys(sa: IkeSa, c: ChildSa, replaces?: number): ChildSaKeys {
    return childSaKeys(sa, c, this.opts.localUla, replaces)
  }

  summary(sa: IkeSa): IkeSaSummary {
    return ikeSaSummary(sa)
  }

  /**
   * Adds a Child SA to `sa`, tells the data plane, and schedules its rekey. With `deferOutbound` (we answered
   * a rekey) only the inbound half is used at first: outbound moves over when the peer deletes the old SA,
   * or after OUTBOUND_SWITCH_MS, so no packet reaches the peer before it has installed the new SA.
   */
  addChild(sa: IkeSa, c: ChildSa, replaces?: number, deferOutbound = false): ChildSaKeys {
    sa.children.push(c)
    this.stats.childEstablished++
    const keys = { ...this.childKeys(sa, c, replaces), ...(deferOutbound ? { deferOutbound: true } : {}) }
    this.deps.log.info('ike.child.up', {
      peer: sa.peerId,
      spiIn: c.spiIn,
      spiOut: c.spiOut,
      alg: keys.alg,
      esn: c.suite.esn,
      deferOutbound,
    })
    this.events.childUp?.(keys)
    if (deferOutbound) {
      c.outboundPending = true
      sa.after(OUTBOUND_SWITCH_MS, () => this.switchOutbound(sa, c))
    }
    this.scheduleChildRekey(sa, c)
    return keys
  }

  /** Tells the data plane to send on `c` (after a deferred install). */
  switchOutbound(sa: IkeSa, c: ChildSa): void {
    if (!c.outboundPending || !sa.children.includes(c)) return
    c.outboundPending = false
    this.events.childOutbound?.(this.childKeys(sa, c))
  }

  /** The outer endpoint of a peer moved (the data plane saw authenticated ESP from there behind a NAT). */
  setPeerEndpoint(peerId: string, remote: Endpoint): void {
    const sa = this.findSa(peerId)
    if (sa && !sa.peerMobike) sa.remote = remote
  }

  scheduleChildRekey(sa: IkeSa, c: ChildSa): void {
    const ms = jittered(this.opts.childRekeySec * 1000, this.deps.random)
    c.rekeyTimer = sa.after(ms, () => {
      if (!c.retiring && sa.state.kind === 'established')
        void rekeyChild(this, sa, c).catch((e) => this.deps.log.warn('ike.child.rekey_failed', { err: String(e) }))
    })
  }

  /** Removes Child SAs from `sa` and tells the data plane. */
  removeChild(sa: IkeSa, c: ChildSa, reason: string): void {
    const i = sa.children.indexOf(c)
    if (i < 0) return
    sa.children.splice(i, 1)
    sa.cancel(c.rekeyTimer)
    this.childSpis.delete(c.spiIn)
    this.deps.log.info('ike.child.down', { peer: sa.peerId, spiIn: c.spiIn, reason })
    this.events.childDown?.({ peerId: sa.peerId ?? '', spiIn: c.spiIn, spiOut: c.spiOut, reason })
    for (const next of sa.children) this.switchOutbound(sa, next)
  }

  /** The IKE SA is up: start its timers, announce it. */
  established(sa: IkeSa): void {
    sa.establishedAtMs = this.deps.clock.now()
    sa.lastInboundMs = this.deps.clock.monotonic()
    sa.apply({ type: 'auth-done', nowMs: sa.establishedAtMs })
    this.stats.ikeEstablished++
    this.deps.log.info('ike.sa.up', this.summary(sa) as unknown as Record<string, unknown>)
    this.events.ikeUp?.(this.summary(sa))
    this.scheduleIkeTimers(sa)
  }

  scheduleIkeTimers(sa: IkeSa): void {
    sa.after(jittered(this.opts.ikeRekeySec * 1000, this.deps.random), () => {
      if (sa.state.kind === 'established')
        void rekeyIke(this, sa).catch((e) => this.deps.log.warn('ike.rekey_failed', { err: String(e) }))
    })
    if (this.opts.dpdIntervalMs > 0) {
      const check = (): void => {
        if (sa.state.kind !== 'established') return
        const idle = this.deps.clock.monotonic() - sa.lastInboundMs
        if (idle >= this.opts.dpdIntervalMs && !sa.hasPending) void dpd(this, sa)
        sa.after(this.opts.dpdIntervalMs, check)
      }
      sa.after(this.opts.dpdIntervalMs, check)
    }
  }

  /** Forgets an IKE SA without telling the peer (dead peer, shutdown, superseded). */
  dropSa(sa: IkeSa, reason: string, keepChildren = false): void {
    const wasUp = sa.state.kind === 'established' || sa.state.kind === 'rekeyed'
    if (!keepChildren) for (const c of [...sa.children]) this.removeChild(sa, c, reason)
    sa.close(reason)
    this.unregister(sa)
    for (const [k, v] of this.halfOpen) if (v === sa) this.halfOpen.delete(k)
    if (wasUp && !keepChildren) {
      this.deps.log.info('ike.sa.down', { peer: sa.peerId, reason })
      this.events.ikeDown?.({ peerId: sa.peerId ?? '', reason })
    }
  }

  countHalfOpen(): number {
    return this.halfOpen.size
  }

  // ---- receive path ----

  /** Entry point for every IKE datagram (non-ESP marker already removed). Never throws. */
  receive(buf: Buffer, from: Endpoint): void {
    if (this.#closed) return
    this.stats.rxMessages++
    let msg: IkeMessage
    try {
      msg = decodeMessage(buf)
    } catch (e) {
      this.#dropMalformed(e, from)
      return
    }
    if (majorVersion(msg.header) !== 2) {
      this.stats.rxMalformed++
      return
    }
    try {
      this.#dispatch(msg, from)
    } catch (e) {
      this.#dropMalformed(e, from)
    }
  }

  #dropMalformed(e: unknown, from: Endpoint): void {
    this.stats.rxMalformed++
    if (!(e instanceof IkeWireError)) this.deps.log.warn('ike.rx.error', { from: from.address, err: String(e) })
    else if (this.deps.log.enabled('debug'))
      this.deps.log.debug('ike.rx.malformed', { from: from.address, field: e.field, offset: e.offset })
  }

  #dispatch(msg: IkeMessage, from: Endpoint): void {
    const h = msg.header
    const response = isResponse(h)
    if (h.exchangeType === ExchangeType.IKE_SA_INIT && !response) {
      handleInitRequest(this, msg, from)
      return
    }
    const fromInitiator = (h.flags & HeaderFlag.INITIATOR) !== 0
    const sa = this.sas.get((fromInitiator ? h.spiR : h.spiI).toString('hex'))
    const initResponse = h.exchangeType === ExchangeType.IKE_SA_INIT && response
    if (!sa || (!initResponse && !sa.peerSpi.equals(fromInitiator ? h.spiI : h.spiR))) {
      this.stats.rxUnknownSpi++
      return
    }
    if (response) {
      if (!sa.onResponse(msg)) this.stats.rxOutOfWindow++
      else sa.lastInboundMs = this.deps.clock.monotonic()
      return
    }
    this.#onRequest(sa, msg, from)
  }

  #onRequest(sa: IkeSa, msg: IkeMessage, from: Endpoint): void {
    const id = msg.header.messageId
    if (sa.lastResponse && id === sa.lastResponse.id) {
      this.stats.rxRetransmits++
      this.stats.txRetransmitsAnswered++
      this.send(sa.lastResponse.bytes, from)
      return
    }
    if (id !== sa.expectedId || sa.busyId === id) {
      this.stats.rxOutOfWindow++
      return
    }
    const opened = sa.decrypt(msg)
    if (!opened) {
      this.stats.rxBadIcv++
      return
    }
    sa.lastInboundMs = this.deps.clock.monotonic()
    sa.busyId = id
    this.#followPeer(sa, from)
    const et = msg.header.exchangeType
    if (opened.unsupportedCritical !== undefined) {
      sa.respond(et, id, [notify(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, Buffer.of(opened.unsupportedCritical))], from)
      return
    }
    const run = async (): Promise<void> => {
      switch (et) {
        case ExchangeType.IKE_AUTH:
          return handleAuthRequest(this, sa, opened.payloads, id, from)
        case ExchangeType.CREATE_CHILD_SA:
          return handleChildRequest(this, sa, opened.payloads, id, from)
        case ExchangeType.INFORMATIONAL:
          return handleInfoRequest(this, sa, opened.payloads, id, from)
        default:
          sa.respond(et, id, [notify(NotifyType.INVALID_SYNTAX)], from)
      }
    }
    run().catch((e) => {
      sa.busyId = undefined
      this.#dropMalformed(e, from)
    })
  }

  /**
   * RFC 7296 2.23: the initiator floats to the NAT-T port with IKE_AUTH, and behind a NAT a peer's mapping
   * may change; an authenticated request from a new address moves the SA there. With MOBIKE only
   * UPDATE_SA_ADDRESSES moves an established SA (RFC 4555 3.5).
   */
  #followPeer(sa: IkeSa, from: Endpoint): void {
    const same = from.address === sa.remote.address && from.port === sa.remote.port && from.via === sa.remote.via
    if (same) return
    if (sa.state.kind === 'init-replied') {
      sa.remote = from
      return
    }
    if (sa.state.kind !== 'established' || sa.peerMobike || !(sa.natRemote || sa.natLocal)) return
    sa.remote = from
    this.events.peerEndpoint?.({ peerId: sa.peerId ?? '', remote: from, via: 'nat' })
  }

  /** An unencrypted IKE_SA_INIT response carrying only a Notify (errors, COOKIE). */
  sendInitNotify(msg: IkeMessage, to: Endpoint, payloads: readonly Payload[]): void {
    const h = msg.header
    const bytes = encodeMessage(
      {
        spiI: h.spiI,
        spiR: Buffer.alloc(IKE_SPI_LEN),
        exchangeType: h.exchangeType,
        messageId: 0,
        flags: HeaderFlag.RESPONSE,
      },
      payloads,
    )
    this.send(bytes, to)
  }
}

/** ±10 % so both peers do not rekey at the same moment (RFC 7296 2.8.1). */
function jittered(ms: number, random: Random): number {
  const spread = Math.floor(ms / 10)
  return ms - spread + (spread > 0 ? random.int(2 * spread) : 0)
}

function stillTrusted(sa: IkeSa, info: PeerInfo | undefined): boolean {
  if (!info) return false
  const used = sa.authKey
  if (used === 'psk' || !used) return true
  return (info.publicKeys ?? []).some((k) => k.equals(used))
}
