/** What the pinned dataplane holds, read back for `berth status`. */
import { SocketHooksTarget, describeSocketHooks } from './cgroup';
import { Dataplane } from './dataplane';
import { EndpointFlags } from './contract';
import { readCurrent } from './reconcile';
import { CtSummary, ctSummary } from './conntrack';

export interface Status {
  pinRoot: string;
  loaded: boolean;
  programs: { name: string; id: number }[];
  networks: { id: number; name: string; bridge: string; subnet: string; gateway: string; icc: boolean; routed: boolean; endpoints: number }[];
  endpoints: { container: string; network: string; address: string; mac: string; interface: string; ifindex: number; hooks: string[] }[];
  staleLinks: number;
  /** the host socket hooks: where they can attach (or why not) and which are attached */
  socketHooks: SocketHooksStatus;
  /** the conntrack table's sizes and the packet path's counters (absent when nothing is pinned) */
  conntrack?: CtSummary;
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

/** `socketHooks`: as the CLI resolved it (--cgroup); default: found in /proc/self/mountinfo. */
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
    return {
      pinRoot,
      loaded: true,
      programs: Object.values(dp.progs).map((p) => ({ name: p.name, id: p.id })),
      networks: nets.sort((a, b) => a.id - b.id),
      endpoints: endpoints.sort((a, b) => a.container.localeCompare(b.container)),
      staleLinks: cur.attachments.filter((a) => !a.live).length,
      socketHooks: hooksStatus(socketHooks, (cur.cgroupAttachments ?? []).map((a) => a.hook)),
      conntrack: ctSummary(dp.maps, dp.cpus),
    };
  } finally {
    dp.close();
  }
}
