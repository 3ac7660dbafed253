/**
 * The host's IPv6 addresses, for Docker mode's desired state (uplinks'
 * NAT66 source, the host's own addresses): what `ip -j -6 addr show` lists,
 * link-local left out (they are per link, never a published port's or a
 * masquerade's address). HostFacts (src/standalone.ts) holds IPv4 only.
 */
import { runJson } from '../exec';
import { canonicalIPv6 } from '../ipv6';

interface IpAddr6 {
  ifindex: number;
  ifname: string;
  addr_info?: Array<{ family?: string; local?: string; scope?: string; tentative?: boolean; dadfailed?: boolean; deprecated?: boolean }>;
}

export interface HostAddress6 {
  addr: string;
  ifindex: number;
  ifname: string;
  /** 'global' or 'host' (::1) */
  scope: string;
  /** false while tentative, after a failed DAD, or deprecated: not a source for new flows */
  usable: boolean;
}

/** Parse `ip -j -6 addr show` output. */
export function parseHostAddresses6(links: readonly IpAddr6[] | null | undefined): HostAddress6[] {
  const out: HostAddress6[] = [];
  for (const l of links ?? [])
    for (const a of l.addr_info ?? []) {
      if (a.family !== 'inet6' || !a.local || a.scope === 'link') continue;
      const addr = canonicalIPv6(a.local);
      if (!addr) continue;
      out.push({ addr, ifindex: l.ifindex, ifname: l.ifname, scope: a.scope ?? 'global', usable: !a.tentative && !a.dadfailed && !a.deprecated });
    }
  return out;
}

/** The host's IPv6 addresses; [] when IPv6 is off or `ip` fails (IPv6 is then simply not there). */
export async function hostAddresses6(): Promise<HostAddress6[]> {
  try {
    return parseHostAddresses6(await runJson<IpAddr6[]>('ip', ['-j', '-6', 'addr', 'show']));
  } catch {
    return [];
  }
}
