import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { nullLogger } from '../io/log.js'
import { parseResolvConf, ResolvConfManager, renderResolvConf, upstreamsOf } from './resolv-conf.js'

const D = 'alice.members.example'
const NS = '127.0.0.153'
const ORIGINAL = Buffer.from(
  '# made by hand\r\nnameserver 192.0.2.53\nnameserver 2001:db8::53 # v6\nnameserver 192.0.2.54\n' +
    'domain corp.example\noptions rotate timeout:2\n\n',
)

async function tempDir(t: import('node:test').TestContext): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'at-resolvconf-'))
  t.after(() => rm(d, { recursive: true, force: true }))
  return d
}

test('parse and render: our resolver first, two previous ones after, our search domain first, no rotate', () => {
  const p = parseResolvConf(ORIGINAL.toString())
  assert.deepEqual(p, {
    nameservers: ['192.0.2.53', '2001:db8::53', '192.0.2.54'],
    search: ['corp.example'],
    options: ['rotate', 'timeout:2'],
  })
  const out = renderResolvConf(p, { nameserver: NS, domain: D, stateDir: '/var/lib/autotunnel' })
  const lines = out.split('\n').filter((l) => !l.startsWith('#'))
  assert.deepEqual(lines, [
    `nameserver ${NS}`,
    'nameserver 192.0.2.53',
    'nameserver 2001:db8::53',
    `search ${D} corp.example`,
    'options timeout:2',
    '',
  ])
  assert.deepEqual(
    upstreamsOf(parseResolvConf(`nameserver ${NS}\nnameserver 192.0.2.1\n`), { address: NS, port: 53 }),
    [{ address: '192.0.2.1', port: 53 }],
  )
})

test('install then restore leaves the file byte-identical, through a symlink, inode kept', async (t) => {
  const dir = await tempDir(t)
  const target = join(dir, 'real-resolv.conf')
  const link = join(dir, 'resolv.conf')
  await writeFile(target, ORIGINAL)
  await symlink(target, link)
  const state = join(dir, 'state')
  await (await import('node:fs/promises')).mkdir(state)
  const m = new ResolvConfManager({ log: nullLogger }, { stateDir: state, path: link })
  const before = (await import('node:fs')).statSync(target).ino
  const p = await m.install({ nameserver: NS, domain: D })
  assert.deepEqual(p.nameservers, ['192.0.2.53', '2001:db8::53', '192.0.2.54'])
  assert.match(await readFile(link, 'utf8'), new RegExp(`^nameserver ${NS.replaceAll('.', '\\.')}$`, 'm'))
  assert.equal(await m.isOurs(), true)
  assert.equal(await m.restore(), 'restored')
  assert.deepEqual(await readFile(target), ORIGINAL)
  assert.equal((await import('node:fs')).statSync(target).ino, before, 'written in place')
  assert.equal((await import('node:fs')).lstatSync(link).isSymbolicLink(), true)
  assert.deepEqual(await (await import('node:fs/promises')).readdir(state), [], 'no backup left behind')
})

test('after a crash the next start restores the original; a file another program replaced is kept', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'resolv.conf')
  for (const [name, after, want] of [
    ['still ours', (ours: Buffer) => ours, ORIGINAL],
    ['cut short mid-write', (ours: Buffer) => ours.subarray(0, 10), ORIGINAL],
    ['emptied', () => Buffer.alloc(0), ORIGINAL],
    ['replaced by DHCP', () => Buffer.from('nameserver 198.51.100.1\n'), Buffer.from('nameserver 198.51.100.1\n')],
  ] as const) {
    await writeFile(path, ORIGINAL)
    const crashed = new ResolvConfManager({ log: nullLogger }, { stateDir: dir, path })
    await crashed.install({ nameserver: NS, domain: D })
    await writeFile(path, after(await readFile(path))) // the agent is SIGKILLed here: no restore
    const next = new ResolvConfManager({ log: nullLogger }, { stateDir: dir, path })
    assert.equal(await next.recover(), want === ORIGINAL ? 'restored' : 'kept', name)
    assert.deepEqual(await readFile(path), want, name)
    assert.equal(await next.recover(), 'none', `${name}: the backup is gone`)
  }
})

test('a file rewritten while the agent runs (DHCP renewal) becomes the new original, and ours goes back', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'resolv.conf')
  await writeFile(path, ORIGINAL)
  const m = new ResolvConfManager({ log: nullLogger }, { stateDir: dir, path })
  await m.install({ nameserver: NS, domain: D })
  assert.equal(await m.reapplyIfReplaced({ nameserver: NS, domain: D }), undefined, 'unchanged: nothing done')
  const renewed = Buffer.from('nameserver 198.51.100.7\nsearch home.example\n')
  await writeFile(path, renewed)
  const p = await m.reapplyIfReplaced({ nameserver: NS, domain: D })
  assert.deepEqual(p?.nameservers, ['198.51.100.7'])
  assert.equal(await m.isOurs(), true)
  assert.match(await readFile(path, 'utf8'), new RegExp(`search ${D} home\\.example`))
  await m.restore()
  assert.deepEqual(await readFile(path), renewed, 'restore gives back the latest original')
})
