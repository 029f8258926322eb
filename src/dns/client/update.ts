// RFC 2136 UPDATE client: TSIG-signed (RFC 8945), with the RFC 9664 update-lease option, sent over DNS over TLS
// (RFC 7858) when the user's domain advertises `_dnsupdate-tls._udp.DOMAIN`, else over UDP (TCP on truncation)
// to the target of `_dns-update._udp.DOMAIN` (RFC 6281 section 5.2), else to the bootstrap server itself.
//
// Discovery runs lazily before the first UPDATE and again after a failed one, so a server that moved (or a TLS
// listener that came up) is found without restarting the agent. A TLS failure is never silently downgraded to
// plain DNS: when the domain advertises TLS, updates go over TLS or fail. Responses must carry a valid TSIG
// signed with the same key (RFC 8945 5.3), else they are ignored like a forged datagram.

import type { Clock } from '../../io/clock.js'
import type { Logger } from '../../io/log.js'
import { type Random, SystemRandom } from '../../io/random.js'
import { extendedErrorText } from '../ede.js'
import { EdnsOptionCode, findOption } from '../edns.js'
import { decodeUpdateLease, encodeUpdateLease } from '../lease.js'
import { signMessage, type TsigKey, verifyMessage } from '../tsig.js'
import { Opcode, Rcode } from '../wire/header.js'
import { emptyMessage, type Message } from '../wire/message.js'
import { nameEqual } from '../wire/name.js'
import { type RR, RRClass, RRType } from '../wire/rr-table.js'
import { type Explained, explainRcode, explainTransport } from './explain.js'
import { exchange, isPlainStandIn, lookupSrv, queryMessage, type ServerAddr, type SrvTarget } from './query.js'

export interface UpdateRequest {
  /** The zone section (RFC 2136 2.3): the provider zone the user's domain sits in. */
  readonly zone: string
  /** Prerequisite section RRs (RFC 2136 2.4), already in their class ANY/NONE/IN forms. */
  readonly prereqs?: readonly RR[]
  /** Update section RRs (RFC 2136 2.5): class IN adds, class ANY deletes an RRset, class NONE deletes one RR. */
  readonly updates: readonly RR[]
  /** RFC 9664 lease to ask for; undefined sends no lease option (permanent records). */
  readonly leaseSec?: number
}

export interface UpdateResult {
  readonly rcode: number
  /** The lease the server granted (its echo of the option), or undefined when it sent none. */
  readonly leaseSec: number | undefined
  /** Where the update went: "tls:203.0.113.5:853", "udp:...", "tcp:...". */
  readonly via: string
}

/** What the publisher needs from an update client; tests use a fake. */
export interface UpdateSink {
  update(req: UpdateRequest): Promise<UpdateResult>
}

export type { TsigKey }

export interface UpdateClientOptions {
  /** The DNS service's bootstrap address (`--server`): discovery queries go here. */
  readonly bootstrap: { readonly host: string; readonly port: number }
  /** The user's domain, USER.ZONE. */
  readonly domain: string
  readonly key: TsigKey
  /** undefined: never use TLS. `insecure` accepts any certificate; `fingerprint256` pins one. */
  readonly tls?: { readonly ca?: Buffer; readonly insecure?: boolean; readonly fingerprint256?: string } | undefined
  /** Per-attempt timeout. @default 2000 */
  readonly timeoutMs?: number
  /** TSIG fudge (RFC 8945 5.2.3). @default 300 */
  readonly fudgeSec?: number
}

export class UpdateError extends Error {
  override readonly name = 'UpdateError'
  /** The response's RCODE (e.g. 9 NOTAUTH), or -1 when there was no response. */
  readonly code: number
  /** The TSIG error of the response (RFC 8945: 16 BADSIG, 17 BADKEY, 18 BADTIME), when it carried one. */
  readonly tsigError: number | undefined
  /** What the failure means and whether retrying can help (explain.ts). */
  readonly explained: Explained | undefined
  constructor(message: string, code: number, options?: { cause?: unknown; explained?: Explained; tsigError?: number }) {
    super(message, options)
    this.code = code
    this.tsigError = options?.tsigError
    this.explained = options?.explained
  }
}

export const UPDATE_TLS_SERVICE = '_dnsupdate-tls._udp'
export const UPDATE_SERVICE = '_dns-update._udp'
/** A target whose UPDATE failed is skipped this long when another one is listed. */
const FAILED_TARGET_MS = 30_000
/** RFC 1035 4.1.1: the message ID is 16 bits. */
const DNS_ID_SPACE = 0x10000

export class UpdateClient implements UpdateSink {
  readonly #clock: Clock
  readonly #log: Logger
  readonly #random: Random
  readonly #o: UpdateClientOptions
  readonly #domain: string
  #server: (ServerAddr & { readonly via: string }) | undefined
  #discovering: Promise<ServerAddr & { readonly via: string }> | undefined
  /** Servers (by `via`) whose UPDATE failed, skipped until the monotonic time given (RFC 2782: the next target). */
  readonly #failed = new Map<string, number>()
  /** How many targets the last discovery listed. */
  #targetCount = 1
  /** DNS servers learned from the plain update SRV answer, asked when the bootstrap does not answer (a cluster). */
  #lookupServers: ServerAddr[] = []
  updates = 0
  failures = 0
  /** Answers dropped because their TSIG did not verify. */
  badResponses = 0
  discoveries = 0
  /** The last failure, explained (cleared by a successful UPDATE); status shows it. */
  #lastError: (Explained & { readonly at: 'discovery' | 'update' }) | undefined
  /** The update server the SRV records named, when we fell back to the bootstrap address instead. */
  #advertised: string | undefined
  /** The last update server discovery found (kept after a failure, so status can say "found, TLS failed"). */
  #found: string | undefined

  /** `deps.random` supplies the UPDATE message IDs; it defaults to SystemRandom. */
  constructor(deps: { clock: Clock; log: Logger; random?: Random }, opts: UpdateClientOptions) {
    this.#clock = deps.clock
    this.#log = deps.log
    this.#random = deps.random ?? new SystemRandom()
    this.#o = opts
    this.#domain = opts.domain.endsWith('.') ? opts.domain : `${opts.domain}.`
  }

  #bootstrap(): ServerAddr {
    return { host: this.#o.bootstrap.host, port: this.#o.bootstrap.port, transport: 'udp' }
  }

  /** Finds the update server by SRV (TLS first), caching it until an UPDATE fails. */
  discover(): Promise<ServerAddr & { readonly via: string }> {
    if (this.#server) return Promise.resolve(this.#server)
    this.#discovering ??= this.#discover().finally(() => {
      this.#discovering = undefined
    })
    return this.#discovering
  }

  async #srv(name: string, opts: { timeoutMs: number; attempts: number }): Promise<SrvTarget[]> {
    let last: unknown
    const others = this.#lookupServers
    for (const server of [this.#bootstrap(), ...others]) {
      try {
        return await lookupSrv(server, name, others.length ? { ...opts, attempts: 1 } : opts)
      } catch (e) {
        last = e
      }
    }
    throw last
  }

  async #discover(): Promise<ServerAddr & { readonly via: string }> {
    this.discoveries++
    const boot = this.#bootstrap()
    const opts = { timeoutMs: this.#o.timeoutMs ?? 2000, attempts: 2 }
    const tls = this.#o.tls
    const [tlsAll, plainAll] = await Promise.all([
      tls ? this.#srv(`${UPDATE_TLS_SERVICE}.${this.#domain}`, opts) : [],
      this.#srv(`${UPDATE_SERVICE}.${this.#domain}`, opts),
    ])
    const hostOf = (srv: { addrs: readonly string[] }): string =>
      srv.addrs.find((a) => !a.includes(':')) ?? srv.addrs[0] ?? boot.host
    this.#lookupServers = plainAll
      .filter((t) => t.port !== 0 && t.addrs.length > 0)
      .map((t) => ({ host: hostOf(t), port: t.port, transport: 'udp' as const }))
      .filter((a) => a.host !== boot.host || a.port !== boot.port)
    const now = this.#clock.monotonic()
    for (const [via, until] of this.#failed) if (until <= now) this.#failed.delete(via)
    const candidates: (ServerAddr & { via: string })[] = []
    for (const tlsSrv of tlsAll) {
      const plainSrv = plainAll.find((p) => p.target.toLowerCase() === tlsSrv.target.toLowerCase())
      if (!tls || tlsSrv.port === 0 || isPlainStandIn(tlsSrv, plainSrv)) continue
      const host = hostOf(tlsSrv)
      candidates.push({
        host,
        port: tlsSrv.port,
        transport: 'tls',
        tls: {
          servername: tlsSrv.target.replace(/\.$/, ''),
          ...(tls.ca ? { ca: tls.ca } : {}),
          rejectUnauthorized: !(tls.insecure || tls.fingerprint256),
        },
        ...(tls.fingerprint256 ? { fingerprint256: tls.fingerprint256 } : {}),
        via: `tls:${host}:${tlsSrv.port}`,
      })
    }
    if (candidates.length === 0)
      for (const plainSrv of plainAll) {
        if (plainSrv.port === 0) continue
        const host = hostOf(plainSrv)
        candidates.push({ host, port: plainSrv.port, transport: 'udp', via: `udp:${host}:${plainSrv.port}` })
      }
    // The first target that has not failed lately; when all have, the first (a retry beats giving up).
    const found = candidates.find((c) => !this.#failed.has(c.via)) ??
      candidates[0] ?? { ...boot, via: `udp:${boot.host}:${boot.port}` }
    this.#log.info('update.server', { via: found.via, targets: candidates.length })
    this.#targetCount = candidates.length
    this.#server = found
    this.#found = found.via
    return found
  }

  /**
   * Signs with the account key. A NOERROR answer counts only with a valid TSIG chained to our request MAC
   * (RFC 8945 5.3); others are ignored like forged datagrams. An error answer is taken even unsigned (BADKEY and
   * BADSIG responses are unsigned by design, RFC 8945 5.3.2): forging one costs us a retry, nothing more.
   */
  async #exchange(server: ServerAddr, msg: Message): Promise<Message> {
    let requestMac: Buffer | undefined
    const fudge = this.#o.fudgeSec ?? 300
    const key = this.#o.key
    return exchange(server, msg, {
      timeoutMs: this.#o.timeoutMs ?? 2000,
      // With other targets listed (a cluster), one unanswered attempt moves on to the next (RFC 2782): three 2 s
      // attempts at a killed node cost 6 s of the 5 s a failover may take (bench/cluster, failover over UDP: 8 s).
      attempts: this.#targetCount > 1 ? 1 : 3,
      encode: (m) => {
        const signed = signMessage(m, key, { timeSigned: Math.floor(this.#clock.now() / 1000), fudge })
        requestMac = signed.mac
        return signed.wire
      },
      check: (wire, m) => {
        if (m.rcode !== Rcode.NOERROR && m.rcode !== Rcode.NXDOMAIN) return
        const r = verifyMessage(wire, (n) => (nameEqual(n, key.name) ? key : undefined), {
          requestMac,
          now: Math.floor(this.#clock.now() / 1000),
          msg: m,
        })
        if (!r.ok) {
          this.badResponses++
          throw new UpdateError(`response TSIG ${r.error}`, r.code)
        }
      },
    })
  }

  async update(req: UpdateRequest): Promise<UpdateResult> {
    let server: ServerAddr & { readonly via: string }
    try {
      server = await this.discover()
    } catch (e) {
      this.failures++
      const boot = this.#bootstrap()
      const x = explainTransport(e, { via: `udp:${boot.host}:${boot.port}` })
      this.#lastError = { ...x, at: 'discovery' }
      throw new UpdateError(`no update server found: ${x.message}`, -1, { cause: e, explained: x })
    }
    const msg = emptyMessage({
      id: this.#random.int(DNS_ID_SPACE),
      opcode: Opcode.UPDATE,
      questions: [{ name: req.zone.endsWith('.') ? req.zone : `${req.zone}.`, type: RRType.SOA, class: RRClass.IN }],
      answers: [...(req.prereqs ?? [])],
      authorities: [...req.updates],
      ...(req.leaseSec !== undefined
        ? { edns: { udpSize: 1232, version: 0, do: false, options: [encodeUpdateLease({ leaseSec: req.leaseSec })] } }
        : {}),
    })
    let res: Message
    try {
      res = await this.#exchange(server, msg)
    } catch (e) {
      // The advertised server cannot be reached (e.g. a server on a wildcard address that advertised an address
      // only it can reach): the bootstrap address the user gave reaches the same service (issue 13 finding 1).
      const x = explainTransport(e, { via: server.via })
      this.#failed.set(server.via, this.#clock.monotonic() + FAILED_TARGET_MS)
      const fb = x.kind === 'unreachable' ? this.#fallback(server) : undefined
      if (fb) {
        this.#log.warn('update.server_fallback', { advertised: server.via, fallback: fb.via, why: x.message })
        try {
          res = await this.#exchange(fb, msg)
          this.#server = fb
          this.#advertised = server.via
          server = fb
        } catch (e2) {
          return this.#fail(fb, e2)
        }
      } else return this.#fail(server, e)
    }
    if (res.rcode !== Rcode.NOERROR) {
      this.failures++
      const tsigError = res.tsig?.data.error || undefined
      const x = explainRcode(
        res.rcode,
        tsigError,
        {
          domain: this.#domain.replace(/\.$/, ''),
          keyName: this.#o.key.name,
          via: server.via,
          neverSucceeded: this.updates === 0,
        },
        extendedErrorText(res.edns),
      )
      this.#lastError = { ...x, at: 'update' }
      throw new UpdateError(x.message, res.rcode, { explained: x, ...(tsigError ? { tsigError } : {}) })
    }
    this.updates++
    this.#lastError = undefined
    const opt = findOption(res.edns, EdnsOptionCode.UPDATE_LEASE)
    const leaseSec = opt ? decodeUpdateLease(opt.data).leaseSec : undefined
    return { rcode: res.rcode, leaseSec, via: server.via }
  }

  #fail(server: ServerAddr & { readonly via: string }, e: unknown): never {
    this.failures++
    this.#server = undefined
    const x = explainTransport(e, { via: server.via })
    this.#lastError = { ...x, at: 'update' }
    throw new UpdateError(`UPDATE via ${server.via} failed: ${x.message}`, -1, { cause: e, explained: x })
  }

  /** The discovered server with the bootstrap host instead of the advertised one (same port, transport, TLS name). */
  #fallback(server: ServerAddr & { readonly via: string }): (ServerAddr & { readonly via: string }) | undefined {
    const boot = this.#o.bootstrap.host
    if (server.host === boot) return undefined
    const tr = server.transport ?? 'udp'
    return { ...server, host: boot, via: `${tr}:${boot}:${server.port}` }
  }

  /** A TSIG-signed query to the bootstrap server (the user's names are private, seed 002 section 7.2). */
  async query(name: string, type: number): Promise<Message> {
    return this.#exchange(this.#bootstrap(), queryMessage(name, type))
  }

  status(): unknown {
    return {
      bootstrap: `${this.#o.bootstrap.host}:${this.#o.bootstrap.port}`,
      updateServer: this.#server?.via ?? this.#found ?? null,
      ...(this.#advertised && this.#server ? { advertised: this.#advertised } : {}),
      lastError: this.#lastError
        ? { kind: this.#lastError.kind, at: this.#lastError.at, message: this.#lastError.message }
        : null,
      keyName: this.#o.key.name,
      updates: this.updates,
      failures: this.failures,
      discoveries: this.discoveries,
      badResponses: this.badResponses,
    }
  }

  close(): void {
    this.#server = undefined
  }
}
