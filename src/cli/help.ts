import type { Command, Help, Option } from 'commander'

// `--help` for every command (issue 13 finding 8): required options say so, defaults are shown as the value the
// command will use (never an empty list), and each command ends with examples that run as written, with the
// names of the README's walkthrough (members.example, alice, desktop; server 198.51.100.10).

/** The text after an option's description: required, choices, default. Replaces commander's optionDescription. */
export function optionDescription(opt: Option): string {
  const extra: string[] = []
  if (opt.mandatory) extra.push('required')
  if (opt.argChoices) extra.push(`choices: ${opt.argChoices.join(', ')}`)
  const d: unknown = opt.defaultValue
  const shown =
    opt.defaultValueDescription ??
    (d === undefined || typeof d === 'boolean' || (Array.isArray(d) && d.length === 0)
      ? undefined
      : Array.isArray(d)
        ? d.join(', ')
        : String(d))
  if (shown !== undefined && !opt.negate) extra.push(`default: ${shown}`)
  return extra.length ? `${opt.description} (${extra.join('; ')})` : opt.description
}

/** Help settings for `program`; subcommands made after this inherit them. */
export function configureHelpFormat(program: Command): void {
  program.configureHelp({ optionDescription: (opt: Option) => optionDescription(opt) } as Partial<Help>)
}

const SERVER = 'autotunnel server --zone members.example --data /var/lib/autotunnel'
const KEY = '--key-file alice.key.json --ca tls.crt'

/** Examples by command path ("account add"); every command has some (src/cli/help.test.ts checks). */
export const EXAMPLES: Readonly<Record<string, readonly string[]>> = {
  server: [
    'autotunnel server --zone members.example --data ./srv            # loopback 127.0.0.1:5300, to try it',
    `${SERVER} --listen 0.0.0.0:53 --tls-listen 0.0.0.0:853 \\\n      --advertise ns.members.example:203.0.113.53   # on a VPS`,
  ],
  account: [
    'autotunnel account add alice --data /var/lib/autotunnel --zone members.example -o alice.key.json',
    'autotunnel account list --data /var/lib/autotunnel',
  ],
  'account add': [
    'autotunnel account add alice --data /var/lib/autotunnel --zone members.example -o alice.key.json',
    "echo 'correct horse' | autotunnel account add bob --data /var/lib/autotunnel --zone members.example --password-stdin",
  ],
  'account list': ['autotunnel account list --data /var/lib/autotunnel', 'autotunnel account list --data ./srv --json'],
  'account remove': ['autotunnel account remove alice --data /var/lib/autotunnel'],
  'account revoke-host': [
    'autotunnel account revoke-host alice laptop --data /var/lib/autotunnel',
    'autotunnel account revoke-host alice laptop --store postgres://autotunnel@db.internal/autotunnel   # every node',
  ],
  'account unrevoke-host': [
    'autotunnel account unrevoke-host alice laptop --data /var/lib/autotunnel',
    'autotunnel account unrevoke-host alice laptop --store postgres://autotunnel@db.internal/autotunnel',
  ],
  'account limit': ['autotunnel account limit alice --data /var/lib/autotunnel --max-records 2000'],
  'account passwd': [
    'autotunnel account passwd alice --data /var/lib/autotunnel -o alice.key.json   # a new random key',
  ],
  up: [
    `autotunnel up --server ns.members.example --hostname desktop ${KEY} --domain alice.members.example`,
    `autotunnel up --server 127.0.0.1:5300 --domain alice.members.example --hostname laptop ${KEY} \\\n      --state ./laptop --no-tun --resolver 127.0.0.1:5354 --system-resolver off   # without root`,
    `autotunnel up --server ns.members.example --domain alice.members.example --hostname desktop ${KEY} \\\n      --service _ssh._tcp:22 --service _http._tcp:80`,
  ],
  status: ['autotunnel status', 'autotunnel status --state ./laptop --json'],
  down: ['autotunnel down', 'autotunnel down --state ./laptop --timeout 60'],
  revoke: [
    'autotunnel revoke laptop',
    `autotunnel revoke laptop --state ./x --server ns.members.example --domain alice.members.example --key-file alice.key.json`,
  ],
  browse: ['autotunnel browse', 'autotunnel browse _ssh._tcp --json'],
  tunnel: ['autotunnel tunnel run --config manual-sa.json   # tests only'],
  'tunnel run': ['autotunnel tunnel run --config manual-sa.json'],
  lab: [
    'autotunnel lab up --name try',
    'autotunnel lab exec try laptop -- ping -c 3 198.51.100.10',
    'autotunnel lab down try',
  ],
  'lab up': ['autotunnel lab up --name try', 'autotunnel lab up --name small --sites home,cafe --json'],
  'lab show': ['autotunnel lab show try'],
  'lab exec': ['autotunnel lab exec try desktop -- bash', 'autotunnel lab exec try home -- nft list ruleset'],
  'lab move': ['autotunnel lab move try laptop hotel'],
  'lab restart-gateway': ['autotunnel lab restart-gateway try home'],
  'lab set-public-ip': ['autotunnel lab set-public-ip try home 203.0.113.99'],
  'lab loss': ['autotunnel lab loss try home 10', 'autotunnel lab loss try laptop 5 --direction up'],
  'lab cut': ['autotunnel lab cut try hotel'],
  'lab restore': ['autotunnel lab restore try hotel'],
  'lab down': ['autotunnel lab down try', 'autotunnel lab down try --keep-logs'],
  'lab clean': ['autotunnel lab clean'],
  'lab ls': ['autotunnel lab ls', 'autotunnel lab ls --json'],
  demo: ['autotunnel demo', 'autotunnel demo --ticks 100'],
}

/** "account add" for the command `add` under `account` under the program. */
export function commandPath(cmd: Command): string {
  const names: string[] = []
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name())
  return names.join(' ')
}

/** Appends an Examples section to every command of `program` that has examples. */
export function addExamples(program: Command): void {
  const walk = (cmd: Command): void => {
    for (const c of cmd.commands) {
      const ex = EXAMPLES[commandPath(c)]
      if (ex) c.addHelpText('after', `\nExamples:\n${ex.map((l) => `  $ ${l}`).join('\n')}\n`)
      walk(c)
    }
  }
  walk(program)
}
