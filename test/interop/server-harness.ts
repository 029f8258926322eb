// Drives the real `bin/autotunnel server` process for the interop tests and benchmarks: a data directory per
// test, accounts through `autotunnel account add --json`, listeners on 127.0.0.1 with random ports (read back from
// the "listening ..." lines on stdout) or fixed ones (so a restart keeps them), SIGTERM at the end and SIGKILL if
// it does not go. The notify tests use it through NotifyServer (notify-harness.ts).
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
export const BIN = join(REPO, 'bin', 'autotunnel')
export const ZONE = 'members.example'

export interface AccountJson {
  user: string
  domain: string
  keyName: string
  algorithm: string
  secret: string
}

export interface Ports {
  dns: number
  tls?: number
  metrics?: number
}

export interface StartOptions {
  /** Serve DoT too. @default true */
  readonly tls?: boolean
  /** Serve --metrics. @default false */
  readonly metrics?: boolean
  /** Fixed ports instead of 0 (random) for the listeners. */
  readonly ports?: Ports
}

/** `n` distinct TCP ports free on 127.0.0.1 right now (held together while picked, so never the same twice). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = []
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer()
      servers.push(s)
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject)
        s.listen(0, '127.0.0.1', () => resolve())
      })
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port)
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))))
  }
}

export function run(
  cmd: string,
  args: string[],
  input?: string,
  timeoutMs = 20_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0
      resolve({ code, stdout, stderr })
    })
    if (input !== undefined) p.stdin?.end(input)
    else p.stdin?.end()
  })
}

export class ServerProcess {
  readonly dir: string
  proc: ChildProcess | undefined
  ports: Ports = { dns: 0 }
  /** The "listening ..." lines printed at start-up. */
  lines: string[] = []
  stderr = ''
  /** SHA-256 fingerprint of the DoT certificate, from the "listening tls" line. */
  fingerprint = ''
  /** --store URL (a PostgreSQL store shared with other nodes); --data DIR then holds only the certificate. */
  store: string | undefined
  /** Options for node itself before the script (a benchmark's --cpu-prof). */
  nodeArgs: string[] = []
  #owned: boolean

  constructor(dir?: string) {
    this.#owned = dir === undefined
    this.dir = dir ?? mkdtempSync(join(tmpdir(), 'autotunnel-srv-'))
  }

  async addAccount(user: string, opts: { algorithm?: string; password?: string } = {}): Promise<AccountJson> {
    const args = ['account', 'add', user, ...this.#storeArgs(), '--zone', ZONE, '--json']
    if (opts.algorithm) args.push('--algorithm', opts.algorithm)
    if (opts.password !== undefined) args.push('--password-stdin')
    const r = await run(BIN, args, opts.password ?? undefined)
    if (r.code !== 0) throw new Error(`account add failed: ${r.stderr}`)
    return JSON.parse(r.stdout) as AccountJson
  }

  /**
   * Starts the server with UDP/TCP (and TLS unless `tls: false`) on random ports, or on `opts.ports`; resolves
   * when it is ready. `stderr` collects the logs of every start.
   */
  async start(extra: string[] = [], opts: StartOptions = {}): Promise<Ports> {
    const at = (port: number | undefined): string => `127.0.0.1:${port ?? 0}`
    const args = ['server', '--zone', ZONE, ...this.#storeArgs(), '--listen', at(opts.ports?.dns), ...extra]
    let want = 2
    if (opts.tls !== false) {
      args.push('--tls-listen', at(opts.ports?.tls))
      want++
    }
    if (opts.metrics) {
      args.push('--metrics', at(opts.ports?.metrics))
      want++
    }
    // Node flags for the server only: this.nodeArgs (set by a benchmark, e.g. a profile per node) and
    // AUTOTUNNEL_SERVER_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=DIR`, which NODE_OPTIONS does not accept).
    const envArgs = (process.env.AUTOTUNNEL_SERVER_NODE_ARGS ?? '').split(' ').filter((a) => a !== '')
    const proc = spawn(process.execPath, [...envArgs, ...this.nodeArgs, BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.proc = proc
    proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString()
    })
    const lines: string[] = []
    await new Promise<void>((resolve, reject) => {
      let buf = ''
      const timer = setTimeout(() => reject(new Error(`server did not start: ${this.stderr}`)), 15_000)
      proc.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`server exited with ${code}: ${this.stderr}`))
      })
      proc.stdout!.on('data', (d: Buffer) => {
        buf += d.toString()
        const parts = buf.split('\n')
        buf = parts.pop()!
        lines.push(...parts)
        if (lines.length >= want) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    const port = (kind: string): number | undefined => {
      const l = lines.find((x) => x.startsWith(`listening ${kind} `))
      const m = l ? /:(\d+)(\/metrics)?(\s|$)/.exec(l.split(' ')[2]!) : null
      return m ? Number(m[1]) : undefined
    }
    this.lines = lines
    this.ports = { dns: port('udp')! }
    const tls = port('tls')
    if (tls) this.ports.tls = tls
    const metrics = port('metrics')
    if (metrics) this.ports.metrics = metrics
    this.fingerprint = /sha256=(\S+)/.exec(lines.find((l) => l.startsWith('listening tls')) ?? '')?.[1] ?? ''
    return this.ports
  }

  #storeArgs(): string[] {
    return this.store ? ['--store', this.store, '--data', this.dir] : ['--data', this.dir]
  }

  /** One value from the Prometheus text on --metrics. */
  async metric(name: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.ports.metrics}/metrics`)).text()
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)
    return m ? Number(m[1]) : Number.NaN
  }

  /** SIGTERM, wait for the exit; resolves with the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const p = this.proc
    if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null
    const exited = new Promise<number | null>((resolve) => p.once('exit', (code) => resolve(code)))
    p.kill(signal)
    const t = setTimeout(() => p.kill('SIGKILL'), 5000)
    const code = await exited
    clearTimeout(t)
    return code
  }

  /** Kills the process and removes the data directory (for t.after). */
  async cleanup(): Promise<void> {
    await this.stop('SIGKILL').catch(() => {})
    if (this.#owned) rmSync(this.dir, { recursive: true, force: true })
  }

  dig(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return run('dig', ['@127.0.0.1', '-p', String(this.ports.dns), '+tries=1', '+time=3', ...args])
  }

  /** nsupdate -y with `key` (ALGORITHM:NAME:SECRET, or an account) against the plain port. */
  nsupdate(key: string | AccountJson, commands: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const script = [`server 127.0.0.1 ${this.ports.dns}`, `zone ${ZONE}`, ...commands, 'send', ''].join('\n')
    return run('nsupdate', ['-t', '5', '-y', typeof key === 'string' ? key : tsigArg(key)], script)
  }
}

export function tsigArg(a: AccountJson): string {
  return `${a.algorithm}:${a.keyName}:${a.secret}`
}
