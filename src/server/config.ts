// The service's resolved configuration: what `autotunnel server` options turn into (run.ts), shared by the
// query, update and discovery code. Names are lower-case FQDNs with the trailing dot.
import type { RevokedHostList } from './revoked-hosts.js'

export interface AddrPort {
  readonly host: string
  readonly port: number
}

/** Another live server node sharing the store (PostgreSQL heartbeats, docs/cluster.md). */
export interface PeerNode {
  readonly nsName: string
  readonly nsAddrs: readonly string[]
  readonly dnsPort: number
  readonly tlsPort: number | undefined
}

export interface ServiceConfig {
  /** The provider zone, e.g. "members.example." */
  readonly zone: string
  /** The server's own name: SOA MNAME, the NS record and the target of the discovery SRV records. */
  readonly nsName: string
  /** Addresses published as A/AAAA for nsName (with advertiseLocal: the machine's addresses, advertise.ts). */
  readonly nsAddrs: readonly string[]
  /**
   * Wildcard listeners and no --advertise: each answer gives the address its query arrived on (advertise.ts),
   * never a loopback address to a client that is not on loopback (issue 13 finding 1).
   */
  readonly advertiseLocal?: boolean
  /** SOA RNAME. */
  readonly hostmaster: string
  /** Port of the plain DNS listener advertised in _dns-update._udp / _dns-llq._udp. */
  readonly dnsPort: number
  /** Port of the DoT listener advertised in the -tls SRV records; the plain port when there is none. */
  readonly tlsPort: number | undefined
  readonly leaseMinSec: number
  readonly leaseMaxSec: number
  /** TTL of the SOA, NS, glue and discovery records. */
  readonly infraTtlSec: number
  /** SOA MINIMUM: negative-caching TTL (RFC 2308). */
  readonly negativeTtlSec: number
  /**
   * TSIG time fudge (RFC 8945 5.2.3): written in signed responses, and the widest window accepted, whatever
   * fudge the signer wrote (issue 16 finding 7).
   */
  readonly fudgeSec: number
  /** MACs of signed requests remembered against replay (tsig-replay.ts). @default 200000 */
  readonly replayCacheEntries?: number
  /** Records (prerequisites + updates) one UPDATE may carry; more is REFUSED. @default 100 */
  readonly maxUpdateRecords?: number
  /** Records an account may hold unless its own limit says otherwise (`account limit`). @default 1000 */
  readonly maxAccountRecords?: number
  /** Refuse UPDATEs that add records without an update lease (RFC 9664): no permanent user records. */
  readonly requireLease?: boolean
  /** Hosts revoked by their account (revoked-hosts.ts): UPDATEs that add records for them are REFUSED. */
  readonly revokedHosts?: RevokedHostList
  /** STUN servers advertised as SRV _stun._udp.ZONE (RFC 8489 section 8; src/server/discovery.ts stunRecords). */
  readonly stun?: readonly AddrPort[]
  /** TURN servers advertised as SRV _turn._udp.ZONE (RFC 5928; discovery.ts turnRecords, docs/relay.md). */
  readonly turn?: readonly AddrPort[]
  /**
   * coturn's `static-auth-secret` (REST scheme, `use-auth-secret`): with it, a user's signed query for TXT
   * _turn-credentials.USER.ZONE gets ephemeral TURN credentials (discovery.ts turnCredentials, docs/relay.md).
   */
  readonly turnSecret?: Buffer
  /** Lifetime of those credentials. @default 86400 */
  readonly turnCredentialTtlSec?: number
  /**
   * The other live nodes of a cluster (none on SQLite): the discovery SRV records list them after this one, and
   * their names' A/AAAA records are answered, so a client can try the next target (RFC 2782).
   */
  readonly peers?: () => readonly PeerNode[]
}

export function parseAddrPort(s: string, defaultPort?: number): AddrPort {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s)
  if (m) return { host: m[1]!, port: Number(m[2]) }
  if (defaultPort !== undefined && !s.includes(':')) return { host: s, port: defaultPort }
  if (defaultPort !== undefined && s.includes(':') && !s.includes(']')) return { host: s, port: defaultPort }
  throw new TypeError(`expected ADDR:PORT, got ${JSON.stringify(s)}`)
}
