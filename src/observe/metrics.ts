/**
 * Prometheus exporter: counters are read from the pinned per-CPU maps at
 * scrape time (nothing is cached between scrapes), so a container's series
 * disappear as soon as its counter entries are removed.
 *
 * Labels are bounded: interface, container, network, direction, verdict or
 * reason (plus `map` on the per-map gauges and constant build labels). One
 * scrape reads the counter and metadata maps once (shared by every metric of
 * that scrape). Map fill is the one thing not read at every scrape: counting
 * the keys of a large hash map (conntrack: 262144 slots) costs one syscall
 * per entry, so maps with more than SMALL_MAP_ENTRIES slots are sampled in
 * the background at most every `fillSampleMs` (default 30 s) and the last
 * sample is served; small maps are counted at each scrape.
 *
 * The dashboard (src/observe/dashboard/) and `berth stats --watch` read the same
 * readers: readCounterTotals (stats.ts, the one reader of the counter map),
 * readPorts, readGlobals, MapFillSampler.
 */
import * as http from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Metric } from 'prom-client';
import type { Dataplane } from '../platform/dataplane';
import { CounterTotals, V, readCounterTotals, readGlobals } from './stats';
import { VERSION } from '../platform/version';
import type { SweepResult } from '../engine/conntrack';
import { DROP_REASON_COUNT, DROP_REASON_NAMES, GlobalStats } from '../platform/contract';
import { ifnameOf as ifname, interfaceNames } from '../platform/hostnet';
import type { BpfMap } from '../platform/native';
import { native } from '../platform/native';


/** The `reason` label values of berth_drops_total: the BTF enum's names, lower-cased, without NONE. */
export const DROP_REASON_LABELS: readonly string[] = Object.freeze(DROP_REASON_NAMES.slice(1));

/** Maps with at most this many slots are counted at every scrape. */
export const SMALL_MAP_ENTRIES = 16384;

/** Prometheus label value escaping (\\, \", \n). */
const esc = (s: string): string => (/[\\"\n]/.test(s) ? s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : s);

interface Sample {
  metricName: string;
  labels: Record<string, never>;
  value: number;
}

/**
 * A metric whose samples are written pre-formatted (name and label string
 * built once per row and scrape): with 1,000 veths the per-series cost of
 * prom-client's Counter.inc (label validation, hashing) dominated the scrape.
 */
function fastMetric(registry: Registry, name: string, help: string, type: 'counter' | 'gauge', collect: () => Promise<Array<[string, number]>>): void {
  const m = {
    name,
    help,
    type,
    aggregator: 'sum',
    /** the exposition text, written directly (see BerthRegistry) */
    async text(): Promise<string> {
      const lines = [`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`];
      for (const [labels, value] of await collect()) lines.push(`${name}${labels} ${value}`);
      return lines.join('\n');
    },
    async get() {
      const values: Sample[] = (await collect()).map(([labels, value]) => ({ metricName: `${name}${labels}`, labels: {}, value }));
      return { name, help, type, aggregator: 'sum', values };
    },
    reset() {},
  };
  registry.registerMetric(m as unknown as Metric);
}

/**
 * prom-client's Registry, except that metrics with a text() method write
 * their own exposition text: prom-client formats every sample's labels
 * again (objects, arrays, escaping), which is most of a 1,000-veth scrape.
 */
class BerthRegistry extends Registry {
  // not in prom-client's typings, but what Registry.metrics() calls per metric
  async getMetricsAsString(metric: Metric): Promise<string> {
    const fast = metric as Metric & { text?: () => Promise<string> };
    if (typeof fast.text === 'function') return fast.text();
    return (Registry.prototype as unknown as { getMetricsAsString(this: Registry, m: Metric): Promise<string> }).getMetricsAsString.call(this, metric);
  }
}

export interface Health {
  /** Unix time of the last successful reconcile */
  lastReconcileSeconds?: () => number;
  /** how long the last reconcile took, in seconds */
  lastReconcileDurationSeconds?: () => number;
  /** the last reconcile error's message ('' when the last one succeeded) */
  lastError?: () => string;
  /** Unix time of the last error (0 for none) */
  lastErrorSeconds?: () => number;
  lastSweep?: () => SweepResult | undefined;
  /** flows removed by the sweeper since the daemon started */
  expiredTotal?: () => number;
  /** flows flushed by reconciles since the daemon started (an endpoint or publish they point at changed or went) */
  flushedTotal?: () => number;
  /**
   * Docker mode: seconds between a Docker event's time and the reconcile
   * that acted on it (last event). undefined: not in Docker mode, no gauge.
   */
  dockerEventLagSeconds?: () => number | undefined;
}

/** A bounded class for an error message: its errno code when it has one. */
export function errorClass(message: string): string {
  if (!message) return '';
  const m = /\((E[A-Z0-9]{1,15})\)\s*$/.exec(message) ?? /\b(E[A-Z]{2,15})\b/.exec(message);
  if (m) return m[1];
  if (/config|yaml|\.ya?ml/i.test(message)) return 'config';
  if (/docker/i.test(message)) return 'docker';
  return 'other';
}

export interface MapFill {
  map: string;
  entries: number;
  maxEntries: number;
  /** Unix time of the count */
  sampledAt: number;
}

/**
 * Entry counts of the dataplane's hash maps. Small maps are counted on
 * demand; large ones in the background, at most every intervalMs, with
 * dump() (batch lookups on the thread pool, not the event loop).
 */
export class MapFillSampler {
  private cache = new Map<string, MapFill>();
  private pending: Promise<void> | undefined;
  private last = 0;
  /** milliseconds the last background sample took */
  lastSampleMs = 0;

  constructor(
    private readonly maps: () => BpfMap[],
    readonly intervalMs = 30000,
  ) {}

  private static counted(m: BpfMap): boolean {
    return m.type !== 2 /* ARRAY */ && m.type !== 6 /* PERCPU_ARRAY */ && m.type !== 27 /* RINGBUF */;
  }

  /** Start a background sample of the large maps when the last one is older than the interval. */
  private refresh(): Promise<void> {
    if (this.pending) return this.pending;
    if (Date.now() - this.last < this.intervalMs && this.last) return Promise.resolve();
    const started = process.hrtime.bigint();
    this.pending = (async () => {
      for (const m of this.maps()) {
        if (!MapFillSampler.counted(m) || m.maxEntries <= SMALL_MAP_ENTRIES) continue;
        try {
          const n = (await m.dump()).length;
          this.cache.set(m.name, { map: m.name, entries: n, maxEntries: m.maxEntries, sampledAt: Date.now() / 1000 });
        } catch {
          /* closed meanwhile: keep the old sample */
        }
      }
    })().finally(() => {
      this.last = Date.now();
      this.lastSampleMs = Number(process.hrtime.bigint() - started) / 1e6;
      this.pending = undefined;
    });
    return this.pending;
  }

  /**
   * Current fills. Waits for the background sample only when there is none
   * yet; otherwise serves the last one (and starts the next when due).
   */
  async read(): Promise<MapFill[]> {
    const first = this.last === 0;
    const p = this.refresh();
    if (first) await p;
    const out: MapFill[] = [];
    for (const m of this.maps()) {
      if (!MapFillSampler.counted(m)) continue;
      if (m.maxEntries <= SMALL_MAP_ENTRIES) {
        try {
          out.push({ map: m.name, entries: m.keys().length, maxEntries: m.maxEntries, sampledAt: Date.now() / 1000 });
        } catch {
          /* closed */
        }
      } else {
        const c = this.cache.get(m.name);
        if (c) out.push(c);
      }
    }
    return out;
  }

  /** The sampled fill of one map (undefined before the first sample). */
  async get(name: string): Promise<MapFill | undefined> {
    return (await this.read()).find((f) => f.map === name);
  }
}

/** Programs attached per interface name (cgroup hooks under 'cgroup'). */
export function programsPerInterface(dp: Dataplane): Map<string, number> {
  const per = new Map<string, number>();
  const add = (k: string): void => void per.set(k, (per.get(k) ?? 0) + 1);
  const names = interfaceNames(); // one sysfs pass, not one per attachment
  for (const a of dp.attachments()) if (a.live) add(ifname(a.ifindex, names));
  for (const a of dp.uplinkAttachments()) if (a.live) add(ifname(a.ifindex, names));
  for (const _a of dp.cgroupAttachments()) add('cgroup');
  return per;
}

export interface RegistryOptions {
  /** shared sampler (the dashboard uses the same one); default: one of its own */
  sampler?: MapFillSampler;
  /** default 30000 */
  fillSampleMs?: number;
  /** also collect the Node process metrics (berth_process_*, berth_nodejs_*); default true */
  processMetrics?: boolean;
}

/** A scrape's rows with their label text, built once per row and scrape. */
type LabelledTotals = CounterTotals & { l: string };

/** What one scrape reads, read once and shared by every metric of that scrape (dropped at the next tick). */
interface Scrape {
  dp: Dataplane;
  health: Health;
  sampler: MapFillSampler;
  rows(): Promise<LabelledTotals[]>;
  glob(): GlobalStats;
  fill(): Promise<MapFill[]>;
}

export function createRegistry(dp: Dataplane, health: Health, opts: RegistryOptions = {}): Registry {
  const registry: Registry = new BerthRegistry();
  const sampler = opts.sampler ?? new MapFillSampler(() => Object.values(dp.maps), opts.fillSampleMs);
  const scrape = scrapeReaders(dp, health, sampler);
  // in this order: the exposition lists the families as they are registered
  registerTrafficMetrics(registry, scrape);
  registerTableMetrics(registry, scrape);
  registerPacketPathCounters(registry, scrape);
  registerAttachmentMetrics(registry, scrape);
  registerHealthMetrics(registry, scrape);
  registerBuildInfo(registry);
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'berth_' });
  return registry;
}

function scrapeReaders(dp: Dataplane, health: Health, sampler: MapFillSampler): Scrape {
  let snapshot: Promise<LabelledTotals[]> | undefined;
  // one map read per scrape, shared by every metric of that scrape
  const rows = (): Promise<LabelledTotals[]> => {
    if (!snapshot) {
      snapshot = readCounterTotals(dp).then((rs) =>
        rs.map((r) => ({ ...r, l: `interface="${esc(r.interface)}",container="${esc(r.container)}",network="${esc(r.network)}",direction="${esc(r.direction)}"` })),
      );
      setImmediate(() => (snapshot = undefined));
    }
    return snapshot;
  };
  let globals: GlobalStats | undefined;
  const glob = (): GlobalStats => {
    if (!globals) {
      globals = readGlobals(dp);
      setImmediate(() => (globals = undefined));
    }
    return globals;
  };
  let fills: Promise<MapFill[]> | undefined;
  const fill = (): Promise<MapFill[]> => {
    if (!fills) {
      fills = sampler.read();
      setImmediate(() => (fills = undefined));
    }
    return fills;
  };
  return { dp, health, sampler, rows, glob, fill };
}

/** Per-veth (and per served interface) traffic: packets and bytes by verdict, drops by reason, endpoints per network. */
function registerTrafficMetrics(registry: Registry, { rows }: Scrape): void {
  const dropSum = (v: Float64Array, off: number): number => {
    let t = 0;
    for (let i = 1; i < DROP_REASON_COUNT; i++) t += v[V.drop(i) + off];
    return t;
  };
  const verdicts = (off: 0 | 1) => async (): Promise<Array<[string, number]>> => {
    const out: Array<[string, number]> = [];
    for (const r of await rows()) {
      out.push([`{${r.l},verdict="pass"}`, r.vals[V.PASS_P + off]]);
      out.push([`{${r.l},verdict="redirect"}`, r.vals[V.REDIR_P + off]]);
      out.push([`{${r.l},verdict="drop"}`, dropSum(r.vals, off)]);
    }
    return out;
  };
  fastMetric(registry, 'berth_veth_packets_total', 'Packets seen on container veths (and uplinks), by direction and verdict.', 'counter', verdicts(0));
  fastMetric(registry, 'berth_veth_bytes_total', 'Bytes seen on container veths (and uplinks), by direction and verdict.', 'counter', verdicts(1));
  fastMetric(
    registry,
    'berth_drops_total',
    `Packets dropped by berth, by reason (one of: ${DROP_REASON_LABELS.join(', ')}). Only reasons that dropped something have a series.`,
    'counter',
    async () => {
      const out: Array<[string, number]> = [];
      for (const r of await rows())
        for (let i = 1; i < DROP_REASON_COUNT; i++) {
          const n = r.vals[V.drop(i)];
          if (n > 0) out.push([`{${r.l},reason="${DROP_REASON_NAMES[i]}"}`, n]);
        }
      return out;
    },
  );

  new Gauge({
    name: 'berth_endpoints',
    help: 'Container endpoints programmed in the dataplane, by network.',
    labelNames: ['network'],
    registers: [registry],
    async collect() {
      this.reset();
      const per = new Map<string, Set<number>>();
      for (const r of await rows()) {
        if (!r.container) continue; // uplinks
        if (!per.has(r.network)) per.set(r.network, new Set());
        per.get(r.network)!.add(r.ifindex);
      }
      for (const [network, s] of per) this.set({ network }, s.size);
    },
  });
}

/** The conntrack table and the maps: entries, capacities, fill. */
function registerTableMetrics(registry: Registry, { dp, health, sampler, fill }: Scrape): void {
  new Gauge({
    name: 'berth_conntrack_entries',
    help: `Conntrack table entries (two halves per flow), as of the last background sample (at most every ${sampler.intervalMs / 1000} s).`,
    registers: [registry],
    async collect() {
      const f = (await fill()).find((x) => x.map === dp.maps.ct.name);
      this.set(f?.entries ?? 0);
    },
  });
  new Gauge({
    name: 'berth_conntrack_capacity_entries',
    help: 'Conntrack table size; a new flow that finds it full evicts the oldest unassured flow, and is refused (reason ct_full) only when every flow is assured.',
    registers: [registry],
    collect() {
      this.set(dp.maps.ct.maxEntries);
    },
  });
  new Gauge({
    name: 'berth_conntrack_unassured_capacity_flows',
    help: 'Flows that may wait unassured (half-open, unanswered) at once; beyond it the oldest is evicted (settings.conntrack.unassuredMax).',
    registers: [registry],
    collect() {
      this.set(dp.maps.ctRing.maxEntries);
    },
  });
  new Gauge({
    name: 'berth_conntrack_unassured_flows',
    help: 'Flows not assured (no completed handshake, no reply) at the last conntrack sweep.',
    registers: [registry],
    collect() {
      this.set(health.lastSweep?.()?.unassured ?? 0);
    },
  });
  new Gauge({
    name: 'berth_map_fill_ratio',
    help: `Entries over capacity, per BPF hash map. Maps above ${SMALL_MAP_ENTRIES} slots are sampled in the background at most every ${sampler.intervalMs / 1000} s.`,
    labelNames: ['map'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const f of await fill()) this.set({ map: f.map }, f.maxEntries ? f.entries / f.maxEntries : 0);
    },
  });
  new Gauge({
    name: 'berth_map_entries',
    help: 'Entries per BPF hash map (same sampling as berth_map_fill_ratio).',
    labelNames: ['map'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const f of await fill()) this.set({ map: f.map }, f.entries);
    },
  });
}

/** What the packet path counted (berth_stats) and what the sweeper and the reconciles removed. */
function registerPacketPathCounters(registry: Registry, { glob, health }: Scrape): void {
  const globalCounter = (name: string, help: string, field: keyof GlobalStats) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(Number(glob()[field]));
      },
    });
  globalCounter('berth_conntrack_created_total', 'Conntrack flows created by the packet path.', 'ct_created');
  globalCounter('berth_conntrack_full_total', 'New flows refused because the conntrack table was full of assured flows.', 'ct_full');
  globalCounter('berth_conntrack_assured_total', 'Flows that became assured (TCP handshake completed, or a reply seen): never evicted for new ones.', 'ct_assured');
  globalCounter('berth_conntrack_evicted_total', 'Flows evicted, oldest first, to make room for new ones: unassured (half-open, unanswered), or assured TCP flows that are closing.', 'ct_evicted');
  globalCounter('berth_nat_port_retries_total', 'Masquerade source-port collisions retried.', 'nat_port_retries');
  globalCounter('berth_nat_port_failures_total', 'Masquerade port allocations that found no free port.', 'nat_port_exhausted');
  globalCounter('berth_socket_translations_total', 'Host socket connects/sends translated to a container by the cgroup hooks.', 'sock_translations');
  globalCounter('berth_drop_events_emitted_total', 'Drop events written to the monitor ring buffer.', 'events_emitted');
  globalCounter('berth_drop_events_suppressed_total', "Drop events held back by the monitor's rate limit (or a full ring buffer).", 'events_suppressed');
  new Counter({
    name: 'berth_conntrack_expired_total',
    help: 'Flows removed by the sweeper since the daemon started.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(health.expiredTotal?.() ?? 0);
    },
  });
  new Counter({
    name: 'berth_conntrack_flushed_total',
    help: 'Flows flushed since the daemon started because the endpoint or published port they point at changed or went (a restarted container).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(health.flushedTotal?.() ?? 0);
    },
  });
  new Gauge({
    name: 'berth_conntrack_gc_duration_seconds',
    help: 'Duration of the last conntrack sweep.',
    registers: [registry],
    collect() {
      this.set((health.lastSweep?.()?.durationMs ?? 0) / 1000);
    },
  });
}

/** Programs attached per interface. */
function registerAttachmentMetrics(registry: Registry, { dp }: Scrape): void {
  new Gauge({
    name: 'berth_programs_attached',
    help: 'berth programs attached, per interface (host socket hooks: interface="cgroup").',
    labelNames: ['interface'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [iface, n] of programsPerInterface(dp)) this.set({ interface: iface }, n);
    },
  });
}

/** The daemon's health: the last reconcile, the last error, Docker's event lag. */
function registerHealthMetrics(registry: Registry, { health }: Scrape): void {
  new Gauge({
    name: 'berth_last_reconcile_timestamp_seconds',
    help: 'Unix time of the last successful reconcile.',
    registers: [registry],
    collect() {
      this.set(health.lastReconcileSeconds?.() ?? 0);
    },
  });
  new Gauge({
    name: 'berth_reconcile_duration_seconds',
    help: 'Duration of the last reconcile.',
    registers: [registry],
    collect() {
      this.set(health.lastReconcileDurationSeconds?.() ?? 0);
    },
  });
  new Gauge({
    name: 'berth_last_error_timestamp_seconds',
    help: 'Unix time of the last reconcile error (0: none since start).',
    registers: [registry],
    collect() {
      this.set(health.lastErrorSeconds?.() ?? 0);
    },
  });
  new Gauge({
    name: 'berth_last_error_info',
    help: "1 while the last reconcile failed, with the error's class (its errno code, or config/docker/other).",
    labelNames: ['class'],
    registers: [registry],
    collect() {
      this.reset();
      const msg = health.lastError?.() ?? '';
      if (msg) this.set({ class: errorClass(msg) }, 1);
    },
  });
  new Gauge({
    name: 'berth_docker_event_lag_seconds',
    help: 'Seconds between the last Docker event and the reconcile that acted on it (Docker mode only).',
    registers: [registry],
    collect() {
      this.reset();
      const v = health.dockerEventLagSeconds?.();
      if (v !== undefined) this.set(v);
    },
  });
}

/** berth_build_info. */
function registerBuildInfo(registry: Registry): void {
  let libbpf = '';
  try {
    libbpf = native().libbpfVersion();
  } catch {
    /* addon not loadable: the dataplane could not be open either */
  }
  new Gauge({
    name: 'berth_build_info',
    help: 'berth build information (always 1).',
    labelNames: ['version', 'libbpf_version', 'nodejs_version'],
    registers: [registry],
    collect() {
      this.set({ version: VERSION, libbpf_version: libbpf, nodejs_version: process.version }, 1);
    },
  });
}

export function parseListen(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
  if (!m) throw new Error(`--metrics ${addr}: expected HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`--metrics ${addr}: port out of range`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** Extra routes served next to /metrics (the dashboard); true when handled. */
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean;

export async function serveMetrics(registry: Registry, addr: string, extra?: RouteHandler): Promise<http.Server> {
  const { host, port } = parseListen(addr);
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/metrics') {
      registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(body);
        })
        .catch((e: Error) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`scrape failed: ${e.message}\n`);
        });
      return;
    }
    if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    if (extra?.(req, res)) return;
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('berth: see /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
