// Implementations of the `autotunnel lab ...` subcommands (registered in src/cli/lab.ts, imported lazily).
import { spawn } from 'node:child_process'
import { Lab, type LabSummary } from './lab.js'
import type { LossDirection } from './state.js'

function out(line: string): void {
  process.stdout.write(`${line}\n`)
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

export function printSummary(s: LabSummary): void {
  out(`lab run ${s.name}  (state and logs: ${s.dir})`)
  out(`core  netns ${s.core.netns}  router ${s.core.router}  STUN ${s.core.stun.join(' + ')} (ports 3478/3479)`)
  out('')
  out(
    table([
      ['SITE', 'NAT', 'PUBLIC IP', 'LAN', 'GATEWAY', 'NETNS'],
      ...s.sites.map((x) => {
        const protos = x.upnp ? (['natpmp', 'pcp', 'upnp'] as const).filter((p) => x.upnp?.[p]).join('+') : ''
        return [x.name, protos ? `${x.nat} (${protos})` : x.nat, x.publicIp, x.lan, x.gateway, x.netns]
      }),
    ]),
  )
  out('')
  out(
    table([
      ['HOST', 'SITE', 'ADDRESS', 'PUBLIC IP', 'NETNS'],
      ...s.hosts.map((h) => [h.name, h.site ?? '(internet)', h.address, h.publicIp, h.netns]),
    ]),
  )
  out('')
  out(`shell in a host: autotunnel lab exec ${s.name} HOST -- bash    remove: autotunnel lab down ${s.name}`)
}

export async function up(opts: { name?: string; topology?: string; sites?: string; json?: boolean }): Promise<void> {
  const lab = await Lab.up({
    ...(opts.name ? { name: opts.name } : {}),
    topology: opts.topology ?? 'standard',
    ...(opts.sites ? { sites: opts.sites.split(',').filter(Boolean) } : {}),
    owned: false,
  })
  if (opts.json) out(JSON.stringify(lab.summary(), null, 2))
  else printSummary(lab.summary())
}

export function show(run: string, opts: { json?: boolean }): void {
  const s = Lab.attach(run).summary()
  if (opts.json) out(JSON.stringify(s, null, 2))
  else printSummary(s)
}

/** Runs CMD in HOST with this terminal's stdio; resolves to its exit status. */
export function exec(run: string, host: string, cmd: string[]): Promise<number> {
  const argv = Lab.attach(run).argv(host, cmd.length ? cmd : [process.env.SHELL ?? '/bin/sh'])
  // Ctrl-C belongs to the command (an interactive shell ignores it); we only wait for the command to end.
  const ignore = (): void => {}
  process.on('SIGINT', ignore)
  return new Promise<number>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: 'inherit' })
    child.on('error', reject)
    child.on('close', (code, signal) => resolve(code ?? (signal === 'SIGINT' ? 130 : 137)))
  }).finally(() => process.off('SIGINT', ignore))
}

export async function move(run: string, host: string, site: string): Promise<void> {
  const lab = Lab.attach(run)
  await lab.move(host, site)
  out(`${host} is now in ${site} with address ${lab.addressOf(host)}`)
}

export async function restartGateway(run: string, site: string): Promise<void> {
  await Lab.attach(run).restartGateway(site)
  out(`gateway of ${site} restarted`)
}

export async function setPublicIp(run: string, site: string, addr: string): Promise<void> {
  await Lab.attach(run).setPublicIp(site, addr)
  out(`${site} public address is now ${addr}`)
}

export async function loss(run: string, link: string, percent: string, opts: { direction?: string }): Promise<void> {
  const p = Number(percent)
  const direction = (opts.direction ?? 'both') as LossDirection
  if (!['both', 'up', 'down'].includes(direction)) throw new Error(`--direction must be both, up or down`)
  await Lab.attach(run).loss(link, p, { direction })
  out(p > 0 ? `link ${link}: ${p}% loss (${direction})` : `link ${link}: no loss`)
}

export async function cut(run: string, link: string): Promise<void> {
  await Lab.attach(run).cut(link)
  out(`link ${link} cut`)
}

export async function restore(run: string, link: string): Promise<void> {
  await Lab.attach(run).restore(link)
  out(`link ${link} restored`)
}

export async function down(run: string, opts: { keepLogs?: boolean }): Promise<void> {
  await Lab.attach(run).down({ keepLogs: opts.keepLogs ?? false })
  out(`lab run ${run} removed`)
}

export function ls(opts: { json?: boolean }): void {
  const runs = Lab.list()
  if (opts.json) {
    out(JSON.stringify(runs, null, 2))
    return
  }
  if (runs.length === 0) {
    out('no lab runs')
    return
  }
  out(
    table([
      ['RUN', 'STATE', 'CREATED', 'OWNER', 'DIR'],
      ...runs.map((r) => [
        r.name,
        r.live ? 'live' : 'stale',
        r.createdAt,
        r.owner === null ? 'cli' : `pid ${r.owner}`,
        r.dir,
      ]),
    ]),
  )
}

export function clean(): void {
  const stale = Lab.gc()
  const logs = Lab.cleanLogs()
  out(
    `removed ${stale.length} abandoned run(s)${stale.length ? ` (${stale.join(', ')})` : ''}, ${logs.length} kept log dir(s)`,
  )
}
