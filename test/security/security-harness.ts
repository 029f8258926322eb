// Shared by the attack tests in test/security/: the real `bin/autotunnel server` process (test/interop's
// ServerProcess), the `autotunnel account` CLI run against its data directory, and small waiting helpers.
import { LlqClient } from '../../src/dns/client/llq.js'
import { PushClient } from '../../src/dns/client/push.js'
import { queryMessage } from '../../src/dns/client/query.js'
import { DnsStream } from '../../src/dns/client/stream.js'
import { decodeDso, encodeDso, subscribeTlv } from '../../src/dns/dso.js'
import { signMessage, type TsigKey } from '../../src/dns/tsig.js'
import { RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { type AccountJson, BIN, run, ServerProcess, ZONE } from '../interop/server-harness.js'

export { type AccountJson, BIN, run, ServerProcess, ZONE }

export function tsigKey(a: AccountJson): TsigKey {
  return { name: a.keyName, algorithm: a.algorithm, secret: Buffer.from(a.secret, 'base64') }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** `autotunnel account ARGS --data DIR` (JSON output parsed when `--json` is among the args). */
export async function account(srv: ServerProcess, args: string[]): Promise<AccountJson | undefined> {
  const r = await run(BIN, ['account', ...args, '--data', srv.dir])
  if (r.code !== 0) throw new Error(`account ${args.join(' ')} failed: ${r.stderr}`)
  return args.includes('--json') ? (JSON.parse(r.stdout) as AccountJson) : undefined
}

/** A DNS Push subscription to (name, AAAA) on the server's TLS port, authenticated with `key` when given. */
export function pushClient(srv: ServerProcess, name: string, key?: TsigKey, type: number = RRType.AAAA): PushClient {
  return new PushClient(
    { host: '127.0.0.1', port: srv.ports.tls!, tls: { rejectUnauthorized: false } },
    key
      ? { name, type, sign: (m) => signMessage(m, key).wire, authName: key.name, timeoutMs: 3000 }
      : { name, type, timeoutMs: 3000 },
  )
}

/** An LLQ over UDP for (name, AAAA), signed with `key` when given. */
export function llqClient(srv: ServerProcess, name: string, key?: TsigKey): LlqClient {
  return new LlqClient(
    { host: '127.0.0.1', port: srv.ports.dns },
    key
      ? { name, type: RRType.AAAA, encode: (m) => signMessage(m, key).wire, attempts: 1 }
      : { name, type: RRType.AAAA, attempts: 1 },
  )
}

/**
 * A raw DSO session on the TLS (or, with `plain`, TCP) port: signed or replayed DNS messages and any number of
 * SUBSCRIBEs, answers matched by message ID. Closed by the caller.
 */
export class RawSession {
  readonly answers = new Map<number, { rcode: number; raw: Buffer }>()
  readonly pushes: Buffer[] = []
  #nextId = 1
  private constructor(readonly s: DnsStream) {
    s.onMessage((b) => {
      if (b.length < 12) return
      const opcode = (b[2]! >> 3) & 0xf
      if (opcode === 6) {
        const m = decodeDso(b)
        if (m.qr) this.answers.set(m.id, { rcode: m.rcode, raw: Buffer.from(b) })
        else this.pushes.push(Buffer.from(b))
      } else if (b[2]! & 0x80) this.answers.set(b.readUInt16BE(0), { rcode: b[3]! & 0xf, raw: Buffer.from(b) })
    })
  }

  static async open(srv: ServerProcess, opts: { localAddress?: string; plain?: boolean } = {}): Promise<RawSession> {
    const s = await DnsStream.connect({
      host: '127.0.0.1',
      port: opts.plain ? srv.ports.dns : srv.ports.tls!,
      ...(opts.plain ? {} : { tls: { rejectUnauthorized: false } }),
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    })
    return new RawSession(s)
  }

  get closed(): boolean {
    return this.s.closed
  }

  close(): void {
    this.s.close()
  }

  /** Sends a DNS message (already encoded, e.g. signed or replayed) and waits for the answer with its ID. */
  async dns(wire: Buffer, ms = 2000): Promise<number | undefined> {
    const id = wire.readUInt16BE(0)
    this.answers.delete(id)
    this.s.send(wire)
    return (await this.#wait(id, ms))?.rcode
  }

  /** SUBSCRIBE (name, type); resolves with the response RCODE, or undefined when none came. */
  async subscribe(name: string, type: number = RRType.AAAA, ms = 2000): Promise<number | undefined> {
    const id = this.#nextId++
    this.s.send(encodeDso({ id, qr: false, rcode: 0, tlvs: [subscribeTlv({ name, type, class: RRClass.IN })] }))
    return (await this.#wait(id, ms))?.rcode
  }

  /** Sends `n` SUBSCRIBEs at once and collects their RCODEs. */
  async subscribeMany(names: string[], type: number = RRType.AAAA, ms = 5000): Promise<(number | undefined)[]> {
    const ids = names.map((name) => {
      const id = this.#nextId++
      this.s.send(encodeDso({ id, qr: false, rcode: 0, tlvs: [subscribeTlv({ name, type, class: RRClass.IN })] }))
      return id
    })
    const t0 = performance.now()
    while (ids.some((id) => !this.answers.has(id)) && performance.now() - t0 < ms && !this.s.closed) await sleep(10)
    return ids.map((id) => this.answers.get(id)?.rcode)
  }

  async #wait(id: number, ms: number): Promise<{ rcode: number; raw: Buffer } | undefined> {
    const t0 = performance.now()
    while (!this.answers.has(id) && performance.now() - t0 < ms && !this.s.closed) await sleep(10)
    return this.answers.get(id)
  }
}

/** A query for (name, type) signed with `key` (time signed `timeSigned`, fudge `fudge` when given). */
export function signedQuery(
  name: string,
  type: number,
  key: TsigKey,
  o: { timeSigned?: number; fudge?: number } = {},
): Buffer {
  return signMessage(queryMessage(name, type), key, o).wire
}
