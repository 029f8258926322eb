// `autotunnel account ...` beside a starting and a running `autotunnel server` on the same data directory: both open
// the one SQLite store, and no command (nor its timing) may stop the server or fail itself (issue 14: the server
// died at start with `database is locked` when `account add` created the same fresh directory at the same moment).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { BIN, run, ServerProcess, ZONE } from './server-harness.js'

const ROUNDS = 3
/** How long the commands keep running once the server is up. */
const BESIDE_RUNNING_MS = 2000

/** Runs every account command in turn until `stop()`; resolves with the failures (command and stderr). */
function accountLoop(dir: string): { stop: () => void; done: Promise<string[]> } {
  let stopped = false
  const failures: string[] = []
  const cmd = async (args: string[], input?: string): Promise<void> => {
    const r = await run(BIN, ['account', ...args, '--data', dir], input)
    if (r.code !== 0) failures.push(`account ${args.join(' ')}: ${r.stderr.trim()}`)
  }
  const done = (async () => {
    for (let i = 0; !stopped; i++) {
      const u = `u${i}`
      await cmd(['add', u, '--zone', ZONE, '--json'])
      await cmd(['list'])
      await cmd(['passwd', u, '--password-stdin'], 'a password\n')
      await cmd(['revoke-host', u, 'laptop'])
      await cmd(['remove', u, '--zone', ZONE])
    }
    return failures
  })()
  return { stop: () => (stopped = true), done }
}

test('account add/list/passwd/revoke-host/remove beside a starting and a running server never stop it', async (t) => {
  for (let round = 0; round < ROUNDS; round++) {
    const srv = new ServerProcess()
    t.after(() => srv.cleanup())
    // The first `account add` creates the store while the server, started at the same moment, creates it too.
    const loop = accountLoop(srv.dir)
    await srv.start()
    const deadline = Date.now() + BESIDE_RUNNING_MS
    while (Date.now() < deadline) {
      const soa = await srv.dig(['+short', 'SOA', ZONE])
      assert.equal(soa.code, 0, `round ${round}: dig failed: ${soa.stderr}`)
      assert.match(soa.stdout, /^ns\.members\.example\. /, `round ${round}: SOA answer`)
    }
    loop.stop()
    assert.deepEqual(await loop.done, [], `round ${round}: account commands failed`)
    assert.equal(srv.proc!.exitCode, null, `round ${round}: server exited: ${srv.stderr}`)
    assert.equal(srv.proc!.signalCode, null)
    assert.equal(await srv.stop(), 0, `round ${round}: server did not stop cleanly: ${srv.stderr}`)
  }
})
