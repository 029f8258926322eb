// Helpers for the lab scenarios: UDP probes with socat, hole punching with lab/tools/udp-peer, ping statistics.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Lab } from '../../lab/index.js'

export const UDP_PEER = fileURLToPath(new URL('../../lab/tools/udp-peer.js', import.meta.url))
export const SERVER = '198.51.100.10'

/** Starts a one-datagram UDP receiver in `host`; `received()` gives the payload, or null after `timeoutMs`. */
export async function udpReceiver(
  lab: Lab,
  host: string,
  port: number,
  timeoutMs = 3000,
): Promise<{ received: () => Promise<string | null> }> {
  const argv = lab.argv(host, ['socat', '-u', `UDP4-RECVFROM:${port},reuseaddr`, '-'])
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] })
  const got = new Promise<string | null>((resolve) => {
    let text = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      resolve(null)
    }, timeoutMs)
    child.stdout.on('data', (b: Buffer) => {
      text += b.toString()
    })
    child.on('close', () => {
      clearTimeout(timer)
      resolve(text ? text.trim() : null)
    })
  })
  await lab.waitListening(host, port)
  return { received: () => got }
}

export async function udpSend(lab: Lab, host: string, addr: string, port: number, text: string): Promise<void> {
  await lab.execOk(host, ['socat', '-u', '-', `UDP4-SENDTO:${addr}:${port}`], { input: `${text}\n` })
}

/** Starts the UDP reflector (`udp-peer reflect`) on the server. */
export async function startReflector(lab: Lab, port = 3480): Promise<void> {
  lab.spawn('server', ['node', UDP_PEER, 'reflect', String(port)], { logName: `reflector-${port}` })
  await lab.waitListening('server', port)
}

interface Peer {
  endpoint: Promise<string>
  received: string[]
  done: Promise<void>
  setPeer(endpoint: string): void
}

function startPeer(lab: Lab, host: string, lport: number, reflectorPort: number, ms: number): Peer {
  const argv = lab.argv(host, ['node', UDP_PEER, 'punch', String(lport), SERVER, String(reflectorPort), String(ms)])
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] })
  const received: string[] = []
  let gotEndpoint: (e: string) => void = () => {}
  const endpoint = new Promise<string>((r) => {
    gotEndpoint = r
  })
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line.startsWith('endpoint ')) gotEndpoint(line.slice('endpoint '.length))
    else if (line.startsWith('recv ')) received.push(line.slice('recv '.length))
  })
  const done = new Promise<void>((r) => child.on('close', () => r()))
  const killer = setTimeout(() => child.kill('SIGKILL'), ms + 10_000)
  void done.then(() => clearTimeout(killer))
  return { endpoint, received, done, setPeer: (e) => child.stdin.write(`peer ${e}\n`) }
}

/**
 * Hole punching between two hosts: each learns its public endpoint from the reflector on the server, they swap
 * endpoints, then both send for `ms`. Returns each side's public endpoint and what it received from the other.
 */
export async function punch(lab: Lab, a: string, b: string, reflectorPort = 3480, ms = 1500) {
  const pa = startPeer(lab, a, 41000, reflectorPort, ms)
  const pb = startPeer(lab, b, 42000, reflectorPort, ms)
  const [ea, eb] = await Promise.all([pa.endpoint, pb.endpoint])
  pa.setPeer(eb)
  pb.setPeer(ea)
  await Promise.all([pa.done, pb.done])
  return { a: { endpoint: ea, received: pa.received }, b: { endpoint: eb, received: pb.received } }
}

/** Sends `count` pings 2 ms apart; returns how many were lost. */
export async function pingLost(lab: Lab, host: string, target: string, count: number): Promise<number> {
  const r = await lab.exec(host, ['ping', '-q', '-n', '-c', String(count), '-i', '0.002', '-W', '1', target], {
    timeoutMs: 60_000,
  })
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout)
  if (!m) throw new Error(`ping output: ${r.stdout} ${r.stderr}`)
  return Number(m[1]) - Number(m[2])
}
