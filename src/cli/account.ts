import { type Command, Option } from 'commander'

// `autotunnel account add|list|remove|passwd|revoke-host`: accounts live in the server's store (DIR/autotunnel.sqlite, or --store postgres://...) and a
// running server sees changes without a restart. The implementation is imported lazily inside each action.
export function register(program: Command): void {
  const account = program
    .command('account')
    .description('manage the DNS service accounts (one subdomain + TSIG key each)')
  const algorithm = () =>
    new Option('--algorithm <alg>', 'TSIG algorithm of the key')
      .choices(['hmac-sha256', 'hmac-sha512', 'hmac-sha384', 'hmac-sha224', 'hmac-sha1', 'hmac-md5'])
      .default('hmac-sha256')

  account
    .command('add <user>')
    .description('create USER.ZONE and its TSIG key (from a password on stdin, else a random 256-bit key)')
    .option('--data <dir>', 'server data directory (SQLite store)')
    .option('--store <url>', 'postgres://... shared by server nodes, or sqlite:DIR (default: $AUTOTUNNEL_STORE)')
    .requiredOption('--zone <zone>', 'the provider zone, e.g. members.example')
    .option(
      '--password-stdin',
      'derive the key from a password read from stdin (PBKDF2-HMAC-SHA256, see docs/server.md)',
    )
    .option('--json', 'print {"user","domain","keyName","algorithm","secret"}')
    .option('-o, --output <file>', 'write that JSON to FILE with mode 0600 (the key file `up --key-file` reads)')
    .addOption(algorithm())
    .action(
      async (
        user: string,
        o: {
          data?: string
          store?: string
          zone: string
          passwordStdin?: boolean
          json?: boolean
          algorithm: string
          output?: string
        },
      ) => {
        const m = await import('../server/account-cli.js')
        await m.accountAdd(user, o)
      },
    )

  account
    .command('list')
    .description('list accounts')
    .option('--data <dir>', 'server data directory (SQLite store)')
    .option('--store <url>', 'postgres://... shared by server nodes, or sqlite:DIR (default: $AUTOTUNNEL_STORE)')
    .option('--zone <zone>', 'the provider zone (checked against the store)')
    .option('--json', 'print a JSON array')
    .action(async (o: { data?: string; store?: string; zone?: string; json?: boolean }) => {
      const m = await import('../server/account-cli.js')
      await m.accountList(o)
    })

  account
    .command('remove <user>')
    .description("remove an account and every record under the user's domain")
    .option('--data <dir>', 'server data directory (SQLite store)')
    .option('--store <url>', 'postgres://... shared by server nodes, or sqlite:DIR (default: $AUTOTUNNEL_STORE)')
    .option('--zone <zone>', 'the provider zone (checked against the store)')
    .action(async (user: string, o: { data?: string; store?: string; zone?: string }) => {
      const m = await import('../server/account-cli.js')
      await m.accountRemove(user, o)
    })

  account
    .command('revoke-host <user> <hostname>')
    .description(
      "revoke one of the user's hosts: delete its IKE key record and its other records (watchers are notified); the server takes no more records or SSO certificates for it",
    )
    .option('--data <dir>', 'server data directory (SQLite store)')
    .option('--store <url>', 'postgres://... shared by server nodes, or sqlite:DIR (default: $AUTOTUNNEL_STORE)')
    .option('--zone <zone>', 'the provider zone (checked against the store)')
    .action(async (user: string, hostname: string, o: { data?: string; store?: string; zone?: string }) => {
      const m = await import('../server/account-cli.js')
      await m.accountRevokeHost(user, hostname, o)
    })

  account
    .command('unrevoke-host <user> <hostname>')
    .description(
      'let a revoked host name publish its records and enrol for SSO certificates again (docs/ike.md, docs/sso.md)',
    )
    .option('--data <dir>', 'server data directory (SQLite store; also where the SSO CA keys are)')
    .option('--store <url>', 'postgres://... shared by server nodes, or sqlite:DIR (default: $AUTOTUNNEL_STORE)')
    .option('--zone <zone>', 'the provider zone (checked against the store)')
    .action(async (user: string, hostname: string, o: { data?: string; store?: string; zone?: string }) => {
      const m = await import('../server/account-cli.js')
      await m.accountUnrevokeHost(user, hostname, o)
    })

  account
    .command('limit <user>')
    .description('set how many records the user may hold (the server default without --max-records)')
    .option('--data <dir>', 'server data directory (SQLite store)')
    .option('--store <url>', 'postgres://... shared by server nodes, or sqlite:DIR (default: $AUTOTUNNEL_STORE)')
    .option('--zone <zone>', 'the provider zone (checked against the store)')
    .option('--max-records <n>', 'records at or below USER.ZONE; more is REFUSED', (v: string) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 0) throw new TypeError(`not a non-negative integer: ${v}`)
      return n
    })
    .action(async (user: string, o: { data?: string; store?: string; zone?: string; maxRecords?: number }) => {
      const m = await import('../server/account-cli.js')
      await m.accountLimit(user, o)
    })

  account
    .command('passwd <user>')
    .description("replace the user's key: derived from a password on stdin, or random without --password-stdin")
    .option('--data <dir>', 'server data directory (SQLite store)')
    .option('--store <url>', 'postgres://... shared by server nodes, or sqlite:DIR (default: $AUTOTUNNEL_STORE)')
    .option('--zone <zone>', 'the provider zone (checked against the store)')
    .option('--password-stdin', 'derive the key from a password read from stdin')
    .option('--json', 'print {"user","domain","keyName","algorithm","secret"}')
    .option('-o, --output <file>', 'write that JSON to FILE with mode 0600 (the key file `up --key-file` reads)')
    .addOption(algorithm())
    .action(
      async (
        user: string,
        o: {
          data?: string
          store?: string
          zone?: string
          passwordStdin?: boolean
          json?: boolean
          algorithm: string
          output?: string
        },
      ) => {
        const m = await import('../server/account-cli.js')
        await m.accountPasswd(user, o)
      },
    )
}
