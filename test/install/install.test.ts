// Installing to run (issue 13 finding 6): `make install`'s script puts a working `autotunnel` in PREFIX that runs
// from any directory, and the dependency script separates runtime packages from test peers and leaves no
// policy-rc.d behind (apt-get and dpkg-query replaced by recording stand-ins on PATH: the test must not install).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const run = promisify(execFile)

async function tempDir(t: import('node:test').TestContext): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'at-install-'))
  t.after(() => rm(d, { recursive: true, force: true }))
  return d
}

test('scripts/install.sh: PREFIX/bin/autotunnel works from any directory; uninstall removes it', {
  timeout: 120_000,
}, async (t) => {
  const prefix = join(await tempDir(t), 'usr')
  const env = { ...process.env, PREFIX: prefix }
  const inst = await run(join(ROOT, 'scripts/install.sh'), [], { env, cwd: ROOT })
  assert.match(inst.stdout, /installed .*lib\/autotunnel/)
  const bin = join(prefix, 'bin', 'autotunnel')
  const elsewhere = await tempDir(t)
  const v = await run(bin, ['--version'], { cwd: elsewhere })
  assert.equal(v.stdout.trim(), JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version)
  const h = await run(bin, ['up', '--help'], { cwd: elsewhere })
  assert.match(h.stdout, /Examples:/)
  // The store (better-sqlite3, a native module) and the key file work from the installed copy.
  await run(bin, ['account', 'add', 'alice', '--data', 'srv', '--zone', 'members.example', '-o', 'k.json'], {
    cwd: elsewhere,
  })
  assert.equal((await stat(join(elsewhere, 'k.json'))).mode & 0o777, 0o600)
  // No tests and no dev tools are installed; the lab says it is not part of the installation.
  const lib = join(prefix, 'lib', 'autotunnel')
  await assert.rejects(stat(join(lib, 'node_modules', 'typescript')), /ENOENT/)
  await assert.rejects(stat(join(lib, 'node_modules', '@biomejs')), /ENOENT/)
  await assert.rejects(stat(join(lib, 'dist', 'src', 'cli', 'help.test.js')), /ENOENT/)
  // Every native addon the build made is installed (each has a slower fallback, so a missing one fails nothing else).
  const built = (await readdir(join(ROOT, 'dist', 'native')).catch(() => [])).filter((f) => f.endsWith('.node'))
  const installed = await readdir(join(lib, 'dist', 'native')).catch(() => [])
  assert.deepEqual(installed.sort(), built.sort())
  const lab = await run(bin, ['lab', 'ls'], { cwd: elsewhere }).catch((e: { stderr: string }) => e)
  assert.match(lab.stderr, /not installed: run them from a checkout/)
  await run(join(ROOT, 'scripts/install.sh'), ['--uninstall'], { env, cwd: ROOT })
  await assert.rejects(stat(bin), /ENOENT/)
  await assert.rejects(stat(lib), /ENOENT/)
})

/** A copy of scripts/deps.sh in a scratch "repository" whose node_modules is up to date, with stand-ins on PATH. */
async function depsSandbox(t: import('node:test').TestContext, failInstall: boolean) {
  const d = await tempDir(t)
  await mkdir(join(d, 'scripts'))
  await copyFile(join(ROOT, 'scripts', 'deps.sh'), join(d, 'scripts', 'deps.sh'))
  await writeFile(join(d, 'package-lock.json'), '{}')
  await mkdir(join(d, 'node_modules'))
  await writeFile(join(d, 'node_modules', '.package-lock.json'), '{}')
  const later = new Date(Date.now() + 60_000)
  await utimes(join(d, 'node_modules', '.package-lock.json'), later, later)
  const bin = join(d, 'bin')
  await mkdir(bin)
  const policy = join(d, 'policy-rc.d')
  const log = join(d, 'apt.log')
  const stub = (name: string, body: string) => writeFile(join(bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  await stub('dpkg-query', 'exit 1') // nothing is installed
  await stub(
    'apt-get',
    `echo "$@ policy=$(test -x '${policy}' && cat '${policy}' | tail -1)" >> '${log}'\n${failInstall ? 'case "$1" in install) exit 100;; esac\n' : ''}exit 0`,
  )
  await chmod(join(d, 'scripts', 'deps.sh'), 0o755)
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, AUTOTUNNEL_POLICY_RC_D: policy }
  return { d, policy, log, env }
}

test('scripts/deps.sh: --runtime installs no test peer; --test blocks daemon starts only during apt-get install', async (t) => {
  const rt = await depsSandbox(t, false)
  await run(join(rt.d, 'scripts', 'deps.sh'), ['--runtime'], { env: rt.env })
  const runtime = await readFile(rt.log, 'utf8')
  const installLine = runtime.split('\n').find((l) => l.includes('install')) ?? ''
  for (const peer of ['bind9', 'knot', 'strongswan', 'tshark', 'coturn', 'miniupnpd', 'openssh-server'])
    assert.ok(!installLine.includes(peer), `--runtime installs ${peer}: ${installLine}`)
  assert.match(installLine, /iproute2/)
  assert.match(installLine, /policy=$/, 'no policy-rc.d for runtime packages')

  for (const fail of [false, true]) {
    const s = await depsSandbox(t, fail)
    const r = await run(join(s.d, 'scripts', 'deps.sh'), ['--test'], { env: s.env }).catch((e: Error) => e)
    assert.equal(r instanceof Error, fail, `exit status with apt-get ${fail ? 'failing' : 'working'}`)
    const lines = (await readFile(s.log, 'utf8')).split('\n')
    const install = lines.find((l) => l.includes('install')) ?? ''
    for (const peer of ['bind9', 'knot', 'strongswan-charon', 'tshark']) assert.ok(install.includes(peer), peer)
    assert.match(install, /policy=exit 101$/, 'daemons blocked while installing')
    await assert.rejects(stat(s.policy), /ENOENT/, `policy-rc.d left behind (apt-get ${fail ? 'failed' : 'worked'})`)
  }

  // A policy-rc.d the machine had is the machine's: kept as it was.
  const own = await depsSandbox(t, false)
  await writeFile(own.policy, '#!/bin/sh\nexit 0\n', { mode: 0o755 })
  await run(join(own.d, 'scripts', 'deps.sh'), ['--test'], { env: own.env })
  assert.equal(await readFile(own.policy, 'utf8'), '#!/bin/sh\nexit 0\n')
})
