// Regenerates test/vectors/offload-linux.json: packets the Linux kernel produced for and from a TUN device with
// IFF_VNET_HDR and offloads, the fixtures of src/tunnel/offload/{segment,coalesce}.test.ts. Needs root.
//   node dist/test/vectors/offload-capture.js
//
// 1. Capture: namespaces S and R, TUN device A in S and B in R (both vnet header + CSUM/TSO4/TSO6/USO4/USO6,
//    MTU 1400), this process relaying every read of one into the other (headers and all). Senders in S: TCP over
//    IPv6 and IPv4 (socat), UDP with UDP_SEGMENT (USO) over both (python3). What A hands us (super-packets with
//    GSO_TCPV6/TCPV4/UDP_L4, and plain packets with NEEDS_CSUM such as the SYN) is recorded.
// 2. The kernel's own segmentation of each recorded read: namespace F forwards from TUN C (offloads) to TUN D
//    (vnet header, no offloads), so the kernel cuts each super-packet in software (GSO) and completes checksums
//    before D; what D hands us are the kernel's segments (hop limit / TTL one lower: forwarded).
// Everything it creates is removed at the end, also on failure.

import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { VNET_HDR_LEN } from '../../src/tunnel/offload/virtio.js'
import { dupFd, LinuxTun, TunReader } from '../../src/tunnel/tun/linux-tun.js'

const OUT = fileURLToPath(new URL('../../../test/vectors/offload-linux.json', import.meta.url))
const tag = randomBytes(3).toString('hex')
const NS_S = `ofs-${tag}`
const NS_R = `ofr-${tag}`
const NS_F = `off-${tag}`
const dir = mkdtempSync(join(tmpdir(), 'offload-capture-'))
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

/** A TUN device opened here and moved into `ns` (the fd keeps working across the move), configured there. */
function tunIn(ns: string, name: string, offload: boolean, addrs: string[], mtu: number): LinuxTun {
  const t = LinuxTun.open({ name, offload })
  if (offload && !t.offload.vnetHdr) throw new Error(`offloads refused: ${t.offload.refused}`)
  sh('ip', ['link', 'set', 'dev', t.name, 'netns', ns])
  sh('ip', ['-n', ns, 'link', 'set', 'dev', t.name, 'mtu', String(mtu), 'up'])
  for (const a of addrs) sh('ip', ['-n', ns, 'addr', 'add', a, 'dev', t.name, ...(a.includes(':') ? ['nodad'] : [])])
  return t
}

/** Reads of a TUN fd (a dup, so the device stays open), as copies. */
function reader(t: LinuxTun, fn: (pkt: Buffer) => void): TunReader {
  return new TunReader(dupFd(t.fd), (b, off, len) => fn(Buffer.from(b.subarray(off, off + len))))
}

interface Captured {
  what: string
  read: Buffer
}

async function capture(): Promise<Captured[]> {
  const a = tunIn(NS_S, `ofa${tag}`, true, ['fd00:5::1/64', '10.99.0.1/24'], 1400)
  const b = tunIn(NS_R, `ofb${tag}`, true, ['fd00:5::2/64', '10.99.0.2/24'], 1400)
  const got: Captured[] = []
  const ra = reader(a, (p) => {
    got.push({ what: '', read: p })
    writeSync(b.fd, p)
  })
  const rb = reader(b, (p) => {
    writeSync(a.fd, p)
  })
  const data = join(dir, 'data')
  writeFileSync(data, randomBytes(400_000))
  const run = (ns: string, args: string[]): Promise<void> =>
    new Promise((resolve, reject) => {
      const p = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'ignore', 'inherit'] })
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${args.join(' ')}: exit ${code}`))))
    })
  for (const [listen, connect] of [
    ['TCP6-LISTEN:5001,reuseaddr', 'TCP6:[fd00:5::2]:5001'],
    ['TCP4-LISTEN:5002,reuseaddr', 'TCP4:10.99.0.2:5002'],
  ] as const) {
    const server = run(NS_R, ['socat', '-u', listen, '/dev/null'])
    await sleep(300)
    await run(NS_S, ['socat', '-u', `FILE:${data}`, connect])
    await server
  }
  // USO: one sendto of 5 segments of 1200 octets and a short one, per family.
  const py = [
    'import socket',
    'for fam, dst in ((socket.AF_INET6, "fd00:5::2"), (socket.AF_INET, "10.99.0.2")):',
    '    s = socket.socket(fam, socket.SOCK_DGRAM)',
    '    s.setsockopt(17, 103, 1200)',
    '    s.sendto(bytes(range(256)) * 24 + b"tail", (dst, 5003))',
  ].join('\n')
  await run(NS_S, ['python3', '-c', py])
  await sleep(300)
  await ra.close()
  await rb.close()
  await a.close()
  await b.close()
  return got
}

/** The kernel's software GSO of each read: through C (offloads), forwarded, out of D (no offloads). */
async function kernelSegments(reads: Buffer[]): Promise<Buffer[][]> {
  sh('ip', ['netns', 'exec', NS_F, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.ip_forward=1'])
  sh('ip', [
    'netns',
    'exec',
    NS_F,
    'sysctl',
    '-qw',
    'net.ipv4.conf.all.rp_filter=0',
    'net.ipv4.conf.default.rp_filter=0',
  ])
  const c = tunIn(NS_F, `ofc${tag}`, true, [], 1500)
  const d = LinuxTun.open({ name: `ofd${tag}`, offload: true })
  if (!d.offload.vnetHdr) throw new Error('vnet header refused')
  // D keeps the virtio header but offers no offload at all: the kernel must segment and checksum before it.
  setOffload(d.fd, 0)
  sh('ip', ['link', 'set', 'dev', d.name, 'netns', NS_F])
  sh('ip', ['-n', NS_F, 'link', 'set', 'dev', d.name, 'mtu', '1500', 'up'])
  sh('ip', ['-n', NS_F, 'route', 'add', '10.99.0.0/24', 'dev', d.name])
  sh('ip', ['-n', NS_F, '-6', 'route', 'add', 'fd00:5::/64', 'dev', d.name])
  let cur: Buffer[] = []
  let want: Buffer = Buffer.alloc(0)
  // Only what was forwarded from the read being cut (the devices' own router solicitations and MLD reports
  // are not).
  const rd = reader(d, (p) => {
    const pkt = p.subarray(VNET_HDR_LEN)
    if (addrs(pkt).equals(want)) cur.push(pkt)
  })
  const out: Buffer[][] = []
  for (const r of reads) {
    cur = []
    want = addrs(r.subarray(VNET_HDR_LEN))
    writeSync(c.fd, r)
    const n = expectedSegments(r)
    const end = Date.now() + 3000
    while (cur.length < n && Date.now() < end) await sleep(5)
    await sleep(20)
    out.push(cur)
  }
  await rd.close()
  await c.close()
  await d.close()
  return out
}

/** Source and destination address of an IP packet. */
function addrs(p: Buffer): Buffer {
  return p[0]! >> 4 === 6 ? p.subarray(8, 40) : p.subarray(12, 20)
}

function expectedSegments(r: Buffer): number {
  const gsoSize = r.readUInt16LE(4)
  if (r[1] === 0) return 1
  const ip = VNET_HDR_LEN
  const l4 = ip + r.readUInt16LE(6)
  const hdr = r[ip + (r[ip]! >> 4 === 6 ? 6 : 9)] === 6 ? (r[l4 + 12]! >> 4) * 4 : 8
  return Math.ceil((r.length - l4 - hdr) / gsoSize)
}

function setOffload(fd: number, flags: number): void {
  const k = loadKoffi()
  const ioctl = k.load('libc.so.6').func('int ioctl(int fd, unsigned long request, ...)')
  if (ioctl(fd, 0x400454d0, 'unsigned long', flags) < 0) throw new Error(`TUNSETOFFLOAD(${flags}) failed`)
}

function loadKoffi(): { load(l: string): { func(s: string): (...a: unknown[]) => number } } {
  return createRequire(import.meta.url)('koffi') as never
}

/** What a read is, for the fixture's names. */
function describe(r: Buffer): string {
  const gso = ['none', 'tcpv4', '?', 'udp', 'tcpv6', 'udp_l4'][r[1]! & 0x7f] ?? '?'
  const ip = VNET_HDR_LEN
  const v = r[ip]! >> 4
  const proto = r[ip + (v === 6 ? 6 : 9)]
  const flags = proto === 6 ? r[ip + (v === 6 ? 40 : (r[ip]! & 15) * 4) + 13]! : 0
  return `ipv${v} ${proto === 6 ? 'tcp' : proto === 17 ? 'udp' : `proto ${proto}`} gso=${gso} flags=0x${r[0]!.toString(16)}${proto === 6 ? ` tcpflags=0x${flags.toString(16)}` : ''} len=${r.length - VNET_HDR_LEN}`
}

/** A small but varied set: every plain packet kind once, a few super-packets of each GSO type. */
function choose(all: Captured[]): Captured[] {
  const seen = new Map<string, number>()
  const out: Captured[] = []
  for (const c of all) {
    const r = c.read
    const gso = r[1]! & 0x7f
    const v = r[VNET_HDR_LEN]! >> 4
    const key = gso === 0 ? `none ${v} ${r[0]} ${describe(r).split(' ')[4]}` : `gso ${gso} ${v}`
    const limit = gso === 0 ? 1 : 3
    const n = seen.get(key) ?? 0
    // Super-packets: up to three of each kind, kept under 24 KiB so the fixture stays small.
    if (n >= limit || (gso !== 0 && r.length > 24_576)) continue
    seen.set(key, n + 1)
    out.push({ what: describe(r), read: r })
  }
  return out
}

async function main(): Promise<void> {
  for (const ns of [NS_S, NS_R, NS_F]) sh('ip', ['netns', 'add', ns])
  const reads = choose(await capture())
  if (!reads.some((r) => r.read[1] === 4) || !reads.some((r) => r.read[1] === 1) || !reads.some((r) => r.read[1] === 5))
    throw new Error(`no TSO6/TSO4/USO super-packet captured: ${reads.map((r) => r.what).join('; ')}`)
  const all = await kernelSegments(reads.map((r) => r.read))
  // Only reads the kernel forwarded in full (not the devices' own multicast, say).
  const keep = reads.map((r, i) => all[i]!.length === expectedSegments(r.read))
  const segs = all.filter((_, i) => keep[i])
  const kept = reads.filter((_, i) => keep[i])
  const fixture = {
    source: 'test/vectors/offload-capture.ts',
    kernel: sh('uname', ['-r']).trim(),
    captured: new Date().toISOString(),
    note: 'read = virtio_net_hdr + packet as read from a TUN device with TUN_F_CSUM|TSO4|TSO6|USO4|USO6; kernelSegments = the kernel software GSO of it, forwarded once (hop limit / TTL one lower)',
    packets: kept.map((r, i) => ({
      what: r.what,
      read: r.read.toString('base64'),
      kernelSegments: segs[i]!.map((s) => s.toString('base64')),
    })),
  }
  for (const [i, p] of fixture.packets.entries()) console.log(`${p.what}: ${p.kernelSegments.length} segments`, i)
  writeFileSync(OUT, `${JSON.stringify(fixture, null, 1)}\n`)
  console.log(`wrote ${OUT}`)
}

try {
  await main()
} finally {
  for (const ns of [NS_S, NS_R, NS_F])
    try {
      sh('ip', ['netns', 'del', ns])
    } catch {}
  rmSync(dir, { recursive: true, force: true })
}
