// Revoked hosts on the UPDATE path (docs/ike.md, "Revocation and its limits"). `autotunnel revoke H` deletes what H
// published and puts H on its account's revoked list (sso-ca-store.ts, the file that already stops SSO
// certificates). Without this check a revoked agent that still runs puts its records back at its next lease
// refresh, and its peers trust it again. With it the server refuses any UPDATE that adds records for H:
//
//   H.D, X.H.D          any added RR owned at or below the host's name (AAAA, key TXT, _autotunnel._udp.H.D SRV)
//   H._t._p.D           a DNS-SD instance named after the host (the agent's --service records)
//   PTR -> one of those the host-list PTR (_autotunnel._udp.D) and DNS-SD PTRs (_t._p.D)
//
// Deletions stay allowed (a revoked agent's `down` still cleans up). The list is an operator's tombstone that
// the account key cannot lift (`autotunnel account unrevoke-host USER H` does); it stops an honest device that keeps
// running, not a thief who publishes under another name (per-host keys would: not built).
import { nameToLowerCanonical } from '../dns/wire/name.js'
import { type RR, RRClass, RRType } from '../dns/wire/rr-table.js'
import { revokedHosts } from './sso-ca-store.js'
import { isAtOrBelow, labelBelow } from './zone-index.js'

/** What the UPDATE path asks: the revoked hosts (labels, lower case) of `user`, usually none. */
export interface RevokedHostList {
  of(user: string): ReadonlySet<string>
}

/** What a refusal tells the person: how the operator lifts the mark. */
export const unrevokeHint = (user: string, host: string): string =>
  `the operator can undo it: autotunnel account unrevoke-host ${user} ${host}`

/** The host label a name belongs to in the user's domain `own` (canonical, lower case), if any. */
export function hostOfName(name: string, own: string): string | undefined {
  const first = labelBelow(name, own)
  if (first === undefined) return undefined
  if (!first.startsWith('_')) return first
  // H._t._p.D: a DNS-SD instance whose service type _t._p is the two labels below D.
  const proto = `${first}.${own}`
  const svc = labelBelow(name, proto)
  if (svc === undefined || !svc.startsWith('_')) return undefined
  const type = `${svc}.${proto}`
  const inst = labelBelow(name, type)
  return inst !== undefined && !inst.startsWith('_') && name === `${inst}.${type}` ? inst : undefined
}

/** The hosts whose records the UPDATE section `updates` adds to (class IN: RFC 2136 2.5.1), in domain `own`. */
export function hostsAddedTo(updates: readonly RR[], own: string): Set<string> {
  const out = new Set<string>()
  for (const rr of updates) {
    if (rr.class !== RRClass.IN) continue
    const owner = nameToLowerCanonical(rr.name)
    if (!isAtOrBelow(owner, own)) continue
    const h = hostOfName(owner, own)
    if (h !== undefined) out.add(h)
    if (rr.type === RRType.PTR && rr.data && 'ptrdname' in rr.data) {
      const t = hostOfName(nameToLowerCanonical(rr.data.ptrdname as string), own)
      if (t !== undefined) out.add(t)
    }
  }
  return out
}

/**
 * The revoked lists in a data directory, read at most once a second per account (an UPDATE must not cost a file
 * read); `forget(user)` makes the next check read again (the SSO service calls it when it marks a host revoked,
 * so the refusal starts with the revocation's own answer; `account revoke-host` from the CLI takes up to 1 s).
 */
export class RevokedHostsFile implements RevokedHostList {
  readonly #dataDir: string
  readonly #now: () => number
  readonly #cache = new Map<string, { hosts: Set<string>; readAt: number }>()

  constructor(dataDir: string, now: () => number = Date.now) {
    this.#dataDir = dataDir
    this.#now = now
  }

  of(user: string): ReadonlySet<string> {
    const u = user.toLowerCase()
    const now = this.#now()
    let c = this.#cache.get(u)
    if (!c || now - c.readAt >= 1000) {
      c = { hosts: revokedHosts(this.#dataDir, u), readAt: now }
      this.#cache.set(u, c)
    }
    return c.hosts
  }

  forget(user: string): void {
    this.#cache.delete(user.toLowerCase())
  }
}
