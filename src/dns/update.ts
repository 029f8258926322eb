// DNS UPDATE (RFC 2136): builders for the prerequisite (2.4) and update (2.5) RRs, a message builder, and the
// classification a server applies (3.2.4 prerequisites, 3.4.1.3 updates). In an UPDATE message the sections
// are zone (Message.questions), prerequisite (answers), update (authorities) and additional.
import { encodeUpdateLease } from './lease.js'
import { Opcode, Rcode } from './wire/header.js'
import { emptyMessage, type Message } from './wire/message.js'
import { type RData, type RR, RRClass, RRType } from './wire/rr-table.js'

const meta = (name: string, type: number, cls: number, data: RData = null): RR => ({
  name,
  type,
  class: cls,
  ttl: 0,
  data,
})

/** Prerequisite "RRset exists (value independent)", RFC 2136 2.4.1. */
export const rrsetExists = (name: string, type: number): RR => meta(name, type, RRClass.ANY)
/** Prerequisite "RRset exists (value dependent)", RFC 2136 2.4.2: one RR of the set, TTL 0. */
export const rrsetExistsValue = (rr: RR): RR => ({ ...rr, ttl: 0 })
/** Prerequisite "RRset does not exist", RFC 2136 2.4.3. */
export const rrsetAbsent = (name: string, type: number): RR => meta(name, type, RRClass.NONE)
/** Prerequisite "Name is in use", RFC 2136 2.4.4. */
export const nameInUse = (name: string): RR => meta(name, RRType.ANY, RRClass.ANY)
/** Prerequisite "Name is not in use", RFC 2136 2.4.5. */
export const nameNotInUse = (name: string): RR => meta(name, RRType.ANY, RRClass.NONE)

/** Update "Add to an RRset", RFC 2136 2.5.1: the RR as is (class of the zone). */
export const addRR = (rr: RR): RR => rr
/** Update "Delete an RRset", RFC 2136 2.5.2. */
export const deleteRRset = (name: string, type: number): RR => meta(name, type, RRClass.ANY)
/** Update "Delete all RRsets from a name", RFC 2136 2.5.3. */
export const deleteName = (name: string): RR => meta(name, RRType.ANY, RRClass.ANY)
/** Update "Delete an RR from an RRset", RFC 2136 2.5.4: class NONE, TTL 0, the RDATA to remove. */
export const deleteRR = (rr: RR): RR => ({ ...rr, class: RRClass.NONE, ttl: 0 })

export interface UpdateSpec {
  id: number
  zone: string
  zoneClass?: number
  prereqs?: readonly RR[]
  updates: readonly RR[]
  /** RFC 9664 lease (seconds); adds the Update Lease EDNS option. */
  leaseSec?: number
  keyLeaseSec?: number
  udpSize?: number
}

export function updateMessage(s: UpdateSpec): Message {
  const m = emptyMessage({
    id: s.id,
    opcode: Opcode.UPDATE,
    questions: [{ name: s.zone, type: RRType.SOA, class: s.zoneClass ?? RRClass.IN }],
    answers: [...(s.prereqs ?? [])],
    authorities: [...s.updates],
  })
  if (s.leaseSec !== undefined) {
    const lease = encodeUpdateLease(
      s.keyLeaseSec === undefined ? { leaseSec: s.leaseSec } : { leaseSec: s.leaseSec, keyLeaseSec: s.keyLeaseSec },
    )
    m.edns = { udpSize: s.udpSize ?? 1232, version: 0, do: false, options: [lease] }
  }
  return m
}

export type Prereq =
  | { kind: 'rrsetExists'; name: string; type: number }
  | { kind: 'rrsetExistsValue'; rr: RR }
  | { kind: 'rrsetAbsent'; name: string; type: number }
  | { kind: 'nameInUse'; name: string }
  | { kind: 'nameNotInUse'; name: string }

/** RFC 2136 3.2.4: the meaning of one prerequisite RR, or the RCODE (FORMERR) for a malformed one. */
export function classifyPrereq(rr: RR, zoneClass: number = RRClass.IN): Prereq | { rcode: number } {
  if (rr.ttl !== 0) return { rcode: Rcode.FORMERR }
  if (rr.class === RRClass.ANY) {
    if (rr.data !== null) return { rcode: Rcode.FORMERR }
    return rr.type === RRType.ANY
      ? { kind: 'nameInUse', name: rr.name }
      : { kind: 'rrsetExists', name: rr.name, type: rr.type }
  }
  if (rr.class === RRClass.NONE) {
    if (rr.data !== null) return { rcode: Rcode.FORMERR }
    return rr.type === RRType.ANY
      ? { kind: 'nameNotInUse', name: rr.name }
      : { kind: 'rrsetAbsent', name: rr.name, type: rr.type }
  }
  if (rr.class === zoneClass) return { kind: 'rrsetExistsValue', rr }
  return { rcode: Rcode.FORMERR }
}

export type UpdateOp =
  | { kind: 'add'; rr: RR }
  | { kind: 'deleteRRset'; name: string; type: number }
  | { kind: 'deleteName'; name: string }
  | { kind: 'deleteRR'; rr: RR }

/** RFC 2136 3.4.1.2 meta-types (RFC 6895 3.1): OPT, TSIG, TKEY, IXFR, AXFR, MAILB (253), MAILA (254). */
export const UPDATE_META_TYPES: ReadonlySet<number> = new Set([
  RRType.OPT,
  RRType.TSIG,
  RRType.TKEY,
  RRType.IXFR,
  RRType.AXFR,
  253,
  254,
])

/** RFC 2136 3.4.1.3: the meaning of one update RR, or the RCODE (FORMERR) for a malformed one. */
export function classifyUpdate(rr: RR, zoneClass: number = RRClass.IN): UpdateOp | { rcode: number } {
  if (rr.class === zoneClass) {
    if (rr.type === RRType.ANY || UPDATE_META_TYPES.has(rr.type) || rr.data === null) return { rcode: Rcode.FORMERR }
    return { kind: 'add', rr }
  }
  if (rr.class === RRClass.ANY) {
    if (rr.ttl !== 0 || rr.data !== null || UPDATE_META_TYPES.has(rr.type)) return { rcode: Rcode.FORMERR }
    return rr.type === RRType.ANY
      ? { kind: 'deleteName', name: rr.name }
      : { kind: 'deleteRRset', name: rr.name, type: rr.type }
  }
  if (rr.class === RRClass.NONE) {
    if (rr.ttl !== 0 || rr.type === RRType.ANY || UPDATE_META_TYPES.has(rr.type) || rr.data === null)
      return { rcode: Rcode.FORMERR }
    return { kind: 'deleteRR', rr: { ...rr, class: zoneClass } }
  }
  return { rcode: Rcode.FORMERR }
}
