// SSO on one host (docs/sso.md), run by the agent while the tunnel is up: enrolment with the account CA, the
// host's KDC on its ULA, and the system drop-ins, kept in step with the account's other hosts (the PeerManager's
// table) and undone on stop.
//
//   start     keys (STATE/sso/*-key.pem) -> enrol (KDC + client certificate) -> KDC database, keytab, krb5kdc
//             -> system files (krb5.conf block, keytab, sshd and ssh drop-ins, the user's certificate and hook)
//   peers     (debounced) KDC allow-list (pkinit_cert_match), krb5.conf realms, ssh host names; a new realm
//             re-enrols the client certificate so it names the owner there too
//   renew     at half the client certificate's life: enrol again, restart krb5kdc with the new KDC certificate
//   stop      system files restored byte for byte, krb5kdc stopped
import { mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { UpdateSink } from '../dns/client/update.js'
import type { Clock, TimerHandle } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import { type CryptoKeyPair, generateKeyPair, importKeyPair, ownerPrincipal } from './certs.js'
import {
  authToLocalRule,
  knownHostsBlock,
  krb5Block,
  krb5ConfFull,
  krb5ConfWith,
  mergeKeytab,
  realmOf,
  type SsoHostEntry,
  sshDropIn,
  sshdDropIn,
  ticketHook,
} from './config-text.js'
import { type Enrolled, enrol, type SignedQuery } from './enrol-client.js'
import { LocalKdc } from './kdc.js'
import { decodeSubjectAltName } from './krb5-name.js'
import { DEFAULT_SSO_SHARE_DIR } from './share-dir.js'
import { certLine, p256SshBlob, parsePublicKeyLine } from './ssh-cert.js'
import { SystemFiles } from './system-files.js'

export interface SsoPaths {
  readonly krb5Conf: string
  readonly keytab: string
  readonly sshdDropIn: string
  readonly sshDropIn: string
  /** Where the SSO user's certificate, key and the ticket hook live (a directory per host FQDN below it). */
  readonly shareDir: string
  /** sshd's host key that the account CA certifies (its certificate goes beside it as KEY-cert.pub). */
  readonly sshHostKey: string
  /** The system known-hosts file that gets @cert-authority for the account's host names. */
  readonly knownHosts: string
}

export const DEFAULT_SSO_PATHS: SsoPaths = {
  krb5Conf: '/etc/krb5.conf',
  keytab: '/etc/krb5.keytab',
  sshdDropIn: '/etc/ssh/sshd_config.d/autotunnel-sso.conf',
  sshDropIn: '/etc/ssh/ssh_config.d/autotunnel-sso.conf',
  shareDir: DEFAULT_SSO_SHARE_DIR,
  sshHostKey: '/etc/ssh/ssh_host_ed25519_key.pub',
  knownHosts: '/etc/ssh/ssh_known_hosts',
}

export interface SsoUser {
  readonly name: string
  readonly uid: number
  readonly gid: number
}

export interface SsoHostOptions {
  readonly stateDir: string
  readonly zone: string
  /** USER.ZONE, lower case, no trailing dot. */
  readonly domain: string
  readonly host: string
  readonly account: string
  readonly ssoUser: SsoUser
  readonly ula: string
  readonly paths?: Partial<SsoPaths>
  /** KDC port (tests). @default 88 */
  readonly kdcPort?: number
}

const DEBOUNCE_MS = 300
const RENEW_CHECK_MS = 3_600_000
const RETRY_MS = 30_000

export interface SsoStatus {
  readonly realm: string
  readonly state: 'starting' | 'running' | 'failed' | 'stopped'
  readonly kdc: string
  readonly clientCertNotAfter: string | null
  readonly realms: string[]
  readonly lastError: string | null
}

export class SsoHost {
  readonly opts: SsoHostOptions
  readonly paths: SsoPaths
  readonly #deps: { log: Logger; clock: Clock; sink: UpdateSink; query: SignedQuery }
  readonly #files: SystemFiles
  /** The account's other hosts as last told by setPeers(). */
  readonly #peers = new Map<string, SsoHostEntry>()
  /**
   * The peers the KDC allow-list, the client certificate and the system files were last brought in step with: one
   * snapshot per serial step, so krb5.conf never names a realm before our certificate names the owner there and our
   * KDC admits that host (a setPeers() during start() would otherwise reach krb5.conf first; its own step follows).
   */
  #applied: SsoHostEntry[] = []
  #kdc: LocalKdc | undefined
  #keys: { kdc: CryptoKeyPair; client: CryptoKeyPair } | undefined
  #enrolled: Enrolled | undefined
  #state: SsoStatus['state'] = 'starting'
  #lastError: string | null = null
  #ops: Promise<void> = Promise.resolve()
  #debounce: TimerHandle | undefined
  #renew: TimerHandle | undefined
  #stopped = false

  constructor(deps: { log: Logger; clock: Clock; sink: UpdateSink; query: SignedQuery }, o: SsoHostOptions) {
    this.#deps = deps
    this.opts = o
    this.paths = { ...DEFAULT_SSO_PATHS, ...o.paths }
    this.#files = new SystemFiles({ log: deps.log }, { journalFile: join(this.#dir, 'system-files.json') })
  }

  get fqdn(): string {
    return `${this.opts.host}.${this.opts.domain}`
  }

  get realm(): string {
    return realmOf(this.fqdn)
  }

  get #dir(): string {
    return join(this.opts.stateDir, 'sso')
  }

  get #share(): string {
    return join(this.paths.shareDir, this.fqdn)
  }

  status(): SsoStatus {
    return {
      realm: this.realm,
      state: this.#state,
      kdc: `[${this.opts.ula}]:${this.opts.kdcPort ?? 88}`,
      clientCertNotAfter: this.#enrolled?.client.notAfter.toISOString() ?? null,
      realms: this.#realms().sort(),
      lastError: this.#lastError,
    }
  }

  #serial(what: string, fn: () => Promise<void>): Promise<void> {
    const next = this.#ops.then(async () => {
      if (this.#stopped && what !== 'stop') return
      try {
        await fn()
      } catch (e) {
        this.#lastError = `${what}: ${(e as Error).message}`
        this.#deps.log.error('sso.failed', { what, err: String((e as Error).stack ?? e) })
        if (what === 'start') {
          this.#state = 'failed'
          this.#deps.clock.clearTimeout(this.#renew)
          this.#renew = this.#deps.clock.setTimeout(() => void this.start(), RETRY_MS)
        }
      }
    })
    this.#ops = next
    return next
  }

  start(): Promise<void> {
    return this.#serial('start', async () => {
      this.#state = 'starting'
      await mkdir(this.#dir, { recursive: true, mode: 0o700 })
      await this.#files.restoreAll() // what a crashed earlier run left
      this.#keys = { kdc: await this.#key('kdc-key.pem'), client: await this.#key('client-key.pem') }
      const applied = this.#snapshot()
      await this.#enrol(applied)
      await this.#kdc?.stop()
      this.#kdc = new LocalKdc(
        { log: this.#deps.log },
        {
          dir: join(this.#dir, 'kdc'),
          realm: this.realm,
          fqdn: this.fqdn,
          account: this.opts.account,
          listen: [this.opts.ula],
          ...(this.opts.kdcPort !== undefined ? { port: this.opts.kdcPort } : {}),
          kdcCert: join(this.#dir, 'kdc.pem'),
          kdcKey: join(this.#dir, 'kdc-key.pem'),
          caFile: join(this.#dir, 'ca.pem'),
        },
      )
      await this.#kdc.init(this.#allowed(applied))
      await this.#kdc.start()
      await this.#files.write(
        this.paths.keytab,
        mergeKeytab(await this.#files.original(this.paths.keytab), await readFile(this.#kdc.keytab)),
        { mode: 0o600 },
      )
      this.#applied = applied
      await this.#writeConfigs()
      this.#state = 'running'
      this.#lastError = null
      this.#armRenewal()
      this.#deps.log.info('sso.running', { realm: this.realm, user: this.opts.ssoUser.name })
    })
  }

  /** The account's other hosts now (the PeerManager's table); applied after a short quiet period. */
  setPeers(peers: readonly SsoHostEntry[]): void {
    this.#peers.clear()
    for (const p of peers) if (p.fqdn !== this.fqdn && p.ula) this.#peers.set(p.fqdn, p)
    this.#deps.clock.clearTimeout(this.#debounce)
    this.#debounce = this.#deps.clock.setTimeout(() => void this.#applyPeers(), DEBOUNCE_MS)
  }

  #applyPeers(): Promise<void> {
    return this.#serial('peers', async () => {
      if (this.#state !== 'running' || !this.#kdc) return
      const applied = this.#snapshot()
      await this.#kdc.setAllowedHosts(this.#allowed(applied))
      const named = new Set(this.#clientRealms())
      // The KDC certificate re-issued with it is the same key and still valid: krb5kdc keeps the one it loaded.
      if (this.#realms(applied).some((r) => !named.has(r))) await this.#enrol(applied)
      this.#applied = applied
      await this.#writeConfigs()
    })
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#deps.clock.clearTimeout(this.#debounce)
    this.#deps.clock.clearTimeout(this.#renew)
    await this.#serial('stop', async () => {
      await this.#files.restoreAll()
      // The share directory's parents are made by whichever host came first; the last one out removes them.
      for (const d of [this.paths.shareDir, dirname(this.paths.shareDir)]) await rmdir(d).catch(() => {})
      await this.#kdc?.stop()
      this.#kdc = undefined
      await rm(join(this.#dir, 'kdc'), { recursive: true, force: true })
      this.#state = 'stopped'
    })
  }

  #snapshot(): SsoHostEntry[] {
    return [...this.#peers.values()]
  }

  /** This host and `peers` (by default the peers last applied). */
  #allowed(peers: readonly SsoHostEntry[] = this.#applied): string[] {
    return [this.fqdn, ...peers.map((p) => p.fqdn)]
  }

  #realms(peers: readonly SsoHostEntry[] = this.#applied): string[] {
    return this.#allowed(peers).map(realmOf)
  }

  #clientRealms(): string[] {
    const ext = this.#enrolled?.client.getExtension('2.5.29.17')
    if (!ext) return []
    return decodeSubjectAltName(Buffer.from(ext.value)).flatMap((e) =>
      e.kind === 'principal' ? [e.principal.realm] : [],
    )
  }

  async #key(file: string): Promise<CryptoKeyPair> {
    const path = join(this.#dir, file)
    const pem = await readFile(path, 'utf8').catch(() => undefined)
    if (pem) return importKeyPair(pem)
    const k = await generateKeyPair()
    await writeFile(path, k.keyPem, { mode: 0o600 })
    return k.keys
  }

  async #enrol(peers: readonly SsoHostEntry[]): Promise<void> {
    if (!this.#keys) throw new Error('no keys')
    const hostKeyLine = await readFile(this.paths.sshHostKey, 'utf8').catch(() => undefined)
    const e = await enrol(
      { sink: this.#deps.sink, query: this.#deps.query },
      {
        zone: this.opts.zone,
        domain: this.opts.domain,
        host: this.opts.host,
        account: this.opts.account,
        kdcKeys: this.#keys.kdc,
        clientKeys: this.#keys.client,
        clientPrincipals: this.#realms(peers).map((r) => ownerPrincipal(this.opts.account, r)),
        sshHostKey: hostKeyLine ? parsePublicKeyLine(hostKeyLine) : undefined,
      },
    )
    this.#enrolled = e
    await writeFile(join(this.#dir, 'ca.pem'), e.ca.toString('pem'), { mode: 0o644 })
    await writeFile(join(this.#dir, 'kdc.pem'), e.kdc.toString('pem'), { mode: 0o644 })
    // The SSO user's copy: the client certificate and key that the ticket hook hands to kinit.
    const u = this.opts.ssoUser
    const clientKey = await readFile(join(this.#dir, 'client-key.pem'))
    await this.#files.write(join(this.#share, 'ca.pem'), e.ca.toString('pem'), { mode: 0o644 })
    await this.#files.write(join(this.#share, 'client.pem'), e.client.toString('pem'), { mode: 0o644 })
    await this.#files.write(join(this.#share, 'client-key.pem'), clientKey, { mode: 0o600, owner: u })
    if (e.sshHost) await this.#files.write(this.#sshCertPath, certLine(e.sshHost, this.fqdn), { mode: 0o644 })
    this.#deps.log.info('sso.enrolled', { realms: this.#clientRealms(), notAfter: e.client.notAfter.toISOString() })
  }

  get #sshCertPath(): string {
    return this.paths.sshHostKey.replace(/\.pub$/, '-cert.pub')
  }

  async #restartKdc(): Promise<void> {
    await this.#kdc?.stop()
    await this.#kdc?.start()
  }

  async #writeConfigs(): Promise<void> {
    const self: SsoHostEntry = { fqdn: this.fqdn, ula: this.opts.ula }
    const hook = join(this.#share, 'ticket-hook')
    await this.#files.write(
      hook,
      ticketHook({
        dir: this.#share,
        domain: this.opts.domain,
        account: this.opts.account,
        ssoUser: this.opts.ssoUser.name,
      }),
      { mode: 0o755 },
    )
    const original = (await this.#files.original(this.paths.krb5Conf))?.toString('utf8') ?? ''
    const block = krb5Block({
      self,
      peers: this.#applied,
      caFile: join(this.#share, 'ca.pem'),
      account: this.opts.account,
      ssoUser: this.opts.ssoUser.name,
    })
    const rule = authToLocalRule(this.opts.account, this.realm, this.opts.ssoUser.name)
    await this.#files.write(this.paths.krb5Conf, krb5ConfFull({ original, block, rule, selfRealm: this.realm }), {
      mode: 0o644,
    })
    const hostCert = this.#enrolled?.sshHost ? this.#sshCertPath : undefined
    await this.#files.write(this.paths.sshdDropIn, sshdDropIn(this.fqdn, hostCert), { mode: 0o644 })
    if (this.#enrolled) {
      const caBlob = p256SshBlob(Buffer.from(this.#enrolled.ca.publicKey.rawData))
      const known = (await this.#files.original(this.paths.knownHosts))?.toString('utf8') ?? ''
      await this.#files.write(
        this.paths.knownHosts,
        krb5ConfWith(known, knownHostsBlock({ fqdn: this.fqdn, hosts: this.#allowed(), caBlob })),
        { mode: 0o644 },
      )
    }
    await this.#files.write(
      this.paths.sshDropIn,
      sshDropIn({ fqdn: this.fqdn, domain: this.opts.domain, hosts: this.#allowed(), hook }),
      { mode: 0o644 },
    )
  }

  #armRenewal(): void {
    this.#deps.clock.clearTimeout(this.#renew)
    this.#renew = this.#deps.clock.setTimeout(() => {
      void this.#serial('renew', async () => {
        const c = this.#enrolled?.client
        if (c) {
          const half = (c.notBefore.getTime() + c.notAfter.getTime()) / 2
          if (this.#deps.clock.now() >= half) {
            await this.#enrol(this.#applied)
            await this.#restartKdc()
            await this.#writeConfigs()
          }
        }
        this.#armRenewal()
      })
    }, RENEW_CHECK_MS)
  }
}
