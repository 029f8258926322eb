// The agent's Prometheus metrics (text exposition format 0.0.4, as the server's src/server/metrics.ts), rendered when
// scraped from the same snapshot `autotunnel status` shows (Agent.status()): nothing is counted twice, and an idle
// agent does no metrics work between scrapes. Served by http.ts on `up --metrics ADDR:PORT` (and with the status
// page). Per-peer series carry the peer's host label; a peer that goes away drops out of the next scrape.
import { labelKey, Metrics, registerProcessGauges } from '../server/metrics.js'

type Obj = Record<string, unknown>
const obj = (v: unknown): Obj => (v && typeof v === 'object' ? (v as Obj) : {})
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0)

/** One family written in exposition format: HELP, TYPE, then each labelled sample. */
class Out {
  readonly lines: string[] = []
  family(
    name: string,
    type: 'counter' | 'gauge',
    help: string,
    samples: [Record<string, string> | undefined, number][],
  ): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [labels, v] of samples) this.lines.push(`${name}${labelKey(labels)} ${v}`)
  }
}

/** Process figures (RSS, fds, heap, handles): the server's gauges, the same names. */
const processRegistry = new Metrics()
registerProcessGauges(processRegistry)

/** Renders the metrics of one status snapshot (Agent.status()); `http` adds the listener's own figures. */
export function renderAgentMetrics(status: unknown, http?: { readonly statusPageClients: number }): string {
  const s = obj(status)
  const o = new Out()
  if (http)
    o.family('autotunnel_agent_status_page_clients', 'gauge', 'Status pages open (Server-Sent Event streams)', [
      [undefined, http.statusPageClients],
    ])
  o.family('autotunnel_agent_info', 'gauge', 'Agent version and identity (value 1)', [
    [{ version: String(s.version ?? ''), hostname: String(s.hostname ?? ''), domain: String(s.domain ?? '') }, 1],
  ])
  o.family('autotunnel_agent_uptime_seconds', 'gauge', 'Seconds since the agent started', [
    [undefined, num(s.uptimeSec)],
  ])
  const pm = s.portMapping ? obj(s.portMapping) : undefined
  o.family('autotunnel_agent_port_mapped', 'gauge', 'A gateway maps our port (1), by protocol', [
    [{ protocol: pm ? String(pm.protocol) : 'none' }, pm ? 1 : 0],
  ])
  const reach = s.reachability ? obj(s.reachability) : undefined
  o.family('autotunnel_agent_reachable', 'gauge', 'We publish an endpoint (1), by how (nat= in TXT)', [
    [{ nat: reach ? String(reach.nat) : 'none' }, reach ? 1 : 0],
  ])
  const pub = obj(s.published)
  o.family('autotunnel_agent_publish_updates_total', 'counter', 'DNS UPDATEs that published our records', [
    [undefined, num(pub.updates)],
  ])
  o.family('autotunnel_agent_publish_failures_total', 'counter', 'DNS UPDATEs of our records that failed', [
    [undefined, num(pub.failures)],
  ])
  o.family('autotunnel_agent_published', 'gauge', 'Our records are published (1)', [
    [undefined, pub.state === 'published' ? 1 : 0],
  ])
  const udp = obj(s.udp)
  o.family('autotunnel_agent_udp_received_datagrams_total', 'counter', 'Datagrams received on the tunnel port', [
    [undefined, num(udp.rxDatagrams)],
  ])
  o.family('autotunnel_agent_udp_received_bytes_total', 'counter', 'Bytes received on the tunnel port', [
    [undefined, num(udp.rxBytes)],
  ])
  const peers = ((s.peers as unknown[] | undefined) ?? []).map(obj)
  const per = (f: string): [Record<string, string>, number][] => peers.map((p) => [{ peer: String(p.name) }, num(p[f])])
  o.family(
    'autotunnel_peer_up',
    'gauge',
    'An IKE SA with the peer is established (1), by path (direct, punched, relay, ...)',
    peers.map((p) => [{ peer: String(p.name), path: String(p.path ?? '') }, p.lastHandshake ? 1 : 0]),
  )
  o.family(
    'autotunnel_peer_receive_bytes_total',
    'counter',
    'Bytes received from the peer through the tunnel',
    per('bytesIn'),
  )
  o.family(
    'autotunnel_peer_transmit_bytes_total',
    'counter',
    'Bytes sent to the peer through the tunnel',
    per('bytesOut'),
  )
  o.family('autotunnel_peer_receive_packets_total', 'counter', 'Packets received from the peer', per('packetsIn'))
  o.family('autotunnel_peer_transmit_packets_total', 'counter', 'Packets sent to the peer', per('packetsOut'))
  o.family(
    'autotunnel_peer_last_handshake_timestamp_seconds',
    'gauge',
    'Unix time of the last IKE handshake with the peer (0: none)',
    peers.map((p) => [
      { peer: String(p.name) },
      typeof p.lastHandshake === 'string' ? Date.parse(p.lastHandshake) / 1000 : 0,
    ]),
  )
  const dp = obj(s.datapath)
  const counters = obj(obj(dp.tun).counters)
  const drops = obj(counters.drops)
  o.family(
    'autotunnel_tunnel_drops_total',
    'counter',
    'Packets the tunnel dropped, by reason',
    Object.keys(drops).map((r) => [{ reason: r }, num(drops[r])]),
  )
  o.family('autotunnel_tunnel_roams_total', 'counter', 'Peer endpoint moves the tunnel followed', [
    [undefined, num(counters.roams)],
  ])
  const ike = obj(dp.ike)
  o.family('autotunnel_ike_sa_established_total', 'counter', 'IKE SAs established', [
    [undefined, num(ike.ikeEstablished)],
  ])
  o.family('autotunnel_ike_auth_failures_total', 'counter', 'IKE authentication failures', [
    [undefined, num(ike.authFailures)],
  ])
  o.family('autotunnel_ike_received_messages_total', 'counter', 'IKE messages received', [
    [undefined, num(ike.rxMessages)],
  ])
  return `${o.lines.join('\n')}\n${processRegistry.render()}`
}
