import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Rcode } from '../wire/header.js'
import { explainRcode, explainTransport } from './explain.js'

const ctx = { domain: 'alice.members.example', keyName: 'alice.members.example.', via: 'tls:198.51.100.10:853' }

test('BADKEY, BADSIG: "wrong key or key secret", fatal; the key name and the fix are named', () => {
  for (const e of [Rcode.BADKEY, Rcode.BADSIG]) {
    const x = explainRcode(Rcode.NOTAUTH, e, ctx)
    assert.equal(x.kind, 'key')
    assert.equal(x.fatal, true)
    assert.match(x.message, /^wrong key or key secret: .*alice\.members\.example\. \(NOTAUTH\/BAD(KEY|SIG)\)/)
    assert.match(x.message, /--key-file/)
  }
})

test('NOTAUTH without a TSIG error, NOTZONE, and REFUSED before any success: "not in this account", fatal', () => {
  for (const [rcode, first] of [
    [Rcode.NOTAUTH, false],
    [Rcode.NOTZONE, false],
    [Rcode.REFUSED, true],
  ] as const) {
    const x = explainRcode(rcode, undefined, { ...ctx, neverSucceeded: first })
    assert.equal(x.fatal, true, String(rcode))
    assert.equal(x.kind, 'domain')
    assert.match(x.message, /alice\.members\.example is not in this account/)
    assert.match(x.message, /--domain/)
  }
})

test('REFUSED after updates worked (a quota), BADTIME, SERVFAIL: explained, not fatal', () => {
  assert.equal(explainRcode(Rcode.REFUSED, undefined, { ...ctx, neverSucceeded: false }).fatal, false)
  const t = explainRcode(Rcode.NOTAUTH, Rcode.BADTIME, ctx)
  assert.equal(t.fatal, false)
  assert.match(t.message, /clock/)
  assert.equal(explainRcode(Rcode.SERVFAIL, undefined, ctx).fatal, false)
})

test("REFUSED with the server's Extended DNS Error text (a revoked host): its words, not fatal, also as the first UPDATE", () => {
  const text = 'host laptop of alice was revoked: the server takes no records for it'
  for (const neverSucceeded of [true, false]) {
    const x = explainRcode(Rcode.REFUSED, undefined, { ...ctx, neverSucceeded }, text)
    assert.equal(x.kind, 'prohibited')
    assert.equal(x.fatal, false)
    assert.equal(x.message, `the server at tls:198.51.100.10:853 refused the update (REFUSED): ${text}`)
  }
})

test('TLS: an untrusted certificate says to pass --ca or --tls-fingerprint; a timeout is "no answer"', () => {
  const self = Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' })
  const x = explainTransport(self, { via: 'tls:198.51.100.10:853' })
  assert.equal(x.kind, 'tls')
  assert.equal(x.fatal, false)
  assert.match(x.message, /^TLS failed: certificate not trusted/)
  assert.match(x.message, /pass --ca DIR\/tls\.crt .* or --tls-fingerprint/)
  const alt = Object.assign(new Error("Hostname/IP does not match certificate's altnames"), {
    code: 'ERR_TLS_CERT_ALTNAME_INVALID',
  })
  assert.match(explainTransport(alt, { via: 'v' }).message, /does not name the server/)
  assert.match(
    explainTransport(new Error('server certificate fingerprint AB does not match'), { via: 'v' }).message,
    /--tls-fingerprint/,
  )
  const refused = Object.assign(new Error('connect ECONNREFUSED 192.0.2.1:853'), { code: 'ECONNREFUSED' })
  assert.equal(explainTransport(refused, { via: 'v' }).kind, 'unreachable')
  assert.equal(explainTransport(new Error('DSO keepalive: RCODE 5'), { via: 'v' }).kind, 'other')
  const to = explainTransport(new Error('connect 192.0.2.1:853 timed out'), { via: 'tls:192.0.2.1:853' })
  assert.equal(to.kind, 'unreachable')
  assert.match(to.message, /^no answer from tls:192\.0\.2\.1:853/)
})
