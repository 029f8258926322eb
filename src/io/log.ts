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

// The line format is pino's (https://getpino.io): `{"level":30,"time":MS,"pid":N,"name":"autotunnel",...bindings,
// ...fields,"msg":"event"}` with pino's level numbers, so log tooling (pino-pretty, jq filters on "level") keeps
// working. We write it ourselves rather than load pino: measured (bench/idle-peers, issue 17) pino's module graph
// costs 6-7 MiB of RSS in every process, a tenth of the idle agent's 64 MiB budget, for features (transports,
// redaction, async buffering) we do not use. A log line is one synchronous write to stderr: stderr is synchronous
// for files, pipes and terminals on Linux (node's process documentation), so a line is never lost at exit.
const LEVEL_NUMBER = { debug: 20, info: 30, warn: 40, error: 50 } as const

/** Error values as pino's standard serializer shows them (an Error's own fields are not enumerable). */
function replacer(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString()
  if (v instanceof Error) {
    const out: Record<string, unknown> = { type: v.name, message: v.message, stack: v.stack }
    for (const k of Object.keys(v)) out[k] = (v as unknown as Record<string, unknown>)[k]
    if (v.cause !== undefined) out.cause = v.cause
    return out
  }
  return v
}

/** The fields as `,"k":v...` (no braces), safe for cycles: a value met again inside itself is "[Circular]". */
function fieldsChunk(fields: LogFields): string {
  let json: string
  try {
    json = JSON.stringify(fields, replacer)
  } catch {
    const ancestors: unknown[] = []
    json = JSON.stringify(fields, function (this: unknown, key, value) {
      const v = replacer(key, value)
      if (typeof v !== 'object' || v === null) return v
      while (ancestors.length > 0 && ancestors[ancestors.length - 1] !== this) ancestors.pop()
      if (ancestors.includes(v)) return '[Circular]'
      ancestors.push(v)
      return v
    })
  }
  return json.length > 2 ? `,${json.slice(1, -1)}` : ''
}

class LineLogger implements Logger {
  readonly #min: number
  readonly #head: string
  readonly #write: (line: string) => void
  constructor(min: number, head: string, write: (line: string) => void) {
    this.#min = min
    this.#head = head
    this.#write = write
  }
  #line(level: LogLevel, event: string, fields?: LogFields): void {
    const n = LEVEL_NUMBER[level]
    if (n < this.#min) return
    const body = fields ? fieldsChunk(fields) : ''
    this.#write(`{"level":${n},"time":${Date.now()},${this.#head}${body},"msg":${JSON.stringify(event)}}\n`)
  }
  debug(event: string, fields?: LogFields): void {
    this.#line('debug', event, fields)
  }
  info(event: string, fields?: LogFields): void {
    this.#line('info', event, fields)
  }
  warn(event: string, fields?: LogFields): void {
    this.#line('warn', event, fields)
  }
  error(event: string, fields?: LogFields): void {
    this.#line('error', event, fields)
  }
  enabled(level: LogLevel): boolean {
    return LEVEL_NUMBER[level] >= this.#min
  }
  child(bindings: LogFields): Logger {
    return new LineLogger(this.#min, this.#head + fieldsChunk(bindings), this.#write)
  }
}

/** JSON lines on stderr (fd 2), so stdout stays for the command's own output. */
export function jsonLogger(opts: { level?: LogLevel; name?: string; write?: (line: string) => void } = {}): Logger {
  const level = opts.level ?? (process.env.AUTOTUNNEL_LOG as LogLevel | undefined) ?? 'info'
  const min = LEVEL_NUMBER[level]
  if (min === undefined) throw new Error(`log level "${level}": use one of debug, info, warn, error`)
  const head = `"pid":${process.pid},"name":${JSON.stringify(opts.name ?? 'autotunnel')}`
  return new LineLogger(min, head, opts.write ?? ((line) => process.stderr.write(line)))
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
