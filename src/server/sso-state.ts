// Where the DNS service keeps each account's SSO state (docs/sso.md): its CA, the hosts it revoked and the
// certificates issued to its hosts. One node keeps it in its data directory (sso-ca-store.ts, FileSsoState); the
// nodes of a cluster share it in PostgreSQL (pg/sso.ts, PgSsoState). It must be shared there: a host enrolled
// through node 1 and its peer enrolled through node 2 trust each other only if both certificates come from one
// CA, and a host revoked through any node must be refused by every node.
import type { CertKindCode } from '../sso/enrol-codec.js'

export interface CaPem {
  readonly certPem: string
  readonly keyPem: string
}

export interface SsoState {
  /** The account's CA, made on first use; every caller, on every node, gets the same one. */
  ca(user: string, domain: string): Promise<CaPem>
  /** Whether `host` (one label, lower case) of `user` is on the account's revoked list, as stored now. */
  isRevoked(user: string, host: string): Promise<boolean>
  /** Marks (or with `revoked` false unmarks) the host; marking forgets its certificates. Whether it changed. */
  setRevoked(user: string, host: string, revoked: boolean): Promise<boolean>
  /** The certificates issued to the host (what an ATCERT query returns besides the CA). */
  issued(user: string, host: string): Promise<ReadonlyMap<CertKindCode, Buffer>>
  putIssued(user: string, host: string, kind: CertKindCode, der: Buffer): Promise<void>
}
