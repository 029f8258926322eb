// nftables rulesets of the lab's gateways, and the per-link drop rules behind `cut` and `loss`.
//
// NAT behaviour (RFC 4787 terms):
// - `masquerade` keeps the source port when it can, so a host's mapping is the same for every destination:
//   endpoint-independent mapping; conntrack lets in only replies: address-and-port-dependent filtering.
// - `masquerade fully-random` picks a new port for every flow: address-and-port-dependent mapping (symmetric).
// - New inbound connections to the gateway itself are dropped in `input`. Without that, a peer's early
//   hole-punching datagram would create a conntrack entry for the gateway's own port, and the host's later
//   outbound flow to that peer would be remapped to another port, breaking endpoint independence.
//   STUN answers are let in on the `upnp` kind: miniupnpd's RFC 5780 tests expect replies from the other address.

export interface GatewayRules {
  wan: string
  lan: string
  lanCidr: string
  kind: 'upnp' | 'eim' | 'symmetric'
  stun: [string, string]
  /** `upnp` only: drop NAT-PMP (version 0) or PCP (version 2) requests to port 5351. */
  blockNatpmp?: boolean
  blockPcp?: boolean
}

export function gatewayRuleset(g: GatewayRules): string {
  if (g.kind === 'upnp') return upnpRuleset(g)
  const random = g.kind === 'symmetric' ? ' fully-random' : ''
  return `table ip lab {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "${g.wan}" ct state new meta l4proto { tcp, udp } drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "${g.lan}" oifname "${g.wan}" accept
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${g.wan}" ip saddr ${g.lanCidr} masquerade${random}
  }
}
`
}

// Table and chain names are miniupnpd-nftables 2.3.1's defaults (RECIPES.md section 1, gotcha 3).
function upnpRuleset(g: GatewayRules): string {
  const block: string[] = []
  if (g.blockNatpmp) block.push(`iifname "${g.lan}" udp dport 5351 @th,64,8 0 drop`)
  if (g.blockPcp) block.push(`iifname "${g.lan}" udp dport 5351 @th,64,8 2 drop`)
  return `table inet filter {
  chain input {
    type filter hook input priority filter; policy accept;
    ${block.join('\n    ')}
    iifname "${g.wan}" ip saddr { ${g.stun[0]}, ${g.stun[1]} } udp sport { 3478, 3479 } accept
    iifname "${g.wan}" ct state new meta l4proto { tcp, udp } drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "${g.lan}" oifname "${g.wan}" accept
    jump miniupnpd
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    jump postrouting_miniupnpd
    oifname "${g.wan}" ip saddr ${g.lanCidr} masquerade
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
`
}

/** Flushes what miniupnpd leaves behind when stopped (RECIPES.md section 1, gotcha 7). */
export const MINIUPNPD_FLUSH = `flush chain inet filter miniupnpd
flush chain inet filter prerouting_miniupnpd
flush chain inet filter postrouting_miniupnpd
`

/** Name of the ingress chain for `dev` in table `netdev lablink`. */
function chainOf(dev: string): string {
  return `in_${dev.replace(/-/g, '_')}`
}

/**
 * Replaces the drop rules on ingress of `dev`: everything when cut, else `percent` of packets (0.1 % steps) via
 * numgen. No drop leaves no chain. Returns an nft script for the namespace holding `dev`.
 */
export function linkRules(dev: string, cut: boolean, percent: number): string {
  const chain = chainOf(dev)
  const lines = [
    'add table netdev lablink',
    `add chain netdev lablink ${chain}`,
    `flush chain netdev lablink ${chain}`,
    `delete chain netdev lablink ${chain}`,
  ]
  if (cut || percent > 0) {
    lines.push(`add chain netdev lablink ${chain} { type filter hook ingress device "${dev}" priority 0; }`)
    if (cut) lines.push(`add rule netdev lablink ${chain} drop`)
    else lines.push(`add rule netdev lablink ${chain} numgen random mod 1000 < ${Math.round(percent * 10)} drop`)
  }
  return `${lines.join('\n')}\n`
}
