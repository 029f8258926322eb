// Group commit. Every change to the zone (an UPDATE, a lease expiry) is a job queued here; all jobs queued
// while the previous commit was running (the event loop is blocked during a better-sqlite3 COMMIT, so datagrams
// pile up in the socket buffer meanwhile) run in one Store.write: one SQLite transaction and one fsync for the
// lot. Jobs run in arrival order, each against the zone as the jobs before it left it, so the result is the
// same as committing them one by one; only the fsyncs are shared. Answers go out after the COMMIT, and the
// change feed (LLQ and DNS Push fan-out, which may mean 10,000 sends) runs after the answers: an updater does not
// wait for the watchers, and no watcher hears of a change before it is durable.
import type { Logger } from '../io/log.js'
import type { Store, ZoneTx } from './store.js'

export type Job<R> = (tx: ZoneTx) => R

interface Queued {
  readonly job: Job<unknown>
  readonly done: (result: unknown, err?: Error) => void
}

export class UpdateQueue {
  readonly #store: Store
  readonly #log: Logger
  readonly #maxBatch: number
  #queue: Queued[] = []
  #scheduled = false
  #closed = false
  /** Batches and jobs committed so far (metrics, tests). */
  batches = 0
  jobs = 0

  constructor(deps: { store: Store; log: Logger }, opts: { maxBatch?: number } = {}) {
    this.#store = deps.store
    this.#log = deps.log
    this.#maxBatch = opts.maxBatch ?? 1000
  }

  get pending(): number {
    return this.#queue.length
  }

  /** Queues `job`; `done` runs after its batch committed (or failed, with the error). */
  submit<R>(job: Job<R>, done: (result: R | undefined, err?: Error) => void): void {
    if (this.#closed) {
      done(undefined, new Error('update queue closed'))
      return
    }
    this.#queue.push({ job, done: done as Queued['done'] })
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => this.#flush())
    }
  }

  /** Commits whatever is queued now (shutdown, tests). */
  flush(): void {
    while (this.#queue.length) this.#runBatch()
  }

  close(): void {
    this.flush()
    this.#closed = true
  }

  #flush(): void {
    this.#scheduled = false
    this.#runBatch()
    if (this.#queue.length && !this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => this.#flush())
    }
  }

  #runBatch(): void {
    const batch = this.#queue.length <= this.#maxBatch ? this.#queue : this.#queue.slice(0, this.#maxBatch)
    this.#queue = this.#queue.length <= this.#maxBatch ? [] : this.#queue.slice(this.#maxBatch)
    if (batch.length === 0) return
    const results: unknown[] = []
    try {
      this.#store.write(
        (tx) => {
          for (const q of batch) results.push(q.job(tx))
        },
        { deferChanges: true },
      )
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e))
      this.#log.error('store.commit_failed', { jobs: batch.length, err: err.message })
      for (const q of batch) q.done(undefined, err)
      return
    }
    this.batches++
    this.jobs += batch.length
    try {
      for (let i = 0; i < batch.length; i++) batch[i]!.done(results[i])
    } finally {
      this.#store.emitDeferred()
    }
  }
}
