import type { Command } from 'commander'
import * as account from './account.js'
import * as agent from './agent.js'
import * as demo from './demo.js'
import { addExamples, configureHelpFormat } from './help.js'
import * as ip from './ip.js'
import * as lab from './lab.js'
import * as netcheck from './netcheck.js'
import * as ping from './ping.js'
import * as server from './server.js'
import * as service from './service.js'
import * as tunnel from './tunnel.js'

// One line per subcommand file; each exports `register(program)` and owns its options and help text.
export function registerCommands(program: Command): void {
  configureHelpFormat(program)
  for (const m of [server, account, agent, ping, ip, netcheck, service, tunnel, lab, demo]) m.register(program)
  addExamples(program)
}
