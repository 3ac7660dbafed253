/**
 * `berth demo` / `npm run demo`: bring up the embedded default topology, run
 * the daemon in-process, send traffic between every pair of containers (ping,
 * and HTTP to containers that run an httpd), and show what berth did with it.
 * Stops by itself after --duration seconds, or on Ctrl-C; always tears down.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { loadConfig } from '../domain/config';
import { startDaemon } from '../engine/daemon';
import { Dataplane } from '../platform/dataplane';
import { formatStats, table } from './format';
import { setQuiet } from '../platform/log';
import * as standalone from '../sources/standalone';
import { readCounters } from '../observe/stats';

const pexec = promisify(execFile);

export interface DemoOptions {
  configPath: string;
  pinRoot: string;
  metrics: string;
  durationSec?: number;
}

/** Run a probe inside a namespace ('' = on the host); true when it succeeds. */
async function probe(ns: string, args: string[]): Promise<boolean> {
  try {
    if (ns) await pexec('nsenter', [`--net=/run/netns/${ns}`, '--', ...args], { timeout: 5000 });
    else await pexec(args[0], args.slice(1), { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const cfg = loadConfig(opts.configPath);
  setQuiet(true);
  const deadline = opts.durationSec ? Date.now() + opts.durationSec * 1000 : Infinity;
  let stopping = false;
  const onSignal = (): void => {
    stopping = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  console.log(`berth demo: bringing up ${opts.configPath}`);
  const daemon = await startDaemon({ configPath: opts.configPath, pinRoot: opts.pinRoot, metrics: opts.metrics, intervalMs: 2000 });
  try {
    console.log(`berth demo: metrics at ${daemon.metricsUrl}  (curl -s ${daemon.metricsUrl} | grep ^berth_veth)`);
    console.log(`berth demo: live dashboard at ${daemon.dashboardUrl}  (JSON: ${daemon.dashboardUrl}api/snapshot)`);
    console.log(`berth demo: ${opts.durationSec ? `running for ${opts.durationSec} s` : 'running until Ctrl-C'}\n`);
    const ipOf = new Map(cfg.containers.map((c) => [c.name, c.ip]));
    const netOf = new Map(cfg.containers.map((c) => [c.name, c.network]));
    const iccOf = new Map(cfg.networks.map((n) => [n.name, n.icc]));
    const http = cfg.containers.filter((c) => c.run?.some((a) => a.includes('httpd')));
    let round = 0;
    while (!stopping && Date.now() < deadline) {
      round++;
      const results: string[][] = [];
      for (const a of cfg.containers) {
        for (const b of cfg.containers) {
          if (a.name === b.name) continue;
          const ok = await probe(a.name, ['ping', '-c', '1', '-W', '1', ipOf.get(b.name)!]);
          const expected = netOf.get(a.name) !== netOf.get(b.name) ? 'isolated (other network)' : iccOf.get(netOf.get(a.name)!) ? 'reachable' : 'blocked (icc off)';
          results.push([`${a.name} -> ${b.name}`, 'ping', ok ? 'ok' : 'no answer', expected]);
        }
      }
      for (const s of http)
        for (const c of cfg.containers.filter((x) => x.network === s.network && x.name !== s.name)) {
          const ok = await probe(c.name, ['busybox', 'wget', '-q', '-O', '/dev/null', `http://${s.ip}/`]);
          results.push([`${c.name} -> ${s.name}`, 'http', ok ? 'ok' : 'failed', 'reachable']);
        }
      // NAT: published ports from outside and from the host, masquerade out
      for (const c of cfg.containers)
        for (const b of c.publish) {
          for (const x of cfg.externals) {
            const target = b.hostIp === '0.0.0.0' ? x.hostAddress : b.hostIp;
            const ok = b.proto === 'tcp' && (await probe(x.name, ['busybox', 'wget', '-q', '-O', '/dev/null', `http://${target}:${b.hostPort}/`]));
            const expect = b.hostIp.startsWith('127.') ? 'unreachable (host only)' : 'published';
            if (b.proto === 'tcp') results.push([`${x.name} -> ${target}:${b.hostPort}`, 'http', ok ? 'ok' : 'no answer', expect]);
          }
          if (b.proto === 'tcp' && (b.hostIp === '0.0.0.0' || b.hostIp.startsWith('127.'))) {
            const ok = await probe('', ['busybox', 'wget', '-q', '-O', '/dev/null', `http://127.0.0.1:${b.hostPort}/`]);
            results.push([`host -> 127.0.0.1:${b.hostPort}`, 'http', ok ? 'ok' : 'no answer', 'published (socket hook)']);
          }
        }
      for (const x of cfg.externals.filter((e) => e.run?.some((a) => a.includes('httpd'))))
        for (const c of cfg.containers) {
          const net = cfg.networks.find((n) => n.name === c.network)!;
          const ok = await probe(c.name, ['busybox', 'wget', '-q', '-O', '/dev/null', `http://${x.address}/`]);
          results.push([`${c.name} -> ${x.name}`, 'http', ok ? 'ok' : 'no answer', net.internal ? 'unreachable (internal)' : net.gatewayMode === 'routed' ? 'routed (no NAT, own address)' : net.masquerade ? 'masqueraded' : 'untranslated (masquerade off)']);
        }
      if (round === 1 || Date.now() + 3000 >= deadline || stopping) {
        console.log(table(['FLOW', 'PROBE', 'RESULT', 'EXPECTED'], results));
        console.log('');
      }
      const dp = Dataplane.openPinned(opts.pinRoot);
      try {
        console.log(`--- counters after round ${round} ---`);
        console.log(formatStats(await readCounters(dp)));
        console.log('');
      } finally {
        dp.close();
      }
      const wait = Math.min(2000, Math.max(0, deadline - Date.now()));
      await new Promise((r) => setTimeout(r, wait));
    }
  } finally {
    await daemon.stop();
    console.log('berth demo: tearing down');
    const res = await standalone.down(cfg, { pinRoot: opts.pinRoot });
    console.log(`berth demo: removed ${res.removed.length} object(s)${res.unpinned ? ', dataplane unpinned' : ''}`);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
