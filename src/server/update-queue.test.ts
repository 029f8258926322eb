import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { MemoryLogger } from '../io/log.js'
import { UpdateQueue } from './update-queue.js'
import type { WriteOptions, ZoneStore, ZoneTx } from './zone-tx.js'

failOnLeakedResources()

/** A store that records each batch's options and commits asynchronously when told to. */
function fakeStore(shared: boolean): {
  store: ZoneStore
  batches: { jobs: number; opts: WriteOptions | undefined }[]
  commit: () => void
} {
  const batches: { jobs: number; opts: WriteOptions | undefined }[] = []
  let pending: (() => void) | undefined
  const store = {
    shared,
    write(fn: (tx: ZoneTx) => void, opts?: WriteOptions): Promise<void> {
      let jobs = 0
      const tx = new Proxy({}, { get: () => () => jobs++ }) as unknown as ZoneTx
      fn(tx)
      batches.push({ jobs, opts })
      return new Promise<void>((r) => (pending = r))
    },
    emitDeferred(): void {},
  } as unknown as ZoneStore
  return { store, batches, commit: () => pending?.() }
}

const job = (tx: ZoneTx): number => {
  ;(tx as unknown as { count: () => void }).count()
  return 0
}

test('UpdateQueue: a shared store gets batches of at most maxAccounts accounts, in arrival order', async () => {
  const { store, batches, commit } = fakeStore(true)
  const q = new UpdateQueue({ store, log: new MemoryLogger() }, { maxAccounts: 2 })
  const done: string[] = []
  // Accounts a a b a c c b: the first batch takes a a b a (two accounts), the next c c b.
  const accounts = ['a', 'a', 'b', 'a', 'c', 'c', 'b']
  for (const [i, a] of accounts.entries()) {
    const reads = i === 0 ? { domain: a, names: [], wholeAccount: false } : undefined
    q.submit(job, () => done.push(`${i}`), reads, a)
  }
  q.flush()
  assert.equal(batches.length, 1)
  assert.equal(batches[0]!.jobs, 4)
  // The batch has a consistent job: the store is told every account of the batch.
  assert.deepEqual(batches[0]!.opts?.accounts, ['a', 'b'])
  commit()
  await new Promise((r) => setImmediate(r))
  await new Promise((r) => setImmediate(r))
  assert.equal(batches.length, 2)
  assert.equal(batches[1]!.jobs, 3)
  assert.equal(batches[1]!.opts?.accounts, undefined)
  commit()
  await new Promise((r) => setImmediate(r))
  assert.deepEqual(done, ['0', '1', '2', '3', '4', '5', '6'])
  q.close()
})

test('UpdateQueue: a store one process owns batches any number of accounts', () => {
  const { store, batches, commit } = fakeStore(false)
  const q = new UpdateQueue({ store, log: new MemoryLogger() })
  for (let i = 0; i < 200; i++) q.submit(job, () => {}, undefined, `u${i}`)
  q.flush()
  assert.equal(batches.length, 1)
  assert.equal(batches[0]!.jobs, 200)
  commit()
  q.close()
})
