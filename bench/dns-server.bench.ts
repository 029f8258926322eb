// bench/dns-server: query throughput (dnsperf, UDP) of `autotunnel server` against BIND named and Knot knotd
// serving the same zone on loopback in the same run, then TSIG-signed updates per second carrying an update
// lease (dnsperf -u -E 2:...) against ours and BIND. Servers alternate round by round (the 2-core host is
// noisy); medians, server CPU and ratios are printed. Setup follows /work/shared/peers/BASELINES.md 1-2.
// Env: BENCH_SECONDS (per run, default 5), BENCH_ROUNDS (default 3).
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SystemClock } from '../src/io/clock.js'
import { toZoneRR } from '../src/server/rdata.js'
import { Store } from '../src/server/store.js'

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const BIN = join(REPO, 'bin', 'autotunnel')
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const ZONE = 'members.example'
const LEASE_OPT = '2:00000e10' // RFC 9664 LEASE = 3600 s

function sh(cmd: string, args: string[], timeoutMs = 120_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? 1 : 0, out: `${stdout}${stderr}` }),
    )
  })
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ')
  return Number(rest[11]) + Number(rest[12])
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

async function waitUp(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await sh('dig', ['@127.0.0.1', '-p', String(port), '+short', '+time=1', '+tries=1', `${ZONE}.`, 'SOA'])
    if (r.code === 0 && r.out.trim() !== '') return
    await new Promise((res) => setTimeout(res, 100))
  }
  throw new Error(`no server on port ${port}`)
}

interface Server {
  readonly name: string
  readonly port: number
  readonly proc: ChildProcess
}

function zoneFile(): string {
  const lines = [
    `$ORIGIN ${ZONE}.`,
    '$TTL 300',
    `@ IN SOA ns1.${ZONE}. hostmaster.${ZONE}. 1 3600 900 604800 300`,
    `@ IN NS ns1.${ZONE}.`,
    'ns1 IN A 192.0.2.53',
    'ns1 IN AAAA 2001:db8::53',
  ]
  for (let i = 1; i <= 50; i++) {
    const h = `host${String(i).padStart(2, '0')}.www`
    lines.push(`${h} IN A 192.0.2.${i}`, `${h} IN AAAA 2001:db8::${i.toString(16)}`)
  }
  return `${lines.join('\n')}\n`
}

function queryFile(): string {
  const q: string[] = []
  for (let i = 1; i <= 50; i++)
    q.push(`host${String(i).padStart(2, '0')}.www.${ZONE} A`, `host${String(i).padStart(2, '0')}.www.${ZONE} AAAA`)
  for (let i = 1; i <= 20; i++) q.push(`nx${String(i).padStart(2, '0')}.www.${ZONE} A`)
  // Deterministic shuffle (83 % NOERROR, 17 % NXDOMAIN, as in BASELINES.md 1).
  let seed = 42
  for (let i = q.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    const j = seed % (i + 1)
    ;[q[i], q[j]] = [q[j]!, q[i]!]
  }
  return `${q.join('\n')}\n`
}

function updateFile(tag: string, n: number): string {
  const out: string[] = []
  for (let i = 0; i < n; i++)
    out.push(ZONE, `add ${tag}u${i}.alice 300 A 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 'send')
  return `${out.join('\n')}\n`
}

async function dnsperf(args: string[], pid: number): Promise<{ rate: number; cpu: number; codes: string }> {
  const t0 = cpuTicks(pid)
  const r = await sh('dnsperf', ['-s', '127.0.0.1', '-l', String(SECONDS), ...args], (SECONDS + 30) * 1000)
  const t1 = cpuTicks(pid)
  const m = /(Queries|Updates) per second:\s+([\d.]+)/.exec(r.out)
  if (!m) throw new Error(`dnsperf failed: ${r.out}`)
  const codes = /Response codes:\s+(.*)/.exec(r.out)?.[1] ?? ''
  return { rate: Number(m[2]), cpu: (t1 - t0) / 100 / SECONDS, codes }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-dns-server-'))
  const procs: ChildProcess[] = []
  const stopAll = (): void => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM')
  }
  process.on('exit', stopAll)
  try {
    const secret = randomBytes(32).toString('base64')
    const zone = zoneFile()
    writeFileSync(join(dir, 'queries.txt'), queryFile())
    const base = 20000 + Math.floor(Math.random() * 20000)
    const ports = { ours: base, bind: base + 1, knot: base + 2, oursU: base + 3, bindU: base + 4 }

    // BIND: a static instance for queries, a dynamic one (allow-update with the key) for updates.
    const bindConf = (sub: string, port: number, dynamic: boolean): string => {
      const d = join(dir, sub)
      mkdirSync(d, { recursive: true })
      writeFileSync(join(d, `${ZONE}.zone`), zone)
      writeFileSync(
        join(d, 'named.conf'),
        `key "upd-key" { algorithm hmac-sha256; secret "${secret}"; };
options { directory "${d}"; pid-file "${d}/named.pid"; session-keyfile "${d}/session.key";
  managed-keys-directory "${d}"; listen-on port ${port} { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no; };
controls { };
zone "${ZONE}" { type primary; file "${d}/${ZONE}.zone"; ${dynamic ? 'allow-update { key "upd-key"; };' : ''} };
`,
      )
      return join(d, 'named.conf')
    }
    const knotDir = join(dir, 'knot')
    mkdirSync(knotDir, { recursive: true })
    writeFileSync(join(knotDir, `${ZONE}.zone`), zone)
    writeFileSync(
      join(knotDir, 'knot.conf'),
      `server:\n    rundir: "${knotDir}"\n    listen: 127.0.0.1@${ports.knot}\nlog:\n  - target: stderr\n    any: warning\ndatabase:\n    storage: "${knotDir}"\ntemplate:\n  - id: default\n    storage: "${knotDir}"\nzone:\n  - domain: ${ZONE}\n    file: "${ZONE}.zone"\n`,
    )

    // Ours: the same 100 address records stored before start. They sit under www, a label no account can have,
    // so they are public (a label that could be a user name is private to that user: docs/security.md); not
    // under '_x' labels, which BIND's check-names refuses for address records.
    const ourDir = (sub: string): string => {
      const d = join(dir, sub)
      const s = new Store({ clock: new SystemClock() }, { dir: d, zone: `${ZONE}.` })
      s.write((tx) => {
        for (let i = 1; i <= 50; i++) {
          const n = `host${String(i).padStart(2, '0')}.www.${ZONE}.`
          tx.add(toZoneRR({ name: n, type: 1, class: 1, ttl: 300, data: { address: `192.0.2.${i}` } }), null)
          tx.add(
            toZoneRR({ name: n, type: 28, class: 1, ttl: 300, data: { address: `2001:db8::${i.toString(16)}` } }),
            null,
          )
        }
        tx.bumpSerial()
      })
      s.close()
      return d
    }
    const start = (name: string, cmd: string, args: string[], port: number): Server => {
      const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
      proc.stderr!.resume()
      procs.push(proc)
      return { name, port, proc }
    }
    const oursQ = ourDir('ours-q')
    const oursU = ourDir('ours-u')
    const acct = await sh(BIN, ['account', 'add', 'alice', '--data', oursU, '--zone', ZONE, '--json'])
    const alice = JSON.parse(acct.out.trim().split('\n').at(-1)!) as { keyName: string; secret: string }
    const serverArgs = (d: string, port: number): string[] => [
      BIN,
      'server',
      '--zone',
      ZONE,
      '--data',
      d,
      '--listen',
      `127.0.0.1:${port}`,
      '--log-level',
      'warn',
      // 200,000 updates per round add as many records under alice: lift the per-account quota (default 1000).
      '--max-records',
      '100000000',
    ]
    const qServers = [
      start('autotunnel', process.execPath, serverArgs(oursQ, ports.ours), ports.ours),
      start('bind', 'named', ['-g', '-c', bindConf('bind-q', ports.bind, false)], ports.bind),
      start('knot', 'knotd', ['-c', join(knotDir, 'knot.conf')], ports.knot),
    ]
    for (const s of qServers) await waitUp(s.port)

    const qps = new Map<string, { rate: number[]; cpu: number[] }>()
    console.log(
      `dns-server bench: ${ROUNDS} rounds x ${SECONDS} s, dnsperf -c 8 -q 200 (UDP), zone of 100 address records`,
    )
    for (let r = 1; r <= ROUNDS; r++)
      for (const s of qServers) {
        const res = await dnsperf(
          ['-p', String(s.port), '-d', join(dir, 'queries.txt'), '-c', '8', '-q', '200', '-t', '1'],
          s.proc.pid!,
        )
        const e = qps.get(s.name) ?? { rate: [], cpu: [] }
        e.rate.push(res.rate)
        e.cpu.push(res.cpu)
        qps.set(s.name, e)
        console.log(
          `  queries round=${r} ${s.name} qps=${res.rate.toFixed(0)} server_cpu_cores=${res.cpu.toFixed(2)} [${res.codes}]`,
        )
      }
    for (const s of qServers) s.proc.kill('SIGTERM')

    const uServers = [
      start('autotunnel', process.execPath, serverArgs(oursU, ports.oursU), ports.oursU),
      start('bind', 'named', ['-g', '-c', bindConf('bind-u', ports.bindU, true)], ports.bindU),
    ]
    for (const s of uServers) await waitUp(s.port)
    const keys: Record<string, string> = {
      autotunnel: `hmac-sha256:${alice.keyName}:${alice.secret}`,
      bind: `hmac-sha256:upd-key:${secret}`,
    }
    const ups = new Map<string, Map<string, { rate: number[]; cpu: number[] }>>()
    const loads = [
      { label: 'c4q20', args: ['-c', '4', '-q', '20'] },
      { label: 'c10q100', args: ['-c', '10', '-q', '100'] },
    ]
    for (let r = 1; r <= ROUNDS; r++)
      for (const load of loads)
        for (const s of uServers) {
          const f = join(dir, `updates-${s.name}-${load.label}-${r}.txt`)
          writeFileSync(f, updateFile(`r${r}${load.label}`, 200_000))
          const res = await dnsperf(
            ['-u', '-p', String(s.port), '-d', f, ...load.args, '-t', '2', '-y', keys[s.name]!, '-E', LEASE_OPT],
            s.proc.pid!,
          )
          const byLoad = ups.get(load.label) ?? new Map()
          const e = byLoad.get(s.name) ?? { rate: [], cpu: [] }
          e.rate.push(res.rate)
          e.cpu.push(res.cpu)
          byLoad.set(s.name, e)
          ups.set(load.label, byLoad)
          console.log(
            `  updates ${load.label} round=${r} ${s.name} ups=${res.rate.toFixed(0)} server_cpu_cores=${res.cpu.toFixed(2)} [${res.codes}]`,
          )
          rmSync(f)
        }
    for (const s of uServers) s.proc.kill('SIGTERM')

    const q = (n: string) => qps.get(n)!
    const ours = median(q('autotunnel').rate)
    console.log('\nmedians')
    for (const [n, e] of qps)
      console.log(
        `  queries/s ${n.padEnd(10)} ${median(e.rate).toFixed(0).padStart(7)}  server CPU ${median(e.cpu).toFixed(2)} cores  queries per server CPU-second ${(median(e.rate) / Math.max(0.01, median(e.cpu))).toFixed(0)}`,
      )
    console.log(
      `  ratio queries autotunnel/bind ${(ours / median(q('bind').rate)).toFixed(2)}  autotunnel/knot ${(ours / median(q('knot').rate)).toFixed(2)}`,
    )
    for (const [label, byLoad] of ups) {
      const o = median(byLoad.get('autotunnel')!.rate)
      const b = median(byLoad.get('bind')!.rate)
      console.log(
        `  updates/s (${label}, TSIG hmac-sha256 + lease) autotunnel ${o.toFixed(0)} (CPU ${median(byLoad.get('autotunnel')!.cpu).toFixed(2)})  bind ${b.toFixed(0)} (CPU ${median(byLoad.get('bind')!.cpu).toFixed(2)})  ratio ${(o / b).toFixed(2)}`,
      )
    }
  } finally {
    stopAll()
    await new Promise((r) => setTimeout(r, 500))
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
