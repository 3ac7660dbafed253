/**
 * The load tools, run inside namespaces: iperf3 (throughput), sockperf
 * (request/response on one connection), and berth's own connrate
 * (connect, one exchange, close). Every run is bounded in time.
 *
 * Every tool takes an IPv6 address too (issue 12): iperf3 -6, connrate's
 * AF_INET6 sockets. Debian 12's sockperf (3.7) takes IPv4 addresses only,
 * so request/response over IPv6 is connrate's rr mode (one connection,
 * 64 bytes each way, TCP_NODELAY as sockperf): see rr().
 *
 * Each tool also reports the machine's busy CPU time (all CPUs, from
 * /proc/stat) over the client's run, so figures can be turned into CPU cost
 * per gigabyte or per transaction.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { waitListening } from '../../test/lib/listen';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

const pexec = promisify(execFile);
export const CONNRATE = path.resolve(__dirname, '..', '..', '..', 'build', 'bench', 'connrate');

/** `ip netns exec NS [taskset -c CPU] cmd...` (ns '' = the host). */
export function nsArgv(ns: string, cpu: number | string | undefined, argv: string[]): [string, string[]] {
  const inner = cpu === undefined ? argv : ['taskset', '-c', String(cpu), ...argv];
  return ns ? ['ip', ['netns', 'exec', ns, ...inner]] : [inner[0], inner.slice(1)];
}

const live = new Set<ChildProcess>();
/** Kill every server still running (used by the suite's cleanup). */
export function killServers(): void {
  for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

export function startServer(ns: string, cpu: number | string | undefined, argv: string[]): ChildProcess {
  const [cmd, args] = nsArgv(ns, cpu, argv);
  const p = spawn(cmd, args, { stdio: 'ignore' });
  live.add(p);
  p.once('exit', () => live.delete(p));
  return p;
}

export async function stopServer(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill('SIGKILL');
  await new Promise((r) => p.once('exit', r));
}

async function runIn(ns: string, cpu: number | string | undefined, argv: string[], timeoutMs: number): Promise<string> {
  const [cmd, args] = nsArgv(ns, cpu, argv);
  const { stdout, stderr } = await pexec(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20, killSignal: 'SIGKILL' });
  return stdout + stderr;
}

/** iperf3 and sockperf take whole seconds */
const whole = (s: number) => String(Math.max(1, Math.round(s)));



/** Busy (non-idle, non-iowait) CPU seconds of the whole machine so far. */
export function cpuBusySeconds(): number {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is in user already)
  const busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
  return busy / 100; // USER_HZ
}

export interface Endpoints {
  clientNs: string;
  serverNs: string;
  /** address the client dials */
  addr: string;
  /** port the client dials */
  port: number;
  /** port the server listens on (default: port) */
  serverPort?: number;
  /** the server binds this address (default 0.0.0.0, or :: when addr is IPv6) */
  bind?: string;
  /** CPU (list) for the client and for the server; undefined = unpinned */
  clientCpu?: number;
  serverCpu?: number;
}

export interface Sample {
  /** the figure (Gbit/s, transactions/s or connections/s) */
  value: number;
  p50_us?: number;
  p99_us?: number;
  /** busy CPU seconds of the machine over the client's run */
  cpuSeconds: number;
  /** wall seconds of the client's run */
  seconds: number;
  errors?: number;
  /** transactions or connections the tool itself counted (sockperf, connrate; not iperf3) */
  count?: number;
}

async function measured(f: () => Promise<string>): Promise<{ out: string; cpuSeconds: number; seconds: number }> {
  const c0 = cpuBusySeconds();
  const t0 = process.hrtime.bigint();
  const out = await f();
  return { out, cpuSeconds: cpuBusySeconds() - c0, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/** An IPv6 address (the endpoints' addresses are literals). */
export const isV6 = (addr: string): boolean => addr.includes(':');
const bindOf = (e: Endpoints): string => e.bind ?? (isV6(e.addr) ? '::' : '0.0.0.0');

/** iperf3 TCP throughput in Gbit/s. */
export async function iperf(e: Endpoints, seconds: number, streams: number): Promise<Sample> {
  const sp = e.serverPort ?? e.port;
  const srv = startServer(e.serverNs, e.serverCpu, ['iperf3', '-s', '-1', '-p', String(sp)]);
  try {
    await waitListening(e.serverNs, sp);
    const m = await measured(() =>
      runIn(e.clientNs, e.clientCpu, ['iperf3', ...(isV6(e.addr) ? ['-6'] : []), '-c', e.addr, '-p', String(e.port), '-t', whole(seconds), '-P', String(streams), '-J'], (seconds + 20) * 1000),
    );
    const j = JSON.parse(m.out.slice(m.out.indexOf('{')));
    if (j.error) throw new Error(`iperf3: ${j.error}`);
    return { value: j.end.sum_received.bits_per_second / 1e9, cpuSeconds: m.cpuSeconds, seconds: m.seconds };
  } finally {
    await stopServer(srv);
  }
}

/** sockperf ping-pong (64-byte messages): round trips per second and round-trip percentiles. IPv4 only (sockperf 3.7). */
export async function sockperf(e: Endpoints, seconds: number): Promise<Sample> {
  const sp = e.serverPort ?? e.port;
  if (isV6(e.addr)) throw new Error(`sockperf 3.7 takes no IPv6 address (${e.addr}); use rr()`);
  const srv = startServer(e.serverNs, e.serverCpu, ['sockperf', 'sr', '--tcp', '-i', bindOf(e), '-p', String(sp)]);
  try {
    await waitListening(e.serverNs, sp);
    const m = await measured(() =>
      runIn(e.clientNs, e.clientCpu, ['sockperf', 'pp', '--tcp', '-i', e.addr, '-p', String(e.port), '-t', whole(seconds), '-m', '64'], (seconds + 20) * 1000),
    );
    const out = m.out;
    const rt = /RunTime=([\d.]+) sec; SentMessages=\d+; ReceivedMessages=(\d+)/.exec(out);
    const p50 = /percentile 50\.000 =\s+([\d.]+)/.exec(out);
    const p99 = /percentile 99\.000 =\s+([\d.]+)/.exec(out);
    if (!rt || !p50 || !p99) throw new Error(`sockperf: unexpected output: ${out.slice(-500)}`);
    // sockperf reports half the round trip as "latency"
    return { value: Number(rt[2]) / Number(rt[1]), count: Number(rt[2]), p50_us: 2 * Number(p50[1]), p99_us: 2 * Number(p99[1]), cpuSeconds: m.cpuSeconds, seconds: m.seconds };
  } finally {
    await stopServer(srv);
  }
}

/**
 * Request/response on one connection with connrate's rr mode (64 bytes each
 * way, back to back): transactions per second and round-trip percentiles,
 * the figure sockperf gives, for IPv6 where sockperf 3.7 cannot go.
 */
export async function rr(e: Endpoints, seconds: number): Promise<Sample> {
  const sp = e.serverPort ?? e.port;
  const srv = startServer(e.serverNs, e.serverCpu, [CONNRATE, 'rrserver', String(sp), String(seconds + 30), bindOf(e)]);
  try {
    await waitListening(e.serverNs, sp);
    const m = await measured(() => runIn(e.clientNs, e.clientCpu, [CONNRATE, 'rr', e.addr, String(e.port), String(seconds)], (seconds + 30) * 1000));
    const j = JSON.parse(m.out.trim().split('\n').pop()!);
    return { value: j.rate, count: j.transactions, p50_us: j.p50_us, p99_us: j.p99_us, errors: j.errors, cpuSeconds: m.cpuSeconds, seconds: m.seconds };
  } finally {
    await stopServer(srv);
  }
}

/** New connections per second: connect, 64 bytes each way, server closes first. */
export async function connrate(e: Endpoints, seconds: number): Promise<Sample> {
  const sp = e.serverPort ?? e.port;
  const srv = startServer(e.serverNs, e.serverCpu, [CONNRATE, 'server', String(sp), String(seconds + 30), bindOf(e)]);
  try {
    await waitListening(e.serverNs, sp);
    const m = await measured(() => runIn(e.clientNs, e.clientCpu, [CONNRATE, 'client', e.addr, String(e.port), String(seconds)], (seconds + 30) * 1000));
    const j = JSON.parse(m.out.trim().split('\n').pop()!);
    return { value: j.rate, count: j.connections, p50_us: j.p50_us, p99_us: j.p99_us, errors: j.errors, cpuSeconds: m.cpuSeconds, seconds: m.seconds };
  } finally {
    await stopServer(srv);
  }
}

/** Widen the client's ephemeral range (new-connection tests run out of ports otherwise). */
export async function widenPorts(ns: string): Promise<void> {
  await runIn(ns, undefined, ['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=10000 39999'], 5000);
}

export { waitListening };
