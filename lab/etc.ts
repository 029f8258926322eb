// Each lab node's own /etc files, as on a machine of its own: `ip netns exec NS` bind-mounts every file under
// /etc/netns/NS/ over the same name in /etc (ip-netns(8)), so a process in the node, the agent included, reads and
// writes the node's resolv.conf, never the machine's. Made before any process starts in the node (a bind mount
// happens only for files that exist at exec time), removed with the run.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
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
