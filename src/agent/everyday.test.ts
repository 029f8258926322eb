import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { test } from 'node:test'
import { encodePublicKeyRecord, parsePublicKeyRecord } from '../ike/hostkey.js'
import type { Agent } from './agent.js'
import type { ControlRequest } from './control.js'
import type { Datapath } from './datapath.js'
import { keyFingerprint, type PingAnswer, registerEverydayCommands } from './everyday.js'
import { formatPing, formatWhois, runPing } from './everyday-client.js'
import { normUla } from './peers.js'

const DOMAIN = 'alice.members.example'
const desktopKey = generateKeyPairSync('ed25519')
const selfKey = generateKeyPairSync('ed25519')

interface FakeIke {
  sa: boolean
  connect: () => Promise<unknown>
  dpd: () => Promise<boolean>
}

/** The agent's and data path's surface everyday.ts uses, with one peer (desktop) and a scriptable IKE engine. */
function setup(ike: FakeIke | undefined) {
  const commands = new Map<string, (req: ControlRequest) => Promise<unknown>>()
  const desktop = {
    host: 'desktop',
    fqdn: `desktop.${DOMAIN}`,
    ula: 'fd00:2::1',
    publicKeys: [encodePublicKeyRecord(desktopKey.publicKey), 'v=at-ike1; k=ed25519; p=garbage'],
  }
  const row = {
    name: 'desktop',
    path: 'punched',
    endpoint: '203.0.113.11:41000',
    dnsEndpoint: '192.168.1.10:4500',
    stun: '203.0.113.11:41000',
    relay: null,
    lastHandshake: '2026-12-07T00:00:00.000Z',
    auth: 'signature',
  }
  const agent = {
    config: { hostname: 'laptop', domain: DOMAIN },
    identity: { ula: 'fd00:1::1' },
    reach: { endpoint: { address: '203.0.113.12', port: 4500 } },
    addCommand: (c: string, fn: (req: ControlRequest) => Promise<unknown>) => commands.set(c, fn),
  }
  const dp = {
    ike: ike && {
      findSa: () => ike.sa,
      connect: async () => {
        await ike.connect()
        ike.sa = true
      },
      dpd: () => ike.dpd(),
    },
    status: () => [row],
    peers: {
      get: (h: string) => (h === 'desktop' ? desktop : undefined),
      lookup: async () => undefined,
      peers: () => [desktop],
      // As PeerManager.byUla: compared in normal form.
      byUla: (u: string) => (normUla(u) === 'fd00:2::1' ? desktop : undefined),
    },
  }
  registerEverydayCommands({
    agent: agent as unknown as Agent,
    dp: dp as unknown as Datapath,
    hostKey: { alg: 'ed25519', ...selfKey } as never,
    parseKey: parsePublicKeyRecord,
  })
  const call = (cmd: string, args: Record<string, unknown>) => {
    const fn = commands.get(cmd)
    if (!fn) throw new Error(`no ${cmd}`)
    return fn({ cmd, ...args })
  }
  return { call }
}

const never = () => new Promise<never>(() => {})

test('ping: sets the tunnel up first, then one liveness check; the path and endpoint of the data path', async () => {
  let checks = 0
  const { call } = setup({ sa: false, connect: async () => {}, dpd: async () => ++checks > 0 })
  const a = (await call('ping', { host: 'desktop' })) as PingAnswer
  assert.equal(a.reply, true)
  if (!a.reply) return
  assert.equal(a.path, 'punched')
  assert.equal(a.endpoint, '203.0.113.11:41000')
  assert.equal(a.ula, 'fd00:2::1')
  assert.notEqual(a.setupMs, null)
  const b = (await call('ping', { host: `desktop.${DOMAIN}.` })) as PingAnswer
  assert.equal(b.reply && b.setupMs, null, 'an SA exists now: no set-up')
  assert.equal(checks, 2)
  assert.match(
    formatPing(a, 1),
    /^pong from desktop \(fd00:2::1\) via punched 203\.0\.113\.11:41000, seq 1, in [\d.]+ ms \(tunnel set up in [\d.]+ ms\)$/,
  )
})

test('ping: no answer within the timeout, a dead peer, a failed set-up: lost, with the reason', async () => {
  const silent = setup({ sa: true, connect: async () => {}, dpd: never })
  const t0 = performance.now()
  const a = (await silent.call('ping', { host: 'desktop', timeoutMs: 200 })) as PingAnswer
  assert.equal(a.reply, false)
  assert.ok(performance.now() - t0 < 2000)
  assert.match(
    formatPing(a, 2),
    /^no reply from desktop \(fd00:2::1\), seq 2: no reply within 200 ms \[path punched\]$/,
  )
  const dead = setup({ sa: true, connect: async () => {}, dpd: async () => false })
  assert.match(
    String(((await dead.call('ping', { host: 'desktop' })) as { reason: string }).reason),
    /stopped answering IKE/,
  )
  const refused = setup({
    sa: false,
    connect: () => Promise.reject(new Error('AUTHENTICATION_FAILED')),
    dpd: async () => true,
  })
  assert.match(
    String(((await refused.call('ping', { host: 'desktop' })) as { reason: string }).reason),
    /set-up failed: AUTHENTICATION_FAILED/,
  )
  const slow = setup({ sa: false, connect: never, dpd: async () => true })
  assert.match(
    String(((await slow.call('ping', { host: 'desktop', timeoutMs: 100 })) as { reason: string }).reason),
    /no answer to IKE within 100 ms/,
  )
})

test('ping refuses: unknown host, this host, another domain, no tunnel, bad timeout', async () => {
  const { call } = setup({ sa: true, connect: async () => {}, dpd: async () => true })
  await assert.rejects(
    call('ping', { host: 'nosuch' }),
    /no host nosuch in alice\.members\.example: .*known hosts: desktop/,
  )
  await assert.rejects(call('ping', { host: 'laptop' }), /laptop is this host/)
  await assert.rejects(call('ping', { host: 'desktop.bob.members.example' }), /is not in alice\.members\.example/)
  await assert.rejects(call('ping', { host: 'desktop', timeoutMs: 0 }), /timeoutMs/)
  await assert.rejects(call('ping', { host: 42 }), /"host" must be a non-empty string/)
  await assert.rejects(setup(undefined).call('ping', { host: 'desktop' }), /without a tunnel/)
})

test('ip: ours without a host, a peer by name or FQDN', async () => {
  const { call } = setup(undefined)
  assert.deepEqual(await call('ip', {}), {
    host: 'laptop',
    fqdn: `laptop.${DOMAIN}`,
    ula: 'fd00:1::1',
    self: true,
    endpoint: '203.0.113.12:4500',
  })
  assert.equal(((await call('ip', { host: 'Desktop' })) as { ula: string }).ula, 'fd00:2::1')
  assert.equal(((await call('ip', { host: 'laptop' })) as { self: boolean }).self, true)
  await assert.rejects(call('ip', { host: 'nosuch' }), /no host nosuch/)
})

test('whois: a peer by ULA (any spelling) or outer address, ourselves, strangers refused', async () => {
  const { call } = setup(undefined)
  const w = (await call('whois', { address: 'fd00:2:0::0001' })) as Parameters<typeof formatWhois>[0]
  assert.equal(w.host, 'desktop')
  assert.equal(w.matched, 'ula')
  assert.deepEqual(w.account, { user: 'alice', domain: DOMAIN })
  assert.deepEqual(
    w.keys,
    [{ alg: 'ed25519', fingerprint: keyFingerprint(desktopKey.publicKey) }],
    'the garbage record is skipped',
  )
  assert.match(w.keys[0]?.fingerprint ?? '', /^SHA256:[A-Za-z0-9+/]{43}$/)
  assert.match(formatWhois(w), /^path {8}punched 203\.0\.113\.11:41000$/m)
  assert.equal(((await call('whois', { address: '192.168.1.10' })) as { matched: string }).matched, 'dns-endpoint')
  assert.equal(((await call('whois', { address: '203.0.113.11' })) as { matched: string }).matched, 'endpoint')
  const me = (await call('whois', { address: '[fd00:1::1]' })) as { self: boolean; keys: { fingerprint: string }[] }
  assert.equal(me.self, true)
  assert.equal(me.keys[0]?.fingerprint, keyFingerprint(selfKey.publicKey))
  await assert.rejects(
    call('whois', { address: 'fd00:9::9' }),
    /not an address of any of alice\.members\.example's hosts/,
  )
  await assert.rejects(call('whois', { address: 'desktop' }), /is not an IP address/)
})

test('ping --json streams: each reply is written before the next ping is asked, then a summary; none answered: exit 1', async () => {
  const answer = (seq: number): PingAnswer =>
    seq === 2
      ? { reply: false, host: 'desktop', ula: 'fd00:2::1', path: 'direct', endpoint: null, reason: 'no reply' }
      : {
          reply: true,
          host: 'desktop',
          ula: 'fd00:2::1',
          path: 'direct',
          endpoint: '203.0.113.11:4500',
          rttMs: seq,
          setupMs: null,
          probe: 'ike-liveness',
        }
  const out: string[] = []
  const asked: number[] = []
  const linesWhenAsked: number[] = []
  await runPing(
    'desktop',
    { count: '3', interval: '0', json: true },
    {
      ask: async () => {
        linesWhenAsked.push(out.length)
        asked.push(asked.length + 1)
        return answer(asked.length)
      },
      write: (s) => out.push(s),
      sleep: async () => {},
    },
  )
  assert.deepEqual(linesWhenAsked, [0, 1, 2], 'each reply line is out before the next ping')
  const lines = out.map((l) => {
    assert.ok(l.endsWith('\n') && !l.slice(0, -1).includes('\n'), 'one object per line')
    return JSON.parse(l) as Record<string, unknown>
  })
  assert.deepEqual(
    lines.map((l) => [l.type, l.seq, l.reply]),
    [
      ['reply', 1, true],
      ['reply', 2, false],
      ['reply', 3, true],
      ['summary', undefined, undefined],
    ],
  )
  assert.deepEqual(lines[3], {
    type: 'summary',
    host: 'desktop',
    ula: 'fd00:2::1',
    transmitted: 3,
    received: 2,
    lost: 1,
    rttMs: { min: 1, avg: 2, max: 3 },
  })
  assert.equal(process.exitCode, undefined)

  const human: string[] = []
  const down = { ...answer(2), host: 'laptop' }
  try {
    await runPing(
      'laptop',
      { count: '2', interval: '0' },
      { ask: async () => down, write: (s) => human.push(s), sleep: async () => {} },
    )
    assert.equal(process.exitCode, 1)
  } finally {
    process.exitCode = undefined
  }
  assert.equal(human.length, 3)
  assert.match(human[2]!, /^laptop is down or unreachable: no reply to 2 ping\(s\)\n$/)
})
