// `make soak`: the long fault run (docs/soak.md). SOAK_SECONDS (default 600) is how long faults keep coming,
// SOAK_SEED (default: random, printed) replays a schedule, SOAK_REPORT (default soak-report.json) is where the
// report goes. Exits 1 when a fault did not recover, a log shows a crash, or a process grew beyond the bounds.
import { writeFileSync } from 'node:fs'
import { Lab } from '../../lab/index.js'
import { Soak, soakTopology } from './driver.js'
import { formatSummary, summarize } from './report.js'

const seconds = Number(process.env.SOAK_SECONDS ?? 600)
const once = process.env.SOAK_ONCE === '1'
const seed = process.env.SOAK_SEED ? Number(process.env.SOAK_SEED) : Math.floor(Math.random() * 2 ** 31)
const out = process.env.SOAK_REPORT ?? 'soak-report.json'
const stamp = () => new Date().toISOString().slice(11, 19)
const log = (line: string) => process.stdout.write(`${stamp()} ${line}\n`)

log(`soak: seed ${seed}, faults for ${seconds} s (SOAK_SEED=${seed} replays the schedule)`)
const lab = await Lab.up({ topology: soakTopology() })
let keepLogs = true
try {
  const report = await new Soak(lab, { seconds, seed, once, log }).run()
  const summary = summarize(report)
  process.stdout.write(`\n${formatSummary(summary, report.faults)}\n`)
  writeFileSync(out, `${JSON.stringify({ summary, ...report }, null, 2)}\n`)
  log(`report written to ${out}`)
  keepLogs = !summary.ok
  if (keepLogs) log(`lab logs kept in ${lab.dir}`)
  process.exitCode = summary.ok ? 0 : 1
} finally {
  await lab.down({ keepLogs })
}
