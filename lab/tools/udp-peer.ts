// Small UDP tools run inside lab hosts (`node dist/lab/tools/udp-peer.js MODE ...`):
//   reflect PORT                      answer every datagram with the sender's "ip:port" (a minimal STUN)
//   punch LPORT REFLECTOR_IP RPORT MS learn our public endpoint from the reflector and print `endpoint IP:PORT`,
//                                     read `peer IP:PORT` on stdin, then send to the peer every 50 ms for MS ms,
//                                     printing `recv IP:PORT TEXT` per datagram and `done sent=N recv=M` at the end
//   pcp-map SERVER CLIENT_IP PROTO IPORT EPORT LIFETIME
//                                     one RFC 6887 MAP request; prints the answer as JSON
import { randomBytes } from 'node:crypto'
import { createSocket, type RemoteInfo } from 'node:dgram'
import { createInterface } from 'node:readline'

function print(line: string): void {
  process.stdout.write(`${line}\n`)
}

function reflect(port: number): void {
  const s = createSocket('udp4')
  s.on('message', (_m, r) => s.send(`${r.address}:${r.port}`, r.port, r.address))
  s.bind(port, () => print(`ready ${port}`))
}

function punch(lport: number, reflector: string, rport: number, ms: number): void {
  const s = createSocket('udp4')
  let endpoint = ''
  let peer: { address: string; port: number } | null = null
  let sent = 0
  let recv = 0
  s.on('message', (m: Buffer, r: RemoteInfo) => {
    if (r.address === reflector && r.port === rport) {
      if (!endpoint) {
        endpoint = m.toString()
        print(`endpoint ${endpoint}`)
      }
      return
    }
    recv++
    print(`recv ${r.address}:${r.port} ${m.toString()}`)
  })
  s.bind(lport, () => {
    const ask = setInterval(() => {
      if (endpoint) clearInterval(ask)
      else s.send('?', rport, reflector)
    }, 100)
    s.send('?', rport, reflector)
  })
  createInterface({ input: process.stdin }).on('line', (line) => {
    const m = /^peer ([\d.]+):(\d+)$/.exec(line.trim())
    if (!m || peer) return
    peer = { address: m[1]!, port: Number(m[2]) }
    const tick = setInterval(() => {
      sent++
      s.send(`hello ${sent} from ${endpoint}`, peer!.port, peer!.address)
    }, 50)
    setTimeout(() => {
      clearInterval(tick)
      print(`done sent=${sent} recv=${recv}`)
      s.close()
      process.exit(0)
    }, ms)
  })
}

const PCP_VERSION = 2
const PCP_OPCODE_MAP = 1
const PCP_REQUEST_LEN = 60

function v4mapped(ip: string): Buffer {
  const b = Buffer.alloc(16)
  b.writeUInt16BE(0xffff, 10)
  ip.split('.').forEach((p, i) => {
    b[12 + i] = Number(p)
  })
  return b
}

function pcpMap(server: string, clientIp: string, proto: number, iport: number, eport: number, life: number): void {
  const req = Buffer.alloc(PCP_REQUEST_LEN)
  req[0] = PCP_VERSION
  req[1] = PCP_OPCODE_MAP
  req.writeUInt32BE(life, 4)
  v4mapped(clientIp).copy(req, 8)
  const nonce = randomBytes(12)
  nonce.copy(req, 24)
  req[36] = proto
  req.writeUInt16BE(iport, 40)
  req.writeUInt16BE(eport, 42)
  v4mapped('0.0.0.0').copy(req, 44)
  const s = createSocket('udp4')
  const timer = setTimeout(() => {
    print(JSON.stringify({ error: 'timeout' }))
    process.exit(2)
  }, 3000)
  s.on('message', (r: Buffer) => {
    clearTimeout(timer)
    const ext = r.subarray(56, 60)
    print(
      JSON.stringify({
        version: r[0],
        opcode: r[1],
        result: r[3],
        lifetime: r.readUInt32BE(4),
        epoch: r.readUInt32BE(8),
        nonceOk: r.subarray(24, 36).equals(nonce),
        internalPort: r.readUInt16BE(40),
        externalPort: r.readUInt16BE(42),
        externalAddress: [...ext].join('.'),
      }),
    )
    s.close()
  })
  s.bind(0, clientIp, () => s.send(req, 5351, server))
}

const [mode, ...a] = process.argv.slice(2)
if (mode === 'reflect') reflect(Number(a[0]))
else if (mode === 'punch') punch(Number(a[0]), a[1]!, Number(a[2]), Number(a[3]))
else if (mode === 'pcp-map') pcpMap(a[0]!, a[1]!, Number(a[2]), Number(a[3]), Number(a[4]), Number(a[5]))
else {
  process.stderr.write('usage: udp-peer reflect PORT | punch LPORT RIP RPORT MS | pcp-map SRV CIP PROTO IP EP LIFE\n')
  process.exit(2)
}
