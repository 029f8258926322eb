// `autotunnel up` as the README has a user start it, in a lab host: no --state (the lab gives each node its own
// default state directory, Lab.stateDirOf), no resolver flags (the agent sets the node's own /etc/resolv.conf,
// /etc/netns/NS/resolv.conf, lab/etc.ts), and the clients (`status`, `down`) found the same way.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Lab, LabProcess } from '../../lab/index.js'
import { pidAlive } from '../../lab/sh.js'
import { type LabServer, MAIN, SERVER_ADDR, waitFor } from './agent-helpers.js'

export interface ReadmePeer {
  name: string
  ula: string | null
}
export interface ReadmeStatus {
  identity: { ula: string }
  peers: ReadmePeer[]
  server: { updateServer?: string | null; advertised?: string | null; bootstrap?: string | null }
  datapath: { resolver: { error: string | null; system: { state: string; mode: string; detail: string } } }
}

/**
 * `autotunnel up --server SERVER_ADDR --hostname HOST --key-file ... --ca ...` in `host`, with `--domain` only when
 * `domain` is given (without it the agent takes the key file's domain), then `extra`.
 */
export function upAsReadme(
  lab: Lab,
  srv: LabServer,
  host: string,
  opts: { domain?: string; extra?: string[] } = {},
): LabProcess {
  return lab.spawn(
    host,
    [
      'node',
      MAIN,
      'up',
      '--server',
      SERVER_ADDR,
      ...(opts.domain ? ['--domain', opts.domain] : []),
      '--hostname',
      host,
      '--key-file',
      srv.keyFile,
      '--ca',
      join(srv.data, 'tls.crt'),
      '--log-level',
      'info',
      ...(opts.extra ?? []),
    ],
    { logName: `agent-${host}` },
  )
}

/** `autotunnel status --json` in `host` (its default state directory); undefined while no agent answers. */
export async function hostStatus(lab: Lab, host: string): Promise<ReadmeStatus | undefined> {
  const r = await lab.exec(host, ['node', MAIN, 'status', '--json'])
  if (r.code !== 0) return undefined
  const s = JSON.parse(r.stdout) as ReadmeStatus & { running?: boolean }
  return s.running === false ? undefined : s
}

/** The node's own /etc/resolv.conf, as its processes see it. */
export const resolvConf = (lab: Lab, host: string): Promise<Buffer> =>
  readFile(join('/etc/netns', lab.netnsOf(host), 'resolv.conf'))

export async function waitGone(p: LabProcess): Promise<void> {
  await waitFor(`pid ${p.pid} to exit`, async () => !pidAlive(p.pid), 10_000, 50)
}
