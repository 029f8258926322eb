import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { MemoryLogger } from '../io/log.js'
import {
  ipReader,
  isRfc1918,
  linksFromInterfaces,
  type NetEventSource,
  NetMonitor,
  type NetState,
  parseNetState,
  procReader,
  routesFromProc,
} from './netmon.js'

failOnLeakedResources()

// Captured from `ip -j addr show` and `ip -j -4 route show default` in a lab host namespace (iproute2 6.1).
const ADDR = JSON.stringify([
  {
    ifindex: 1,
    ifname: 'lo',
    flags: ['LOOPBACK', 'UP', 'LOWER_UP'],
    link_type: 'loopback',
    address: '00:00:00:00:00:00',
    addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }],
  },
  {
    ifindex: 2,
    ifname: 'autotun0',
    flags: ['POINTOPOINT', 'UP'],
    link_type: 'none',
    addr_info: [{ family: 'inet6', local: 'fd12::1', prefixlen: 128, scope: 'global' }],
  },
  {
    ifindex: 7,
    ifname: 'eth0',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    link_type: 'ether',
    address: '02:11:22:33:44:55',
    addr_info: [
      { family: 'inet', local: '10.0.1.10', prefixlen: 24, scope: 'global' },
      { family: 'inet6', local: 'fe80::11:22ff:fe33:4455', prefixlen: 64, scope: 'link' },
    ],
  },
])
const ROUTE = JSON.stringify([{ dst: 'default', gateway: '10.0.1.1', dev: 'eth0', flags: [] }])

test('parseNetState finds the primary interface from the default route and skips loopback and the TUN', () => {
  const s = parseNetState(ADDR, ROUTE, ['autotun0'])
  assert.deepEqual(s.primary, { ifname: 'eth0', mac: '02:11:22:33:44:55', ipv4: '10.0.1.10', gateway: '10.0.1.1' })
  assert.deepEqual(s.addrs, [{ ifname: 'eth0', family: 'inet', address: '10.0.1.10', prefixLen: 24 }])
})

test('parseNetState without a default route falls back to the first interface with an IPv4 address', () => {
  const s = parseNetState(ADDR, '[]', ['autotun0'])
  assert.equal(s.primary?.ifname, 'eth0')
  assert.equal(s.primary?.gateway, undefined)
  assert.deepEqual(parseNetState('[]', '[]'), { primary: undefined, addrs: [] })
})

// /proc/net/route of a lab host: a default route via 10.0.1.1 (flags UP|GATEWAY), a dev-only default route on a
// point-to-point link with a higher metric, the LAN route, and a default route that is not up.
const PROC_ROUTE = `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0
ppp0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0
eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t00000000\t0102000A\t0002\t0\t0\t0\t00000000\t0\t0\t0
`

test('routesFromProc reads the default routes of /proc/net/route as ip -j route show default does', () => {
  assert.deepEqual(routesFromProc(PROC_ROUTE), [
    { dst: 'default', dev: 'eth0', metric: 0, gateway: '10.0.1.1' },
    { dst: 'default', dev: 'ppp0', metric: 50 },
  ])
  assert.deepEqual(routesFromProc(''), [])
  assert.deepEqual(routesFromProc('Iface\tDestination\ngarbage line\n'), [])
})

test('linksFromInterfaces + routesFromProc give the same NetState as the ip -j capture', () => {
  const ifs = {
    lo: [
      {
        address: '127.0.0.1',
        netmask: '255.0.0.0',
        family: 'IPv4',
        mac: '00:00:00:00:00:00',
        internal: true,
        cidr: '127.0.0.1/8',
      },
    ],
    autotun0: [
      {
        address: 'fd12::1',
        netmask: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
        family: 'IPv6',
        mac: '00:00:00:00:00:00',
        internal: false,
        cidr: 'fd12::1/128',
        scopeid: 0,
      },
    ],
    eth0: [
      {
        address: '10.0.1.10',
        netmask: '255.255.255.0',
        family: 'IPv4',
        mac: '02:11:22:33:44:55',
        internal: false,
        cidr: '10.0.1.10/24',
      },
      {
        address: 'fe80::11:22ff:fe33:4455',
        netmask: 'ffff:ffff:ffff:ffff::',
        family: 'IPv6',
        mac: '02:11:22:33:44:55',
        internal: false,
        cidr: 'fe80::11:22ff:fe33:4455/64',
        scopeid: 7,
      },
    ],
  } as const
  const links = linksFromInterfaces(ifs as unknown as Parameters<typeof linksFromInterfaces>[0])
  const fromProc = parseNetState(JSON.stringify(links), JSON.stringify(routesFromProc(PROC_ROUTE)), ['autotun0'])
  assert.deepEqual(fromProc, parseNetState(ADDR, ROUTE, ['autotun0']))
})

test('procReader agrees with ipReader on this machine (interfaces with a carrier)', async (t) => {
  let running: string[]
  try {
    const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as {
      ifname: string
      flags: string[]
    }[]
    running = links.filter((l) => l.flags.includes('LOWER_UP')).map((l) => l.ifname)
  } catch {
    t.skip('no iproute2 here')
    return
  }
  // getifaddrs as libuv filters it lists only interfaces that are up and running; ip -j also lists one that is up
  // without a carrier. Compare on the running ones.
  const all = (await ipReader()()).addrs.map((a) => a.ifname)
  const notRunning = [...new Set(all)].filter((n) => !running.includes(n))
  const [viaIp, viaProc] = await Promise.all([ipReader(notRunning)(), procReader(notRunning)()])
  assert.deepEqual(viaProc, viaIp)
})

test('isRfc1918', () => {
  const cases: [string, boolean][] = [
    ['10.0.0.1', true],
    ['10.255.255.255', true],
    ['172.16.0.1', true],
    ['172.31.255.1', true],
    ['172.32.0.1', false],
    ['192.168.7.7', true],
    ['192.169.0.1', false],
    ['203.0.113.5', false],
    ['100.64.0.1', false],
    ['not-an-ip', false],
    ['1.2.3', false],
  ]
  for (const [a, want] of cases) assert.equal(isRfc1918(a), want, a)
})

class FakeEvents implements NetEventSource {
  fire: () => void = () => {}
  running = false
  start(onEvent: () => void): void {
    this.fire = onEvent
    this.running = true
  }
  stop(): void {
    this.running = false
  }
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
}

test('NetMonitor debounces a burst of events into one snapshot and reports only real changes', async () => {
  const clock = new FakeClock()
  const events = new FakeEvents()
  let current: NetState = parseNetState(ADDR, ROUTE)
  let reads = 0
  const mon = new NetMonitor(
    {
      clock,
      log: new MemoryLogger(),
      events,
      read: async () => {
        reads++
        return current
      },
    },
    { debounceMs: 50, pollMs: 10_000 },
  )
  const seen: NetState[] = []
  mon.onChange((s) => seen.push(s))
  await mon.start()
  assert.equal(reads, 1)
  assert.equal(seen.length, 0)

  for (let i = 0; i < 10; i++) events.fire()
  clock.advance(49)
  await flush()
  assert.equal(reads, 1)
  clock.advance(1)
  await flush()
  assert.equal(reads, 2)
  assert.equal(seen.length, 0, 'same state: no change reported')

  current = parseNetState(ADDR.replaceAll('10.0.1.10', '10.0.2.20'), ROUTE.replace('10.0.1.1', '10.0.2.1'))
  events.fire()
  clock.advance(50)
  await flush()
  assert.equal(seen.length, 1)
  assert.equal(seen[0]?.primary?.ipv4, '10.0.2.20')
  assert.equal(mon.changes, 1)

  current = parseNetState(ADDR, ROUTE)
  clock.advance(10_000)
  await flush()
  assert.equal(seen.length, 2, 'the periodic snapshot catches a change the monitor missed')
  mon.stop()
  assert.equal(events.running, false)
  assert.equal(clock.pending, 0)
})

test('an agent killed with SIGKILL leaves no ip monitor behind', async () => {
  const script = `
    import { IpMonitor } from ${JSON.stringify(new URL('./netmon.js', import.meta.url).href)}
    import { SystemClock } from ${JSON.stringify(new URL('../io/clock.js', import.meta.url).href)}
    const log = { info() {}, warn() {}, debug() {}, error() {}, child() { return log } }
    new IpMonitor({ clock: new SystemClock(), log }).start(() => {})
    setInterval(() => {}, 1000)
  `
  const agent = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' })
  const children = (pid: number): number[] => {
    try {
      return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .map(Number)
    } catch {
      return []
    }
  }
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  }
  try {
    let monitor: number | undefined
    for (let i = 0; i < 100 && monitor === undefined; i++) {
      await new Promise((r) => setTimeout(r, 50))
      for (const sh of children(agent.pid!)) {
        for (const c of [sh, ...children(sh)]) {
          if (readFileSync(`/proc/${c}/cmdline`, 'utf8').startsWith('ip\0-o\0monitor')) monitor = c
        }
      }
    }
    assert.ok(monitor, 'the ip monitor started')
    await new Promise((r) => setTimeout(r, 300))
    assert.ok(alive(monitor), 'the monitor keeps running while the agent lives')
    agent.kill('SIGKILL')
    for (let i = 0; i < 40 && alive(monitor); i++) await new Promise((r) => setTimeout(r, 50))
    assert.ok(!alive(monitor), 'the monitor ended with the agent')
  } finally {
    agent.kill('SIGKILL')
  }
})

test('ipReader reads this machine with iproute2', async () => {
  const s = await ipReader()()
  assert.ok(Array.isArray(s.addrs))
  for (const a of s.addrs) assert.notEqual(a.ifname, 'lo')
})
