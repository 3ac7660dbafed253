/**
 * Per-veth counters read from the pinned per-CPU map and named with the
 * pinned metadata: the one place that turns counter entries into rows, used
 * by `berth stats`, `berth status` and the Prometheus exporter.
 */
import {
  DIRECTION_NAMES,
  DROP_REASON_NAMES,
  Direction,
  PacketsBytes,
  counterKeyCodec,
  endpointMetaCodec,
  ifindexKeyCodec,
  networkKeyCodec,
  networkMetaCodec,
  bridgeCodec,
  sumPerCpuCounters,
} from '../platform/contract';
import type { Dataplane } from '../platform/dataplane';
import { ifnameOf, interfaceNames } from '../platform/hostnet';

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

export async function readCounters(dp: Dataplane): Promise<CounterRow[]> {
  const label = await counterLabeler(dp);
  const rows: CounterRow[] = [];
  for (const [k, v] of await dp.maps.counters.dump()) {
    const key = counterKeyCodec.decode(k);
    const sum = sumPerCpuCounters(v, dp.cpus);
    const drop: Record<string, PacketsBytes> = {};
    DROP_REASON_NAMES.forEach((name, i) => {
      if (i > 0) drop[name] = sum.drop[i];
    });
    rows.push({ ifindex: key.ifindex, ...label(key.ifindex, key.direction), pass: sum.pass, redirect: sum.redirect, drop });
  }
  return rows.sort((a, b) => a.container.localeCompare(b.container) || a.ifindex - b.ifindex || a.direction.localeCompare(b.direction));
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
