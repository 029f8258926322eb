import { type Command, Option } from 'commander'

const collect = (v: string, prev: string[]): string[] => [...prev, v]
const int = (v: string): number => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) throw new TypeError(`not a non-negative integer: ${v}`)
  return n
}

// `autotunnel server`: the DNS service. The implementation is imported lazily inside the action.
export function register(program: Command): void {
  program
    .command('server')
    .description('run the DNS service: authoritative zone, TSIG-signed UPDATE with leases, UDP/TCP/TLS')
    .requiredOption('--zone <zone>', 'the provider zone, e.g. members.example')
    .option('--data <dir>', 'data directory (SQLite store, self-signed certificate); the default store')
    .option(
      '--store <url>',
      'postgres://USER:PASSWORD@HOST[:PORT]/DB: share one PostgreSQL database with other server nodes ' +
        '(docs/cluster.md); or sqlite:DIR (as --data DIR). Default: $AUTOTUNNEL_STORE, else --data',
    )
    .option('--listen <addr:port>', 'serve UDP and TCP here (repeatable; default 127.0.0.1:5300)', collect, [])
    .option('--tls-listen <addr:port>', 'serve DNS over TLS here (repeatable)', collect, [])
    .option('--tls-cert <file>', 'PEM certificate for --tls-listen (default: self-signed, created in DIR)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--lease-min <s>', 'smallest update lease granted (RFC 9664)', int, 1800)
    .option('--lease-max <s>', 'largest update lease granted', int, 7200)
    .option('--metrics <addr:port>', 'serve Prometheus metrics at http://ADDR:PORT/metrics')
    .option(
      '--advertise <host:addr>',
      'server name and address published in NS/SRV/A/AAAA (repeatable; needed when listening on 0.0.0.0)',
      collect,
      [],
    )
    .option(
      '--stun <addr[:port]>',
      'advertise a STUN server for agents behind NATs as SRV _stun._udp.ZONE (repeatable; RFC 8489 section 8)',
      collect,
      [],
    )
    .option(
      '--turn <addr[:port]>',
      'advertise a TURN relay for agents behind symmetric NATs as SRV _turn._udp.ZONE (repeatable; RFC 5928)',
      collect,
      [],
    )
    .option(
      '--turn-secret-file <file>',
      "the TURN server's static-auth-secret (coturn use-auth-secret): users get ephemeral credentials by signed TXT query",
    )
    .option('--turn-credential-ttl <s>', 'lifetime of those credentials', int, 86400)
    .option('--hostmaster <name>', 'SOA RNAME (default hostmaster.ZONE)')
    .option('--ttl <s>', 'TTL of SOA, NS, the server address and discovery SRV records', int, 300)
    .option('--negative-ttl <s>', 'SOA MINIMUM, the negative-caching TTL (RFC 2308)', int, 60)
    .option(
      '--fudge <s>',
      'TSIG fudge: written in signed responses, and the widest clock difference accepted (RFC 8945 5.2.3)',
      int,
      300,
    )
    .option(
      '--tsig-replay-cache <n>',
      'MACs of signed requests remembered for the fudge window against replays (~150 bytes each)',
      int,
      200000,
    )
    .option('--tcp-idle-timeout <ms>', 'close idle TCP/TLS connections after this long (RFC 7766)', int, 10000)
    .option(
      '--max-connections <n>',
      'open connections per TCP or TLS listener (file descriptors: see ulimit -n)',
      int,
      1000,
    )
    .option('--max-update-records <n>', 'records (prerequisites + updates) one UPDATE may carry', int, 100)
    .option('--max-records <n>', 'records an account may hold (per account: autotunnel account limit)', int, 1000)
    .option('--require-lease', 'refuse UPDATEs that add records without an update lease (RFC 9664)')
    .option(
      '--max-connections-per-source <n>',
      'open connections one source address may hold per TCP or TLS listener',
      int,
      64,
    )
    .option('--tls-handshake-timeout <ms>', 'close a TLS connection whose handshake is not done by then', int, 5000)
    .option(
      '--tcp-message-timeout <ms>',
      'close a TCP/TLS connection when a message is not complete this long after its first byte',
      int,
      5000,
    )
    .addOption(
      new Option('--sync <mode>', 'SQLite synchronous: full survives power loss, normal survives a crash')
        .choices(['full', 'normal'])
        .default('full'),
    )
    // notify (LLQ, DNS Push): src/server/notify-service.ts
    .option('--llq-lease-min <s>', 'smallest LLQ lease granted (RFC 8764)', int, 900)
    .option('--llq-lease-max <s>', 'largest LLQ lease granted', int, 7200)
    .option(
      '--llq-resend-ms <ms>',
      'first retransmission of an unacknowledged LLQ event (doubles; 3 sends in all)',
      int,
      2000,
    )
    .option('--watch-limit-client <n>', 'live LLQs + Push subscriptions one source address may hold', int, 1000)
    .option('--watch-limit-user <n>', 'live LLQs + Push subscriptions one account key may hold', int, 1000)
    .option(
      '--watch-limit-anonymous <n>',
      'live LLQs + Push subscriptions without a key, all sources together (default: a tenth of the total)',
      int,
    )
    .option('--watch-limit-total <n>', 'live LLQs + Push subscriptions the server holds', int, 200000)
    .option('--push-keepalive-ms <ms>', 'DSO keepalive interval asked of DNS Push clients (RFC 8490)', int, 60000)
    .option(
      '--push-plain-tcp',
      'also serve DNS Push on plain TCP --listen ports (tests, benchmarks; RFC 8765 wants TLS)',
    )
    .addOption(
      new Option('--log-level <level>', 'log level (JSON on stderr)').choices(['debug', 'info', 'warn', 'error']),
    )
    .action(async (o) => {
      const m = await import('../server/run.js')
      if (o.data === undefined && o.store === undefined && !process.env.AUTOTUNNEL_STORE)
        throw new Error('autotunnel server needs --data DIR (SQLite) or --store postgres://... (or AUTOTUNNEL_STORE)')
      if ((o.tlsCert === undefined) !== (o.tlsKey === undefined))
        throw new Error('--tls-cert and --tls-key go together')
      await m.runServer(o)
    })
}
