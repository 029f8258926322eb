import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { nullLogger } from '../io/log.js'
import { AgentHttp, HttpUsageError, planAgentHttp } from './http.js'
import { renderAgentMetrics } from './metrics.js'

/** A status snapshot shaped as Agent.status() returns it (two peers, one relayed). */
export const STATUS = {
  version: '0.1.0',
  pid: 4242,
  hostname: 'laptop',
  domain: 'alice.members.example',
  uptimeSec: 61,
  identity: { ula: 'fd00:1::1', label: 'x1' },
  reachability: { endpoint: { address: '203.0.113.12', port: 4500 }, nat: 'mapped', local: '10.20.0.10' },
  portMapping: {
    protocol: 'pcp',
    external: { address: '203.0.113.12', port: 4500 },
    gateway: '10.20.0.1',
    lifetimeSec: 7200,
    lifetimeLeftSec: 7100,
  },
  published: {
    state: 'published',
    leaseSec: 5400,
    updates: 3,
    failures: 1,
    records: [{ text: 'laptop AAAA fd00:1::1', leaseLeftSec: 5300 }],
  },
  udp: { port: 4500, rxDatagrams: 120, rxBytes: 64000 },
  peers: [
    {
      name: 'desktop',
      path: 'direct',
      endpoint: '203.0.113.11:4500',
      ula: 'fd00:2::1',
      lastHandshake: '2026-12-07T00:00:00.000Z',
      bytesIn: 2048,
      bytesOut: 1024,
      packetsIn: 20,
      packetsOut: 10,
    },
    {
      name: 'phone "x"\\',
      path: 'relay',
      endpoint: '198.51.100.20:49152',
      ula: 'fd00:3::1',
      lastHandshake: null,
      bytesIn: 0,
      bytesOut: 0,
      packetsIn: 0,
      packetsOut: 0,
    },
  ],
  datapath: {
    tun: { counters: { roams: 2, drops: { replay: 1, bad_icv: 0 } } },
    ike: { ikeEstablished: 2, authFailures: 0, rxMessages: 17 },
  },
}

/** Parses exposition text with prometheus_client's parser (Debian's python3-prometheus-client under /usr/bin/python3, scripts/deps.sh). */
function parseWithPrometheusClient(
  text: string,
): Record<string, { type: string; samples: [string, Record<string, string>, number][] }> {
  const py = `
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
`
  const r = spawnSync('/usr/bin/python3', ['-c', py], { input: text, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  return JSON.parse(r.stdout)
}

test('agent /metrics parses with a Prometheus text-format parser, values and labels as in status', () => {
  const fams = parseWithPrometheusClient(renderAgentMetrics(STATUS))
  // prometheus_client strips _total from counter family names; the samples keep it.
  const sample = (fam: string, name: string, labels: Record<string, string> = {}): number | undefined =>
    fams[fam]?.samples.find((s) => s[0] === name && JSON.stringify(s[1]) === JSON.stringify(labels))?.[2]
  assert.equal(fams.autotunnel_peer_receive_bytes?.type, 'counter')
  assert.equal(
    sample('autotunnel_peer_receive_bytes', 'autotunnel_peer_receive_bytes_total', { peer: 'desktop' }),
    2048,
  )
  assert.equal(sample('autotunnel_peer_up', 'autotunnel_peer_up', { path: 'direct', peer: 'desktop' }), 1)
  // A label value with a quote and a backslash survives the escaping.
  assert.equal(sample('autotunnel_peer_up', 'autotunnel_peer_up', { path: 'relay', peer: 'phone "x"\\' }), 0)
  assert.equal(sample('autotunnel_agent_port_mapped', 'autotunnel_agent_port_mapped', { protocol: 'pcp' }), 1)
  assert.equal(sample('autotunnel_agent_publish_failures', 'autotunnel_agent_publish_failures_total'), 1)
  assert.equal(sample('autotunnel_tunnel_drops', 'autotunnel_tunnel_drops_total', { reason: 'replay' }), 1)
  assert.equal(
    sample('autotunnel_peer_last_handshake_timestamp_seconds', 'autotunnel_peer_last_handshake_timestamp_seconds', {
      peer: 'desktop',
    }),
    Date.parse('2026-12-07T00:00:00.000Z') / 1000,
  )
  assert.ok((sample('process_resident_memory_bytes', 'process_resident_memory_bytes') ?? 0) > 1e6)
  // An agent that has not started its data path yet (no peers, no datapath) still renders valid text.
  assert.ok(parseWithPrometheusClient(renderAgentMetrics({ version: '0.1.0' })).autotunnel_agent_info)
})

test('status page listener: /, /status.json, /events, /metrics on loopback; metrics-only listener serves /metrics', async () => {
  const page = new AgentHttp(
    { status: () => STATUS, log: nullLogger },
    { host: '127.0.0.1', port: 0, statusPage: true },
  )
  const only = new AgentHttp(
    { status: () => STATUS, log: nullLogger },
    { host: '127.0.0.1', port: 0, statusPage: false },
  )
  const a = await page.listen()
  const b = await only.listen()
  try {
    const get = (port: number, path: string) => fetch(`http://127.0.0.1:${port}${path}`)
    const html = await get(a.port, '/')
    assert.equal(html.status, 200)
    assert.match(html.headers.get('content-security-policy') ?? '', /default-src 'none'/)
    assert.match(await html.text(), /new EventSource\("\/events"\)/)
    assert.deepEqual(await (await get(a.port, '/status.json')).json(), STATUS)
    assert.match(
      await (await get(a.port, '/metrics')).text(),
      /^autotunnel_peer_up\{path="direct",peer="desktop"\} 1$/m,
    )
    const ev = await get(a.port, '/events')
    assert.equal(ev.headers.get('content-type'), 'text/event-stream')
    const reader = ev.body?.getReader()
    let got = ''
    while (!got.includes('\n\n')) got += new TextDecoder().decode((await reader?.read())?.value)
    assert.equal(JSON.parse(got.replace(/^data: /, '')).hostname, 'laptop')
    await reader?.cancel()
    assert.equal((await get(b.port, '/')).status, 404)
    assert.equal((await get(b.port, '/status.json')).status, 404)
    assert.equal((await get(b.port, '/metrics')).status, 200)
    assert.equal((await fetch(`http://127.0.0.1:${a.port}/metrics`, { method: 'POST' })).status, 405)
  } finally {
    await Promise.all([page.close(), only.close()])
  }
})

test('--status-page is loopback only; --metrics and --status-page on one address share a listener', () => {
  assert.throws(() => planAgentHttp({ statusPage: '0.0.0.0:8088' }), HttpUsageError)
  assert.throws(() => planAgentHttp({ statusPage: '192.0.2.1:8088' }), /loopback only/)
  assert.throws(() => planAgentHttp({ metrics: 'localhost:9100' }), /with an IP address/)
  assert.throws(() => planAgentHttp({ metrics: '127.0.0.1:70000' }), HttpUsageError)
  assert.deepEqual(planAgentHttp({ statusPage: '8088' }), [{ host: '127.0.0.1', port: 8088, statusPage: true }])
  assert.deepEqual(planAgentHttp({ statusPage: '[::1]:8088', metrics: '[::1]:8088' }), [
    { host: '::1', port: 8088, statusPage: true },
  ])
  assert.deepEqual(planAgentHttp({ statusPage: '8088', metrics: '0.0.0.0:9100' }), [
    { host: '127.0.0.1', port: 8088, statusPage: true },
    { host: '0.0.0.0', port: 9100, statusPage: false },
  ])
  assert.deepEqual(planAgentHttp({}), [])
})
