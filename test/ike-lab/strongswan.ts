// Test tooling: a two-namespace lab with strongSwan's charon (kernel-libipsec, userspace ESP) on one
// side and our engine (peer-main.ts) on the other; recipes from ../shared/peers/RECIPES.md section 2.
// Addresses come from 198.51.100.0/24; namespaces carry a unique prefix and are always removed.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const CHARON = '/usr/lib/ipsec/charon'

export const LAB_ADDR = { ours: '198.51.100.10', charon: '198.51.100.20', charon2: '198.51.100.30' } as const
export const LAB_ULA = { ours: 'fdaa:1::1', charon: 'fdbb:1::1', charon2: 'fddd:1::1' } as const
export const LAB_ID = { ours: 'a.ike.test', charon: 'b.ike.test', charon2: 'd.ike.test' } as const

/** Charon instances: 'c' (b.ike.test) and, when asked for, 'd' (d.ike.test). */
export type CharonName = 'c' | 'd'
const HOSTS = {
  o: { addr: LAB_ADDR.ours, ula: undefined },
  c: { addr: LAB_ADDR.charon, ula: LAB_ULA.charon },
  d: { addr: LAB_ADDR.charon2, ula: LAB_ULA.charon2 },
} as const

async function sh(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { maxBuffer: 16 << 20 })
  return r.stdout
}

export function labAvailable(): boolean {
  return process.getuid?.() === 0
}

/**
 * Namespaces `<prefix>o` (ours), `<prefix>c` (charon) and optionally `<prefix>d` (a second charon), each
 * with one veth into a bridge in `<prefix>b`. Nothing is routed anywhere else.
 */
export class IkeLab {
  readonly prefix: string
  readonly dir: string
  readonly hosts: readonly ('o' | CharonName)[]
  readonly charons = new Map<CharonName, ChildProcess>()
  readonly peers: OurPeer[] = []

  private constructor(prefix: string, dir: string, hosts: readonly ('o' | CharonName)[]) {
    this.prefix = prefix
    this.dir = dir
    this.hosts = hosts
  }

  ns(h: 'o' | 'b' | CharonName): string {
    return `${this.prefix}${h}`
  }
  get nsOurs(): string {
    return this.ns('o')
  }
  get nsCharon(): string {
    return this.ns('c')
  }

  static async create(prefix = `ik${process.pid % 100000}`, opts: { secondCharon?: boolean } = {}): Promise<IkeLab> {
    const dir = await mkdtemp(join(tmpdir(), `${prefix}-`))
    const hosts: ('o' | CharonName)[] = opts.secondCharon ? ['o', 'c', 'd'] : ['o', 'c']
    const lab = new IkeLab(prefix, dir, hosts)
    try {
      const br = lab.ns('b')
      await sh('ip', ['netns', 'add', br])
      await sh('ip', ['-n', br, 'link', 'add', 'br0', 'type', 'bridge'])
      await sh('ip', ['-n', br, 'link', 'set', 'br0', 'up'])
      for (const h of hosts) {
        const ns = lab.ns(h)
        await sh('ip', ['netns', 'add', ns])
        await sh('ip', [
          'link',
          'add',
          `${prefix}${h}0`,
          'netns',
          ns,
          'type',
          'veth',
          'peer',
          'name',
          `${prefix}${h}1`,
          'netns',
          br,
        ])
        await sh('ip', ['-n', br, 'link', 'set', `${prefix}${h}1`, 'master', 'br0', 'up'])
        await sh('ip', ['-n', ns, 'addr', 'add', `${HOSTS[h].addr}/24`, 'dev', `${prefix}${h}0`])
        await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
        await sh('ip', ['-n', ns, 'link', 'set', `${prefix}${h}0`, 'up'])
        const ula = HOSTS[h].ula
        if (ula) await sh('ip', ['-n', ns, 'addr', 'add', `${ula}/128`, 'dev', 'lo'])
        if (h === 'o') continue
        const c = join(dir, h)
        for (const d of ['run', 'swanctl/conf.d', 'swanctl/pubkey', 'swanctl/pkcs8', 'swanctl/x509', 'swanctl/x509ca'])
          await mkdir(join(c, d), { recursive: true })
        for (const d of ['x509ocsp', 'x509aa', 'x509ac', 'x509crl', 'rsa', 'ecdsa', 'bliss', 'pkcs12', 'private'])
          await mkdir(join(c, 'swanctl', d), { recursive: true })
        await writeFile(join(c, 'strongswan.conf'), strongswanConf(c))
      }
    } catch (e) {
      await lab.destroy()
      throw e
    }
    return lab
  }

  charonDir(n: CharonName = 'c'): string {
    return join(this.dir, n)
  }

  async startCharon(n: CharonName = 'c'): Promise<void> {
    const d = this.charonDir(n)
    const p = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.ns(n),
        'sh',
        '-c',
        `mount --bind ${d}/run /run && STRONGSWAN_CONF=${d}/strongswan.conf exec ${CHARON}`,
      ],
      { stdio: 'ignore' },
    )
    this.charons.set(n, p)
    for (let i = 0; i < 100; i++) {
      try {
        await this.swanctl(['--stats'], n)
        return
      } catch {
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    throw new Error('charon did not start')
  }

  async swanctl(args: string[], n: CharonName = 'c'): Promise<string> {
    const d = this.charonDir(n)
    const r = await run('swanctl', [...args.slice(0, 1), '--uri', `unix://${d}/charon.vici`, ...args.slice(1)], {
      env: { ...process.env, STRONGSWAN_CONF: `${d}/strongswan.conf`, SWANCTL_DIR: `${d}/swanctl` },
      maxBuffer: 16 << 20,
    })
    return r.stdout
  }

  /** Writes swanctl.conf (and key files) and loads it into charon. */
  async loadCharonConfig(conf: string, files: Record<string, string> = {}, n: CharonName = 'c'): Promise<void> {
    for (const [rel, text] of Object.entries(files)) await writeFile(join(this.charonDir(n), 'swanctl', rel), text)
    await writeFile(join(this.charonDir(n), 'swanctl', 'swanctl.conf'), conf)
    await this.swanctl(['--load-all', '--clear'], n)
  }

  /** Starts peer-main.js (IKE only, ESP probes) or, with `agent`, agent-main.js (IKE + tunnel + TUN). */
  async startOurs(cfg: Record<string, unknown>, host: 'o' | CharonName = 'o', agent = false): Promise<OurPeer> {
    const main = join(dirname(fileURLToPath(import.meta.url)), agent ? 'agent-main.js' : 'peer-main.js')
    const p = new OurPeer(
      spawn('ip', ['netns', 'exec', this.ns(host), process.execPath, main, JSON.stringify(cfg)], {
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    )
    this.peers.push(p)
    await p.waitEvent((e) => e.ev === 'ready', 10_000)
    return p
  }

  /** `ping -6` from namespace `h` to `addr`: `count` echoes 0.2 s apart, each answered within `waitSec`; its stdout. */
  ping6(h: 'o' | CharonName, addr: string, count: number, waitSec: number): Promise<string> {
    return sh('ip', [
      'netns',
      'exec',
      this.ns(h),
      'ping',
      '-6',
      '-c',
      String(count),
      '-i',
      '0.2',
      '-W',
      String(waitSec),
      addr,
    ])
  }

  charonLog(n: CharonName = 'c'): Promise<string> {
    return sh('cat', [join(this.charonDir(n), 'charon.log')]).catch(() => '')
  }

  async destroy(): Promise<void> {
    for (const p of this.peers) p.kill()
    // `ip netns exec` execs into sh, which execs into charon: the spawned pid is charon's.
    for (const p of this.charons.values()) {
      if (p.exitCode !== null || !p.pid) continue
      try {
        process.kill(p.pid, 'SIGTERM')
      } catch {}
    }
    if (this.charons.size > 0) await new Promise((r) => setTimeout(r, 300))
    for (const p of this.charons.values())
      if (p.exitCode === null && p.pid)
        try {
          process.kill(p.pid, 'SIGKILL')
        } catch {}
    for (const h of [...this.hosts, 'b' as const]) await sh('ip', ['netns', 'del', this.ns(h)]).catch(() => '')
    await rm(this.dir, { recursive: true, force: true })
  }
}

type Ev = Record<string, unknown> & { ev?: string; n?: number }

export class OurPeer {
  readonly #proc: ChildProcess
  readonly events: Ev[] = []
  #n = 0
  readonly #waiters = new Set<(e: Ev) => void>()

  constructor(proc: ChildProcess) {
    this.#proc = proc
    const rl = createInterface({ input: proc.stdout! })
    rl.on('line', (line) => {
      let e: Ev
      try {
        e = JSON.parse(line) as Ev
      } catch {
        return
      }
      this.events.push(e)
      for (const w of [...this.#waiters]) w(e)
    })
  }

  waitEvent(pred: (e: Ev) => boolean, timeoutMs = 10_000, fromIndex = 0): Promise<Ev> {
    const seen = this.events.slice(fromIndex).find(pred)
    if (seen) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const w = (e: Ev): void => {
        if (!pred(e)) return
        this.#waiters.delete(w)
        clearTimeout(t)
        resolve(e)
      }
      const t = setTimeout(() => {
        this.#waiters.delete(w)
        reject(new Error(`timeout waiting for event; got ${JSON.stringify(this.events.slice(-5))}`))
      }, timeoutMs)
      this.#waiters.add(w)
    })
  }

  async call<T = unknown>(op: string, extra: Record<string, unknown> = {}, timeoutMs = 20_000): Promise<T> {
    const n = ++this.#n
    this.#proc.stdin!.write(`${JSON.stringify({ n, op, ...extra })}\n`)
    const r = await this.waitEvent((e) => e.n === n, timeoutMs)
    if (!r.ok) throw new Error(String(r.error))
    return r.value as T
  }

  kill(): void {
    if (this.#proc.exitCode === null) this.#proc.kill('SIGKILL')
  }
}

function strongswanConf(d: string): string {
  return `charon {
  load_modular = no
  load = random nonce openssl gcm aes chapoly sha1 sha2 hmac kdf curve25519 pem pkcs1 pkcs8 x509 pubkey constraints revocation kernel-libipsec kernel-netlink socket-default vici updown
  port = 500
  port_nat_t = 4500
  install_routes = yes
  install_virtual_ip = no
  retransmit_tries = 3
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  plugins {
    vici {
      socket = unix://${d}/charon.vici
    }
  }
  filelog {
    main {
      path = ${d}/charon.log
      time_format = %T
      default = 1
      ike = 2
      knl = 1
      flush_line = yes
    }
    stderr {
      default = 0
    }
  }
  syslog {
    daemon {
      default = -1
    }
  }
}
swanctl {
  socket = unix://${d}/charon.vici
}
`
}

export interface CharonSide {
  readonly addr: string
  readonly id: string
  readonly ula: string
  readonly port: number
}
export const CHARON_SIDE: CharonSide = { addr: LAB_ADDR.charon, id: LAB_ID.charon, ula: LAB_ULA.charon, port: 4500 }
export const CHARON2_SIDE: CharonSide = { addr: LAB_ADDR.charon2, id: LAB_ID.charon2, ula: LAB_ULA.charon2, port: 4500 }
export const OURS_SIDE: CharonSide = { addr: LAB_ADDR.ours, id: LAB_ID.ours, ula: LAB_ULA.ours, port: 4500 }

export interface CharonConn {
  name: string
  auth: 'psk' | 'pubkey'
  ike: string
  esp: string
  pskHex?: string
  /** file names under swanctl/pubkey/ */
  localPubkey?: string
  remotePubkey?: string
  mobike?: boolean
  rekeyTime?: string
  /** @default CHARON_SIDE */
  local?: CharonSide
  /** @default OURS_SIDE; id '%any' accepts any initiator (bench load) */
  remote?: CharonSide
  startAction?: 'none' | 'trap'
}

/** One swanctl connection; by default charon b.ike.test at 198.51.100.20:4500 with us, a.ike.test, at :4500. */
export function charonConnection(c: CharonConn): string {
  const l = c.local ?? CHARON_SIDE
  const r = c.remote ?? OURS_SIDE
  const side = (id: string, pub: string | undefined): string =>
    `{\n      auth = ${c.auth}\n      id = ${id}\n${pub ? `      pubkeys = ${pub}\n` : ''}    }`
  return `connections {
  ${c.name} {
    version = 2
    local_addrs = ${l.addr}
    remote_addrs = ${r.id === '%any' ? '0.0.0.0/0' : r.addr}
    local_port = ${l.port}
    remote_port = ${r.port}
    proposals = ${c.ike}
    encap = yes
    mobike = ${c.mobike === false ? 'no' : 'yes'}
    rekey_time = ${c.rekeyTime ?? '4h'}
    local ${side(l.id, c.localPubkey)}
    remote ${side(r.id, c.remotePubkey)}
    children {
      inner {
        mode = tunnel
        local_ts = ${l.ula}/128
        remote_ts = ${r.ula}/128
        esp_proposals = ${c.esp}
        start_action = ${c.startAction ?? 'none'}
      }
    }
  }
}
secrets {
  ike-ab {
${r.id === '%any' ? '' : `    id-a = ${r.id}\n    id-b = ${l.id}\n`}    secret = 0x${c.pskHex ?? '00'}
  }
}
`
}
