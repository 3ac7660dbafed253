/**
 * `npm run bench`: berth's paths side by side with the kernel's (Docker's)
 * path and the bare-veth floor, in one run, interleaved round by round, as
 * medians and paired ratios. See ../shared/docs/benchmarking.md for why.
 *
 *   npm run bench -- [--quick] [--runs N] [--json FILE] [--scenario c2c,...]
 *
 * Scenarios implemented: c2c (container <-> container on one bridge).
 * Every load is bounded in time; traffic stays inside the suite's namespaces.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { parseConfig } from '../src/config';
import { Dataplane } from '../src/dataplane';
import * as standalone from '../src/standalone';
import { table } from '../src/format';
import { bpfObjectPath, native } from '../src/native';
import { TC_VETH_OBJECT } from '../src/contract';
import { makeFloor } from './lib/floor';
import { Summary, pairedRatio, summarize } from './lib/stats';
import { Endpoints, connrate, iperf, sockperf, widenPorts } from './lib/tools';

interface Path {
  name: string;
  /** make this path the active one (e.g. load or reset berth) */
  activate(): Promise<void>;
  endpoints(port: number, cpu?: number): Endpoints;
}

interface Metric {
  name: string;
  unit: string;
  measure(e: Endpoints): Promise<number>;
  cpu?: number;
}

export interface Result {
  scenario: string;
  metric: string;
  unit: string;
  path: string;
  summary: Summary;
  vsReference?: Summary;
  vsFloor?: Summary;
}

async function c2c(opts: { tag: string; third: number; seconds: number; quick: boolean }) {
  const { tag, third } = opts;
  const pinRoot = `/sys/fs/bpf/berth-bench-${tag}`;
  const text = `uplinks: []\nnetworks:\n  - name: ${tag}n\n    subnet: 10.198.${third}.0/24\n    bridge: ${`${tag}br`.slice(0, 15)}\ncontainers:\n  - name: ${tag}-s\n    network: ${tag}n\n    ip: 10.198.${third}.10\n  - name: ${tag}-c\n    network: ${tag}n\n    ip: 10.198.${third}.11\n`;
  const cfg = parseConfig(text, 'bench-c2c');
  const floor = await makeFloor(tag, third);
  await standalone.up(cfg, { pinRoot, startCommands: false });
  Dataplane.reset(pinRoot);
  for (const ns of [floor.clientNs, `${tag}-c`]) await widenPorts(ns);
  const mk = (clientNs: string, serverNs: string, addr: string) => (port: number, cpu?: number): Endpoints => ({ clientNs, serverNs, addr, port, cpu });
  const paths: Path[] = [
    { name: 'floor (bare veth)', activate: async () => Dataplane.reset(pinRoot) && undefined, endpoints: mk(floor.clientNs, floor.serverNs, floor.serverAddr) },
    { name: 'kernel bridge', activate: async () => void Dataplane.reset(pinRoot), endpoints: mk(`${tag}-c`, `${tag}-s`, `10.198.${third}.10`) },
    {
      name: 'berth tc',
      activate: async () => void (await standalone.up(cfg, { pinRoot, startCommands: false })),
      endpoints: mk(`${tag}-c`, `${tag}-s`, `10.198.${third}.10`),
    },
  ];
  return {
    name: 'c2c',
    reference: 'kernel bridge',
    paths,
    teardown: async () => {
      await standalone.down(cfg, { pinRoot }).catch(() => undefined);
      Dataplane.reset(pinRoot);
      await floor.teardown();
    },
  };
}

function metrics(seconds: number, quick: boolean): Metric[] {
  const m: Metric[] = [
    { name: 'TCP throughput, 1 stream', unit: 'Gbit/s', measure: (e) => iperf(e, seconds, 1) },
    { name: 'request/response, one CPU', unit: 'trans/s', cpu: 1, measure: async (e) => (await sockperf(e, seconds)).rate },
    { name: 'new connections, one CPU', unit: 'conn/s', cpu: 1, measure: async (e) => (await connrate(e, seconds)).rate },
  ];
  if (!quick)
    m.push(
      { name: 'TCP throughput, 4 streams', unit: 'Gbit/s', measure: (e) => iperf(e, seconds, 4) },
      { name: 'request/response, two CPUs', unit: 'trans/s', measure: async (e) => (await sockperf(e, seconds)).rate },
      { name: 'new connections, two CPUs', unit: 'conn/s', measure: async (e) => (await connrate(e, seconds)).rate },
    );
  return m;
}

async function bpfCost(): Promise<Result[]> {
  // per-packet cost of the veth program's redirect verdict on a crafted frame
  const { udpFrame } = await import('../test/lib/packets');
  const pinRoot = `/sys/fs/bpf/berth-bench-cost-${process.pid}`;
  const dp = await Dataplane.openOrLoad({ pinRoot });
  try {
    const { endpointCodec, ifindexKeyCodec, ipKeyCodec, EndpointFlags } = await import('../src/contract');
    const put = (ifindex: number, addr: string, mac: string) => {
      const v = endpointCodec.encode({ addr, ifindex, network_id: 1, flags: EndpointFlags.ICC, mac });
      dp.maps.epByIfindex.update(ifindexKeyCodec.encode({ ifindex }), v);
      dp.maps.epByIp.update(ipKeyCodec.encode({ addr }), v);
    };
    put(1, '10.0.0.1', '02:00:00:00:00:01');
    put(1001, '10.0.0.2', '02:00:00:00:00:02');
    const out: Result[] = [];
    const cases: Array<[string, Buffer]> = [
      ['redirect', udpFrame({ smac: '02:00:00:00:00:01', dmac: '02:00:00:00:00:02', src: '10.0.0.1', dst: '10.0.0.2' })],
      ['pass (outside address)', udpFrame({ smac: '02:00:00:00:00:01', dmac: '02:00:00:00:00:09', src: '10.0.0.1', dst: '192.0.2.1' })],
    ];
    for (const [verdict, data] of cases) {
      const runs: number[] = [];
      for (let i = 0; i < 5; i++) runs.push((await dp.progs.ingress.testRun({ data, repeat: 200000 })).duration);
      out.push({ scenario: 'BPF_PROG_TEST_RUN', metric: `berth_veth_ingress ${verdict}`, unit: 'ns/packet', path: 'berth tc', summary: summarize(runs) });
    }
    return out;
  } finally {
    dp.close();
    Dataplane.reset(pinRoot);
  }
}

export async function runBench(o: { quick: boolean; runs: number; seconds: number; json?: string; scenarios: string[] }): Promise<Result[]> {
  const tag = `bb${process.pid % 10000}`;
  const third = process.pid % 250;
  const results: Result[] = [];
  const started = Date.now();
  let port = 20000; // never reused within a run: no TIME_WAIT or PAWS interference
  results.push(...(await bpfCost()));
  for (const sname of o.scenarios) {
    if (sname !== 'c2c') throw new Error(`unknown scenario ${sname}`);
    const sc = await c2c({ tag, third, seconds: o.seconds, quick: o.quick });
    try {
      for (const m of metrics(o.seconds, o.quick)) {
        const samples = new Map<string, number[]>(sc.paths.map((p) => [p.name, []]));
        for (let r = 0; r < o.runs; r++) {
          for (const p of sc.paths) {
            await p.activate();
            // a fresh server port per path and round avoids PAWS rejections
            samples.get(p.name)!.push(await m.measure(p.endpoints(port++, m.cpu)));
          }
        }
        const ref = samples.get(sc.reference)!;
        const floor = samples.get(sc.paths[0].name)!;
        for (const p of sc.paths)
          results.push({
            scenario: sc.name,
            metric: m.name,
            unit: m.unit,
            path: p.name,
            summary: summarize(samples.get(p.name)!),
            vsReference: pairedRatio(samples.get(p.name)!, ref),
            vsFloor: pairedRatio(samples.get(p.name)!, floor),
          });
        process.stderr.write(`bench: ${sc.name} / ${m.name} done (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
      }
    } finally {
      await sc.teardown();
    }
  }
  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
  const ratio = (s?: Summary) => (s ? `${s.median.toFixed(2)}x (${s.min.toFixed(2)}-${s.max.toFixed(2)})` : '');
  console.log(
    table(
      ['SCENARIO', 'METRIC', 'PATH', 'MEDIAN', 'MIN-MAX', 'UNIT', 'VS REFERENCE', 'VS FLOOR'],
      results.map((r) => [r.scenario, r.metric, r.path, fmt(r.summary.median), `${fmt(r.summary.min)}-${fmt(r.summary.max)}`, r.unit, ratio(r.vsReference), ratio(r.vsFloor)]),
    ),
  );
  if (o.json) {
    const doc = {
      command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, kernel: os.release(), memGiB: Math.round(os.totalmem() / 2 ** 30), libbpf: native().libbpfVersion(), object: path.basename(bpfObjectPath(TC_VETH_OBJECT)) },
      options: o,
      results,
    };
    fs.mkdirSync(path.dirname(path.resolve(o.json)), { recursive: true });
    fs.writeFileSync(o.json, JSON.stringify(doc, null, 2));
    console.log(`bench: wrote ${o.json}`);
  }
  return results;
}

if (require.main === module) {
  const cmd = new Command('berth-bench')
    .option('--quick', 'fewer metrics and shorter runs (under three minutes)')
    .option('--runs <n>', 'rounds per metric (at least 5 for the published figures)', (v) => Number(v))
    .option('--seconds <n>', 'seconds per measurement', (v) => Number(v))
    .option('--json <file>', 'write the results as JSON')
    .option('--scenario <list>', 'comma-separated scenarios', 'c2c')
    .parse(process.argv);
  const o = cmd.opts();
  const quick = !!o.quick;
  runBench({ quick, runs: o.runs ?? 5, seconds: o.seconds ?? (quick ? 1 : 3), json: o.json, scenarios: String(o.scenario).split(',') }).catch((e) => {
    console.error(`bench: ${e instanceof Error ? e.message : e}`);
    process.exit(1);
  });
}
