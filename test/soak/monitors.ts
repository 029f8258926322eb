// What the soak run watches while faults come and go: `ping -6 -i 0.05` between the agents' ULAs (reply times from
// ping's own -D timestamps) and a TCP stream (tcp-stream.ts) whose receiver reports its byte count every 100 ms.
// Both keep one timeline across restarts of their processes, so a gap spans an agent's restart.
import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Lab } from '../../lab/index.js'

export const PING_INTERVAL_MS = 50
const TCP_STREAM = fileURLToPath(new URL('./tcp-stream.js', import.meta.url))
export const STREAM_PORT = 7000
const RESPAWN_MS = 200

function lines(child: ChildProcess, fn: (line: string) => void): void {
  if (child.stdout) createInterface({ input: child.stdout }).on('line', fn)
}

function kill(child: ChildProcess | undefined): void {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}

/** One direction of ICMPv6 echo between two lab hosts; `replies` holds Date.now()-based times of every answer. */
export class PingMonitor {
  readonly replies: number[] = []
  #child: ChildProcess | undefined
  #generation = 0

  constructor(
    private readonly lab: Lab,
    readonly from: string,
  ) {}

  /**
   * (Re)starts ping towards `ula` (after either side's ULA changed). ping exits at once while there is no route
   * to the ULA yet (a TUN device still being set up), so it is started again until stop().
   */
  start(ula: string): void {
    const gen = ++this.#generation
    kill(this.#child)
    this.#spawn(ula, gen)
  }

  #spawn(ula: string, gen: number): void {
    const argv = this.lab.argv(this.from, [
      'stdbuf',
      '-oL',
      'ping',
      '-6',
      '-n',
      '-D',
      '-i',
      String(PING_INTERVAL_MS / 1000),
      '-W',
      '1',
      ula,
    ])
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] })
    child.on('error', () => {})
    child.on('exit', () => {
      if (gen === this.#generation) setTimeout(() => gen === this.#generation && this.#spawn(ula, gen), RESPAWN_MS)
    })
    lines(child, (l) => {
      const m = /^\[(\d+\.\d+)\] \d+ bytes from/.exec(l)
      if (m) this.replies.push(Math.round(Number(m[1]) * 1000))
    })
    this.#child = child
  }

  stop(): void {
    this.#generation++
    kill(this.#child)
    this.#child = undefined
  }

  /** First answer after `t`, or undefined. */
  firstAfter(t: number): number | undefined {
    return this.replies.find((r) => r > t)
  }

  /**
   * The longest time without an answer that overlaps [from, to]: between two consecutive answers, or from the
   * last answer to `to` when none came after it.
   */
  longestGap(from: number, to: number): number {
    let gap = 0
    let prev: number | undefined
    for (const r of this.replies) {
      if (r > to) return Math.max(gap, r - Math.max(prev ?? from, from))
      if (r > from) gap = Math.max(gap, r - (prev ?? from))
      prev = r
    }
    return Math.max(gap, to - Math.max(prev ?? from, from))
  }
}

export type StreamEvent = { at: number; kind: 'bytes'; bytes: number } | { at: number; kind: 'close'; reason: string }

/**
 * A TCP stream from `sender` to `receiver`'s ULA. `generation` counts (re)starts; each generation's events (the
 * receiver's byte counts and either side's close) are kept, so a fault's window shows whether the connection lived.
 */
export class StreamMonitor {
  generation = 0
  events: StreamEvent[] = []
  readonly closes: { generation: number; at: number; side: string; reason: string }[] = []
  #recv: ChildProcess | undefined
  #send: ChildProcess | undefined

  constructor(
    private readonly lab: Lab,
    readonly sender: string,
    readonly receiver: string,
  ) {}

  async start(receiverUla: string): Promise<void> {
    this.stop()
    const gen = ++this.generation
    this.events = []
    const recvArgv = this.lab.argv(this.receiver, ['node', TCP_STREAM, 'recv', receiverUla, String(STREAM_PORT)])
    const recv = spawn(recvArgv[0]!, recvArgv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] })
    recv.on('error', () => {})
    const listening = new Promise<void>((resolve) => {
      lines(recv, (l) => {
        if (l === 'listening') resolve()
        else if (gen !== this.generation) return
        else if (l.startsWith('bytes ')) this.events.push({ at: Date.now(), kind: 'bytes', bytes: Number(l.slice(6)) })
        else if (l.startsWith('close ')) this.#closed(gen, 'receiver', l.slice(6))
      })
      recv.on('exit', () => resolve())
    })
    this.#recv = recv
    await listening
    const sendArgv = this.lab.argv(this.sender, ['node', TCP_STREAM, 'send', receiverUla, String(STREAM_PORT)])
    const send = spawn(sendArgv[0]!, sendArgv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] })
    send.on('error', () => {})
    lines(send, (l) => {
      if (gen === this.generation && l.startsWith('close ')) this.#closed(gen, 'sender', l.slice(6))
    })
    this.#send = send
  }

  #closed(generation: number, side: string, reason: string): void {
    const at = Date.now()
    this.closes.push({ generation, at, side, reason })
    this.events.push({ at, kind: 'close', reason: `${side}: ${reason}` })
  }

  /** Whether this generation's connection has ended (either side saw a close). */
  get closed(): boolean {
    return this.events.some((e) => e.kind === 'close')
  }

  /** The receiver's byte count at its last report. */
  get bytes(): number {
    for (let i = this.events.length - 1; i >= 0; i--) {
      const e = this.events[i]!
      if (e.kind === 'bytes') return e.bytes
    }
    return 0
  }

  /** True once the receiver has counted more than it had at `t`. */
  grewSince(t: number): boolean {
    let at = 0
    let last = 0
    for (const e of this.events) {
      if (e.kind !== 'bytes') continue
      if (e.at <= t) at = e.bytes
      last = e.bytes
    }
    return last > at
  }

  /** The longest time the receiver's count stood still within [from, to]. */
  longestStall(from: number, to: number): number {
    let stall = 0
    let since: number | undefined
    let prev = -1
    for (const e of this.events) {
      if (e.kind !== 'bytes' || e.at > to) continue
      if (e.bytes !== prev) {
        if (since !== undefined && e.at > from) stall = Math.max(stall, e.at - Math.max(since, from))
        since = e.at
        prev = e.bytes
      }
    }
    if (since !== undefined) stall = Math.max(stall, to - Math.max(since, from))
    return stall
  }

  stop(): void {
    kill(this.#send)
    kill(this.#recv)
    this.#send = undefined
    this.#recv = undefined
  }
}
