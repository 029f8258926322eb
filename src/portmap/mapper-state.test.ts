import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { type PortMapChangeReason, type PortMapInput, type PortMapState, stepPortMap } from './mapper-state.js'

failOnLeakedResources()

const T = 1_000_000
const mapped = (address: string, port: number, protocol: 'pcp' | 'natpmp' | 'upnp' = 'pcp'): PortMapState => ({
  kind: 'mapped',
  protocol,
  gateway: '192.168.1.1',
  external: { address, port },
  internalPort: 4500,
  lifetimeSec: 3600,
  expiresAt: T + 3_600_000,
})
const result = (address: string, port: number, gatewayRestarted = false) => ({
  external: { address, port },
  lifetimeSec: 3600,
  gatewayRestarted,
})
const input = (
  type: 'mapped' | 'renewed',
  address: string,
  port: number,
  extra: { restarted?: boolean; afterLoss?: boolean; protocol?: 'pcp' | 'natpmp' | 'upnp' } = {},
): PortMapInput => ({
  type,
  protocol: extra.protocol ?? 'pcp',
  gateway: '192.168.1.1',
  internalPort: 4500,
  result: result(address, port, extra.restarted),
  nowMs: T,
  afterLoss: extra.afterLoss ?? false,
})
const PROBING: PortMapState = { kind: 'probing' }
const NONE: PortMapState = { kind: 'nat-without-mapping', address: '192.168.1.10', gateway: '192.168.1.1' }
const M = mapped('203.0.113.1', 4500)

const CASES: {
  name: string
  from: PortMapState
  input: PortMapInput
  kind: PortMapState['kind']
  reason?: PortMapChangeReason
}[] = [
  {
    name: 'first mapping',
    from: PROBING,
    input: input('mapped', '203.0.113.1', 4500),
    kind: 'mapped',
    reason: 'mapped',
  },
  { name: 'quiet renewal', from: M, input: input('renewed', '203.0.113.1', 4500), kind: 'mapped' },
  {
    name: 'renewal, new external address',
    from: M,
    input: input('renewed', '198.51.100.7', 4500),
    kind: 'mapped',
    reason: 'external-changed',
  },
  {
    name: 'renewal, new external port',
    from: M,
    input: input('renewed', '203.0.113.1', 50000),
    kind: 'mapped',
    reason: 'external-changed',
  },
  {
    name: 'renewal after an epoch reset',
    from: M,
    input: input('renewed', '203.0.113.1', 4500, { restarted: true }),
    kind: 'mapped',
    reason: 'recreated',
  },
  {
    name: 'probe after a failed renewal finds a mapping',
    from: M,
    input: input('mapped', '203.0.113.1', 4500, { afterLoss: true }),
    kind: 'mapped',
    reason: 'recreated',
  },
  {
    name: 'probe after a failed renewal finds nothing',
    from: M,
    input: { type: 'no-mapping', afterLoss: true },
    kind: 'nat-without-mapping',
    reason: 'lost',
  },
  {
    name: 'first probe finds nothing',
    from: PROBING,
    input: { type: 'no-mapping', afterLoss: false },
    kind: 'nat-without-mapping',
    reason: 'no-mapping',
  },
  {
    name: 're-probe still finds nothing',
    from: NONE,
    input: { type: 'no-mapping', afterLoss: false },
    kind: 'nat-without-mapping',
  },
  {
    name: 're-probe finds a gateway',
    from: NONE,
    input: input('mapped', '203.0.113.1', 4500),
    kind: 'mapped',
    reason: 'mapped',
  },
  {
    name: 'public address',
    from: PROBING,
    input: { type: 'public', address: '198.51.100.20' },
    kind: 'public',
    reason: 'public',
  },
  {
    name: 'network change while mapped',
    from: M,
    input: { type: 'network-changed' },
    kind: 'probing',
    reason: 'probing',
  },
  { name: 'network change while probing', from: PROBING, input: { type: 'network-changed' }, kind: 'probing' },
]

for (const c of CASES)
  test(`stepPortMap: ${c.name}`, () => {
    const r = stepPortMap(c.from, c.input)
    assert.equal(r.state.kind, c.kind)
    assert.equal(r.reason, c.reason)
  })

test('stepPortMap: expiresAt from the granted lifetime; a UPnP permanent lease never expires', () => {
  const r = stepPortMap(PROBING, input('mapped', '203.0.113.1', 4500))
  assert.equal(r.state.kind === 'mapped' && r.state.expiresAt, T + 3_600_000)
  const p = stepPortMap(PROBING, {
    ...input('mapped', '203.0.113.1', 4500, { protocol: 'upnp' }),
    result: { ...result('203.0.113.1', 4500), lifetimeSec: 0 },
  } as PortMapInput)
  assert.equal(p.state.kind === 'mapped' && p.state.expiresAt, Number.POSITIVE_INFINITY)
})
