// Helpers for the tunnel's lab scenarios and `autotunnel demo`: agents with a TUN device and the local resolver (the
// agent points its lab host's own resolv.conf at it, /etc/netns/NS/resolv.conf, see lab/etc.ts), an OpenSSH server
// on a host's ULA with throwaway keys, iperf3 runs and their interruption, and a capture on a gateway.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TurnSpec, turnConfig } from '../../lab/daemons.js'
import type { Lab, LabProcess } from '../../lab/index.js'
import { type LabAgent, type LabServer, startAgent, waitFor, ZONE } from './agent-helpers.js'

export const DOMAIN = `alice.${ZONE}`
/** In a lab host the resolver can take port 53 of its own loopback, so the host's resolv.conf can name it. */
export const LAB_RESOLVER = '127.0.0.53'

export interface PeerView {
  name: string
  ula: string | null
  endpoint: string | null
  lastHandshake: string | null
  bytesIn: number
  bytesOut: number
  path: string
  watch: { srv: string | null; target: string | null }
}

export interface TunnelAgent extends LabAgent {
  readonly ula: string
  peers(): Promise<PeerView[]>
}

/** `autotunnel up` with the TUN device autotun0, the resolver on 127.0.0.53:53 of the host, and `extra` options. */
export async function startTunnelAgent(
  lab: Lab,
  srv: LabServer,
  host: string,
  extra: readonly string[] = [],
  reuseState?: string,
  wrap: readonly string[] = [],
): Promise<TunnelAgent> {
  const a = await startAgent(
    lab,
    srv,
    host,
    [
      '--tun',
      'autotun0',
      '--resolver',
      `${LAB_RESOLVER}:53`,
      '--log-level',
      'info',
      // Single sign-on writes /etc: only where a test gives the host its own /etc (test/lab/sso.test.ts).
      ...(extra.includes('--sso-user') ? [] : ['--no-sso']),
      ...extra,
    ],
    false,
    reuseState,
    wrap,
  )
  const s = await a.status()
  return {
    ...a,
    ula: s.identity.ula,
    peers: async () => ((await a.status()) as unknown as { peers: PeerView[] }).peers,
  }
}

/** Waits until `a` knows `peer` with a ULA and an endpoint; returns that peer row. */
export async function waitPeer(a: TunnelAgent, peer: string, ula: string, timeoutMs = 20_000): Promise<PeerView> {
  return waitFor(
    `${a.host} to learn ${peer} from DNS`,
    async () => (await a.peers()).find((p) => p.name === peer && p.ula === ula && p.endpoint),
    timeoutMs,
    100,
  )
}

export interface Sshd {
  readonly proc: LabProcess
  /** Directory of the throwaway keys and config. */
  readonly dir: string
  /** ssh argv (without the destination and command) with the throwaway client key. */
  readonly ssh: string[]
  stop(): Promise<void>
}

/** OpenSSH's sshd in `host`, listening on `ula` port 22 only, with a throwaway host key and authorized key. */
export async function startSshd(lab: Lab, host: string, ula: string): Promise<Sshd> {
  const dir = await mkdtemp(join(tmpdir(), 'at-sshd-'))
  await mkdir('/run/sshd', { recursive: true })
  for (const f of ['host_key', 'id'])
    await lab.execOk(host, ['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `autotunnel-${f}`, '-f', join(dir, f)])
  await lab.execOk(host, ['cp', join(dir, 'id.pub'), join(dir, 'authorized_keys')])
  const cfg = join(dir, 'sshd_config')
  await writeFile(
    cfg,
    [
      `ListenAddress [${ula}]:22`,
      `HostKey ${join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      `PidFile ${join(dir, 'sshd.pid')}`,
      'ClientAliveInterval 0',
      '',
    ].join('\n'),
  )
  const proc = lab.spawn(host, ['/usr/sbin/sshd', '-D', '-e', '-f', cfg], { logName: `sshd-${host}` })
  await lab.waitListening(host, 22, { proto: 'tcp', timeoutMs: 5000 })
  const ssh = [
    'ssh',
    '-i',
    join(dir, 'id'),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=10',
    '-o',
    'LogLevel=ERROR',
  ]
  return {
    proc,
    dir,
    ssh,
    stop: async () => {
      proc.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** Round-trip times (ms) of `ping -6 -c N` from `host` to `ula`, and the loss. */
export async function ping(lab: Lab, host: string, ula: string, n = 5): Promise<{ rtts: number[]; code: number }> {
  const r = await lab.exec(host, ['ping', '-6', '-n', '-c', String(n), '-i', '0.2', '-W', '2', ula], {
    timeoutMs: 20_000,
  })
  const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]))
  return { rtts, code: r.code }
}

export interface IperfInterval {
  start: number
  end: number
  bytes: number
}

/** Parses iperf3 -J output: intervals (sum), total bytes, receiver bits/s. */
export function parseIperf(json: string): {
  intervals: IperfInterval[]
  sentBps: number
  receivedBps: number
  error?: string
} {
  const j = JSON.parse(json) as {
    intervals?: { sum: { start: number; end: number; bytes: number } }[]
    end?: { sum_sent?: { bits_per_second: number }; sum_received?: { bits_per_second: number } }
    error?: string
  }
  return {
    intervals: (j.intervals ?? []).map((i) => ({ start: i.sum.start, end: i.sum.end, bytes: i.sum.bytes })),
    sentBps: j.end?.sum_sent?.bits_per_second ?? 0,
    receivedBps: j.end?.sum_received?.bits_per_second ?? 0,
    ...(j.error ? { error: j.error } : {}),
  }
}

/**
 * The longest stall of a transfer, in seconds: the longest run of consecutive intervals that carried no bytes
 * (iperf3 counts bytes handed to the kernel; a stalled TCP window shows as zero-byte intervals).
 */
export function longestStall(intervals: readonly IperfInterval[]): { seconds: number; from: number } {
  let best = { seconds: 0, from: 0 }
  let runStart: number | undefined
  for (const i of intervals) {
    if (i.bytes === 0) {
      runStart ??= i.start
      const len = i.end - runStart
      if (len > best.seconds) best = { seconds: len, from: runStart }
    } else runStart = undefined
  }
  return best
}

/** Answered echoes and the longest run of lost ones in `ping` output (by icmp_seq). */
export function longestLoss(out: string): { answered: number; gap: number } {
  const seqs = [...out.matchAll(/icmp_seq=(\d+)/g)].map((m) => Number(m[1]))
  let gap = 0
  for (let i = 1; i < seqs.length; i++) gap = Math.max(gap, (seqs[i] ?? 0) - (seqs[i - 1] ?? 0) - 1)
  return { answered: seqs.length, gap }
}

export interface RoamRun {
  /** iperf3 -R run by the roaming host (so its intervals count what reached it): exit and parsed JSON. */
  readonly iperf: { readonly code: number; readonly stderr: string }
  readonly roam: ReturnType<typeof parseIperf>
  /** Seconds from the start of the transfer to the move, less 0.2 s (an interval ending after it may hold the stall). */
  readonly moveStartSec: number
  /** Seconds from the start to the end of the lab's move operation. */
  readonly movedBySec: number
  /** The longest zero-byte run of intervals from the move on. */
  readonly stall: { seconds: number; from: number }
  /** `ping -i 0.01` from the fixed host to the roaming one across the move. */
  readonly ping: { answered: number; gap: number }
}

/**
 * Moves `roamer` to `site` while an iperf3 TCP transfer (20 Mbit/s, `fixed` sending) and a 10 ms ping stream (from
 * `fixed`) cross the tunnel; the move comes `moveAfterMs` after both started. The caller asserts on the result.
 */
export async function roamDuringTransfer(
  lab: Lab,
  o: {
    fixed: string
    fixedUla: string
    roamer: string
    roamerUla: string
    site: string
    seconds: number
    pings: number
    moveAfterMs: number
  },
): Promise<RoamRun> {
  await startIperfServer(lab, o.fixed, o.fixedUla)
  const iperf = lab.exec(
    o.roamer,
    ['iperf3', '-6', '-c', o.fixedUla, '-R', '-t', String(o.seconds), '-i', '0.1', '-J', '-b', '20M'],
    { timeoutMs: 40_000 },
  )
  const echo = lab.exec(o.fixed, ['ping', '-6', '-n', '-i', '0.01', '-c', String(o.pings), '-W', '1', o.roamerUla], {
    timeoutMs: 30_000,
  })
  const started = performance.now()
  await new Promise((r) => setTimeout(r, o.moveAfterMs))
  const moveStartSec = (performance.now() - started) / 1000 - 0.2
  await lab.move(o.roamer, o.site)
  const movedBySec = (performance.now() - started) / 1000
  const r = await iperf
  const roam = parseIperf(r.stdout)
  return {
    iperf: r,
    roam,
    moveStartSec,
    movedBySec,
    stall: longestStall(roam.intervals.filter((i) => i.end > moveStartSec)),
    ping: longestLoss((await echo).stdout),
  }
}

/** Starts `iperf3 -s` bound to `ula` in `host` (one test, then exits). */
export async function startIperfServer(lab: Lab, host: string, ula: string): Promise<LabProcess> {
  const p = lab.spawn(host, ['iperf3', '-s', '-1', '-B', ula], { logName: `iperf3-s-${host}` })
  await lab.waitListening(host, 5201, { proto: 'tcp', timeoutMs: 5000 })
  return p
}

export async function waitPing(lab: Lab, host: string, ula: string, timeoutMs = 15_000): Promise<void> {
  await waitFor(
    `ping -6 ${ula} from ${host}`,
    async () => (await lab.exec(host, ['ping', '-6', '-n', '-c', '1', '-W', '1', ula])).code === 0,
    timeoutMs,
    100,
  )
}

/** alice's long-term TURN password in the relay scenarios (coturn's `user=` line and `--relay-password-file`). */
export const RELAY_PASSWORD = 'relay-secret'

/**
 * A coturn for the relay scenarios on the lab host `turn` (docs/relay.md): alice with RELAY_PASSWORD unless the
 * spec says otherwise, its config and database in DIR/SUB; resolves once it listens. The caller stops it.
 */
export async function startLabCoturn(
  lab: Lab,
  dir: string,
  sub: string,
  spec: Partial<TurnSpec> & { listen: string },
): Promise<LabProcess> {
  const at = join(dir, sub)
  await mkdir(at, { recursive: true })
  const full: TurnSpec = { user: 'alice', password: RELAY_PASSWORD, realm: ZONE, ...spec }
  await writeFile(join(at, 'turnserver.conf'), turnConfig(at, full))
  const p = lab.spawn('turn', ['turnserver', '-c', join(at, 'turnserver.conf')], { logName: `coturn-${sub}` })
  try {
    await lab.waitListening('turn', full.port ?? 3478, { proto: 'udp' })
  } catch (e) {
    p.stop()
    throw e
  }
  return p
}

/** Writes RELAY_PASSWORD to DIR/turn-password (0600) and returns the `up` options that use it. */
export async function relayArgs(dir: string): Promise<string[]> {
  const pwFile = join(dir, 'turn-password')
  await writeFile(pwFile, `${RELAY_PASSWORD}\n`, { mode: 0o600 })
  return ['--relay-user', 'alice', '--relay-password-file', pwFile]
}
