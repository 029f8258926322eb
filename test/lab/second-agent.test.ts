// Issue 13 finding 4: a second `autotunnel up` must not damage the running agent. Started on the same --state (with
// the default port, which it cannot bind, and with another --port, whose control socket it used to delete) it is
// refused before it touches anything: identity.json keeps its bytes and the control socket keeps answering. A second
// agent on the same machine (here: the same lab host, one network namespace) with another state directory is refused
// unless --allow-second-agent; agents on other lab hosts (other namespaces: other machines) are not; and a start
// right after a stop waits for the stopping agent instead of failing.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Lab } from '../../lab/index.js'
import {
  agentArgv,
  agentLog,
  type LabAgent,
  type LabServer,
  SERVER_ADDR,
  startAgent,
  startServer,
  waitFor,
} from './agent-helpers.js'

const topology = {
  internet: [{ name: 'server', address: SERVER_ADDR }],
  sites: [{ name: 'home', nat: 'eim' as const, wan: '203.0.113.11', lan: '192.168.1.0/24', hosts: ['desktop', 'pc'] }],
}

describe('a second autotunnel up', { timeout: 120_000 }, () => {
  let lab: Lab
  let srv: LabServer
  let first: LabAgent
  const cleanup: (() => Promise<void>)[] = []

  before(async () => {
    lab = await Lab.up({ topology })
    srv = await startServer(lab)
    first = await startAgent(lab, srv, 'desktop', ['--no-portmap'])
    cleanup.push(() => first.stop())
    await waitFor(
      'the first agent to publish',
      async () => (await first.status()).published.state === 'published',
      20_000,
    )
  })
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {})
    await srv?.stop()
    await lab?.down()
  })

  /** Runs `up` in `host`; it must exit (refused) within the timeout. */
  const upOnce = (host: string, state: string, extra: string[]) =>
    lab.exec(host, agentArgv(srv, host, state, ['--no-portmap', ...extra]), { timeoutMs: 20_000 })

  for (const extra of [[], ['--port', '4501']]) {
    it(`on the same --state (${extra.length ? extra.join(' ') : 'default port'}) is refused and changes nothing`, async () => {
      const idFile = join(first.state, 'identity.json')
      const before = await readFile(idFile)
      const sock = await stat(join(first.state, 'agent.sock'))
      const before_status = await first.status()
      const r = await upOnce('desktop', first.state, extra)
      assert.notEqual(r.code, 0, `refused: ${r.stdout}${r.stderr}`)
      assert.match(r.stderr, /an agent is already running with --state/)
      assert.deepEqual(await readFile(idFile), before, 'identity.json unchanged')
      assert.equal((await stat(join(first.state, 'agent.sock'))).ino, sock.ino, 'the same control socket')
      const s = await first.status()
      assert.equal(s.identity.ula, before_status.identity.ula)
      assert.equal(s.published.state, 'published')
    })
  }

  it('with another state directory on the same machine is refused unless --allow-second-agent', async () => {
    const state = await mkdtemp(join(tmpdir(), 'at-agent-second-'))
    cleanup.push(() => rm(state, { recursive: true, force: true }))
    const r = await upOnce('desktop', state, ['--port', '4502', '--hostname', 'other'])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /another agent is already running on this machine \(pid \d+, --state /)
    assert.match(r.stderr, /--allow-second-agent/)
    await assert.rejects(stat(join(state, 'identity.json')), 'the refused start wrote no identity')
    assert.equal((await first.status()).published.state, 'published')

    const second = await startAgent(
      lab,
      srv,
      'desktop',
      ['--no-portmap', '--port', '4503', '--allow-second-agent', '--no-resolver', '--system-resolver', 'off'],
      false,
    )
    cleanup.push(() => second.stop())
    assert.notEqual((await second.status()).identity.ula, (await first.status()).identity.ula)
  })

  it('on another lab host (another machine) is not refused', async () => {
    const pc = await startAgent(lab, srv, 'pc', ['--no-portmap'])
    cleanup.push(() => pc.stop())
    await waitFor('the pc agent to publish', async () => (await pc.status()).published.state === 'published', 20_000)
  })

  it('right after SIGTERM of the running agent waits for it to stop, then starts', async () => {
    const old = (await first.status()).identity.ula
    await lab.execOk('desktop', ['kill', '-TERM', String(first.proc.pid)])
    const next = await startAgent(lab, srv, 'desktop', ['--no-portmap'], false, first.state)
    cleanup.push(() => next.stop())
    await waitFor(
      'the restarted agent',
      async () => {
        const s = await next.status()
        return s.identity.ula !== old && s.published.state === 'published'
      },
      30_000,
    ).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${(await agentLog(next)).slice(-4000)}`)
    })
  })
})
