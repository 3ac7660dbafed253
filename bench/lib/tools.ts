/**
 * The load tools, run inside namespaces: iperf3 (throughput), sockperf
 * (request/response on one connection), and berth's own connrate
 * (connect, one exchange, close). Every run is bounded in time.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';

const pexec = promisify(execFile);
export const CONNRATE = path.resolve(__dirname, '..', '..', '..', 'build', 'bench', 'connrate');

/** `ip netns exec NS [taskset -c CPU] cmd...` (ns '' = the host). */
export function nsArgv(ns: string, cpu: number | undefined, argv: string[]): [string, string[]] {
  const inner = cpu === undefined ? argv : ['taskset', '-c', String(cpu), ...argv];
  return ns ? ['ip', ['netns', 'exec', ns, ...inner]] : [inner[0], inner.slice(1)];
}

export function startServer(ns: string, cpu: number | undefined, argv: string[]): ChildProcess {
  const [cmd, args] = nsArgv(ns, cpu, argv);
  return spawn(cmd, args, { stdio: 'ignore' });
}

export async function stopServer(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill('SIGKILL');
  await new Promise((r) => p.once('exit', r));
}

async function runIn(ns: string, cpu: number | undefined, argv: string[], timeoutMs: number): Promise<string> {
  const [cmd, args] = nsArgv(ns, cpu, argv);
  const { stdout, stderr } = await pexec(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
  return stdout + stderr;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait (bounded) until something listens on the TCP port inside the namespace. */
export async function waitListening(ns: string, port: number, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const out = await runIn(ns, undefined, ['ss', '-Hltn', `sport = :${port}`], 5000).catch(() => '');
    if (out.trim()) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on port ${port} in ${ns || 'the host'} after ${timeoutMs} ms`);
}

export interface Endpoints {
  clientNs: string;
  serverNs: string;
  /** address the client dials */
  addr: string;
  port: number;
  /** the server binds this address (default 0.0.0.0) */
  bind?: string;
  /** pin both ends to one CPU */
  cpu?: number;
}

/** iperf3 TCP throughput in Gbit/s. */
export async function iperf(e: Endpoints, seconds: number, streams: number): Promise<number> {
  const srv = startServer(e.serverNs, e.cpu, ['iperf3', '-s', '-1', '-p', String(e.port)]);
  try {
    await waitListening(e.serverNs, e.port);
    const out = await runIn(e.clientNs, e.cpu, ['iperf3', '-c', e.addr, '-p', String(e.port), '-t', String(seconds), '-P', String(streams), '-J'], (seconds + 20) * 1000);
    const j = JSON.parse(out.slice(out.indexOf('{')));
    if (j.error) throw new Error(`iperf3: ${j.error}`);
    return j.end.sum_received.bits_per_second / 1e9;
  } finally {
    await stopServer(srv);
  }
}

export interface RR {
  /** transactions per second on one connection */
  rate: number;
  p50_us: number;
  p99_us: number;
}

/** sockperf ping-pong (64-byte messages): round trips per second and round-trip percentiles. */
export async function sockperf(e: Endpoints, seconds: number): Promise<RR> {
  const srv = startServer(e.serverNs, e.cpu, ['sockperf', 'sr', '--tcp', '-i', e.bind ?? '0.0.0.0', '-p', String(e.port)]);
  try {
    await waitListening(e.serverNs, e.port);
    const out = await runIn(e.clientNs, e.cpu, ['sockperf', 'pp', '--tcp', '-i', e.addr, '-p', String(e.port), '-t', String(seconds), '-m', '64'], (seconds + 20) * 1000);
    const rt = /RunTime=([\d.]+) sec; SentMessages=\d+; ReceivedMessages=(\d+)/.exec(out);
    const p50 = /percentile 50\.000 =\s+([\d.]+)/.exec(out);
    const p99 = /percentile 99\.000 =\s+([\d.]+)/.exec(out);
    if (!rt || !p50 || !p99) throw new Error(`sockperf: unexpected output: ${out.slice(-500)}`);
    // sockperf reports half the round trip as "latency"
    return { rate: Number(rt[2]) / Number(rt[1]), p50_us: 2 * Number(p50[1]), p99_us: 2 * Number(p99[1]) };
  } finally {
    await stopServer(srv);
  }
}

export interface ConnRate {
  rate: number;
  p50_us: number;
  p99_us: number;
  errors: number;
}

/** New connections per second: connect, 64 bytes each way, server closes first. */
export async function connrate(e: Endpoints, seconds: number): Promise<ConnRate> {
  const srv = startServer(e.serverNs, e.cpu, [CONNRATE, 'server', String(e.port), String(seconds + 30)]);
  try {
    await waitListening(e.serverNs, e.port);
    const out = await runIn(e.clientNs, e.cpu, [CONNRATE, 'client', e.addr, String(e.port), String(seconds)], (seconds + 30) * 1000);
    const j = JSON.parse(out.trim().split('\n').pop()!);
    return { rate: j.rate, p50_us: j.p50_us, p99_us: j.p99_us, errors: j.errors };
  } finally {
    await stopServer(srv);
  }
}

/** Widen the client's ephemeral range (new-connection tests run out of ports otherwise). */
export async function widenPorts(ns: string): Promise<void> {
  await runIn(ns, undefined, ['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=10000 65000'], 5000);
}
