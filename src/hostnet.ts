/**
 * Facts about the host's own network that the dataplane needs: its local
 * IPv4 addresses (Docker's "addrtype LOCAL"), and the interfaces that can
 * bring traffic in from outside (uplinks) with their address and MAC.
 */
import * as fs from 'node:fs';
import { runJson } from './exec';

interface IpAddrInfo {
  family: string;
  local: string;
  prefixlen: number;
  scope?: string;
}

interface IpLink {
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
  addr: string;
  ifindex: number;
  ifname: string;
}

export interface HostInterface {
  ifindex: number;
  ifname: string;
  mac: string;
  /** first IPv4 address, '' when none */
  addr: string;
  kind: string;
  master?: string;
  alias?: string;
}

export async function hostInterfaces(): Promise<HostInterface[]> {
  const links = (await runJson<IpLink[]>('ip', ['-d', '-j', 'link', 'show'])) ?? [];
  const addrs = (await runJson<IpLink[]>('ip', ['-j', '-4', 'addr', 'show'])) ?? [];
  const v4 = new Map<number, string>();
  for (const l of addrs) {
    const a = (l.addr_info ?? []).find((x) => x.family === 'inet');
    if (a) v4.set(l.ifindex, a.local);
  }
  return links.map((l) => ({
    ifindex: l.ifindex,
    ifname: l.ifname,
    mac: (l.address ?? '00:00:00:00:00:00').toLowerCase(),
    addr: v4.get(l.ifindex) ?? '',
    kind: l.linkinfo?.info_kind ?? (l.link_type === 'loopback' ? 'loopback' : ''),
    master: l.master,
    alias: l.ifalias,
  }));
}

/** Every IPv4 address configured on the host, loopback included. */
export async function hostAddresses(): Promise<HostAddress[]> {
  const addrs = (await runJson<IpLink[]>('ip', ['-j', '-4', 'addr', 'show'])) ?? [];
  const out: HostAddress[] = [];
  for (const l of addrs)
    for (const a of l.addr_info ?? []) if (a.family === 'inet') out.push({ addr: a.local, ifindex: l.ifindex, ifname: l.ifname });
  return out;
}

/**
 * Interfaces that can bring traffic in from outside: all but loopback,
 * bridges, bridge ports (container veths) and berth's own links. Used when a
 * config does not name its uplinks.
 */
export function autoUplinks(ifs: readonly HostInterface[]): HostInterface[] {
  return ifs.filter((i) => i.kind !== 'loopback' && i.kind !== 'bridge' && !i.master && !(i.alias ?? '').startsWith('berth:veth:') && i.ifname !== 'lo');
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

/**
 * Turn IPv4 forwarding on for one interface (never off), as dockerd's
 * ip_forward would, but per interface rather than machine-wide. Written to
 * /proc directly: no sysctl binary (procps) needed. Returns 'enabled' when it
 * changed, 'already' when it was on, 'missing' when the interface is not there.
 */
export function enableIpv4Forwarding(ifname: string): 'enabled' | 'already' | 'missing' {
  if (!/^[^/\0]{1,15}$/.test(ifname) || ifname === '.' || ifname === '..') throw new Error(`not an interface name: '${ifname}'`);
  const p = `/proc/sys/net/ipv4/conf/${ifname}/forwarding`;
  let cur: string;
  try {
    cur = fs.readFileSync(p, 'utf8').trim();
  } catch {
    return 'missing';
  }
  if (cur === '1') return 'already';
  fs.writeFileSync(p, '1');
  return 'enabled';
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
