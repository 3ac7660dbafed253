/**
 * `berth run`: keeps the dataplane in step with its source of truth (the
 * config file in standalone mode) and serves /metrics. Forwarding never
 * depends on this process: programs and maps are pinned, so a stop (even
 * kill -9) leaves them working; a restart reconciles from the pinned state.
 *
 * A takeover by this build that had to reset a map is finished here (dp.finishUpgrade) only after
 * a reconcile wrote the whole desired state and the policy: until then the links run the old
 * programs on the old maps (src/platform/lifecycle.ts). Under systemd (Type=notify) READY=1 goes
 * to $NOTIFY_SOCKET once the first reconcile is done and the hooks are in place, STOPPING=1 on stop.
 */
import type * as http from 'node:http';
import * as path from 'node:path';
import { BerthConfig, loadConfig, parseConfig } from '../domain/config';
import { Dataplane } from '../platform/dataplane';
import { SocketHooksTarget, socketHooksSummary } from '../platform/cgroup';
import { log } from '../platform/log';
import { sdNotify } from '../platform/notify';
import { Health, MapFillSampler, createRegistry, serveMetrics } from '../observe/metrics';
import { dashboardRoutes } from '../observe/dashboard/server';
import { checkInterfaces, enableForwarding, loadOptions, syncDataplane } from '../sources/standalone';
import { assertServable, hostInterfaces } from '../platform/hostnet';
import { interfacesFrom } from '../sources/docker/desired';
import { SweepResult, sweep } from './conntrack';
import { SyncLoop } from './loop';
import * as topology from '../platform/topology';
import { PolicyManager } from './policy';
import { DockerMode, DockerModeOptions, dockerPolicyNames, programPolicy, standalonePolicyNames, startDockerMode } from '../sources/docker/mode';
import { registerModeMetrics } from '../observe/docker-metrics';

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
  /** Docker mode: follow dockerd instead of a config file (configPath is not read) */
  docker?: DockerModeOptions;
  /** the user policy file (DOCKER-USER equivalent); reloaded with SIGHUP */
  policyPath?: string;
  /** where the host socket hooks go (default: found in /proc/self/mountinfo) */
  socketHooks?: SocketHooksTarget;
  /** take over a dataplane pinned by a newer berth (a downgrade), refused without it */
  force?: boolean;
}

export interface Daemon {
  readonly metricsUrl: string;
  /** the live dashboard (same listener as /metrics) */
  readonly dashboardUrl: string;
  /** reconcile now (also run periodically) */
  sync(): Promise<void>;
  /** re-read the config file; a bad file is reported and the old one kept */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

/** sd_notify: a failure to tell systemd is logged, never fatal (the dataplane does not depend on it). */
function notify(state: string): void {
  try {
    sdNotify(state);
  } catch (e) {
    log('warn', 'sd_notify failed', { state, socket: process.env.NOTIFY_SOCKET, error: (e as Error).message });
  }
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  // the policy is parsed, validated and frozen before any side effect
  let policy = opts.policyPath ? new PolicyManager(opts.policyPath, { pinRoot: path.resolve(opts.pinRoot) }) : undefined;
  let cfg: BerthConfig = opts.docker ? parseConfig('networks: []\ncontainers: []\n', 'docker mode') : loadConfig(opts.configPath);
  // a named interface berth cannot serve is refused before any side effect
  if (opts.docker) assertServable(interfacesFrom(opts.docker.settings, { interfaces: await hostInterfaces() }));
  else await checkInterfaces(cfg);
  if (!opts.docker) {
    await topology.up(cfg, { startCommands: opts.startCommands ?? true });
    await enableForwarding(cfg);
  }
  const dp = await Dataplane.openOrLoad({ ...loadOptions(cfg, opts.pinRoot, opts.fastPath, opts.socketHooks), force: opts.force });
  let lastSweep: SweepResult | undefined;
  let expiredTotal = 0;
  let flushedTotal = 0;
  let lastOk = 0;
  let lastError = '';
  let lastErrorAt = 0;
  let lastDuration = 0;
  let docker: DockerMode | undefined;
  let refusedSeen = '';
  let finishTimer: NodeJS.Timeout | undefined;

  // a deferred takeover finishes after a reconcile that wrote everything (in Docker mode: one that read dockerd)
  const finishUpgrade = async (): Promise<void> => {
    if (!dp.upgradePending) return;
    if (docker && !(docker.follower.status.lastOk > 0 && docker.follower.status.lastError === '' && docker.follower.last)) return;
    await dp.finishUpgrade();
  };

  // one reconcile at a time (engine/loop.ts); in Docker mode the follower's loop is the one loop
  const once = async (): Promise<void> => {
    const started = process.hrtime.bigint();
    try {
      let steps: unknown[] = [];
      let flushed = 0;
      if (docker) {
        // dockerd unreachable is not an error of berth's: forwarding goes on from the pinned state
        await docker.follower.resync();
      } else {
        const r = await syncDataplane(dp, cfg, { xdp: opts.xdp, policy: policy?.file });
        steps = r.steps;
        flushed = r.flushed;
        flushedTotal += r.flushed;
        // an interface named in the file that became an L3 device after the start: left out, said once
        const refused = r.refused.map((x) => x.reason).join('; ');
        if (refused && refused !== refusedSeen) log('warn', 'interfaces left out', { refused: r.refused.map((x) => ({ interface: x.ifname, from: x.from, reason: x.reason })) });
        refusedSeen = refused;
        programPolicy(policy, standalonePolicyNames(cfg, r.endpoints));
      }
      await finishUpgrade();
      lastOk = Date.now() / 1000;
      lastError = '';
      if (steps.length)
        log('info', 'reconciled', { steps: steps.length, ms: Number(process.hrtime.bigint() - started) / 1e6, flushed, what: (steps as Array<{ op: string; what: string }>).map((s) => `${s.op} ${s.what}`) });
    } catch (e) {
      lastError = (e as Error).message;
      lastErrorAt = Date.now() / 1000;
      log('error', 'reconcile failed', { error: lastError });
    } finally {
      lastDuration = Number(process.hrtime.bigint() - started) / 1e9;
    }
  };
  const loop = new SyncLoop(once, opts.intervalMs ?? 5000);
  const sync = (): Promise<void> => loop.trigger();

  if (opts.docker) {
    try {
      docker = await startDockerMode(dp, { ...opts.docker, xdp: opts.xdp, intervalMs: opts.intervalMs, policy: () => policy });
    } catch (e) {
      dp.close();
      throw e;
    }
  }
  await sync();
  if (lastError) {
    await docker?.stop();
    dp.close();
    throw new Error(`initial reconcile failed: ${lastError}`);
  }
  // Docker mode may add health.dockerEventLagSeconds (read at every scrape)
  const health: Health = {
    // in Docker mode the follower's own loop reconciles too (events, its timer)
    lastReconcileSeconds: () => Math.max(lastOk, docker?.follower.status.lastOk ?? 0),
    lastReconcileDurationSeconds: () => lastDuration,
    lastError: () => lastError,
    lastErrorSeconds: () => lastErrorAt,
    lastSweep: () => lastSweep,
    expiredTotal: () => expiredTotal,
    flushedTotal: () => flushedTotal + (docker?.follower.status.flushed ?? 0),
  };
  const sampler = new MapFillSampler(() => Object.values(dp.maps));
  const registry = createRegistry(dp, health, { sampler });
  registerModeMetrics(registry, dp, () => policy, docker);
  const server: http.Server = await serveMetrics(registry, opts.metrics, dashboardRoutes(dp, health, sampler));
  const addr = server.address();
  const metricsUrl = typeof addr === 'object' && addr ? `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}/metrics` : opts.metrics;
  // the follower resyncs on its own timer and on events; a file has only this one
  if (!docker) loop.start();
  // Docker mode with a takeover pending (dockerd not read yet): retry until a resync read it
  else if (dp.upgradePending)
    finishTimer = setInterval(() => {
      if (!dp.upgradePending) clearInterval(finishTimer);
      else void sync();
    }, opts.intervalMs ?? 5000);
  const sweeper = setInterval(() => {
    sweep(dp.maps.ct, cfg.settings.conntrack)
      .then((r) => {
        lastSweep = r;
        expiredTotal += r.expired;
        if (r.expired) log('info', 'conntrack swept', { ...r });
      })
      .catch((e: Error) => log('error', 'conntrack sweep failed', { error: e.message }));
  }, opts.sweepMs ?? 10000);
  log('info', 'berth running', { ...(opts.docker ? { docker: docker?.client.socketPath } : { config: opts.configPath }), ...(policy ? { policy: policy.file } : {}), pinRoot: opts.pinRoot, metrics: metricsUrl, socketHooks: socketHooksSummary(dp.socketHooks) });
  // the first reconcile is done and the hooks are in place: a unit ordered after berth may start
  notify('READY=1');

  return {
    metricsUrl,
    dashboardUrl: metricsUrl.replace(/\/metrics$/, '/'),
    sync,
    async reload() {
      if (policy) {
        try {
          const next = new PolicyManager(policy.file, { pinRoot: path.resolve(opts.pinRoot) });
          policy = next;
          log('info', 'policy reloaded', { file: next.file, rules: next.current.rules.length });
        } catch (e) {
          log('error', 'policy reload failed; keeping the previous one', { error: (e as Error).message });
        }
      }
      if (docker) {
        // program the (new) policy now, even while dockerd is away
        if (docker.follower.last) programPolicy(policy, dockerPolicyNames(docker.follower.last));
        await sync();
        return;
      }
      try {
        const next = loadConfig(opts.configPath);
        await checkInterfaces(next);
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
      notify('STOPPING=1');
      clearInterval(sweeper);
      clearInterval(finishTimer);
      await loop.stop();
      await docker?.stop();
      await new Promise<void>((r) => server.close(() => r()));
      dp.close();
    },
  };
}
