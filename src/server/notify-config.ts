// Configuration of the change-notification services (LLQ and DNS Push, notify-service.ts): what they need from
// the DNS service, their options and the `autotunnel server` flags that set them.

import type { TsigKey } from '../dns/tsig.js'
import type { LlqConfig } from './llq.js'
import type { NotifyQuestion, NotifyVerdict, RRsetChange } from './notify-types.js'
import type { PushConfig } from './push.js'
import type { SubscriptionLimits } from './subscriptions.js'
import type { ZoneRR } from './zone-index.js'

/** What the notify services need from the DNS service (DnsService satisfies it). */
export interface NotifyHost {
  lookup(name: string, type: number): ZoneRR[]
  canWatch(q: NotifyQuestion, user: string | undefined): NotifyVerdict
  /** The user's current TSIG key (LLQ events of an LLQ set up with TSIG are signed with it), if the account exists. */
  tsigKey(user: string): TsigKey | undefined
  /** TSIG fudge written in signed events (RFC 8945 5.2.3). */
  readonly cfg: { readonly fudgeSec: number }
  readonly store: { onChange(fn: (changes: RRsetChange<ZoneRR>[]) => void): () => void }
  /**
   * Whether the key a connection or an LLQ was bound with (the Account DnsService recorded) is still the user's
   * key: false after `account passwd`, `account remove` or a re-created account. Without it, bindings never expire.
   */
  keyIsCurrent?(binding: unknown): boolean
  /** Called after the account set changed, with the users whose key changed or whose account went. */
  onAccountsChange?(fn: (revoked: ReadonlySet<string>) => void): () => void
}

export interface NotifyOptions {
  readonly llq?: Partial<LlqConfig>
  readonly push?: Partial<PushConfig>
  readonly limits?: Partial<SubscriptionLimits>
  /**
   * Serve DNS Push SUBSCRIBE on plain TCP too (tests and benchmarks only: RFC 8765 §6, clients MUST use TLS).
   * @default false
   */
  readonly pushPlainTcp?: boolean
}

/** The `autotunnel server` options this component adds (src/cli/server.ts). */
export interface NotifyCliOptions {
  llqLeaseMin?: number
  llqLeaseMax?: number
  llqResendMs?: number
  watchLimitClient?: number
  watchLimitUser?: number
  watchLimitAnonymous?: number
  watchLimitTotal?: number
  pushKeepaliveMs?: number
  pushPlainTcp?: boolean
}

export function notifyOptions(o: NotifyCliOptions): NotifyOptions {
  const llqLeaseMinSec = o.llqLeaseMin ?? 900
  const llqLeaseMaxSec = o.llqLeaseMax ?? 7200
  if (!(llqLeaseMinSec > 0 && llqLeaseMaxSec >= llqLeaseMinSec))
    throw new TypeError('need 0 < --llq-lease-min <= --llq-lease-max')
  return {
    llq: { leaseMinSec: llqLeaseMinSec, leaseMaxSec: llqLeaseMaxSec, resendMs: o.llqResendMs ?? 2000 },
    limits: {
      perClient: o.watchLimitClient ?? 1000,
      perUser: o.watchLimitUser ?? 1000,
      total: o.watchLimitTotal ?? 200_000,
      ...(o.watchLimitAnonymous !== undefined ? { anonymous: o.watchLimitAnonymous } : {}),
    },
    push: { keepaliveMs: o.pushKeepaliveMs ?? 60_000 },
    pushPlainTcp: o.pushPlainTcp === true,
  }
}
