import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { ensureOwnerOnly, openToOthers, tightenIfPresent } from './secret-file.js'

test('secret files: created 0600, tightened when open to others; a file that vanished is neither an error nor recreated', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'at-secret-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const f = join(dir, 'db')
  ensureOwnerOnly(f)
  assert.equal(statSync(f).mode & 0o777, 0o600)
  const wal = join(dir, 'db-wal')
  writeFileSync(wal, '', { mode: 0o644 })
  assert.equal(openToOthers(wal), 0o044)
  tightenIfPresent(wal)
  assert.equal(statSync(wal).mode & 0o777, 0o600)
  // SQLite deletes -wal/-shm when the last connection closes, possibly between our look and our chmod.
  const gone = join(dir, 'db-shm')
  assert.doesNotThrow(() => tightenIfPresent(gone))
  assert.equal(existsSync(gone), false, 'not created')
})
