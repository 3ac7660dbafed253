/**
 * The dashboard's JSON (`/api/snapshot`): totals read from the same readers
 * as the Prometheus exporter (readCounterTotals, readPorts, readGlobals, the map
 * fill sampler). Rates are computed by the page from successive snapshots.
 */
import type { Dataplane } from '../../platform/dataplane';
import { Health, MapFillSampler, errorClass, programsPerInterface } from '../metrics';
import { CounterTotals, V, readCounterTotals, readGlobals } from '../stats';
import { DROP_REASON_COUNT, DROP_REASON_NAMES, endpointCodec, ifindexKeyCodec } from '../../platform/contract';
import { PortRow, readPorts } from '../ports';
import { VERSION } from '../../platform/version';

export interface Traffic {
  packets: number;
  bytes: number;
  drops: number;
}

export interface EndpointSnapshot {
  container: string;
  network: string;
  interface: string;
  ifindex: number;
  /** the container's addresses, IPv4 and IPv6 (RFC 5952), those it has; empty for an uplink */
  addresses: string[];
  /** container -> host (for uplinks: arriving from outside) */
  fromContainer: Traffic;
  /** host -> container (for uplinks: leaving) */
  toContainer: Traffic;
  /** packets berth delivered straight into a namespace, both directions */
  redirected: number;
  programs: number;
}

export interface Snapshot {
  version: string;
  /** Unix seconds */
  time: number;
  containers: EndpointSnapshot[];
  uplinks: EndpointSnapshot[];
  networks: Array<{ network: string; endpoints: number; packets: number; bytes: number; drops: number }>;
  /** packets, by reason label */
  drops: Record<string, number>;
  conntrack: { entries: number; capacity: number; created: number; full: number; assured: number; evicted: number; unassuredCapacity: number; expired: number; sampledAt: number };
  nat: { retries: number; failures: number };
  maps: Array<{ map: string; entries: number; maxEntries: number; ratio: number }>;
  ports: PortRow[];
  health: { lastReconcile: number; lastError: string; errorClass: string; gcSeconds: number };
}

const zero = (): Traffic => ({ packets: 0, bytes: 0, drops: 0 });

function traffic(r: CounterTotals): Traffic {
  let drops = 0;
  let dropBytes = 0;
  for (let i = 1; i < DROP_REASON_COUNT; i++) {
    drops += r.vals[V.drop(i)];
    dropBytes += r.vals[V.drop(i) + 1];
  }
  return {
    packets: r.vals[V.PASS_P] + r.vals[V.REDIR_P] + drops,
    bytes: r.vals[V.PASS_B] + r.vals[V.REDIR_B] + dropBytes,
    drops,
  };
}

/** A container's addresses from its endpoint (berth_ep_by_ifindex): '0.0.0.0' / '::' stand for none. */
function addressesOf(dp: Dataplane, ifindex: number): string[] {
  const v = dp.maps.epByIfindex.lookup(ifindexKeyCodec.encode({ ifindex }));
  if (!v) return [];
  const ep = endpointCodec.decode(v);
  return [ep.addr, ep.addr6 ?? '::'].filter((a) => a !== '0.0.0.0' && a !== '::');
}

export async function readSnapshot(dp: Dataplane, health: Health, sampler: MapFillSampler): Promise<Snapshot> {
  const [rows, ports, fills] = await Promise.all([readCounterTotals(dp), readPorts(dp), sampler.read()]);
  const g = readGlobals(dp);
  const progs = programsPerInterface(dp);
  const eps = new Map<number, EndpointSnapshot>();
  const drops: Record<string, number> = {};
  for (const r of rows) {
    let e = eps.get(r.ifindex);
    if (!e) {
      e = { container: r.container, addresses: r.container ? addressesOf(dp, r.ifindex) : [], network: r.network, interface: r.interface, ifindex: r.ifindex, fromContainer: zero(), toContainer: zero(), redirected: 0, programs: progs.get(r.interface) ?? 0 };
      eps.set(r.ifindex, e);
    }
    const t = traffic(r);
    if (r.direction === 'from_container' || r.direction === 'from_outside') e.fromContainer = t;
    else e.toContainer = t;
    e.redirected += r.vals[V.REDIR_P];
    for (let i = 1; i < DROP_REASON_COUNT; i++) {
      const n = r.vals[V.drop(i)];
      if (n > 0) drops[DROP_REASON_NAMES[i]] = (drops[DROP_REASON_NAMES[i]] ?? 0) + n;
    }
  }
  const all = [...eps.values()];
  const containers = all.filter((e) => e.container);
  const nets = new Map<string, { network: string; endpoints: number; packets: number; bytes: number; drops: number }>();
  for (const e of containers) {
    const n = nets.get(e.network) ?? { network: e.network, endpoints: 0, packets: 0, bytes: 0, drops: 0 };
    n.endpoints++;
    n.packets += e.fromContainer.packets + e.toContainer.packets;
    n.bytes += e.fromContainer.bytes + e.toContainer.bytes;
    n.drops += e.fromContainer.drops + e.toContainer.drops;
    nets.set(e.network, n);
  }
  const ct = fills.find((f) => f.map === dp.maps.ct.name);
  const lastError = health.lastError?.() ?? '';
  return {
    version: VERSION,
    time: Date.now() / 1000,
    containers,
    uplinks: all.filter((e) => !e.container),
    networks: [...nets.values()].sort((a, b) => a.network.localeCompare(b.network)),
    drops,
    conntrack: {
      entries: ct?.entries ?? 0,
      capacity: dp.maps.ct.maxEntries,
      created: Number(g.ct_created),
      full: Number(g.ct_full),
      assured: Number(g.ct_assured),
      evicted: Number(g.ct_evicted),
      unassuredCapacity: dp.maps.ctRing.maxEntries,
      expired: health.expiredTotal?.() ?? 0,
      sampledAt: ct?.sampledAt ?? 0,
    },
    nat: { retries: Number(g.nat_port_retries), failures: Number(g.nat_port_exhausted) },
    maps: fills.map((f) => ({ map: f.map, entries: f.entries, maxEntries: f.maxEntries, ratio: f.maxEntries ? f.entries / f.maxEntries : 0 })),
    ports,
    health: {
      lastReconcile: health.lastReconcileSeconds?.() ?? 0,
      lastError,
      errorClass: errorClass(lastError),
      gcSeconds: (health.lastSweep?.()?.durationMs ?? 0) / 1000,
    },
  };
}
