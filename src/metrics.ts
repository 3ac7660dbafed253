/**
 * Prometheus exporter: counters are read from the pinned per-CPU maps at
 * scrape time (nothing is cached between scrapes), so a container's series
 * disappear as soon as its counter entries are removed.
 */
import * as http from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Dataplane } from './dataplane';
import { readCounters, CounterRow } from './stats';
import { VERSION } from './version';
import type { SweepResult } from './conntrack';
import { GlobalStats, sumGlobalStats } from './contract';
import { ifnameOf as ifname } from './hostnet';

const LABELS = ['interface', 'container', 'network', 'direction', 'verdict'] as const;
const DROP_LABELS = ['interface', 'container', 'network', 'direction', 'reason'] as const;

export interface Health {
  lastReconcileSeconds?: () => number;
  lastError?: () => string;
  lastSweep?: () => SweepResult | undefined;
  /** flows removed by the sweeper since the daemon started */
  expiredTotal?: () => number;
}

export function createRegistry(dp: Dataplane, health: Health): Registry {
  const registry = new Registry();
  let snapshot: Promise<CounterRow[]> | undefined;
  // one map read per scrape, shared by every metric of that scrape
  const rows = (): Promise<CounterRow[]> => {
    if (!snapshot) {
      snapshot = readCounters(dp);
      setImmediate(() => (snapshot = undefined));
    }
    return snapshot;
  };
  const base = (r: CounterRow) => ({ interface: r.interface, container: r.container, network: r.network, direction: r.direction });

  new Counter({
    name: 'berth_veth_packets_total',
    help: 'Packets seen on container veths, by direction and verdict.',
    labelNames: LABELS,
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await rows()) {
        const dropped = Object.values(r.drop).reduce((a, b) => a + b.packets, 0n);
        this.inc({ ...base(r), verdict: 'pass' }, Number(r.pass.packets));
        this.inc({ ...base(r), verdict: 'redirect' }, Number(r.redirect.packets));
        this.inc({ ...base(r), verdict: 'drop' }, Number(dropped));
      }
    },
  });
  new Counter({
    name: 'berth_veth_bytes_total',
    help: 'Bytes seen on container veths, by direction and verdict.',
    labelNames: LABELS,
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await rows()) {
        const dropped = Object.values(r.drop).reduce((a, b) => a + b.bytes, 0n);
        this.inc({ ...base(r), verdict: 'pass' }, Number(r.pass.bytes));
        this.inc({ ...base(r), verdict: 'redirect' }, Number(r.redirect.bytes));
        this.inc({ ...base(r), verdict: 'drop' }, Number(dropped));
      }
    },
  });
  new Counter({
    name: 'berth_drops_total',
    help: 'Packets dropped by berth, by reason.',
    labelNames: DROP_LABELS,
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await rows())
        for (const [reason, pb] of Object.entries(r.drop)) this.inc({ ...base(r), reason }, Number(pb.packets));
    },
  });
  new Gauge({
    name: 'berth_endpoints',
    help: 'Container endpoints programmed in the dataplane, by network.',
    labelNames: ['network'],
    registers: [registry],
    async collect() {
      this.reset();
      const per = new Map<string, Set<number>>();
      for (const r of await rows()) {
        if (!per.has(r.network)) per.set(r.network, new Set());
        per.get(r.network)!.add(r.ifindex);
      }
      for (const [network, s] of per) this.set({ network }, s.size);
    },
  });
  new Gauge({
    name: 'berth_conntrack_entries',
    help: 'Conntrack table entries (two halves per flow).',
    registers: [registry],
    async collect() {
      this.set(dp.maps.ct.keys().length);
    },
  });
  new Gauge({
    name: 'berth_conntrack_capacity_entries',
    help: 'Conntrack table size; new flows are refused (reason ct_full) beyond it.',
    registers: [registry],
    collect() {
      this.set(dp.maps.ct.maxEntries);
    },
  });
  new Gauge({
    name: 'berth_map_fill_ratio',
    help: 'Entries over capacity, per BPF map.',
    labelNames: ['map'],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of Object.values(dp.maps)) {
        if (m.type === 6 /* PERCPU_ARRAY */ || m.type === 2 /* ARRAY */) continue;
        this.set({ map: m.name }, m.keys().length / m.maxEntries);
      }
    },
  });
  const globalCounter = (name: string, help: string, field: keyof GlobalStats) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        const v = dp.maps.stats.lookup(Buffer.alloc(4));
        if (!v) return;
        this.inc(Number(sumGlobalStats(v, dp.cpus)[field]));
      },
    });
  globalCounter('berth_conntrack_created_total', 'Conntrack flows created by the packet path.', 'ct_created');
  globalCounter('berth_conntrack_full_total', 'New flows refused because the conntrack table was full.', 'ct_full');
  globalCounter('berth_nat_port_retries_total', 'Masquerade source-port collisions retried.', 'nat_port_retries');
  globalCounter('berth_nat_port_failures_total', 'Masquerade port allocations that found no free port.', 'nat_port_exhausted');
  globalCounter('berth_socket_translations_total', 'Host socket connects/sends translated to a container by the cgroup hooks.', 'sock_translations');
  new Counter({
    name: 'berth_conntrack_expired_total',
    help: 'Flows removed by the sweeper.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(health.expiredTotal?.() ?? 0);
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
  new Gauge({
    name: 'berth_programs_attached',
    help: 'berth programs attached, per interface and hook.',
    labelNames: ['interface', 'hook'],
    registers: [registry],
    collect() {
      this.reset();
      for (const a of dp.attachments()) if (a.live) this.set({ interface: ifname(a.ifindex), hook: `tc_${a.direction}` }, 1);
      for (const a of dp.uplinkAttachments()) if (a.live) this.set({ interface: ifname(a.ifindex), hook: a.kind === 'tc' ? 'tc_ingress' : 'xdp' }, 1);
      for (const a of dp.cgroupAttachments()) this.set({ interface: 'cgroup', hook: a.hook }, 1);
    },
  });
  new Gauge({
    name: 'berth_last_reconcile_timestamp_seconds',
    help: 'Unix time of the last successful reconcile.',
    registers: [registry],
    collect() {
      this.set(health.lastReconcileSeconds?.() ?? 0);
    },
  });
  new Gauge({
    name: 'berth_build_info',
    help: 'berth build information.',
    labelNames: ['version'],
    registers: [registry],
    collect() {
      this.set({ version: VERSION }, 1);
    },
  });
  collectDefaultMetrics({ register: registry, prefix: 'berth_process_' });
  return registry;
}

export function parseListen(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
  if (!m) throw new Error(`--metrics ${addr}: expected HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`--metrics ${addr}: port out of range`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export async function serveMetrics(registry: Registry, addr: string): Promise<http.Server> {
  const { host, port } = parseListen(addr);
  const server = http.createServer((req, res) => {
    if (req.url === '/metrics') {
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
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
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
