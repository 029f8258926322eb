// STYLE 5: a test fails if it leaves a socket or timer open. `failOnLeakedResources()` at the top of a unit test
// file records the process's active handles (process.getActiveResourcesInfo(): 'UDPWrap', 'TCPServerWrap',
// 'TCPSocketWrap', 'Timeout', ...) before the first test and fails the file in an `after` hook when, once closes
// under way have had a moment to finish, any kind is held more often than at the start.
//
// Only ref'd handles are visible to Node's API (an unref'd socket or timer is not listed), which are the ones that
// keep a test process alive: without this check such a leak shows as a test file that never ends. After reporting
// the leak, the process exits so the run goes on.
import { after, before } from 'node:test'

/** Handle kinds that belong to the test runner or the process, not to the code under test. */
const IGNORED: ReadonlySet<string> = new Set(['TTYWrap', 'PipeWrap', 'FSReqCallback', 'FSReqPromise'])
/** How long closes already under way get to finish before the count. */
const SETTLE_MS = 50
/** Time for the reporter to print the failure before a leaked handle is cut off by exiting. */
const EXIT_AFTER_LEAK_MS = 1000

export function countResources(): Map<string, number> {
  const m = new Map<string, number>()
  for (const r of process.getActiveResourcesInfo()) if (!IGNORED.has(r)) m.set(r, (m.get(r) ?? 0) + 1)
  return m
}

/** The kinds held more often in `now` than in `baseline`, with both counts. */
export function leakedResources(baseline: ReadonlyMap<string, number>, now: ReadonlyMap<string, number>): string[] {
  const out: string[] = []
  for (const [kind, n] of now) {
    const before = baseline.get(kind) ?? 0
    if (n > before) out.push(`${kind}: ${n} open, ${before} before the tests`)
  }
  return out
}

export function failOnLeakedResources(): void {
  let baseline = new Map<string, number>()
  before(() => {
    baseline = countResources()
  })
  after(async () => {
    await new Promise<void>((r) => setTimeout(r, SETTLE_MS))
    const leaked = leakedResources(baseline, countResources())
    if (leaked.length === 0) return
    process.exitCode = 1
    setTimeout(() => process.exit(1), EXIT_AFTER_LEAK_MS).unref()
    throw new Error(`test file left resources open: ${leaked.join('; ')}`)
  })
}
