// The host's own KDC (seed 002 7.1, Apple's "LKDC"): MIT krb5kdc from Debian (krb5-kdc, krb5-pkinit), one realm
// named after the host (DESKTOP.ALICE.MEMBERS.EXAMPLE), listening only on the host's ULA, so it is reached through
// the tunnel. Its database is made afresh at every start in STATE/sso/kdc/ (nothing in it outlives the agent):
//   krbtgt/REALM       max_life 10 h (seed 002: "a ticket usually has a 10-hour lifetime")
//   host/FQDN, host/H  random keys, exported to a keytab for sshd (system-files.ts merges it into the system one)
//   OWNER              +requires_preauth, no key: PKINIT only (RFC 4556), with a certificate of the account CA
// The owner principal's pkinit_cert_match string attribute (read by the KDC at every request, MIT's dbmatch
// certauth module) lists the subjects of the account's current hosts: a revoked host's certificate stops working
// as soon as its peers see it gone, long before the certificate expires. A certificate of another account's CA
// fails the chain check (pkinit_anchors is this account's CA only).
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Logger } from '../io/log.js'
import { subjectMatchText } from './certs.js'

const run = promisify(execFile)
export const KDC_PORT = 88
export const MAX_LIFE = '10h 0m 0s'
const START_TIMEOUT_MS = 10_000
const STOP_TIMEOUT_MS = 3_000
const POLL_MS = 50
const MASTER_KEY_BYTES = 24

export class KdcError extends Error {
  override readonly name = 'KdcError'
}

export interface LocalKdcOptions {
  /** Working directory (STATE/sso/kdc), owner-only. */
  readonly dir: string
  readonly realm: string
  /** Host FQDN, lower case, no trailing dot. */
  readonly fqdn: string
  readonly account: string
  /** Addresses to listen on (the ULA); port KDC_PORT unless `port`. */
  readonly listen: readonly string[]
  readonly port?: number
  readonly kdcCert: string
  readonly kdcKey: string
  readonly caFile: string
  /** Binaries (tests may point elsewhere). @default /usr/sbin */
  readonly sbin?: string
}

function hostPort(a: string, port: number): string {
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`
}

/** POSIX ERE for pkinit_cert_match: exactly one of the subjects (dots and other specials escaped). */
export function certMatchRule(account: string, fqdns: readonly string[]): string {
  const esc = (s: string) => s.replace(/[.[\]()*+?{}|^$\\]/g, (c) => `\\${c}`)
  const alts = [...new Set(fqdns.map((f) => f.toLowerCase()))].sort().map((f) => esc(subjectMatchText(account, f)))
  return `<SUBJECT>^(${alts.join('|')})$`
}

export class LocalKdc {
  readonly opts: LocalKdcOptions
  readonly #log: Logger
  #proc: ChildProcess | undefined
  #exited: Promise<void> | undefined

  constructor(deps: { log: Logger }, o: LocalKdcOptions) {
    this.opts = o
    this.#log = deps.log
  }

  get port(): number {
    return this.opts.port ?? KDC_PORT
  }

  get env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      KRB5_CONFIG: join(this.opts.dir, 'krb5.conf'),
      KRB5_KDC_PROFILE: join(this.opts.dir, 'kdc.conf'),
    }
  }

  get keytab(): string {
    return join(this.opts.dir, 'host.keytab')
  }

  #bin(name: string): string {
    return join(this.opts.sbin ?? '/usr/sbin', name)
  }

  kdcConf(): string {
    const o = this.opts
    const listen = o.listen.map((a) => hostPort(a, this.port)).join(' ')
    return `# autotunnel: this host's KDC (docs/sso.md); made at every start
[kdcdefaults]
	kdc_listen = ${listen}
	kdc_tcp_listen = ${listen}

[realms]
	${o.realm} = {
		database_name = ${join(o.dir, 'principal')}
		key_stash_file = ${join(o.dir, 'stash')}
		acl_file = ${join(o.dir, 'kadm5.acl')}
		max_life = ${MAX_LIFE}
		max_renewable_life = 0
		pkinit_identity = FILE:${o.kdcCert},${o.kdcKey}
		pkinit_anchors = FILE:${o.caFile}
		pkinit_eku_checking = kpClientAuth
		pkinit_require_crl_checking = false
	}

[logging]
	kdc = FILE:${join(o.dir, 'kdc.log')}
	admin_server = FILE:${join(o.dir, 'kadmin.log')}
	default = FILE:${join(o.dir, 'kdc.log')}
`
  }

  krb5Conf(): string {
    return `# autotunnel: the KDC's own krb5.conf (the tools below run with KRB5_CONFIG pointing here)
[libdefaults]
	default_realm = ${this.opts.realm}
`
  }

  async #kadmin(query: string): Promise<string> {
    const { stdout } = await run(this.#bin('kadmin.local'), ['-r', this.opts.realm, '-q', query], { env: this.env })
    return stdout
  }

  /** Makes the database, principals and the host keytab (replacing any left from an earlier start). */
  async init(allowedHosts: readonly string[]): Promise<void> {
    const o = this.opts
    await mkdir(o.dir, { recursive: true, mode: 0o700 })
    await this.#killLeftover()
    for (const f of ['principal', 'principal.ok', 'principal.kadm5', 'principal.kadm5.lock', 'stash', 'host.keytab'])
      await rm(join(o.dir, f), { force: true })
    await writeFile(join(o.dir, 'kdc.conf'), this.kdcConf(), { mode: 0o600 })
    await writeFile(join(o.dir, 'krb5.conf'), this.krb5Conf(), { mode: 0o600 })
    await writeFile(join(o.dir, 'kadm5.acl'), '', { mode: 0o600 })
    // The master key only protects the database file beside its stash; nobody ever types it.
    const master = randomBytes(MASTER_KEY_BYTES).toString('base64')
    await run(this.#bin('kdb5_util'), ['-r', o.realm, 'create', '-s', '-P', master], { env: this.env })
    const short = o.fqdn.split('.')[0] ?? o.fqdn
    await this.#kadmin(`modprinc -maxlife "${MAX_LIFE}" krbtgt/${o.realm}`)
    for (const p of [`host/${o.fqdn}`, `host/${short}`]) {
      await this.#kadmin(`addprinc -randkey -maxlife "${MAX_LIFE}" ${p}`)
      await this.#kadmin(`ktadd -k ${this.keytab} ${p}`)
    }
    await this.#kadmin(`addprinc +requires_preauth -nokey -maxlife "${MAX_LIFE}" ${o.account}`)
    await this.setAllowedHosts(allowedHosts)
  }

  /** A krb5kdc that an agent killed without its stop left running (it would hold port 88). */
  async #killLeftover(): Promise<void> {
    const pid = Number((await readFile(join(this.opts.dir, 'krb5kdc.pid'), 'utf8').catch(() => '')).trim())
    if (!Number.isInteger(pid) || pid <= 1) return
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (!cmd.includes('krb5kdc') || !cmd.includes(this.opts.realm)) return
    this.#log.warn('sso.kdc_leftover', { pid })
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
    for (let i = 0; i < STOP_TIMEOUT_MS / POLL_MS && (await readFile(`/proc/${pid}/cmdline`).catch(() => null)); i++)
      await new Promise((r) => setTimeout(r, POLL_MS))
  }

  /** Only certificates whose subject names one of `fqdns` (the account's current hosts) authenticate the owner. */
  async setAllowedHosts(fqdns: readonly string[]): Promise<void> {
    const rule = certMatchRule(this.opts.account, fqdns)
    await this.#kadmin(`setstr ${this.opts.account} pkinit_cert_match "${rule}"`)
    const back = await this.#kadmin(`getstrs ${this.opts.account}`)
    if (!back.includes(rule)) throw new KdcError(`pkinit_cert_match did not stick: ${back.trim()}`)
    this.#log.info('sso.kdc_allowed', { hosts: [...fqdns].sort() })
  }

  /** Starts krb5kdc in the foreground (-n) and waits until it listens. */
  async start(): Promise<void> {
    if (this.#proc) return
    const logFile = join(this.opts.dir, 'kdc.log')
    const before = await readFile(logFile, 'utf8').catch(() => '')
    const proc = spawn(this.#bin('krb5kdc'), ['-n', '-r', this.opts.realm], {
      env: this.env,
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    proc.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4000)
    })
    this.#proc = proc
    this.#exited = new Promise((resolve) => proc.once('exit', () => resolve()))
    await writeFile(join(this.opts.dir, 'krb5kdc.pid'), `${proc.pid}\n`, { mode: 0o600 })
    const deadline = Date.now() + START_TIMEOUT_MS
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        this.#proc = undefined
        const log = (await readFile(logFile, 'utf8').catch(() => '')).slice(before.length)
        throw new KdcError(`krb5kdc exited at start: ${(stderr + log).trim().slice(-1500)}`)
      }
      const log = await readFile(logFile, 'utf8').catch(() => '')
      if (log.slice(before.length).includes('commencing operation')) break
      if (Date.now() > deadline) {
        await this.stop()
        throw new KdcError(`krb5kdc did not start within ${START_TIMEOUT_MS} ms: ${log.slice(-800)}`)
      }
      await new Promise((r) => setTimeout(r, POLL_MS))
    }
    this.#log.info('sso.kdc_started', { realm: this.opts.realm, listen: this.opts.listen, pid: proc.pid })
  }

  async stop(): Promise<void> {
    const proc = this.#proc
    if (!proc) return
    this.#proc = undefined
    proc.kill('SIGTERM')
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), STOP_TIMEOUT_MS).unref())
    if ((await Promise.race([this.#exited, timer])) === 'timeout') {
      proc.kill('SIGKILL')
      await this.#exited
    }
  }
}
