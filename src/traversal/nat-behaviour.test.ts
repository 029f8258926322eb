import assert from 'node:assert/strict'
import dgram from 'node:dgram'
import { test } from 'node:test'
import { SystemClock } from '../io/clock.js'
import { UdpSocket } from '../io/datagram.js'
import { SystemRandom } from '../io/random.js'
import { ChangeFlag, discoverNatBehaviour } from './nat-behaviour.js'
import { decodeStun, encodeStun, encodeXorAddress, StunAttr, StunType } from './stun.js'

/**
 * An RFC 5780 server on loopback (127.0.0.1 and 127.0.0.2, two ports each) that plays a NAT: the mapped address it
 * reports and whether it answers a CHANGE-REQUEST follow `nat`, so each mapping and filtering behaviour can be shown
 * to the client without a real NAT (the lab test meets real ones: test/lab/everyday.test.ts).
 */
async function fakeServer(nat: {
  mapping: 'eim' | 'adm' | 'apdm'
  filtering: 'eif' | 'adf' | 'apdf'
  otherAddress?: boolean
}) {
  const addrs = ['127.0.0.1', '127.0.0.2']
  // Sockets [ip * 2 + port]: the primary and alternate port are the same numbers on both addresses.
  const socks: dgram.Socket[] = []
  const bind = (a: string, port: number) =>
    new Promise<dgram.Socket>((resolve, reject) => {
      const s = dgram.createSocket('udp4')
      s.once('error', reject)
      s.bind(port, a, () => resolve(s))
    })
  const p0 = await bind(addrs[0] ?? '', 0)
  const p1 = await bind(addrs[0] ?? '', 0)
  socks.push(p0, p1, await bind(addrs[1] ?? '', p0.address().port), await bind(addrs[1] ?? '', p1.address().port))
  const at = (ip: number, port: number) => socks[ip * 2 + port] as dgram.Socket
  for (let ip = 0; ip < 2; ip++)
    for (let port = 0; port < 2; port++) {
      const s = at(ip, port)
      s.on('message', (msg, from) => {
        const m = decodeStun(msg)
        const change = m.attrs.find((x) => x.type === StunAttr.CHANGE_REQUEST)?.value.readUInt32BE(0) ?? 0
        const toIp = change & ChangeFlag.IP ? 1 - ip : ip
        const toPort = change & ChangeFlag.PORT ? 1 - port : port
        // Filtering: an answer from an address (or port) the client never sent to is dropped by the "NAT".
        if (toIp !== ip && nat.filtering !== 'eif') return
        if (toPort !== port && nat.filtering === 'apdf') return
        const mappedPort = nat.mapping === 'eim' ? 40000 : nat.mapping === 'adm' ? 40000 + ip : 40000 + ip * 2 + port
        const attrs: { type: number; value: Buffer }[] = [
          { type: StunAttr.XOR_MAPPED_ADDRESS, value: encodeXorAddress({ address: '203.0.113.5', port: mappedPort }) },
        ]
        if (nat.otherAddress !== false) {
          const other = Buffer.alloc(8)
          other.writeUInt16BE(1, 0)
          other.writeUInt16BE(at(1, 1).address().port, 2)
          Buffer.from([127, 0, 0, 2]).copy(other, 4)
          attrs.push({ type: StunAttr.OTHER_ADDRESS, value: other })
        }
        const out = encodeStun(StunType.BINDING_SUCCESS, m.txid, attrs, { fingerprint: true })
        at(toIp, toPort).send(out, from.port, from.address)
      })
    }
  return {
    primary: { address: '127.0.0.1', port: at(0, 0).address().port },
    second: { address: '127.0.0.2', port: at(1, 0).address().port },
    close: () => Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r())))),
  }
}

const deps = { clock: new SystemClock(), random: new SystemRandom(), socket: () => new UdpSocket() }
const fast = { rtoMs: 50, giveUpMs: 300 }

test('RFC 5780 mapping and filtering tests tell every behaviour apart, with the classic name', async () => {
  const cases = [
    ['eim', 'eif', 'endpoint-independent', 'endpoint-independent', 'full cone'],
    ['eim', 'adf', 'endpoint-independent', 'address-dependent', 'restricted cone'],
    ['eim', 'apdf', 'endpoint-independent', 'address-and-port-dependent', 'port-restricted cone'],
    ['adm', 'apdf', 'address-dependent', 'address-and-port-dependent', 'symmetric'],
    ['apdm', 'apdf', 'address-and-port-dependent', 'address-and-port-dependent', 'symmetric'],
  ] as const
  for (const [mapping, filtering, wantMapping, wantFiltering, type] of cases) {
    const srv = await fakeServer({ mapping, filtering })
    try {
      const r = await discoverNatBehaviour(deps, [srv.primary], fast)
      assert.ok(r, `${mapping}/${filtering}: no answer`)
      assert.equal(r.nat, true, 'the reported address is not ours')
      assert.equal(r.mapping, wantMapping, `${mapping}/${filtering}`)
      assert.equal(r.filtering, wantFiltering, `${mapping}/${filtering}`)
      assert.equal(r.type, type)
      assert.deepEqual(r.notes, [])
    } finally {
      await srv.close()
    }
  }
})

test('without OTHER-ADDRESS: two servers compared, filtering said to be unknown; no server: undefined', async () => {
  const srv = await fakeServer({ mapping: 'apdm', filtering: 'apdf', otherAddress: false })
  try {
    const r = await discoverNatBehaviour(deps, [srv.primary, srv.second], fast)
    assert.equal(r?.mapping, 'address-and-port-dependent')
    assert.equal(r?.filtering, undefined)
    assert.equal(r?.type, 'symmetric')
    assert.ok(r?.notes.some((n) => /no usable OTHER-ADDRESS/.test(n)))
    const one = await discoverNatBehaviour(deps, [srv.primary], fast)
    assert.equal(one?.mapping, undefined)
    assert.equal(one?.type, 'unknown')
  } finally {
    await srv.close()
  }
  const silent = dgram.createSocket('udp4')
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()))
  try {
    assert.equal(
      await discoverNatBehaviour(deps, [{ address: '127.0.0.1', port: silent.address().port }], fast),
      undefined,
    )
  } finally {
    silent.close()
  }
})
