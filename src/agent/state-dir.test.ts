import assert from 'node:assert/strict'
import { test } from 'node:test'
import { defaultStateDir, ROOT_STATE_DIR } from './state-dir.js'

test('default state directory: env override, root, XDG_STATE_HOME, ~/.local/state (issue 13 finding 7)', () => {
  const home = () => '/home/ann'
  assert.equal(defaultStateDir({ AUTOTUNNEL_STATE_DIR: '/x/y' }, 0, home), '/x/y')
  assert.equal(defaultStateDir({}, 0, home), ROOT_STATE_DIR)
  assert.equal(defaultStateDir({ XDG_STATE_HOME: '/st' }, 1000, home), '/st/autotunnel-agent')
  assert.equal(defaultStateDir({}, 1000, home), '/home/ann/.local/state/autotunnel-agent')
  assert.notEqual(ROOT_STATE_DIR, '/var/lib/autotunnel', "not a server's usual --data directory")
})

test('default state directory of a user without a home (a systemd dynamic user): no throw, the system one', () => {
  const noHome = (): string => {
    throw Object.assign(new Error('uv_os_homedir returned ENOENT'), { code: 'ERR_SYSTEM_ERROR' })
  }
  assert.equal(defaultStateDir({}, 61234, noHome), ROOT_STATE_DIR)
  assert.equal(defaultStateDir({ XDG_STATE_HOME: '/st' }, 61234, noHome), '/st/autotunnel-agent')
})
