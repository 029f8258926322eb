// bench/tunnel: iperf3 TCP throughput and 64-byte UDP packets per second between two network namespaces joined
// by one veth, through (1) our tunnel (`autotunnel tunnel run`, manual keys), (2) strongSwan charon with
// kernel-libipsec (userspace ESP-in-UDP; recipe in /work/shared/peers/RECIPES.md section 2), (3) wireguard-go,
// and (4) the raw veth (IPv6), all in the same run, alternating A/B per round; prints medians and ratios.
// Setup as in BASELINES.md section 3. Needs root. Everything it starts is stopped and removed at the end.
//
// Our tunnel runs in each of its thread modes at once (one daemon pair per mode, own TUN devices, ports and ULAs):
// `ours` is the mode `autotunnel up` ships (--tunnel-threads off: one thread, with the TUN offloads and UDP GRO),
// `ours-on` the send thread + TUN I/O thread (--tunnel-threads on, the default before the offloads), `ours-send` the
// TUN read on the send thread (--tunnel-threads send).
// Also ping round-trip times through each path, before the load.
// Environment: BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_ALG (aes128gcm16 | chacha20poly1305),
// BENCH_PROFILE=DIR (run our daemons under node --cpu-prof, profiles written to DIR),
// BENCH_ONLY=raw6,ours,ours-on,ours-send,ss,wg (the default), also ours-norb (ours without recvmmsg),
// ours-nooff (ours with the TUN offloads off: AUTOTUNNEL_TUN_OFFLOAD=0), ours-base (the shipped mode of another
// build: BENCH_BASE=DIR, a directory with that build's dist/ and node_modules/, for before/after in one run).

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = fileURLToPath(new URL('../../', import.meta.url))
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ALG = process.env.BENCH_ALG ?? 'aes128gcm16'
const PROFILE = process.env.BENCH_PROFILE
const ONLY = new Set((process.env.BENCH_ONLY ?? 'raw6,ours,ours-on,ours-send,ss,wg').split(','))
const CHARON = '/usr/lib/ipsec/charon'

const prefix = `tb${process.pid.toString(36)}`
const NS_A = `${prefix}-a`
const NS_B = `${prefix}-b`
const dir = mkdtempSync(join(tmpdir(), 'autotunnel-bench-'))
const procs: ChildProcess[] = []

const OUTER_A = '198.51.100.1'
const OUTER_B = '198.51.100.2'
const RAW_A = 'fd00:51::1'
const RAW_B = 'fd00:51::2'
/** Our thread modes: path name, daemon environment, TUN device, UDP port, ULAs (A side, B side). */
const OUR_MODES = [
  { path: 'ours', env: { AUTOTUNNEL_TX_THREAD: '0' }, tun: 'autotun0', port: 4600 },
  { path: 'ours-send', env: { AUTOTUNNEL_TX_THREAD: '1', AUTOTUNNEL_TUN_READ: 'send' }, tun: 'autotun1', port: 4601 },
  { path: 'ours-on', env: { AUTOTUNNEL_TX_THREAD: '1', AUTOTUNNEL_TUN_READ: 'io' }, tun: 'autotun2', port: 4602 },
  // Not in the default set: the shipped mode without receive batching (recvmmsg and GRO), for A/B runs.
  { path: 'ours-norb', env: { AUTOTUNNEL_TX_THREAD: '0', AUTOTUNNEL_RECVMMSG: '0' }, tun: 'autotun3', port: 4603 },
  // The shipped mode without the TUN offloads and UDP GRO (as before them, on one thread).
  {
    path: 'ours-nooff',
    env: { AUTOTUNNEL_TX_THREAD: '0', AUTOTUNNEL_TUN_OFFLOAD: '0', AUTOTUNNEL_UDP_GRO: '0' },
    tun: 'autotun4',
    port: 4604,
  },
  // What shipped before (threads on) from another build (BENCH_BASE), for before/after in one run.
  { path: 'ours-base', env: { AUTOTUNNEL_TX_THREAD: '1', AUTOTUNNEL_TUN_READ: 'io' }, tun: 'autotun5', port: 4605 },
].map((m, i) => ({ ...m, ulaA: `fd51:c:${i}::1`, ulaB: `fd51:d:${i}::1` }))
type OurMode = (typeof OUR_MODES)[number]
const SS_A = 'fd51:a::1'
const SS_B = 'fd51:b::1'
const WG_A = 'fd52::1'
const WG_B = 'fd52::2'

function sh(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  return execFileSync(cmd, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  })
}
function nsx(ns: string, args: string[], env?: NodeJS.ProcessEnv): string {
  return sh('ip', ['netns', 'exec', ns, ...args], env)
}
function start(ns: string, args: string[], log: string, env?: NodeJS.ProcessEnv): ChildProcess {
  const p = spawn('ip', ['netns', 'exec', ns, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  })
  const chunks: Buffer[] = []
  p.stdout!.on('data', (d: Buffer) => chunks.push(d))
  p.stderr!.on('data', (d: Buffer) => chunks.push(d))
  p.on('exit', () => writeFileSync(log, Buffer.concat(chunks)))
  procs.push(p)
  return p
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
async function waitUntil(what: string, ok: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

/** utime + stime of a process in seconds (all threads). */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ')
    return (Number(rest[11]) + Number(rest[12])) / 100
  } catch {
    return 0
  }
}

function topology(): void {
  sh('ip', ['netns', 'add', NS_A])
  sh('ip', ['netns', 'add', NS_B])
  sh('ip', ['link', 'add', `${prefix}a`, 'netns', NS_A, 'type', 'veth', 'peer', 'name', `${prefix}b`, 'netns', NS_B])
  for (const [ns, ifc, v4, v6] of [
    [NS_A, `${prefix}a`, OUTER_A, RAW_A],
    [NS_B, `${prefix}b`, OUTER_B, RAW_B],
  ] as const) {
    sh('ip', ['-n', ns, 'addr', 'add', `${v4}/24`, 'dev', ifc])
    sh('ip', ['-n', ns, 'addr', 'add', `${v6}/64`, 'dev', ifc, 'nodad'])
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    sh('ip', ['-n', ns, 'link', 'set', ifc, 'up'])
  }
  sh('ip', ['-n', NS_A, 'addr', 'add', `${SS_A}/128`, 'dev', 'lo'])
  sh('ip', ['-n', NS_B, 'addr', 'add', `${SS_B}/128`, 'dev', 'lo'])
}

// --- our tunnel -------------------------------------------------------------------------------------------

async function startOurs(m: OurMode): Promise<{ a: ChildProcess; b: ChildProcess }> {
  const keyLen = ALG === 'aes128gcm16' ? 20 : 36
  const kAB = randomBytes(keyLen).toString('hex')
  const kBA = randomBytes(keyLen).toString('hex')
  const cfg = (me: string, peer: string, peerAddr: string, spiIn: number, spiOut: number, kIn: string, kOut: string) =>
    JSON.stringify({
      localUla: me,
      tun: { name: m.tun, mtu: 1400 },
      listen: { address: '0.0.0.0', port: m.port },
      peers: [
        {
          ula: peer,
          endpoint: { address: peerAddr, port: m.port },
          sa: { alg: ALG, esn: true, spiIn, spiOut, keyIn: kIn, keyOut: kOut },
        },
      ],
    })
  writeFileSync(join(dir, `${m.path}-a.json`), cfg(m.ulaA, m.ulaB, OUTER_B, 0xa001, 0xb001, kBA, kAB))
  writeFileSync(join(dir, `${m.path}-b.json`), cfg(m.ulaB, m.ulaA, OUTER_A, 0xb001, 0xa001, kAB, kBA))
  const base = process.env.BENCH_BASE
  if (m.path === 'ours-base' && !base) throw new Error('ours-base needs BENCH_BASE=DIR (a build with dist/)')
  const main = join(m.path === 'ours-base' && base ? base : repo, 'dist', 'src', 'cli', 'main.js')
  const node = (side: string): string[] => [
    process.execPath,
    ...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${join(PROFILE, m.path, side)}`] : []),
    main,
    'tunnel',
    'run',
    '--config',
    join(dir, `${m.path}-${side}.json`),
  ]
  const env = { AUTOTUNNEL_LOG: 'warn', ...m.env }
  const a = start(NS_A, node('a'), join(dir, `${m.path}-a.log`), env)
  const b = start(NS_B, node('b'), join(dir, `${m.path}-b.log`), env)
  const up = (ns: string): boolean => {
    try {
      return nsx(ns, ['ip', '-6', 'addr', 'show', 'dev', m.tun]).includes('fd51')
    } catch {
      return false
    }
  }
  await waitUntil(`our tunnel (${m.path})`, () => up(NS_A) && up(NS_B))
  await waitUntil(`a ping through our tunnel (${m.path})`, () => {
    try {
      nsx(NS_A, ['ping', '-6', '-c', '1', '-W', '1', m.ulaB])
      return true
    } catch {
      return false
    }
  })
  return { a, b }
}

// --- strongSwan (kernel-libipsec) ---------------------------------------------------------------------------

async function startStrongswan(): Promise<{ a: ChildProcess; b: ChildProcess }> {
  const psk = `0x${randomBytes(32).toString('hex')}`
  const mk = (side: 'a' | 'b'): string => {
    const d = join(dir, 'ss', side)
    for (const sub of ['run', 'swanctl/conf.d', 'swanctl/x509', 'swanctl/x509ca', 'swanctl/private'])
      mkdirSync(join(d, sub), { recursive: true })
    writeFileSync(
      join(d, 'strongswan.conf'),
      `charon {
  load_modular = no
  load = random nonce openssl gcm aes chapoly sha1 sha2 hmac kdf curve25519 kernel-libipsec kernel-netlink socket-default vici
  port = 500
  port_nat_t = 4500
  install_routes = yes
  install_virtual_ip = no
  plugins { vici { socket = unix://${d}/charon.vici } }
  filelog { main { path = ${d}/charon.log
      default = 1 } }
  syslog { daemon { default = -1 } }
}
`,
    )
    const [me, peer, ts, rts] = side === 'a' ? [OUTER_A, OUTER_B, SS_A, SS_B] : [OUTER_B, OUTER_A, SS_B, SS_A]
    writeFileSync(
      join(d, 'swanctl', 'swanctl.conf'),
      `connections {
  pb {
    version = 2
    local_addrs = ${me}
    remote_addrs = ${peer}
    proposals = aes128gcm16-prfsha256-x25519
    encap = yes
    local { auth = psk
      id = ${side}.pb.test }
    remote { auth = psk
      id = ${side === 'a' ? 'b' : 'a'}.pb.test }
    children {
      esp { mode = tunnel
        local_ts = ${ts}/128
        remote_ts = ${rts}/128
        esp_proposals = ${ALG}
        start_action = none }
    }
  }
}
secrets { ike-ab { id-a = a.pb.test
    id-b = b.pb.test
    secret = ${psk} } }
`,
    )
    return d
  }
  const da = mk('a')
  const db = mk('b')
  const run = (ns: string, d: string, side: string): ChildProcess =>
    start(
      ns,
      ['sh', '-c', `mount --bind ${d}/run /run && STRONGSWAN_CONF=${d}/strongswan.conf exec ${CHARON}`],
      join(dir, `ss-${side}.log`),
    )
  const a = run(NS_A, da, 'a')
  const b = run(NS_B, db, 'b')
  const swanctl = (ns: string, d: string, args: string[]): string =>
    nsx(ns, ['swanctl', ...args, '--uri', `unix://${d}/charon.vici`], { SWANCTL_DIR: join(d, 'swanctl') })
  const ready = (ns: string, d: string): boolean => {
    try {
      swanctl(ns, d, ['--stats'])
      return true
    } catch {
      return false
    }
  }
  await waitUntil('charon', () => ready(NS_A, da) && ready(NS_B, db))
  swanctl(NS_A, da, ['--load-all'])
  swanctl(NS_B, db, ['--load-all'])
  swanctl(NS_A, da, ['--initiate', '--child', 'esp', '--timeout', '10'])
  nsx(NS_A, ['ping', '-6', '-c', '1', '-W', '2', '-I', SS_A, SS_B])
  return { a, b }
}

// --- wireguard-go -----------------------------------------------------------------------------------------

async function startWireguard(): Promise<{ a: ChildProcess; b: ChildProcess }> {
  const keys = (): { priv: string; pub: string } => {
    const priv = sh('wg', ['genkey']).trim()
    const pub = execFileSync('wg', ['pubkey'], { input: priv, encoding: 'utf8' }).trim()
    return { priv, pub }
  }
  const ka = keys()
  const kb = keys()
  // One name per side: wireguard-go's control socket /var/run/wireguard/NAME.sock is not per namespace.
  const ifA = `${prefix}wa`
  const ifB = `${prefix}wb`
  const a = start(NS_A, ['wireguard-go', '-f', ifA], join(dir, 'wg-a.log'), {
    LOG_LEVEL: 'error',
    WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1',
  })
  const b = start(NS_B, ['wireguard-go', '-f', ifB], join(dir, 'wg-b.log'), {
    LOG_LEVEL: 'error',
    WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1',
  })
  const up = (ns: string, ifc: string): boolean => {
    try {
      nsx(ns, ['ip', 'link', 'show', ifc])
      return true
    } catch {
      return false
    }
  }
  await waitUntil('wireguard-go', () => up(NS_A, ifA) && up(NS_B, ifB))
  for (const [ns, ifc, me, peer, peerAddr, inner, peerInner] of [
    [NS_A, ifA, ka, kb, OUTER_B, WG_A, WG_B],
    [NS_B, ifB, kb, ka, OUTER_A, WG_B, WG_A],
  ] as const) {
    const kf = join(dir, `wg-${ns}.key`)
    writeFileSync(kf, me.priv, { mode: 0o600 })
    nsx(ns, ['wg', 'set', ifc, 'listen-port', '51820', 'private-key', kf, 'peer', peer.pub])
    nsx(ns, ['wg', 'set', ifc, 'peer', peer.pub, 'endpoint', `${peerAddr}:51820`, 'allowed-ips', `${peerInner}/128`])
    nsx(ns, ['ip', '-6', 'addr', 'add', `${inner}/64`, 'dev', ifc, 'nodad'])
    nsx(ns, ['ip', 'link', 'set', ifc, 'mtu', '1420', 'up'])
  }
  nsx(NS_A, ['ping', '-6', '-c', '1', '-W', '2', WG_B])
  return { a, b }
}

// --- measurements -----------------------------------------------------------------------------------------

interface Run {
  path: string
  round: number
  mbps?: number
  retrans?: number
  rxPps?: number
  sentPps?: number
  cpuA: number
  cpuB: number
  /** UDP datagrams the receiving namespace dropped for a full socket buffer (RcvbufErrors) during the run. */
  rcvbufErrB: number
  /** Of those, dropped at the tunnel daemons' outer UDP sockets (ports 4500, 46xx, 51820); the rest at iperf3's. */
  outerDropsB: number
}

/** Drops counted on the outer (ESP-in-UDP) sockets of a namespace: `ss -uanm` skmem d<N>, ports 4500/46xx/51820. */
function outerSocketDrops(ns: string): number {
  let n = 0
  const out = nsx(ns, ['ss', '-uanm'])
  for (const m of out.matchAll(/:(4500|46\d\d|51820)\s[^\n]*\n\s*skmem:\([^)]*\bd(\d+)\)/g)) n += Number(m[2])
  return n
}

/** Udp RcvbufErrors of a namespace (/proc/net/snmp). */
function rcvbufErrors(ns: string): number {
  const lines = nsx(ns, ['cat', '/proc/net/snmp'])
    .split('\n')
    .filter((l) => l.startsWith('Udp:'))
  const names = lines[0]?.split(/\s+/) ?? []
  const vals = lines[1]?.split(/\s+/) ?? []
  return Number(vals[names.indexOf('RcvbufErrors')] ?? 0)
}

function iperf(args: string[]): Record<string, unknown> {
  const out = nsx(NS_A, ['iperf3', '-J', '-t', String(SECONDS), ...args])
  return JSON.parse(out) as Record<string, unknown>
}

function measure(
  path: string,
  round: number,
  target: string,
  bind: string | undefined,
  pids: [number | undefined, number | undefined],
  udp: boolean,
): Run {
  const a0 = cpuSeconds(pids[0])
  const b0 = cpuSeconds(pids[1])
  const e0 = rcvbufErrors(NS_B)
  const o0 = outerSocketDrops(NS_B)
  const extra = bind ? ['-B', bind] : []
  const j = iperf(udp ? ['-u', '-l', '64', '-b', '1G', '-c', target, ...extra] : ['-c', target, ...extra])
  const cpuA = (cpuSeconds(pids[0]) - a0) / SECONDS
  const cpuB = (cpuSeconds(pids[1]) - b0) / SECONDS
  const rcvbufErrB = rcvbufErrors(NS_B) - e0
  const outerDropsB = outerSocketDrops(NS_B) - o0
  const end = j.end as Record<string, Record<string, number>>
  if (udp) {
    const rx = end.sum_received ?? end.sum!
    const tx = end.sum_sent ?? end.sum!
    return {
      path,
      round,
      rxPps: rx.bytes! / 64 / rx.seconds!,
      sentPps: (tx.packets ?? tx.bytes! / 64) / tx.seconds!,
      cpuA,
      cpuB,
      rcvbufErrB,
      outerDropsB,
    }
  }
  return {
    path,
    round,
    mbps: end.sum_received!.bits_per_second! / 1e6,
    retrans: end.sum_sent!.retransmits ?? 0,
    cpuA,
    cpuB,
    rcvbufErrB,
    outerDropsB,
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('tunnel.bench: skipped (needs root for network namespaces)')
    return
  }
  topology()
  const pids: Record<string, [number | undefined, number | undefined]> = { raw6: [undefined, undefined] }
  const targets: Record<string, [string, string | undefined]> = {
    raw6: [RAW_B, undefined],
    ...Object.fromEntries(OUR_MODES.map((m) => [m.path, [m.ulaB, undefined] as [string, string | undefined]])),
    ss: [SS_B, SS_A],
    wg: [WG_B, undefined],
  }
  for (const m of OUR_MODES)
    if (ONLY.has(m.path)) {
      const o = await startOurs(m)
      pids[m.path] = [o.a.pid, o.b.pid]
    }
  if (ONLY.has('ss')) {
    const s = await startStrongswan()
    pids.ss = [s.a.pid, s.b.pid]
  }
  if (ONLY.has('wg')) {
    const w = await startWireguard()
    pids.wg = [w.a.pid, w.b.pid]
  }
  start(NS_B, ['iperf3', '-s'], join(dir, 'iperf3-server.log'))
  await sleep(500)
  const paths = ['raw6', ...OUR_MODES.map((m) => m.path), 'ss', 'wg'].filter((p) => ONLY.has(p))
  // Latency first, on idle tunnels: 200 pings 10 ms apart through each path, then 25 pings 200 ms apart (the
  // threads fall asleep between those: the latency of an interactive session's keystroke).
  const rtt: Record<string, string> = {}
  const rttIdle: Record<string, string> = {}
  for (const [interval, count, into] of [
    ['0.01', '200', rtt],
    ['0.2', '25', rttIdle],
  ] as const)
    for (const p of paths) {
      const [target, bind] = targets[p]!
      const out = nsx(NS_A, ['ping', '-6', '-q', '-c', count, '-i', interval, ...(bind ? ['-I', bind] : []), target])
      const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(out)
      into[p] = m ? `${m[2]} ms avg, ${m[3]} ms max` : 'n/a'
      console.log(`rtt -i ${interval} ${p}: ${into[p]} (${/(\d+)% packet loss/.exec(out)?.[1] ?? '?'}% loss)`)
    }
  const runs: Run[] = []
  for (const udp of [false, true]) {
    for (let r = 1; r <= ROUNDS; r++) {
      for (const p of paths) {
        const [target, bind] = targets[p]!
        const run = measure(p, r, target, bind, pids[p]!, udp)
        runs.push(run)
        console.log(`${udp ? 'udp64' : 'tcp'} ${JSON.stringify(run)}`)
        await sleep(300)
      }
    }
  }
  const tcp = (p: string): number =>
    median(runs.filter((x) => x.path === p && x.mbps !== undefined).map((x) => x.mbps!))
  const pps = (p: string): number =>
    median(runs.filter((x) => x.path === p && x.rxPps !== undefined).map((x) => x.rxPps!))
  const cpu = (p: string, udp: boolean): string => {
    const xs = runs.filter((x) => x.path === p && (x.rxPps !== undefined) === udp)
    return `${median(xs.map((x) => x.cpuA)).toFixed(2)}/${median(xs.map((x) => x.cpuB)).toFixed(2)}`
  }
  console.log(`\nmedians over ${ROUNDS} rounds of ${SECONDS} s, alg ${ALG}, outer IPv4 over one veth`)
  console.log('path       TCP Mbit/s  daemon cores (send/recv)  UDP-64 rx pkt/s  daemon cores')
  for (const p of paths)
    console.log(
      `${p.padEnd(10)} ${tcp(p).toFixed(0).padStart(10)}  ${cpu(p, false).padStart(24)}  ${pps(p).toFixed(0).padStart(15)}  ${cpu(p, true)}`,
    )
  const ratio = (a: string, b: string): void => {
    if (ONLY.has(a) && ONLY.has(b))
      console.log(`ratio ${a}/${b}: TCP ${(tcp(a) / tcp(b)).toFixed(3)}  UDP-64 pkt/s ${(pps(a) / pps(b)).toFixed(3)}`)
  }
  console.log('ours = the mode autotunnel up ships (--tunnel-threads off, with the TUN offloads and UDP GRO)')
  for (const m of OUR_MODES) {
    ratio(m.path, 'ss')
    ratio(m.path, 'wg')
  }
  ratio('ours', 'raw6')
  ratio('ss', 'raw6')
  ratio('wg', 'raw6')
  ratio('wg', 'ss')
  console.log(
    JSON.stringify({
      bench: 'tunnel',
      alg: ALG,
      rounds: ROUNDS,
      seconds: SECONDS,
      rtt,
      rttIdle,
      tcpMbps: Object.fromEntries(paths.map((p) => [p, Math.round(tcp(p))])),
      udp64RxPps: Object.fromEntries(paths.map((p) => [p, Math.round(pps(p))])),
    }),
  )
}

async function cleanup(): Promise<void> {
  for (const p of procs.reverse()) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGTERM')
      await Promise.race([new Promise((r) => p.once('exit', r)), sleep(3000)])
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
    }
  }
  for (const ns of [NS_A, NS_B])
    try {
      sh('ip', ['netns', 'del', ns])
    } catch {}
  if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true })
  else console.log(`logs kept in ${dir}`)
}

process.on('SIGINT', () => {
  void cleanup().then(() => process.exit(130))
})
try {
  await main()
} catch (e) {
  console.error(`tunnel.bench failed: ${(e as Error).message}`)
  process.exitCode = 1
} finally {
  await cleanup()
}
