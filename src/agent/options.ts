// The options of `autotunnel up` as commander hands them to the agent: strings as typed (the agent parses and checks
// them in run.ts), booleans for the --no-* switches. The agent owns this type; the CLI (src/cli/agent.ts) declares the
// flags that fill it, so the arrow points from the command down to the agent.

export interface UpOptions {
  server: string
  /** Default: the key file's domain (run.ts resolveDomain). */
  domain?: string
  hostname: string
  state: string
  keyFile?: string
  passwordStdin?: boolean
  keyAlgorithm: string
  port: string
  tun: string | false
  service: string[]
  lease: string
  ttl: string
  ca?: string
  insecureTls?: boolean
  tlsFingerprint?: string
  tls: boolean
  portmap: boolean
  logLevel?: string
  resolver: string | false
  /** How `up` points the system resolver at the local one (docs/resolver.md). */
  systemResolver?: 'auto' | 'resolved' | 'resolv.conf' | 'off'
  ikeAuth: 'signature' | 'psk'
  mobike: boolean
  tunnelThreads?: 'on' | 'send' | 'off'
  /** --stun HOST[:PORT] (repeatable); none: SRV _stun._udp.ZONE (docs/punch.md). */
  stun: string[]
  /** --relay HOST[:PORT] (repeatable); none: SRV _turn._udp.ZONE (docs/relay.md). Needs --relay-user. */
  relay: string[]
  relayUser?: string
  /** The TURN password is read from this file (never on the command line). */
  relayPasswordFile?: string
  /** --allow-second-agent: start even though another agent runs on this machine (src/agent/lock.ts). */
  allowSecondAgent?: boolean
  /** --sso-user USER: the local account of the owner's principal (docs/sso.md). */
  ssoUser?: string
  /** false with --no-sso. */
  sso?: boolean
  /** --metrics ADDR:PORT: Prometheus /metrics (http.ts). */
  metrics?: string
  /** --status-page [ADDR:]PORT: the status page on loopback (http.ts, status-page.ts). */
  statusPage?: string
}
