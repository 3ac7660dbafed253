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
import { syncDataplane } from './standalone';
import * as topology from './topology';

export interface DaemonOptions {
  configPath: string;
  pinRoot: string;
  metrics: string;
  /** milliseconds between reconciles; default 5000 */
  intervalMs?: number;
  fastPath?: boolean;
  startCommands?: boolean;
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
  const dp = await Dataplane.openOrLoad({ pinRoot: opts.pinRoot, fastPath: opts.fastPath });
  let lastOk = 0;
  let lastError = '';
  let running: Promise<void> | undefined;

  const sync = (): Promise<void> => {
    // one reconcile at a time; callers during a run share it
    if (!running)
      running = (async () => {
        const started = process.hrtime.bigint();
        try {
          const { steps } = await syncDataplane(dp, cfg);
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
  const registry = createRegistry(dp, { lastReconcileSeconds: () => lastOk, lastError: () => lastError });
  const server: http.Server = await serveMetrics(registry, opts.metrics);
  const addr = server.address();
  const metricsUrl = typeof addr === 'object' && addr ? `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}/metrics` : opts.metrics;
  const timer = setInterval(() => void sync(), opts.intervalMs ?? 5000);
  log('info', 'berth running', { config: opts.configPath, pinRoot: opts.pinRoot, metrics: metricsUrl });

  return {
    metricsUrl,
    sync,
    async reload() {
      try {
        const next = loadConfig(opts.configPath);
        await topology.up(next, { startCommands: opts.startCommands ?? true });
        cfg = next;
        log('info', 'config reloaded', { config: opts.configPath });
        await sync();
      } catch (e) {
        log('error', 'config reload failed; keeping the previous one', { error: (e as Error).message });
      }
    },
    async stop() {
      clearInterval(timer);
      await running;
      await new Promise<void>((r) => server.close(() => r()));
      dp.close();
    },
  };
}
