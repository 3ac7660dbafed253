// The exporter against a real pinned dataplane filled with synthetic
// entries: 1,000 veths (scrape time measured and printed, not asserted), the
// drop reason labels against the BTF enum, naming rules, series that go with
// their container, the map fill sampler on a big conntrack table, and the
// Grafana dashboard's queries against the names a real scrape serves.
import t from 'tap';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { Dataplane } from '../../src/platform/dataplane';
import {
  DROP_REASON_COUNT,
  TC_VETH_OBJECT,
  counterKeyCodec,
  counterValueCodec,
  ctEntryCodec,
  ctKeyCodec,
  endpointMetaCodec,
  ifindexKeyCodec,
  networkKeyCodec,
  networkMetaCodec,
} from '../../src/platform/contract';
import { DROP_REASON_LABELS, MapFillSampler, createRegistry, errorClass, serveMetrics } from '../../src/observe/metrics';
import { bpfObjectPath, native } from '../../src/platform/native';
import { dashboardRoutes } from '../../src/observe/dashboard/server';
import { readSnapshot } from '../../src/observe/dashboard/snapshot';

const pinRoot = `/sys/fs/bpf/berth-test-ob${process.pid}-m`;
const VETHS = 1000;
const BASE_IFINDEX = 900000; // no real interface has these
const ROOT = path.resolve(__dirname, '..', '..', '..');

try {
  Dataplane.reset(pinRoot);
} catch {
  /* nothing */
}
let dp: Dataplane;
t.before(async () => {
  dp = await Dataplane.openOrLoad({ pinRoot });
});
t.teardown(() => {
  dp?.close();
  Dataplane.reset(pinRoot);
});

function counterValue(cpus: number, seed: number): Buffer {
  const stride = Math.ceil(counterValueCodec.size / 8) * 8;
  const buf = Buffer.alloc(stride * cpus);
  const pb = (n: number) => ({ packets: BigInt(n), bytes: BigInt(n * 100) });
  // CPU 0 and the last CPU both count, so the sum is checked
  for (const cpu of [0, cpus - 1]) {
    const v = counterValueCodec.encode({
      pass: pb(seed),
      redirect: pb(seed * 2),
      drop: Array.from({ length: DROP_REASON_COUNT }, (_, i) => pb(i === 0 ? 0 : seed + i)),
    });
    v.copy(buf, cpu * stride);
  }
  return buf;
}

async function fill(): Promise<void> {
  const nets = 10;
  await dp.maps.netMeta.updateBatch(
    Array.from({ length: nets }, (_, i) => networkKeyCodec.encode({ network_id: i + 1 })),
    Array.from({ length: nets }, (_, i) => networkMetaCodec.encode({ name: `obnet${i}`, bridge: `obbr${i}`, subnet: `10.180.${i}.0`, prefix_len: 24, gateway: `10.180.${i}.1`, flags: 1 })),
  );
  const mk: Buffer[] = [];
  const mv: Buffer[] = [];
  const ck: Buffer[] = [];
  const cv: Buffer[] = [];
  for (let i = 0; i < VETHS; i++) {
    const ifindex = BASE_IFINDEX + i;
    mk.push(ifindexKeyCodec.encode({ ifindex }));
    mv.push(endpointMetaCodec.encode({ container: `obc${i}`, ifname: `obv${i}`, network_id: (i % nets) + 1 }));
    for (const direction of [0, 1]) {
      ck.push(counterKeyCodec.encode({ ifindex, direction }));
      cv.push(counterValue(dp.cpus, i + 1));
    }
  }
  await dp.maps.epMeta.updateBatch(mk, mv);
  await dp.maps.counters.updateBatch(ck, cv);
}

async function httpGet(url: string): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }));
      })
      .on('error', reject);
  });
}

const names = (text: string): Set<string> => new Set(text.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]));

t.test('1,000 veths: scrape time (measured, not asserted) and content', async (t) => {
  await fill();
  const health = { lastReconcileSeconds: () => 1700000000, lastError: () => 'map.update map \'berth_ct\': No space left on device (ENOSPC)', lastErrorSeconds: () => 1700000001, expiredTotal: () => 7, dockerEventLagSeconds: () => 0.25 };
  const sampler = new MapFillSampler(() => Object.values(dp.maps));
  const registry = createRegistry(dp, health, { sampler });
  await registry.metrics(); // warm-up (first fill sample)
  const times: number[] = [];
  let text = '';
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint();
    text = await registry.metrics();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const server = await serveMetrics(registry, '127.0.0.1:0', dashboardRoutes(dp, health, sampler));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as { port: number }).port;
  const httpTimes: number[] = [];
  let body = '';
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint();
    const r = await httpGet(`http://127.0.0.1:${port}/metrics`);
    httpTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
    t.equal(r.status, 200);
    body = r.body;
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const series = text.split('\n').filter((l) => l && !l.startsWith('#')).length;
  t.comment(`scrape with ${VETHS} veths (${series} series, ${(text.length / 1024).toFixed(0)} KiB): registry.metrics() median ${med(times).toFixed(1)} ms (runs ${times.map((x) => x.toFixed(1)).join(', ')}); HTTP GET /metrics median ${med(httpTimes).toFixed(1)} ms`);
  const t0 = process.hrtime.bigint();
  const snap = await readSnapshot(dp, health, sampler);
  t.comment(`/api/snapshot computation with ${VETHS} veths: ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1)} ms`);
  t.equal(snap.containers.length, VETHS);
  t.equal(body.length > 0, true);

  const cpus = dp.cpus;
  const twice = cpus > 1 ? 2 : 1;
  t.match(text, new RegExp(`berth_veth_packets_total\\{interface="obv0",container="obc0",network="obnet0",direction="from_container",verdict="pass"\\} ${twice}\\n`), 'per-CPU values summed');
  t.match(text, new RegExp(`berth_veth_packets_total\\{interface="obv0",container="obc0",network="obnet0",direction="to_container",verdict="redirect"\\} ${2 * twice}\\n`));
  t.match(text, /berth_endpoints\{network="obnet3"\} 100\n/);
  t.match(text, /berth_last_error_info\{class="ENOSPC"\} 1/);
  t.match(text, /berth_docker_event_lag_seconds 0.25/);
  t.match(text, /berth_conntrack_expired_total 7/);
  t.match(text, /berth_conntrack_evicted_total 0\n/, 'evictions counted');
  t.match(text, /berth_conntrack_assured_total 0\n/);
  t.match(text, new RegExp(`berth_conntrack_unassured_capacity_flows ${dp.maps.ctRing.maxEntries}\\n`));
  t.match(text, /berth_build_info\{version="[^"]+",libbpf_version="1\.\d+",nodejs_version="v\d+/);
  t.match(text, /berth_map_fill_ratio\{map="berth_ep_meta"\} 0\.244140625/, '1000 of 4096');
  t.match(text, /berth_process_cpu_seconds_total/, 'process metrics prefixed berth_ once');
  t.notMatch(text, /berth_process_process_/);

  t.test('reason label values are the BTF enum names', async (t) => {
    const obj = native().openObject(bpfObjectPath(TC_VETH_OBJECT), { pinRoot: `${pinRoot}-btf` });
    t.teardown(() => obj.close());
    const btf = Object.entries(obj.btfEnum('berth_drop_reason').values)
      .filter(([n]) => n !== 'BERTH_DROP_NONE' && n !== 'BERTH_DROP_REASON_MAX')
      .sort((a, b) => a[1] - b[1])
      .map(([n]) => n.replace('BERTH_DROP_', '').toLowerCase());
    t.same(DROP_REASON_LABELS, btf, 'exported constant');
    const scraped = new Set([...text.matchAll(/^berth_drops_total\{[^}]*reason="([^"]+)"/gm)].map((m) => m[1]));
    t.same([...scraped].sort(), [...btf].sort(), 'reasons in a real scrape (every reason has drops in the synthetic data)');
  });

  t.test('naming: counters end in _total, units in names, bounded labels', async (t) => {
    const types = new Map(text.split('\n').filter((l) => l.startsWith('# TYPE berth_')).map((l) => [l.split(' ')[2], l.split(' ')[3]]));
    const ours = [...types].filter(([n]) => !/^berth_(process|nodejs)_/.test(n));
    t.ok(ours.length >= 20, `${ours.length} berth metrics`);
    for (const [n, type] of ours) {
      if (type === 'counter') t.ok(n.endsWith('_total'), `${n} is a counter ending in _total`);
      else t.notOk(n.endsWith('_total'), `${n} (${type}) does not end in _total`);
    }
    const allowed = new Set(['interface', 'container', 'network', 'direction', 'verdict', 'reason', 'map', 'class', 'version', 'libbpf_version', 'nodejs_version']);
    for (const m of text.matchAll(/^(berth_[a-z_]+)\{([^}]*)\}/gm)) {
      if (/^berth_(process|nodejs)_/.test(m[1])) continue;
      for (const kv of m[2].split(/,(?=[a-z_]+=)/)) {
        const k = kv.split('=')[0];
        if (!allowed.has(k)) t.fail(`${m[1]} has label ${k}`);
      }
    }
  });

  t.test("a container's series disappear when it goes", async (t) => {
    await dp.maps.counters.deleteBatch([0, 1].map((direction) => counterKeyCodec.encode({ ifindex: BASE_IFINDEX + 5, direction })));
    dp.maps.epMeta.delete(ifindexKeyCodec.encode({ ifindex: BASE_IFINDEX + 5 }));
    const after = await registry.metrics();
    t.notMatch(after, /container="obc5"/);
    t.match(after, /container="obc6"/);
  });

  t.test('the Grafana dashboard only queries metrics the exporter serves', async (t) => {
    const served = names(text);
    const dash = JSON.parse(fs.readFileSync(path.join(ROOT, 'dashboards', 'berth.json'), 'utf8'));
    const exprs: string[] = [];
    const walk = (o: unknown): void => {
      if (Array.isArray(o)) o.forEach(walk);
      else if (o && typeof o === 'object')
        for (const [k, v] of Object.entries(o)) {
          if (k === 'expr' && typeof v === 'string') exprs.push(v);
          else if (k === 'query' && typeof v === 'string' && /berth_|label_values/.test(v)) exprs.push(v);
          else walk(v);
        }
    };
    walk(dash);
    t.ok(exprs.length >= 10, `${exprs.length} queries`);
    const used = new Set<string>();
    for (const e of exprs) {
      // metric names: identifiers starting berth_, without label names and functions
      const stripped = e.replace(/\{[^}]*\}/g, '').replace(/"[^"]*"/g, '');
      const found = stripped.match(/\bberth_[a-zA-Z0-9_]+/g) ?? [];
      t.ok(found.length > 0, `query names a berth metric: ${e}`);
      for (const f of found) used.add(f);
    }
    for (const n of used) {
      // label_values(berth_x, label) and histogram suffixes would go here; plain names only
      t.ok(served.has(n), `${n} is served`);
    }
    const prom = fs.readFileSync(path.join(ROOT, 'dashboards', 'prometheus.yml'), 'utf8');
    t.match(prom, /metrics_path: \/metrics/);
    t.match(prom, /127\.0\.0\.1:9469/);
  });

  t.test('errorClass is bounded', async (t) => {
    t.equal(errorClass(''), '');
    t.equal(errorClass("map.update map 'x': Operation not permitted (EPERM)"), 'EPERM');
    t.equal(errorClass('topology.yaml: networks[0].subnet: bad'), 'config');
    t.equal(errorClass('something odd'), 'other');
  });
});

t.test('map fill: a big conntrack table is sampled in the background, not counted per scrape', async (t) => {
  const N = 100000;
  const keys: Buffer[] = [];
  const vals: Buffer[] = [];
  const entry = ctEntryCodec.encode({
    rewrite: { saddr: '0.0.0.0', daddr: '0.0.0.0', sport: 0, dport: 0, proto: 6 },
    created_ns: 0n,
    last_seen_ns: 0n,
    packets: 0n,
    bytes: 0n,
    out_ifindex: 0,
    out_kind: 0,
    count_ifindex: 0,
    out_smac: '00:00:00:00:00:00',
    out_dmac: '00:00:00:00:00:00',
    state: 0,
    flags: 0,
    tcp_flags_seen: 0,
    tcp_end: 0,
    tcp_ack: 0,
    tcp_win: 0,
    tcp_wscale: 0,
  });
  for (let i = 0; i < N; i++) {
    keys.push(ctKeyCodec.encode({ saddr: `10.181.${(i >> 8) & 255}.${i & 255}`, daddr: '10.182.0.1', sport: 1000 + (i >> 16), dport: 80, proto: 6 }));
    vals.push(entry);
  }
  await dp.maps.ct.updateBatch(keys, vals);
  const sampler = new MapFillSampler(() => Object.values(dp.maps), 60000);
  const first = await sampler.get(dp.maps.ct.name);
  t.equal(first?.entries, N);
  t.comment(`background sample of the conntrack map with ${N} of ${dp.maps.ct.maxEntries} entries: ${sampler.lastSampleMs.toFixed(1)} ms (thread-pool dump, once per interval)`);
  const t0 = process.hrtime.bigint();
  const again = await sampler.read();
  t.comment(`a scrape's fill read between samples: ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(2)} ms`);
  t.equal(again.find((f) => f.map === dp.maps.ct.name)?.sampledAt, first?.sampledAt, 'cached sample served');
  const t1 = process.hrtime.bigint();
  const n = dp.maps.ct.keys().length;
  t.comment(`for comparison, counting its keys synchronously (get_next_key): ${(Number(process.hrtime.bigint() - t1) / 1e6).toFixed(1)} ms on the event loop`);
  t.equal(n, N);
  await dp.maps.ct.deleteBatch(keys);
});
