// bench/dns-codec: messages decoded and encoded per second by src/dns/wire for a typical query (EDNS), a typical
// TSIG-signed UPDATE (with an update-lease option) and a 20-record answer; plus TSIG sign and verify rates.
// Each figure is operations per CPU-second, the median of BENCH_ROUNDS (default 5) runs of BENCH_MS (default 400) ms
// after a warm-up.
import { encodeUpdateLease } from '../src/dns/lease.js'
import { signMessage, type TsigKey, verifyMessage } from '../src/dns/tsig.js'
import { Opcode } from '../src/dns/wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, encodeMessageInto, type Message } from '../src/dns/wire/message.js'
import { RRClass, RRType } from '../src/dns/wire/rr-table.js'

const MS = Number(process.env.BENCH_MS ?? 400)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const Z = 'members.example.'

/** Operations per CPU-second of this process (user + system), so other load on the host skews it less. */
function rate(fn: () => void): number {
  const runs: number[] = []
  for (let i = 0; i < 20_000; i++) fn()
  for (let r = 0; r < ROUNDS; r++) {
    let n = 0
    const cpu0 = process.cpuUsage()
    const wallEnd = Date.now() + MS
    while (Date.now() < wallEnd) {
      for (let i = 0; i < 256; i++) fn()
      n += 256
    }
    const cpu = process.cpuUsage(cpu0)
    runs.push(n / ((cpu.user + cpu.system) / 1e6))
  }
  runs.sort((a, b) => a - b)
  return runs[runs.length >> 1]!
}

const query = emptyMessage({
  id: 0x1234,
  rd: true,
  questions: [{ name: `host42.${Z}`, type: RRType.AAAA, class: RRClass.IN }],
  edns: { udpSize: 1232, version: 0, do: false, options: [] },
})

const key: TsigKey = { name: `alice.${Z}`, algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 7) }
const update = emptyMessage({
  id: 0x4321,
  opcode: Opcode.UPDATE,
  questions: [{ name: Z, type: RRType.SOA, class: RRClass.IN }],
  authorities: [
    { name: `alice.${Z}`, type: RRType.AAAA, class: RRClass.ANY, ttl: 0, data: null },
    { name: `alice.${Z}`, type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: 'fdaa:1:2:3::1' } },
    { name: `alice.${Z}`, type: RRType.A, class: RRClass.IN, ttl: 60, data: { address: '203.0.113.7' } },
    {
      name: `_autotunnel._udp.alice.${Z}`,
      type: RRType.SRV,
      class: RRClass.IN,
      ttl: 60,
      data: { priority: 0, weight: 0, port: 4500, target: `alice.${Z}` },
    },
    {
      name: `alice.${Z}`,
      type: RRType.TXT,
      class: RRClass.IN,
      ttl: 60,
      data: { strings: [Buffer.from('ula=fdaa:1:2:3::1')] },
    },
  ],
  edns: { udpSize: 1232, version: 0, do: false, options: [encodeUpdateLease({ leaseSec: 3600, keyLeaseSec: 86400 })] },
})
const signed = signMessage(update, key)
const signedMsg = decodeMessage(signed.wire)

const answer20: Message = emptyMessage({
  id: 7,
  qr: true,
  aa: true,
  questions: [{ name: `host42.${Z}`, type: RRType.AAAA, class: RRClass.IN }],
  answers: Array.from({ length: 20 }, (_, i) => ({
    name: `host42.${Z}`,
    type: RRType.AAAA,
    class: RRClass.IN,
    ttl: 60,
    data: { address: `fdaa:1:2:3::${(i + 1).toString(16)}` },
  })),
  edns: { udpSize: 1232, version: 0, do: false, options: [] },
})

const out = Buffer.allocUnsafe(65535)
const cases: [string, Message, Buffer][] = [
  ['typical query (EDNS)', query, encodeMessage(query)],
  ['signed UPDATE (5 RRs, lease, TSIG)', signedMsg, signed.wire],
  ['20-record AAAA answer', answer20, encodeMessage(answer20)],
]

console.log(`dns-codec: operations per CPU-second, median of ${ROUNDS} x ${MS} ms, node ${process.version}`)
console.log('message                               bytes    decode/s    encode/s  encodeInto/s')
for (const [label, msg, wire] of cases) {
  const d = rate(() => decodeMessage(wire))
  const e = rate(() => encodeMessage(msg))
  const ei = rate(() => encodeMessageInto(msg, out, 0))
  console.log(
    `${label.padEnd(36)} ${String(wire.length).padStart(6)} ${Math.round(d).toLocaleString('en').padStart(11)} ${Math.round(e).toLocaleString('en').padStart(11)} ${Math.round(ei).toLocaleString('en').padStart(13)}`,
  )
}
const unsigned = encodeMessage({ ...update })
const now = Math.floor(Date.now() / 1000)
const sign = rate(() => signMessage(unsigned, key, { timeSigned: now }))
const verify = rate(() => verifyMessage(signed.wire, () => key, { now, msg: signedMsg }))
const decodeVerify = rate(() => verifyMessage(signed.wire, () => key, { now }))
console.log(
  `TSIG hmac-sha256 sign/s ${Math.round(sign).toLocaleString('en')}, verify/s (pre-decoded) ${Math.round(verify).toLocaleString('en')}, decode+verify/s ${Math.round(decodeVerify).toLocaleString('en')}`,
)
