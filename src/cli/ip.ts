import type { Command } from 'commander'

// `autotunnel ip [HOST]` and `autotunnel whois ADDRESS`: answered by the running agent (src/agent/everyday.ts).
export function register(program: Command): void {
  program
    .command('ip [host]')
    .description("print this host's ULA, or another of your hosts' (as the running agent knows it)")
    .option('--state <dir>', "the agent's state directory (default $AUTOTUNNEL_STATE, else /var/lib/autotunnel)")
    .option('--json', 'print JSON: host, FQDN, ULA, outer endpoint')
    .addHelpText(
      'after',
      `
Examples:
  $ autotunnel ip                 # this host's ULA
  fd9a:1c2e:77b0:0:5054:ff:fe12:3456
  $ autotunnel ip laptop
  $ ssh "$(autotunnel ip desktop)"
  $ autotunnel ip desktop --json`,
    )
    .action(async (host: string | undefined, o: { state?: string; json?: boolean }) => {
      const m = await import('../agent/everyday-client.js')
      await m.runIp(host, o)
    })

  program
    .command('whois <address>')
    .description(
      'which of your hosts and which account an address belongs to (a ULA, or a peer outer address), its key and path',
    )
    .option('--state <dir>', "the agent's state directory (default $AUTOTUNNEL_STATE, else /var/lib/autotunnel)")
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ autotunnel whois fd9a:1c2e:77b0:0:5054:ff:fe12:3456
  host        laptop.alice.members.example
  account     alice (alice.members.example)
  ULA         fd9a:1c2e:77b0:0:5054:ff:fe12:3456
  key         ed25519 SHA256:3q2+7w...
  path        direct 203.0.113.12:4500
  handshake   2026-12-07T01:02:03Z  (auth signature)
  $ autotunnel whois 203.0.113.12 --json   # by its outer address`,
    )
    .action(async (address: string, o: { state?: string; json?: boolean }) => {
      const m = await import('../agent/everyday-client.js')
      await m.runWhois(address, o)
    })
}
