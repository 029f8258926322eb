// The UPDATE opcode (RFC 2136) in the DNS service (service.ts): the signer, TSIG replays (a retransmission gets the
// first answer), the update-lease option (RFC 9664), the queue's bound, then the group-commit queue (update-queue.ts)
// and the answer after the COMMIT; and the lease timer that runs leases out on a store that leaves it to the
// service (SQLite; PostgreSQL expires leases itself, by the database's clock).
import { accountKeyName } from '../dns/account-key.js'
import { ExtendedError, encodeExtendedError } from '../dns/ede.js'
import { EdnsOptionCode, findOption } from '../dns/edns.js'
import { decodeUpdateLease, encodeUpdateLease } from '../dns/lease.js'
import { Rcode, rcodeName } from '../dns/wire/header.js'
import type { EdnsOption, Message } from '../dns/wire/message.js'
import { RRClass } from '../dns/wire/rr-table.js'
import type { Clock, TimerHandle } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import type { ServiceConfig } from './config.js'
import type { ServerMetrics } from './metrics.js'
import { baseResponse } from './response.js'
import { hostsAddedTo, unrevokeHint } from './revoked-hosts.js'
import type { DnsRequest } from './service.js'
import type { ReplayVerdict, TsigReplayCache } from './tsig-replay.js'
import {
  applyUpdate,
  checkUpdate,
  consistentReadOf,
  DEFAULT_MAX_ACCOUNT_RECORDS,
  DEFAULT_MAX_UPDATE_RECORDS,
  QUOTA_EXCEEDED,
  QUOTA_RECHECK,
} from './update.js'
import type { UpdateQueue } from './update-queue.js'
import type { ZoneStore } from './zone-tx.js'

const MAX_TIMER_MS = 3_600_000
/** UPDATEs waiting for the next commit before new ones get SERVFAIL (the client retries later). */
const MAX_QUEUED_UPDATES = 10_000
/** Upper bound of a granted KEY-LEASE (RFC 9664 4: KEY records may outlive the others; 14 days). */
const MAX_KEY_LEASE_SEC = 14 * 86400

export class UpdateHandler {
  readonly #cfg: ServiceConfig
  readonly #store: ZoneStore
  readonly #queue: UpdateQueue
  readonly #replay: TsigReplayCache
  readonly #metrics: ServerMetrics
  readonly #clock: Clock
  readonly #log: Logger
  readonly #onCommitted: () => void
  #leaseTimer: TimerHandle | undefined
  #leaseTimerAt = Infinity
  #stopped = false

  /** `onCommitted` runs after every commit of an UPDATE (cached answers may be stale: a refresh changes TTLs). */
  constructor(
    deps: {
      store: ZoneStore
      queue: UpdateQueue
      replay: TsigReplayCache
      metrics: ServerMetrics
      clock: Clock
      log: Logger
      onCommitted: () => void
    },
    cfg: ServiceConfig,
  ) {
    this.#cfg = cfg
    this.#store = deps.store
    this.#queue = deps.queue
    this.#replay = deps.replay
    this.#metrics = deps.metrics
    this.#clock = deps.clock
    this.#log = deps.log
    this.#onCommitted = deps.onCommitted
  }

  stop(): void {
    this.#stopped = true
    this.#clock.clearTimeout(this.#leaseTimer)
    this.#leaseTimer = undefined
  }

  /** The first revoked host of `user` whose records `msg` would add (revoked-hosts.ts), if any. */
  #revokedHostIn(msg: Message, user: string): string | undefined {
    const revoked = this.#cfg.revokedHosts?.of(user)
    // The usual case, no revoked host: nothing to work out about the UPDATE's names.
    if (!revoked?.size) return undefined
    for (const h of hostsAddedTo(msg.authorities, accountKeyName(user, this.#cfg.zone))) if (revoked.has(h)) return h
    return undefined
  }

  /** Answers the UPDATE `req`; `replay` is the replay cache's verdict on its TSIG MAC (signed requests). */
  handle(req: DnsRequest, replay: ReplayVerdict | undefined): void {
    const { msg } = req
    const res = baseResponse(msg)
    const replayed = replay?.kind === 'replay'
    /** Answers `rcode` (with the granted lease when given) and remembers it for replays of the same bytes. */
    const finish = (
      rcode: number,
      lease?: { leaseSec: number; keyLeaseSec?: number | undefined },
      ede?: EdnsOption,
    ): void => {
      // Not SERVFAIL: a replay of an UPDATE that failed that way is dropped; the client retries with a new signature.
      const fresh = replay?.kind === 'fresh' ? replay : undefined
      if (fresh && rcode !== Rcode.SERVFAIL) this.#replay.setResult(fresh, { rcode, ede, ...lease })
      res.rcode = rcode
      if (ede) res.edns?.options.push(ede)
      if (lease && res.edns)
        res.edns.options.push(
          encodeUpdateLease(
            lease.keyLeaseSec === undefined
              ? { leaseSec: lease.leaseSec }
              : { leaseSec: lease.leaseSec, keyLeaseSec: lease.keyLeaseSec },
          ),
        )
      this.#metrics.updates({ rcode: rcodeName(rcode) })
      req.respond(res)
    }
    if (!req.signer) {
      finish(Rcode.REFUSED)
      return
    }
    const user = req.signer.user
    if (replayed) {
      // The same signed bytes again: a retransmission gets the first answer, a replay changes nothing.
      const first = replay?.kind === 'replay' ? replay.result : undefined
      this.#metrics.dropped({ reason: 'tsig_replay' })
      this.#log.info('update.replay', { user, peer: req.ctx.peer.address, answered: first !== undefined })
      if (!first) req.drop()
      else
        finish(
          first.rcode,
          first.leaseSec === undefined ? undefined : { leaseSec: first.leaseSec, keyLeaseSec: first.keyLeaseSec },
          first.ede,
        )
      return
    }

    const bad = checkUpdate(this.#cfg, msg, user)
    if (bad !== undefined) {
      const records = msg.answers.length + msg.authorities.length
      this.#log.info('update.refused', {
        user,
        rcode: rcodeName(bad),
        ...(records > (this.#cfg.maxUpdateRecords ?? DEFAULT_MAX_UPDATE_RECORDS) ? { reason: 'records', records } : {}),
      })
      finish(bad)
      return
    }
    const revoked = this.#revokedHostIn(msg, user)
    if (revoked !== undefined) {
      this.#log.info('update.refused', {
        user,
        reason: 'host-revoked',
        host: revoked,
        undo: `autotunnel account unrevoke-host ${user} ${revoked}`,
      })
      finish(
        Rcode.REFUSED,
        undefined,
        encodeExtendedError(
          ExtendedError.PROHIBITED,
          `host ${revoked} of ${user} was revoked: the server takes no records for it (${unrevokeHint(user, revoked)})`,
        ),
      )
      return
    }
    let leaseSec: number | undefined
    let keyLeaseSec: number | undefined
    const opt = findOption(msg.edns, EdnsOptionCode.UPDATE_LEASE)
    if (opt) {
      let ul: ReturnType<typeof decodeUpdateLease>
      try {
        ul = decodeUpdateLease(opt.data)
      } catch {
        finish(Rcode.FORMERR)
        return
      }
      leaseSec = Math.min(this.#cfg.leaseMaxSec, Math.max(this.#cfg.leaseMinSec, ul.leaseSec))
      if (ul.keyLeaseSec !== undefined) keyLeaseSec = Math.min(MAX_KEY_LEASE_SEC, Math.max(leaseSec, ul.keyLeaseSec))
    }
    if (this.#queue.pending >= MAX_QUEUED_UPDATES) {
      this.#metrics.dropped({ reason: 'update_queue_full' })
      finish(Rcode.SERVFAIL)
      return
    }
    if (leaseSec === undefined && this.#cfg.requireLease && msg.authorities.some((r) => r.class === RRClass.IN)) {
      this.#log.info('update.refused', { user, reason: 'lease-required', peer: req.ctx.peer.address })
      finish(Rcode.REFUSED)
      return
    }
    const maxRecords = req.signer.maxRecords ?? this.#cfg.maxAccountRecords ?? DEFAULT_MAX_ACCOUNT_RECORDS
    const shared = this.#store.shared
    const update = { msg, user, leaseSec, keyLeaseSec, maxRecords, quotaFromIndex: shared }
    /**
     * Shared store: prerequisites and a quota near its limit are checked against every node's committed data
     * (`reads`); `wholeAccount` forces the account's records to be re-read (QUOTA_RECHECK: it came near its quota).
     */
    const submit = (wholeAccount?: boolean): void => {
      const reads = shared ? consistentReadOf(this.#store.index, update, this.#cfg.zone, wholeAccount) : undefined
      const job = reads?.wholeAccount ? { ...update, quotaFromIndex: false } : update
      this.#queue.submit(
        (tx) => applyUpdate(tx, this.#store.index, job),
        (rcode, err) => {
          // A refresh may change TTLs without changing content: drop cached answers after any commit.
          this.#onCommitted()
          if (err || rcode === undefined) return finish(Rcode.SERVFAIL)
          if (rcode === QUOTA_RECHECK) return submit(true)
          if (rcode === QUOTA_EXCEEDED) {
            this.#metrics.dropped({ reason: 'quota' })
            this.#log.warn('update.refused', {
              user,
              reason: 'quota',
              maxRecords,
              records: this.#store.index.recordsUnder(user),
              peer: req.ctx.peer.address,
            })
            return finish(Rcode.REFUSED)
          }
          if (this.#log.enabled('debug')) this.#log.debug('update.done', { user, rcode: rcodeName(rcode), leaseSec })
          finish(rcode, rcode === Rcode.NOERROR && leaseSec !== undefined ? { leaseSec, keyLeaseSec } : undefined)
        },
        reads,
        accountKeyName(user, this.#cfg.zone),
      )
    }
    submit()
  }

  /** Removes records whose lease ran out (PostgreSQL: the store does it instead). */
  expireLeases(): void {
    if (this.#store.leaseExpiry !== 'local') return
    const now = this.#clock.now()
    const next = this.#store.leases.nextExpiryMs()
    if (next === undefined || next > now) return
    this.#queue.submit(
      (tx) => {
        const due = this.#store.leases.popDue(tx.nowMs)
        let n = 0
        for (const rec of due) if (tx.remove(rec)) n++
        if (n > 0) tx.bumpSerial()
        return n
      },
      (n, err) => {
        if (err) this.#log.error('lease.expiry_failed', { err: err.message })
        else if (n) {
          this.#metrics.leasesExpired(undefined, n)
          this.#log.info('lease.expired', { records: n, serial: this.#store.serial })
        }
        this.armLeaseTimer()
      },
    )
    this.#queue.flush()
  }

  /** Arms the timer for the next lease to run out (after every change: it may be earlier). */
  armLeaseTimer(): void {
    // PostgreSQL: the store expires leases by the database's clock, once across all nodes (pg/store.ts).
    if (this.#stopped || this.#store.leaseExpiry !== 'local') return
    const next = this.#store.leases.nextExpiryMs()
    if (next === undefined) {
      this.#clock.clearTimeout(this.#leaseTimer)
      this.#leaseTimer = undefined
      this.#leaseTimerAt = Infinity
      return
    }
    if (this.#leaseTimer && this.#leaseTimerAt <= next) return
    this.#clock.clearTimeout(this.#leaseTimer)
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, next - this.#clock.now()))
    this.#leaseTimerAt = this.#clock.now() + delay
    this.#leaseTimer = this.#clock.setTimeout(() => {
      this.#leaseTimer = undefined
      this.#leaseTimerAt = Infinity
      this.expireLeases()
      this.armLeaseTimer()
    }, delay)
  }
}
