import type { Command } from 'commander'

// `autotunnel lab ...`: the network lab (docs/lab.md). Implementations live in lab/cli.ts, imported lazily.
const impl = () => import('../../lab/cli.js').catch(notInstalled)

/** `make install` ships the program, not the lab (lab/ and test/ stay in the source tree). */
export function notInstalled(e: unknown): never {
  if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND')
    throw new Error(
      'the lab and the demo are part of the source tree and are not installed: run them from a checkout ' +
        '(`make build`, then bin/autotunnel lab ... or make demo)',
    )
  throw e
}

export function register(program: Command): void {
  const lab = program
    .command('lab')
    .description('network lab: NAT gateways, roaming and loss in network namespaces (needs root)')
  lab
    .command('up')
    .description('build a topology and print its hosts, sites and addresses')
    .option('--name <run>', 'run name (default: random)')
    .option('--topology <standard|file>', "'standard' or a JSON topology file", 'standard')
    .option('--sites <list>', 'build only these sites, comma-separated')
    .option('--json', 'print JSON')
    .action(async (o) => (await impl()).up(o))
  lab
    .command('show <run>')
    .description("print a run's hosts, sites and addresses")
    .option('--json', 'print JSON')
    .action(async (run, o) => (await impl()).show(run, o))
  lab
    .command('exec <run> <host> [cmd...]')
    .description('run a command inside a host, site gateway (site name) or core: lab exec RUN HOST -- CMD...')
    .action(async (run, host, cmd: string[]) => {
      process.exitCode = await (await impl()).exec(run, host, cmd)
    })
  lab
    .command('move <run> <host> <site>')
    .description("move a host to another site (new address; the host's sockets stay open)")
    .action(async (run, host, site) => (await impl()).move(run, host, site))
  lab
    .command('restart-gateway <run> <site>')
    .description("restart a site's gateway: mappings and conntrack state lost")
    .action(async (run, site) => (await impl()).restartGateway(run, site))
  lab
    .command('set-public-ip <run> <site> <addr>')
    .description("change a site's public address")
    .action(async (run, site, addr) => (await impl()).setPublicIp(run, site, addr))
  lab
    .command('loss <run> <link> <percent>')
    .description('drop PERCENT % of packets on a link (site: its uplink; host: its access link); 0 removes')
    .option('--direction <both|up|down>', 'up: from the host or site, down: towards it', 'both')
    .action(async (run, link, percent, o) => (await impl()).loss(run, link, percent, o))
  lab
    .command('cut <run> <link>')
    .description('drop everything on a link until restore')
    .action(async (run, link) => (await impl()).cut(run, link))
  lab
    .command('restore <run> <link>')
    .description('undo cut')
    .action(async (run, link) => (await impl()).restore(run, link))
  lab
    .command('down <run>')
    .description('remove a run: processes, namespaces, veths, run directory')
    .option('--keep-logs', 'keep the run directory (logs)')
    .action(async (run, o) => (await impl()).down(run, o))
  lab
    .command('clean')
    .description('remove runs whose owning process died, and the logs kept by down --keep-logs or failed tests')
    .action(async () => (await impl()).clean())
  lab
    .command('ls')
    .description('list lab runs')
    .option('--json', 'print JSON')
    .action(async (o) => (await impl()).ls(o))
}
