// The TUN device with and without offloads, against the real kernel (Linux 6.18 here): opened with IFF_VNET_HDR and
// TUNSETOFFLOAD by default; when the kernel refuses the offloads (asked for a flag it does not know, EINVAL, as an
// older kernel refuses USO) or when they are turned off, the device is opened exactly as before. Either way a
// written packet reaches the kernel and its answer is read back as a plain packet. Each case runs in a fresh
// network namespace (the child is test/interop/tun-offload-child.ts), removed afterwards. Needs root.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const isRoot = process.getuid?.() === 0
const child = fileURLToPath(new URL('./tun-offload-child.js', import.meta.url))

interface ChildReport {
  offload: { vnetHdr: boolean; flags: number; refused?: string }
  replies: string[]
  vnetDrops: number
}

function runChild(mode: string): ChildReport {
  const ns = `tof-${randomBytes(3).toString('hex')}`
  execFileSync('ip', ['netns', 'add', ns])
  try {
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    // The case decides, not an AUTOTUNNEL_TUN_OFFLOAD the suite may run under.
    const { AUTOTUNNEL_TUN_OFFLOAD: _, ...env } = process.env
    const out = execFileSync('ip', ['netns', 'exec', ns, process.execPath, child, mode], {
      encoding: 'utf8',
      timeout: 20_000,
      env,
    })
    return JSON.parse(out.trim().split('\n').at(-1)!) as ChildReport
  } finally {
    execFileSync('ip', ['netns', 'del', ns])
  }
}

function checkReply(r: ChildReport): void {
  assert.equal(r.replies.length, 1, 'one echo reply read back')
  const p = Buffer.from(r.replies[0]!, 'hex')
  assert.equal(p[0]! >> 4, 6, 'a plain IPv6 packet (no virtio header in front)')
  assert.equal(p.readUInt16BE(4) + 40, p.length)
  assert.ok(p.includes(Buffer.from('autotunnel offload framing check')))
  assert.equal(r.vnetDrops, 0)
}

test('TUN offloads on by default: virtio header, CSUM/TSO4/TSO6/USO4/USO6 accepted; packets framed right both ways', {
  skip: !isRoot && 'needs root',
}, () => {
  const r = runChild('on')
  assert.equal(r.offload.vnetHdr, true)
  assert.equal(r.offload.flags, 0x01 | 0x02 | 0x04 | 0x20 | 0x40)
  checkReply(r)
})

test('TUN offloads refused by the kernel: the device is opened again exactly as before, and works', {
  skip: !isRoot && 'needs root',
}, () => {
  const r = runChild('refused')
  assert.deepEqual(r.offload, { vnetHdr: false, flags: 0, refused: 'TUNSETOFFLOAD errno 22' })
  checkReply(r)
})

test('TUN offloads turned off: no virtio header, as before', { skip: !isRoot && 'needs root' }, () => {
  const r = runChild('off')
  assert.deepEqual(r.offload, { vnetHdr: false, flags: 0, refused: 'off' })
  checkReply(r)
})
