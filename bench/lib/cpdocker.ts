/**
 * The control-plane suite in Docker mode: a private dockerd (test/lib/dockerd.ts)
 * per world, one world with Docker's own iptables rules (--iptables=true) and
 * one with --iptables=false and `berth run --docker`, one after the other in
 * the same run. In each world, for each size N (ascending; the N "other"
 * containers are kept and grown from one size to the next), every other
 * container serves HTTP on a published port (32000 + i), and:
 *
 * - programAll: from the last `docker run` of the step to every other port
 *   answering from outside;
 * - latency rounds: `docker run -d -p` of one more container, then the time
 *   from its return to the port's first answer from outside (the prober in the
 *   outside namespace, a fresh attempt every 10 ms), then `docker rm -f` and a
 *   wait until the port is refused;
 * - berth's world only: the daemon at rest (CPU seconds per minute of itself
 *   and of its children, RSS, event-loop delay), /metrics scrape time, the
 *   event-loop delay while containers churn, and the processes it spawns
 *   (a restart with the spawn-logging PATH: at rest, and while K containers
 *   start and are removed), then a restart without it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Dockerd, Outside, forwardOn, pool, sleep } from '../../test/lib/dockerd';
import { Prober, monoNs } from './cpprobe';
import { Daemon, SpawnLog, cpuSeconds, eventLoop, percentile, rssMiB, scrape } from './cpproc';
import { Summary, summarize } from './stats';

export type World = 'iptables' | 'berth';

export interface LatencyRow {
  mode: 'docker' | 'standalone';
  world: World;
  size: number;
  /** ms from `docker run` (or SIGHUP) returning to the first answer */
  latencyMs: Summary;
  p90Ms: number;
  /** ms `docker run -d` itself took (Docker's own rules are written inside it) */
  runMs?: Summary;
  failed: number;
  /** outcomes of the prober's attempts over the rounds (timeouts: connections that met no server) */
  outcomes: Record<string, number>;
}

export interface ProgramRow {
  mode: 'docker' | 'standalone';
  world: World;
  size: number;
  /** containers started in this step */
  added: number;
  /** seconds the step's container starts took (docker run calls; `berth up` in standalone) */
  startSeconds: number;
  /** seconds from the last start returning to every port answering */
  allAnsweringSeconds: number;
  answered: number;
  note?: string;
}

export interface DaemonRow {
  mode: 'docker' | 'standalone';
  size: number;
  restSeconds: number;
  cpuSelfPerMin: number;
  cpuChildrenPerMin: number;
  rssMiB: number;
  eventLoopRest: { p99Ms: number; maxMs: number };
  scrapeMs: Summary;
  scrapeBytes: number;
  churn?: { containers: number; seconds: number; p99Ms: number; maxMs: number; cpuSeconds: number };
  /** seconds from a restart to serving /metrics with N containers (the initial reconcile done) */
  restartSeconds?: number;
}

export interface SpawnRow {
  mode: 'docker' | 'standalone';
  size: number;
  restSeconds: number;
  /** containers running during the rest window (standalone: N and the ones added one at a time before) */
  restContainers?: number;
  /** calls per program over the rest window, scaled to a minute */
  restPerMinute: Record<string, number>;
  containers: number;
  startSeconds: number;
  /** calls per program from the first start to every new port answering and the log quiet for 1 s */
  start: Record<string, number>;
  removeSeconds?: number;
  remove?: Record<string, number>;
}

export interface Ctx {
  tag: string;
  dir: string;
  outside: Outside;
  prober: Prober;
  runs: number;
  restSeconds: number;
  churn: number;
  spawnContainers: number;
  concurrency: number;
  pinRoot: string;
  bin: string;
  spawns: SpawnLog;
  log(s: string): void;
  /** writes what is measured so far (after each size) */
  checkpoint(): void;
  cleanups: Array<() => Promise<void>>;
}

export interface DockerResults {
  latency: LatencyRow[];
  program: ProgramRow[];
  daemon: DaemonRow[];
  spawns: SpawnRow[];
  errors: string[];
}

const OTHER_PORT = 32000;
const MEASURED_PORT = 33000;
const CHURN_PORT = 33500;
const SPAWN_PORT = 33800;
const PER_NET = 250;
const ms = (a: number, b: number) => (b - a) / 1e6;

export const httpCmd = (name: string): string[] => ['sh', '-c', `echo ${name} > /www/index.html; exec httpd -f -p 80 -h /www`];

export async function restFigures(d: Daemon, seconds: number, scrapes: number): Promise<Omit<DaemonRow, 'mode' | 'size'>> {
  await scrape(d.url); // resets the event-loop histogram: the window starts here
  const c0 = cpuSeconds(d.pid);
  const t0 = monoNs();
  await sleep(seconds * 1000); // the measurement window itself
  const c1 = cpuSeconds(d.pid);
  const secs = ms(t0, monoNs()) / 1000;
  const s = await scrape(d.url);
  const el = eventLoop(s.text);
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i < scrapes; i++) {
    const x = await scrape(d.url);
    times.push(x.ms);
    bytes = x.bytes;
  }
  return {
    restSeconds: secs,
    cpuSelfPerMin: ((c1.self - c0.self) / secs) * 60,
    cpuChildrenPerMin: ((c1.children - c0.children) / secs) * 60,
    rssMiB: rssMiB(d.pid),
    eventLoopRest: el,
    scrapeMs: summarize(times),
    scrapeBytes: bytes,
  };
}

export async function dockerWorld(world: World, sizes: number[], ctx: Ctx, out: DockerResults): Promise<void> {
  const w = world === 'iptables' ? 'i' : 'b';
  const tag = `${ctx.tag}${w}`;
  const d = new Dockerd({ tag, iptables: world === 'iptables', bridge: `${tag}d0`, bridgeCidr: '10.73.0.1/24' });
  const H = ctx.outside.hostAddr;
  let berth: Daemon | undefined;
  const bridges: string[] = [];
  const nets: string[] = [];
  const reforward = (): void => {
    if (world !== 'iptables') return;
    for (const b of bridges) forwardOn(b);
    forwardOn(ctx.outside.hostIf);
  };
  const netFor = async (i: number): Promise<string> => {
    const k = Math.floor(i / PER_NET);
    while (nets.length <= k) {
      const n = nets.length;
      const name = `bcp-${tag}-o${n}`;
      const br = `${tag}o${n}`;
      await d.networkCreate(name, br, `10.73.${10 + n}.0/24`);
      bridges.push(br);
      nets.push(name);
      reforward();
    }
    return nets[k]!;
  };
  const berthArgs = ['--bpffs', ctx.pinRoot, 'run', '--docker', '--docker-socket', d.sock, '--uplinks', ctx.outside.hostIf, '--interfaces', '', '--metrics', '127.0.0.1:0'];
  const newBerth = () => new Daemon(ctx.bin, berthArgs, path.join(ctx.dir, `berth-${world}.log`));
  const cleanup = async () => {
    berth?.kill9();
    berth = undefined;
    await d.cleanup().catch(() => undefined);
  };
  ctx.cleanups.push(cleanup);
  try {
    d.own({ netns: ctx.outside.ns, link: ctx.outside.hostIf });
    await d.start();
    if (world === 'berth') {
      berth = newBerth();
      await berth.start();
    }
    bridges.push(`${tag}d0`);
    await d.buildImage();
    await d.networkCreate(`bcp-${tag}-m`, `${tag}m`, '10.73.9.0/24');
    bridges.push(`${tag}m`);
    reforward();
    let have = 0;
    for (const [si, size] of sizes.entries()) {
      // grow the others to `size`
      const added = size - have;
      const t0 = monoNs();
      const fns = Array.from({ length: Math.max(0, added) }, (_, j) => async () => {
        const i = have + j;
        await d.dockerOk(['run', '-d', '--name', `bcpo${i}`, '--network', await netFor(i), '-p', `${OTHER_PORT + i}:80`, d.image, ...httpCmd(`o${i}`)], 120000);
      });
      // networks first (netFor is not safe to race)
      if (added > 0) await netFor(size - 1);
      await pool(fns, ctx.concurrency);
      const tLast = monoNs();
      have = Math.max(have, size);
      reforward();
      const ports = Array.from({ length: size }, (_, i) => OTHER_PORT + i);
      const all = await ctx.prober.all(H, ports, 600000);
      out.program.push({
        mode: 'docker',
        world,
        size,
        added,
        startSeconds: ms(t0, tLast) / 1000,
        allAnsweringSeconds: all.ok && all.t ? Math.max(0, ms(tLast, all.t) / 1000) : NaN,
        answered: all.ok ? size : all.answered ?? 0,
        ...(all.ok ? {} : { note: `only ${all.answered ?? 0} of ${size} ports answered within 600 s` }),
      });
      ctx.log(`docker/${world} N=${size}: ${added} started in ${(ms(t0, tLast) / 1000).toFixed(1)} s, all answering ${all.ok ? `${(ms(tLast, all.t!) / 1000).toFixed(2)} s later` : 'NOT'}`);

      let rest: Omit<DaemonRow, 'mode' | 'size'> | undefined;
      if (berth) rest = await restFigures(berth, ctx.restSeconds, 10);

      // latency rounds
      const lat: number[] = [];
      const runMs: number[] = [];
      const outcomes: Record<string, number> = {};
      let failed = 0;
      for (let r = 0; r < ctx.runs; r++) {
        const port = MEASURED_PORT + si * 100 + r;
        const name = `bcpm${si}r${r}`;
        reforward();
        const a = monoNs();
        await d.dockerOk(['run', '-d', '--name', name, '--network', `bcp-${tag}-m`, '-p', `${port}:80`, d.image, ...httpCmd(name)], 120000);
        const b = monoNs();
        const p = await ctx.prober.first(H, port, 30000);
        for (const [k, v] of Object.entries(p.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v;
        runMs.push(ms(a, b));
        if (p.ok && p.t) lat.push(ms(b, p.t));
        else {
          lat.push(NaN);
          failed++;
        }
        await d.dockerOk(['rm', '-f', name], 120000);
        await ctx.prober.gone(H, port, 15000);
      }
      const s = summarize(lat);
      out.latency.push({ mode: 'docker', world, size, latencyMs: s, p90Ms: percentile(lat, 90), runMs: summarize(runMs), failed, outcomes });
      ctx.log(`docker/${world} N=${size}: docker run -> answering median ${s.median.toFixed(1)} ms (${s.min.toFixed(1)}-${s.max.toFixed(1)}), ${failed} failed`);

      if (berth && rest) {
        // churn: containers started and removed while the event-loop histogram runs
        await scrape(berth.url);
        const c0 = cpuSeconds(berth.pid);
        const t1 = monoNs();
        await pool(
          Array.from({ length: ctx.churn }, (_, j) => async () => {
            const name = `bcpc${si}x${j}`;
            await d.dockerOk(['run', '-d', '--name', name, '--network', `bcp-${tag}-m`, '-p', `${CHURN_PORT + (j % 250)}:80`, d.image, ...httpCmd(name)], 120000);
            await d.dockerOk(['rm', '-f', name], 120000);
          }),
          Math.min(ctx.concurrency, 4),
        );
        const secs = ms(t1, monoNs()) / 1000;
        const c1 = cpuSeconds(berth.pid);
        const el = eventLoop((await scrape(berth.url)).text);
        out.daemon.push({ mode: 'docker', size, ...rest, churn: { containers: ctx.churn, seconds: secs, p99Ms: el.p99Ms, maxMs: el.maxMs, cpuSeconds: c1.self + c1.children - c0.self - c0.children } });
        ctx.log(`docker/berth N=${size}: churn of ${ctx.churn} in ${secs.toFixed(1)} s, event-loop p99 ${el.p99Ms.toFixed(1)} ms, max ${el.maxMs.toFixed(1)} ms`);

        // spawns: restart with the logging PATH
        await berth.stop();
        berth = newBerth();
        await berth.start(ctx.spawns.env());
        const restart = berth.startSeconds;
        await ctx.spawns.quiet(1000, 60000);
        ctx.spawns.reset();
        const t2 = monoNs();
        await sleep(ctx.restSeconds * 1000); // the rest window itself
        const restSecs = ms(t2, monoNs()) / 1000;
        const restCounts = ctx.spawns.counts();
        ctx.spawns.reset();
        const k = ctx.spawnContainers;
        const names = Array.from({ length: k }, (_, j) => `bcps${si}x${j}`);
        const t3 = monoNs();
        for (const [j, name] of names.entries()) await d.dockerOk(['run', '-d', '--name', name, '--network', `bcp-${tag}-m`, '-p', `${SPAWN_PORT + si * 10 + j}:80`, d.image, ...httpCmd(name)], 120000);
        const okAll = await ctx.prober.all(H, names.map((_, j) => SPAWN_PORT + si * 10 + j), 120000);
        await ctx.spawns.quiet(1000, 30000);
        const startSecs = ms(t3, monoNs()) / 1000;
        const startCounts = ctx.spawns.counts();
        ctx.spawns.reset();
        const t4 = monoNs();
        await d.dockerOk(['rm', '-f', ...names], 120000);
        for (const [j] of names.entries()) await ctx.prober.gone(H, SPAWN_PORT + si * 10 + j, 15000);
        await ctx.spawns.quiet(1000, 30000);
        const rmSecs = ms(t4, monoNs()) / 1000;
        const rmCounts = ctx.spawns.counts();
        if (!okAll.ok) out.errors.push(`docker/berth N=${size}: only ${okAll.answered} of ${k} spawn-count containers answered`);
        out.spawns.push({ mode: 'docker', size, restSeconds: restSecs, restContainers: size, restPerMinute: perMinute(restCounts, restSecs), containers: k, startSeconds: startSecs, start: startCounts, removeSeconds: rmSecs, remove: rmCounts });
        out.daemon[out.daemon.length - 1]!.restartSeconds = restart;
        ctx.log(`docker/berth N=${size}: spawns for ${k} starts ${JSON.stringify(startCounts)}, removals ${JSON.stringify(rmCounts)}, at rest ${JSON.stringify(restCounts)} in ${restSecs.toFixed(0)} s`);
        // and back to the plain PATH for the next size
        await berth.stop();
        berth = newBerth();
        await berth.start();
      }
      ctx.checkpoint();
    }
  } finally {
    await cleanup();
    ctx.cleanups.splice(ctx.cleanups.indexOf(cleanup), 1);
  }
}

export function perMinute(c: Record<string, number>, secs: number): Record<string, number> {
  return Object.fromEntries(Object.entries(c).map(([k, v]) => [k, Math.round((v / secs) * 60 * 10) / 10]));
}

export function writeWww(dir: string): string {
  const www = path.join(dir, 'www');
  fs.mkdirSync(www, { recursive: true });
  fs.writeFileSync(path.join(www, 'index.html'), 'bcp\n');
  return www;
}
