// IKE engine options (with their defaults) and counters.

import type { HostKey } from './hostkey.js'
import { type ChildPolicy, DEFAULT_CHILD_POLICY, DEFAULT_IKE_POLICY, type IkePolicy } from './proposals.js'
import type { Retransmit } from './sa.js'
import type { AuthMode, PeerInfo } from './types.js'

export interface IkeEngineOpts {
  /** Our FQDN (ID_FQDN). */
  readonly localId: string
  /** Our ULA (our traffic selector, /128). */
  readonly localUla: string
  /** How we authenticate ourselves. @default 'signature' when hostKey is set, else 'psk' */
  readonly auth?: AuthMode
  readonly hostKey?: HostKey
  /** Default PSK (derivePsk) when PeerInfo carries none. */
  readonly psk?: Buffer
  /** Peer identity -> what DNS says about it; undefined = unknown or revoked. */
  readonly lookupPeer: (id: string) => Promise<PeerInfo | undefined>
  readonly ikePolicy?: IkePolicy
  readonly childPolicy?: ChildPolicy
  /** Half-open IKE SAs above which IKE_SA_INIT needs a COOKIE. @default 32 */
  readonly cookieThreshold?: number
  /** @default { initialMs: 1000, factor: 2, tries: 5 } (1+2+4+8+16+32 s) */
  readonly retransmit?: Retransmit
  /** @default 30000 */
  readonly halfOpenTimeoutMs?: number
  /** Child SA rekey interval. @default 3600 */
  readonly childRekeySec?: number
  /** IKE SA rekey interval. @default 14400 */
  readonly ikeRekeySec?: number
  /** Idle time before a liveness check; 0 disables. @default 30000 */
  readonly dpdIntervalMs?: number
  /** How often established peers are looked up again (revocation). @default 30000 */
  readonly revalidateMs?: number
  /** Announce and honour MOBIKE (RFC 4555). @default true */
  readonly mobike?: boolean
  /** Use PFS (a fresh KE) when rekeying Child SAs. @default true */
  readonly pfs?: boolean
}

export interface ResolvedOpts extends Required<Omit<IkeEngineOpts, 'hostKey' | 'psk' | 'auth'>> {
  readonly auth: AuthMode
  readonly hostKey: HostKey | undefined
  readonly psk: Buffer | undefined
}

export interface IkeStats {
  rxMessages: number
  rxMalformed: number
  rxUnknownSpi: number
  rxBadIcv: number
  rxOutOfWindow: number
  rxRetransmits: number
  txRetransmitsAnswered: number
  cookiesSent: number
  invalidKeSent: number
  authFailures: number
  ikeEstablished: number
  childEstablished: number
  mobikeUpdates: number
  revoked: number
}

export function resolveOpts(opts: IkeEngineOpts): ResolvedOpts {
  return {
    localId: opts.localId,
    localUla: opts.localUla,
    auth: opts.auth ?? (opts.hostKey ? 'signature' : 'psk'),
    hostKey: opts.hostKey,
    psk: opts.psk,
    lookupPeer: opts.lookupPeer,
    ikePolicy: opts.ikePolicy ?? DEFAULT_IKE_POLICY,
    childPolicy: opts.childPolicy ?? DEFAULT_CHILD_POLICY,
    cookieThreshold: opts.cookieThreshold ?? 32,
    retransmit: opts.retransmit ?? { initialMs: 1000, factor: 2, tries: 5 },
    halfOpenTimeoutMs: opts.halfOpenTimeoutMs ?? 30_000,
    childRekeySec: opts.childRekeySec ?? 3600,
    ikeRekeySec: opts.ikeRekeySec ?? 14_400,
    dpdIntervalMs: opts.dpdIntervalMs ?? 30_000,
    revalidateMs: opts.revalidateMs ?? 30_000,
    mobike: opts.mobike ?? true,
    pfs: opts.pfs ?? true,
  }
}

export function newStats(): IkeStats {
  return {
    rxMessages: 0,
    rxMalformed: 0,
    rxUnknownSpi: 0,
    rxBadIcv: 0,
    rxOutOfWindow: 0,
    rxRetransmits: 0,
    txRetransmitsAnswered: 0,
    cookiesSent: 0,
    invalidKeSent: 0,
    authFailures: 0,
    ikeEstablished: 0,
    childEstablished: 0,
    mobikeUpdates: 0,
    revoked: 0,
  }
}
