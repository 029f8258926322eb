// RFC 2136 UPDATE on the server: zone section (3.1), permission (3.3, our policy), prerequisites (3.2), prescan
// (3.4.1) and the four update forms (3.4.2): add to an RRset, delete an RRset, delete all RRsets of a name,
// delete one RR. Update leases (RFC 9664): records added by an update that carried the option expire after the
// granted lease; an add of a record that exists refreshes its lease (or makes it permanent without one).
//
// checkUpdate runs when the message arrives; applyUpdate runs later inside the group commit (update-queue.ts),
// against the zone as left by the updates committed before it, so prerequisites see every earlier update. On a
// store shared by several nodes, an UPDATE whose outcome depends on data (prerequisites, a quota it may cross:
// consistentReadOf) runs only after the store has locked its account across the nodes and re-read its names from
// the database (pg/consistent.ts), so it sees every other node's committed updates too.

import { accountKeyName } from '../dns/account-key.js'
import { UPDATE_META_TYPES } from '../dns/update.js'
import { Rcode } from '../dns/wire/header.js'
import type { Message } from '../dns/wire/message.js'
import { nameToLowerCanonical } from '../dns/wire/name.js'
import { type RR, RRClass, RRType } from '../dns/wire/rr-table.js'
import type { ServiceConfig } from './config.js'
import { discoveryService } from './discovery.js'
import { canonicalRData, toZoneRR } from './rdata.js'
import type { ZoneTx } from './store.js'
import { isAtOrBelow, rdataKey, type ZoneIndex } from './zone-index.js'
import type { ConsistentRead } from './zone-tx.js'

/** Types that never appear in zone data: the RFC 2136 3.4.1.2 meta-types and the QTYPE ANY (RFC 6895 3.1). */
const META_TYPES: ReadonlySet<number> = new Set([...UPDATE_META_TYPES, RRType.ANY])
/** Types a user key may not add: the zone's own SOA/NS are managed by the server, delegations are not served. */
const SERVER_TYPES: ReadonlySet<number> = new Set([RRType.SOA, RRType.NS])

export interface UpdateRequest {
  readonly msg: Message
  /** The account user whose key signed the message. */
  readonly user: string
  /** Granted lease (already clamped), or undefined for permanent records. */
  readonly leaseSec: number | undefined
  /** RFC 9664 KEY-LEASE for KEY records added by the update; defaults to leaseSec. */
  readonly keyLeaseSec?: number | undefined
  /** Records the user's domain may hold (the account's quota); an UPDATE that would grow it beyond is REFUSED. */
  readonly maxRecords?: number | undefined
  /**
   * Shared store, the account's records not re-read for this UPDATE: it may add records only while the node's count
   * stays quotaHeadroom() below the quota; nearer, applyUpdate answers QUOTA_RECHECK instead.
   */
  readonly quotaFromIndex?: boolean | undefined
}

/** Records one UPDATE may carry (prerequisites and updates) unless `ServiceConfig.maxUpdateRecords` says otherwise. */
export const DEFAULT_MAX_UPDATE_RECORDS = 100
/** Records an account may hold unless set per account (`autotunnel account limit`) or by `--max-records`. */
export const DEFAULT_MAX_ACCOUNT_RECORDS = 1000
/** applyUpdate's answer when the account's quota would be exceeded (REFUSED on the wire). */
export const QUOTA_EXCEEDED = -1
/** applyUpdate's answer when the quota must be checked against the database first (nothing applied; run it again). */
export const QUOTA_RECHECK = -2

function nameOf(rr: RR): string {
  return nameToLowerCanonical(rr.name)
}

/**
 * Checks that need no zone data: the zone section (FORMERR / NOTAUTH), every name inside the zone (NOTZONE),
 * inside the signer's own domain (REFUSED), and not a server-managed type or discovery name (REFUSED).
 * Returns undefined when the update may proceed.
 */
export function checkUpdate(cfg: ServiceConfig, msg: Message, user: string): number | undefined {
  if (msg.questions.length !== 1) return Rcode.FORMERR
  const z = msg.questions[0]!
  if (z.type !== RRType.SOA) return Rcode.FORMERR
  if (nameToLowerCanonical(z.name) !== cfg.zone || z.class !== RRClass.IN) return Rcode.NOTAUTH
  if (msg.answers.length + msg.authorities.length > (cfg.maxUpdateRecords ?? DEFAULT_MAX_UPDATE_RECORDS))
    return Rcode.REFUSED
  const own = accountKeyName(user, cfg.zone)
  for (const rr of msg.answers) {
    const n = nameOf(rr)
    if (!isAtOrBelow(n, cfg.zone)) return Rcode.NOTZONE
    if (!isAtOrBelow(n, own)) return Rcode.REFUSED
  }
  for (const rr of msg.authorities) {
    const n = nameOf(rr)
    if (!isAtOrBelow(n, cfg.zone)) return Rcode.NOTZONE
    if (!isAtOrBelow(n, own)) return Rcode.REFUSED
    if (discoveryService(cfg, n)) return Rcode.REFUSED
    if (rr.class === RRClass.IN && SERVER_TYPES.has(rr.type)) return Rcode.REFUSED
  }
  return undefined
}

/**
 * On a shared store an UPDATE adding records is checked against the database's count of its account's records
 * (not the node's, which may lag other nodes by the feed delay) once the node's count plus its additions come
 * within this many records of the quota; farther away it takes the fast path (docs/cluster.md, Consistency).
 */
export function quotaHeadroom(maxRecords: number): number {
  return Math.max(DEFAULT_MAX_UPDATE_RECORDS, Math.ceil(maxRecords / 10))
}

/**
 * What an UPDATE's outcome depends on beyond the records it adds, for a store shared by several nodes: its
 * prerequisites (and, for them to hold until the COMMIT, every name it touches), and its account's record count
 * when it may come near the quota. Undefined for the rest (the fast path: no prerequisites, far from the quota).
 */
export function consistentReadOf(
  index: ZoneIndex,
  req: UpdateRequest,
  zone: string,
  wholeAccount = nearQuota(index.recordsUnder(req.user), req.msg, req.maxRecords),
): ConsistentRead | undefined {
  const { msg } = req
  if (msg.answers.length === 0 && !wholeAccount) return undefined
  const names = new Set<string>()
  for (const rr of msg.answers) names.add(nameOf(rr))
  for (const rr of msg.authorities) names.add(nameOf(rr))
  return { domain: accountKeyName(req.user, zone), names: [...names], wholeAccount }
}

/** True when `msg`'s additions could bring an account holding `count` records within the headroom of its quota. */
function nearQuota(count: number, msg: Message, maxRecords: number | undefined): boolean {
  if (maxRecords === undefined) return false
  let adds = 0
  for (const rr of msg.authorities) if (rr.class === RRClass.IN) adds++
  return adds > 0 && count + adds + quotaHeadroom(maxRecords) > maxRecords
}

/** RFC 2136 3.2: undefined when every prerequisite holds, else the RCODE. */
export function checkPrerequisites(index: ZoneIndex, prereqs: readonly RR[]): number | undefined {
  const valueSets = new Map<string, { name: string; type: number; rdata: Set<string> }>()
  for (const rr of prereqs) {
    if (rr.ttl !== 0) return Rcode.FORMERR
    const name = nameOf(rr)
    const node = index.node(name)
    if (rr.class === RRClass.ANY) {
      if (rr.data !== null) return Rcode.FORMERR
      if (rr.type === RRType.ANY) {
        if (!node || node.rrsets.size === 0) return Rcode.NXDOMAIN
      } else if (!node?.rrsets.has(rr.type)) return Rcode.NXRRSET
    } else if (rr.class === RRClass.NONE) {
      if (rr.data !== null) return Rcode.FORMERR
      if (rr.type === RRType.ANY) {
        if (node && node.rrsets.size > 0) return Rcode.YXDOMAIN
      } else if (node?.rrsets.has(rr.type)) return Rcode.YXRRSET
    } else if (rr.class === RRClass.IN) {
      if (META_TYPES.has(rr.type)) return Rcode.FORMERR
      const k = `${name}\u0000${rr.type}`
      let e = valueSets.get(k)
      if (!e) valueSets.set(k, (e = { name, type: rr.type, rdata: new Set() }))
      e.rdata.add(rdataKey(canonicalRData(rr.type, rr.data)))
    } else return Rcode.FORMERR
  }
  for (const e of valueSets.values()) {
    const set = index.rrset(e.name, e.type)
    if (!set || set.records.size !== e.rdata.size) return Rcode.NXRRSET
    for (const k of e.rdata) if (!set.records.has(k)) return Rcode.NXRRSET
  }
  return undefined
}

/** RFC 2136 3.4.1: FORMERR for an update RR of a form the RFC does not allow. */
export function prescan(updates: readonly RR[]): number | undefined {
  for (const rr of updates) {
    if (rr.class === RRClass.IN) {
      if (META_TYPES.has(rr.type) || rr.data === null) return Rcode.FORMERR
    } else if (rr.class === RRClass.ANY) {
      if (rr.ttl !== 0 || rr.data !== null || rr.type === RRType.AXFR || rr.type === 253 || rr.type === 254)
        return Rcode.FORMERR
    } else if (rr.class === RRClass.NONE) {
      if (rr.ttl !== 0 || META_TYPES.has(rr.type)) return Rcode.FORMERR
    } else return Rcode.FORMERR
  }
  return undefined
}

/**
 * Prerequisites, prescan and the update section, applied through `tx` (all or nothing: nothing is applied
 * unless every check passed, and applying cannot fail). Bumps the serial when the zone's content changed.
 */
export function applyUpdate(tx: ZoneTx, index: ZoneIndex, req: UpdateRequest): number {
  const { msg, leaseSec } = req
  const pre = checkPrerequisites(index, msg.answers)
  if (pre !== undefined) return pre
  const scan = prescan(msg.authorities)
  if (scan !== undefined) return scan
  const expiresAtMs = leaseSec === undefined ? null : tx.nowMs + leaseSec * 1000
  const keyExpiresAtMs = req.keyLeaseSec === undefined ? expiresAtMs : tx.nowMs + req.keyLeaseSec * 1000
  const countBefore = index.recordsUnder(req.user)
  // Checked here, against the index as the jobs before this one left it, not only when the UPDATE arrived.
  if (req.quotaFromIndex && nearQuota(countBefore, msg, req.maxRecords)) return QUOTA_RECHECK
  // Only an UPDATE that could cross the quota pays for a savepoint: at most one new record per IN-class RR.
  let adds = 0
  for (const rr of msg.authorities) if (rr.class === RRClass.IN) adds++
  const rollback = req.maxRecords !== undefined && countBefore + adds > req.maxRecords ? tx.savepoint() : undefined
  let changed = false
  for (const rr of msg.authorities) {
    const name = nameOf(rr)
    if (rr.class === RRClass.IN) {
      changed = tx.add(toZoneRR(rr), rr.type === RRType.KEY ? keyExpiresAtMs : expiresAtMs) || changed
    } else if (rr.class === RRClass.ANY) {
      // On a shared store also what other nodes committed that this node's index lacks yet (ZoneTx.clear).
      changed = tx.clear(name, rr.type) || changed
    } else {
      const rec = index.find(name, rr.type, canonicalRData(rr.type, rr.data))
      if (rec) changed = tx.remove(rec) || changed
    }
  }
  // The quota is checked on the result, so a delete-and-add at the limit passes; an UPDATE that only shrinks an
  // account over its (lowered) limit passes too.
  const countAfter = index.recordsUnder(req.user)
  if (rollback && req.maxRecords !== undefined && countAfter > req.maxRecords && countAfter > countBefore) {
    rollback()
    return QUOTA_EXCEEDED
  }
  if (changed) tx.bumpSerial()
  return Rcode.NOERROR
}
