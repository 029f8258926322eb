// Issue 13 finding 3, at the command line against the real server in the lab: a configuration error makes
// `autotunnel up` exit non-zero with a message that names the cause and the fix (a wrong key, a --domain that is not
// the key's), so a service manager shows it instead of an agent retrying forever; a TLS certificate that is not
// trusted is not fatal (it may be fixed on the server) but `status` says so instead of "server not found yet".
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Lab } from '../../lab/index.js'
import { agentArgv, type LabServer, MAIN, SERVER_ADDR, startServer, waitFor } from './agent-helpers.js'

const topology = {
  internet: [{ name: 'server', address: SERVER_ADDR }],
  sites: [{ name: 'home', nat: 'eim' as const, wan: '203.0.113.11', lan: '192.168.1.0/24', hosts: ['desktop'] }],
}

describe('configuration errors at `autotunnel up`', { timeout: 120_000 }, () => {
  let lab: Lab
  let srv: LabServer
  let dir: string
  before(async () => {
    lab = await Lab.up({ topology })
    srv = await startServer(lab)
    dir = await mkdtemp(join(tmpdir(), 'at-errors-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
    await srv?.stop()
    await lab?.down()
  })

  const up = async (argv: string[], input?: string) => {
    const t0 = performance.now()
    const r = await lab.exec('desktop', argv, { timeoutMs: 30_000, ...(input ? { input } : {}) })
    return { ...r, ms: performance.now() - t0 }
  }

  it('a wrong key secret: exit non-zero with "wrong key or key secret"', async () => {
    const bad = join(dir, 'bad.key.json')
    await writeFile(
      bad,
      JSON.stringify({ ...srv.key, domain: 'alice.members.example', secret: randomBytes(32).toString('base64') }),
    )
    const state = await mkdtemp(join(dir, 'st-'))
    const argv = agentArgv(srv, 'desktop', state, ['--no-portmap', '--log-level', 'warn']).map((a) =>
      a === srv.keyFile ? bad : a,
    )
    const r = await up(argv)
    assert.notEqual(r.code, 0, `exit code (${r.ms.toFixed(0)} ms)`)
    assert.equal(r.code, 1, r.stderr.slice(-2000))
    assert.match(r.stderr, /^autotunnel: wrong key or key secret: .*alice\.members\.example\. \(NOTAUTH\/BADSIG\)/m)
  })

  it('a wrong password (--password-stdin): exit non-zero with "wrong key or key secret"', async () => {
    const state = await mkdtemp(join(dir, 'st-'))
    const argv = agentArgv(srv, 'desktop', state, ['--no-portmap', '--log-level', 'warn'], true)
    const r = await up(argv, 'not the password\n')
    assert.equal(r.code, 1, r.stderr.slice(-2000))
    assert.match(r.stderr, /^autotunnel: wrong key or key secret: .*bob\.members\.example\./m)
  })

  it("--domain that is not the key file's: exit non-zero before anything is sent, naming both", async () => {
    const state = await mkdtemp(join(dir, 'st-'))
    const argv = agentArgv(srv, 'desktop', state, ['--no-portmap']).map((a) =>
      a === 'alice.members.example' ? 'alcie.members.example' : a,
    )
    const r = await up(argv)
    assert.equal(r.code, 1, r.stderr.slice(-2000))
    assert.match(
      r.stderr,
      /^autotunnel: --domain alcie\.members\.example does not match the key file's domain alice\.members\.example/m,
    )
  })

  it('no --ca for a self-signed server: keeps retrying, and status says the server was found and TLS failed', async () => {
    const state = await mkdtemp(join(dir, 'st-'))
    const full = agentArgv(srv, 'desktop', state, ['--no-portmap'])
    const i = full.indexOf('--ca')
    const argv = [...full.slice(0, i), ...full.slice(i + 2)].filter(
      (a) => a !== '--domain' && a !== 'alice.members.example',
    )
    const proc = lab.spawn('desktop', argv, { logName: 'agent-no-ca' })
    try {
      const line = await waitFor(
        'status to show the TLS failure',
        async () => {
          const r = await lab.exec('desktop', ['node', MAIN, 'status', '--state', state])
          const l = r.stdout.split('\n').find((x) => x.startsWith('server '))
          return l?.includes('TLS failed') ? l : undefined
        },
        20_000,
        200,
      ).catch(async (e: Error) => {
        throw new Error(`${e.message}\n${(await readFile(proc.log, 'utf8').catch(() => '')).slice(-3000)}`)
      })
      assert.match(line, /^server +tls:198\.51\.100\.10:853 found, TLS failed: certificate not trusted/)
      assert.match(line, /pass --ca DIR\/tls\.crt .* or --tls-fingerprint/)
      assert.equal((await lab.exec('desktop', ['kill', '-0', String(proc.pid)])).code, 0, 'still running')
    } finally {
      proc.stop()
      await waitFor(
        'the agent to exit',
        async () => (await lab.exec('desktop', ['kill', '-0', String(proc.pid)])).code !== 0,
        5000,
      )
    }
  })
})
