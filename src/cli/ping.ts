import type { Command } from 'commander'

// `autotunnel ping HOST`: which path the tunnel to a peer takes and how fast it answers (src/agent/everyday.ts
// says how it probes: an IKEv2 liveness check on the path ESP takes).
export function register(program: Command): void {
  program
    .command('ping <host>')
    .description(
      'ping one of your hosts through the tunnel: per reply the path (direct, punched, relay), endpoint and time',
    )
    .option('-c, --count <n>', 'pings to send', '3')
    .option('-i, --interval <seconds>', 'time between pings', '1')
    .option('-W, --timeout <seconds>', 'how long each ping waits for its reply (tunnel set-up included)', '3')
    .option(
      '--state <dir>',
      "the agent's state directory (default: $AUTOTUNNEL_STATE_DIR, else /var/lib/autotunnel-agent as root, else $XDG_STATE_HOME/autotunnel-agent; docs/agent.md)",
    )
    .option(
      '--json',
      'one JSON object per line (NDJSON): each reply as it arrives ({"type":"reply",...}), then {"type":"summary",...}',
    )
    .addHelpText(
      'after',
      `
The probe is an IKEv2 liveness check (RFC 7296 1.4) on the tunnel's own path: same port, NAT bindings and relay as
ESP, answered by the peer's agent. The first ping sets the tunnel up if needed (the set-up time is shown apart).
Exit status: 0 when any ping was answered, 1 when none was (host down, unknown or unreachable).

Examples:
  $ autotunnel ping desktop -c 3
  pong from desktop (fd9a:...:1) via direct 203.0.113.11:4500, seq 1, in 0.91 ms (tunnel set up in 41.2 ms)
  pong from desktop (fd9a:...:1) via direct 203.0.113.11:4500, seq 2, in 0.62 ms
  pong from desktop (fd9a:...:1) via direct 203.0.113.11:4500, seq 3, in 0.58 ms
  3 sent, 3 answered, 0 lost; rtt min/avg/max 0.58/0.70/0.91 ms
  $ autotunnel ping phone -c 2 --json
  {"type":"reply","seq":1,"reply":true,"host":"phone","ula":"fd9a:...:3","path":"relay","endpoint":"203.0.113.13:4500","rttMs":4.12,"setupMs":null,"probe":"ike-liveness"}
  {"type":"reply","seq":2,"reply":true,"host":"phone","ula":"fd9a:...:3","path":"relay","endpoint":"203.0.113.13:4500","rttMs":3.87,"setupMs":null,"probe":"ike-liveness"}
  {"type":"summary","host":"phone","ula":"fd9a:...:3","transmitted":2,"received":2,"lost":0,"rttMs":{"min":3.87,"avg":3.995,"max":4.12}}
  $ autotunnel ping laptop -c 3 --json | jq -r 'select(.type == "reply") | "\\(.seq) \\(.path) \\(.rttMs)"'`,
    )
    .action(async (host: string, o: import('../agent/everyday-client.js').PingOptions) => {
      const m = await import('../agent/everyday-client.js')
      await m.runPing(host, o)
    })
}
