// /etc/resolv.conf managed by the agent (docs/resolver.md), for machines without systemd-resolved: the agent's
// resolver first, the previous nameservers after it (the resolver forwards every other name to them, and glibc
// falls back to them if the agent dies), `search USER.ZONE` first so short names resolve. The original bytes are
// saved in the state directory before anything is written and put back exactly by `down`, or by the next start
// after a crash. Written in place (open, truncate, write), never renamed over: that keeps a symlink, the inode, the
// mode and a bind mount (`ip netns exec` mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf) as they were.
//
// Crash safety: STATE/resolv.conf.orig (the original) and STATE/resolv.conf.ours (what we wrote) are written and
// synced before the file itself. At recovery, the original goes back only if the file still holds what we wrote (or
// a prefix of it: a write cut short); anything else means another program (a DHCP client, NetworkManager) replaced
// it since, and its version is kept.
import { open, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../io/log.js'
import type { Upstream } from './forwarder.js'

export const RESOLV_CONF = '/etc/resolv.conf'
const ORIG = 'resolv.conf.orig'
const OURS = 'resolv.conf.ours'
/** glibc reads at most three nameserver lines (MAXNS, resolv.conf(5)). */
const MAXNS = 3
const DNS_PORT = 53

export interface ParsedResolvConf {
  readonly nameservers: string[]
  readonly search: string[]
  readonly options: string[]
}

/** The lines of resolv.conf(5) the agent carries over; `domain` counts as the search list when there is no search. */
export function parseResolvConf(text: string): ParsedResolvConf {
  const nameservers: string[] = []
  let search: string[] = []
  const options: string[] = []
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim()
    const [key, ...rest] = line.split(/\s+/)
    if (key === 'nameserver' && rest[0]) nameservers.push(rest[0])
    else if (key === 'search' || key === 'domain') search = rest
    else if (key === 'options') options.push(...rest)
  }
  return { nameservers, search, options }
}

/** The forwarder's upstreams from a parsed resolv.conf: its nameservers (port 53) but our own address. */
export function upstreamsOf(p: ParsedResolvConf, self: { address: string; port: number }): Upstream[] {
  return p.nameservers
    .filter((a) => !(a === self.address && self.port === DNS_PORT))
    .map((address) => ({ address, port: DNS_PORT }))
}

/** What the agent writes: its resolver, up to two previous nameservers, our search domain first, the options. */
export function renderResolvConf(
  p: ParsedResolvConf,
  o: { nameserver: string; domain: string; stateDir: string },
): string {
  const others = p.nameservers.filter((a) => a !== o.nameserver).slice(0, MAXNS - 1)
  const search = [o.domain, ...p.search.filter((d) => d.replace(/\.$/, '').toLowerCase() !== o.domain)]
  // `rotate` would send our names to the other nameservers half of the time.
  const options = p.options.filter((x) => x !== 'rotate')
  return [
    `# Written by autotunnel: its resolver (${o.nameserver}) answers the names of ${o.domain} and forwards the rest`,
    '# to the nameservers after it. `autotunnel down` puts the original back (saved in',
    `# ${join(o.stateDir, ORIG)}); after a crash, the next \`autotunnel up\` does.`,
    `nameserver ${o.nameserver}`,
    ...others.map((a) => `nameserver ${a}`),
    `search ${search.join(' ')}`,
    ...(options.length ? [`options ${options.join(' ')}`] : []),
    '',
  ].join('\n')
}

async function writeSynced(path: string, data: Buffer | string, mode?: number): Promise<void> {
  const f = await open(path, 'w', mode)
  try {
    await f.writeFile(data)
    await f.sync()
  } finally {
    await f.close()
  }
}

async function readOrUndefined(path: string): Promise<Buffer | undefined> {
  return readFile(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined
    throw e
  })
}

export class ResolvConfManager {
  readonly #log: Logger
  readonly #path: string
  readonly #stateDir: string
  #ours: Buffer | undefined

  constructor(deps: { log: Logger }, opts: { stateDir: string; path?: string }) {
    this.#log = deps.log
    this.#stateDir = opts.stateDir
    this.#path = opts.path ?? RESOLV_CONF
  }

  get path(): string {
    return this.#path
  }

  /** Whether the file currently holds what we wrote. */
  async isOurs(): Promise<boolean> {
    const cur = await readOrUndefined(this.#path)
    return !!cur && !!this.#ours && cur.equals(this.#ours)
  }

  /**
   * After a crash: puts the original back when the file still holds what the agent wrote (or a prefix of it);
   * removes the saved copies. Returns what happened, for the log and the tests.
   */
  async recover(): Promise<'restored' | 'kept' | 'none'> {
    const orig = await readOrUndefined(join(this.#stateDir, ORIG))
    if (!orig) return 'none'
    const ours = await readOrUndefined(join(this.#stateDir, OURS))
    const cur = (await readOrUndefined(this.#path)) ?? Buffer.alloc(0)
    const stillOurs = ours !== undefined && cur.length <= ours.length && ours.subarray(0, cur.length).equals(cur)
    if (stillOurs || ours === undefined) await writeSynced(this.#path, orig)
    await this.#forget()
    const r = stillOurs || ours === undefined ? 'restored' : 'kept'
    this.#log.info('resolv_conf.recovered', { path: this.#path, result: r })
    return r
  }

  /** The current file, parsed (the nameservers the forwarder is to use). */
  async current(): Promise<ParsedResolvConf> {
    return parseResolvConf(((await readOrUndefined(this.#path)) ?? Buffer.alloc(0)).toString('utf8'))
  }

  /** Saves the original, then writes ours; returns the original's contents, parsed. */
  async install(o: { nameserver: string; domain: string }): Promise<ParsedResolvConf> {
    const orig = (await readOrUndefined(this.#path)) ?? Buffer.alloc(0)
    const parsed = parseResolvConf(orig.toString('utf8'))
    const ours = Buffer.from(renderResolvConf(parsed, { ...o, stateDir: this.#stateDir }))
    await writeSynced(join(this.#stateDir, ORIG), orig, 0o600)
    await writeSynced(join(this.#stateDir, OURS), ours, 0o600)
    await writeSynced(this.#path, ours)
    this.#ours = ours
    this.#log.info('resolv_conf.installed', {
      path: this.#path,
      nameserver: o.nameserver,
      upstreams: parsed.nameservers,
    })
    return parsed
  }

  /**
   * When another program replaced the file (a DHCP client on renewal): its version becomes the new original and
   * ours is written again. Returns the new original, parsed, or undefined when nothing changed.
   */
  async reapplyIfReplaced(o: { nameserver: string; domain: string }): Promise<ParsedResolvConf | undefined> {
    if (!this.#ours || (await this.isOurs())) return undefined
    this.#log.info('resolv_conf.replaced', { path: this.#path, hint: 'another program rewrote it; set up again' })
    return this.install(o)
  }

  /** `down`: the original back, byte for byte, if the file still holds ours; the saved copies removed. */
  async restore(): Promise<'restored' | 'kept' | 'none'> {
    if (!this.#ours) return 'none'
    const orig = await readOrUndefined(join(this.#stateDir, ORIG))
    const ours = await this.isOurs()
    if (orig && ours) await writeSynced(this.#path, orig)
    await this.#forget()
    this.#ours = undefined
    const r = orig && ours ? 'restored' : 'kept'
    this.#log.info('resolv_conf.restored', { path: this.#path, result: r })
    return r
  }

  async #forget(): Promise<void> {
    // The original goes last: while it exists, a crash here is still recovered at the next start.
    await rm(join(this.#stateDir, OURS), { force: true })
    await rm(join(this.#stateDir, ORIG), { force: true })
  }
}
