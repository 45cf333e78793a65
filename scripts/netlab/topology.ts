// The NAT lab's topology, as data. One bridge namespace is "the internet" (11.0.0.0/24: a
// public-looking range, because libp2p ignores private addresses for AutoNAT and DCUtR; it
// exists only inside the lab's namespaces). Home routers masquerade a 192.168.x.0/24 LAN.
//
//   pub    11.0.0.2   public anchor: bootstrap + relay + AutoNAT server (--public)
//   pub2   11.0.0.3   a second public node (member), for public↔NAT cells
//   other  11.0.0.5   a public node of another swarm (the non-member of test 3)
//   rc1    11.0.0.11  cone router (port-preserving masquerade)      → h1 192.168.1.2
//   rc2    11.0.0.12  cone router                                    → h2 192.168.2.2
//   rs     11.0.0.13  symmetric router (masquerade fully-random)    → h3 192.168.3.2
//   ru     11.0.0.14  cone router running miniupnpd (UPnP + NAT-PMP) → h4 192.168.4.2

export type RouterKind = 'cone' | 'symmetric' | 'upnp'

export interface PublicHost { name: string, ip: string }
export interface HomeNet { router: string, kind: RouterKind, wanIp: string, lan: string, host: string, hostIp: string, gatewayIp: string }

export const INTERNET_PREFIX = '11.0.0'
export const PUBLIC_HOSTS: PublicHost[] = [
  { name: 'pub', ip: '11.0.0.2' },
  { name: 'pub2', ip: '11.0.0.3' },
  { name: 'other', ip: '11.0.0.5' }
]
export const HOME_NETS: HomeNet[] = [
  { router: 'rc1', kind: 'cone', wanIp: '11.0.0.11', lan: '192.168.1', host: 'h1', hostIp: '192.168.1.2', gatewayIp: '192.168.1.1' },
  { router: 'rc2', kind: 'cone', wanIp: '11.0.0.12', lan: '192.168.2', host: 'h2', hostIp: '192.168.2.2', gatewayIp: '192.168.2.1' },
  { router: 'rs', kind: 'symmetric', wanIp: '11.0.0.13', lan: '192.168.3', host: 'h3', hostIp: '192.168.3.2', gatewayIp: '192.168.3.1' },
  { router: 'ru', kind: 'upnp', wanIp: '11.0.0.14', lan: '192.168.4', host: 'h4', hostIp: '192.168.4.2', gatewayIp: '192.168.4.1' }
]

/** nftables ruleset of a home router: stateful firewall (unsolicited inbound is dropped, as on
 * real home routers, not answered with RST) and masquerade on the WAN side. */
export function routerRules (kind: RouterKind): string {
  const masquerade = kind === 'symmetric' ? 'masquerade fully-random' : 'masquerade'
  if (kind === 'upnp') {
    // miniupnpd adds DNAT rules to prerouting_miniupnpd and accepts to chain miniupnpd.
    return `table inet miniupnpd {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan" accept
    jump miniupnpd
  }
  chain miniupnpd {
  }
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "wan" ct state new drop
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    oifname "wan" ${masquerade}
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
`
  }
  return `table inet lab {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan" accept
  }
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "wan" ct state new drop
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    oifname "wan" ${masquerade}
  }
}
`
}

/** miniupnpd configuration for the UPnP router. */
export function miniupnpdConf (net: HomeNet, uuid: string): string {
  return [
    'ext_ifname=wan',
    'listening_ip=lan',
    'port=0',
    'enable_upnp=yes',
    'enable_natpmp=yes',
    'secure_mode=yes',
    'system_uptime=yes',
    'notify_interval=5',
    'clean_ruleset_interval=600',
    `uuid=${uuid}`,
    'upnp_table_name=miniupnpd',
    'upnp_nat_table_name=miniupnpd',
    'upnp_forward_chain=miniupnpd',
    'upnp_nat_chain=prerouting_miniupnpd',
    'upnp_nat_postrouting_chain=postrouting_miniupnpd',
    `allow 1024-65535 ${net.lan}.0/24 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535',
    ''
  ].join('\n')
}
