import type { Command } from 'commander'

const collect = (v: string, prev: string[]): string[] => [...prev, v]

// `autotunnel netcheck`: NAT behaviour, port-mapping protocols, public addresses, times (src/agent/netcheck.ts).
export function register(program: Command): void {
  program
    .command('netcheck')
    .description(
      'report the network this host is on: NAT behaviour (RFC 5780), PCP/NAT-PMP/UPnP, public IPv4/IPv6, times',
    )
    .option('--state <dir>', "the agent's state directory, whose servers are measured (default $AUTOTUNNEL_STATE)")
    .option('--stun <host[:port]>', 'STUN server to use (repeatable; default: the running agent’s)', collect, [])
    .option('--relay <host[:port]>', 'TURN relay to time (repeatable; default: the running agent’s)', collect, [])
    .option('--server <host[:port]>', 'DNS service to time (default: the running agent’s)')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
Runs here, from fresh sockets (the agent's tunnel port is not touched); nothing is mapped on the gateway.
Without a running agent give --stun (and --server, --relay) yourself.

Examples:
  $ autotunnel netcheck
  interface   eth0 192.168.1.10, gateway 192.168.1.1
  public IPv4 203.0.113.11
  NAT         port-restricted cone: mapping endpoint-independent, filtering address-and-port-dependent (...)
  port map    PCP yes (1.2 ms), NAT-PMP yes (0.9 ms, external 203.0.113.11), UPnP yes (7.5 ms, external ...)
  IPv6        - (no global IPv6 address)
  DNS service 198.51.100.10:53: 0.8 ms
  relay       198.51.100.20:3478: 1.1 ms
  $ autotunnel netcheck --json --stun stun.example.net:3478`,
    )
    .action(async (o: { state?: string; stun: string[]; relay: string[]; server?: string; json?: boolean }) => {
      const m = await import('../agent/netcheck-client.js')
      await m.runNetcheck(o)
    })
}
