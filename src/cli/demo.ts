import type { Command } from 'commander'
import { notInstalled } from './lab.js'

// `autotunnel demo` (`make demo`): the BTMM story in the network lab, as a timeline (lab/demo.ts). Needs root.
export function register(program: Command): void {
  program
    .command('demo')
    .description('run the story in the lab (needs root): server, two homes, records, ssh by name, roaming, teardown')
    .option('--ticks <n>', 'lines the ssh session prints (one per 0.1 s)', '60')
    .action(async (o: { ticks: string }) => {
      const m = await import('../../lab/demo.js').catch(notInstalled)
      process.exitCode = await m.runDemo({ ticks: Math.max(20, Number(o.ticks) || 60) })
    })
}
