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

const LABELS = ['interface', 'container', 'network', 'direction', 'verdict'] as const;
const DROP_LABELS = ['interface', 'container', 'network', 'direction', 'reason'] as const;

export function createRegistry(dp: Dataplane, health: { lastReconcileSeconds?: () => number; lastError?: () => string }): Registry {
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
