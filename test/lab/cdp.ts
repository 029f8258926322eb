// Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: NUL-terminated JSON on
// fds 3 and 4), started inside a lab host's namespace so it reaches that host's loopback. One page stays open for as
// long as the test wants (the status page's live updates), screenshots and DOM reads on demand.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable, Writable } from 'node:stream'

type Msg = {
  id?: number
  method?: string
  params?: Record<string, unknown>
  result?: Record<string, unknown>
  error?: { message: string }
  sessionId?: string
}

export class Browser {
  readonly #proc: ChildProcess
  readonly #out: Writable
  readonly #profile: string
  readonly #waiting = new Map<number, { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }>()
  readonly #events: Msg[] = []
  readonly #listeners = new Set<() => void>()
  #next = 1
  #session = ''

  private constructor(proc: ChildProcess, profile: string) {
    this.#proc = proc
    this.#profile = profile
    this.#out = proc.stdio[3] as Writable
    let buf = ''
    ;(proc.stdio[4] as Readable).on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8')
      for (let i = buf.indexOf('\0'); i >= 0; i = buf.indexOf('\0')) {
        const m = JSON.parse(buf.slice(0, i)) as Msg
        buf = buf.slice(i + 1)
        const w = m.id === undefined ? undefined : this.#waiting.get(m.id)
        if (w && m.id !== undefined) {
          this.#waiting.delete(m.id)
          if (m.error) w.reject(new Error(`CDP: ${m.error.message}`))
          else w.resolve(m.result ?? {})
        } else if (m.method) {
          this.#events.push(m)
          for (const l of this.#listeners) l()
        }
      }
    })
  }

  /** Chromium in network namespace `netns` with one page of `width` x `height`. */
  static async launch(netns: string, width = 1100, height = 700): Promise<Browser> {
    const profile = await mkdtemp(join(tmpdir(), 'at-chromium-'))
    const proc = spawn(
      'ip',
      [
        'netns',
        'exec',
        netns,
        'chromium',
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--remote-debugging-pipe',
        `--user-data-dir=${profile}`,
        '--no-first-run',
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'], detached: true },
    )
    const b = new Browser(proc, profile)
    const { targetId } = (await b.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string }
    const { sessionId } = (await b.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string }
    b.#session = sessionId
    await b.send('Page.enable', {}, true)
    await b.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false }, true)
    return b
  }

  send(method: string, params: Record<string, unknown> = {}, page = false): Promise<Record<string, unknown>> {
    const id = this.#next++
    const msg: Msg = { id, method, params, ...(page ? { sessionId: this.#session } : {}) }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id)
        reject(new Error(`CDP ${method}: no answer in 20 s`))
      }, 20_000)
      this.#waiting.set(id, {
        resolve: (r) => {
          clearTimeout(timer)
          resolve(r)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      this.#out.write(`${JSON.stringify(msg)}\0`)
    })
  }

  /** Navigates and waits for the load event. */
  async open(url: string): Promise<void> {
    const loaded = this.#waitEvent('Page.loadEventFired', 20_000)
    await this.send('Page.navigate', { url }, true)
    await loaded
  }

  #waitEvent(method: string, ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const start = this.#events.length
      const timer = setTimeout(() => {
        this.#listeners.delete(check)
        reject(new Error(`no ${method} within ${ms} ms`))
      }, ms)
      const check = (): void => {
        if (!this.#events.slice(start).some((e) => e.method === method)) return
        clearTimeout(timer)
        this.#listeners.delete(check)
        resolve()
      }
      this.#listeners.add(check)
    })
  }

  /** The value of a JavaScript expression in the page. */
  async eval(expression: string): Promise<unknown> {
    const r = (await this.send('Runtime.evaluate', { expression, returnByValue: true }, true)) as {
      result: { value?: unknown }
    }
    return r.result.value
  }

  async screenshot(): Promise<Buffer> {
    const r = (await this.send('Page.captureScreenshot', { format: 'png' }, true)) as { data: string }
    return Buffer.from(r.data, 'base64')
  }

  async close(): Promise<void> {
    const exited = new Promise((r) =>
      this.#proc.exitCode !== null || this.#proc.signalCode !== null ? r(null) : this.#proc.once('exit', r),
    )
    await this.send('Browser.close').catch(() => {})
    const t = setTimeout(() => {
      try {
        if (this.#proc.pid) process.kill(-this.#proc.pid, 'SIGKILL')
      } catch {
        // gone already
      }
    }, 3000)
    await exited
    clearTimeout(t)
    await rm(this.#profile, { recursive: true, force: true })
  }
}
