// bench/esp: seal and open 10^6 ESP packets (1400-octet payload, AES-128-GCM and ChaCha20-Poly1305, native
// backend: reused OpenSSL context) plus smaller runs for 64 octets, AES-256-GCM and the node:crypto backend (one
// cipher object per packet), single thread. Checks that the heap grows by less than 1 MiB after GC over the
// 10^6 packets (STYLE.md section 3). Run with --expose-gc for
// the heap check (scripts/run-bench.sh does not pass it, so this file re-executes itself with it).
// Environment: ESP_BENCH_PACKETS (1000000).

import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { type AeadBackend, nativeAeadAvailable } from '../src/tunnel/aead.js'
import {
  ESP_ALGS,
  ESP_MAX_OVERHEAD,
  ESP_PAYLOAD_OFFSET,
  type EspAlg,
  EspCrypto,
  EspOpened,
  IpProto,
} from '../src/tunnel/esp.js'
import { ReplayWindow } from '../src/tunnel/replay.js'

const N = Number(process.env.ESP_BENCH_PACKETS ?? 1_000_000)
const HEAP_LIMIT = 1 << 20

const g = globalThis as { gc?: () => void }
if (!g.gc) {
  // Re-run with --expose-gc so the heap check is real.
  execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url)], { stdio: 'inherit' })
  process.exit(0)
}
const gc = g.gc

interface Result {
  alg: EspAlg
  backend: AeadBackend
  size: number
  sealPps: number
  openPps: number
  heapGrowthBytes: number
}

/** CPU seconds of this process (rates per CPU-second stay meaningful on a shared, busy machine). */
function cpuS(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

function run(alg: EspAlg, backend: AeadBackend, size: number, n: number): Result {
  const km = randomBytes(ESP_ALGS[alg].keyLen + 4)
  const tx = new EspCrypto(alg, 0x1000, km, true, backend)
  const rx = new EspCrypto(alg, 0x1000, km, true, backend)
  const replay = new ReplayWindow()
  const slab = Buffer.alloc(size + ESP_MAX_OVERHEAD)
  const payload = randomBytes(size)
  const out = new EspOpened()
  const copy = Buffer.alloc(slab.length)
  const sealOne = (i: number): number => {
    payload.copy(slab, ESP_PAYLOAD_OFFSET)
    return tx.sealInPlace(slab, size, i, IpProto.IPV6)
  }
  const openOne = (len: number): void => {
    slab.copy(copy, 0, 0, len)
    const seq = replay.inferEsn(copy.readUInt32BE(4))
    if (!replay.check(seq) || rx.open(copy, 0, len, seq, out) !== 0 || !replay.accept(seq))
      throw new Error('open failed')
  }
  for (let i = 1; i <= 10_000; i++) sealOne(i)
  gc()
  const heap0 = process.memoryUsage().heapUsed
  // Pass 1: seal only. Pass 2: seal, copy, replay check, open. open = pass 2 - pass 1.
  let c0 = cpuS()
  for (let i = 1; i <= n; i++) sealOne(i + 10_000)
  const sealCpu = cpuS() - c0
  c0 = cpuS()
  for (let i = 1; i <= n; i++) openOne(sealOne(i))
  const bothCpu = cpuS() - c0
  if (!out.plain.subarray(0, out.payloadLen).equals(payload)) throw new Error('round trip mismatch')
  gc()
  const heapGrowthBytes = process.memoryUsage().heapUsed - heap0
  return {
    alg,
    backend,
    size,
    sealPps: Math.round(n / sealCpu),
    openPps: Math.round(n / Math.max(bothCpu - sealCpu, 1e-9)),
    heapGrowthBytes,
  }
}

const results: Result[] = []
const backends: AeadBackend[] = nativeAeadAvailable ? ['native', 'node'] : ['node']
if (!nativeAeadAvailable) console.log('esp.bench: native AEAD not built (make build); node:crypto only')
const cases: [EspAlg, number, number][] = [
  ['aes128gcm16', 1400, N],
  ['aes128gcm16', 64, Math.min(N, 200_000)],
  ['aes256gcm16', 1400, Math.min(N, 200_000)],
  ['chacha20poly1305', 1400, N],
  ['chacha20poly1305', 64, Math.min(N, 200_000)],
]
console.log('rates are packets per CPU-second of this process (robust on a shared machine)')
for (const [alg, size, n] of cases)
  for (const backend of backends) {
    const r = run(alg, backend, size, backend === 'node' ? Math.min(n, 200_000) : n)
    results.push(r)
    console.log(
      `${alg.padEnd(17)} ${backend.padEnd(6)} ${String(size).padStart(4)} B  seal ${String(r.sealPps).padStart(8)} pkt/s ` +
        `(${(1e6 / r.sealPps).toFixed(2)} us, ${((r.sealPps * size * 8) / 1e9).toFixed(2)} Gbit/s)  ` +
        `open ${String(r.openPps).padStart(8)} pkt/s (${(1e6 / r.openPps).toFixed(2)} us)  heap +${(r.heapGrowthBytes / 1024).toFixed(0)} KiB`,
    )
  }
for (const alg of ['aes128gcm16', 'chacha20poly1305'] as EspAlg[]) {
  const nat = results.find((r) => r.alg === alg && r.backend === 'native' && r.size === 1400)
  const js = results.find((r) => r.alg === alg && r.backend === 'node' && r.size === 1400)
  if (nat && js)
    console.log(
      `ratio native/node ${alg} 1400 B: seal ${(nat.sealPps / js.sealPps).toFixed(2)}x, open ${(nat.openPps / js.openPps).toFixed(2)}x`,
    )
}
const worst = Math.max(...results.map((r) => r.heapGrowthBytes))
console.log(JSON.stringify({ bench: 'esp', packets: N, results }))
if (worst >= HEAP_LIMIT) {
  console.error(`esp.bench: heap grew by ${worst} bytes over ${N} packets (limit ${HEAP_LIMIT})`)
  process.exitCode = 1
} else console.log(`heap growth after GC: max ${(worst / 1024).toFixed(0)} KiB < 1024 KiB: ok`)
