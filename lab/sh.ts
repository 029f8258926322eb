// Running commands for the lab: async with captured output (bring-up, exec), and synchronous variants for
// teardown, which must also work from signal and exit handlers.
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

export interface ExecResult {
  stdout: string
  stderr: string
  /** Exit status; 128 + signal number when killed (for example 137 after a timeout). */
  code: number
}

export interface RunOptions {
  input?: string
  timeoutMs?: number
  env?: NodeJS.ProcessEnv
}

/** A lab operation that cannot be done as asked (a bad name or address, a daemon that did not exit). */
export class LabError extends Error {
  override name = 'LabError'
}

export class LabCommandError extends Error {
  override name = 'LabCommandError'
  constructor(
    readonly argv: string[],
    readonly result: ExecResult,
  ) {
    super(`${argv.join(' ')} exited ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`.slice(0, 2000))
  }
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 }

/** Runs argv (no shell) and collects its output; never throws for a non-zero exit. */
export function run(argv: string[], opts: RunOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv
    if (!cmd) {
      reject(new Error('empty argv'))
      return
    }
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    const timer =
      opts.timeoutMs !== undefined ? setTimeout(() => child.kill('SIGKILL'), Math.max(1, opts.timeoutMs)) : undefined
    child.on('error', (e) => {
      if (timer) clearTimeout(timer)
      reject(e)
    })
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer)
      resolve({
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        code: code ?? 128 + (SIGNALS[signal ?? 'SIGKILL'] ?? 9),
      })
    })
    child.stdin.on('error', () => {})
    child.stdin.end(opts.input ?? '')
  })
}

/** Like run(), but a non-zero exit throws LabCommandError. */
export async function runOk(argv: string[], opts: RunOptions = {}): Promise<ExecResult> {
  const r = await run(argv, opts)
  if (r.code !== 0) throw new LabCommandError(argv, r)
  return r
}

export function runSync(argv: string[], input?: string): ExecResult {
  const [cmd, ...args] = argv
  const r = spawnSync(cmd!, args, { input: input ?? '', encoding: 'utf8', timeout: 20_000 })
  return { stdout: r.stdout ?? '', stderr: r.stderr ?? '', code: r.status ?? 137 }
}

/** argv that runs `argv` inside network namespace `ns`. */
export function inNs(ns: string, argv: string[]): string[] {
  return ['ip', 'netns', 'exec', ns, ...argv]
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** True while `pid` runs; a zombie (exited, not yet reaped by its parent, maybe us) counts as gone. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}
