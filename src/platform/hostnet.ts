/**
 * Facts about the host's own network that the dataplane needs: its local
 * IPv4 and IPv6 addresses (Docker's "addrtype LOCAL"), and the one place that decides
 * which interfaces berth works on (chooseInterfaces): the served interfaces,
 * whose arrivals meet berth_up_in (published ports, replies of tracked
 * flows), and among them the uplinks, whose addresses masquerade uses.
 */
import * as fs from 'node:fs';
import { withNetlink } from './netlink';
import type { NetlinkAddress, NetlinkLink } from './netlink';
import { canonicalIPv6, formatIPv6, isLoopback6, parseIPv6 } from '../domain/ipv6';

interface IpAddrInfo {
  family: string;
  local: string;
  prefixlen: number;
  scope?: string;
}

export interface IpLink {
  ifindex: number;
  ifname: string;
  address?: string;
  link_type?: string;
  master?: string;
  ifalias?: string;
  operstate?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string };
  addr_info?: IpAddrInfo[];
}

export interface HostAddress {
  /** dotted quad, or RFC 5952 text for IPv6 */
  addr: string;
  /** always set by hostAddresses(); undefined (hand-made facts) counts as 4 */
  family?: 4 | 6;
  ifindex: number;
  ifname: string;
}

export interface HostInterface {
  ifindex: number;
  ifname: string;
  mac: string;
  /** first IPv4 address, '' when none */
  addr: string;
  /** first global-scope IPv6 address (global or ULA; RFC 5952 text), '' when none */
  addr6?: string;
  kind: string;
  /**
   * `ip link`'s link type: 'ether' for Ethernet (veth, NICs, bridges,
   * vlans), 'loopback', 'none' for L3 devices without a link-layer header
   * (tun, wireguard), 'ipip', 'gre', 'sit', ... for IP tunnels.
   */
  linkType: string;
  master?: string;
  alias?: string;
}

/**
 * The host's links with their addresses, over rtnetlink, in the shape `ip -d
 * -j addr show` prints (the pure functions here and their tests take that).
 */
export function ipLinksOf(links: readonly NetlinkLink[], addrs: readonly NetlinkAddress[]): IpLink[] {
  const names = new Map(links.map((l) => [l.ifindex, l.name]));
  // addresses by link (once, not a scan of every address per link: a host with 1,000 veths has 1,000 link-local ones)
  const byLink = new Map<number, NetlinkAddress[]>();
  for (const a of addrs) {
    const list = byLink.get(a.ifindex);
    if (list) list.push(a);
    else byLink.set(a.ifindex, [a]);
  }
  return links.map((l) => ({
    ifindex: l.ifindex,
    ifname: l.name,
    ...(l.mac ? { address: l.mac } : {}),
    link_type: l.linkType,
    ...(l.master ? { master: names.get(l.master) ?? String(l.master) } : {}),
    ...(l.alias ? { ifalias: l.alias } : {}),
    operstate: l.operstate,
    ...(l.kind || l.slaveKind ? { linkinfo: { ...(l.kind ? { info_kind: l.kind } : {}), ...(l.slaveKind ? { info_slave_kind: l.slaveKind } : {}) } } : {}),
    addr_info: (byLink.get(l.ifindex) ?? [])
      .map((a) => ({ family: a.family === 4 ? 'inet' : 'inet6', local: a.address, prefixlen: a.prefixLen, scope: a.scope })),
  }));
}

async function readIpLinks(): Promise<IpLink[]> {
  // an interrupted dump (a container's veth plumbed meanwhile) is taken again in the addon, never used cut short
  return withNetlink(undefined, async (nl) => ipLinksOf(await nl.links(), await nl.addresses()));
}

export async function hostInterfaces(): Promise<HostInterface[]> {
  return hostInterfacesOf(await readIpLinks());
}

/** The host's interfaces and addresses from one rtnetlink dump (hostInterfaces and hostAddresses dump once each). */
export async function hostFacts(): Promise<{ interfaces: HostInterface[]; addresses: HostAddress[] }> {
  const links = await readIpLinks();
  return { interfaces: hostInterfacesOf(links), addresses: hostAddressesOf(links) };
}

/** hostInterfaces() of a link list. */
export function hostInterfacesOf(links: readonly IpLink[]): HostInterface[] {
  const addrs = links;
  const v4 = new Map<number, string>();
  const v6 = new Map<number, string>();
  for (const l of addrs) {
    const a = (l.addr_info ?? []).find((x) => x.family === 'inet');
    if (a) v4.set(l.ifindex, a.local);
    const a6 = (l.addr_info ?? []).find(isGlobal6);
    if (a6) v6.set(l.ifindex, canonicalIPv6(a6.local) ?? a6.local);
  }
  return links.map((l) => ({
    ifindex: l.ifindex,
    ifname: l.ifname,
    mac: (l.address ?? '00:00:00:00:00:00').toLowerCase(),
    addr: v4.get(l.ifindex) ?? '',
    addr6: v6.get(l.ifindex) ?? '',
    kind: l.linkinfo?.info_kind ?? (l.link_type === 'loopback' ? 'loopback' : ''),
    linkType: l.link_type ?? '',
    master: l.master,
    alias: l.ifalias,
  }));
}

/** An IPv6 address of global scope: global unicast or ULA (`ip` gives both scope global), not link-local, not ::1. */
function isGlobal6(a: IpAddrInfo): boolean {
  return a.family === 'inet6' && a.scope === 'global';
}

/**
 * The host's own addresses out of `ip -j addr show` (or ipLinksOf): every IPv4 address,
 * loopback included, and the IPv6 addresses of global scope (global and
 * ULA) plus ::1 (the IPv6 loopback, as 127.0.0.1 is in IPv4); link-local
 * addresses are left out (one per link, meaningless without the link).
 */
export function hostAddressesOf(links: readonly IpLink[]): HostAddress[] {
  const out: HostAddress[] = [];
  for (const l of links)
    for (const a of l.addr_info ?? []) {
      if (a.family === 'inet') out.push({ addr: a.local, family: 4, ifindex: l.ifindex, ifname: l.ifname });
      else if (a.family === 'inet6') {
        const n = parseIPv6(a.local);
        if (n === null || !(isGlobal6(a) || isLoopback6(n))) continue;
        out.push({ addr: formatIPv6(n), family: 6, ifindex: l.ifindex, ifname: l.ifname });
      }
    }
  return out;
}

/** Every address of the host, both families (see hostAddressesOf). */
export async function hostAddresses(): Promise<HostAddress[]> {
  return hostAddressesOf(await readIpLinks());
}

/**
 * An interface whose packets start with an Ethernet header at tc: berth_up_in
 * parses Ethernet frames, and its reply half goes back out of the arrival
 * interface with the request's MACs swapped. Ethernet devices (veth, NICs,
 * bridges, vlans) and loopback (whose frames carry a zeroed Ethernet
 * header) do; an L3 device (tun, wireguard, ipip, gre: no link-layer header)
 * would have its IP header misread as one.
 */
export function hasEthernetHeader(i: Pick<HostInterface, 'linkType'>): boolean {
  return i.linkType === 'ether' || i.linkType === 'loopback';
}

/**
 * Interfaces that face outside: all but loopback, bridges, bridge ports
 * (container veths), berth's own container veths and L3 devices. The default
 * for both the served interfaces and the uplinks.
 */
export function autoUplinks(ifs: readonly HostInterface[]): HostInterface[] {
  return ifs.filter((i) => i.kind !== 'loopback' && i.kind !== 'bridge' && !i.master && !(i.alias ?? '').startsWith('berth:veth:') && i.ifname !== 'lo' && hasEthernetHeader(i));
}

/** What a config or the command line says about interfaces (undefined: auto-detected). */
export interface InterfaceSelection {
  /** uplinks: their addresses are what masquerade translates to */
  readonly uplinks?: readonly string[];
  /** served interfaces besides the uplinks: published ports and tracked replies */
  readonly interfaces?: readonly string[];
  /** always uplinks, whatever `uplinks` says (a standalone file's externals) */
  readonly alwaysUplinks?: readonly string[];
}

export interface RefusedInterface {
  ifname: string;
  /** where it was named: 'uplinks' or 'interfaces' */
  from: 'uplinks' | 'interfaces';
  reason: string;
}

export interface InterfaceChoice {
  /** berth_uplink entries: the masquerade addresses (every uplink is also served) */
  uplinks: HostInterface[];
  /** every interface berth_up_in goes on: the uplinks and the other served interfaces */
  served: HostInterface[];
  /** named interfaces that cannot be served (L3 devices): left out, with the reason */
  refused: RefusedInterface[];
}

/** Why a named interface cannot be served, or undefined when it can. */
export function refusalOf(i: HostInterface): string | undefined {
  if (hasEthernetHeader(i)) return undefined;
  return `${i.ifname} is an L3 device (link type ${i.linkType || 'unknown'}${i.kind ? `, ${i.kind}` : ''}): its packets carry no Ethernet header, which berth_up_in needs to serve published ports and tracked replies; leave it out (the bridges' choke points still drop what it forwards into a network)`;
}

/**
 * The one decision of which interfaces berth works on, for both modes.
 * Uplinks: the named ones (or auto-detected) plus alwaysUplinks. Served:
 * the uplinks, plus the named interfaces (or every outside-facing one).
 * Names that do not exist (yet) are skipped until they appear; a named L3
 * device is refused (see refusalOf), never served. Sorted by ifindex.
 */
export function chooseInterfaces(sel: InterfaceSelection, ifs: readonly HostInterface[]): InterfaceChoice {
  const byName = new Map(ifs.map((i) => [i.ifname, i]));
  const auto = autoUplinks(ifs);
  const refused: RefusedInterface[] = [];
  const pick = (names: readonly string[], from: RefusedInterface['from']): HostInterface[] => {
    const out: HostInterface[] = [];
    for (const n of names) {
      const i = byName.get(n);
      if (!i) continue;
      const why = refusalOf(i);
      if (why) {
        if (!refused.some((r) => r.ifname === n)) refused.push({ ifname: n, from, reason: why });
        continue;
      }
      out.push(i);
    }
    return out;
  };
  const uplinks = uniqueSorted([...(sel.uplinks ? pick(sel.uplinks, 'uplinks') : auto), ...pick(sel.alwaysUplinks ?? [], 'uplinks')]);
  const served = uniqueSorted([...uplinks, ...(sel.interfaces ? pick(sel.interfaces, 'interfaces') : auto)]);
  return { uplinks, served, refused };
}

function uniqueSorted(xs: readonly HostInterface[]): HostInterface[] {
  const m = new Map<number, HostInterface>();
  for (const x of xs) m.set(x.ifindex, x);
  return [...m.values()].sort((a, b) => a.ifindex - b.ifindex);
}

/** Throws the refusals of a choice (for `up` and `run`, before they change anything). */
export function assertServable(choice: Pick<InterfaceChoice, 'refused'>): void {
  if (!choice.refused.length) return;
  throw new Error(choice.refused.map((r) => `${r.from}: ${r.reason}`).join('; '));
}

/** Every interface of the host by ifindex, from sysfs: one pass, for callers naming many. */
export function interfaceNames(): Map<number, string> {
  const out = new Map<number, string>();
  try {
    for (const n of fs.readdirSync('/sys/class/net')) {
      try {
        out.set(Number(fs.readFileSync(`/sys/class/net/${n}/ifindex`, 'utf8')), n);
      } catch {
        /* the interface went away meanwhile */
      }
    }
  } catch {
    /* no sysfs */
  }
  return out;
}

/** Interface name by ifindex (`if<N>` when it is gone). */
export function ifnameOf(ifindex: number, names: ReadonlyMap<number, string> = interfaceNames()): string {
  return names.get(ifindex) ?? `if${ifindex}`;
}

/** The host's own ephemeral port range (net.ipv4.ip_local_port_range of this namespace). */
export function hostEphemeralPorts(file = '/proc/sys/net/ipv4/ip_local_port_range'): { min: number; max: number } {
  const [min, max] = fs.readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
  if (!Number.isInteger(min) || !Number.isInteger(max)) throw new Error(`${file}: unreadable port range`);
  return { min, max };
}

/**
 * Masquerade and hairpin take their source ports from [min, max]. berth cannot
 * see the host's sockets, so the range must lie outside the ports the host
 * picks for its own connections; otherwise a translated flow could take the
 * tuple of a host socket to the same destination. Throws the reason when it
 * overlaps.
 */
export function checkNatPortRange(min: number, max: number, host = hostEphemeralPorts()): void {
  if (min <= host.max && max >= host.min)
    throw new Error(
      `masquerade ports ${min}-${max} overlap the host's own ephemeral ports (net.ipv4.ip_local_port_range ${host.min} ${host.max}): ` +
        `a translated flow could take the tuple of a host socket. Choose settings.nat outside that range, or narrow ip_local_port_range`,
    );
}
