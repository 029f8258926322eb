// The short soak (docs/soak.md) in `make test`: one fault of each kind, in the seeded order of the long run's
// driver (test/soak/driver.ts), each followed by the checks of the long run with bounds that hold on a loaded
// two-core machine but catch a path, a record or a stream that does not come back.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { withLab } from '../../lab/index.js'
import { Soak, soakTopology } from '../soak/driver.js'
import { FAULT_KINDS } from '../soak/faults.js'
import { formatSummary, summarize } from '../soak/report.js'

const SEED = Number(process.env.SOAK_SEED ?? 14)
/**
 * After a fault ends, both pings answer within this; after agent-kill it includes the agent's start and its peer
 * learning the new ULA. Seen: at most 3.3 s over 86 faults with a full suite running beside (docs/soak.md). With
 * seed 14 the home gateway restarts just before the agent-kill, so a peer whose DNS Push sessions died with the
 * gateway's NAT state (fixed: Datapath.gatewayStateLost) would wait for its next keepalive, up to a minute.
 */
const PING_RESUME_MS = 20_000
/** After a fault ends, both hosts' records at the server are right within this (seen: at most 3.4 s). */
const RECORDS_RIGHT_MS = 20_000

test('soak, short: after one fault of each kind the pings, the TCP stream and the records come back', {
  timeout: 300_000,
}, async (t) => {
  await withLab(t, { topology: soakTopology() }, async (lab) => {
    t.diagnostic(`seed ${SEED} (SOAK_SEED=${SEED} replays it)`)
    const report = await new Soak(lab, {
      seconds: 0,
      seed: SEED,
      once: true,
      quietMs: [500, 1500],
      recoveryTimeoutMs: 60_000,
      log: (l) => t.diagnostic(l),
    }).run()
    const summary = summarize(report)
    for (const l of formatSummary(summary, report.faults).split('\n')) t.diagnostic(l)
    assert.deepEqual(report.faults.map((f) => f.kind).sort(), [...FAULT_KINDS].sort())
    for (const f of report.faults) {
      const what = `#${f.n} ${f.kind} ${f.target}: ${f.notes.join('; ')}`
      assert.ok(f.recovered, `${what}: not recovered`)
      assert.ok(
        f.pingResumeMs !== null && f.pingResumeMs <= PING_RESUME_MS,
        `${what}: ping resumed after ${f.pingResumeMs} ms`,
      )
      assert.ok(
        f.recordsRightMs !== null && f.recordsRightMs <= RECORDS_RIGHT_MS,
        `${what}: records right after ${f.recordsRightMs} ms`,
      )
      assert.notEqual(f.tcp, 'broken', `${what}: the TCP stream broke`)
    }
    assert.deepEqual(summary.crashLines, [], 'no uncaught exception or unhandled rejection in any log')
    assert.deepEqual(
      summary.processes.flatMap((p) => p.overBound),
      [],
      'RSS, fds, timers and handles within bounds',
    )
  })
})
