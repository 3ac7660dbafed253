/**
 * Controller cost: programming N synthetic endpoints through reconcile's
 * plan/apply (on real veth interfaces, so the tcx attach steps are real too),
 * the daemon's memory, the /metrics scrape time with N veths' counters in the
 * pinned maps, and a clinic profile of the daemon under container churn.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { run } from '../../src/platform/exec';
import {
  counterKeyCodec,
  endpointCodec,
  endpointMetaCodec,
  EndpointFlags,
  ifindexKeyCodec,
  networkKeyCodec,
  networkMetaCodec,
  zeroPerCpuCounters,
} from '../../src/platform/contract';
import { DesiredEndpoint, apply, plan, readCurrent } from '../../src/engine/reconcile';
import * as topology from '../../src/platform/topology';

const REPO = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(REPO, 'dist', 'src', 'cli', 'main.js');
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function ipBatch(lines: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const p = spawn('ip', ['-force', '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`ip -batch: ${err.trim().slice(0, 300)}`))));
    p.stdin.end(lines.join('\n') + '\n');
  });
}

export interface ProgramEndpoints {
  endpoints: number;
  steps: number;
  planMs: number;
  applyMs: number;
  /** read back + plan again with nothing to do */
  checkMs: number;
  removeMs: number;
  /** apply without the attach steps (map programming only) */
  mapOnlyApplyMs: number;
}

/**
 * N synthetic endpoints through plan/apply, `runs` times. The interfaces are
 * veth pairs made with one `ip -batch` (this kernel has no dummy driver); only
 * their ifindexes matter, for the tcx attach steps.
 */
export async function programEndpoints(o: { tag: string; third: number; n: number; runs: number }): Promise<ProgramEndpoints[]> {
  const pinRoot = `/sys/fs/bpf/berth-bench-${o.tag}-ctl`;
  const names = Array.from({ length: o.n }, (_, i) => `${o.tag}d${i}`);
  const net = `${o.tag}syn`;
  const scope = new Set([net]);
  const cleanup = async () => {
    Dataplane.reset(pinRoot);
    await ipBatch(names.map((n) => `link del ${n}`)).catch(() => undefined);
  };
  await cleanup();
  try {
    await ipBatch(names.map((n) => `link add ${n} type veth peer name ${n}p`));
    const links = (await run('ip', ['-j', 'link', 'show', 'type', 'veth'])).stdout;
    const idx = new Map<string, number>((JSON.parse(links) as Array<{ ifname: string; ifindex: number }>).map((l) => [l.ifname, l.ifindex]));
    const endpoints: DesiredEndpoint[] = names.map((n, i) => ({
      container: `${o.tag}-e${i}`,
      network: net,
      ip: `10.${192 + Math.floor(i / 250)}.${o.third}.${1 + (i % 250)}`,
      mac: `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
      ifindex: idx.get(n)!,
      ifname: n,
    }));
    const networks = [{ name: net, bridge: `${o.tag}sb`, subnet: `10.192.${o.third}.0`, prefixLen: 24, gateway: `10.192.${o.third}.254`, icc: true, masquerade: true }];
    const out: ProgramEndpoints[] = [];
    for (let r = 0; r < o.runs; r++) {
      Dataplane.reset(pinRoot);
      const dp = await Dataplane.openOrLoad({ pinRoot });
      try {
        let t0 = process.hrtime.bigint();
        const steps = plan({ networks, endpoints }, await readCurrent(dp), scope);
        const planMs = ms(t0);
        t0 = process.hrtime.bigint();
        await apply(dp, steps);
        const applyMs = ms(t0);
        t0 = process.hrtime.bigint();
        const again = plan({ networks, endpoints }, await readCurrent(dp), scope);
        const checkMs = ms(t0);
        if (again.length) throw new Error(`plan after apply is not empty (${again.length} steps)`);
        t0 = process.hrtime.bigint();
        await apply(dp, plan({ networks: [], endpoints: [] }, await readCurrent(dp), scope));
        const removeMs = ms(t0);
        // the same endpoints, map entries only (the attach steps left out)
        const mapSteps = plan({ networks, endpoints }, await readCurrent(dp), scope).filter((s) => s.op !== 'attach');
        t0 = process.hrtime.bigint();
        await apply(dp, mapSteps);
        const mapOnlyApplyMs = ms(t0);
        out.push({ endpoints: o.n, steps: steps.length, planMs, applyMs, checkMs, removeMs, mapOnlyApplyMs });
      } finally {
        dp.close();
      }
    }
    return out;
  } finally {
    await cleanup();
  }
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

interface DaemonProc {
  proc: ChildProcess;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

const daemons = new Set<ChildProcess>();
export function killDaemons(): void {
  for (const p of daemons) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

async function startDaemon(argv: string[], port: number, env: NodeJS.ProcessEnv = process.env): Promise<DaemonProc> {
  const proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env, cwd: REPO });
  daemons.add(proc);
  proc.once('exit', () => daemons.delete(proc));
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}/metrics`;
  const end = Date.now() + 60000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`daemon exited (${proc.exitCode}): ${err.trim().slice(-800)}`);
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > end) {
      proc.kill('SIGKILL');
      throw new Error(`daemon did not serve ${url} within 60 s: ${err.trim().slice(-800)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    proc,
    url,
    pid: proc.pid!,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGINT');
      const t = setTimeout(() => proc.kill('SIGKILL'), 60000);
      await done;
      clearTimeout(t);
    },
  };
}

function daemonConfig(tag: string, third: number, containers: number): string {
  const lines = [`uplinks: []`, `interfaces: []`, `networks:`, `  - name: ${tag}m`, `    subnet: 10.196.${third}.0/24`, `    bridge: ${tag}mb`, `containers:`];
  for (let i = 0; i < containers; i++) lines.push(`  - name: ${tag}-m${i}`, `    network: ${tag}m`, `    ip: 10.196.${third}.${10 + i}`);
  return lines.join('\n') + '\n';
}

export interface DaemonCost {
  rssIdleMiB: number;
  rssAfterMiB: number;
  veths: number;
  series: number;
  scrapeMs: number[];
  bodyBytes: number;
}

export async function daemonCost(o: { tag: string; third: number; veths: number; scrapes: number }): Promise<DaemonCost> {
  const pinRoot = `/sys/fs/bpf/berth-bench-${o.tag}-daemon`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-bench-${o.tag}-`));
  const file = path.join(dir, 'daemon.yaml');
  const text = daemonConfig(o.tag, o.third, 1);
  fs.writeFileSync(file, text);
  const cfg = parseConfig(text, file);
  const port = 19000 + (process.pid % 1000);
  let d: DaemonProc | undefined;
  try {
    Dataplane.reset(pinRoot);
    d = await startDaemon([process.execPath, CLI, '--bpffs', pinRoot, 'run', '-f', file, '--metrics', `127.0.0.1:${port}`, '--interval', '2000'], port);
    await new Promise((r) => setTimeout(r, 1500));
    const rssIdle = rssKiB(d.pid);
    // N synthetic veths: counters and metadata of a network outside the daemon's scope
    const dp = Dataplane.openPinned(pinRoot);
    try {
      const netId = 900;
      dp.maps.netMeta.update(networkKeyCodec.encode({ network_id: netId }), networkMetaCodec.encode({ name: `${o.tag}syn`, bridge: `${o.tag}sb`, subnet: `10.192.${o.third}.0`, prefix_len: 24, gateway: `10.192.${o.third}.1`, flags: EndpointFlags.ICC }));
      const zero = zeroPerCpuCounters(dp.cpus);
      for (let i = 0; i < o.veths; i++) {
        const ifindex = 1_000_000 + i;
        const k = ifindexKeyCodec.encode({ ifindex });
        dp.maps.epByIfindex.update(k, endpointCodec.encode({ addr: `10.${192 + Math.floor(i / 250)}.${o.third}.${1 + (i % 250)}`, ifindex, network_id: netId, flags: EndpointFlags.ICC, mac: '02:00:00:00:00:01' }));
        dp.maps.epMeta.update(k, endpointMetaCodec.encode({ container: `${o.tag}-v${i}`, ifname: `${o.tag}v${i}`.slice(0, 15), network_id: netId }));
        for (const direction of [0, 1]) dp.maps.counters.update(counterKeyCodec.encode({ ifindex, direction }), zero);
      }
    } finally {
      dp.close();
    }
    const scrapeMs: number[] = [];
    let body = '';
    for (let i = 0; i < o.scrapes; i++) {
      const t0 = process.hrtime.bigint();
      const r = await fetch(d.url);
      body = await r.text();
      scrapeMs.push(ms(t0));
    }
    const series = body.split('\n').filter((l) => l && !l.startsWith('#')).length;
    return { rssIdleMiB: rssIdle / 1024, rssAfterMiB: rssKiB(d.pid) / 1024, veths: o.veths, series, scrapeMs, bodyBytes: body.length };
  } finally {
    await d?.stop().catch(() => undefined);
    Dataplane.reset(pinRoot);
    await topology.down(cfg).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface Profile {
  ok: boolean;
  command: string;
  dest: string;
  html?: string;
  reloads: number;
  seconds: number;
  error?: string;
}

/**
 * `clinic doctor` around `berth run` while containers come and go (the config
 * file gains and loses containers; SIGHUP after each change).
 */
export async function profileDaemon(o: { tag: string; third: number; seconds: number; dest: string }): Promise<Profile> {
  const pinRoot = `/sys/fs/bpf/berth-bench-${o.tag}-prof`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-bench-${o.tag}-prof-`));
  const file = path.join(dir, 'churn.yaml');
  const maxC = 8;
  fs.writeFileSync(file, daemonConfig(o.tag, o.third, 1));
  const port = 18000 + (process.pid % 1000);
  const clinic = process.env.BERTH_BENCH_CLINIC ? [process.env.BERTH_BENCH_CLINIC] : ['npx', '--yes', 'clinic@13'];
  fs.mkdirSync(o.dest, { recursive: true });
  const argv = [...clinic, 'doctor', '--open=false', '--dest', o.dest, '--', process.execPath, CLI, '--bpffs', pinRoot, 'run', '-f', file, '--metrics', `127.0.0.1:${port}`, '--interval', '500'];
  const command = 'NO_INSIGHT=1 ' + argv.join(' ').replace(process.execPath, 'node').replace(CLI, 'dist/src/cli/main.js');
  let d: DaemonProc | undefined;
  let reloads = 0;
  const t0 = Date.now();
  try {
    Dataplane.reset(pinRoot);
    // NO_INSIGHT: clinic otherwise asks on stdin for permission to send usage statistics, and exits without a terminal
    d = await startDaemon(argv, port, { ...process.env, NO_INSIGHT: '1' });
    const end = Date.now() + o.seconds * 1000;
    let n = 1;
    while (Date.now() < end) {
      n = n >= maxC ? 1 : n + 1;
      fs.writeFileSync(file, daemonConfig(o.tag, o.third, n));
      // clinic runs node as a child: signal the process that serves the port
      const { stdout } = await run('ss', ['-Hltnp', `sport = :${port}`]);
      const pid = /pid=(\d+)/.exec(stdout)?.[1];
      if (pid) process.kill(Number(pid), 'SIGHUP');
      reloads++;
      for (let i = 0; i < 5; i++) await fetch(d.url).then((r) => r.text(), () => '');
      await new Promise((r) => setTimeout(r, 300));
    }
    const { stdout } = await run('ss', ['-Hltnp', `sport = :${port}`]);
    const pid = /pid=(\d+)/.exec(stdout)?.[1];
    if (pid) process.kill(Number(pid), 'SIGINT');
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        d!.proc.kill('SIGKILL');
        resolve();
      }, 180000);
      d!.proc.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
    const html = fs.readdirSync(o.dest).find((f) => f.endsWith('.html'));
    return { ok: !!html, command, dest: o.dest, html: html ? path.join(o.dest, html) : undefined, reloads, seconds: (Date.now() - t0) / 1000, error: html ? undefined : 'clinic wrote no HTML report' };
  } catch (e) {
    return { ok: false, command, dest: o.dest, reloads, seconds: (Date.now() - t0) / 1000, error: (e as Error).message };
  } finally {
    await d?.stop().catch(() => undefined);
    Dataplane.reset(pinRoot);
    await topology.down(parseConfig(daemonConfig(o.tag, o.third, maxC), file)).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
