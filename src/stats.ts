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
  sumPerCpuCounters,
} from './contract';
import type { Dataplane } from './dataplane';
import { ifnameOf } from './hostnet';

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

/** Uplinks use the same counter slots: 0 = arriving from outside, 1 = leaving. */
export const UPLINK_DIRECTION_NAMES: Readonly<Record<number, string>> = Object.freeze({ 0: 'from_outside', 1: 'to_outside' });

export async function readCounters(dp: Dataplane): Promise<CounterRow[]> {
  const nets = new Map<number, string>();
  for (const [k, v] of await dp.maps.netMeta.dump()) nets.set(networkKeyCodec.decode(k).network_id, networkMetaCodec.decode(v).name);
  const metas = new Map<number, { container: string; ifname: string; network: string }>();
  for (const [k, v] of await dp.maps.epMeta.dump()) {
    const m = endpointMetaCodec.decode(v);
    metas.set(ifindexKeyCodec.decode(k).ifindex, { container: m.container, ifname: m.ifname, network: nets.get(m.network_id) ?? '' });
  }
  const uplinks = new Set<number>();
  for (const k of dp.maps.uplink.keys()) uplinks.add(ifindexKeyCodec.decode(k).ifindex);
  const rows: CounterRow[] = [];
  for (const [k, v] of await dp.maps.counters.dump()) {
    const key = counterKeyCodec.decode(k);
    const sum = sumPerCpuCounters(v, dp.cpus);
    const meta = metas.get(key.ifindex) ?? (uplinks.has(key.ifindex) ? { container: '', ifname: ifnameOf(key.ifindex), network: '' } : undefined);
    const isUplink = !metas.has(key.ifindex) && uplinks.has(key.ifindex);
    const drop: Record<string, PacketsBytes> = {};
    DROP_REASON_NAMES.forEach((name, i) => {
      if (i > 0) drop[name] = sum.drop[i];
    });
    rows.push({
      ifindex: key.ifindex,
      interface: meta?.ifname ?? `if${key.ifindex}`,
      container: meta?.container ?? '',
      network: meta?.network ?? '',
      direction: isUplink ? UPLINK_DIRECTION_NAMES[key.direction] ?? String(key.direction) : DIRECTION_NAMES[key.direction as Direction] ?? String(key.direction),
      pass: sum.pass,
      redirect: sum.redirect,
      drop,
    });
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
