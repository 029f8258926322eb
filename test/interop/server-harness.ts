// Drives the real `bin/autotunnel server` process for the interop tests: a data directory per test, accounts
// through `autotunnel account add --json`, listeners on 127.0.0.1 with random ports (read back from the
// "listening ..." lines on stdout), SIGTERM at the end and SIGKILL if it does not go.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
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
  #owned: boolean

  constructor(dir?: string) {
    this.#owned = dir === undefined
    this.dir = dir ?? mkdtempSync(join(tmpdir(), 'autotunnel-srv-'))
  }

  async addAccount(user: string, opts: { algorithm?: string; password?: string } = {}): Promise<AccountJson> {
    const args = ['account', 'add', user, '--data', this.dir, '--zone', ZONE, '--json']
    if (opts.algorithm) args.push('--algorithm', opts.algorithm)
    if (opts.password !== undefined) args.push('--password-stdin')
    const r = await run(BIN, args, opts.password ?? undefined)
    if (r.code !== 0) throw new Error(`account add failed: ${r.stderr}`)
    return JSON.parse(r.stdout) as AccountJson
  }

  /** Starts the server with UDP/TCP (and TLS unless `tls: false`) on random ports; resolves when it is ready. */
  async start(extra: string[] = [], opts: { tls?: boolean; metrics?: boolean } = {}): Promise<Ports> {
    const args = ['server', '--zone', ZONE, '--data', this.dir, '--listen', '127.0.0.1:0', ...extra]
    let want = 2
    if (opts.tls !== false) {
      args.push('--tls-listen', '127.0.0.1:0')
      want++
    }
    if (opts.metrics) {
      args.push('--metrics', '127.0.0.1:0')
      want++
    }
    const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc = proc
    this.stderr = ''
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
    return this.ports
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

  nsupdate(key: string, commands: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const script = [`server 127.0.0.1 ${this.ports.dns}`, `zone ${ZONE}`, ...commands, 'send', ''].join('\n')
    return run('nsupdate', ['-t', '5', '-y', key], script)
  }
}

export function tsigArg(a: AccountJson): string {
  return `${a.algorithm}:${a.keyName}:${a.secret}`
}
