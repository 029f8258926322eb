// The host the UPDATE-client interop tests publish (against BIND and against our server): the RFC 6281 section 3
// example EUI-64, one DNS-SD service.
import type { HostRecordsInput } from '../../src/agent/records.js'

export function desktopInput(nat: HostRecordsInput['nat']): HostRecordsInput {
  return {
    hostname: 'desktop',
    domain: 'alice.members.example',
    ula: 'fd5e:1:2:3:22:69ff:fe8e:342a',
    label: 'AutoTunnel-00-22-69-FF-FE-8E-34-2A',
    endpoint: { address: '203.0.113.11', port: 4500 },
    nat,
    services: [{ type: '_ssh._tcp', port: 22 }],
    ttlSec: 60,
    agentVersion: 'test',
  }
}

/** The SRV target the fixture publishes, as written. */
export const DESKTOP_TARGET = 'AutoTunnel-00-22-69-FF-FE-8E-34-2A.alice.members.example.'
