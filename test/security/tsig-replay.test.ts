// Issue 16 finding 7: the server's --fudge bounds the time window it accepts (not the signer's fudge field), and
// a signed UPDATE cannot be replayed within that window: its MAC is remembered.
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { after, before, test } from 'node:test'
import { signMessage } from '../../src/dns/tsig.js'
import { Opcode } from '../../src/dns/wire/header.js'
import { emptyMessage } from '../../src/dns/wire/message.js'
import { RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { type AccountJson, ServerProcess, signedQuery, tsigKey, ZONE } from './security-harness.js'

const srv = new ServerProcess()
let alice: AccountJson

before(async () => {
  alice = await srv.addAccount('alice')
  await srv.start()
})
after(() => srv.cleanup())

function udp(wire: Buffer): Promise<Buffer> {
  const u = createSocket('udp4')
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      u.close()
      reject(new Error('no answer'))
    }, 3000)
    u.once('message', (m) => {
      clearTimeout(timer)
      u.close()
      resolve(m)
    })
    u.send(wire, srv.ports.dns, '127.0.0.1')
  })
}

function addTxt(name: string, text: string, o: { timeSigned?: number; fudge?: number } = {}): Buffer {
  const m = emptyMessage({
    id: 777,
    opcode: Opcode.UPDATE,
    questions: [{ name: `${ZONE}.`, type: RRType.SOA, class: RRClass.IN }],
    authorities: [{ name, type: RRType.TXT, class: RRClass.IN, ttl: 60, data: { strings: [Buffer.from(text)] } }],
  })
  return signMessage(m, tsigKey(alice), o).wire
}

async function txtCount(name: string): Promise<number> {
  const a = await udp(signedQuery(name, RRType.TXT, tsigKey(alice)))
  return a.readUInt16BE(6)
}

test('the same signed UPDATE bytes, resent after a delete, do not add the record again', async () => {
  const name = `replay.alice.${ZONE}.`
  const upd = addTxt(name, 'once')
  assert.equal((await udp(upd))[3]! & 0xf, 0)
  assert.equal(await txtCount(name), 1)
  assert.equal((await srv.nsupdate(alice, [`update delete ${name} TXT`])).code, 0)
  assert.equal(await txtCount(name), 0)
  await udp(upd).catch(() => undefined)
  assert.equal(await txtCount(name), 0, 'the replay added the record again')
})

test('a message signed 10 hours ago with fudge 65535 is refused (BADTIME): the server’s fudge bounds the window', async () => {
  const name = `old.alice.${ZONE}.`
  const res = await udp(addTxt(name, 'stale', { timeSigned: Math.floor(Date.now() / 1000) - 36_000, fudge: 65_535 }))
  assert.equal(res[3]! & 0xf, 9, 'NOTAUTH')
  assert.equal(await txtCount(name), 0)
})
