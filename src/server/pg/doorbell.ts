// The change feed's doorbell (docs/cluster.md): NOTIFY after a data COMMIT, never inside it (a notifying COMMIT
// takes a database-wide lock), on its own connection with synchronous_commit off (the NOTIFY's own transaction then
// costs no fsync); and a LISTEN connection that reconnects while the database is away. A ring only says "read the
// feed": the rows are the data, so a NOTIFY lost while disconnected costs latency (the feed is also polled), never
// a change.
import type pg from 'pg'
import type { Logger } from '../../io/log.js'
import { FEED_CHANNEL } from './accounts.js'
import { CONNECT_TIMEOUT_MS, type PgPrimary } from './primary.js'

const RECONNECT_MS = 500
/**
 * At most one NOTIFY per this time; a ring within it is sent when it ends. Under load a node commits every few
 * milliseconds, and each NOTIFY wakes every listening backend and node; the other nodes that commit too read the
 * feed with their own commits (store.ts), so a ring matters only to idle nodes, which then read at most this late.
 */
const RING_GAP_MS = 20

export class Doorbell {
  readonly #primary: PgPrimary
  readonly #nodeId: string
  readonly #log: Logger
  readonly #onRing: () => void
  readonly #bell: pg.Pool
  #ringing = false
  #ringAgain = false
  /** When the last NOTIFY was sent, and the timer of a ring held back until RING_GAP_MS after it. */
  #rangAt = -Infinity
  #ringTimer: NodeJS.Timeout | undefined
  #closed = false
  #listener: pg.Client | undefined
  /** The listener is connected and LISTENing (safe to end()). */
  #ready = false
  #listening: Promise<void> | undefined
  #sleep: { timer: NodeJS.Timeout; wake: () => void } | undefined

  /** `onRing` runs when another node (or the CLI) rang, and after every (re)connection of the listener. */
  constructor(deps: { log: Logger; onRing: () => void }, opts: { primary: PgPrimary; nodeId: string }) {
    this.#primary = opts.primary
    this.#nodeId = opts.nodeId
    this.#log = deps.log
    this.#onRing = deps.onRing
    this.#bell = opts.primary.pool({ max: 1, options: '-c synchronous_commit=off' })
    this.#bell.on('error', (e) => this.#log.warn('pg.idle_error', { err: e.message }))
  }

  start(): void {
    this.#listening ??= this.#listen()
  }

  /** NOTIFY, coalesced: at most one in flight and one more queued, and one sent per RING_GAP_MS. */
  ring(): void {
    if (this.#closed || this.#ringTimer) return
    const wait = this.#rangAt + RING_GAP_MS - performance.now()
    if (wait > 0) {
      this.#ringTimer = setTimeout(() => {
        this.#ringTimer = undefined
        this.ring()
      }, wait)
      return
    }
    if (this.#ringing) {
      this.#ringAgain = true
      return
    }
    this.#ringing = true
    this.#rangAt = performance.now()
    this.#bell
      .query('SELECT pg_notify($1, $2)', [FEED_CHANNEL, this.#nodeId])
      .catch(() => {})
      .finally(() => {
        this.#ringing = false
        if (this.#ringAgain) {
          this.#ringAgain = false
          this.ring()
        }
      })
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#ringTimer)
    if (this.#sleep) {
      clearTimeout(this.#sleep.timer)
      this.#sleep.wake()
    }
    // A listening connection is ended; one still connecting is left to finish (pg's end() during a connect can leave
    // that connect unsettled for ever): the loop sees #closed after it and stops. Bounded either way.
    if (this.#ready) await this.#listener?.end().catch(() => {})
    await Promise.race([this.#listening, new Promise((r) => setTimeout(r, CONNECT_TIMEOUT_MS + 1000).unref())])
    await this.#bell.end().catch(() => {})
  }

  async #listen(): Promise<void> {
    while (!this.#closed) {
      // The writable server of the URL's list: after a failover the listener reconnects to the new primary.
      const c = new this.#primary.Client({ connectionTimeoutMillis: CONNECT_TIMEOUT_MS })
      this.#listener = c
      const ended = new Promise<void>((resolve) => {
        c.on('error', (e) => {
          if (!this.#closed) this.#log.warn('pg.listener_error', { err: e.message })
          resolve()
        })
        c.on('end', () => resolve())
      })
      c.on('notification', (n) => {
        if (n.payload !== this.#nodeId) this.#onRing()
      })
      try {
        await c.connect()
        if (this.#closed) break
        await c.query(`LISTEN ${FEED_CHANNEL}`)
        this.#ready = true
        // Whatever was rung while not listening.
        this.#onRing()
        if (!this.#closed) await ended
      } catch (e) {
        if (!this.#closed) this.#log.warn('pg.listener_connect_failed', { err: (e as Error).message })
      } finally {
        this.#ready = false
        this.#listener = undefined
        await c.end().catch(() => {})
      }
      if (!this.#closed)
        await new Promise<void>((wake) => {
          this.#sleep = { timer: setTimeout(wake, RECONNECT_MS), wake }
        })
    }
  }
}
