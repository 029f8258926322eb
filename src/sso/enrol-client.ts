// The agent's side of enrolment (enrol-codec.ts): one signed UPDATE per CSR, then one signed ATCERT query for what
// the server issued. Keys never leave the host; the CSR is the proof of possession.
import type { UpdateSink } from '../dns/client/update.js'
import { Rcode, rcodeName } from '../dns/wire/header.js'
import type { Message } from '../dns/wire/message.js'
import { RRClass } from '../dns/wire/rr-table.js'
import { type CryptoKeyPair, createCsr, x509 } from './certs.js'
import {
  CertKindCode,
  certName,
  decodeCertRdata,
  EnrolCodecError,
  encodeEnrolRdata,
  enrolName,
  SsoRRType,
} from './enrol-codec.js'
import type { KrbPrincipal } from './krb5-name.js'

export interface SignedQuery {
  query(name: string, type: number): Promise<Message>
}

export class EnrolClientError extends Error {
  override readonly name = 'EnrolClientError'
}

export interface Enrolled {
  readonly ca: x509.X509Certificate
  readonly kdc: x509.X509Certificate
  readonly client: x509.X509Certificate
  /** The OpenSSH host certificate blob, when a host key was sent. */
  readonly sshHost: Buffer | undefined
}

async function send(sink: UpdateSink, zone: string, name: string, kind: number, csr: Buffer): Promise<void> {
  const res = await sink.update({
    zone: zone.endsWith('.') ? zone : `${zone}.`,
    updates: [
      {
        name,
        type: SsoRRType.ATENROL,
        class: RRClass.IN,
        ttl: 0,
        data: { raw: encodeEnrolRdata({ kind, csr } as never) },
      },
    ],
  })
  if (res.rcode !== Rcode.NOERROR)
    throw new EnrolClientError(
      `the server refused the ${['', 'KDC', 'client', 'SSH host'][kind]} certificate request: ${rcodeName(res.rcode)} (its log says why; a revoked host needs \`autotunnel account unrevoke-host\`)`,
    )
}

/** Enrols `host` of `account` (domain USER.ZONE) for a KDC and a client certificate naming `clientPrincipals`. */
export async function enrol(
  deps: { sink: UpdateSink; query: SignedQuery },
  o: {
    zone: string
    domain: string
    host: string
    account: string
    kdcKeys: CryptoKeyPair
    clientKeys: CryptoKeyPair
    clientPrincipals: readonly KrbPrincipal[]
    /** The sshd host key to certify (OpenSSH public key blob). */
    sshHostKey?: Buffer | undefined
  },
): Promise<Enrolled> {
  const fqdn = `${o.host}.${o.domain}`
  const name = enrolName(o.host, o.domain)
  await send(
    deps.sink,
    o.zone,
    name,
    CertKindCode.KDC,
    await createCsr({ keys: o.kdcKeys, account: o.account, fqdn, principals: [] }),
  )
  await send(
    deps.sink,
    o.zone,
    name,
    CertKindCode.CLIENT,
    await createCsr({ keys: o.clientKeys, account: o.account, fqdn, principals: o.clientPrincipals }),
  )
  if (o.sshHostKey) await send(deps.sink, o.zone, name, CertKindCode.SSH_HOST, o.sshHostKey)
  const m = await deps.query.query(certName(o.host, o.domain), SsoRRType.ATCERT)
  if (m.rcode !== Rcode.NOERROR) throw new EnrolClientError(`certificate query: ${rcodeName(m.rcode)}`)
  const got = new Map<number, x509.X509Certificate>()
  let sshHost: Buffer | undefined
  for (const rr of m.answers) {
    if (rr.type !== SsoRRType.ATCERT || !rr.data || !('raw' in rr.data)) continue
    try {
      const c = decodeCertRdata(rr.data.raw)
      if (c.kind === CertKindCode.SSH_HOST) sshHost = c.der
      else got.set(c.kind, new x509.X509Certificate(c.der))
    } catch (e) {
      if (e instanceof EnrolCodecError) throw new EnrolClientError(`certificate answer: ${e.message}`)
      throw new EnrolClientError(`certificate answer does not parse: ${(e as Error).message}`)
    }
  }
  const ca = got.get(CertKindCode.CA)
  const kdc = got.get(CertKindCode.KDC)
  const client = got.get(CertKindCode.CLIENT)
  if (!ca || !kdc || !client)
    throw new EnrolClientError('the certificate answer lacks the CA, KDC or client certificate')
  for (const [what, c, keys] of [
    ['KDC', kdc, o.kdcKeys],
    ['client', client, o.clientKeys],
  ] as const) {
    if (!(await c.verify({ publicKey: ca.publicKey, signatureOnly: true })))
      throw new EnrolClientError(`the ${what} certificate is not signed by the account CA`)
    const mine = Buffer.from(await (await import('node:crypto')).webcrypto.subtle.exportKey('spki', keys.publicKey))
    if (!Buffer.from(c.publicKey.rawData).equals(mine))
      throw new EnrolClientError(`the ${what} certificate is for another key (an older request?)`)
  }
  if (o.sshHostKey && !sshHost) throw new EnrolClientError('the certificate answer lacks the SSH host certificate')
  return { ca, kdc, client, sshHost }
}
