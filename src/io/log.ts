import { pino } from 'pino'

// Structured logs (STYLE.md section 6): an event name plus fields, `log.debug('pcp.renew', { gw, epoch })`.
// Hot paths check `log.enabled('debug')` before building fields.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type LogFields = Record<string, unknown>

export interface Logger {
  debug(event: string, fields?: LogFields): void
  info(event: string, fields?: LogFields): void
  warn(event: string, fields?: LogFields): void
  error(event: string, fields?: LogFields): void
  enabled(level: LogLevel): boolean
  child(bindings: LogFields): Logger
}

const noop = (): void => {}

export const nullLogger: Logger = Object.freeze({
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  enabled: () => false,
  child: () => nullLogger,
})

function wrap(p: pino.Logger): Logger {
  return {
    debug: (ev, f) => p.debug(f ?? {}, ev),
    info: (ev, f) => p.info(f ?? {}, ev),
    warn: (ev, f) => p.warn(f ?? {}, ev),
    error: (ev, f) => p.error(f ?? {}, ev),
    enabled: (level) => p.isLevelEnabled(level),
    child: (b) => wrap(p.child(b)),
  }
}

/** JSON lines on stderr (fd 2), so stdout stays for the command's own output. */
export function jsonLogger(opts: { level?: LogLevel; name?: string } = {}): Logger {
  const level = opts.level ?? (process.env.AUTOTUNNEL_LOG as LogLevel | undefined) ?? 'info'
  return wrap(pino({ level, name: opts.name ?? 'autotunnel', base: { pid: process.pid } }, pino.destination(2)))
}

/** Collects entries in memory: tests assert on what was logged. */
export class MemoryLogger implements Logger {
  readonly entries: { level: LogLevel; event: string; fields: LogFields }[] = []
  readonly #bindings: LogFields
  constructor(bindings: LogFields = {}, sink?: MemoryLogger['entries']) {
    this.#bindings = bindings
    if (sink) this.entries = sink
  }
  #push(level: LogLevel, event: string, fields?: LogFields): void {
    this.entries.push({ level, event, fields: { ...this.#bindings, ...fields } })
  }
  debug(event: string, fields?: LogFields): void {
    this.#push('debug', event, fields)
  }
  info(event: string, fields?: LogFields): void {
    this.#push('info', event, fields)
  }
  warn(event: string, fields?: LogFields): void {
    this.#push('warn', event, fields)
  }
  error(event: string, fields?: LogFields): void {
    this.#push('error', event, fields)
  }
  enabled(): boolean {
    return true
  }
  child(bindings: LogFields): Logger {
    return new MemoryLogger({ ...this.#bindings, ...bindings }, this.entries)
  }
}
