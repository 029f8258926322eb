// Issue 13 finding 1: `autotunnel server --listen 0.0.0.0:53 --tls-listen 0.0.0.0:853` without --advertise used to
// publish `ns A 127.0.0.1`, so agents elsewhere retried tls:127.0.0.1:853 forever, and its self-signed certificate,
// made once, was never remade for other names. Here: a certificate made for 127.0.0.1 only is remade (new
// fingerprint logged at info) when the server restarts on the wildcard address; each answer gives the address the
// query arrived on (UDP through the per-address sockets, TCP through the connection), loopback only to loopback;
// agents started with only --server, --hostname, --key-file and --ca (no --domain) publish over TLS and watch each
// other over DNS Push; and when the advertised server cannot be reached the agent falls back to --server.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Lab, type LabProcess } from '../../lab/index.js'
import { controlRequest, controlSocketPath } from '../../src/agent/control.js'
import { addAccountKeyFile, agentLog, type LabAgent, MAIN, SERVER_ADDR, waitFor, ZONE } from './agent-helpers.js'

const UNREACHABLE = '192.0.2.99'

const topology = {
  internet: [{ name: 'server', address: SERVER_ADDR }],
  sites: [
    { name: 'home', nat: 'eim' as const, wan: '203.0.113.11', lan: '192.168.1.0/24', hosts: ['desktop'] },
    { name: 'cafe', nat: 'eim' as const, wan: '203.0.113.12', lan: '10.20.0.0/24', hosts: ['laptop', 'pc'] },
  ],
}

describe('a server on a wildcard address without --advertise', { timeout: 150_000 }, () => {
  let lab: Lab
  let data: string
  let keyFile: string
  let server: LabProcess | undefined
  const agents: LabAgent[] = []

  const startServerProc = async (listen: string[], extra: string[] = []): Promise<LabProcess> => {
    const p = lab.spawn('server', ['node', MAIN, 'server', '--zone', ZONE, '--data', data, ...listen, ...extra], {
      logName: 'wild-server',
    })
    const [host, port] = listen[1]!.startsWith('0.0.0.0')
      ? [SERVER_ADDR, '853']
      : ['127.0.0.1', listen[3]!.split(':')[1]!]
    const from = listen[1]!.startsWith('0.0.0.0') ? 'desktop' : 'server'
    await waitFor(
      'the server to answer over TLS',
      async () =>
        (
          await lab.exec(from, ['dig', `@${host}`, '-p', port!, '+tls', '+short', '+time=1', '+tries=1', ZONE, 'SOA'])
        ).stdout.startsWith(`ns.${ZONE}.`),
      15_000,
      100,
    ).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${await readFile(p.log, 'utf8').catch(() => '')}`)
    })
    return p
  }
  const stopServer = async (): Promise<void> => {
    if (!server) return
    const pid = String(server.pid)
    server.stop()
    await waitFor('the server to exit', async () => (await lab.exec('server', ['kill', '-0', pid])).code !== 0, 5000)
    server = undefined
  }
  const fingerprint = async (): Promise<string> =>
    (
      await lab.execOk('server', ['openssl', 'x509', '-in', join(data, 'tls.crt'), '-noout', '-fingerprint', '-sha256'])
    ).stdout
      .trim()
      .replace(/^.*=/, '')
  const startAgent = async (host: string): Promise<LabAgent> => {
    const state = await mkdtemp(join(tmpdir(), `at-agent-${host}-`))
    // Only --server, --hostname, --key-file and --ca: no --domain.
    const argv = ['node', MAIN, 'up', '--server', SERVER_ADDR, '--hostname', host, '--key-file', keyFile]
    const proc = lab.spawn(
      host,
      [...argv, '--ca', join(data, 'tls.crt'), '--state', state, '--no-tun', '--no-portmap', '--log-level', 'debug'],
      { logName: `agent-${host}` },
    )
    const status = async () => (await controlRequest(controlSocketPath(state), 'status', {}, 3000)) as never
    const a: LabAgent = {
      host,
      state,
      proc,
      status,
      stop: async () => {
        proc.stop()
        await new Promise((r) => setTimeout(r, 200))
        await rm(state, { recursive: true, force: true })
      },
    }
    agents.push(a)
    return a
  }
  const published = (a: LabAgent) =>
    waitFor(
      `${a.host} to publish`,
      async () => {
        const s = (await a.status()) as { published: { state: string; via: string | null } }
        return s.published.state === 'published' ? s.published.via : undefined
      },
      20_000,
      100,
    ).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${(await agentLog(a)).slice(-4000)}`)
    })

  before(async () => {
    lab = await Lab.up({ topology })
    data = await mkdtemp(join(tmpdir(), 'at-wild-'))
    keyFile = (await addAccountKeyFile(lab, data, 'alice')).keyFile
  })
  after(async () => {
    for (const a of agents) await a.stop().catch(() => {})
    await stopServer().catch(() => {})
    await lab?.down()
    await rm(data, { recursive: true, force: true })
  })

  it('remakes a self-signed certificate that names only 127.0.0.1, logging the new fingerprint', async () => {
    server = await startServerProc(['--listen', '127.0.0.1:5300', '--tls-listen', '127.0.0.1:8853'])
    const first = await fingerprint()
    await stopServer()
    server = await startServerProc(['--listen', '0.0.0.0:53', '--tls-listen', '0.0.0.0:853'])
    const second = await fingerprint()
    assert.notEqual(second, first)
    const log = await readFile(server.log, 'utf8')
    const line = log.split('\n').find((l) => l.includes('"msg":"tls.self_signed_remade"'))
    assert.ok(line, log.slice(-3000))
    const j = JSON.parse(line) as { level: number; sha256: string; previous: string; names: string[] }
    assert.equal(j.level, 30, 'info')
    assert.equal(j.sha256, second)
    assert.equal(j.previous, first)
    assert.ok(j.names.includes(SERVER_ADDR) && j.names.includes('127.0.0.1'), j.names.join(' '))
    assert.match(log, new RegExp(`listening tls 0\\.0\\.0\\.0:853 sha256=${second}`))
  })

  it('answers with the address the query arrived on; loopback only to loopback', async () => {
    const dig = async (from: string, at: string, ...extra: string[]) =>
      (await lab.execOk(from, ['dig', `@${at}`, '+short', '+time=1', '+tries=2', ...extra])).stdout.trim()
    assert.equal(await dig('desktop', SERVER_ADDR, `ns.${ZONE}`, 'A'), SERVER_ADDR)
    assert.equal(await dig('desktop', SERVER_ADDR, '+tcp', `ns.${ZONE}`, 'A'), SERVER_ADDR)
    assert.equal(await dig('server', '127.0.0.1', `ns.${ZONE}`, 'A'), '127.0.0.1')
    assert.equal(await dig('server', '127.0.0.1', '+tcp', `ns.${ZONE}`, 'A'), '127.0.0.1')
    const srv = (
      await lab.execOk('desktop', [
        'dig',
        `@${SERVER_ADDR}`,
        '+noall',
        '+additional',
        '+time=1',
        `_dns-push-tls._tcp.alice.${ZONE}`,
        'SRV',
      ])
    ).stdout
    assert.match(
      srv,
      new RegExp(`ns\\.${ZONE.replace('.', '\\.')}\\.\\s+\\d+\\s+IN\\s+A\\s+${SERVER_ADDR.replaceAll('.', '\\.')}`),
    )
    assert.doesNotMatch(srv, /127\.0\.0\.1/)
  })

  it('agents with only --server, --hostname, --key-file and --ca publish over TLS and watch each other by Push', async () => {
    const desktop = await startAgent('desktop')
    const laptop = await startAgent('laptop')
    assert.equal(await published(desktop), `tls:${SERVER_ADDR}:853`)
    assert.equal(await published(laptop), `tls:${SERVER_ADDR}:853`)
    await waitFor(
      'the laptop to see the desktop over DNS Push',
      async () => {
        const w = ((await laptop.status()) as { watchers: { via: string; records: string[] }[] }).watchers[0]!
        return w.via === 'push' && w.records.some((r) => /\bdesktop\./.test(r))
      },
      15_000,
      100,
    )
  })

  it('an agent whose advertised update server cannot be reached falls back to --server, saying why', async () => {
    await stopServer()
    server = await startServerProc(
      ['--listen', '0.0.0.0:53', '--tls-listen', '0.0.0.0:853'],
      ['--advertise', `ns.${ZONE}:${UNREACHABLE}`],
    )
    const pc = await startAgent('pc')
    assert.equal(await published(pc), `tls:${SERVER_ADDR}:853`)
    const log = await agentLog(pc)
    const line = log.split('\n').find((l) => l.includes('"msg":"update.server_fallback"'))
    assert.ok(line, log.slice(-3000))
    const j = JSON.parse(line) as { advertised: string; fallback: string; why: string }
    assert.equal(j.advertised, `tls:${UNREACHABLE}:853`)
    assert.equal(j.fallback, `tls:${SERVER_ADDR}:853`)
    assert.ok(j.why.length > 0)
  })
})
