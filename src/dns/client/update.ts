// RFC 2136 UPDATE client: TSIG-signed (RFC 8945), with the RFC 9664 update-lease option, sent over DNS over TLS
// (RFC 7858) when the user's domain advertises `_dnsupdate-tls._udp.DOMAIN`, else over UDP (TCP on truncation)
// to the target of `_dns-update._udp.DOMAIN` (RFC 6281 section 5.2), else to the bootstrap server itself.
import type { RR } from '../wire/rr-table.js'

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
