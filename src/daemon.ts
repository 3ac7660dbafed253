/**
 * `berth run`: keeps the dataplane in step with its source of truth (the
 * config file in standalone mode) and serves /metrics. Forwarding never
 * depends on this process: programs and maps are pinned, so a stop (even
 * kill -9) leaves them working; a restart reconciles from the pinned state.
 */
import type * as http from 'node:http';
import { BerthConfig, loadConfig } from './config';
import { Dataplane } from './dataplane';
import { log } from './log';
import { createRegistry, serveMetrics } from './metrics';
import { enableForwarding, syncDataplane } from './standalone';
import { SweepResult, sweep } from './conntrack';
import * as topology from './topology';

export interface DaemonOptions {
  configPath: string;
  pinRoot: string;
  metrics: string;
  /** milliseconds between reconciles; default 5000 */
  intervalMs?: number;
  fastPath?: boolean;
  startCommands?: boolean;
  /** also attach the XDP drop path to uplinks */
  xdp?: boolean;
  /** milliseconds between conntrack sweeps; default 10000 */
  sweepMs?: number;
}

export interface Daemon {
  readonly metricsUrl: string;
  /** reconcile now (also run periodically) */
  sync(): Promise<void>;
  /** re-read the config file; a bad file is reported and the old one kept */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  let cfg: BerthConfig = loadConfig(opts.configPath);
  await topology.up(cfg, { startCommands: opts.startCommands ?? true });
  await enableForwarding(cfg);
  const dp = await Dataplane.openOrLoad({
    pinRoot: opts.pinRoot,
    fastPath: opts.fastPath,
    ctMax: cfg.settings.conntrack.max,
    natPortMin: cfg.settings.nat.portMin,
    natPortMax: cfg.settings.nat.portMax,
  });
  let lastSweep: SweepResult | undefined;
  let expiredTotal = 0;
  let lastOk = 0;
  let lastError = '';
  let running: Promise<void> | undefined;

  const sync = (): Promise<void> => {
    // one reconcile at a time; callers during a run share it
    if (!running)
      running = (async () => {
        const started = process.hrtime.bigint();
        try {
          const { steps } = await syncDataplane(dp, cfg, { xdp: opts.xdp });
          lastOk = Date.now() / 1000;
          lastError = '';
          if (steps.length)
            log('info', 'reconciled', { steps: steps.length, ms: Number(process.hrtime.bigint() - started) / 1e6, what: steps.map((s) => `${s.op} ${s.what}`) });
        } catch (e) {
          lastError = (e as Error).message;
          log('error', 'reconcile failed', { error: lastError });
        } finally {
          running = undefined;
        }
      })();
    return running;
  };

  await sync();
  if (lastError) {
    dp.close();
    throw new Error(`initial reconcile failed: ${lastError}`);
  }
  const registry = createRegistry(dp, { lastReconcileSeconds: () => lastOk, lastError: () => lastError, lastSweep: () => lastSweep, expiredTotal: () => expiredTotal });
  const server: http.Server = await serveMetrics(registry, opts.metrics);
  const addr = server.address();
  const metricsUrl = typeof addr === 'object' && addr ? `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}/metrics` : opts.metrics;
  const timer = setInterval(() => void sync(), opts.intervalMs ?? 5000);
  const sweeper = setInterval(() => {
    const c = cfg.settings.conntrack;
    sweep(dp.maps.ct, {
      tcpSyn: c.tcpSynTimeout,
      tcpEstablished: c.tcpEstablishedTimeout,
      tcpFin: c.tcpFinTimeout,
      tcpClose: c.tcpCloseTimeout,
      udp: c.udpTimeout,
      udpStream: c.udpStreamTimeout,
      icmp: c.icmpTimeout,
    })
      .then((r) => {
        lastSweep = r;
        expiredTotal += r.expired;
        if (r.expired) log('info', 'conntrack swept', { ...r });
      })
      .catch((e: Error) => log('error', 'conntrack sweep failed', { error: e.message }));
  }, opts.sweepMs ?? 10000);
  log('info', 'berth running', { config: opts.configPath, pinRoot: opts.pinRoot, metrics: metricsUrl });

  return {
    metricsUrl,
    sync,
    async reload() {
      try {
        const next = loadConfig(opts.configPath);
        await topology.up(next, { startCommands: opts.startCommands ?? true });
        await enableForwarding(next);
        cfg = next;
        log('info', 'config reloaded', { config: opts.configPath });
        await sync();
      } catch (e) {
        log('error', 'config reload failed; keeping the previous one', { error: (e as Error).message });
      }
    },
    async stop() {
      clearInterval(timer);
      clearInterval(sweeper);
      await running;
      await new Promise<void>((r) => server.close(() => r()));
      dp.close();
    },
  };
}
