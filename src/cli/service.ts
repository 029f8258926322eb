import type { Command } from 'commander'

// `autotunnel install-service --agent ... | --server ...`: a hardened systemd unit (src/cli/service-unit.ts).
export function register(program: Command): void {
  program
    .command('install-service')
    .description('write a hardened systemd unit for the agent (--agent OPTIONS) or the DNS service (--server OPTIONS)')
    .usage('[--dry-run | --output FILE] [--user NAME] [--now] (--agent | --server) [options of up/server...]')
    .helpOption('-h, --help', 'show this help')
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .addHelpText(
      'after',
      `
Everything after --agent is given to \`autotunnel up\`, everything after --server to \`autotunnel server\`; the
state directory is the unit's (/var/lib/autotunnel, /var/lib/autotunnel-server), so leave out --state/--data.
Secret files (--key-file, --relay-password-file, --ca; --tls-key, --tls-cert, --turn-secret-file) are passed as
systemd credentials. Before --agent/--server:
  --dry-run        print the unit instead of writing it
  --output FILE    write it to FILE (default /etc/systemd/system/autotunnel-agent.service or -server.service)
  --user NAME      run as NAME instead of a dynamic user
  --exec PATH      the autotunnel entry point in ExecStart (default: this one, run by this node)
  --now            then systemctl daemon-reload and enable --now the unit

Examples:
  $ autotunnel install-service --dry-run --agent --server ns.example.net --domain alice.members.example \\
      --hostname desktop --key-file /etc/autotunnel/alice.key.json
  $ sudo autotunnel install-service --now --server --zone members.example --listen 0.0.0.0:53 \\
      --tls-listen 0.0.0.0:853
  $ systemd-analyze security autotunnel-agent.service`,
    )
    .action(async (_args: string[], _o: unknown, cmd: Command) => {
      const m = await import('./service-run.js')
      await m.runInstallService(cmd.parent?.args.slice(1) ?? [])
    })
}
