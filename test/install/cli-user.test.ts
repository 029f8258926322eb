// Issue 13, as a new user meets it (findings 6 and 7): the account key file's mode, a non-root `up` without
// --no-tun, and `status`/`down` finding a non-root agent without --state. The real `autotunnel` command, a real
// server on loopback, run as the unprivileged user nobody (setpriv) where the finding is about non-root.
import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']
const run = promisify(execFile)
const isRoot = process.getuid?.() === 0

async function tempDir(t: import('node:test').TestContext, mode = 0o700): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'at-cli-'))
  await chmod(d, mode)
  t.after(() => rm(d, { recursive: true, force: true }))
  return d
}

/** sh -c with a umask, so `> file` makes the file as a user's shell would. */
function sh(script: string, env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> {
  return run('sh', ['-c', script], { env: { ...process.env, ...env, MAIN } })
}

test('account add --json > file under umask 022 warns; -o FILE writes the key with mode 0600', async (t) => {
  const d = await tempDir(t)
  const loose = await sh(
    `umask 022; node "$MAIN" account add alice --data "${d}/srv" --zone members.example --json > "${d}/a.json"`,
  )
  assert.match(loose.stderr, /warning: the key goes to a file that group or others can read \(mode 644\)/)
  assert.match(loose.stderr, /--output FILE/)
  assert.equal(JSON.parse(await readFile(join(d, 'a.json'), 'utf8')).user, 'alice')
  const tight = await sh(
    `umask 077; node "$MAIN" account add carol --data "${d}/srv" --zone members.example --json > "${d}/c.json"`,
  )
  assert.doesNotMatch(tight.stderr, /warning/)

  const out = join(d, 'b.json')
  await writeFile(out, 'old', { mode: 0o644 }) // an old key file with loose permissions: replaced, tightened
  await chmod(out, 0o644)
  const r = await sh(`umask 000; node "$MAIN" account add bob --data "${d}/srv" --zone members.example -o "${out}"`)
  assert.equal(r.stdout, '')
  assert.match(r.stderr, /key written to .*b\.json \(mode 0600\)/)
  assert.equal((await stat(out)).mode & 0o777, 0o600)
  const key = JSON.parse(await readFile(out, 'utf8')) as { user: string; keyName: string; secret: string }
  assert.equal(key.user, 'bob')
  assert.equal(key.keyName, 'bob.members.example.')
  assert.equal(Buffer.from(key.secret, 'base64').length, 32)
  // passwd -o as well; a refused change (no such user) leaves no key file behind.
  await sh(`node "$MAIN" account passwd bob --data "${d}/srv" -o "${out}"`)
  assert.notEqual(JSON.parse(await readFile(out, 'utf8')).secret, key.secret)
  await assert.rejects(sh(`node "$MAIN" account passwd nosuch --data "${d}/srv" -o "${d}/x.json"`))
  await assert.rejects(stat(join(d, 'x.json')), /ENOENT/)
})

/** The exit code, also when the process exited before this is called (its exit is remembered from the start). */
const exits = new WeakMap<ChildProcess, Promise<number | null>>()
function track(p: ChildProcess): ChildProcess {
  exits.set(p, new Promise((resolve) => p.once('exit', (code) => resolve(code))))
  return p
}
function waitExit(p: ChildProcess, ms: number): Promise<number | null> {
  const exited = exits.get(p) ?? new Promise((resolve) => p.once('exit', (code) => resolve(code)))
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    exited,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no exit within ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

async function startServer(t: import('node:test').TestContext, d: string): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 40000)
    const srv = track(
      spawn(
        process.execPath,
        [MAIN, 'server', '--zone', 'members.example', '--data', join(d, 'srv'), '--listen', `127.0.0.1:${port}`],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      ),
    )
    let err = ''
    srv.stderr?.on('data', (c: Buffer) => (err += c))
    const up = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(true), 20_000)
      srv.stderr?.on('data', () => {
        if (/server\.listening|"listening"|listening/.test(err)) {
          clearTimeout(timer)
          resolve(true)
        }
      })
      srv.once('exit', () => {
        clearTimeout(timer)
        resolve(false)
      })
    })
    if (up) {
      t.after(async () => {
        srv.kill('SIGTERM')
        await waitExit(srv, 5000).catch(() => srv.kill('SIGKILL'))
      })
      return port
    }
    if (attempt > 3) throw new Error(`server did not start: ${err}`)
  }
}

test('non-root: `up` without --no-tun says what to do; status and down find the agent without --state', {
  skip: !isRoot && 'needs root to switch to the user nobody',
  timeout: 90_000,
}, async (t) => {
  const d = await tempDir(t, 0o755)
  await run(process.execPath, [
    MAIN,
    'account',
    'add',
    'alice',
    '--data',
    join(d, 'srv'),
    '--zone',
    'members.example',
    '-o',
    join(d, 'k.json'),
  ])
  await run('chown', ['65534', join(d, 'k.json')])
  const port = await startServer(t, d)
  const home = join(d, 'home')
  await run('install', ['-d', '-o', '65534', home])
  const env = { ...process.env, HOME: home, XDG_STATE_HOME: join(home, 'state') }
  delete (env as NodeJS.ProcessEnv).AUTOTUNNEL_STATE_DIR
  const base = [MAIN, 'up', '--server', `127.0.0.1:${port}`, '--domain', 'alice.members.example', '--hostname', 'h1']
  const key = ['--key-file', join(d, 'k.json'), '--no-portmap', '--log-level', 'warn']

  // With the tunnel: refused with the cause and the fix, exit status non-zero.
  const tun = track(
    spawn(
      NOBODY[0] as string,
      [...NOBODY.slice(1), process.execPath, ...base, ...key, '--tun', `att${process.pid % 10000}`],
      { env, stdio: ['ignore', 'ignore', 'pipe'] },
    ),
  )
  let tunErr = ''
  tun.stderr?.on('data', (c: Buffer) => (tunErr += c))
  assert.notEqual(await waitExit(tun, 30_000), 0)
  assert.match(tunErr, /cannot create the TUN device att\d+: operation not permitted/)
  assert.match(tunErr, /root or CAP_NET_ADMIN/)
  assert.match(tunErr, /--no-tun/)
  assert.doesNotMatch(tunErr, /errno 1\b/)
  assert.doesNotMatch(tunErr, /"msg":"(publish|agent)\./, 'refused before anything is published')
  await assert.rejects(stat(join(home, 'state', 'autotunnel-agent')), /ENOENT/, 'nor its state directory made')

  // Without: runs; its default state directory is $XDG_STATE_HOME/autotunnel-agent; status and down find it there.
  const agent = track(
    spawn(NOBODY[0] as string, [...NOBODY.slice(1), process.execPath, ...base, ...key, '--no-tun'], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    }),
  )
  let agentErr = ''
  agent.stderr?.on('data', (c: Buffer) => (agentErr += c))
  t.after(() => agent.kill('SIGKILL'))
  const nobody = (args: string[]) =>
    run(NOBODY[0] as string, [...NOBODY.slice(1), process.execPath, MAIN, ...args], { env })
  let status = ''
  for (const deadline = Date.now() + 20_000; ; ) {
    const r = await nobody(['status']).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }))
    status = r.stdout
    if (/^agent {7}h1\./.test(status) && /\nresolver /.test(status)) break
    if (Date.now() > deadline) throw new Error(`status never found the agent: ${status}\n${agentErr}`)
    await new Promise((r) => setTimeout(r, 200))
  }
  assert.match(status, /h1\.alice\.members\.example/)
  // The resolver's default port 53 needs privileges: status says so, with what to do (finding 5).
  assert.match(
    status,
    /resolver {4}NOT RUNNING: cannot listen on 127\.0\.0\.153:53: port 53 needs root or CAP_NET_BIND_SERVICE/,
  )
  assert.match(status, /system DNS {2}FAILED: the local resolver is not running/)
  await stat(join(home, 'state', 'autotunnel-agent', 'agent.sock'))
  const down = await nobody(['down'])
  assert.match(down.stdout, /agent stopped: records deleted/)
  const t0 = Date.now()
  const code = await waitExit(agent, 40_000).catch(async (e: Error) => {
    const ps = await run('ps', ['-ef', '--forest']).then((r) =>
      r.stdout
        .split('\n')
        .filter((l) => l.includes(String(agent.pid)) || l.includes('ip -o monitor'))
        .join('\n'),
    )
    throw new Error(`${e.message}\n${ps}\n${agentErr.split('\n').slice(-15).join('\n')}`)
  })
  t.diagnostic(`agent exited ${Date.now() - t0} ms after down`)
  assert.equal(code, 0)
})
