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
import * as fs from 'node:fs';
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
import { HostWatch, HostWatchStatus } from './hostwatch';
import { hostVethName } from '../domain/names';
import { NameLists, diffConfig, emptyPart, lostPart, reloadPhases } from '../sources/reload';

/** What a standalone reload did to the topology (the names whose namespaces, veths or bridges it built or took down). */
export interface ReloadSummary {
  /** false: the file was refused (bad, or its new topology refused) and nothing changed */
  applied: boolean;
  up: NameLists;
  down: NameLists;
}

export interface DaemonOptions {
  configPath: string;
  pinRoot: string;
  metrics: string;
  /**
   * milliseconds between full reconciles, the safety net: host changes come as
   * netlink events (engine/hostwatch.ts), a file change with SIGHUP; default
   * 60000 (Docker mode: the follower's own default)
   */
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
  /** reconcile now (also on host netlink events and, rarely, periodically) */
  sync(): Promise<void>;
  /** the netlink events seen: how many were relevant, ignored, and the syncs they asked for */
  readonly hostEvents: Readonly<HostWatchStatus>;
  /**
   * re-read the config file (and the policy); a bad file is reported and the
   * old one kept (applied: false). Standalone: the topology of what was added,
   * changed or removed only (sources/reload.ts), then a sync; undefined in Docker mode.
   */
  reload(): Promise<ReloadSummary | undefined>;
  stop(): Promise<void>;
}

/**
 * The links a file's desired state depends on when it names its interfaces:
 * those named, the externals' host sides, its bridges and its host veths
 * (undefined: uplinks or interfaces auto-detected, every link counts).
 */
function linksOfInterest(cfg: BerthConfig): ((name: string) => boolean) | undefined {
  if (!cfg.uplinks || !cfg.interfaces) return undefined;
  const names = new Set<string>([...cfg.uplinks, ...cfg.interfaces, ...cfg.externals.map((x) => x.hostIfname), ...cfg.networks.map((n) => n.bridge), ...cfg.containers.map((c) => hostVethName(c.name))]);
  return (name) => names.has(name);
}

/** sd_notify: a failure to tell systemd is logged, never fatal (the dataplane does not depend on it). */
function notify(state: string): void {
  try {
    sdNotify(state);
  } catch (e) {
    log('warn', 'sd_notify failed', { state, socket: process.env.NOTIFY_SOCKET, error: (e as Error).message });
  }
}

/** What the reconciles and sweeps did, in one place; read by /metrics and the dashboard (health()). */
class DaemonHealth {
  lastOk = 0;
  lastError = '';
  lastErrorAt = 0;
  lastDuration = 0;
  flushedTotal = 0;
  expiredTotal = 0;
  lastSweep?: SweepResult;

  succeeded(): void {
    this.lastOk = Date.now() / 1000;
    this.lastError = '';
  }

  failed(message: string): void {
    this.lastError = message;
    this.lastErrorAt = Date.now() / 1000;
  }

  swept(r: SweepResult): void {
    this.lastSweep = r;
    this.expiredTotal += r.expired;
  }

  /** The Health view; in Docker mode the follower's own loop reconciles too (events, its timer). */
  view(docker: () => DockerMode | undefined): Health {
    return {
      lastReconcileSeconds: () => Math.max(this.lastOk, docker()?.follower.status.lastOk ?? 0),
      lastReconcileDurationSeconds: () => this.lastDuration,
      lastError: () => this.lastError,
      lastErrorSeconds: () => this.lastErrorAt,
      lastSweep: () => this.lastSweep,
      expiredTotal: () => this.expiredTotal,
      flushedTotal: () => this.flushedTotal + (docker()?.follower.status.flushed ?? 0),
    };
  }
}

/**
 * `berth run`'s state and its four verbs. The config and the policy change
 * only in reload(); the health only in a reconcile or a sweep; the rest is
 * set once by start() and released by stop().
 */
class BerthDaemon implements Daemon {
  private readonly health = new DaemonHealth();
  private readonly loop: SyncLoop;
  private docker?: DockerMode;
  private watch?: HostWatch;
  private server?: http.Server;
  private sweeper?: NodeJS.Timeout;
  /** Docker mode with a takeover pending: retried until a resync read dockerd */
  private finishTimer?: NodeJS.Timeout;
  /** the refusals last logged (an interface named in the file that cannot be served: said once) */
  private refusedSeen = '';
  metricsUrl = '';

  private constructor(
    private readonly opts: DaemonOptions,
    private readonly dp: Dataplane,
    private cfg: BerthConfig,
    private policy: PolicyManager | undefined,
  ) {
    // one reconcile at a time (engine/loop.ts); in Docker mode the follower's loop is the one loop
    this.loop = new SyncLoop(() => this.once(), opts.intervalMs ?? 60000);
  }

  get dashboardUrl(): string {
    return this.metricsUrl.replace(/\/metrics$/, '/');
  }

  get hostEvents(): Readonly<HostWatchStatus> {
    return this.watch!.status;
  }

  static async start(opts: DaemonOptions): Promise<BerthDaemon> {
    // the policy is parsed, validated and frozen before any side effect
    const policy = opts.policyPath ? new PolicyManager(opts.policyPath, { pinRoot: path.resolve(opts.pinRoot) }) : undefined;
    const cfg: BerthConfig = opts.docker ? parseConfig('networks: []\ncontainers: []\n', 'docker mode') : loadConfig(opts.configPath);
    // a named interface berth cannot serve is refused before any side effect
    if (opts.docker) assertServable(interfacesFrom(opts.docker.settings, { interfaces: await hostInterfaces() }));
    else await checkInterfaces(cfg);
    if (!opts.docker) {
      await topology.up(cfg, { startCommands: opts.startCommands ?? true });
      await enableForwarding(cfg);
    }
    const dp = await Dataplane.openOrLoad({ ...loadOptions(cfg, opts.pinRoot, opts.fastPath, opts.socketHooks), force: opts.force });
    const d = new BerthDaemon(opts, dp, cfg, policy);
    try {
      await d.begin();
    } catch (e) {
      d.watch?.close();
      await d.docker?.stop();
      dp.close();
      throw e;
    }
    return d;
  }

  /** Docker mode, the host watch, the first reconcile, then /metrics, the timers. */
  private async begin(): Promise<void> {
    const opts = this.opts;
    if (opts.docker) this.docker = await startDockerMode(this.dp, { ...opts.docker, xdp: opts.xdp, intervalMs: opts.intervalMs, policy: () => this.policy });
    // an interface or address that appears or goes is used at once (subscribed before the first sync: nothing falls between)
    this.watch = await HostWatch.start({
      linkOfInterest: () => (this.docker ? undefined : linksOfInterest(this.cfg)),
      onChange: (why) => {
        log('debug', 'host changed', { why });
        // in Docker mode the follower's loop is the one loop: a link or address is an incremental run
        // (it re-reads the host facts); only a lost event (overrun, error) asks for a full resync
        const full = why.startsWith('netlink ');
        void (this.docker ? (full ? this.docker.follower.resync() : this.docker.follower.caughtUp()) : this.sync());
      },
    });
    await this.sync();
    if (this.health.lastError) throw new Error(`initial reconcile failed: ${this.health.lastError}`);
    // Docker mode may add health.dockerEventLagSeconds (read at every scrape)
    const health = this.health.view(() => this.docker);
    const sampler = new MapFillSampler(() => Object.values(this.dp.maps));
    const registry = createRegistry(this.dp, health, { sampler });
    registerModeMetrics(registry, this.dp, () => this.policy, this.docker);
    this.server = await serveMetrics(registry, opts.metrics, dashboardRoutes(this.dp, health, sampler));
    const addr = this.server.address();
    this.metricsUrl = typeof addr === 'object' && addr ? `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}/metrics` : opts.metrics;
    // the follower resyncs on its own timer and on events; a file has only this one
    if (!this.docker) this.loop.start();
    // Docker mode with a takeover pending (dockerd not read yet): retry until a resync read it
    else if (this.dp.upgradePending)
      this.finishTimer = setInterval(() => {
        if (!this.dp.upgradePending) clearInterval(this.finishTimer);
        else void this.sync();
      }, opts.intervalMs ?? 5000);
    this.sweeper = setInterval(() => this.sweepOnce(), opts.sweepMs ?? 10000);
    log('info', 'berth running', { ...(opts.docker ? { docker: this.docker?.client.socketPath } : { config: opts.configPath }), ...(this.policy ? { policy: this.policy.file } : {}), pinRoot: opts.pinRoot, metrics: this.metricsUrl, socketHooks: socketHooksSummary(this.dp.socketHooks) });
    // the first reconcile is done and the hooks are in place: a unit ordered after berth may start
    notify('READY=1');
  }

  private sweepOnce(): void {
    sweep(this.dp.maps.ct, this.cfg.settings.conntrack)
      .then((r) => {
        this.health.swept(r);
        if (r.expired) log('info', 'conntrack swept', { ...r });
      })
      .catch((e: Error) => log('error', 'conntrack sweep failed', { error: e.message }));
  }

  /** One reconcile (the loop's body; never throws: a failure is the health's). */
  private async once(): Promise<void> {
    const started = process.hrtime.bigint();
    try {
      let steps: unknown[] = [];
      let flushed = 0;
      if (this.docker) {
        // dockerd unreachable is not an error of berth's: forwarding goes on from the pinned state
        await this.docker.follower.resync();
      } else {
        const r = await syncDataplane(this.dp, this.cfg, { xdp: this.opts.xdp, policy: this.policy?.file });
        steps = r.steps;
        flushed = r.flushed;
        this.health.flushedTotal += r.flushed;
        // an interface named in the file that became an L3 device after the start: left out, said once
        const refused = r.refused.map((x) => x.reason).join('; ');
        if (refused && refused !== this.refusedSeen) log('warn', 'interfaces left out', { refused: r.refused.map((x) => ({ interface: x.ifname, from: x.from, reason: x.reason })) });
        this.refusedSeen = refused;
        programPolicy(this.policy, standalonePolicyNames(this.cfg, r.endpoints));
      }
      await this.finishUpgrade();
      this.health.succeeded();
      if (steps.length)
        log('info', 'reconciled', { steps: steps.length, ms: Number(process.hrtime.bigint() - started) / 1e6, flushed, what: (steps as Array<{ op: string; what: string }>).map((s) => `${s.op} ${s.what}`) });
    } catch (e) {
      this.health.failed((e as Error).message);
      log('error', 'reconcile failed', { error: this.health.lastError });
    } finally {
      this.health.lastDuration = Number(process.hrtime.bigint() - started) / 1e9;
    }
  }

  /** A deferred takeover finishes after a reconcile that wrote everything (in Docker mode: one that read dockerd). */
  private async finishUpgrade(): Promise<void> {
    if (!this.dp.upgradePending) return;
    const f = this.docker?.follower;
    if (f && !(f.status.lastOk > 0 && f.status.lastError === '' && f.last)) return;
    await this.dp.finishUpgrade();
  }

  sync(): Promise<void> {
    return this.loop.trigger();
  }

  async reload(): Promise<ReloadSummary | undefined> {
    this.reloadPolicy();
    if (this.docker) {
      // program the (new) policy now, even while dockerd is away
      if (this.docker.follower.last) programPolicy(this.policy, dockerPolicyNames(this.docker.follower.last));
      await this.sync();
      return undefined;
    }
    let next: BerthConfig;
    let phases: ReturnType<typeof reloadPhases>;
    const upOpts = { startCommands: this.opts.startCommands ?? true };
    try {
      next = loadConfig(this.opts.configPath);
      await checkInterfaces(next);
      const diff = diffConfig(this.cfg, next);
      phases = reloadPhases(this.cfg, next, diff);
      if (diff.loadTime.length) log('warn', 'settings that take effect at the next start of berth changed', { settings: diff.loadTime });
      // the topology of what is only added first: a refusal (or a failed step, rolled back) there changes nothing
      if (!emptyPart(phases.add)) await topology.up(phases.add, upOpts);
    } catch (e) {
      log('error', 'config reload failed; keeping the previous one', { error: (e as Error).message });
      return { applied: false, up: { networks: [], containers: [], externals: [] }, down: { networks: [], containers: [], externals: [] } };
    }
    // then what went or changed is taken down and the changed ones built again; a failure from here on
    // leaves the new file in force (part of the old is gone already) and what exists of it programmed
    try {
      if (!emptyPart(phases.takeDown)) await topology.down(phases.takeDown);
      if (!emptyPart(phases.rebuild)) await topology.up(phases.rebuild, upOpts);
      // what the file holds but the host lost meanwhile (a namespace deleted by hand) is made again
      const lost = lostPart(next, (ifname) => fs.existsSync(path.join('/sys/class/net', ifname)));
      if (!emptyPart(lost)) {
        log('info', 'config reload: building again what the host lost', { containers: lost.containers.map((c) => c.name), externals: lost.externals.map((x) => x.name) });
        await topology.up(lost, upOpts);
      }
      await enableForwarding(next);
    } catch (e) {
      log('error', 'config reload applied in part: the new file is in force, what exists of it is programmed; fix and reload again', { error: (e as Error).message });
    }
    this.cfg = next;
    const count = (l: NameLists): number => l.networks.length + l.containers.length + l.externals.length;
    log('info', 'config reloaded', { config: this.opts.configPath, topologyUp: count(phases.up), topologyDown: count(phases.down), up: phases.up, down: phases.down });
    await this.sync();
    return { applied: true, up: phases.up, down: phases.down };
  }

  /** A bad policy file is reported and the previous one kept. */
  private reloadPolicy(): void {
    if (!this.policy) return;
    try {
      const next = new PolicyManager(this.policy.file, { pinRoot: path.resolve(this.opts.pinRoot) });
      this.policy = next;
      log('info', 'policy reloaded', { file: next.file, rules: next.current.rules.length });
    } catch (e) {
      log('error', 'policy reload failed; keeping the previous one', { error: (e as Error).message });
    }
  }

  async stop(): Promise<void> {
    notify('STOPPING=1');
    this.watch?.close();
    clearInterval(this.sweeper);
    clearInterval(this.finishTimer);
    await this.loop.stop();
    await this.docker?.stop();
    const server = this.server;
    if (server) await new Promise<void>((r) => server.close(() => r()));
    this.dp.close();
  }
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  return BerthDaemon.start(opts);
}
