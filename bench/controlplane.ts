/**
 * `npm run bench -- --suite controlplane`: the control-plane figures of issue
 * 13, reported, never asserted.
 *
 *   node dist/bench/run.js --suite controlplane [--sizes 0,100,1000] [--runs 20]
 *       [--modes docker,standalone] [--rest-seconds 30] [--churn 20]
 *       [--spawn-containers 5] [--concurrency 4] [--json FILE]
 *
 * Docker mode (bench/lib/cpdocker.ts): the time from `docker run -p`
 * returning to the port answering from outside, through berth and through
 * Docker's own iptables rules, in the same run, with N other containers
 * running; the time to program N; the daemon at rest, under churn, and the
 * processes it spawns. Standalone (bench/lib/cpstandalone.ts): `berth up`,
 * `berth run`, one more container, the daemon at rest, spawns, `berth down`.
 *
 * Names start with bcp, subnets 10.73.0.0/16 (Docker mode, the outside
 * namespace 10.73.250.0/24) and 10.74.0.0/16 (standalone), host ports
 * 32000-33999, pin root /sys/fs/bpf/berth-cp-<tag>. Everything is removed
 * at the end, on failure and on Ctrl-C (each dockerd's cleanup, berth down,
 * the pin root).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { table } from '../src/cli/format';
import { Dataplane } from '../src/platform/dataplane';
import { BIN, Dockerd, Outside, dockerSkipReason, exec } from '../test/lib/dockerd';
import { Prober } from './lib/cpprobe';
import { SpawnLog } from './lib/cpproc';
import { Ctx, DockerResults, dockerWorld, writeWww } from './lib/cpdocker';
import { StandaloneExtra, standalone } from './lib/cpstandalone';

export interface CpOptions {
  sizes: number[];
  runs: number;
  modes: Array<'docker' | 'standalone'>;
  restSeconds: number;
  churn: number;
  spawnContainers: number;
  concurrency: number;
  json?: string;
}

export interface CpDoc extends DockerResults {
  suite: 'controlplane';
  command: string;
  date: string;
  machine: Record<string, unknown>;
  options: CpOptions;
  /** seconds each size took, per mode and world */
  sizeSeconds: Array<{ mode: string; world: string; size: number; seconds: number }>;
  standalone: StandaloneExtra[];
  notes: string[];
  seconds: number;
  /** set in the files written after each section while the run goes on */
  partial?: boolean;
}

/** The suite's options from the command line's; a bad value is a clear error before anything starts. */
export function cpOptions(o: Record<string, unknown>): CpOptions {
  const int = (name: string, v: unknown, def: number, min: number): number => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name}: expected an integer >= ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  const sizes = o.sizes === undefined ? [0, 100, 1000] : String(o.sizes).split(',').map((x) => int('sizes', x.trim(), 0, 0));
  if (sizes.some((n) => n > 1000)) throw new Error('--sizes: at most 1000 (host ports 32000-32999 hold the others)');
  const modes = o.modes === undefined ? ['docker', 'standalone'] : String(o.modes).split(',').map((x) => x.trim());
  for (const m of modes) if (m !== 'docker' && m !== 'standalone') throw new Error(`--modes: unknown mode ${JSON.stringify(m)} (docker, standalone)`);
  if (new Set(sizes).size > 5) throw new Error('--sizes: at most 5 sizes (each has its own 100 host ports for the rounds)');
  const runs = int('runs', o.runs, 20, 1);
  if (runs > 100) throw new Error('--runs: at most 100 in this suite (host ports 33000+100*size index)');
  return {
    sizes,
    runs,
    modes: modes as CpOptions['modes'],
    restSeconds: int('rest-seconds', o.restSeconds, 30, 1),
    churn: Math.min(250, int('churn', o.churn, 20, 0)),
    spawnContainers: Math.min(10, int('spawn-containers', o.spawnContainers, 5, 1)),
    concurrency: int('concurrency', o.concurrency, 4, 1),
    ...(o.json ? { json: String(o.json) } : {}),
  };
}

const log = (s: string) => process.stderr.write(`bench cp: ${s}\n`);

async function machine(): Promise<Record<string, unknown>> {
  const v = async (cmd: string, args: string[]) => (await exec(cmd, args, 10000)).stdout.trim().split('\n')[0] || 'unknown';
  return {
    cpus: os.cpus().length,
    model: os.cpus()[0]?.model,
    kernel: os.release(),
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    dockerd: await v('dockerd', ['--version']),
    containerd: await v('containerd', ['--version']),
    iptables: await v('iptables', ['--version']),
    loadavgAtStart: os.loadavg().map((x) => x.toFixed(2)).join(' '),
  };
}

/**
 * One run at a time on a machine: two would share the subnets, host ports and the outside
 * address. A lock whose owner is gone is taken over.
 */
const LOCK = path.join(os.tmpdir(), 'berth-cp.lock');
function takeLock(): void {
  for (let i = 0; i < 2; i++) {
    try {
      fs.writeFileSync(LOCK, String(process.pid), { flag: 'wx' });
      return;
    } catch {
      const owner = Number(fs.readFileSync(LOCK, 'utf8') || '0');
      if (owner && owner !== process.pid && fs.existsSync(`/proc/${owner}`)) throw new Error(`another control-plane bench (process ${owner}) is running; it uses the same subnets and ports (${LOCK})`);
      fs.rmSync(LOCK, { force: true });
    }
  }
  throw new Error(`cannot take ${LOCK}`);
}

export async function runControlplane(o: CpOptions): Promise<CpDoc> {
  takeLock();
  try {
    return await runLocked(o);
  } finally {
    if (fs.readFileSync(LOCK, 'utf8') === String(process.pid)) fs.rmSync(LOCK, { force: true });
  }
}

async function runLocked(o: CpOptions): Promise<CpDoc> {
  const started = Date.now();
  const tag = `bcp${process.pid % 1000}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-cp-${tag}-`));
  const pinRoot = `/sys/fs/bpf/berth-cp-${tag}`;
  const doc: CpDoc = {
    suite: 'controlplane',
    command: ['node', ...process.argv.slice(1).map((a) => path.relative(process.cwd(), a) || a)].join(' '),
    date: new Date().toISOString(),
    machine: await machine(),
    options: o,
    latency: [],
    program: [],
    daemon: [],
    spawns: [],
    errors: [],
    sizeSeconds: [],
    standalone: [],
    notes: [],
    seconds: 0,
  };
  const cleanups: Ctx['cleanups'] = [];
  let prober: Prober | undefined;
  const outside = new Outside(tag, '10.73.250', dir, 7000);
  let cleaning: Promise<void> | undefined;
  const cleanAll = () =>
    (cleaning ??= (async () => {
      for (const c of [...cleanups].reverse()) await c().catch((e: Error) => log(`cleanup: ${e.message}`));
      prober?.close();
      await outside.down().catch(() => undefined);
      try {
        Dataplane.reset(pinRoot);
      } catch {
        /* nothing pinned */
      }
      fs.rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = (sig: string) => {
    log(`${sig}: cleaning up`);
    void cleanAll().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const sizes = [...new Set(o.sizes)].sort((a, b) => a - b);
  try {
    await Dockerd.sweepStale();
    await outside.up([]);
    prober = Prober.start(outside.ns, dir);
    const ctx: Ctx = {
      tag,
      dir,
      outside,
      prober,
      runs: o.runs,
      restSeconds: o.restSeconds,
      churn: o.churn,
      spawnContainers: o.spawnContainers,
      concurrency: o.concurrency,
      pinRoot,
      bin: BIN,
      spawns: await SpawnLog.make(path.join(dir, 'spawns')),
      log,
      checkpoint: () => {
        if (o.json) writeControlplane({ ...doc, seconds: (Date.now() - started) / 1000, partial: true }, o.json);
      },
      cleanups,
    };
    const section = async (name: string, f: () => Promise<void>) => {
      const t0 = Date.now();
      try {
        await f();
      } catch (e) {
        const msg = `${name}: failed: ${(e as Error).message.slice(0, 600)}`;
        doc.errors.push(msg);
        log(msg);
      }
      log(`${name}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      // what is measured so far is on disk, should a later size fail or be cut short
      ctx.checkpoint();
    };
    if (o.modes.includes('docker')) {
      const skip = dockerSkipReason();
      if (skip) doc.errors.push(`docker: skipped: ${skip}`);
      else
        for (const world of ['iptables', 'berth'] as const) {
          // one size at a time would restart the world; the sizes grow in one world instead
          await section(`docker/${world}`, async () => {
            const t0 = Date.now();
            const marks: number[] = [];
            const logSize = ctx.log;
            ctx.log = (s: string) => {
              logSize(s);
              if (/N=\d+: docker run -> answering/.test(s) && world === 'iptables') marks.push(Date.now());
              if (/N=\d+: spawns for/.test(s)) marks.push(Date.now());
            };
            try {
              await dockerWorld(world, sizes, ctx, doc);
            } finally {
              ctx.log = logSize;
              let prev = t0;
              for (const [i, m] of marks.entries()) {
                doc.sizeSeconds.push({ mode: 'docker', world, size: sizes[i]!, seconds: (m - prev) / 1000 });
                prev = m;
              }
            }
          });
          try {
            Dataplane.reset(pinRoot);
          } catch {
            /* nothing pinned */
          }
        }
    }
    if (o.modes.includes('standalone')) {
      const www = writeWww(dir);
      for (const size of sizes)
        await section(`standalone N=${size}`, async () => {
          const t0 = Date.now();
          await standalone([size], ctx, www, doc, doc.standalone);
          doc.sizeSeconds.push({ mode: 'standalone', world: 'berth', size, seconds: (Date.now() - t0) / 1000 });
          Dataplane.reset(pinRoot);
        });
    }
    doc.notes.push(
      'latency: the prober (one Python process in the outside namespace) starts a fresh HTTP attempt to the host address:port every 10 ms, each given 500 ms, from the moment `docker run -d` returned (standalone: the SIGHUP after the file gained the container); the figure is when the first answer arrived. It includes the container\'s own start (busybox httpd) in both worlds. Before berth has the port, an attempt lands on dockerd\'s port reservation (handshake by the kernel, no answer) and times out: the "timeout" outcomes.',
      'the event-loop delay is prom-client\'s berth_nodejs_eventloop_lag_p99_seconds / _max_seconds (perf_hooks.monitorEventLoopDelay, 10 ms resolution), whose histogram is reset at every collect: a scrape opens each window and one closes it.',
      'CPU per minute: utime+stime of the daemon (/proc/PID/stat) over the rest window, and cutime+cstime, the CPU of the children it waited for (ip, nsenter, ...). RSS: VmRSS after the window.',
      'spawns: the daemon restarted with a PATH whose ip, nsenter, sysctl, tc, bpftool, iptables, ip6tables and mount are C wrappers that log the call and exec the real program (only in that phase, so the timings above carry no wrapper); "start" counts from the first `docker run` of K containers until every new port answered and no call was logged for 1 s; an `ip` that nsenter runs is counted as ip too.',
      'standalone: the file\'s N containers run busybox httpd, one published port each, 250 to a network (10.74.0.0/24, ...), the outside veth the uplink; "one more container" is at most 3 rounds (the file gains a container, SIGHUP, until its port answers; each reload re-runs the topology for every container), and the spawn window at rest holds those added containers too (the count in brackets).',
      'Docker mode containers: busybox httpd on a published port each, 250 to a network (10.73.10.0/24, ...), the measured ones on their own network; dockerd 20.10 with --userland-proxy=false, vfs storage, its own containerd; berth run --docker with --uplinks <the outside veth> --interfaces \'\' and the default reconcile interval.',
    );
  } finally {
    await cleanAll();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
  doc.machine.loadavgAtEnd = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  doc.seconds = (Date.now() - started) / 1000;
  return doc;
}

const f1 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '-' : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const f2 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(2));
const counts = (c: Record<string, number> | undefined) => (c && Object.keys(c).length ? Object.entries(c).sort().map(([k, v]) => `${v} ${k}`).join(', ') : 'none');

export function renderControlplane(doc: CpDoc): string {
  const out: string[] = [];
  if (doc.latency.length) {
    out.push('Time from `docker run -d -p` returning (standalone: SIGHUP) to the published port answering from outside, ms');
    out.push(
      table(
        ['MODE', 'PATH', 'OTHERS', 'MEDIAN', 'P90', 'MIN-MAX', 'RUNS', 'FAILED', 'DOCKER RUN ms'],
        doc.latency.map((r) => [
          r.mode,
          r.world === 'iptables' ? "Docker's iptables" : 'berth',
          String(r.size),
          f1(r.latencyMs.median),
          f1(r.p90Ms),
          `${f1(r.latencyMs.min)}-${f1(r.latencyMs.max)}`,
          String(r.latencyMs.runs.length),
          String(r.failed),
          r.runMs ? `${f1(r.runMs.median)} (${f1(r.runMs.min)}-${f1(r.runMs.max)})` : '',
        ]),
      ),
    );
  }
  if (doc.program.length) {
    out.push('', 'Time to program N containers (Docker: the step\'s `docker run`s, then every port answering; standalone: `berth up`, then every port answering)');
    out.push(table(['MODE', 'PATH', 'N', 'ADDED', 'STARTS s', 'ALL ANSWERING s AFTER', 'ANSWERED', 'NOTE'], doc.program.map((p) => [p.mode, p.world === 'iptables' ? "Docker's iptables" : 'berth', String(p.size), String(p.added), f2(p.startSeconds), f2(p.allAnsweringSeconds), String(p.answered), p.note ?? ''])));
  }
  if (doc.daemon.length) {
    out.push('', 'The berth daemon with N containers (at rest: over the rest window; churn: containers started and removed)');
    out.push(
      table(
        ['MODE', 'N', 'CPU s/min SELF+CHILDREN', 'RSS MiB', 'EL p99/max ms (rest)', 'SCRAPE ms median (max)', 'SCRAPE KiB', 'CHURN', 'EL p99/max ms (churn)', 'RESTART s'],
        doc.daemon.map((d) => [
          d.mode,
          String(d.size),
          `${f2(d.cpuSelfPerMin)}+${f2(d.cpuChildrenPerMin)}`,
          f1(d.rssMiB),
          `${f1(d.eventLoopRest.p99Ms)}/${f1(d.eventLoopRest.maxMs)}`,
          `${f1(d.scrapeMs.median)} (${f1(d.scrapeMs.max)})`,
          f1(d.scrapeBytes / 1024),
          d.churn ? `${d.churn.containers} in ${f1(d.churn.seconds)} s` : '',
          d.churn ? `${f1(d.churn.p99Ms)}/${f1(d.churn.maxMs)}` : '',
          f2(d.restartSeconds),
        ]),
      ),
    );
  }
  if (doc.spawns.length) {
    out.push('', 'Processes the daemon spawned');
    out.push(
      table(
        ['MODE', 'N', 'AT REST per minute (containers)', 'STARTING K', 'WHILE STARTING', 'WHILE REMOVING'],
        doc.spawns.map((s) => [s.mode, String(s.size), `${counts(s.restPerMinute)}${s.restContainers !== undefined ? ` (${s.restContainers})` : ''}`, `${s.containers} (${f1(s.startSeconds)} s)`, counts(s.start), s.remove ? `${counts(s.remove)} (${f1(s.removeSeconds)} s)` : '']),
      ),
    );
  }
  if (doc.standalone.length) {
    out.push('', 'Standalone: berth up, berth run (start to serving /metrics), berth down, seconds');
    out.push(table(['N', 'UP', 'RUN START', 'DOWN'], doc.standalone.map((s) => [String(s.size), f2(s.upSeconds), f2(s.runStartSeconds), f2(s.downSeconds)])));
  }
  if (doc.sizeSeconds.length) {
    out.push('', 'Seconds each size took');
    out.push(table(['MODE', 'WORLD', 'N', 'SECONDS'], doc.sizeSeconds.map((s) => [s.mode, s.world, String(s.size), f1(s.seconds)])));
  }
  if (doc.errors.length) out.push('', 'Errors', ...doc.errors.map((e) => `  ${e}`));
  if (doc.notes.length) out.push('', 'Notes', ...doc.notes.map((n) => `  - ${n}`));
  out.push('', `bench cp: ${doc.seconds.toFixed(0)} s${doc.partial ? ' so far (partial: the run is still going or was cut short)' : ''}`);
  return out.join('\n');
}

export function reportControlplane(doc: CpDoc): string {
  const m = Object.entries(doc.machine).map(([k, v]) => `  ${k}: ${v}`);
  return [`command: ${doc.command}`, `date: ${doc.date}`, 'machine:', ...m, '', renderControlplane(doc), ''].join('\n');
}

/** FILE.json and FILE.txt (the report with the command and the machine). */
export function writeControlplane(doc: CpDoc, json: string): string {
  fs.mkdirSync(path.dirname(path.resolve(json)), { recursive: true });
  fs.writeFileSync(json, JSON.stringify(doc, null, 2));
  const txt = json.replace(/\.json$/, '') + '.txt';
  fs.writeFileSync(txt, reportControlplane(doc));
  return txt;
}
