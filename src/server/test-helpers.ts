// Shared by the server's unit tests: a store in a fresh temporary directory and record builders.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Opcode } from '../dns/wire/header.js'
import type { Message } from '../dns/wire/message.js'
import { emptyMessage } from '../dns/wire/message.js'
import { type RData, type RR, RRClass, RRType } from '../dns/wire/rr-table.js'
import { FakeClock } from '../io/clock.fake.js'
import { Store } from './store.js'

export const ZONE = 'members.example.'

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'autotunnel-server-'))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

export function openStore(dir: string, clock = new FakeClock()): Store {
  return new Store({ clock }, { dir, zone: ZONE, sync: 'normal' })
}

export function rr(name: string, type: number, data: RData, opts: { ttl?: number; class?: number } = {}): RR {
  return { name, type, class: opts.class ?? RRClass.IN, ttl: opts.ttl ?? 300, data }
}

export const aaaa = (name: string, address: string, ttl = 300): RR => rr(name, RRType.AAAA, { address }, { ttl })
export const a = (name: string, address: string, ttl = 300): RR => rr(name, RRType.A, { address }, { ttl })
export const txt = (name: string, s: string): RR => rr(name, RRType.TXT, { strings: [Buffer.from(s)] })

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
