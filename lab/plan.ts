// From a resolved topology to what the kernel gets: namespace and interface names, veth pairs, and one shell
// script per namespace (sysctls, `ip -batch`, nft). Bring-up runs the scripts of all namespaces in parallel.
//
//   server ──────────────┐                      (internet hosts: /32 on <tag>-eth0, default via the core)
//   home gw ── <tag>-uN ─ core (192.0.2.254, STUN 192.0.2.1 + .2) ── ...
//     └─ <tag>-br ── <tag>-hI ═ <tag>-eth0 desktop            (one bridge per site, one veth per host)
//   office: core ── office-cgn (carrier NAT) ── <tag>-lan ═ <tag>-wan ── office gw ── workstation
import { gatewayRuleset } from './nft.js'
import { nsName, type RunState } from './state.js'
import { gatewayAddress, intToIp, parseCidr, type ResolvedTopology } from './topology.js'

export const dev = {
  core: (tag: string, i: number) => `${tag}-u${i}`,
  eth: (tag: string) => `${tag}-eth0`,
  wan: (tag: string) => `${tag}-wan`,
  cgnLan: (tag: string) => `${tag}-lan`,
  bridge: (tag: string) => `${tag}-br`,
  port: (tag: string, i: number) => `${tag}-h${i}`,
}

export type Site = ResolvedTopology['sites'][number]

export function siteOf(s: RunState, name: string): Site {
  const site = s.topology.sites.find((x) => x.name === name)
  if (!site) throw new Error(`no site ${name} in run ${s.name}`)
  return site
}

/** Namespace holding a site's public address: the carrier NAT for `double`, else the gateway. */
export function uplinkNode(site: Site): string {
  return site.nat === 'double' ? `${site.name}-cgn` : site.name
}

/** The initial state of a run (nothing built yet). */
export function planState(name: string, tag: string, dir: string, topo: ResolvedTopology, ownerPid: number | null) {
  const s: RunState = {
    version: 1,
    name,
    tag,
    dir,
    createdAt: new Date().toISOString(),
    ownerPid,
    topology: topo,
    nodes: { core: { ns: nsName(name, 'core'), role: 'core' } },
    coreDevs: {},
    hosts: {},
    sites: {},
    links: {},
    procs: [],
  }
  let uplink = 0
  let hostIndex = 0
  for (const h of topo.internet) {
    s.nodes[h.name] = { ns: nsName(name, h.name), role: 'internet' }
    s.coreDevs[h.name] = dev.core(tag, uplink++)
    s.hosts[h.name] = { site: null, address: h.address, index: hostIndex++ }
  }
  for (const site of topo.sites) {
    s.nodes[site.name] = { ns: nsName(name, site.name), role: 'gateway' }
    if (site.nat === 'double') s.nodes[`${site.name}-cgn`] = { ns: nsName(name, `${site.name}-cgn`), role: 'carrier' }
    s.coreDevs[site.name] = dev.core(tag, uplink++)
    s.sites[site.name] = { publicIp: site.wan }
    for (const h of site.hosts) {
      s.nodes[h.name] = { ns: nsName(name, h.name), role: 'host' }
      s.hosts[h.name] = { site: site.name, address: h.address!, index: hostIndex++ }
    }
  }
  return s
}

/** `ip -batch` lines, run in the root namespace, that create every veth pair and bridge directly in its namespaces. */
export function linkBatch(s: RunState): string {
  const t = s.tag
  const ns = (n: string) => s.nodes[n]!.ns
  const core = ns('core')
  const out: string[] = []
  for (const h of s.topology.internet) {
    out.push(`link add ${s.coreDevs[h.name]} netns ${core} type veth peer name ${dev.eth(t)} netns ${ns(h.name)}`)
  }
  for (const site of s.topology.sites) {
    const gw = ns(site.name)
    const up = ns(uplinkNode(site))
    out.push(`link add ${s.coreDevs[site.name]} netns ${core} type veth peer name ${dev.wan(t)} netns ${up}`)
    if (site.nat === 'double')
      out.push(`link add ${dev.cgnLan(t)} netns ${up} type veth peer name ${dev.wan(t)} netns ${gw}`)
    out.push(`link add ${dev.bridge(t)} netns ${gw} type bridge`)
    for (const h of site.hosts) {
      const i = s.hosts[h.name]!.index
      out.push(`link add ${dev.port(t, i)} netns ${gw} type veth peer name ${dev.eth(t)} netns ${ns(h.name)}`)
    }
  }
  return `${out.join('\n')}\n`
}

function script(sysctls: string[], batch: string[], nft?: string): string {
  const parts = ['set -e']
  // -e: the bridge-nf keys exist only while br_netfilter is loaded
  if (sysctls.length) parts.push(`sysctl -eqw ${sysctls.join(' ')}`)
  parts.push(`ip -batch - <<'EOF'\n${batch.join('\n')}\nEOF`)
  if (nft) parts.push(`nft -f - <<'EOF'\n${nft}EOF`)
  return `${parts.join('\n')}\n`
}

// With br_netfilter loaded, bridged frames between hosts of a site would otherwise cross the gateway's IP
// forward chain (policy drop).
const ROUTER_SYSCTLS = [
  'net.ipv4.ip_forward=1',
  'net.ipv4.conf.all.rp_filter=0',
  'net.ipv4.conf.default.rp_filter=0',
  'net.bridge.bridge-nf-call-iptables=0',
  'net.bridge.bridge-nf-call-ip6tables=0',
  'net.bridge.bridge-nf-call-arptables=0',
]

/** Commands that give a host (site or internet) its address and default route on a fresh `<tag>-eth0`. */
export function hostBatch(tag: string, address: string, prefixLen: number, via: string, onlink: boolean): string[] {
  const e = dev.eth(tag)
  return [
    `addr add ${address}/${prefixLen} dev ${e}`,
    `link set ${e} up`,
    `route add default via ${via} dev ${e}${onlink ? ' onlink' : ''}`,
  ]
}

/** One script per namespace, keyed by node name. */
export function nsScripts(s: RunState): Map<string, string> {
  const t = s.tag
  const topo = s.topology
  const router = topo.core.router
  const out = new Map<string, string>()
  const coreBatch = ['link set lo up', ...[router, ...topo.core.stun].map((a) => `addr add ${a}/32 dev lo`)]
  for (const h of topo.internet) {
    const d = s.coreDevs[h.name]!
    coreBatch.push(`link set ${d} up`, `route add ${h.address}/32 dev ${d}`)
    out.set(h.name, script([], ['link set lo up', ...hostBatch(t, h.address, 32, router, true)]))
  }
  for (const site of topo.sites) {
    const d = s.coreDevs[site.name]!
    const lan = parseCidr(site.lan)
    const gwAddr = gatewayAddress(site.lan)
    coreBatch.push(`link set ${d} up`, `route add ${site.wan}/32 dev ${d}`)
    if (site.nat === 'none') coreBatch.push(`route add ${site.lan} via ${site.wan} dev ${d} onlink`)
    const wanUp = [`addr add ${site.wan}/32 dev ${dev.wan(t)}`, `link set ${dev.wan(t)} up`]
    const defaultViaCore = `route add default via ${router} dev ${dev.wan(t)} onlink`
    const gwBatch = ['link set lo up']
    if (site.nat === 'double') {
      const carrier = parseCidr(site.carrier)
      const cgnAddr = gatewayAddress(site.carrier)
      const cgnBatch = [
        'link set lo up',
        ...wanUp,
        defaultViaCore,
        `addr add ${cgnAddr}/${carrier.prefixLen} dev ${dev.cgnLan(t)}`,
        `link set ${dev.cgnLan(t)} up`,
      ]
      const cgnNft = gatewayRuleset({
        wan: dev.wan(t),
        lan: dev.cgnLan(t),
        lanCidr: site.carrier,
        kind: 'eim',
        stun: topo.core.stun,
      })
      out.set(`${site.name}-cgn`, script(ROUTER_SYSCTLS, cgnBatch, cgnNft))
      const innerWan = carrierHostAddress(site.carrier)
      gwBatch.push(
        `addr add ${innerWan}/${carrier.prefixLen} dev ${dev.wan(t)}`,
        `link set ${dev.wan(t)} up`,
        `route add default via ${cgnAddr} dev ${dev.wan(t)}`,
      )
    } else {
      gwBatch.push(...wanUp, defaultViaCore)
    }
    gwBatch.push(`addr add ${gwAddr}/${lan.prefixLen} dev ${dev.bridge(t)}`, `link set ${dev.bridge(t)} up`)
    for (const h of site.hosts) {
      const hs = s.hosts[h.name]!
      const port = dev.port(t, hs.index)
      gwBatch.push(`link set ${port} master ${dev.bridge(t)}`, `link set ${port} up`)
      out.set(h.name, script([], ['link set lo up', ...hostBatch(t, hs.address, lan.prefixLen, gwAddr, false)]))
    }
    const kind = site.nat === 'double' ? (site.miniupnpd ? 'upnp' : 'eim') : site.nat
    const nft =
      kind === 'none'
        ? undefined
        : gatewayRuleset({
            wan: dev.wan(t),
            lan: dev.bridge(t),
            lanCidr: site.lan,
            kind,
            stun: topo.core.stun,
            blockNatpmp: kind === 'upnp' && !site.upnp.natpmp && site.upnp.pcp,
            blockPcp: kind === 'upnp' && !site.upnp.pcp && site.upnp.natpmp,
          })
    out.set(site.name, script(ROUTER_SYSCTLS, gwBatch, nft))
  }
  out.set('core', script(ROUTER_SYSCTLS, coreBatch))
  return out
}

/** The home router's address on the carrier network of a `double` site: the second address. */
export function carrierHostAddress(carrier: string): string {
  return intToIp(parseCidr(carrier).network + 2)
}
