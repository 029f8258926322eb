import assert from 'node:assert/strict'
import { test } from 'node:test'
import { tunPermissionProblem, tunSetIffMessage } from './linux-tun.js'

test('TUN errors say the cause and the fix (issue 13 finding 7)', () => {
  const status = (capEff: string) =>
    `Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`
  assert.equal(tunPermissionProblem('autotun0', status('000001ffffffffff')), undefined, 'root')
  assert.equal(tunPermissionProblem('autotun0', status('0000000000001000')), undefined, 'CAP_NET_ADMIN alone')
  const m = tunPermissionProblem('autotun0', status('0000000000000400')) ?? ''
  assert.match(m, /cannot create the TUN device autotun0: operation not permitted/)
  assert.match(m, /root or CAP_NET_ADMIN/)
  assert.match(m, /--no-tun/)
  assert.equal(tunPermissionProblem('autotun0', 'Name:\tnode\n'), undefined, 'unknown: let open() decide')
  assert.match(tunSetIffMessage('at0', 16), /exists and is in use .*--tun NAME/)
  assert.match(tunSetIffMessage('at0', 22), /ioctl\(TUNSETIFF\) failed, errno 22/)
})
