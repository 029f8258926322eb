// The PortMapper (src/portmap/) against real miniupnpd 2.3.1 gateways in the lab, one protocol at a time:
// site `pcp` (NAT-PMP requests dropped by nft), site `natpmp` (PCP requests dropped), site `upnp` (miniupnpd's
// NAT-PMP/PCP switched off). Each host runs the mapper in a child process (this file, in driver mode) that
// prints its events and the datagrams reaching its port as JSON lines. For each protocol: the mapping is
// obtained with external port = internal port, a datagram from the internet arrives through it, a gateway
// restart (miniupnpd killed, its rules and leases flushed, restarted) is repaired within 5 s, and stop()
// deletes it (the DNAT rule is gone and a new datagram no longer arrives).

import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Lab, type Topology } from '../../lab/index.js'
import { SystemClock } from '../../src/io/clock.js'
import { UdpSocket } from '../../src/io/datagram.js'
import { jsonLogger } from '../../src/io/log.js'
import { SystemRandom } from '../../src/io/random.js'
import { PortMapper, type PortMapState } from '../../src/portmap/mapper.js'
import type { PortmapProtocol } from '../../src/portmap/types.js'

const PORT = 4500
const SERVER = '198.51.100.10'
const SELF = fileURLToPath(import.meta.url)

type DriverLine =
  | { type: 'event'; reason: string; state: PortMapState; atMs: number }
  | { type: 'datagram'; text: string; from: string; atMs: number }
  | { type: 'started' | 'refreshed'; state: PortMapState; atMs: number }
  | { type: 'stopped'; state: PortMapState; atMs: number; announcements: Record<string, number> }

/** Driver mode: runs inside a lab host, the test talks to it over stdin/stdout. */
async function runDriver(): Promise<void> {
  const out = (o: Record<string, unknown>): void => {
    process.stdout.write(`${JSON.stringify({ ...o, atMs: Date.now() })}\n`)
  }
  const udp = new UdpSocket()
  await udp.bind(PORT)
  udp.onMessage((m, from) => out({ type: 'datagram', text: m.toString().trim(), from: from.address }))
  const mapper = new PortMapper(
    {
      clock: new SystemClock(),
      random: new SystemRandom(),
      log: jsonLogger({ level: 'debug', name: 'portmap-driver' }),
    },
    { internalPort: PORT, onChange: (e) => out({ type: 'event', reason: e.reason, state: e.state }) },
  )
  await mapper.start()
  out({ type: 'started', state: mapper.state })
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'refresh') {
      await mapper.refresh()
      out({ type: 'refreshed', state: mapper.state })
    }
    if (line === 'stop') {
      await mapper.stop()
      await udp.close()
      out({ type: 'stopped', state: mapper.state, announcements: Object.fromEntries(mapper.announcements) })
      process.exit(0)
    }
  }
}

class Driver {
  readonly lines: DriverLine[] = []
  stderr = ''
  readonly #child: ChildProcess
  #waiters: (() => void)[] = []

  constructor(lab: Lab, host: string) {
    const env: NodeJS.ProcessEnv = { ...process.env, PORTMAP_LAB_DRIVER: '1' }
    delete env.NODE_TEST_CONTEXT
    const argv = lab.argv(host, [process.execPath, SELF])
    this.#child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env })
    createInterface({ input: this.#child.stdout! }).on('line', (l) => {
      try {
        this.lines.push(JSON.parse(l) as DriverLine)
      } catch {
        this.stderr += `stdout: ${l}\n`
      }
      for (const w of this.#waiters) w()
    })
    this.#child.stderr!.on('data', (b: Buffer) => {
      this.stderr += b.toString()
    })
    if (process.env.PORTMAP_DRIVER_LOG)
      this.#child.stderr!.pipe(createWriteStream(`${process.env.PORTMAP_DRIVER_LOG}-${host}.log`))
  }

  /** The first line from index `since` on that satisfies `pred`. */
  async waitFor<T extends DriverLine>(
    pred: (l: DriverLine) => l is T,
    timeoutMs: number,
    what: string,
    since = 0,
  ): Promise<T> {
    const end = Date.now() + timeoutMs
    for (;;) {
      const hit = this.lines.slice(since).find(pred)
      if (hit) return hit
      const left = end - Date.now()
      if (left <= 0) throw new Error(`driver: no ${what} within ${timeoutMs} ms; lines=${JSON.stringify(this.lines)}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.#waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
      this.#waiters = []
    }
  }

  send(cmd: string): void {
    this.#child.stdin!.write(`${cmd}\n`)
  }

  kill(): void {
    if (this.#child.exitCode === null) this.#child.kill('SIGKILL')
  }
}

const MODES: {
  proto: PortmapProtocol
  site: string
  host: string
  lan: string
  wan: string
  /** Second public address, for the address-change step. */
  wan2: string
  /** What miniupnpd multicasts when it restarts, as the mapper counts it. */
  restartSignal: string
  upnp: Record<string, boolean>
}[] = [
  {
    proto: 'pcp',
    site: 'pcp',
    host: 'h-pcp',
    lan: '192.168.31.0/24',
    wan: '203.0.113.31',
    wan2: '203.0.113.131',
    restartSignal: 'pcp-announce',
    upnp: { natpmp: false, pcp: true, upnp: false },
  },
  {
    proto: 'natpmp',
    site: 'natpmp',
    host: 'h-natpmp',
    lan: '192.168.32.0/24',
    wan: '203.0.113.32',
    wan2: '203.0.113.132',
    restartSignal: 'pcp-announce',
    upnp: { natpmp: true, pcp: false, upnp: false },
  },
  {
    proto: 'upnp',
    site: 'upnp',
    host: 'h-upnp',
    lan: '192.168.33.0/24',
    wan: '203.0.113.33',
    wan2: '203.0.113.133',
    restartSignal: 'ssdp-alive',
    upnp: { natpmp: false, pcp: false, upnp: true },
  },
]

const topology: Topology = {
  internet: [{ name: 'server', address: SERVER }],
  sites: MODES.map((m) => ({ name: m.site, nat: 'upnp', wan: m.wan, lan: m.lan, hosts: [m.host], upnp: m.upnp })),
}

async function sendFromServer(lab: Lab, addr: string, port: number, text: string): Promise<void> {
  await lab.execOk('server', ['socat', '-u', '-', `UDP4-SENDTO:${addr}:${port}`], { input: `${text}\n` })
}

const isEvent =
  (reason: string) =>
  (l: DriverLine): l is Extract<DriverLine, { type: 'event' }> =>
    l.type === 'event' && l.reason === reason
const isDatagram =
  (text: string) =>
  (l: DriverLine): l is Extract<DriverLine, { type: 'datagram' }> =>
    l.type === 'datagram' && l.text === text

if (process.env.PORTMAP_LAB_DRIVER) {
  await runDriver()
} else {
  describe('PortMapper against real miniupnpd, one protocol at a time', {
    skip: process.getuid?.() !== 0 && 'needs root',
  }, () => {
    let lab: Lab | undefined
    const drivers: Driver[] = []
    before(async () => {
      lab = await Lab.up({ topology, name: `pm${process.pid % 100000}` })
    })
    after(async () => {
      for (const d of drivers) d.kill()
      await lab?.down()
    })

    for (const mode of MODES) {
      test(`${mode.proto} only: map, reach, survive a gateway restart within 5 s, delete`, async (t) => {
        const l = lab!
        const d = new Driver(l, mode.host)
        drivers.push(d)
        t.after(() => d.kill())
        const fail = (e: unknown): never => {
          t.diagnostic(`driver stderr (tail): ${d.stderr.slice(-6000)}`)
          throw e
        }
        try {
          const mapped = await d.waitFor(isEvent('mapped'), 20_000, 'mapped event')
          const s = mapped.state
          assert.equal(s.kind, 'mapped')
          if (s.kind !== 'mapped') return
          assert.equal(s.protocol, mode.proto)
          assert.deepEqual(s.external, { address: l.publicIpOf(mode.site), port: PORT })
          t.diagnostic(`${mode.proto}: mapped ${s.external.address}:${s.external.port} lifetime ${s.lifetimeSec} s`)

          await sendFromServer(l, s.external.address, s.external.port, `hello-1-${mode.proto}`)
          await d.waitFor(isDatagram(`hello-1-${mode.proto}`), 3000, 'first datagram')

          // RFC 6887 8.5 allows 2 s of clock disagreement: restart once more than that has passed.
          await new Promise((r) => setTimeout(r, 3000))
          const t0 = Date.now()
          await l.restartGateway(mode.site)
          const up = Date.now()
          const re = await d.waitFor(isEvent('recreated'), 5000 + (up - t0), 'recreated event')
          t.diagnostic(
            `${mode.proto}: restart took ${up - t0} ms; mapping re-created ${re.atMs - up} ms after miniupnpd was back`,
          )
          assert.ok(re.atMs - up <= 5000, `re-created ${re.atMs - up} ms after the restart`)
          const rs = re.state
          assert.ok(rs.kind === 'mapped' && rs.external.port === PORT && rs.protocol === mode.proto)

          await sendFromServer(l, s.external.address, PORT, `hello-2-${mode.proto}`)
          await d.waitFor(isDatagram(`hello-2-${mode.proto}`), 3000, 'datagram after the restart')

          // A new public address (miniupnpd restarted on it, keeping its leases): reported within 2 s.
          const mark = d.lines.length
          const t1 = Date.now()
          await l.setPublicIp(mode.site, mode.wan2)
          const up2 = Date.now()
          const moved = await d.waitFor(
            (x): x is Extract<DriverLine, { type: 'event' }> =>
              x.type === 'event' && x.state.kind === 'mapped' && x.state.external.address === mode.wan2,
            2000 + (up2 - t1),
            'event with the new address',
            mark,
          )
          t.diagnostic(
            `${mode.proto}: new public address reported ${moved.atMs - up2} ms after miniupnpd was back (${moved.reason})`,
          )
          assert.ok(moved.atMs - up2 <= 2000, `new address after ${moved.atMs - up2} ms`)
          await sendFromServer(l, mode.wan2, PORT, `hello-3-${mode.proto}`)
          await d.waitFor(isDatagram(`hello-3-${mode.proto}`), 3000, 'datagram to the new address')

          const rulesBefore = (
            await l.execOk(mode.site, ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd'])
          ).stdout
          assert.match(rulesBefore, new RegExp(`dport ${PORT} dnat ip to ${l.addressOf(mode.host)}:${PORT}`))
          d.send('stop')
          const stopped = await d.waitFor(
            (x): x is Extract<DriverLine, { type: 'stopped' }> => x.type === 'stopped',
            10_000,
            'stopped',
          )
          t.diagnostic(`${mode.proto}: announcements heard ${JSON.stringify(stopped.announcements)}`)
          assert.ok((stopped.announcements[mode.restartSignal] ?? 0) >= 1, `no ${mode.restartSignal} heard`)
          const rulesAfter = (
            await l.execOk(mode.site, ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd'])
          ).stdout
          assert.doesNotMatch(rulesAfter, new RegExp(`dport ${PORT} `))
        } catch (e) {
          fail(e)
        }
      })
    }

    test('a host moving to another site is mapped there within 2 s of refresh()', async (t) => {
      const l = lab!
      const d = new Driver(l, 'h-pcp')
      drivers.push(d)
      t.after(() => d.kill())
      try {
        const first = await d.waitFor(isEvent('mapped'), 20_000, 'mapped event')
        assert.ok(first.state.kind === 'mapped' && first.state.protocol === 'pcp')
        const mark = d.lines.length
        await l.move('h-pcp', 'natpmp')
        const moved = Date.now()
        d.send('refresh')
        const there = l.publicIpOf('natpmp')
        const ev = await d.waitFor(
          (x): x is Extract<DriverLine, { type: 'event' }> =>
            x.type === 'event' && x.state.kind === 'mapped' && x.state.external.address === there,
          2000,
          'mapping at the new site',
          mark,
        )
        t.diagnostic(
          `move: mapped at ${there}:${PORT} by ${ev.state.kind === 'mapped' && ev.state.protocol} ${ev.atMs - moved} ms after refresh()`,
        )
        assert.ok(ev.state.kind === 'mapped' && ev.state.protocol === 'natpmp' && ev.state.external.port === PORT)
        await sendFromServer(l, there, PORT, 'hello-moved')
        await d.waitFor(isDatagram('hello-moved'), 3000, 'datagram at the new site')
        d.send('stop')
        await d.waitFor((x): x is DriverLine => x.type === 'stopped', 10_000, 'stopped')
        const rules = (await l.execOk('natpmp', ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd']))
          .stdout
        assert.doesNotMatch(rules, new RegExp(`dport ${PORT} `))
      } catch (e) {
        t.diagnostic(`driver stderr (tail): ${d.stderr.slice(-6000)}`)
        throw e
      }
    })
  })
}
