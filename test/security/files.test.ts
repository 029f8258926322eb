// Issue 16 finding 5: TSIG secrets at rest. Whatever the data directory's mode (systemd's StateDirectory= makes it
// 0755), autotunnel.sqlite and its -wal/-shm files are 0600, and a too-open directory gets a warning.
import assert from 'node:assert/strict'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { RRType } from '../../src/dns/wire/rr-table.js'
import { ServerProcess, ZONE } from './security-harness.js'

function mode(f: string): number {
  return statSync(f).mode & 0o777
}

test('secret-bearing files are 0600 in a 0755 data directory; the directory gets a warning', async (t) => {
  const parent = mkdtempSync(join(tmpdir(), 'autotunnel-sec-'))
  t.after(() => rmSync(parent, { recursive: true, force: true }))
  const dir = join(parent, 'state')
  mkdirSync(dir)
  chmodSync(dir, 0o755)
  const srv = new ServerProcess(dir)
  t.after(() => srv.cleanup())
  const alice = await srv.addAccount('alice')
  await srv.start()
  assert.equal((await srv.nsupdate(alice, [`update add h.alice.${ZONE}. 60 AAAA fd00::1`])).code, 0)
  for (const f of ['autotunnel.sqlite', 'autotunnel.sqlite-wal', 'autotunnel.sqlite-shm']) {
    const p = join(dir, f)
    if (!existsSync(p)) continue
    assert.equal(mode(p).toString(8), '600', `${f} is readable by others`)
  }
  assert.match(srv.stderr, /data_dir_mode|group or others/, 'a warning names the too-open directory')
  assert.ok(RRType.AAAA)
})
