// SSO enrolment in the DNS service (docs/sso.md): a DnsService extension handler that takes the enrolment UPDATEs
// and certificate queries of src/sso/enrol-codec.ts before the core sees them. Everything is authorised by the
// TSIG key that signed the request: the name's account must be the signer's, the host must not be revoked, and
// the CSR must ask only for names inside that account's subdomain (src/sso/enrol-policy.ts). A refusal changes
// nothing (no CA is made, no certificate issued) and says why in an RFC 8914 Extended DNS Error.
import { Opcode, Rcode } from '../dns/wire/header.js'
import { emptyMessage, type Message } from '../dns/wire/message.js'
import { type RR, RRClass } from '../dns/wire/rr-table.js'
import type { Logger } from '../io/log.js'
import { type CaMaterial, DEFAULT_CERT_DAYS, issueCertificate, loadCa, x509 } from '../sso/certs.js'
import {
  CERT_LABEL,
  type CertKindCode,
  decodeEnrolRdata,
  decodeRevokeRdata,
  ENROL_LABEL,
  EnrolCodecError,
  ExtendedError,
  encodeCertRdata,
  encodeExtendedError,
  CertKindCode as Kind,
  parseSsoName,
  SsoRRType,
} from '../sso/enrol-codec.js'
import { checkCsr, EnrolError, type EnrolRefusal } from '../sso/enrol-policy.js'
import { checkHostKeyBlob, signHostCertificate } from '../sso/ssh-cert.js'
import { unrevokeHint } from './revoked-hosts.js'
import type { DnsRequest, MessageHandler } from './service.js'
import type { SsoState } from './sso-state.js'

const RCODE_OF: Record<EnrolRefusal, number> = {
  'bad-csr': Rcode.FORMERR,
  malformed: Rcode.FORMERR,
  'foreign-name': Rcode.REFUSED,
  'foreign-key': Rcode.REFUSED,
  unsigned: Rcode.REFUSED,
  revoked: Rcode.REFUSED,
}

const SSH_BACKDATE_SEC = 300

export interface SsoStats {
  issued: number
  refused: Record<string, number>
  revoked: number
}

export class SsoService {
  readonly stats: SsoStats = { issued: 0, refused: {}, revoked: 0 }
  readonly #zone: string
  readonly #state: SsoState
  readonly #log: Logger
  /** Each account's CA parsed, by user, with the PEM it was parsed from (the state may hand out another). */
  readonly #cas = new Map<string, { certPem: string; material: CaMaterial }>()
  /** One request at a time per account, so two first requests on this node do not both make a CA. */
  readonly #chains = new Map<string, Promise<void>>()

  /** `state`: the accounts' CAs, revoked lists and issued certificates (sso-state.ts: a file or the cluster's). */
  constructor(deps: { log: Logger; state: SsoState }, o: { zone: string }) {
    this.#state = deps.state
    this.#zone = o.zone.toLowerCase().endsWith('.') ? o.zone.toLowerCase() : `${o.zone.toLowerCase()}.`
    this.#log = deps.log
  }

  async #ca(user: string, domain: string): Promise<{ certPem: string; keyPem: string; material: CaMaterial }> {
    const pem = await this.#state.ca(user, domain)
    let hit = this.#cas.get(user)
    if (hit?.certPem !== pem.certPem) {
      hit = { certPem: pem.certPem, material: await loadCa(pem.certPem, pem.keyPem) }
      this.#cas.set(user, hit)
    }
    return { ...pem, material: hit.material }
  }

  /** For DnsService.use(). */
  readonly handler: MessageHandler = (req) => {
    const { msg } = req
    if (msg.qr) return false
    if (msg.opcode === Opcode.UPDATE) {
      const ours = msg.authorities.filter((r) => r.type === SsoRRType.ATENROL || r.type === SsoRRType.ATREVOKE)
      if (ours.length === 0) return false
      this.#run(req, () => this.#enrol(req, ours))
      return true
    }
    if (msg.opcode === Opcode.QUERY && msg.questions.length === 1 && msg.questions[0]?.type === SsoRRType.ATCERT) {
      this.#run(req, () => this.#fetch(req))
      return true
    }
    return false
  }

  #run(req: DnsRequest, work: () => Promise<Message>): void {
    const user = req.signer?.user ?? ''
    const prev = this.#chains.get(user) ?? Promise.resolve()
    const next = prev
      .then(work)
      .catch((e: unknown) => {
        if (e instanceof EnrolError) return this.#refuse(req, e)
        if (e instanceof EnrolCodecError) return this.#refuse(req, new EnrolError('malformed', e.message))
        this.#log.error('sso.internal_error', { err: String((e as Error)?.stack ?? e) })
        const res = this.#base(req.msg)
        res.rcode = Rcode.SERVFAIL
        return res
      })
      .then((res) => req.respond(res))
    const tail = next.then(
      () => {},
      () => {},
    )
    this.#chains.set(user, tail)
    void tail.then(() => {
      if (this.#chains.get(user) === tail) this.#chains.delete(user)
    })
  }

  #base(msg: Message): Message {
    const res = emptyMessage({ id: msg.id, qr: true, opcode: msg.opcode, rd: msg.rd, questions: msg.questions })
    if (msg.edns) res.edns = { udpSize: 1232, version: 0, do: false, options: [] }
    return res
  }

  #refuse(req: DnsRequest, e: EnrolError): Message {
    this.stats.refused[e.reason] = (this.stats.refused[e.reason] ?? 0) + 1
    this.#log.info('sso.refused', { reason: e.reason, signer: req.signer?.user, err: e.message })
    const res = this.#base(req.msg)
    res.rcode = RCODE_OF[e.reason]
    res.edns?.options.push(
      encodeExtendedError(
        e.reason === 'bad-csr' || e.reason === 'malformed' ? ExtendedError.OTHER : ExtendedError.PROHIBITED,
        e.message,
      ),
    )
    return res
  }

  /** Who may act on PREFIX.HOST.USER.ZONE: the signer must be USER and HOST not revoked. */
  async #authorise(
    req: DnsRequest,
    name: string,
    prefix: string,
    revokedOk = false,
  ): Promise<{ host: string; user: string; domain: string }> {
    const parsed = parseSsoName(name, prefix, this.#zone)
    if (!parsed)
      throw new EnrolError(
        'foreign-name',
        `${name} is not ${prefix}.HOST.USER.${this.#zone} (outside any user's subdomain)`,
      )
    if (!req.signer) throw new EnrolError('unsigned', 'SSO requests must be TSIG-signed with the account key')
    if (req.signer.user.toLowerCase() !== parsed.user)
      throw new EnrolError(
        'foreign-key',
        `${name} belongs to account ${parsed.user}, but the request is signed with ${req.signer.user}'s key`,
      )
    if (!revokedOk && (await this.#state.isRevoked(parsed.user, parsed.host)))
      throw new EnrolError(
        'revoked',
        `host ${parsed.host} of ${parsed.user} was revoked: no certificates (${unrevokeHint(parsed.user, parsed.host)})`,
      )
    return { ...parsed, domain: `${parsed.user}.${this.#zone}` }
  }

  async #enrol(req: DnsRequest, ours: RR[]): Promise<Message> {
    const { msg } = req
    if (ours.length !== 1 || msg.authorities.length !== 1 || msg.answers.length !== 0)
      throw new EnrolError('malformed', 'an SSO UPDATE carries exactly one ATENROL or ATREVOKE record and nothing else')
    const rr = ours[0] as RR
    if (rr.class !== RRClass.IN) throw new EnrolError('malformed', 'ATENROL/ATREVOKE must be class IN')
    const raw = rr.data && 'raw' in rr.data ? rr.data.raw : undefined
    if (!raw) throw new EnrolError('malformed', 'empty RDATA')
    // Revoking a revoked host again is not an error (the mark is idempotent).
    const who = await this.#authorise(req, rr.name, ENROL_LABEL, rr.type === SsoRRType.ATREVOKE)
    if (rr.type === SsoRRType.ATREVOKE) {
      decodeRevokeRdata(raw)
      // From its answer on, the UPDATE path refuses the host's records (the state tells it).
      await this.#state.setRevoked(who.user, who.host, true)
      this.stats.revoked++
      this.#log.info('sso.revoked', { user: who.user, host: who.host })
      return this.#base(msg)
    }
    const er = decodeEnrolRdata(raw)
    if (er.kind === Kind.SSH_HOST) return this.#sshHost(req, who, er.csr)
    const verdict = await checkCsr({
      csr: er.csr,
      kind: er.kind,
      account: who.user,
      domain: who.domain,
      host: who.host,
    })
    const ca = await this.#ca(who.user, who.domain)
    const pem = await issueCertificate({
      ca: ca.material,
      kind: er.kind === Kind.KDC ? 'kdc' : 'client',
      publicKey: verdict.publicKey,
      account: who.user,
      fqdn: verdict.fqdn,
      principals: verdict.principals,
    })
    const der = Buffer.from(new x509.X509Certificate(pem).rawData)
    await this.#state.putIssued(who.user, who.host, er.kind, der)
    this.stats.issued++
    this.#log.info('sso.issued', { user: who.user, host: who.host, kind: er.kind === Kind.KDC ? 'kdc' : 'client' })
    return this.#base(msg)
  }

  /** An OpenSSH host certificate for the host's key, principals = its full and short name (docs/sso.md). */
  async #sshHost(req: DnsRequest, who: { host: string; user: string; domain: string }, blob: Buffer): Promise<Message> {
    try {
      checkHostKeyBlob(blob)
    } catch (e) {
      throw new EnrolError('malformed', `SSH host key: ${(e as Error).message}`)
    }
    const ca = await this.#ca(who.user, who.domain)
    const fqdn = `${who.host}.${who.domain.replace(/\.$/, '')}`
    const now = Math.floor(Date.now() / 1000)
    const cert = signHostCertificate({
      caKeyPem: ca.keyPem,
      hostKey: blob,
      keyId: `autotunnel ${fqdn}`,
      principals: [fqdn, who.host],
      validAfterSec: now - SSH_BACKDATE_SEC,
      validBeforeSec: now + DEFAULT_CERT_DAYS * 86_400,
    })
    await this.#state.putIssued(who.user, who.host, Kind.SSH_HOST, cert)
    this.stats.issued++
    this.#log.info('sso.issued', { user: who.user, host: who.host, kind: 'ssh-host' })
    return this.#base(req.msg)
  }

  async #fetch(req: DnsRequest): Promise<Message> {
    const q = req.msg.questions[0]
    if (!q) throw new EnrolError('malformed', 'no question')
    const who = await this.#authorise(req, q.name, CERT_LABEL)
    const res = this.#base(req.msg)
    res.aa = true
    const ca = await this.#ca(who.user, who.domain)
    const caDer = Buffer.from(ca.material.cert.rawData)
    const rr = (kind: CertKindCode, der: Buffer): RR => ({
      name: q.name,
      type: SsoRRType.ATCERT,
      class: RRClass.IN,
      ttl: 0,
      data: { raw: encodeCertRdata({ kind, der }) },
    })
    res.answers.push(rr(Kind.CA, caDer))
    for (const [kind, der] of await this.#state.issued(who.user, who.host)) res.answers.push(rr(kind, der))
    return res
  }
}
