/**
 * Per-veth counters read from the pinned per-CPU map and named with the
 * pinned metadata: the one place that reads berth_counters and turns its
 * entries into rows (readCounterEntries: one dump, one label pass, one
 * per-CPU decode, platform/percpu.ts). Two views of the same read:
 * readCounters (exact bigints: `berth stats`, `berth demo`, the tests) and
 * readCounterTotals (doubles, summed without the bigint decode: the
 * Prometheus exporter, the dashboard, `berth stats --watch`, `berth trace`).
 * readGlobals reads berth_stats, the dataplane-wide counters, for all of them.
 */
import {
  CounterSlot,
  DIRECTION_NAMES,
  DROP_REASON_NAMES,
  Direction,
  PacketsBytes,
  counterKeyCodec,
  counterValueCodec,
  counterValueOf,
  endpointMetaCodec,
  ifindexKeyCodec,
  networkKeyCodec,
  networkMetaCodec,
  bridgeCodec,
  GlobalStats,
  sumGlobalStats,
} from '../platform/contract';
import type { Dataplane } from '../platform/dataplane';
import { ifnameOf, interfaceNames } from '../platform/hostnet';
import { PerCpuSums } from '../platform/percpu';

export interface CounterRow {
  ifindex: number;
  interface: string;
  container: string;
  network: string;
  direction: string;
  pass: PacketsBytes;
  redirect: PacketsBytes;
  /** by reason name; only reasons with traffic are meaningful, all are present */
  drop: Record<string, PacketsBytes>;
}

/** Served interfaces (uplinks and the others) use the same counter slots: 0 = arriving from outside, 1 = leaving. */
export const UPLINK_DIRECTION_NAMES: Readonly<Record<number, string>> = Object.freeze({ 0: 'from_outside', 1: 'to_outside' });

export interface CounterLabels {
  interface: string;
  container: string;
  network: string;
  direction: string;
}

/**
 * Names for counter entries, from the pinned metadata: container veths by
 * their endpoint metadata, uplinks by the host's interface names. Shared by
 * `berth stats` and the exporter, so both label a row the same way.
 */
export async function counterLabeler(dp: Dataplane): Promise<(ifindex: number, direction: number) => CounterLabels> {
  const nets = new Map<number, string>();
  for (const [k, v] of await dp.maps.netMeta.dump()) nets.set(networkKeyCodec.decode(k).network_id, networkMetaCodec.decode(v).name);
  const metas = new Map<number, { container: string; ifname: string; network: string }>();
  for (const [k, v] of await dp.maps.epMeta.dump()) {
    const m = endpointMetaCodec.decode(v);
    metas.set(ifindexKeyCodec.decode(k).ifindex, { container: m.container, ifname: m.ifname, network: nets.get(m.network_id) ?? '' });
  }
  // bridges: their network (to_container = into the network, from_container = out of it)
  const bridges = new Map<number, string>();
  for (const [k, v] of await dp.maps.bridge.dump()) bridges.set(ifindexKeyCodec.decode(k).ifindex, nets.get(bridgeCodec.decode(v).network_id) ?? '');
  // served interfaces are few: read them (and the host's names) only when a row needs them
  let uplinks: { set: Set<number>; names: Map<number, string> } | undefined;
  return (ifindex, direction) => {
    const meta = metas.get(ifindex);
    if (meta)
      return { interface: meta.ifname, container: meta.container, network: meta.network, direction: DIRECTION_NAMES[direction as Direction] ?? String(direction) };
    // the served interfaces: the uplinks, and every interface berth_up_in is pinned on
    uplinks ??= { set: new Set([...dp.maps.uplink.keys().map((k) => ifindexKeyCodec.decode(k).ifindex), ...dp.uplinkAttachments().map((a) => a.ifindex)]), names: interfaceNames() };
    const net = bridges.get(ifindex);
    if (net !== undefined)
      return { interface: ifnameOf(ifindex, uplinks.names), container: '', network: net, direction: DIRECTION_NAMES[direction as Direction] ?? String(direction) };
    if (uplinks.set.has(ifindex))
      return { interface: ifnameOf(ifindex, uplinks.names), container: '', network: '', direction: UPLINK_DIRECTION_NAMES[direction] ?? String(direction) };
    return { interface: `if${ifindex}`, container: '', network: '', direction: DIRECTION_NAMES[direction as Direction] ?? String(direction) };
  };
}

/** One entry of berth_counters as read: its key, its names, its counts summed over CPUs. */
export interface CounterEntry extends CounterLabels {
  ifindex: number;
  sums: PerCpuSums;
}

/** The one read of berth_counters: the dump and the metadata (in parallel), each entry labelled and summed over CPUs. */
export async function readCounterEntries(dp: Dataplane): Promise<CounterEntry[]> {
  const [label, dump] = await Promise.all([counterLabeler(dp), dp.maps.counters.dump()]);
  return dump.map(([k, v]) => {
    const key = counterKeyCodec.decode(k);
    return { ifindex: key.ifindex, ...label(key.ifindex, key.direction), sums: new PerCpuSums(v, counterValueCodec.size, dp.cpus) };
  });
}

/** Rows with exact counts, by container, interface and direction. */
export async function readCounters(dp: Dataplane): Promise<CounterRow[]> {
  const rows: CounterRow[] = [];
  for (const { sums, ...labels } of await readCounterEntries(dp)) {
    const sum = counterValueOf(sums);
    const drop: Record<string, PacketsBytes> = {};
    DROP_REASON_NAMES.forEach((name, i) => {
      if (i > 0) drop[name] = sum.drop[i];
    });
    rows.push({ ...labels, pass: sum.pass, redirect: sum.redirect, drop });
  }
  return rows.sort((a, b) => a.container.localeCompare(b.container) || a.ifindex - b.ifindex || a.direction.localeCompare(b.direction));
}

/**
 * One counter entry (veth or uplink, one direction), summed over CPUs as
 * doubles: exact up to 2^53 (9 PB), and Prometheus values are doubles anyway.
 * vals: [pass packets, pass bytes, redirect packets, redirect bytes, then
 * packets, bytes per drop reason (index = enum value)] (V).
 */
export interface CounterTotals extends CounterLabels {
  ifindex: number;
  vals: Float64Array;
}

/** Where each count lies in CounterTotals.vals (struct berth_counter_value's u64 slots). */
export const V = Object.freeze({ PASS_P: CounterSlot.PASS, PASS_B: CounterSlot.PASS + 1, REDIR_P: CounterSlot.REDIRECT, REDIR_B: CounterSlot.REDIRECT + 1, drop: CounterSlot.drop } as const);

/** The counters as doubles, unsorted: what the exporter and the dashboard read at every scrape (no bigint per count: the hot part with 1,000 veths). */
export async function readCounterTotals(dp: Dataplane): Promise<CounterTotals[]> {
  return (await readCounterEntries(dp)).map(({ sums, ...labels }) => ({ ...labels, vals: sums.numbers() }));
}

/** Dataplane-wide counters (berth_stats, summed over CPUs); zeros when the slot is missing. */
export function readGlobals(dp: Dataplane): GlobalStats {
  const v = dp.maps.stats.lookup(Buffer.alloc(4));
  if (v) return sumGlobalStats(v, dp.cpus);
  return { ct_created: 0n, ct_full: 0n, nat_port_retries: 0n, nat_port_exhausted: 0n, sock_translations: 0n, events_emitted: 0n, events_suppressed: 0n, ct_assured: 0n, ct_evicted: 0n };
}

export function totalDrops(row: CounterRow): PacketsBytes {
  const t = { packets: 0n, bytes: 0n };
  for (const pb of Object.values(row.drop)) {
    t.packets += pb.packets;
    t.bytes += pb.bytes;
  }
  return t;
}

/** JSON-safe form (bigint -> number). */
export function rowToJson(row: CounterRow): object {
  const pb = (x: PacketsBytes) => ({ packets: Number(x.packets), bytes: Number(x.bytes) });
  return {
    ...row,
    pass: pb(row.pass),
    redirect: pb(row.redirect),
    drop: Object.fromEntries(Object.entries(row.drop).map(([k, v]) => [k, pb(v)])),
  };
}
