// src/portmap: asking the home gateway for an inbound UDP port, one protocol per file (pcp.ts RFC 6887, natpmp.ts
// RFC 6886, upnp.ts + ssdp.ts UPnP IGD), tried in that order by the PortMapper (mapper.ts), which keeps the mapping
// renewed, follows gateway restarts (epoch.ts, announcements.ts) and reports every change as an event. It knows
// nothing of DNS or the tunnel: the agent (src/agent) turns its events into published records (docs/portmap.md).
// This file is its public API: the agent needs PortMapper and its state types; the rest is for tests, status
// output and callers that bring their own network information or sockets.

export { AnnouncementListener } from './announcements.js'
export { PortmapAbortedError, PortmapResultError, PortmapTimeoutError, PortmapWireError } from './errors.js'
export { isPrivateIPv4 } from './ip.js'
export { PortMapper, type PortMapperDeps, type PortMapperOptions } from './mapper.js'
export type { PortMapChangeReason, PortMapEvent, PortMapState } from './mapper-state.js'
export { NatPmpClient, NatPmpResult } from './natpmp.js'
export { LinuxNetworkInfo, type NetworkInfo, type PrimaryNetwork, StaticNetworkInfo } from './netinfo.js'
export { PcpClient, PcpResult } from './pcp.js'
export {
  type AddrPort,
  type GatewayAnnouncement,
  type MappingClient,
  type MapRequest,
  type MapResult,
  type PortmapProtocol,
  type PortmapSockets,
  type RetrySchedule,
  RFC6886_RETRY,
  SystemPortmapSockets,
  type TransportProtocol,
} from './types.js'
export { type HttpFn, UpnpClient } from './upnp.js'
