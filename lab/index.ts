// Public API of the network lab (docs/lab.md).
export { Lab, LabError, type LabProcess, type LabSummary, type LabUpOptions, type LinkOptions } from './lab.js'
export { type ExecResult, LabCommandError, type RunOptions } from './sh.js'
export type { LossDirection, RunState } from './state.js'
export {
  type HostSpec,
  type InternetHostSpec,
  type NatKind,
  type SiteSpec,
  standardTopology,
  type Topology,
  TopologyError,
  type UpnpSpec,
} from './topology.js'
export { withLab } from './with-lab.js'
