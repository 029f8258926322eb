// The store beside other connections to it: `autotunnel account ...` opens the same file while the server
// starts or runs (issue 14: the server died with `database is locked`). The other connection is a worker
// thread, so it keeps its lock for a while and then lets go while this thread waits inside openDb.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { test } from 'node:test'
import { Worker } from 'node:worker_threads'
import { failOnLeakedResources } from '../io/leak-check.js'
import { revokeHostInDb } from './account-cli.js'
import { addAccount } from './accounts.js'
import { DB_FILE, getMeta, openDb } from './db.js'
import { tempDir, ZONE } from './test-helpers.js'

failOnLeakedResources()

const HOLD_MS = 300

/**
 * Another connection to `file` that runs `setup`, takes the write lock with BEGIN IMMEDIATE, keeps it for
 * HOLD_MS, then commits. Resolves once the lock is held; `released` resolves when the worker is done.
 */
async function holdWriteLock(file: string, setup: string[]): Promise<{ released: Promise<void> }> {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads')
    const Database = require(workerData.lib)
    const db = new Database(workerData.file)
    for (const sql of workerData.setup) db.exec(sql)
    db.exec('BEGIN IMMEDIATE')
    parentPort.postMessage('locked')
    setTimeout(() => { db.exec('COMMIT'); db.close() }, workerData.holdMs)
  `
  const lib = createRequire(import.meta.url).resolve('better-sqlite3')
  const w = new Worker(code, { eval: true, workerData: { file, setup, lib, holdMs: HOLD_MS } })
  const released = new Promise<void>((resolve, reject) => {
    w.once('error', reject)
    w.once('exit', () => resolve())
  })
  await new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve())
    w.once('error', reject)
  })
  return { released }
}

test('openDb on a new file waits for a connection that holds its write lock instead of failing', async (t) => {
  const { dir, cleanup } = tempDir()
  t.after(cleanup)
  // As a second `openDb` (account add) does while it switches the new file to WAL: the file is still in
  // rollback-journal mode, so our own switch must wait for that lock, which SQLite does not do by itself.
  const { released } = await holdWriteLock(join(dir, DB_FILE), [])
  const t0 = Date.now()
  const db = openDb(dir, ZONE)
  const waitedMs = Date.now() - t0
  await released
  try {
    assert.ok(waitedMs >= HOLD_MS / 2, `openDb returned after ${waitedMs} ms, before the lock was let go`)
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal')
    assert.equal(getMeta(db, 'zone'), ZONE)
  } finally {
    db.close()
  }
})

test('openDb waits while another connection writes to a WAL store, and sees its schema complete', async (t) => {
  const { dir, cleanup } = tempDir()
  t.after(cleanup)
  openDb(dir, ZONE).close()
  const { released } = await holdWriteLock(join(dir, DB_FILE), [])
  const db = openDb(dir, ZONE)
  await released
  try {
    assert.equal(getMeta(db, 'serial'), '1')
  } finally {
    db.close()
  }
})

test('account revoke-host waits for the server committing an update instead of failing', async (t) => {
  const { dir, cleanup } = tempDir()
  t.after(cleanup)
  const db = openDb(dir, ZONE)
  t.after(() => db.close())
  addAccount(db, ZONE, {
    user: 'alice',
    algorithm: 'hmac-sha256',
    secret: Buffer.alloc(32, 1),
    derived: false,
    nowMs: 0,
  })
  // revokeHostInDb reads before it deletes: in a deferred transaction the write lock would then be an upgrade
  // of a read lock, which SQLite refuses at once (SQLITE_BUSY) while the server holds the write lock.
  const { released } = await holdWriteLock(join(dir, DB_FILE), [])
  const touched = revokeHostInDb(db, ZONE, 'alice', 'laptop')
  await released
  assert.deepEqual(touched, [])
  assert.equal(getMeta(db, 'external_gen'), '1')
})
