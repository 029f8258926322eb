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

export const LAB_ADDR = { ours: '198.51.100.10', charon: '198.51.100.20' } as const
export const LAB_ULA = { ours: 'fdaa:1::1', charon: 'fdbb:1::1' } as const
export const LAB_ID = { ours: 'a.ike.test', charon: 'b.ike.test' } as const

async function sh(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { maxBuffer: 16 << 20 })
  return r.stdout
}

export function labAvailable(): boolean {
  return process.getuid?.() === 0
}

export class IkeLab {
  readonly nsOurs: string
  readonly nsCharon: string
  readonly dir: string
  charon: ChildProcess | undefined
  readonly peers: OurPeer[] = []

  private constructor(prefix: string, dir: string) {
    this.nsOurs = `${prefix}o`
    this.nsCharon = `${prefix}c`
    this.dir = dir
  }

  static async create(prefix = `ik${process.pid % 100000}`): Promise<IkeLab> {
    const dir = await mkdtemp(join(tmpdir(), `${prefix}-`))
    const lab = new IkeLab(prefix, dir)
    try {
      await sh('ip', ['netns', 'add', lab.nsOurs])
      await sh('ip', ['netns', 'add', lab.nsCharon])
      await sh('ip', [
        'link',
        'add',
        `${prefix}o0`,
        'netns',
        lab.nsOurs,
        'type',
        'veth',
        'peer',
        'name',
        `${prefix}c0`,
        'netns',
        lab.nsCharon,
      ])
      await sh('ip', ['-n', lab.nsOurs, 'addr', 'add', `${LAB_ADDR.ours}/24`, 'dev', `${prefix}o0`])
      await sh('ip', ['-n', lab.nsCharon, 'addr', 'add', `${LAB_ADDR.charon}/24`, 'dev', `${prefix}c0`])
      for (const [ns, dev] of [
        [lab.nsOurs, `${prefix}o0`],
        [lab.nsCharon, `${prefix}c0`],
      ] as const) {
        await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
        await sh('ip', ['-n', ns, 'link', 'set', dev, 'up'])
      }
      await sh('ip', ['-n', lab.nsCharon, 'addr', 'add', `${LAB_ULA.charon}/128`, 'dev', 'lo'])
      const c = join(dir, 'charon')
      for (const d of [
        'run',
        'swanctl/conf.d',
        'swanctl/pubkey',
        'swanctl/pkcs8',
        'swanctl/x509',
        'swanctl/x509ca',
        'swanctl/private',
      ])
        await mkdir(join(c, d), { recursive: true })
      for (const d of ['x509ocsp', 'x509aa', 'x509ac', 'x509crl', 'rsa', 'ecdsa', 'bliss', 'pkcs12'])
        await mkdir(join(c, 'swanctl', d), { recursive: true })
      await writeFile(join(c, 'strongswan.conf'), strongswanConf(c))
    } catch (e) {
      await lab.destroy()
      throw e
    }
    return lab
  }

  get charonDir(): string {
    return join(this.dir, 'charon')
  }

  async startCharon(): Promise<void> {
    const d = this.charonDir
    this.charon = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.nsCharon,
        'sh',
        '-c',
        `mount --bind ${d}/run /run && STRONGSWAN_CONF=${d}/strongswan.conf exec ${CHARON}`,
      ],
      { stdio: 'ignore' },
    )
    for (let i = 0; i < 100; i++) {
      try {
        await this.swanctl(['--stats'])
        return
      } catch {
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    throw new Error('charon did not start')
  }

  async swanctl(args: string[]): Promise<string> {
    const d = this.charonDir
    const r = await run('swanctl', [...args.slice(0, 1), '--uri', `unix://${d}/charon.vici`, ...args.slice(1)], {
      env: { ...process.env, STRONGSWAN_CONF: `${d}/strongswan.conf`, SWANCTL_DIR: `${d}/swanctl` },
      maxBuffer: 16 << 20,
    })
    return r.stdout
  }

  /** Writes swanctl.conf (and key files) and loads it into charon. */
  async loadCharonConfig(conf: string, files: Record<string, string> = {}): Promise<void> {
    for (const [rel, text] of Object.entries(files)) await writeFile(join(this.charonDir, 'swanctl', rel), text)
    await writeFile(join(this.charonDir, 'swanctl', 'swanctl.conf'), conf)
    await this.swanctl(['--load-all', '--clear'])
  }

  async startOurs(cfg: Record<string, unknown>): Promise<OurPeer> {
    const main = join(dirname(fileURLToPath(import.meta.url)), 'peer-main.js')
    const p = new OurPeer(
      spawn('ip', ['netns', 'exec', this.nsOurs, process.execPath, main, JSON.stringify(cfg)], {
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    )
    this.peers.push(p)
    await p.waitEvent((e) => e.ev === 'ready', 10_000)
    return p
  }

  charonLog(): Promise<string> {
    return sh('cat', [join(this.charonDir, 'charon.log')]).catch(() => '')
  }

  async destroy(): Promise<void> {
    for (const p of this.peers) p.kill()
    if (this.charon?.pid) {
      try {
        process.kill(this.charon.pid, 'SIGTERM')
      } catch {}
      await new Promise((r) => setTimeout(r, 200))
    }
    // charon runs as a child of `ip netns exec` that exec'd into it: the pid above is charon itself.
    for (const ns of [this.nsOurs, this.nsCharon]) await sh('ip', ['netns', 'del', ns]).catch(() => '')
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
}

/** One swanctl connection: charon is b.ike.test at 198.51.100.20:4500, we are a.ike.test at :4500. */
export function charonConnection(c: CharonConn): string {
  const side = (id: string, pub: string | undefined): string =>
    `{\n      auth = ${c.auth}\n      id = ${id}\n${pub ? `      pubkeys = ${pub}\n` : ''}    }`
  return `connections {
  ${c.name} {
    version = 2
    local_addrs = ${LAB_ADDR.charon}
    remote_addrs = ${LAB_ADDR.ours}
    local_port = 4500
    remote_port = 4500
    proposals = ${c.ike}
    encap = yes
    mobike = ${c.mobike === false ? 'no' : 'yes'}
    rekey_time = ${c.rekeyTime ?? '4h'}
    local ${side(LAB_ID.charon, c.localPubkey)}
    remote ${side(LAB_ID.ours, c.remotePubkey)}
    children {
      inner {
        mode = tunnel
        local_ts = ${LAB_ULA.charon}/128
        remote_ts = ${LAB_ULA.ours}/128
        esp_proposals = ${c.esp}
        start_action = none
      }
    }
  }
}
secrets {
  ike-ab {
    id-a = ${LAB_ID.ours}
    id-b = ${LAB_ID.charon}
    secret = 0x${c.pskHex ?? '00'}
  }
}
`
}
