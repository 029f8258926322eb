// Wake-up attribution for the idle benchmarks (docs/commands.md "Idle cost"): preloaded into an agent with
// `BENCH_AGENT_WRAP="env NODE_OPTIONS=--import=$PWD/dist/bench/idle-trace.js" BENCH_MARK_SIGNAL=SIGUSR2`, it counts
// each timer firing by the source line that set it (and its delay), and each socket or stream event by emitter type
// and port; on SIGUSR2 it writes the counts to $IDLE_TRACE_DIR (default /tmp) as idle-trace-PID-MS.json, so two dumps
// (the window's start and end) give the wake-ups per minute of each cause. Not for production: it wraps
// setTimeout/setInterval and EventEmitter.prototype.emit, and takes a stack trace per timer set.
import { EventEmitter } from 'node:events'
import { writeFileSync } from 'node:fs'
import { isMainThread } from 'node:worker_threads'

if (isMainThread) {
  const fired = new Map<string, number>()
  const emits = new Map<string, number>()
  const bump = (m: Map<string, number>, k: string): void => {
    m.set(k, (m.get(k) ?? 0) + 1)
  }
  /** The first stack frame outside node's internals, the clock wrapper and this file. */
  const site = (): string => {
    const lines = (new Error().stack ?? '').split('\n').slice(3)
    const l = lines.find((x) => !x.includes('node:') && !x.includes('/io/clock.js') && !x.includes('idle-trace')) ?? '?'
    return l
      .trim()
      .replace(/^at /, '')
      .replace(/file:\/\/\S*\/dist\//, '')
  }
  type TimerFn = (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => unknown
  const wrap = (orig: TimerFn): TimerFn =>
    function (this: unknown, fn, ms, ...args) {
      if (typeof fn !== 'function') return orig(fn, ms, ...args)
      const k = `${site()} [${Math.round(ms ?? 0)} ms]`
      return orig(
        function (this: unknown, ...a: unknown[]) {
          bump(fired, k)
          return fn.apply(this, a)
        },
        ms,
        ...args,
      )
    }
  const g = globalThis as unknown as { setTimeout: TimerFn; setInterval: TimerFn }
  g.setTimeout = wrap(g.setTimeout.bind(globalThis))
  g.setInterval = wrap(g.setInterval.bind(globalThis))
  const WATCHED = new Set(['message', 'data', 'connect', 'secureConnect', 'close', 'end', 'error', 'line'])
  const emit = EventEmitter.prototype.emit
  EventEmitter.prototype.emit = function (this: EventEmitter, ev: string | symbol, ...a: unknown[]): boolean {
    if (typeof ev === 'string' && WATCHED.has(ev)) {
      const self = this as unknown as { address?: () => { port: number }; remoteAddress?: string; remotePort?: number }
      let k = `${this.constructor.name}.${ev}`
      try {
        if (ev === 'message' && self.address) k += ` :${self.address().port}`
      } catch {}
      if (self.remotePort) k += ` ->${self.remoteAddress}:${self.remotePort}`
      bump(emits, k)
    }
    return emit.call(this, ev, ...a)
  }
  process.on('SIGUSR2', () => {
    const dir = process.env.IDLE_TRACE_DIR ?? '/tmp'
    const out = { at: Date.now(), fired: Object.fromEntries(fired), emits: Object.fromEntries(emits) }
    writeFileSync(`${dir}/idle-trace-${process.pid}-${out.at}.json`, JSON.stringify(out, null, 1))
  })
}
