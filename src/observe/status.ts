/** What the pinned dataplane holds, read back for `berth status`. */
import { SocketHooksTarget, describeSocketHooks } from '../platform/cgroup';
import { Dataplane } from '../platform/dataplane';
import { hex, readPinnedVersion } from '../platform/lifecycle';
import { EndpointFlags } from '../platform/contract';
import { readCurrent } from '../engine/reconcile';
import { CtSummary, ctSummary } from '../engine/conntrack';
import * as fs from 'node:fs';
import { addressesOf, withNetlink } from '../platform/netlink';
import { formatCidr6, formatIPv6, networkAddress6, parseIPv6 } from '../domain/ipv6';

export interface Status {
  pinRoot: string;
  loaded: boolean;
  programs: { name: string; id: number }[];
  /** subnet6/gateway6: the network's IPv6 side (issue 12), absent without one */
  networks: { id: number; name: string; bridge: string; subnet: string; gateway: string; subnet6?: string; gateway6?: string; icc: boolean; routed: boolean; routed6?: boolean; endpoints: number }[];
  /** address6: the container's IPv6 address, absent without one */
  endpoints: { container: string; network: string; address: string; address6?: string; mac: string; interface: string; ifindex: number; hooks: string[] }[];
  staleLinks: number;
  /** the host socket hooks: where they can attach (or why not) and which are attached */
  socketHooks: SocketHooksStatus;
  /** the conntrack table's sizes and the packet path's counters (absent when nothing is pinned) */
  conntrack?: CtSummary;
  /** the pinned contract version (src/platform/lifecycle.ts); absent when nothing is pinned or it predates versions */
  version?: { epoch: number; release: string; layout: string; programs: string };
}

export interface SocketHooksStatus {
  available: boolean;
  /** the cgroup v2 directory they attach to (when available) */
  cgroup?: string;
  source?: 'option' | 'mountinfo';
  /** why they are unavailable */
  reason?: string;
  note?: string;
  /** hooks pinned under the pin root */
  attached: string[];
}

function hooksStatus(t: SocketHooksTarget, attached: string[]): SocketHooksStatus {
  return t.available ? { available: true, cgroup: t.cgroup, source: t.source, ...(t.note ? { note: t.note } : {}), attached } : { available: false, reason: t.reason, attached };
}

/** The global IPv6 addresses of a link (in a namespace when `ns`), as "addr/len"; [] when none or unreadable. */
async function globalAddrs6(dev: string, ns?: string): Promise<{ addr: bigint; prefixLen: number }[]> {
  try {
    const addrs = await withNetlink(ns, (nl) => addressesOf(nl, dev, 6));
    const out: { addr: bigint; prefixLen: number }[] = [];
    for (const a of addrs) {
      const n = a.scope === 'global' ? parseIPv6(a.address) : null;
      if (n !== null) out.push({ addr: n, prefixLen: a.prefixLen });
    }
    return out;
  } catch {
    return [];
  }
}

/**
 * The IPv6 side of a network: from berth_network_meta's subnet6/gateway6/
 * prefix_len6 when it holds them, otherwise what its bridge holds (its
 * global address is the gateway6, as berth and Docker give it; a dataplane
 * pinned by an older berth has no IPv6 fields).
 */
async function network6(m: object, bridge: string): Promise<{ subnet6?: string; gateway6?: string }> {
  const f = m as { subnet6?: unknown; prefix_len6?: unknown; gateway6?: unknown };
  if (typeof f.subnet6 === 'string' && typeof f.gateway6 === 'string' && typeof f.prefix_len6 === 'number' && f.prefix_len6 > 0) {
    return { subnet6: `${f.subnet6}/${f.prefix_len6}`, gateway6: f.gateway6 };
  }
  const [a] = await globalAddrs6(bridge);
  return a ? { subnet6: formatCidr6({ addr: networkAddress6(a), prefixLen: a.prefixLen }), gateway6: formatIPv6(a.addr) } : {};
}

/**
 * A container's IPv6 address: berth_endpoint's addr6 when it holds one,
 * otherwise eth0's in the namespace named after the container (standalone
 * mode names them so; Docker's are unnamed: then none is shown).
 */
async function endpoint6(ep: object, container: string): Promise<string | undefined> {
  const f = (ep as { addr6?: unknown }).addr6;
  if (typeof f === 'string' && f !== '' && f !== '::') return f;
  if (!container || !/^[A-Za-z0-9_.-]{1,64}$/.test(container) || !fs.existsSync(`/run/netns/${container}`)) return undefined;
  const [a] = await globalAddrs6('eth0', container);
  return a ? formatIPv6(a.addr) : undefined;
}

/** `socketHooks`: as the CLI resolved it (--cgroup); default: found in /proc/self/mountinfo. */
function versionOf(pinRoot: string): { version?: Status['version'] } {
  const v = readPinnedVersion(pinRoot);
  return v ? { version: { epoch: v.epoch, release: v.release, layout: hex(v.layout), programs: hex(v.programs) } } : {};
}

export async function readStatus(pinRoot: string, socketHooks: SocketHooksTarget = describeSocketHooks()): Promise<Status> {
  if (!Dataplane.isPinned(pinRoot)) return { pinRoot, loaded: false, programs: [], networks: [], endpoints: [], staleLinks: 0, socketHooks: hooksStatus(socketHooks, []) };
  const dp = Dataplane.openPinned(pinRoot, { socketHooks });
  try {
    const cur = await readCurrent(dp);
    const nets = [...cur.networks].map(([id, m]) => ({
      id,
      name: m.name,
      bridge: m.bridge,
      subnet: `${m.subnet}/${m.prefix_len}`,
      gateway: m.gateway,
      icc: (m.flags & EndpointFlags.ICC) !== 0,
      /** gateway_mode_ipv4=routed: no NAT, reachable on its own addresses (published container ports, ICMP) */
      routed: (m.flags & EndpointFlags.ROUTED) !== 0,
      /** gateway_mode_ipv6=routed: no NAT66, reachable on its own addr6 (published container ports, ICMPv6); only when set */
      ...((m.flags & EndpointFlags.ROUTED6) !== 0 ? { routed6: true } : {}),
      endpoints: [...cur.endpoints.values()].filter((e) => e.ep.network_id === id).length,
    }));
    const endpoints = [...cur.endpoints].map(([ifindex, e]) => ({
      container: e.meta?.container ?? '',
      network: cur.networks.get(e.ep.network_id)?.name ?? '',
      address: e.ep.addr,
      mac: e.ep.mac,
      interface: e.meta?.ifname ?? '',
      ifindex,
      hooks: cur.attachments.filter((a) => a.ifindex === ifindex && a.live).map((a) => a.direction),
    }));
    // the IPv6 side (issue 12)
    for (const n of nets as Status['networks']) Object.assign(n, await network6(cur.networks.get(n.id)!, n.bridge));
    for (const e of endpoints as Status['endpoints']) {
      const address6 = await endpoint6(cur.endpoints.get(e.ifindex)!.ep, e.container);
      if (address6) e.address6 = address6;
    }
    return {
      pinRoot,
      loaded: true,
      programs: Object.values(dp.progs).map((p) => ({ name: p.name, id: p.id })),
      networks: nets.sort((a, b) => a.id - b.id),
      endpoints: endpoints.sort((a, b) => a.container.localeCompare(b.container)),
      staleLinks: cur.attachments.filter((a) => !a.live).length,
      socketHooks: hooksStatus(socketHooks, (cur.cgroupAttachments ?? []).map((a) => a.hook)),
      conntrack: ctSummary(dp.maps, dp.cpus),
      ...versionOf(pinRoot),
    };
  } finally {
    dp.close();
  }
}
