// "host", "host:port", "[v6]:port" as the agent's options take them (--server, --stun, --relay). One syntax; each
// caller raises its own error (the CLI's UsageError, the STUN/TURN parsers' TypeError) naming its option.

/** {host, port} with `defaultPort` when none is given; undefined when `s` is not of that form or the port is out of range. */
export function splitHostPort(s: string, defaultPort: number): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s)
  if (!m?.[1]) return undefined
  const port = m[2] === undefined ? defaultPort : Number(m[2])
  return port >= 1 && port <= 0xffff ? { host: m[1], port } : undefined
}
