// The `autotunnel` command. Each subcommand registers itself from its own file and imports its
// implementation lazily inside the action, so `autotunnel --help` stays well under 300 ms.
import { Command } from 'commander'
import { registerCommands } from './commands.js'

const program = new Command()
program
  .name('autotunnel')
  .description(
    'Reach every one of your machines by name, through NATs, end-to-end encrypted (a self-hostable Back to My Mac).',
  )
  .version('0.1.0')
  .showHelpAfterError()

registerCommands(program)

try {
  await program.parseAsync(process.argv)
} catch (e) {
  const err = e as Error
  process.stderr.write(`autotunnel: ${err.message}\n`)
  process.exitCode = process.exitCode || 1
}
