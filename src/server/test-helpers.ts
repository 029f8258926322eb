// Shared by the server's unit tests: a store in a fresh temporary directory, a DnsService on it with user alice,
// and record builders.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Opcode } from '../dns/wire/header.js'
import type { Message } from '../dns/wire/message.js'
import { emptyMessage } from '../dns/wire/message.js'
import { type RData, type RR, RRClass, RRType } from '../dns/wire/rr-table.js'
import { FakeClock } from '../io/clock.fake.js'
import { nullLogger } from '../io/log.js'
import { addAccount, KeyRing } from './accounts.js'
import type { ServiceConfig } from './config.js'
import { ServerMetrics } from './metrics.js'
import { DnsService } from './service.js'
import { Store } from './store.js'
import type { ZoneRR } from './zone-index.js'

export const ZONE = 'members.example.'

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'autotunnel-server-'))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

export function openStore(dir: string, clock = new FakeClock()): Store {
  return new Store({ clock }, { dir, zone: ZONE, sync: 'normal' })
}

/**
 * A DnsService with `cfg` on a fresh store holding account alice (hmac-sha256, secret 32 x 0x01); stopped and
 * removed after the test.
 */
/** A service with account alice on a fresh SQLite store; `cfg` may be made from the data directory. */
export function aliceService(
  t: { after: (fn: () => void) => void },
  cfgOrOf: ServiceConfig | ((dir: string) => ServiceConfig),
  clock = new FakeClock(),
) {
  const { dir, cleanup } = tempDir()
  const cfg = typeof cfgOrOf === 'function' ? cfgOrOf(dir) : cfgOrOf
  const store = openStore(dir, clock)
  addAccount(store.db, ZONE, {
    user: 'alice',
    algorithm: 'hmac-sha256',
    secret: Buffer.alloc(32, 1),
    derived: false,
    nowMs: 0,
  })
  const keys = new KeyRing({ db: store.db, clock, checkExternal: () => store.checkExternal() })
  const metrics = new ServerMetrics()
  const svc = new DnsService({ store, keys, clock, log: nullLogger, metrics }, cfg)
  t.after(() => {
    svc.stop()
    store.close()
    cleanup()
  })
  return { dir, store, svc, clock, metrics }
}

export function rr(name: string, type: number, data: RData, opts: { ttl?: number; class?: number } = {}): RR {
  return { name, type, class: opts.class ?? RRClass.IN, ttl: opts.ttl ?? 300, data }
}

export const aaaa = (name: string, address: string, ttl = 300): RR => rr(name, RRType.AAAA, { address }, { ttl })
export const a = (name: string, address: string, ttl = 300): RR => rr(name, RRType.A, { address }, { ttl })
export const txt = (name: string, s: string): RR => rr(name, RRType.TXT, { strings: [Buffer.from(s)] })

/** A stored TXT record of one string (what ZoneTx and the stores take), TTL 60. */
export const txtZoneRR = (name: string, s: string): ZoneRR => ({
  name,
  type: RRType.TXT,
  class: RRClass.IN,
  ttl: 60,
  rdata: Buffer.from([s.length, ...Buffer.from(s)]),
  text: `"${s}"`,
})

/** An UPDATE for ZONE with the given prerequisite and update sections. */
export function updateMsg(prereqs: RR[], updates: RR[], zone = ZONE): Message {
  return emptyMessage({
    id: 1,
    opcode: Opcode.UPDATE,
    questions: [{ name: zone, type: RRType.SOA, class: RRClass.IN }],
    answers: prereqs,
    authorities: updates,
  })
}
