// The system resolver pointed at the agent's resolver, with no manual step (docs/resolver.md):
//   resolved     systemd-resolved runs (and the agent is in the machine's own network namespace): per-link DNS on
//                the TUN interface, the agent's resolver on the interface's ULA, USER.ZONE as the link's search
//                domain plus the routing-only ~USER.ZONE, and the link never the default route, so only the user's
//                names go there (resolvectl, reverted on stop; the link vanishes with the TUN device anyway)
//   resolv.conf  otherwise: /etc/resolv.conf managed with a byte-exact backup (resolv-conf.ts); the resolver forwards
//                every other name to the nameservers that were there
//   off          --system-resolver off or --no-resolver
// Whatever fails is shown by `autotunnel status`, with what to do, and the agent runs on without it.
import { execFile } from 'node:child_process'
import { existsSync, readlinkSync } from 'node:fs'
import { type FileWatch, watchFile } from '../io/file-watch.js'
import type { Logger } from '../io/log.js'
import type { Upstream } from './forwarder.js'
import { RESOLV_CONF, ResolvConfManager, upstreamsOf } from './resolv-conf.js'

export type SystemResolverMode = 'auto' | 'resolved' | 'resolv.conf' | 'off'
export const SYSTEM_RESOLVER_MODES: readonly SystemResolverMode[] = ['auto', 'resolved', 'resolv.conf', 'off']

export interface SystemResolverStatus {
  /** The mechanism chosen. */
  readonly mode: 'resolved' | 'resolv.conf' | 'off'
  /** set: names resolve system-wide; failed: see error; off: not asked for. */
  readonly state: 'set' | 'failed' | 'off' | 'pending'
  /** What was configured, or why not and what to do. */
  readonly detail: string
}

export type Run = (argv: readonly string[]) => Promise<{ code: number; stdout: string; stderr: string }>

const runExec: Run = (argv) =>
  new Promise((resolve) => {
    execFile(argv[0] ?? '', argv.slice(1), { timeout: 10_000 }, (err, stdout, stderr) =>
      resolve({
        code: err ? (typeof err.code === 'number' ? err.code : 1) : 0,
        stdout,
        stderr: stderr || (err?.message ?? ''),
      }),
    )
  })

/** systemd-resolved manages this machine's DNS (its runtime directory and resolvectl), seen from this namespace. */
export function resolvedRuns(): boolean {
  if (!existsSync('/run/systemd/resolve/resolv.conf') && !existsSync('/run/systemd/resolve/stub-resolv.conf'))
    return false
  // In another network namespace (the lab's hosts), the machine's resolved cannot see our TUN link.
  try {
    if (readlinkSync('/proc/self/ns/net') !== readlinkSync('/proc/1/ns/net')) return false
  } catch {
    return false
  }
  return true
}

/**
 * resolv.conf is watched (io/file-watch.ts: inotify on the file and its directory), so another program's rewrite is
 * undone within about 100 ms; this re-read is only the safety net where inotify does not work.
 */
const RECHECK_SAFETY_MS = 60_000

export class SystemResolver {
  readonly #log: Logger
  readonly #run: Run
  readonly #domain: string
  readonly #tun: string | undefined
  readonly mode: 'resolved' | 'resolv.conf' | 'off'
  readonly #conf: ResolvConfManager
  #upstreams: Upstream[] = []
  #self: { address: string; port: number } | undefined
  #status: SystemResolverStatus
  #watch: FileWatch | undefined
  #linkSet = false

  constructor(
    deps: { log: Logger; run?: Run; resolvedRuns?: () => boolean },
    opts: { mode: SystemResolverMode; stateDir: string; domain: string; tun: string | undefined; resolvConf?: string },
  ) {
    this.#log = deps.log
    this.#run = deps.run ?? runExec
    this.#domain = opts.domain
    this.#tun = opts.tun
    this.#conf = new ResolvConfManager(
      { log: deps.log },
      { stateDir: opts.stateDir, ...(opts.resolvConf ? { path: opts.resolvConf } : {}) },
    )
    this.mode = opts.mode === 'auto' ? ((deps.resolvedRuns ?? resolvedRuns)() ? 'resolved' : 'resolv.conf') : opts.mode
    this.#status = { mode: this.mode, state: this.mode === 'off' ? 'off' : 'pending', detail: '' }
  }

  get status(): SystemResolverStatus {
    return this.#status
  }

  /** Forwarding targets of the resolver: the nameservers resolv.conf had before us (none in the other modes). */
  get upstreams(): readonly Upstream[] {
    return this.#upstreams
  }

  /**
   * First thing at start, whatever the mode: after a crash, the original resolv.conf back (the state directory
   * holds the backup), so even a start with --no-resolver or --system-resolver off repairs the machine.
   */
  async recover(): Promise<void> {
    try {
      await this.#conf.recover()
    } catch (e) {
      this.#log.warn('resolv_conf.recover_failed', { path: this.#conf.path, err: (e as Error).message })
    }
  }

  /** Before the resolver starts: the nameservers to forward to. `self` is its own address (never an upstream). */
  async prepare(self: { address: string; port: number }): Promise<void> {
    this.#self = self
    if (this.mode !== 'resolv.conf') return
    try {
      this.#upstreams = upstreamsOf(await this.#conf.current(), self)
    } catch (e) {
      this.#fail(`cannot read ${this.#conf.path}: ${(e as Error).message}`)
    }
  }

  /**
   * Points the system at the resolver. `resolver` is where it listens (resolv.conf mode); `linkResolver` the one
   * on the TUN interface's ULA (resolved mode), undefined when there is none.
   */
  async install(
    resolver: { address: string; port: number } | undefined,
    linkResolver?: { address: string; port: number },
  ): Promise<SystemResolverStatus> {
    if (this.mode === 'off' || this.#status.state === 'failed') return this.#status
    if (this.mode === 'resolved') await this.#installResolved(linkResolver)
    else await this.#installResolvConf(resolver)
    return this.#status
  }

  async #installResolvConf(resolver: { address: string; port: number } | undefined): Promise<void> {
    if (!resolver) return this.#fail('the local resolver is not running (see resolver above)')
    if (resolver.port !== 53)
      return this.#fail(
        `/etc/resolv.conf cannot name a port: the resolver must listen on port 53 (it is on ${resolver.port}; --resolver ADDR:53)`,
      )
    const o = { nameserver: resolver.address, domain: this.#domain }
    try {
      const p = await this.#conf.install(o)
      this.#upstreams = upstreamsOf(p, resolver)
    } catch (e) {
      const err = e as NodeJS.ErrnoException
      return this.#fail(
        `cannot write ${this.#conf.path}: ${err.code ?? err.message}` +
          (err.code === 'EACCES' || err.code === 'EPERM' ? ' (run as root, or --system-resolver off)' : ''),
      )
    }
    this.#status = {
      mode: 'resolv.conf',
      state: 'set',
      detail: `${this.#conf.path}: nameserver ${resolver.address}, search ${this.#domain}; other names forwarded to ${this.#upstreams.map((u) => u.address).join(' ') || 'none (REFUSED)'}`,
    }
    this.#watch = watchFile(this.#conf.path, () => void this.#recheck(o), { safetyMs: RECHECK_SAFETY_MS })
  }

  async #recheck(o: { nameserver: string; domain: string }): Promise<void> {
    try {
      const p = await this.#conf.reapplyIfReplaced(o)
      if (p && this.#self) this.#upstreams = upstreamsOf(p, this.#self)
    } catch (e) {
      this.#log.warn('resolv_conf.recheck_failed', { err: (e as Error).message })
    }
  }

  async #installResolved(link: { address: string; port: number } | undefined): Promise<void> {
    if (!this.#tun)
      return this.#fail(
        'systemd-resolved sets DNS per link and there is no TUN interface (--no-tun): point it at the resolver by hand (docs/resolver.md)',
      )
    if (!link) return this.#fail('the resolver on the TUN interface is not running (see the log)')
    const server = link.port === 53 ? link.address : `[${link.address}]:${link.port}`
    const steps: string[][] = [
      ['resolvectl', 'dns', this.#tun, server],
      ['resolvectl', 'domain', this.#tun, this.#domain, `~${this.#domain}`],
      ['resolvectl', 'default-route', this.#tun, 'no'],
    ]
    for (const argv of steps) {
      const r = await this.#run(argv)
      if (r.code !== 0) return this.#fail(`\`${argv.join(' ')}\` failed: ${r.stderr.trim() || `exit ${r.code}`}`)
    }
    this.#linkSet = true
    this.#status = {
      mode: 'resolved',
      state: 'set',
      detail: `systemd-resolved: link ${this.#tun} DNS ${server}, domains ${this.#domain} ~${this.#domain}`,
    }
    this.#log.info('resolved.link_set', { link: this.#tun, server, domain: this.#domain })
  }

  /** On stop: the original resolv.conf back, or the link's settings reverted. */
  async restore(): Promise<void> {
    this.#watch?.close()
    this.#watch = undefined
    if (this.mode === 'resolv.conf') await this.#conf.restore()
    if (this.mode === 'resolved' && this.#linkSet && this.#tun) {
      this.#linkSet = false
      const r = await this.#run(['resolvectl', 'revert', this.#tun])
      if (r.code !== 0) this.#log.debug('resolved.revert_failed', { link: this.#tun, err: r.stderr.trim() })
    }
  }

  #fail(detail: string): void {
    this.#status = { mode: this.mode, state: 'failed', detail }
    this.#log.warn('system_resolver.failed', { mode: this.mode, detail })
  }
}

export { RESOLV_CONF }
