// SSO enrolment requests (src/sso/enrol-codec.ts, enrol-policy.ts, krb5-name.ts, der.ts): what the server reads
// from an enrolment UPDATE or a certificate answer, signature check aside (asynchronous WebCrypto).
//   selector 0: ATENROL RDATA -> decodeEnrolRdata -> inspectCsr (PKCS#10, key type, subject, SAN principals)
//   selector 1: a subjectAltName extension value -> decodeSubjectAltName, round trip of principal/DNS entries
//   selector 2: a KRB5PrincipalName -> decode, encode, decode
//   selector 3: ATCERT RDATA -> decodeCertRdata; the rest as an owner name -> parseSsoName
import { DerError } from '../../../src/sso/der.js'
import {
  CERT_LABEL,
  decodeCertRdata,
  decodeEnrolRdata,
  ENROL_LABEL,
  EnrolCodecError,
  parseSsoName,
} from '../../../src/sso/enrol-codec.js'
import { EnrolError, inspectCsr } from '../../../src/sso/enrol-policy.js'
import {
  decodeKrb5PrincipalName,
  decodeSubjectAltName,
  encodeKrb5PrincipalName,
  encodeSubjectAltName,
} from '../../../src/sso/krb5-name.js'
import { assertRoundTrip, expectOnly, selector } from './harness.js'

const SELECTORS = 4

export function fuzz(data: Buffer): void {
  const [sel, rest] = selector(data)
  switch (sel % SELECTORS) {
    case 0: {
      const req = expectOnly([EnrolCodecError], () => decodeEnrolRdata(rest))
      if (!req) return
      expectOnly([EnrolError], () =>
        inspectCsr({ csr: req.csr, kind: req.kind, account: 'alice', domain: 'alice.members.example', host: 'laptop' }),
      )
      return
    }
    case 1: {
      const san = expectOnly([DerError], () => decodeSubjectAltName(rest))
      if (!san || san.some((e) => e.kind === 'other')) return
      assertRoundTrip('subjectAltName', san, decodeSubjectAltName(encodeSubjectAltName(san)))
      return
    }
    case 2: {
      const p = expectOnly([DerError], () => decodeKrb5PrincipalName(rest))
      if (!p) return
      assertRoundTrip('KRB5PrincipalName', p, decodeKrb5PrincipalName(encodeKrb5PrincipalName(p)))
      return
    }
    default: {
      expectOnly([EnrolCodecError], () => decodeCertRdata(rest))
      const name = rest.toString('latin1')
      parseSsoName(name, ENROL_LABEL, 'members.example.')
      parseSsoName(name, CERT_LABEL, 'members.example')
    }
  }
}
