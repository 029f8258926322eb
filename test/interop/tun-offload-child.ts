// Child of tun-offload.test.ts, run inside a fresh network namespace: opens a TUN device as asked (argv[2]: 'on',
// 'off', or 'refused' = offloads the kernel refuses), writes an ICMPv6 echo request from a peer address to the
// device's own address, and reports (one JSON line) how the device was opened and what came back: the kernel's
// echo reply, read through onPacketView (plain packets, whatever the device's framing).
import { LinuxTun } from '../../src/tunnel/tun/linux-tun.js'

const mode = process.argv[2]
const LOCAL = 'fd00:77::1'
const PEER_BYTES = Buffer.from('fd000077000000000000000000000002', 'hex')
const LOCAL_BYTES = Buffer.from('fd000077000000000000000000000001', 'hex')

function echoRequest(id: number, payload: Buffer): Buffer {
  const p = Buffer.alloc(40 + 8 + payload.length)
  p.writeUInt32BE(0x6000_0000, 0)
  p.writeUInt16BE(8 + payload.length, 4)
  p[6] = 58
  p[7] = 64
  PEER_BYTES.copy(p, 8)
  LOCAL_BYTES.copy(p, 24)
  p[40] = 128
  p.writeUInt16BE(id, 44)
  p.writeUInt16BE(1, 46)
  payload.copy(p, 48)
  // ICMPv6 checksum (RFC 4443 2.3): pseudo-header + message.
  const len = Buffer.alloc(4)
  len.writeUInt32BE(8 + payload.length)
  const all = Buffer.concat([p.subarray(8, 40), len, Buffer.from([0, 0, 0, 58]), p.subarray(40), Buffer.alloc(1)])
  let s = 0
  for (let i = 0; i + 1 < all.length; i += 2) s += all.readUInt16BE(i)
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16)
  p.writeUInt16BE(~s & 0xffff, 42)
  return p
}

const tun = LinuxTun.open({
  name: 'oftest0',
  localUla: LOCAL,
  ...(mode === 'off' ? { offload: false } : {}),
  ...(mode === 'refused' ? { offloadChoices: [0x8000_0000] } : {}),
})
tun.addRoute('fd00:77::2')
const got: string[] = []
const payload = Buffer.from('autotunnel offload framing check')
tun.onPacketView((b, off, len) => {
  const p = b.subarray(off, off + len)
  // Only the echo reply (type 129) to our request; the device's own router solicitations or MLD are not it.
  if (len >= 48 && p[6] === 58 && p[40] === 129) got.push(p.toString('hex'))
})
const req = echoRequest(0x77, payload)
tun.write(req, 0, req.length)
const deadline = Date.now() + 3000
while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
console.log(JSON.stringify({ offload: tun.offload, replies: got, vnetDrops: tun.vnetDrops }))
await tun.close()
