import assert from 'node:assert/strict'
import { test } from 'node:test'
import { formatPeerRow, serverState } from './status-format.js'

test('formatPeerRow: one readable line per peer', () => {
  const row = formatPeerRow({
    name: 'desktop',
    ula: 'fd00::1',
    endpoint: '203.0.113.11:4500',
    path: 'direct',
    lastHandshake: '2026-11-21T13:30:10.954Z',
    auth: 'signature',
    bytesIn: 2048,
    bytesOut: 512,
  })
  assert.match(
    row,
    /^desktop +fd00::1 +203\.0\.113\.11:4500 +direct {2}handshake 2026-11-21T13:30:10Z {2}auth signature {2}in 2\.0 KiB out 0\.5 KiB$/,
  )
  assert.match(formatPeerRow({ name: 'tv', lastError: 'no SRV' }), /handshake never {2}auth - .*\(no SRV\)$/)
  assert.match(formatPeerRow({ name: 'tv', auth: 'psk', lastHandshake: '2026-11-21T13:30:10Z' }), / {2}auth psk {2}/)
  assert.match(formatPeerRow({ name: 'tv', auth: null }), / {2}auth - {2}/)
})

test('serverState: a server found whose TLS failed is not "not found yet" (issue 13 finding 3)', () => {
  assert.equal(serverState({}), 'not found yet')
  assert.equal(serverState({ updateServer: 'tls:198.51.100.10:853', lastError: null }), 'tls:198.51.100.10:853')
  assert.equal(
    serverState({
      updateServer: 'tls:198.51.100.10:853',
      lastError: { kind: 'tls', message: 'TLS failed: certificate not trusted (self-signed certificate) at tls:...' },
    }),
    'tls:198.51.100.10:853 found, TLS failed: certificate not trusted (self-signed certificate) at tls:...',
  )
  assert.equal(
    serverState({ lastError: { message: 'no answer from udp:192.0.2.1:53' } }),
    'not found: no answer from udp:192.0.2.1:53',
  )
})
