import assert from 'node:assert/strict'
import { test } from 'node:test'
import { dnsEndpointDecision } from './datapath.js'
import { type TunnelThreads, tunnelThreadsMode } from './tunnel-start.js'

test('dnsEndpointDecision: DNS moves the endpoint, except to the LAN address of an unmapped peer', () => {
  const home = { address: '203.0.113.11', port: 4500 }
  const hotel = { address: '203.0.113.13', port: 4500 }
  const lan = { address: '10.30.0.11', port: 4500 }
  const cases: [typeof home | undefined, typeof home | undefined, string | undefined, string][] = [
    [undefined, home, 'pcp', 'set'],
    [home, hotel, 'upnp', 'set'],
    [home, { address: '203.0.113.11', port: 4501 }, 'natpmp', 'set'],
    [home, home, 'pcp', 'same'],
    [hotel, lan, 'unmapped', 'keep'],
    [undefined, lan, 'unmapped', 'set'],
    [lan, lan, 'unmapped', 'same'],
    [home, undefined, 'pcp', 'none'],
    [home, hotel, 'public', 'set'],
  ]
  for (const [current, dns, nat, want] of cases)
    assert.equal(dnsEndpointDecision(current, dns, nat), want, JSON.stringify({ current, dns, nat }))
})

test('tunnelThreadsMode: the option, else AUTOTUNNEL_TUNNEL_THREADS, else AUTOTUNNEL_TX_THREAD=0|1, else off', () => {
  const cases: [TunnelThreads | undefined, NodeJS.ProcessEnv, TunnelThreads][] = [
    [undefined, {}, 'off'],
    ['off', {}, 'off'],
    ['send', {}, 'send'],
    ['on', { AUTOTUNNEL_TUNNEL_THREADS: 'off' }, 'on'],
    ['send', { AUTOTUNNEL_TX_THREAD: '0' }, 'send'],
    [undefined, { AUTOTUNNEL_TUNNEL_THREADS: 'off' }, 'off'],
    [undefined, { AUTOTUNNEL_TUNNEL_THREADS: 'send' }, 'send'],
    [undefined, { AUTOTUNNEL_TUNNEL_THREADS: 'on', AUTOTUNNEL_TX_THREAD: '0' }, 'on'],
    [undefined, { AUTOTUNNEL_TUNNEL_THREADS: 'bogus' }, 'off'],
    [undefined, { AUTOTUNNEL_TUNNEL_THREADS: 'ON' }, 'off'],
    [undefined, { AUTOTUNNEL_TUNNEL_THREADS: 'bogus', AUTOTUNNEL_TX_THREAD: '1' }, 'on'],
    [undefined, { AUTOTUNNEL_TUNNEL_THREADS: 'bogus', AUTOTUNNEL_TX_THREAD: '0' }, 'off'],
    [undefined, { AUTOTUNNEL_TX_THREAD: '0' }, 'off'],
    [undefined, { AUTOTUNNEL_TX_THREAD: '1' }, 'on'],
    [undefined, { AUTOTUNNEL_TUNNEL_THREADS: '' }, 'off'],
  ]
  for (const [opt, env, want] of cases) assert.equal(tunnelThreadsMode(opt, env), want, JSON.stringify({ opt, env }))
})
