import { type Command, Option } from 'commander'
import type { UpOptions } from '../agent/options.js'
import { RESOLVER_DEFAULT } from '../agent/resolver.js'
import { defaultStateDir } from '../agent/state-dir.js'

// `autotunnel up|status|down|browse|revoke`: the host agent (docs/agent.md). `up` runs in the foreground and serves a
// control socket in its state directory; the other three talk to it there. Implementations load lazily.

const collect = (v: string, prev: string[]): string[] => [...prev, v]

/** --state for every agent command: the same default, so `status`/`down`/`browse` find an agent `up` started. */
const stateOption = (what: string): Option =>
  new Option('--state <dir>', `${what} ($AUTOTUNNEL_STATE_DIR, else by user: docs/agent.md)`).default(defaultStateDir())

export function register(program: Command): void {
  program
    .command('up')
    .description('run the host agent in the foreground: identity, port mapping, publishing (JSON logs on stderr)')
    .requiredOption('--server <host[:port]>', 'bootstrap address of the DNS service (update servers are found by SRV)')
    .option(
      '--domain <user.zone>',
      "the user's domain, e.g. alice.members.example (default: the --key-file's; required with --password-stdin)",
    )
    .requiredOption('--hostname <name>', 'this host\'s name in the domain (one label), e.g. "desktop"')
    .addOption(stateOption('state directory: identity.json, the control socket agent.sock, backups'))
    .option('--key-file <file>', 'the JSON printed by `autotunnel account add --json`')
    .option('--password-stdin', 'read the account password from stdin and derive the TSIG key from it')
    .addOption(
      new Option('--key-algorithm <alg>', 'TSIG algorithm of the password-derived key (as in `account add`)')
        .choices(['hmac-sha256', 'hmac-sha512', 'hmac-sha384', 'hmac-sha224', 'hmac-sha1', 'hmac-md5'])
        .default('hmac-sha256'),
    )
    .option('--port <udpport>', 'local UDP port of the tunnel (mapped on the NAT gateway)', '4500')
    .option('--tun <name>', 'TUN device name (used by the tunnel)', 'autotun0')
    .option('--no-tun', 'run without a TUN device')
    .option(
      '--resolver <addr:port>',
      "local DNS resolver for the user's host names (ULAs); port 53 for /etc/resolv.conf to name it",
      RESOLVER_DEFAULT,
    )
    .option('--no-resolver', 'do not run the local resolver (and leave the system resolver alone)')
    .addOption(
      new Option(
        '--system-resolver <mode>',
        'point the system resolver at it: systemd-resolved when it runs, else /etc/resolv.conf (restored by down)',
      )
        .choices(['auto', 'resolved', 'resolv.conf', 'off'])
        .default('auto'),
    )
    .option('--metrics <addr:port>', 'serve Prometheus metrics at http://ADDR:PORT/metrics (off by default)')
    .option(
      '--status-page <[addr:]port>',
      'serve a live status page at http://127.0.0.1:PORT/ (loopback only; off by default)',
    )
    .option('--service <type:port>', 'advertise a DNS-SD service, e.g. _ssh._tcp:22 (repeatable)', collect, [])
    .option('--lease <seconds>', 'update lease asked for (RFC 9664); the server clamps it', '5400')
    .option('--ttl <seconds>', 'TTL of the published records', '60')
    .option('--ca <file>', "PEM certificate(s) to trust for the server's DNS-over-TLS listener")
    .option('--insecure-tls', "accept any certificate from the server's TLS listener (testing only)")
    .option(
      '--tls-fingerprint <sha256>',
      "pin the server's TLS certificate (the fingerprint `autotunnel server` prints)",
    )
    .option('--no-tls', 'never use DNS over TLS, even when the server advertises it')
    .option('--no-portmap', 'do not ask the gateway for a port mapping (PCP, NAT-PMP, UPnP)')
    .option(
      '--stun <host[:port]>',
      'STUN server for hole punching when no gateway maps a port (repeatable; default: SRV _stun._udp.ZONE)',
      collect,
      [],
    )
    .option(
      '--relay <host[:port]>',
      'TURN server for peers that cannot punch, used behind a symmetric NAT (repeatable; default: SRV _turn._udp.ZONE)',
      collect,
      [],
    )
    .option(
      '--relay-user <user>',
      'TURN username (long-term credentials); without it, the ephemeral ones the server hands out (if any)',
    )
    .option('--relay-password-file <file>', 'file holding the TURN password (first line)')
    .addOption(
      new Option(
        '--ike-auth <mode>',
        'IKE authentication: signatures with the per-host key published in DNS, or the PSK from the account secret',
      )
        .choices(['signature', 'psk'])
        .default('signature'),
    )
    .option('--no-mobike', 'do not use MOBIKE (RFC 4555): peers follow a move through DNS only')
    .addOption(
      new Option(
        '--tunnel-threads <mode>',
        'tunnel threads: off (one thread, the default), on (send and TUN I/O threads: more small-packet ' +
          'throughput, more latency), send (TUN read on the send thread)',
      ).choices(['on', 'send', 'off']),
    )
    .option(
      '--allow-second-agent',
      'start even though another agent runs on this machine (it shares the EUI-64: give another --port, --tun, --hostname)',
    )
    .option(
      '--sso-user <user>',
      "single sign-on (docs/sso.md): the local account the account owner's Kerberos principal maps to here, and whose " +
        'ssh gets tickets (default: a local user named like the account, if there is one)',
    )
    .option('--no-sso', 'no single sign-on: no KDC, no certificates, no krb5/ssh drop-ins')
    .addOption(new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']))
    .action(async (o: UpOptions) => {
      // Read by the data path (src/agent/tunnel-start.ts, tunnelThreadsMode).
      if (o.tunnelThreads) process.env.AUTOTUNNEL_TUNNEL_THREADS = o.tunnelThreads
      const m = await import('../agent/run.js')
      try {
        await m.runUp(o)
      } catch (e) {
        if (!(e instanceof m.FatalConfigError)) throw e
        // The agent has stopped and released its locks; timers of watchers still retrying must not delay the exit.
        process.stderr.write(`autotunnel: ${e.message}\n`)
        process.exit(1)
      }
    })

  program
    .command('status')
    .description("show the running agent's identity, addresses, port mapping, records and peers")
    .addOption(stateOption("the agent's state directory"))
    .option('--json', 'print JSON')
    .action(async (o: { state: string; json?: boolean }) => {
      const m = await import('../agent/commands.js')
      await m.runStatus(o)
    })

  program
    .command('down')
    .description('stop the running agent cleanly: delete its port mapping and its published records')
    .addOption(stateOption("the agent's state directory"))
    .option('--timeout <seconds>', 'how long to wait for the agent to finish', '20')
    .action(async (o: { state: string; timeout: string }) => {
      const m = await import('../agent/commands.js')
      await m.runDown(o)
    })

  program
    .command('revoke <hostname>')
    .description(
      "revoke one of the user's hosts: delete its IKE key record and its other records (via the running agent, " +
        'or directly with --server/--domain/--key-file)',
    )
    .addOption(stateOption("the state directory of an agent of the same user (this host's)"))
    .option('--server <host[:port]>', 'without a running agent: the DNS service to send the UPDATE to')
    .option('--domain <user.zone>', "without a running agent: the user's domain")
    .option('--key-file <file>', 'without a running agent: the account key (JSON of `account add --json`)')
    .option('--json', 'print JSON')
    .action(
      async (
        host: string,
        o: { state: string; server?: string; domain?: string; keyFile?: string; json?: boolean },
      ) => {
        const m = await import('../agent/commands.js')
        await m.runRevoke(host, o)
      },
    )

  program
    .command('browse [type]')
    .description("list the services of the user's hosts (DNS-SD in the user's domain), e.g. browse _ssh._tcp")
    .addOption(stateOption("the agent's state directory"))
    .option('--json', 'print JSON')
    .action(async (type: string | undefined, o: { state: string; json?: boolean }) => {
      const m = await import('../agent/commands.js')
      await m.runBrowse(type, o)
    })
}
