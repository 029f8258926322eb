import assert from 'node:assert/strict'
import { test } from 'node:test'
import { EdnsOptionCode } from '../dns/edns.js'
import {
  CertKindCode,
  certName,
  decodeCertRdata,
  decodeEnrolRdata,
  decodeExtendedError,
  decodeRevokeRdata,
  ENROL_LABEL,
  EnrolCodecError,
  encodeCertRdata,
  encodeEnrolRdata,
  encodeExtendedError,
  encodeRevokeRdata,
  enrolName,
  MAX_CSR,
  parseSsoName,
} from './enrol-codec.js'

test('ATENROL, ATREVOKE and ATCERT RDATA round-trip; names have the documented shape', () => {
  const csr = Buffer.from('3082', 'hex')
  const raw = encodeEnrolRdata({ kind: CertKindCode.CLIENT, csr })
  assert.equal(raw.toString('hex'), '01023082', 'version 1, kind 2, then the CSR')
  assert.deepEqual(decodeEnrolRdata(raw), { kind: CertKindCode.CLIENT, csr })
  assert.deepEqual(decodeCertRdata(encodeCertRdata({ kind: CertKindCode.CA, der: csr })), { kind: 0, der: csr })
  decodeRevokeRdata(encodeRevokeRdata())
  assert.equal(enrolName('laptop', 'Alice.Members.Example'), '_autotunnel-enrol.laptop.alice.members.example.')
  assert.equal(certName('laptop', 'alice.members.example.'), '_autotunnel-cert.laptop.alice.members.example.')
  assert.deepEqual(parseSsoName('_AUTOTUNNEL-ENROL.Laptop.alice.members.example.', ENROL_LABEL, 'members.example'), {
    host: 'laptop',
    user: 'alice',
  })
})

test('malformed RDATA and names: EnrolCodecError with what is wrong, or undefined for a foreign name', () => {
  const bad: [Buffer, RegExp][] = [
    [Buffer.alloc(0), /want version, kind, CSR/],
    [Buffer.from([2, 1, 0]), /version 2/],
    [Buffer.from([1, 0, 0]), /kind 0/],
    [Buffer.from([1, 1]), /no CSR/],
    [Buffer.concat([Buffer.from([1, 1]), Buffer.alloc(MAX_CSR + 1)]), /at most/],
  ]
  for (const [raw, msg] of bad)
    assert.throws(
      () => decodeEnrolRdata(raw),
      (e) => e instanceof EnrolCodecError && msg.test(e.message),
    )
  assert.throws(() => decodeRevokeRdata(Buffer.from([1, 0])), EnrolCodecError)
  assert.throws(() => decodeCertRdata(Buffer.from([1, 9, 0])), EnrolCodecError)
  for (const n of [
    'laptop.alice.members.example.',
    '_autotunnel-enrol.alice.members.example.',
    '_autotunnel-enrol.a.b.alice.members.example.',
    '_autotunnel-enrol.laptop.alice.members.example.evil.',
    '_autotunnel-enrol.laptop.alice.other.example.',
  ])
    assert.equal(parseSsoName(n, ENROL_LABEL, 'members.example.'), undefined, n)
})

test('RFC 8914 Extended DNS Error: INFO-CODE and EXTRA-TEXT', () => {
  const o = encodeExtendedError(18, 'host laptop was revoked')
  assert.equal(o.code, EdnsOptionCode.EXTENDED_ERROR)
  assert.equal(o.data.subarray(0, 2).toString('hex'), '0012')
  assert.deepEqual(decodeExtendedError(o), { infoCode: 18, text: 'host laptop was revoked' })
  assert.equal(decodeExtendedError({ code: 15, data: Buffer.from([0]) }), undefined)
})
