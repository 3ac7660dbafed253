/**
 * The /metrics scrape with 1,000 endpoints (issue 13: under 50 ms): a private
 * dataplane (pin root /sys/fs/bpf/berth-bt-test-scrape-PID), 1,000 endpoints
 * programmed by one apply() with counters that count, served by serveMetrics
 * on 127.0.0.1:34000; 20 scrapes with fetch, their median and max, and the
 * event-loop delay p99 during them. Figures, never asserted; everything
 * removed at the end, on failure too.
 *
 *   node dist/bench/scrape.js [endpoints] [scrapes]
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Dataplane } from '../src/platform/dataplane';
import { apply, plan, readCurrent } from '../src/engine/reconcile';
import { createRegistry, serveMetrics } from '../src/observe/metrics';
import { counterValueCodec, DROP_REASON_COUNT } from '../src/platform/contract';

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 1000);
  const scrapes = Number(process.argv[3] ?? 20);
  const pinRoot = `/sys/fs/bpf/berth-bt-test-scrape-${process.pid}`;
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot, ctMax: 4096 });
  try {
    const net = { name: 'bbtscrape', bridge: 'bbtscrapebr', subnet: '10.63.0.0', prefixLen: 16, gateway: '10.63.0.1', icc: true };
    const endpoints = Array.from({ length: n }, (_, i) => ({
      container: `bbtc${i}`, network: net.name, ip: `10.63.${1 + ((i + 10) >> 8)}.${(i + 10) & 255}`,
      mac: '02:63:00:00:00:01', ifindex: 920000 + i, ifname: `bbtv${i}`, // no interface: map entries only
    }));
    const steps = plan({ networks: [net], endpoints }, await readCurrent(dp), new Set([net.name])).filter((s) => s.op !== 'attach');
    await apply(dp, steps);
    // counters that count, on every CPU
    const stride = Math.ceil(counterValueCodec.size / 8) * 8;
    const keys = (await dp.maps.counters.dump()).map(([k]) => k);
    const one = counterValueCodec.encode({ pass: { packets: 5n, bytes: 500n }, redirect: { packets: 3n, bytes: 300n }, drop: Array.from({ length: DROP_REASON_COUNT }, (_, i) => ({ packets: BigInt(i), bytes: BigInt(i * 60) })) });
    const v = Buffer.alloc(stride * dp.cpus);
    for (let c = 0; c < dp.cpus; c++) one.copy(v, c * stride);
    await dp.maps.counters.updateBatch(keys, keys.map(() => v));

    const server = await serveMetrics(createRegistry(dp, {}), '127.0.0.1:34000');
    try {
      await (await fetch('http://127.0.0.1:34000/metrics')).text(); // warm-up: the first map fill sample
      const h = monitorEventLoopDelay({ resolution: 1 });
      h.enable();
      await new Promise((r) => setTimeout(r, 20)); // the monitor's first tick is its baseline
      const ms: number[] = [];
      let bytes = 0;
      for (let i = 0; i < scrapes; i++) {
        const t0 = performance.now();
        bytes = (await (await fetch('http://127.0.0.1:34000/metrics')).text()).length;
        ms.push(performance.now() - t0);
      }
      await new Promise((r) => setTimeout(r, 10));
      h.disable();
      ms.sort((a, b) => a - b);
      console.log(`${n} endpoints (${keys.length} counters), ${scrapes} scrapes of ${bytes} bytes: median ${ms[ms.length >> 1].toFixed(1)} ms, max ${ms[ms.length - 1].toFixed(1)} ms; event-loop delay during them p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms, max ${(h.max / 1e6).toFixed(1)} ms`);
    } finally {
      server.close();
    }
  } finally {
    dp.close();
    Dataplane.reset(pinRoot);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
