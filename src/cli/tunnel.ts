import type { Command } from 'commander'

// Registers the `tunnel` subcommand(s). The implementation is imported lazily inside each action.
export function register(program: Command): void {
  const tunnel = program
    .command('tunnel')
    .description('The ESP-in-UDP data plane between ULAs (normally run by `autotunnel up`, keyed by IKEv2).')
  tunnel
    .command('run')
    .description(
      'TESTS ONLY: run the data plane with MANUAL keys (static SAs from a JSON file). Not the default path: ' +
        'agents key their SAs with IKEv2. Prints a JSON "ready" line, counters on SIGUSR1, stops on SIGTERM.',
    )
    .requiredOption(
      '--config <file>',
      'manual-keying JSON: localUla, tun {name, mtu}, listen {address, port}, peers [...]',
    )
    .addHelpText(
      'after',
      `
Config example (format in docs/tunnel.md; keys are hex key||salt: 20 octets for aes128gcm16, 36 for
aes256gcm16 and chacha20poly1305; one side's keyOut is the other side's keyIn):
  {"localUla": "fd00:a::1", "tun": {"name": "autotun0", "mtu": 1400},
   "listen": {"address": "0.0.0.0", "port": 4500},
   "peers": [{"ula": "fd00:b::1", "endpoint": {"address": "198.51.100.2", "port": 4500},
              "sa": {"alg": "aes128gcm16", "esn": true, "spiIn": "0x1001", "spiOut": "0x2001",
                     "keyIn": "<40 hex digits>", "keyOut": "<40 hex digits>"}}]}
Needs CAP_NET_ADMIN (creates the TUN device). kill -USR1 <pid> prints counters as one JSON line.`,
    )
    .action(async (o: { config: string }) => {
      const m = await import('../tunnel/manual.js')
      await m.runManual(o.config)
    })
}
