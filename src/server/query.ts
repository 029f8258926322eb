// Authoritative answers from the in-memory zone (RFC 1034 4.3.2 without referrals, CNAME or wildcards; RFC 2308
// negative answers with the SOA; RFC 8020 empty non-terminals are NODATA). The apex SOA and NS, the server's
// own A/AAAA and the discovery SRV records are synthesized from the configuration; everything else comes from
// the ZoneIndex. Privacy (seed 002 section 7.2) is decided by the caller through `canRead`.
import { Rcode } from '../dns/wire/header.js'
import { type RR, RRClass, RRType } from '../dns/wire/rr-table.js'
import { isPossibleUser } from './accounts.js'
import type { ServiceConfig } from './config.js'
import {
  discoveryRRs,
  discoveryService,
  stunRecords,
  TURN_CREDENTIAL_TTL_SEC,
  TURN_CREDENTIALS_LABEL,
  turnCredentials,
  turnRecords,
} from './discovery.js'
import { canonicalRData, fromZoneRR } from './rdata.js'
import { isAtOrBelow, labelBelow, type ZoneIndex, type ZoneRR } from './zone-index.js'

export interface Answer {
  readonly rcode: number
  readonly answers: RR[]
  readonly authorities: RR[]
  readonly additionals: RR[]
}

const REFUSED: Answer = { rcode: Rcode.REFUSED, answers: [], authorities: [], additionals: [] }

const SOA_REFRESH_SEC = 3600
const SOA_RETRY_SEC = 600
const SOA_EXPIRE_SEC = 604800

/** Where a name stands for privacy: the user domain it lies in (if the label belongs to an account). */
export type Audience = { kind: 'public' } | { kind: 'user'; user: string } | { kind: 'outside' }

export class ZoneAnswerer {
  readonly #cfg: ServiceConfig
  readonly #index: ZoneIndex
  readonly #serial: () => number
  readonly #isUser: (label: string) => boolean
  readonly #now: () => number
  /** Synthesized RRsets (apex NS, the server's A/AAAA), by name then type. SOA is built per answer. */
  readonly #synth = new Map<string, Map<number, ZoneRR[]>>()

  constructor(deps: {
    cfg: ServiceConfig
    index: ZoneIndex
    serial: () => number
    isUser: (label: string) => boolean
    /** Wall-clock ms (ephemeral TURN credentials). @default Date.now */
    now?: () => number
  }) {
    this.#now = deps.now ?? Date.now
    this.#cfg = deps.cfg
    this.#index = deps.index
    this.#serial = deps.serial
    this.#isUser = deps.isUser
    const cfg = deps.cfg
    const add = (name: string, type: number, data: never, text: string): void => {
      let m = this.#synth.get(name)
      if (!m) this.#synth.set(name, (m = new Map()))
      const list = m.get(type) ?? []
      list.push({ name, type, class: RRClass.IN, ttl: cfg.infraTtlSec, rdata: canonicalRData(type, data), text })
      m.set(type, list)
    }
    add(cfg.zone, RRType.NS, { nsdname: cfg.nsName } as never, cfg.nsName)
    // With advertiseLocal the server name's addresses depend on the query (advertise.ts): answer() adds them.
    if (isAtOrBelow(cfg.nsName, cfg.zone) && !cfg.advertiseLocal)
      for (const a of cfg.nsAddrs) add(cfg.nsName, a.includes(':') ? RRType.AAAA : RRType.A, { address: a } as never, a)
    for (const r of stunRecords(cfg)) add(r.name, r.type, r.data as never, r.text)
    for (const r of turnRecords(cfg)) add(r.name, r.type, r.data as never, r.text)
  }

  /** The server's own address records (`addrs`: for this query, advertise.ts), additional data of NS and SRV answers. */
  glue(addrs: readonly string[] = this.#cfg.nsAddrs): RR[] {
    const out: RR[] = []
    for (const a of addrs) {
      const type = a.includes(':') ? RRType.AAAA : RRType.A
      out.push({ name: this.#cfg.nsName, type, class: RRClass.IN, ttl: this.#cfg.infraTtlSec, data: { address: a } })
    }
    return out
  }

  /** Address records of the other live nodes (cluster): SRV additional data, and answers for their names. */
  #peerAddrs(name?: string): RR[] {
    const out: RR[] = []
    const cfg = this.#cfg
    for (const p of cfg.peers?.() ?? []) {
      if (p.nsName === cfg.nsName || (name !== undefined && p.nsName !== name)) continue
      if (!isAtOrBelow(p.nsName, cfg.zone)) continue
      for (const a of p.nsAddrs) {
        const type = a.includes(':') ? RRType.AAAA : RRType.A
        if (!out.some((r) => r.name === p.nsName && (r.data as { address: string }).address === a))
          out.push({ name: p.nsName, type, class: RRClass.IN, ttl: cfg.infraTtlSec, data: { address: a } })
      }
    }
    return out
  }

  soa(): RR {
    const c = this.#cfg
    return {
      name: c.zone,
      type: RRType.SOA,
      class: RRClass.IN,
      ttl: c.infraTtlSec,
      data: {
        mname: c.nsName,
        rname: c.hostmaster,
        serial: this.#serial(),
        refresh: SOA_REFRESH_SEC,
        retry: SOA_RETRY_SEC,
        expire: SOA_EXPIRE_SEC,
        minimum: c.negativeTtlSec,
      },
    }
  }

  /** Negative answers carry the SOA with TTL min(SOA TTL, MINIMUM) (RFC 2308 section 3). */
  #negative(rcode: number): Answer {
    const soa = this.soa()
    soa.ttl = Math.min(soa.ttl, this.#cfg.negativeTtlSec)
    return { rcode, answers: [], authorities: [soa], additionals: [] }
  }

  /** Privacy class of `name` (lower-case FQDN). */
  audience(name: string): Audience {
    const zone = this.#cfg.zone
    if (!isAtOrBelow(name, zone)) return { kind: 'outside' }
    if (name === zone || name === this.#cfg.nsName) return { kind: 'public' }
    if (this.#cfg.peers?.().some((p) => p.nsName === name)) return { kind: 'public' }
    // Whether or not the account exists: the same answer either way (issue 16 finding 9), and nobody watches a
    // name before its owner exists (finding 3). Labels are wire labels (escaped dots do not split, finding 8).
    const label = labelBelow(name, zone)!
    if (!isPossibleUser(label)) return { kind: 'public' }
    if (discoveryService(this.#cfg, name)) return { kind: 'public' }
    return { kind: 'user', user: label }
  }

  /**
   * Answers (qname, qtype) for a reader who authenticated as `signer` (an account user) or nobody.
   * `qname` is a lower-case FQDN; the caller echoes the question's own spelling in the owner names.
   */
  answer(
    qname: string,
    qtype: number,
    signer: string | undefined,
    owner = qname,
    nsAddrs: readonly string[] = this.#cfg.nsAddrs,
  ): Answer {
    const aud = this.audience(qname)
    if (aud.kind === 'outside') return REFUSED
    if (aud.kind === 'user' && aud.user !== signer) return REFUSED
    const cfg = this.#cfg
    // Discovery SRV records under an account's domain.
    const disc = discoveryService(cfg, qname)
    if (disc && isPossibleUser(disc.user)) {
      if (qtype !== RRType.SRV && qtype !== RRType.ANY) return this.#negative(Rcode.NOERROR)
      return {
        rcode: Rcode.NOERROR,
        answers: discoveryRRs(cfg, qname, disc.service.tls).map((z) => fromZoneRR(z, owner)),
        authorities: [],
        additionals: cfg.peers ? [...this.glue(nsAddrs), ...this.#peerAddrs()] : this.glue(nsAddrs),
      }
    }
    // The user's ephemeral TURN credentials (docs/relay.md): private (REFUSED above unless signed by the user).
    if (aud.kind === 'user' && cfg.turnSecret && qname === `${TURN_CREDENTIALS_LABEL}.${aud.user}.${cfg.zone}`) {
      if (qtype !== RRType.TXT) return this.#negative(Rcode.NOERROR)
      const ttl = cfg.turnCredentialTtlSec ?? TURN_CREDENTIAL_TTL_SEC
      const c = turnCredentials(cfg.turnSecret, ttl, aud.user, this.#now())
      const strings = [`username=${c.username}`, `password=${c.password}`, `ttl=${ttl}`].map((s) => Buffer.from(s))
      return {
        rcode: Rcode.NOERROR,
        answers: [{ name: owner, type: RRType.TXT, class: RRClass.IN, ttl: 0, data: { strings } }],
        authorities: [],
        additionals: [],
      }
    }
    const answers: RR[] = []
    let exists = false
    if (qname === cfg.zone) {
      exists = true
      if (qtype === RRType.SOA || qtype === RRType.ANY) answers.push({ ...this.soa(), name: owner })
    }
    const synth = this.#synth.get(qname)
    if (synth) {
      exists = true
      for (const [t, list] of synth)
        if (t === qtype || qtype === RRType.ANY) for (const z of list) answers.push(fromZoneRR(z, owner))
    }
    if (cfg.advertiseLocal && qname === cfg.nsName && isAtOrBelow(cfg.nsName, cfg.zone)) {
      exists = true
      for (const g of this.glue(nsAddrs))
        if (g.type === qtype || qtype === RRType.ANY) answers.push({ ...g, name: owner })
    }
    if (cfg.peers && !synth && qname !== cfg.nsName) {
      const peer = this.#peerAddrs(qname)
      if (peer.length) exists = true
      for (const r of peer) if (r.type === qtype || qtype === RRType.ANY) answers.push({ ...r, name: owner })
    }
    const node = this.#index.node(qname)
    if (node) {
      exists = true
      if (qtype === RRType.ANY) {
        for (const set of node.rrsets.values())
          for (const r of set.records.values()) answers.push(fromZoneRR(r.rr, owner))
      } else {
        const set = node.rrsets.get(qtype)
        if (set) for (const r of set.records.values()) answers.push(fromZoneRR(r.rr, owner))
      }
    }
    // An account's domain exists even when empty: its discovery names sit below it.
    if (!exists) exists = this.#userDomainExists(qname)
    if (answers.length > 0) {
      const additionals = qname === cfg.zone && (qtype === RRType.NS || qtype === RRType.ANY) ? this.glue(nsAddrs) : []
      return { rcode: Rcode.NOERROR, answers, authorities: [], additionals }
    }
    return this.#negative(exists ? Rcode.NOERROR : Rcode.NXDOMAIN)
  }

  #userDomainExists(qname: string): boolean {
    const zone = this.#cfg.zone
    const head = qname.slice(0, qname.length - zone.length - 1)
    if (!head.includes('.')) return this.#isUser(head)
    // _udp.USER.ZONE, _tcp.USER.ZONE are empty non-terminals above the discovery names.
    const dot = head.indexOf('.')
    const first = head.slice(0, dot)
    const rest = head.slice(dot + 1)
    return (first === '_udp' || first === '_tcp') && !rest.includes('.') && this.#isUser(rest)
  }
}
