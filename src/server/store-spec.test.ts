import assert from 'node:assert/strict'
import { test } from 'node:test'
import { redact, resolveStore } from './store-spec.js'

test('resolveStore: --store, AUTOTUNNEL_STORE, --data', () => {
  const url = 'postgres://u:secret@127.0.0.1:5432/db'
  const cases: [{ data?: string; store?: string }, NodeJS.ProcessEnv, unknown][] = [
    [{ data: '/d' }, {}, { kind: 'sqlite', dir: '/d' }],
    [{ store: 'sqlite:/s' }, {}, { kind: 'sqlite', dir: '/s' }],
    [{ store: 'sqlite:/s', data: '/s' }, {}, { kind: 'sqlite', dir: '/s' }],
    [{ store: url }, {}, { kind: 'postgres', url, dir: undefined }],
    [{ store: url, data: '/d' }, {}, { kind: 'postgres', url, dir: '/d' }],
    [{}, { AUTOTUNNEL_STORE: url }, { kind: 'postgres', url, dir: undefined }],
    [{ data: '/d' }, { AUTOTUNNEL_STORE: 'sqlite:/e' }, { kind: 'sqlite', dir: '/d' }],
    [{ store: 'sqlite:/s' }, { AUTOTUNNEL_STORE: url }, { kind: 'sqlite', dir: '/s' }],
    [{ store: 'postgresql://h/db' }, {}, { kind: 'postgres', url: 'postgresql://h/db', dir: undefined }],
  ]
  for (const [o, env, want] of cases) assert.deepEqual(resolveStore(o, env), want, JSON.stringify([o, env]))
  assert.throws(() => resolveStore({}, {}), /give --data DIR .* or --store postgres/)
  assert.throws(() => resolveStore({ store: 'sqlite:/a', data: '/b' }, {}), /two different directories/)
  assert.throws(() => resolveStore({ store: 'mysql://u:pw@h/db' }, {}), /unknown store/)
  assert.throws(() => resolveStore({ store: 'sqlite:' }, {}), /needs a directory/)
  assert.equal(redact(url), 'postgres://u:***@127.0.0.1:5432/db')
})
