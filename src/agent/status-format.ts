// Human-readable `autotunnel status` (the JSON form is the control socket's answer as is).

type Obj = Record<string, unknown>

const obj = (v: unknown): Obj => (v && typeof v === 'object' ? (v as Obj) : {})

function ssoLine(x: Obj): string {
  return `sso         ${x.state} realm ${x.realm}, KDC ${x.kdc}, client certificate until ${x.clientCertNotAfter ?? '-'}, realms ${((x.realms as string[] | undefined) ?? []).join(' ') || '-'}${x.lastError ? ` (last error: ${x.lastError})` : ''}`
}

/** Our STUN result (docs/punch.md): reflexive endpoint and NAT mapping kind, or why there is none. */
function stunLine(st: Obj): string {
  const r = st.reflexive ? obj(st.reflexive) : undefined
  const servers = ((st.servers as Obj[] | undefined) ?? []).map((x) => `${x.address}:${x.port}`).join(' ')
  if (!r) return `stun        ${st.probing ? 'probing' : st.probedAt ? 'no answer' : 'not used (mapped or public)'}`
  return `stun        ${r.address}:${r.port}, mapping ${st.mapping ?? 'unknown'} (servers ${servers || '-'})`
}

/** Our TURN allocation (docs/relay.md): relayed address, lifetime left, permissions and channels. */
function relayLine(r: Obj): string {
  const a = r.allocation ? obj(r.allocation) : undefined
  if (!a)
    return `relay       ${r.wanted ? `allocating${r.lastError ? ` (last error: ${r.lastError})` : ''}` : 'not needed'}`
  const chans = ((a.channels as Obj[] | undefined) ?? []).map((c) => `${c.peer}=${c.channel}`).join(' ')
  return `relay       ${a.relayed} via ${a.server}, ${a.lifetimeLeftSec} s left, permissions ${((a.permissions as string[] | undefined) ?? []).join(' ') || '-'}, channels ${chans || '-'}`
}

/**
 * The local resolver and the system resolver pointed at it (docs/resolver.md): where it listens and how many
 * queries it answered, or why it does not run; then whether names resolve system-wide, and how, or why not.
 */
export function resolverLines(r: Obj): string[] {
  const c = obj(r.counters)
  const f = r.forwarder ? obj(r.forwarder) : undefined
  const sys = obj(r.system)
  const main = r.error
    ? `resolver    NOT RUNNING: ${r.error}`
    : r.counters
      ? `resolver    ${r.address}:${r.port}, ${c.queries ?? 0} queries, ${c.answered ?? 0} answered, ${c.nxdomain ?? 0} NXDOMAIN${f ? `, ${f.forwarded} forwarded (${f.timeouts} timeouts)` : ''}`
      : 'resolver    off (--no-resolver)'
  const state = sys.state === 'set' ? '' : sys.state === 'failed' ? 'FAILED: ' : `${sys.state}`
  const system =
    sys.state === 'off' ? 'system DNS  not changed (--system-resolver off)' : `system DNS  ${state}${sys.detail ?? ''}`
  return [main, system]
}

/**
 * One row of `autotunnel status`'s peer table (the rows Datapath.status() returns): the peer's IKE auth method
 * (signature, psk, none) follows its last handshake, '-' with no IKE SA.
 */
export function formatPeerRow(p: Record<string, unknown>): string {
  const kb = (n: unknown): string => `${((Number(n) || 0) / 1024).toFixed(1)} KiB`
  const hs = typeof p.lastHandshake === 'string' ? p.lastHandshake.replace(/\.\d+Z$/, 'Z') : 'never'
  return (
    `${String(p.name).padEnd(12)} ${String(p.ula ?? '-').padEnd(39)} ${String(p.endpoint ?? '-').padEnd(21)} ` +
    `${String(p.path ?? '-')}  handshake ${hs}  auth ${typeof p.auth === 'string' ? p.auth : '-'}  in ${kb(p.bytesIn)} out ${kb(p.bytesOut)}` +
    `${p.lastError ? `  (${p.lastError})` : ''}`
  )
}

/** The update server: found or not, and what went wrong last (a TLS failure is not "not found"). */
export function serverState(srv: Obj): string {
  const err = srv.lastError ? obj(srv.lastError) : undefined
  const via = typeof srv.updateServer === 'string' ? srv.updateServer : undefined
  const adv = typeof srv.advertised === 'string' ? ` (advertised ${srv.advertised} unreachable)` : ''
  if (!via) return err ? `not found: ${err.message}` : 'not found yet'
  return err ? `${via} found${adv}, ${err.message}` : `${via}${adv}`
}

export function formatStatus(s: Obj): string {
  const id = obj(s.identity)
  const net = obj(s.network)
  const primary = obj(net.primary)
  const reach = obj(s.reachability)
  const ep = obj(reach.endpoint)
  const pm = s.portMapping ? obj(s.portMapping) : undefined
  const ext = obj(pm?.external)
  const pub = obj(s.published)
  const udp = obj(s.udp)
  const srv = obj(s.server)
  const lines = [
    `agent       ${s.hostname}.${s.domain}  (pid ${s.pid}, up ${s.uptimeSec} s, version ${s.version})`,
    `ULA         ${id.ula}`,
    `label       ${id.label}  (EUI-64 ${id.eui64} from ${id.interface || 'random'})`,
    `interface   ${primary.ifname ?? '-'}  ${primary.ipv4 ?? '-'}  gateway ${primary.gateway ?? '-'}`,
    `addresses   ${((net.addresses as Obj[] | undefined) ?? []).map((a) => a.address).join(' ') || '-'}`,
    pm
      ? `port map    ${pm.protocol} ${ext.address}:${ext.port} via ${pm.gateway}, lifetime ${pm.lifetimeSec} s, ${pm.lifetimeLeftSec ?? 'permanent'} s left`
      : `port map    none (${typeof s.portMapper === 'string' ? s.portMapper : obj(s.portMapper).state})`,
    `reachable   ${s.reachability ? `${ep.address}:${ep.port} (${reach.nat})` : 'not yet'}`,
    ...(s.stun ? [stunLine(obj(s.stun))] : []),
    ...(obj(s.datapath).relay ? [relayLine(obj(obj(s.datapath).relay))] : []),
    ...(obj(s.datapath).resolver ? resolverLines(obj(obj(s.datapath).resolver)) : []),
    ...(obj(s.datapath).sso ? [ssoLine(obj(obj(s.datapath).sso))] : []),
    `udp         port ${udp.port}, ${udp.rxDatagrams} datagrams received${udp.lastFrom ? `, last from ${udp.lastFrom}` : ''}`,
    `server      ${serverState(srv)} (bootstrap ${srv.bootstrap ?? '-'}, key ${srv.keyName ?? '-'}), ${srv.updates ?? 0} updates, ${srv.failures ?? 0} failures`,
    `published   ${pub.state}, lease ${pub.leaseSec ?? '-'} s, ${pub.updates} updates, ${pub.failures} failures${pub.lastError ? ` (last error: ${pub.lastError})` : ''}`,
  ]
  for (const r of (pub.records as Obj[] | undefined) ?? []) lines.push(`  ${r.text}   [lease ${r.leaseLeftSec} s left]`)
  const watchers = ((s.watchers as unknown[] | undefined) ?? []).map(obj)
  lines.push(`watchers    ${watchers.length ? '' : 'none'}`)
  for (const w of watchers) {
    const recs = (w.records as string[] | undefined) ?? []
    lines.push(
      `  ${w.name} ${w.type} via ${w.via} (${w.purpose}): ${recs.length} records${w.lastError ? ` (last error: ${w.lastError})` : ''}`,
    )
    for (const r of recs) lines.push(`    ${r}`)
  }
  const peers = (s.peers as unknown[] | undefined) ?? []
  lines.push(`peers       ${peers.length ? '' : 'none'}`)
  for (const p of peers) lines.push(`  ${formatPeerRow(obj(p))}`)
  return `${lines.join('\n')}\n`
}
