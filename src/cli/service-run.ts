// `autotunnel install-service`: argument split, unit text, where it goes (src/cli/service.ts, service-unit.ts).
import { execFileSync } from 'node:child_process'
import { existsSync, realpathSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { renderUnit, SERVICE, type ServiceKind, ServiceUsageError } from './service-unit.js'

export interface InstallArgs {
  readonly kind: ServiceKind
  readonly args: string[]
  readonly dryRun: boolean
  readonly output: string | undefined
  readonly user: string | undefined
  readonly exec: string | undefined
  readonly now: boolean
}

/** Our options up to --agent/--server, the service's after it. */
export function parseInstallArgs(argv: readonly string[]): InstallArgs {
  const at = argv.findIndex((a) => a === '--agent' || a === '--server')
  if (at < 0) throw new ServiceUsageError('give --agent or --server, followed by the options of `up` or `server`')
  const ours = argv.slice(0, at)
  let output: string | undefined
  let user: string | undefined
  let exec: string | undefined
  let dryRun = false
  let now = false
  for (let i = 0; i < ours.length; i++) {
    const a = ours[i]
    const val = (): string => {
      const v = ours[++i]
      if (v === undefined || v.startsWith('--')) throw new ServiceUsageError(`${a} needs a value`)
      return v
    }
    if (a === '--dry-run') dryRun = true
    else if (a === '--now') now = true
    else if (a === '--output') output = val()
    else if (a === '--user') user = val()
    else if (a === '--exec') exec = val()
    else throw new ServiceUsageError(`unknown option ${a} before --agent/--server (see install-service --help)`)
  }
  if (dryRun && (output || now)) throw new ServiceUsageError('--dry-run writes nothing: drop --output/--now')
  return {
    kind: argv[at] === '--agent' ? 'agent' : 'server',
    args: argv.slice(at + 1),
    dryRun,
    output,
    user,
    exec,
    now,
  }
}

export async function runInstallService(argv: readonly string[]): Promise<void> {
  const a = parseInstallArgs(argv)
  const entry = a.exec ?? realpathSync(process.argv[1] ?? '')
  const text = renderUnit({
    kind: a.kind,
    exec: a.exec ? [a.exec] : [process.execPath, entry],
    args: a.args,
    ...(a.user ? { user: a.user } : {}),
  })
  if (a.dryRun) {
    process.stdout.write(text)
    return
  }
  const unit = SERVICE[a.kind].unit
  const path = a.output ?? join('/etc/systemd/system', unit)
  await writeFile(path, text, { mode: 0o644 })
  process.stdout.write(`wrote ${path}\n`)
  const systemd = existsSync('/run/systemd/system')
  if (a.now) {
    if (!systemd) throw new Error('systemd is not running here: cannot enable the unit (it is written)')
    execFileSync('systemctl', ['daemon-reload'], { stdio: 'inherit' })
    execFileSync('systemctl', ['enable', '--now', unit], { stdio: 'inherit' })
    process.stdout.write(`enabled and started ${unit}\n`)
  } else if (!a.output) process.stdout.write(`next: systemctl daemon-reload && systemctl enable --now ${unit}\n`)
}
