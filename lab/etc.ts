// Each lab node's own /etc files, as on a machine of its own: `ip netns exec NS` bind-mounts every file under
// /etc/netns/NS/ over the same name in /etc (ip-netns(8)), so a process in the node, the agent included, reads and
// writes the node's resolv.conf, never the machine's. Made before any process starts in the node (a bind mount
// happens only for files that exist at exec time), removed with the run.
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { RunState } from './state.js'

export const NETNS_ETC = '/etc/netns'

/** The node's resolv.conf: the lab's name server (the `server` host, where tests run `autotunnel server` on :53). */
export function nodeResolvConf(s: RunState): string {
  const server = s.topology.internet.find((h) => h.name === 'server')
  return [
    `# lab run ${s.name}: this node's own resolv.conf (${NETNS_ETC}/<netns>/resolv.conf, bind-mounted by ip netns exec)`,
    ...(server ? [`nameserver ${server.address}`] : []),
    'options timeout:1 attempts:2',
    '',
  ].join('\n')
}

export function writeEtcOverlays(s: RunState): void {
  const text = nodeResolvConf(s)
  for (const n of Object.values(s.nodes)) {
    const dir = join(NETNS_ETC, n.ns)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'resolv.conf'), text, { mode: 0o644 })
  }
}

export function removeEtcOverlays(s: RunState): void {
  for (const n of Object.values(s.nodes)) rmSync(join(NETNS_ETC, n.ns), { recursive: true, force: true })
}

/** Where concurrent lab runs register what they hold on the machine itself (holdOnHost). */
const HOLDS_DIR = '/run/autotunnel-lab/holds'

/**
 * Something a lab test needs on the machine itself, not in a node: a mount point for a node's overlay
 * (/etc/krb5.keytab: ip netns exec binds only over files that exist) or a local user. Runs that overlap share it:
 * each registers its pid; the first makes it with `make` (which returns false when it was there already: then
 * nobody removes it) and the last to release it removes it with `remove`. A holder that died is not counted.
 * Without this one run removed the keytab mount point while another was still binding over it.
 */
export function holdOnHost(name: string, make: () => boolean, remove: () => void): { release: () => void } {
  const dir = join(HOLDS_DIR, name)
  mkdirSync(dir, { recursive: true })
  const mine = join(dir, String(process.pid))
  const alive = (): string[] =>
    readdirSync(dir).filter((f) => {
      if (!/^\d+$/.test(f)) return false
      try {
        process.kill(Number(f), 0)
        return true
      } catch {
        rmSync(join(dir, f), { force: true })
        return false
      }
    })
  const made = join(dir, 'made')
  if (alive().length === 0 && make()) writeFileSync(made, '')
  writeFileSync(mine, '')
  return {
    release: () => {
      rmSync(mine, { force: true })
      if (alive().length === 0 && existsSync(made)) {
        rmSync(made, { force: true })
        remove()
      }
    },
  }
}
