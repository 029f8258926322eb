// The lab's own life cycle: the CLI round trip (up with a topology file, ls, exec, down), teardown leaving no
// namespace or process behind (after success, failure and SIGINT), and two runs side by side.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Lab, type LabSummary, type Topology, withLab } from '../../lab/index.js'
import { pidAlive, run } from '../../lab/sh.js'
import { runsRoot } from '../../lab/state.js'

const BIN = fileURLToPath(new URL('../../../bin/autotunnel', import.meta.url))
const LAB_INDEX = fileURLToPath(new URL('../../lab/index.js', import.meta.url))

function namespacesOf(run: string): string[] {
  const all = existsSync('/run/netns') ? readdirSync('/run/netns') : []
  return all.filter((n) => n.startsWith(`atl-${run}-`))
}

function uniqueName(what: string): string {
  return `t${what}${process.pid.toString(36)}${Date.now().toString(36).slice(-3)}`
}

describe('lab: life cycle', () => {
  it('CLI: up --topology FILE --json, ls, exec, down leaves no namespace, process or run directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lab-topo-'))
    const file = join(dir, 'topo.json')
    const topo: Topology = {
      internet: [{ name: 'server', address: '198.51.100.10' }],
      sites: [{ name: 'flat', nat: 'eim', wan: '203.0.113.50', lan: '172.16.9.0/24', hosts: ['pc1', 'pc2'] }],
    }
    writeFileSync(file, JSON.stringify(topo))
    const name = uniqueName('cli')
    try {
      const up = await run([BIN, 'lab', 'up', '--name', name, '--topology', file, '--json'])
      assert.equal(up.code, 0, up.stderr)
      const s = JSON.parse(up.stdout) as LabSummary
      assert.deepEqual(
        s.hosts.map((h) => [h.name, h.site, h.address, h.publicIp]),
        [
          ['server', null, '198.51.100.10', '198.51.100.10'],
          ['pc1', 'flat', '172.16.9.10', '203.0.113.50'],
          ['pc2', 'flat', '172.16.9.11', '203.0.113.50'],
        ],
      )
      const ls = await run([BIN, 'lab', 'ls', '--json'])
      assert.ok((JSON.parse(ls.stdout) as { name: string; live: boolean }[]).some((r) => r.name === name && r.live))
      const ex = await run([BIN, 'lab', 'exec', name, 'pc2', '--', 'ping', '-c1', '-W2', '172.16.9.10'])
      assert.equal(ex.code, 0, ex.stdout + ex.stderr)
      const fail = await run([BIN, 'lab', 'exec', name, 'pc1', '--', 'sh', '-c', 'exit 7'])
      assert.equal(fail.code, 7)
      const pids = Lab.attach(name).state.procs.map((p) => p.pid)
      assert.ok(pids.length > 0)
      const down = await run([BIN, 'lab', 'down', name])
      assert.equal(down.code, 0, down.stderr)
      assert.deepEqual(namespacesOf(name), [])
      assert.deepEqual(
        pids.filter((p) => pidAlive(p)),
        [],
      )
      const ls2 = await run([BIN, 'lab', 'ls', '--json'])
      assert.ok(!(JSON.parse(ls2.stdout) as { name: string }[]).some((r) => r.name === name))
    } finally {
      await run([BIN, 'lab', 'down', name])
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('down() kills spawned and stray processes in the run and removes every namespace', async () => {
    const lab = await Lab.up({ sites: ['hotel'] })
    const p = lab.spawn('hotel-guest', ['sleep', '600'])
    const argv = lab.argv('server', ['sleep', '600'])
    const stray = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' })
    const strayExit = new Promise((r) => stray.on('exit', r))
    await new Promise((r) => setTimeout(r, 100))
    const all = [...lab.state.procs.map((x) => x.pid), p.pid]
    // Each node has its own resolv.conf (lab/etc.ts), seen in the node as /etc/resolv.conf.
    const overlays = Object.values(lab.state.nodes).map((n) => `/etc/netns/${n.ns}`)
    assert.ok(overlays.every((d) => existsSync(`${d}/resolv.conf`)))
    const seen = await lab.execOk('hotel-guest', ['cat', '/etc/resolv.conf'])
    assert.match(seen.stdout, /^nameserver 198\.51\.100\.10$/m)
    await lab.down()
    assert.deepEqual(
      overlays.filter((d) => existsSync(d)),
      [],
      "the nodes' /etc/netns overlays are removed with the run",
    )
    await strayExit
    assert.deepEqual(namespacesOf(lab.name), [])
    assert.deepEqual(
      all.filter((x) => pidAlive(x)),
      [],
    )
    assert.equal(existsSync(lab.dir), false)
  })

  it('withLab tears down when the test body fails and keeps the logs', async () => {
    let name = ''
    let dir = ''
    await assert.rejects(
      withLab(null, { sites: ['home'] }, async (lab) => {
        name = lab.name
        dir = lab.dir
        throw new Error('boom')
      }),
      /boom \(lab logs: /,
    )
    assert.deepEqual(namespacesOf(name), [])
    assert.ok(existsSync(join(dir, 'miniupnpd-home.log')))
    assert.ok(!existsSync(join(dir, 'state.json')))
    rmSync(dir, { recursive: true, force: true })
  })

  it('SIGINT to a process holding a lab tears the lab down', async () => {
    const script = `import { Lab } from ${JSON.stringify(LAB_INDEX)}
const lab = await Lab.up({ sites: ['home'] })
console.log('up ' + lab.name + ' ' + lab.state.procs.map((p) => p.pid).join(','))
setInterval(() => {}, 1000)
`
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const line = await new Promise<string>((resolve) => {
      createInterface({ input: child.stdout }).once('line', resolve)
    })
    const [, name, pids] = line.split(' ')
    assert.ok(namespacesOf(name!).length > 0)
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    child.kill('SIGINT')
    assert.equal(await exited, 130)
    assert.deepEqual(namespacesOf(name!), [])
    const dir = join(runsRoot(), name!)
    assert.ok(existsSync(join(dir, 'state.down.json')), 'logs kept after an interrupted run')
    rmSync(dir, { recursive: true, force: true })
    assert.deepEqual(
      pids!
        .split(',')
        .map(Number)
        .filter((x) => pidAlive(x)),
      [],
    )
  })

  it('two runs side by side do not collide', async () => {
    const [a, b] = await Promise.all([Lab.up({ sites: ['home'] }), Lab.up({ sites: ['home'] })])
    try {
      assert.notEqual(a!.state.tag, b!.state.tag)
      for (const lab of [a!, b!]) {
        const r = await lab.execOk('desktop', ['natpmpc', '-g', lab.gatewayOf('home')])
        assert.match(r.stdout, /Public IP address : 203\.0\.113\.11\b/)
      }
      await a!.down()
      const r = await b!.execOk('desktop', ['ping', '-c1', '-W2', '198.51.100.10'])
      assert.match(r.stdout, /1 received/)
    } finally {
      await a?.down()
      await b?.down()
    }
  })
})
