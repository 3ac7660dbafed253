/**
 * The control-plane suite in standalone mode, per size N (each from scratch):
 * a generated file of N containers (busybox httpd each, one published port
 * each, 250 to a network) with the outside namespace's veth as the uplink;
 * `berth up` timed, then every port answering from outside; `berth run -f` on
 * it (start to serving /metrics), the daemon at rest (CPU, RSS, event-loop
 * delay over the window, which holds its periodic reconciles), /metrics scrape
 * time, one more container at a time (appended to the file, SIGHUP, until its
 * port answers from outside), the processes the daemon spawns (restarted with
 * the spawn-logging PATH: at rest and for one more container), then `berth
 * down` timed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { must } from '../../test/lib/dockerd';
import { monoNs } from './cpprobe';
import { Daemon, percentile } from './cpproc';
import { Ctx, DaemonRow, DockerResults, perMinute, restFigures } from './cpdocker';
import { summarize } from './stats';

const OTHER_PORT = 32000;
const MORE_PORT = 33900;
const PER_NET = 250;
/** a reload re-runs topology.up for every container: about a minute at 100 on a loaded 2-CPU machine */
const RELOAD_TIMEOUT_MS = 600000;

export interface StandaloneExtra {
  size: number;
  upSeconds: number;
  runStartSeconds: number;
  downSeconds: number;
}

function configText(ctx: Ctx, www: string, size: number, more: number): string {
  const nets = Math.max(1, Math.ceil((size + more) / PER_NET));
  const lines = [`uplinks: [${ctx.outside.hostIf}]`, 'interfaces: []', 'networks:'];
  for (let k = 0; k < nets; k++) lines.push(`  - name: bcp${ctx.tag}s${k}`, `    subnet: 10.74.${k}.0/24`, `    bridge: ${ctx.tag}s${k}`);
  lines.push('containers:');
  const httpd = `[/bin/busybox, httpd, -f, -p, "80", -h, ${www}]`;
  for (let j = 0; j < size; j++) lines.push(`  - name: ${ctx.tag}s${j}`, `    network: bcp${ctx.tag}s${Math.floor(j / PER_NET)}`, `    run: ${httpd}`, `    publish: ["${OTHER_PORT + j}:80"]`);
  for (let m = 0; m < more; m++) {
    const j = size + m;
    lines.push(`  - name: ${ctx.tag}x${m}`, `    network: bcp${ctx.tag}s${Math.floor(j / PER_NET)}`, `    run: ${httpd}`, `    publish: ["${MORE_PORT + m}:80"]`);
  }
  return lines.join('\n') + '\n';
}

export async function standalone(sizes: number[], ctx: Ctx, www: string, out: DockerResults, extra: StandaloneExtra[]): Promise<void> {
  const H = ctx.outside.hostAddr;
  for (const size of sizes) {
    const file = path.join(ctx.dir, `standalone-${size}.yaml`);
    let more = 0;
    const write = () => fs.writeFileSync(file, configText(ctx, www, size, more));
    write();
    let d: Daemon | undefined;
    const cleanup = async () => {
      d?.kill9();
      d = undefined;
      await must(ctx.bin, ['--bpffs', ctx.pinRoot, 'down', '-f', file], 1800000).catch((e) => ctx.log(`standalone down: ${(e as Error).message.slice(0, 300)}`));
    };
    ctx.cleanups.push(cleanup);
    try {
      const t0 = monoNs();
      await must(ctx.bin, ['--bpffs', ctx.pinRoot, 'up', '-f', file], 1800000);
      const t1 = monoNs();
      const ports = Array.from({ length: size }, (_, i) => OTHER_PORT + i);
      const all = await ctx.prober.all(H, ports, 600000);
      out.program.push({
        mode: 'standalone',
        world: 'berth',
        size,
        added: size,
        startSeconds: (t1 - t0) / 1e9,
        allAnsweringSeconds: all.ok && all.t ? Math.max(0, (all.t - t1) / 1e9) : NaN,
        answered: all.ok ? size : all.answered ?? 0,
        ...(all.ok ? {} : { note: `only ${all.answered ?? 0} of ${size} ports answered within 600 s` }),
      });
      ctx.log(`standalone N=${size}: berth up ${((t1 - t0) / 1e9).toFixed(1)} s, all answering ${all.ok ? `${((all.t! - t1) / 1e9).toFixed(2)} s later` : 'NOT'}`);
      const args = ['--bpffs', ctx.pinRoot, 'run', '-f', file, '--metrics', '127.0.0.1:0'];
      d = new Daemon(ctx.bin, args, path.join(ctx.dir, `berth-standalone-${size}.log`));
      await d.start();
      const runStart = d.startSeconds;
      const rest = await restFigures(d, ctx.restSeconds, 10);
      // one more container at a time: appended, SIGHUP, until its port answers from outside
      const lat: number[] = [];
      const outcomes: Record<string, number> = {};
      let failed = 0;
      const rounds = Math.min(ctx.runs, 3);
      for (let r = 0; r < rounds; r++) {
        more++;
        write();
        const a = monoNs();
        d.signal('SIGHUP');
        const p = await ctx.prober.first(H, MORE_PORT + more - 1, RELOAD_TIMEOUT_MS);
        for (const [k, v] of Object.entries(p.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v;
        if (p.ok && p.t) lat.push((p.t - a) / 1e6);
        else {
          lat.push(NaN);
          failed++;
        }
      }
      out.latency.push({ mode: 'standalone', world: 'berth', size, latencyMs: summarize(lat), p90Ms: percentile(lat, 90), failed, outcomes });
      const row: DaemonRow = { mode: 'standalone', size, ...rest };
      out.daemon.push(row);
      ctx.log(`standalone N=${size}: one more container (SIGHUP -> answering) median ${summarize(lat).median.toFixed(1)} ms; at rest ${rest.cpuSelfPerMin.toFixed(2)}+${rest.cpuChildrenPerMin.toFixed(2)} CPU s/min, event loop p99 ${rest.eventLoopRest.p99Ms.toFixed(1)} ms`);

      // spawns: the daemon again with the logging PATH
      await d.stop();
      d = new Daemon(ctx.bin, args, path.join(ctx.dir, `berth-standalone-${size}.log`));
      await d.start(ctx.spawns.env());
      row.restartSeconds = d.startSeconds;
      await ctx.spawns.quiet(500, 30000);
      ctx.spawns.reset();
      const t2 = monoNs();
      await new Promise((r) => setTimeout(r, ctx.restSeconds * 1000)); // the rest window itself
      const restSecs = (monoNs() - t2) / 1e9;
      const restCounts = ctx.spawns.counts();
      const restContainers = size + more;
      ctx.spawns.reset();
      more++;
      write();
      const t3 = monoNs();
      d.signal('SIGHUP');
      const ok = await ctx.prober.first(H, MORE_PORT + more - 1, RELOAD_TIMEOUT_MS);
      await ctx.spawns.quiet(1000, 30000);
      const startSecs = (monoNs() - t3) / 1e9;
      if (!ok.ok) out.errors.push(`standalone N=${size}: the spawn-count container did not answer`);
      out.spawns.push({ mode: 'standalone', size, restSeconds: restSecs, restContainers, restPerMinute: perMinute(restCounts, restSecs), containers: 1, startSeconds: startSecs, start: ctx.spawns.counts() });
      ctx.log(`standalone N=${size}: spawns at rest ${JSON.stringify(restCounts)} in ${restSecs.toFixed(0)} s, for one more container ${JSON.stringify(ctx.spawns.counts())}`);
      await d.stop();
      d = undefined;
      const t4 = monoNs();
      await must(ctx.bin, ['--bpffs', ctx.pinRoot, 'down', '-f', file], 1800000);
      extra.push({ size, upSeconds: (t1 - t0) / 1e9, runStartSeconds: runStart, downSeconds: (monoNs() - t4) / 1e9 });
    } finally {
      if (d) await cleanup();
      ctx.cleanups.splice(ctx.cleanups.indexOf(cleanup), 1);
    }
  }
}
