/**
 * `npm run bench`: berth's paths side by side with Docker's (iptables, kernel
 * conntrack, docker-proxy) and the bare-veth floor, in one run, interleaved
 * round by round, as medians and paired ratios. See
 * ../shared/docs/benchmarking.md for why it is measured this way.
 *
 *   npm run bench -- [--quick] [--runs N] [--seconds S] [--json FILE] [--svg DIR]
 *                    [--scenario published,masquerade,loopback,c2c,published6,masquerade6,c2c6,scale,program,cost,controller]
 *                    [--scale 0,1000,10000,30000] [--profile]
 *
 * The IPv6 twins (published6, masquerade6, c2c6: rows "published (IPv6)",
 * "masquerade (IPv6)", "c2c (IPv6)") run on the same dual-stack topology
 * against their own floor (the floor's veth pair over IPv6) and their own
 * reference (Docker's ip6tables rules; the kernel bridge for c2c).
 *
 * Every load is bounded in time; traffic stays inside the suite's namespaces
 * (and the host's loopback for the 127.0.0.1 scenario). Everything the suite
 * makes is removed at the end, on failure and on Ctrl-C.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Command } from 'commander';
import { parseConfig } from '../src/domain/config';
import { Dataplane } from '../src/platform/dataplane';
import * as standalone from '../src/sources/standalone';
import { table } from '../src/cli/format';
import { bpfObjectPath, native } from '../src/platform/native';
import { TC_VETH_OBJECT, publishKeyCodec, publishValueCodec } from '../src/platform/contract';
import { Floor, makeFloor } from './lib/floor';
import { Summary, pairedRatio, summarize } from './lib/stats';
import { Endpoints, Sample, connrate, iperf, isV6, killServers, rr, sockperf, widenPorts } from './lib/tools';
import { NatEnv, berthOff, berthPackets } from './lib/natenv';
import { findDockerProxy, killProxies } from './lib/dockerproxy';
import { otherPorts, programTimes } from './lib/iptables';
import { bpfCost, CostRow } from './lib/bpfcost';
import { DaemonCost, Profile, ProgramEndpoints, daemonCost, killDaemons, profileDaemon, programEndpoints } from './lib/controller';
import { barChart, lineChart } from './lib/svg';
import { cpOptions, renderControlplane, runControlplane, writeControlplane } from './controlplane';
import { PROFILE_PATHS, renderProfile, runProfile, writeProfile } from './profile';

export const ALL_SCENARIOS = ['published', 'masquerade', 'loopback', 'c2c', 'published6', 'masquerade6', 'c2c6', 'scale', 'program', 'cost', 'controller'] as const;

export interface MetricDef {
  key: string;
  name: string;
  unit: string;
  kind: 'tput' | 'rr' | 'conn';
  streams?: number;
  oneCpu?: boolean;
}

const METRICS: MetricDef[] = [
  { key: 'tput1', name: 'TCP throughput, 1 stream', unit: 'Gbit/s', kind: 'tput', streams: 1 },
  { key: 'tput4', name: 'TCP throughput, 4 streams', unit: 'Gbit/s', kind: 'tput', streams: 4 },
  { key: 'rr1', name: 'request/response, one CPU', unit: 'trans/s', kind: 'rr', oneCpu: true },
  { key: 'rr2', name: 'request/response, two CPUs', unit: 'trans/s', kind: 'rr', oneCpu: false },
  { key: 'conn1', name: 'new connections, one CPU', unit: 'conn/s', kind: 'conn', oneCpu: true },
  { key: 'conn2', name: 'new connections, two CPUs', unit: 'conn/s', kind: 'conn', oneCpu: false },
];
const QUICK_METRICS = ['tput1', 'rr1', 'conn1'];
/** --quick: the published path, one rule-scale point, programming times, per-packet costs */
export const QUICK_SCENARIOS = ['published', 'scale', 'program', 'cost'];

export interface Result {
  scenario: string;
  metric: string;
  unit: string;
  path: string;
  summary: Summary;
  /** paired ratio to Docker's path of the scenario (iptables; kernel bridge for c2c) */
  vsReference?: Summary;
  vsFloor?: Summary;
  p50_us?: Summary;
  p99_us?: Summary;
  /** CPU cost: s/GB for throughput, µs per transaction or connection otherwise (busy CPU of the whole machine) */
  cpu?: Summary;
  cpuUnit?: string;
  /** rule scale: other published ports */
  others?: number;
  /**
   * Packets the path itself handled over each round's runs (the IPv6 rows): berth's
   * pass+redirect counters, the suite's ip6tables DNAT/MASQUERADE rule counts,
   * the floor client's Ip6OutRequests; what says which.
   */
  pathPackets?: { what: string; perRound: number[] };
  errors?: string[];
}

interface PathDef {
  name: string;
  activate(ports: number[]): Promise<void>;
  deactivate(): Promise<void>;
  endpoints(port: number): Endpoints;
  beforeMetric?(m: MetricDef): Promise<void>;
  /** a count the path moves when traffic takes it (Result.pathPackets) */
  packets?: { what: string; read(): Promise<number | undefined> };
}

export interface BenchOptions {
  quick: boolean;
  runs: number;
  seconds: number;
  json?: string;
  svg?: string;
  scenarios: string[];
  scale: number[];
  programN: number[];
  perCall: number;
  endpoints: number;
  veths: number;
  profile: boolean;
  profileSeconds: number;
}

export interface BenchDoc {
  command: string;
  date: string;
  machine: Record<string, unknown>;
  options: BenchOptions;
  notes: string[];
  results: Result[];
  program: Array<{ what: string; n: number; seconds: Summary; note?: string }>;
  bpf: Array<CostRow & { summary: Summary }>;
  controller: { endpoints?: ProgramEndpoints[]; daemon?: DaemonCost; profile?: Profile; skipped?: string[] };
  targets: Array<{ target: string; measured: string; met: boolean | null }>;
  /** parts of the suite that failed */
  errors: string[];
  seconds: number;
}

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

async function measure(m: MetricDef, e: Endpoints, seconds: number): Promise<Sample> {
  const cpu = m.oneCpu === undefined ? {} : m.oneCpu ? { clientCpu: 1, serverCpu: 1 } : { clientCpu: 0, serverCpu: 1 };
  const ep = { ...e, ...cpu };
  if (m.kind === 'tput') return iperf(ep, seconds, m.streams ?? 1);
  // sockperf 3.7 has no IPv6: connrate's rr mode gives the same figure there (tools.ts)
  if (m.kind === 'rr') return isV6(ep.addr) ? rr(ep, seconds) : sockperf(ep, seconds);
  return connrate(ep, seconds);
}

function cpuCost(m: MetricDef, s: Sample): number {
  if (m.kind === 'tput') return s.cpuSeconds / ((s.value * s.seconds) / 8); // s per GB (Gbit/s * s / 8 = GB)
  return (s.cpuSeconds * 1e6) / (s.value * s.seconds); // µs per transaction
}

class Ports {
  constructor(private next: number) {}
  take(): number {
    if (this.next > 65000) throw new Error('out of server ports');
    return this.next++;
  }
}

/** Rounds of interleaved paths; each path+round gets fresh ports (one per metric). */
async function runScenario(o: {
  scenario: string;
  reference: string;
  floor: string;
  paths: PathDef[];
  metrics: MetricDef[];
  runs: number;
  seconds: number;
  ports: Ports;
  others?: number;
}): Promise<Result[]> {
  const samples = new Map<string, { v: number[]; p50: number[]; p99: number[]; cpu: number[]; errors: string[] }>();
  const moved = new Map<string, number[]>();
  const key = (p: string, m: string) => `${p}\u0000${m}`;
  for (const p of o.paths) for (const m of o.metrics) samples.set(key(p.name, m.key), { v: [], p50: [], p99: [], cpu: [], errors: [] });
  const t0 = Date.now();
  for (let r = 0; r < o.runs; r++) {
    for (const p of o.paths) {
      const ports = o.metrics.map(() => o.ports.take());
      try {
        const ta = Date.now();
        try {
          await p.activate(ports);
        } catch (e) {
          // a path that cannot be set up this round: recorded, the others go on
          for (const m of o.metrics) {
            const s = samples.get(key(p.name, m.key))!;
            s.v.push(NaN);
            s.p50.push(NaN);
            s.p99.push(NaN);
            s.cpu.push(NaN);
            s.errors.push(`round ${r + 1}: set-up failed: ${(e as Error).message.slice(0, 300)}`);
          }
          log(`${o.scenario} / ${p.name}: set-up failed: ${(e as Error).message.slice(0, 300)}`);
          continue;
        }
        if (process.env.BENCH_DEBUG) log(`activate ${p.name}: ${Date.now() - ta} ms`);
        // a count that cannot be read leaves the row without pathPackets (bench.test notices), never loses the figures
        const before = await p.packets?.read().catch(() => undefined);
        for (let i = 0; i < o.metrics.length; i++) {
          const m = o.metrics[i];
          const s = samples.get(key(p.name, m.key))!;
          try {
            await p.beforeMetric?.(m);
            const x = await measure(m, p.endpoints(ports[i]), o.seconds);
            s.v.push(x.value);
            s.p50.push(x.p50_us ?? NaN);
            s.p99.push(x.p99_us ?? NaN);
            s.cpu.push(cpuCost(m, x));
            if (x.errors) s.errors.push(`round ${r + 1}: ${x.errors} failed connections`);
          } catch (e) {
            s.v.push(NaN);
            s.p50.push(NaN);
            s.p99.push(NaN);
            s.cpu.push(NaN);
            s.errors.push(`round ${r + 1}: ${(e as Error).message.slice(0, 300)}`);
            log(`${o.scenario} / ${p.name} / ${m.name}: ${(e as Error).message.slice(0, 300)}`);
          }
        }
        const after = await p.packets?.read().catch(() => undefined);
        if (before !== undefined && after !== undefined) moved.set(p.name, [...(moved.get(p.name) ?? []), after - before]);
      } finally {
        const td = Date.now();
        await p.deactivate();
        if (process.env.BENCH_DEBUG) log(`deactivate ${p.name}: ${Date.now() - td} ms`);
      }
    }
    log(`${o.scenario}${o.others !== undefined ? ` (${o.others} other ports)` : ''}: round ${r + 1}/${o.runs} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
  const out: Result[] = [];
  for (const m of o.metrics) {
    const ref = samples.get(key(o.reference, m.key))?.v;
    const floor = samples.get(key(o.floor, m.key))?.v;
    for (const p of o.paths) {
      const s = samples.get(key(p.name, m.key))!;
      out.push({
        scenario: o.scenario,
        metric: m.name,
        unit: m.unit,
        path: p.name,
        summary: summarize(s.v),
        vsReference: ref ? pairedRatio(s.v, ref) : undefined,
        vsFloor: floor ? pairedRatio(s.v, floor) : undefined,
        p50_us: m.kind === 'tput' ? undefined : summarize(s.p50),
        p99_us: m.kind === 'tput' ? undefined : summarize(s.p99),
        cpu: summarize(s.cpu),
        cpuUnit: m.kind === 'tput' ? 'CPU s/GB' : 'CPU µs/trans',
        ...(o.others !== undefined ? { others: o.others } : {}),
        ...(p.packets && moved.has(p.name) ? { pathPackets: { what: p.packets.what, perRound: moved.get(p.name)! } } : {}),
        ...(s.errors.length ? { errors: s.errors } : {}),
      });
    }
  }
  return out;
}

/** The floor's path; family 6 dials the same veth pair over IPv6. */
function floorPath(floor: Floor, family: 4 | 6 = 4): PathDef {
  return {
    name: 'floor (bare veth)',
    activate: async () => undefined,
    deactivate: async () => undefined,
    endpoints: (port) => ({ clientNs: floor.clientNs, serverNs: floor.serverNs, addr: family === 6 ? floor.serverAddr6 : floor.serverAddr, port }),
    ...(family === 6 ? { packets: { what: 'IPv6 packets the floor client sent (Ip6OutRequests)', read: () => floor.sentPackets(6) } } : {}),
  };
}

/** What shows an IPv6 row's path was taken: berth's counters, or the suite's ip6tables NAT rule counts. */
function pathPackets6(n: NatEnv, mode: 'iptables' | 'berth' | 'berth-xdp'): PathDef['packets'] {
  return {
    what: mode === 'iptables' ? 'packets of the suite\'s ip6tables DNAT/MASQUERADE rules (first packet of each connection)' : 'packets berth\'s programs passed or redirected',
    read: () => n.pathPackets(6),
  };
}

/** The c2c network, dual stack: 10.198.X.0/24 and fd93:X::/64 (c2c6 dials the ip6s). */
function c2cConfig(tag: string, third: number) {
  const x = third.toString(16);
  return parseConfig(
    `uplinks: []\ninterfaces: []\nnetworks:\n  - name: ${tag}c2c\n    subnet: 10.198.${third}.0/24\n    subnet6: fd93:${x}::/64\n    bridge: ${`${tag}cb`.slice(0, 15)}\ncontainers:\n  - name: ${tag}-cs\n    network: ${tag}c2c\n    ip: 10.198.${third}.10\n    ip6: fd93:${x}::10\n  - name: ${tag}-cc\n    network: ${tag}c2c\n    ip: 10.198.${third}.11\n    ip6: fd93:${x}::11\n`,
    'bench-c2c',
  );
}

function machine(): Record<string, unknown> {
  const sh = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return 'unknown';
    }
  };
  const first = (s: string) => s.split('\n')[0];
  return {
    cpus: os.cpus().length,
    model: os.cpus()[0]?.model,
    kernel: os.release(),
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    os: sh('sh', ['-c', '. /etc/os-release && echo "$PRETTY_NAME"']),
    node: process.version,
    libbpf: native().libbpfVersion(),
    object: path.basename(bpfObjectPath(TC_VETH_OBJECT)),
    iptables: sh('iptables', ['--version']),
    iperf3: first(sh('iperf3', ['--version'])),
    sockperf: first(sh('sh', ['-c', 'sockperf --version 2>&1 | grep -i version || true'])),
    virtualization: sh('systemd-detect-virt', []),
    loadavgAtStart: os.loadavg().map((x) => x.toFixed(2)).join(' '),
  };
}

export async function runBench(o: BenchOptions): Promise<BenchDoc> {
  const started = Date.now();
  const tag = `bn${process.pid % 1000}`;
  const third = process.pid % 250;
  const ports = new Ports(61000);
  const want = new Set(o.scenarios);
  for (const s of want) if (!(ALL_SCENARIOS as readonly string[]).includes(s)) throw new Error(`unknown scenario ${s} (known: ${ALL_SCENARIOS.join(', ')})`);
  const metrics = o.quick ? METRICS.filter((m) => QUICK_METRICS.includes(m.key)) : METRICS;
  const doc: BenchDoc = {
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date().toISOString(),
    machine: machine(),
    options: o,
    notes: [],
    results: [],
    program: [],
    bpf: [],
    controller: {},
    targets: [],
    errors: [],
    seconds: 0,
  };
  const cleanups: Array<() => Promise<void>> = [];
  let cleaning: Promise<void> | undefined;
  const cleanAll = () =>
    (cleaning ??= (async () => {
      killServers();
      killProxies();
      killDaemons();
      for (const c of cleanups.reverse()) await c().catch((e: Error) => log(`cleanup: ${e.message}`));
    })());
  const onSignal = (sig: string) => {
    log(`${sig}: cleaning up`);
    void cleanAll().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let proxyBin: string | undefined;
  const getProxy = async () => {
    if (!proxyBin) {
      const p = await findDockerProxy();
      proxyBin = p.path;
      doc.notes.push(`docker-proxy: ${p.how}`);
    }
    return proxyBin;
  };

  const section = async (name: string, f: () => Promise<void>) => {
    try {
      await f();
    } catch (e) {
      // one failing part does not lose the others' results
      const msg = `${name}: failed: ${(e as Error).message.slice(0, 500)}`;
      doc.errors.push(msg);
      log(msg);
    }
  };
  try {
    const needNat = ['published', 'masquerade', 'loopback', 'scale', 'published6', 'masquerade6'].some((s) => want.has(s));
    const needC2c = want.has('c2c') || want.has('c2c6');
    const needFloor = needNat || needC2c;
    let floor: Floor | undefined;
    if (needFloor) {
      floor = await makeFloor(tag, third);
      cleanups.push(() => floor!.teardown());
      await widenPorts(floor.clientNs);
    }
    let nat: NatEnv | undefined;
    if (needNat) {
      nat = new NatEnv(tag, third, getProxy);
      cleanups.push(() => nat!.teardown());
      await nat.setup();
      await widenPorts(nat.ext.ns);
      await widenPorts(nat.client.ns);
    }

    if (want.has('cost')) await section('cost', async () => {
      log('BPF_PROG_TEST_RUN per-packet cost');
      const rows = await bpfCost({ tag, third, runs: o.quick ? 3 : 5, repeat: o.quick ? 20000 : 200000 });
      doc.bpf = rows.map((r) => ({ ...r, summary: summarize(r.runs) }));
      doc.notes.push('BPF_PROG_TEST_RUN: the cgroup connect4/sendmsg4/recvmsg4 hooks (and their IPv6 twins) cannot be test-run (no test_run for sock_addr programs); their cost is in the loopback scenario.');
      doc.notes.push('BPF_PROG_TEST_RUN single runs (repeat 1: new flows, and a container\'s tracked flow, whose translated packet cannot run again at the veth) include the test run\'s own cost per call: the row "the floor of single runs" measures it on a path that does little; subtract it to compare them with the repeated rows.');
    });

    if (want.has('published') && nat) await section('published', async () => {
      const n = nat;
      const mk = (name: string, mode: 'iptables' | 'berth' | 'berth-xdp'): PathDef => ({
        name,
        activate: (ps) => n.activate(mode, { publish: ps.map((p) => `${p}:${p}`) }),
        deactivate: () => n.deactivate(),
        endpoints: (port) => ({ clientNs: n.ext.ns, serverNs: n.server.ns, addr: n.ext.hostAddr, port }),
      });
      doc.results.push(
        ...(await runScenario({
          scenario: 'published',
          reference: 'Docker (iptables)',
          floor: 'floor (bare veth)',
          paths: [floorPath(floor!), mk('Docker (iptables)', 'iptables'), mk('berth tc', 'berth'), mk('berth tc+xdp', 'berth-xdp')],
          metrics,
          runs: o.runs,
          seconds: o.seconds,
          ports,
        })),
      );
      doc.notes.push('published: outside client (an externals namespace) -> host address:published port -> container. "berth tc+xdp" also attaches the XDP program to the uplink; XDP only takes the drop paths (container addresses and 127.0.0.1 publishes from outside), so published traffic passes it to TC: the row shows what XDP costs on the accepted path.');
    });

    if (want.has('masquerade') && nat) await section('masquerade', async () => {
      const n = nat;
      const mk = (name: string, mode: 'iptables' | 'berth'): PathDef => ({
        name,
        activate: () => n.activate(mode, { publish: [] }),
        deactivate: () => n.deactivate(),
        endpoints: (port) => ({ clientNs: n.client.ns, serverNs: n.ext.ns, addr: n.ext.addr, port }),
      });
      doc.results.push(
        ...(await runScenario({
          scenario: 'masquerade',
          reference: 'Docker (iptables)',
          floor: 'floor (bare veth)',
          paths: [floorPath(floor!), mk('Docker (iptables)', 'iptables'), mk('berth tc', 'berth')],
          metrics: metrics.filter((m) => m.key !== 'tput4'),
          runs: o.runs,
          seconds: o.seconds,
          ports,
        })),
      );
    });

    // the IPv6 twins of published and masquerade, on the same dual-stack topology
    if (want.has('published6') && nat) await section('published6', async () => {
      const n = nat;
      const mk = (name: string, mode: 'iptables' | 'berth' | 'berth-xdp'): PathDef => ({
        name,
        activate: (ps) => n.activate(mode, { publish: ps.map((p) => `${p}:${p}`) }),
        deactivate: () => n.deactivate(),
        endpoints: (port) => ({ clientNs: n.ext.ns, serverNs: n.server.ns, addr: n.ext.hostAddr6, port }),
        packets: pathPackets6(n, mode),
      });
      doc.results.push(
        ...(await runScenario({
          scenario: 'published (IPv6)',
          reference: 'Docker (ip6tables)',
          floor: 'floor (bare veth)',
          paths: [floorPath(floor!, 6), mk('Docker (ip6tables)', 'iptables'), mk('berth tc', 'berth'), mk('berth tc+xdp', 'berth-xdp')],
          metrics,
          runs: o.runs,
          seconds: o.seconds,
          ports,
        })),
      );
      doc.notes.push(`published (IPv6): outside client -> the uplink's IPv6 address [${n.ext.hostAddr6}]:published port -> container [${n.server.ip6}] (a HP:CP publish serves both families, as in Docker 29); the floor is the floor's veth pair over IPv6; Docker's path is the ip6tables half of the reference (test/lib/reference6.ts: DNAT with ! -s fe80::/10, per-interface force_forwarding).`);
    });

    if (want.has('masquerade6') && nat) await section('masquerade6', async () => {
      const n = nat;
      const mk = (name: string, mode: 'iptables' | 'berth'): PathDef => ({
        name,
        activate: () => n.activate(mode, { publish: [] }),
        deactivate: () => n.deactivate(),
        endpoints: (port) => ({ clientNs: n.client.ns, serverNs: n.ext.ns, addr: n.ext.addr6, port }),
        packets: pathPackets6(n, mode),
      });
      doc.results.push(
        ...(await runScenario({
          scenario: 'masquerade (IPv6)',
          reference: 'Docker (ip6tables)',
          floor: 'floor (bare veth)',
          paths: [floorPath(floor!, 6), mk('Docker (ip6tables)', 'iptables'), mk('berth tc', 'berth')],
          metrics: metrics.filter((m) => m.key !== 'tput4'),
          runs: o.runs,
          seconds: o.seconds,
          ports,
        })),
      );
      doc.notes.push(`masquerade (IPv6): container [${n.client.ip6}] -> outside host [${n.ext.addr6}], NAT66 to the uplink's address [${n.ext.hostAddr6}] (the outside host has no route to ${n.subnet6}: replies come back only through the translation); Docker's path is ip6tables' MASQUERADE.`);
    });

    if (want.has('published6') || want.has('masquerade6') || want.has('c2c6'))
      doc.notes.push('IPv6 request/response: connrate\'s rr mode (one connection, 64 bytes each way, TCP_NODELAY), since Debian 12\'s sockperf 3.7 takes no IPv6 address; its figures compare with the IPv6 rows\' own floor and reference, not with the IPv4 rows\' sockperf figures.');

    if (want.has('loopback') && nat) await section('loopback', async () => {
      const n = nat;
      await getProxy();
      const mk = (name: string, mode: 'iptables' | 'proxy' | 'berth'): PathDef => ({
        name,
        activate: (ps) => n.activate(mode, { publish: ps.map((p) => `127.0.0.1:${p}:${p}`) }),
        deactivate: () => n.deactivate(),
        endpoints: (port) => ({ clientNs: '', serverNs: n.server.ns, addr: '127.0.0.1', port }),
        beforeMetric: mode === 'proxy' ? (m) => n.proxyCpu(m.oneCpu ? '1' : '0,1') : undefined,
      });
      const lm = metrics.filter((m) => m.key !== 'tput4');
      doc.results.push(
        ...(await runScenario({
          scenario: 'host -> 127.0.0.1',
          reference: 'Docker (iptables, proxy off)',
          floor: 'floor (bare veth)',
          paths: [floorPath(floor!), mk('Docker (iptables, proxy off)', 'iptables'), mk('docker-proxy', 'proxy'), mk('berth connect4', 'berth')],
          metrics: lm,
          runs: o.runs,
          seconds: o.seconds,
          ports,
        })),
      );
      doc.notes.push('host -> 127.0.0.1: the client runs in the host namespace. Docker with the userland proxy off: nat OUTPUT DNAT + route_localnet + masquerade (the reference rules); with it on (the default): docker-proxy, pinned to CPU 1 too in the one-CPU runs. berth: the cgroup connect4 hook rewrites the socket address, no per-packet NAT.');
    });

    // the c2c network (both families), brought up once for c2c and c2c6
    const c2cCfg = c2cConfig(tag, third);
    const c2cPin = `/sys/fs/bpf/berth-bench-${tag}-c2c`;
    let c2cReady: Promise<void> | undefined;
    const c2cUp = () =>
      (c2cReady ??= (async () => {
        cleanups.push(async () => {
          Dataplane.reset(c2cPin);
          await standalone.down(c2cCfg, { pinRoot: c2cPin }).catch(() => undefined);
        });
        await standalone.up(c2cCfg, { pinRoot: c2cPin, startCommands: false });
        await berthOff(c2cPin);
        await widenPorts(`${tag}-cc`);
      })());

    for (const family of [4, 6] as const) {
      const name = family === 4 ? 'c2c' : 'c2c6';
      if (!want.has(name)) continue;
      await section(name, async () => {
        await c2cUp();
        const cfg = c2cCfg;
        const pinRoot = c2cPin;
        const server = cfg.containers.find((c) => c.name === `${tag}-cs`)!;
        const ep = (port: number): Endpoints => ({ clientNs: `${tag}-cc`, serverNs: `${tag}-cs`, addr: family === 4 ? server.ip : server.ip6!, port });
        doc.results.push(
          ...(await runScenario({
            scenario: family === 4 ? 'c2c' : 'c2c (IPv6)',
            reference: 'kernel bridge',
            floor: 'floor (bare veth)',
            paths: [
              floorPath(floor!, family),
              { name: 'kernel bridge', activate: async () => undefined, deactivate: async () => undefined, endpoints: ep },
              {
              name: 'berth tc',
              activate: async () => void (await standalone.up(cfg, { pinRoot, startCommands: false })),
              deactivate: () => berthOff(pinRoot),
              endpoints: ep,
              ...(family === 6 ? { packets: { what: 'packets berth\'s programs passed or redirected', read: () => berthPackets(pinRoot) } } : {}),
            },
            ],
            metrics: metrics.filter((m) => m.key !== 'tput4'),
            runs: o.runs,
            seconds: o.seconds,
            ports,
          })),
        );
        if (family === 4) doc.notes.push('c2c: container <-> container on one bridge; Docker\'s path is the kernel bridge (no iptables rule is hit between two containers of one network with icc).');
        else doc.notes.push('c2c (IPv6): the same two containers over their IPv6 addresses (fd93:X::/64); the reference is the kernel bridge, as in IPv4.');
      });
    }

    if (want.has('scale') && nat) await section('scale', async () => {
      const n = nat;
      const sm = METRICS.filter((m) => m.key === 'rr1' || m.key === 'conn1');
      const setup: Record<string, number[]> = { iptables: [], berth: [] };
      for (const others of o.scale) {
        const mk = (name: string, mode: 'iptables' | 'berth'): PathDef => ({
          name,
          activate: async (ps) => {
            await n.activate(mode, { publish: ps.map((p) => `${p}:${p}`), others });
            if (others > 0) setup[mode].push(mode === 'iptables' ? n.lastIptablesOtherSeconds : n.lastBerthOtherSeconds);
          },
          deactivate: () => n.deactivate(),
          endpoints: (port) => ({ clientNs: n.ext.ns, serverNs: n.server.ns, addr: n.ext.hostAddr, port }),
        });
        doc.results.push(
          ...(await runScenario({
            scenario: 'rule scale',
            reference: 'Docker (iptables)',
            floor: '',
            paths: [mk('Docker (iptables)', 'iptables'), mk('berth tc', 'berth')],
            metrics: sm,
            runs: o.quick ? Math.min(o.runs, 2) : o.runs,
            seconds: o.seconds,
            ports,
            others,
          })),
        );
      }
      doc.notes.push(
        `rule scale: the other published ports are ${otherPorts(1)[0]}.. on the host: for iptables one DNAT rule each in the reference's DOCKER chain, before the measured port's rule (as if those containers had started first), written with one iptables-restore; for berth one berth_publish entry each (keyed on the suite's host address), written with one updateBatch. They point at an unused container address.`,
      );
    });

    if (want.has('program')) await section('program', async () => {
      log('time to program N published ports');
      const pinRoot = `/sys/fs/bpf/berth-bench-${tag}-prog`;
      cleanups.push(async () => void Dataplane.reset(pinRoot));
      Dataplane.reset(pinRoot);
      const dp = await Dataplane.openOrLoad({ pinRoot });
      try {
        const value = publishValueCodec.encode({ addr: `10.190.${third}.200`, port: 80, flags: 0, ifindex: 1, network_id: 1, mac: '02:00:00:00:00:01' });
        const runs = o.quick ? 3 : 5;
        for (const n of o.programN) {
          const keys = otherPorts(n).map((p) => publishKeyCodec.encode({ host_addr: '0.0.0.0', host_port: p, proto: 6 }));
          const b: number[] = [];
          const perEntry: number[] = [];
          for (let r = 0; r < runs; r++) {
            let t0 = process.hrtime.bigint();
            await dp.maps.publish.updateBatch(keys, keys.map(() => value));
            b.push(Number(process.hrtime.bigint() - t0) / 1e9);
            await dp.maps.publish.deleteBatch(keys);
            if (r === 0) {
              t0 = process.hrtime.bigint();
              for (const k of keys) dp.maps.publish.update(k, value);
              perEntry.push(Number(process.hrtime.bigint() - t0) / 1e9);
              await dp.maps.publish.deleteBatch(keys);
            }
          }
          doc.program.push({ what: 'berth: berth_publish updateBatch (one call)', n, seconds: summarize(b) });
          doc.program.push({ what: 'berth: one map update per port', n, seconds: summarize(perEntry), note: 'one run' });
          const rs: number[] = [];
          let perCall: { s: number; measured: number } | undefined;
          for (let r = 0; r < runs; r++) {
            const last = r === runs - 1 && n === Math.max(...o.programN) && o.perCall > 0;
            const t = await programTimes({ suffix: `${tag}P`, n, perCall: last ? o.perCall : 0, unusedIp: `10.190.${third}.200` });
            rs.push(t.restoreSeconds);
            if (last) perCall = { s: t.perCallSeconds, measured: t.perCallMeasured };
          }
          doc.program.push({ what: 'iptables-restore (one transaction)', n, seconds: summarize(rs) });
          if (perCall) {
            const k = Math.min(o.perCall, n);
            doc.program.push({
              what: 'iptables: one call per port (as dockerd)',
              n,
              seconds: summarize([perCall.s]),
              note: k < n ? `${k} calls took ${perCall.measured.toFixed(2)} s, extrapolated linearly to ${n} (a lower bound: with the nf_tables backend each call also reads the ruleset back, so calls get slower as the chain grows)` : 'measured',
            });
          }
          log(`program ${n}: done`);
        }
      } finally {
        dp.close();
        Dataplane.reset(pinRoot);
      }
    });

    if (want.has('controller')) await section('controller', async () => {
      log(`controller: plan+apply of ${o.endpoints} synthetic endpoints`);
      const runs = o.quick ? 1 : 3;
      doc.controller.endpoints = await programEndpoints({ tag, third, n: o.endpoints, runs });
      log(`controller: daemon RSS and /metrics scrape with ${o.veths} veths`);
      doc.controller.daemon = await daemonCost({ tag, third, veths: o.veths, scrapes: o.quick ? 5 : 20 });
      if (o.profile) {
        const dest = path.resolve(o.svg ?? 'bench/results', 'clinic');
        log(`controller: clinic doctor under container churn (${o.profileSeconds} s) into ${dest}`);
        doc.controller.profile = await profileDaemon({ tag, third, seconds: o.profileSeconds, dest });
      } else {
        doc.controller.skipped = ['clinic profile: not requested (--profile)'];
      }
    });
  } finally {
    await cleanAll();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
  doc.seconds = (Date.now() - started) / 1000;
  doc.machine.loadavgAtEnd = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  doc.targets = targets(doc);
  return doc;
}

function med(doc: BenchDoc, scenario: string, metric: string, p: string, others?: number): Result | undefined {
  return doc.results.find((r) => r.scenario === scenario && r.metric === metric && r.path === p && (others === undefined || r.others === others));
}

function targets(doc: BenchDoc): BenchDoc['targets'] {
  const out: BenchDoc['targets'] = [];
  const pct = (x: number) => `${x >= 1 ? '+' : ''}${((x - 1) * 100).toFixed(1)}%`;
  for (const [scenario, label, ref] of [['published', 'published path', 'iptables'], ['published (IPv6)', 'IPv6 published path', 'ip6tables'], ['masquerade (IPv6)', 'IPv6 masquerade', 'ip6tables']] as const) {
    for (const m of ['request/response, one CPU', 'new connections, one CPU', 'TCP throughput, 1 stream']) {
      const r = med(doc, scenario, m, 'berth tc');
      if (!r?.vsFloor) continue;
      // the IPv6 rows carry their ratio to Docker's ip6tables path too (reported; the target is the floor's)
      const vsRef = scenario !== 'published' && r.vsReference && Number.isFinite(r.vsReference.median) ? `; ${r.vsReference.median.toFixed(3)}x ${ref}` : '';
      out.push({ target: `${label}, berth tc within 5% of the floor: ${m}`, measured: `${r.vsFloor.median.toFixed(3)}x the floor (${pct(r.vsFloor.median)})${vsRef}`, met: r.vsFloor.median >= 0.95 });
    }
  }
  const scale = doc.results.filter((r) => r.scenario === 'rule scale' && r.path === 'berth tc');
  const maxN = Math.max(...scale.map((r) => r.others ?? 0));
  for (const m of ['request/response, one CPU', 'new connections, one CPU']) {
    const a = med(doc, 'rule scale', m, 'berth tc', 0);
    const b = med(doc, 'rule scale', m, 'berth tc', maxN);
    if (!a || !b || maxN <= 0) continue;
    const x = b.summary.median / a.summary.median;
    out.push({ target: `berth ${m} with ${maxN} other ports within 5% of none`, measured: `${x.toFixed(3)}x (${pct(x)})`, met: x >= 0.95 });
  }
  const p = doc.program.find((x) => x.what.startsWith('berth: berth_publish updateBatch') && x.n === 10000);
  if (p) out.push({ target: '10,000 ports programmed in under one second (berth)', measured: `${(p.seconds.median * 1000).toFixed(1)} ms`, met: p.seconds.median < 1 });
  return out;
}

// ---- output ------------------------------------------------------------------

const fmt = (x: number) => (!Number.isFinite(x) ? '-' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const ratio = (s?: Summary) => (s && Number.isFinite(s.median) ? `${s.median.toFixed(2)}x (${s.min.toFixed(2)}-${s.max.toFixed(2)})` : '');

export function render(doc: BenchDoc): string {
  const out: string[] = [];
  const main = doc.results.filter((r) => r.scenario !== 'rule scale');
  if (main.length) {
    out.push('Paths (median of runs, min-max; ratios are paired per round)');
    out.push(
      table(
        ['SCENARIO', 'METRIC', 'PATH', 'MEDIAN', 'MIN-MAX', 'UNIT', 'VS DOCKER', 'VS FLOOR', 'P50/P99 us', 'CPU'],
        main.map((r) => [
          r.scenario,
          r.metric,
          r.path,
          fmt(r.summary.median),
          `${fmt(r.summary.min)}-${fmt(r.summary.max)}`,
          r.unit,
          ratio(r.vsReference),
          ratio(r.vsFloor),
          r.p50_us && Number.isFinite(r.p50_us.median) ? `${fmt(r.p50_us.median)}/${fmt(r.p99_us!.median)}` : '',
          r.cpu && Number.isFinite(r.cpu.median) ? `${fmt(r.cpu.median)} ${r.cpuUnit}` : '',
        ]),
      ),
    );
  }
  const scale = doc.results.filter((r) => r.scenario === 'rule scale');
  if (scale.length) {
    const ns = [...new Set(scale.map((r) => r.others!))].sort((a, b) => a - b);
    const keys = [...new Set(scale.map((r) => `${r.path}\u0000${r.metric}`))];
    out.push('', 'Rule scale: published path with N other published ports (median, min-max)');
    out.push(
      table(
        ['PATH', 'METRIC', ...ns.map((n) => `N=${n}`), `N=${ns[ns.length - 1]} / N=0`],
        keys.map((k) => {
          const [p, m] = k.split('\u0000');
          const at = (n: number) => scale.find((r) => r.path === p && r.metric === m && r.others === n);
          const z = at(0)?.summary.median;
          const last = at(ns[ns.length - 1])?.summary.median;
          return [p, m, ...ns.map((n) => {
            const r = at(n);
            return r ? `${fmt(r.summary.median)} (${fmt(r.summary.min)}-${fmt(r.summary.max)})` : '';
          }), z && last ? `${(last / z).toFixed(3)}x` : ''];
        }),
      ),
    );
  }
  if (doc.program.length) {
    out.push('', 'Time to program N published ports (seconds)');
    out.push(table(['HOW', 'N', 'MEDIAN s', 'MIN-MAX', 'NOTE'], doc.program.map((p) => [p.what, String(p.n), p.seconds.median.toFixed(4), `${p.seconds.min.toFixed(4)}-${p.seconds.max.toFixed(4)}`, p.note ?? ''])));
  }
  if (doc.bpf.length) {
    out.push('', 'Per-packet cost (BPF_PROG_TEST_RUN, ns/packet)');
    out.push(table(['PROGRAM', 'VERDICT', 'MEDIAN', 'MIN-MAX', 'RETVAL'], doc.bpf.map((b) => [b.program, b.verdict + (b.note ? ` (${b.note})` : ''), fmt(b.summary.median), `${fmt(b.summary.min)}-${fmt(b.summary.max)}`, String(b.retval)])));
  }
  const c = doc.controller;
  if (c.endpoints?.length || c.daemon || c.profile) {
    out.push('', 'Controller');
    const rows: string[][] = [];
    if (c.endpoints?.length) {
      const s = (f: (e: ProgramEndpoints) => number) => summarize(c.endpoints!.map(f));
      const e0 = c.endpoints[0];
      const line = (what: string, x: Summary) => rows.push([what, `${x.median.toFixed(1)} ms`, `${x.min.toFixed(1)}-${x.max.toFixed(1)}`]);
      line(`plan ${e0.endpoints} endpoints (${e0.steps} steps)`, s((e) => e.planMs));
      line(`apply ${e0.endpoints} endpoints (map entries + 2 tcx attaches each, on real veths)`, s((e) => e.applyMs));
      line(`apply ${e0.endpoints} endpoints, map entries only`, s((e) => e.mapOnlyApplyMs));
      line(`read back + plan again (nothing to do)`, s((e) => e.checkMs));
      line(`remove ${e0.endpoints} endpoints`, s((e) => e.removeMs));
    }
    if (c.daemon) {
      const d = c.daemon;
      const sc = summarize(d.scrapeMs);
      rows.push(['daemon RSS (berth run, idle, 1 container)', `${d.rssIdleMiB.toFixed(1)} MiB`, '']);
      rows.push([`daemon RSS after scrapes with ${d.veths} synthetic veths`, `${d.rssAfterMiB.toFixed(1)} MiB`, '']);
      rows.push([`/metrics scrape, ${d.veths} veths (${d.series} series, ${(d.bodyBytes / 1024).toFixed(0)} KiB)`, `${sc.median.toFixed(1)} ms`, `${sc.min.toFixed(1)}-${sc.max.toFixed(1)}`]);
    }
    if (c.profile) rows.push([`clinic doctor (${c.profile.reloads} reloads)`, c.profile.ok ? c.profile.html! : `failed: ${c.profile.error}`, '']);
    out.push(table(['WHAT', 'MEDIAN', 'MIN-MAX'], rows));
  }
  if (doc.targets.length) {
    out.push('', 'Targets (reported, never asserted)');
    out.push(table(['TARGET', 'MEASURED', 'MET'], doc.targets.map((t) => [t.target, t.measured, t.met === null ? '?' : t.met ? 'yes' : 'no'])));
  }
  const moved = doc.results.filter((r, i, all) => r.pathPackets && all.findIndex((x) => x.scenario === r.scenario && x.path === r.path) === i);
  if (moved.length) {
    out.push('', 'Packets each path handled, per round (the path\'s own counters: shows the rows took it)');
    out.push(table(['SCENARIO', 'PATH', 'PACKETS PER ROUND', 'COUNTED'], moved.map((r) => [r.scenario, r.path, r.pathPackets!.perRound.join(' '), r.pathPackets!.what])));
  }
  const errs = doc.results.filter((r) => r.errors?.length);
  if (errs.length || doc.errors.length) {
    out.push('', 'Errors');
    for (const e of doc.errors) out.push(`  ${e}`);
    for (const r of errs) out.push(`  ${r.scenario} / ${r.path} / ${r.metric}${r.others !== undefined ? ` (${r.others})` : ''}: ${r.errors!.join('; ')}`);
  }
  if (doc.notes.length) out.push('', 'Notes', ...doc.notes.map((n) => `  - ${n}`));
  out.push('', `bench: ${doc.seconds.toFixed(0)} s`);
  return out.join('\n');
}

/** The terminal output with the command and the machine description, for bench/results/. */
export function report(doc: BenchDoc): string {
  const m = Object.entries(doc.machine).map(([k, v]) => `  ${k}: ${v}`);
  return [`command: ${doc.command}`, `date: ${doc.date}`, 'machine:', ...m, '', render(doc), ''].join('\n');
}

export function charts(doc: BenchDoc, dir: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const main = doc.results.filter((r) => r.scenario !== 'rule scale');
  const groups = (kind: (r: Result) => boolean) => {
    const keys = [...new Set(main.filter(kind).map((r) => `${r.scenario}\u0000${r.metric}`))];
    return keys.map((k) => {
      const [s, m] = k.split('\u0000');
      const rs = main.filter((r) => r.scenario === s && r.metric === m);
      return { title: `${s}: ${m}`, unit: rs[0].unit, bars: rs.map((r) => ({ label: r.path, median: r.summary.median || 0, min: r.summary.min || 0, max: r.summary.max || 0 })) };
    });
  };
  const write = (name: string, text: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    written.push(f);
  };
  const tp = groups((r) => r.unit === 'Gbit/s');
  if (tp.length) write('throughput.svg', barChart('TCP throughput per path', tp));
  const rr = groups((r) => r.unit === 'trans/s');
  if (rr.length) write('request-response.svg', barChart('Request/response on one connection per path (64 bytes)', rr));
  const cr = groups((r) => r.unit === 'conn/s');
  if (cr.length) write('connections.svg', barChart('New connections per second per path', cr));
  const scale = doc.results.filter((r) => r.scenario === 'rule scale');
  if (scale.length) {
    const panels = [...new Set(scale.map((r) => r.metric))].map((m) => ({
      title: `published path: ${m}`,
      unit: scale.find((r) => r.metric === m)!.unit,
      series: [...new Set(scale.map((r) => r.path))].map((p) => ({
        label: p,
        points: scale.filter((r) => r.metric === m && r.path === p).map((r) => ({ x: r.others!, median: r.summary.median || 0, min: r.summary.min || 0, max: r.summary.max || 0 })),
      })),
    }));
    write('rule-scale.svg', lineChart('Rates versus other published ports', panels));
  }
  return written;
}

if (require.main === module) {
  const list = (v: string) => v.split(',').map((x) => Number(x.trim()));
  const cmd = new Command('berth-bench')
    .option('--quick', 'fewer metrics, runs and points (under three minutes)')
    .option('--runs <n>', 'rounds per path (at least 5 for published figures)', (v) => Number(v))
    .option('--seconds <n>', 'seconds per measurement', (v) => Number(v))
    .option('--json <file>', 'write the results as JSON')
    .option('--svg <dir>', 'write SVG charts there (default: the JSON file\'s directory)')
    .option('--scenario <list>', `comma-separated: ${ALL_SCENARIOS.join(',')} (default: all; --quick: ${QUICK_SCENARIOS.join(',')})`)
    .option('--scale <list>', 'other published ports for the rule-scale points', list)
    .option('--program <list>', 'N for the time to program N ports', list)
    .option('--per-call <n>', 'iptables calls to time for the one-call-per-port figure', (v) => Number(v))
    .option('--endpoints <n>', 'synthetic endpoints for plan/apply', (v) => Number(v))
    .option('--veths <n>', 'synthetic veths for the /metrics scrape', (v) => Number(v))
    .option('--profile', 'run clinic doctor on the daemon under container churn')
    .option('--profile-seconds <n>', 'seconds of churn under clinic', (v) => Number(v), 20)
    .option('--suite <name>', 'paths (the default: the scenarios above), controlplane (issue 13: bench/controlplane.ts) or profile (issue 14: bench/profile.ts)', 'paths')
    .option('--paths <list>', `profile: comma-separated ${PROFILE_PATHS.map((p) => p.key).join(',')} (default all)`)
    .option('--loads <list>', 'profile: rr,conn (default both)')
    .option('--no-perf', 'profile: no perf record of the softirq path')
    .option('--sizes <list>', 'controlplane: other containers running, comma-separated (default 0,100,1000)')
    .option('--modes <list>', 'controlplane: docker,standalone (default both)')
    .option('--rest-seconds <n>', 'controlplane: seconds of each window at rest (default 30)')
    .option('--churn <n>', 'controlplane: containers started and removed for the event-loop delay under churn (default 20)')
    .option('--spawn-containers <n>', 'controlplane: containers started while spawns are counted (default 5)')
    .option('--concurrency <n>', 'controlplane: docker runs at once while the others start (default 4)')
    .parse(process.argv);
  const o = cmd.opts();
  if (o.suite === 'controlplane') {
    let cp;
    try {
      cp = cpOptions(o);
    } catch (e) {
      console.error(`bench: ${(e as Error).message}`);
      process.exit(2);
    }
    runControlplane(cp)
      .then((doc) => {
        console.log(renderControlplane(doc));
        if (cp.json) console.log(`bench: wrote ${cp.json} and ${writeControlplane(doc, cp.json)}`);
      })
      .catch((e) => {
        console.error(`bench: ${e instanceof Error ? e.stack ?? e.message : e}`);
        process.exit(1);
      });
  } else if (o.suite === 'profile') {
    const words = (v: string | undefined, all: string[]) => (v ? String(v).split(',').map((x) => x.trim()).filter(Boolean) : all);
    const loads = words(o.loads, ['rr', 'conn']);
    const bad = loads.filter((l) => l !== 'rr' && l !== 'conn');
    const runs = o.runs ?? 3;
    const seconds = o.seconds ?? 2;
    if (bad.length || !(runs >= 1) || !(seconds >= 1)) {
      console.error(`bench: profile: ${bad.length ? `unknown load ${bad.join(',')} (rr, conn)` : '--runs and --seconds must be at least 1'}`);
      process.exit(2);
    }
    runProfile({ runs, seconds, json: o.json, perf: o.perf !== false, paths: words(o.paths, PROFILE_PATHS.map((p) => p.key)), loads: loads as Array<'rr' | 'conn'> })
      .then((doc) => {
        console.log(renderProfile(doc));
        if (o.json) console.log(`bench: wrote ${o.json} and ${writeProfile(doc, o.json)}`);
        if (doc.errors.length) process.exit(1);
      })
      .catch((e) => {
        console.error(`bench: ${e instanceof Error ? e.stack ?? e.message : e}`);
        process.exit(1);
      });
  } else if (o.suite !== 'paths') {
    console.error(`bench: unknown suite ${JSON.stringify(o.suite)} (paths, controlplane or profile)`);
    process.exit(2);
  } else {
    const quick = !!o.quick;
    const opts: BenchOptions = {
      quick,
      runs: o.runs ?? (quick ? 3 : 5),
      seconds: o.seconds ?? 1,
      json: o.json,
      svg: o.svg ?? (o.json ? path.dirname(path.resolve(o.json)) : undefined),
      scenarios: String(o.scenario ?? (quick ? QUICK_SCENARIOS : ALL_SCENARIOS).join(',')).split(',').map((s: string) => s.trim()).filter(Boolean),
      scale: o.scale ?? (quick ? [0, 10000] : [0, 1000, 10000, 30000]),
      programN: o.program ?? (quick ? [1000, 10000] : [1000, 10000, 30000]),
      perCall: o.perCall ?? (quick ? 100 : 1000),
      endpoints: o.endpoints ?? (quick ? 200 : 1000),
      veths: o.veths ?? 1000,
      profile: !!o.profile,
      profileSeconds: o.profileSeconds,
    };
    runBench(opts)
      .then((doc) => {
        console.log(render(doc));
        if (opts.json) {
          fs.mkdirSync(path.dirname(path.resolve(opts.json)), { recursive: true });
          fs.writeFileSync(opts.json, JSON.stringify(doc, null, 2));
          console.log(`bench: wrote ${opts.json}`);
          const txt = opts.json.replace(/\.json$/, '') + '.txt';
          fs.writeFileSync(txt, report(doc));
          console.log(`bench: wrote ${txt}`);
        }
        if (opts.svg) for (const f of charts(doc, opts.svg)) console.log(`bench: wrote ${f}`);
      })
      .catch((e) => {
        console.error(`bench: ${e instanceof Error ? e.stack ?? e.message : e}`);
        process.exit(1);
      });
  }
}
