// The real `bin/autotunnel server` for the notify interop tests, on fixed loopback ports so it can be restarted
// in place (a watcher must survive that), plus watcher and update helpers.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TsigKey } from '../../src/dns/tsig.js'
import { type AccountJson, BIN, run, tsigArg, ZONE } from './server-harness.js'

export { type AccountJson, run, tsigArg, ZONE }

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port
      s.close(() => resolve(p))
    })
  })
}

export class NotifyServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'autotunnel-notify-'))
  proc: ChildProcess | undefined
  dnsPort = 0
  tlsPort = 0
  metricsPort = 0
  fingerprint = ''
  stderr = ''
  readonly extra: string[]

  constructor(extra: string[] = []) {
    this.extra = extra
  }

  async addAccount(user: string): Promise<AccountJson> {
    const r = await run(BIN, ['account', 'add', user, '--data', this.dir, '--zone', ZONE, '--json'])
    if (r.code !== 0) throw new Error(`account add failed: ${r.stderr}`)
    return JSON.parse(r.stdout) as AccountJson
  }

  async start(): Promise<void> {
    if (!this.dnsPort) {
      this.dnsPort = await freePort()
      this.tlsPort = await freePort()
      this.metricsPort = await freePort()
    }
    const args = ['server', '--zone', ZONE, '--data', this.dir, '--listen', `127.0.0.1:${this.dnsPort}`]
    args.push('--tls-listen', `127.0.0.1:${this.tlsPort}`, '--metrics', `127.0.0.1:${this.metricsPort}`, ...this.extra)
    const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
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
        if (lines.length >= 3) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    const tls = lines.find((l) => l.startsWith('listening tls'))
    this.fingerprint = /sha256=(\S+)/.exec(tls ?? '')?.[1] ?? ''
  }

  /** One value from the Prometheus text on --metrics. */
  async metric(name: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`)).text()
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)
    return m ? Number(m[1]) : Number.NaN
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc
    if (!p || p.exitCode !== null || p.signalCode !== null) return
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()))
    p.kill(signal)
    const t = setTimeout(() => p.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(t)
  }

  async cleanup(): Promise<void> {
    await this.stop('SIGKILL').catch(() => {})
    rmSync(this.dir, { recursive: true, force: true })
  }

  nsupdate(a: AccountJson, commands: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const script = [`server 127.0.0.1 ${this.dnsPort}`, `zone ${ZONE}`, ...commands, 'send', ''].join('\n')
    return run('nsupdate', ['-t', '5', '-y', tsigArg(a)], script)
  }
}

export function tsigKey(a: AccountJson): TsigKey {
  return { name: a.keyName, algorithm: a.algorithm, secret: Buffer.from(a.secret, 'base64') }
}

/** Resolves with the first value `pick` returns for an event, or rejects after `ms`. */
export function waitFor<E, T>(
  subscribe: (h: (e: E) => void) => () => void,
  pick: (e: E) => T | undefined,
  ms: number,
  what: string,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let off: () => void = () => {}
    const timer = setTimeout(() => {
      off()
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`))
    }, ms)
    off = subscribe((e) => {
      const v = pick(e)
      if (v === undefined) return
      clearTimeout(timer)
      off()
      resolve(v)
    })
  })
}
