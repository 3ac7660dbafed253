/**
 * Docker mode: follow dockerd and keep berth's dataplane in step with its
 * bridge networks.
 *
 * On start (and on every reconnect) the follower opens the /events stream
 * first and then lists everything, so no change falls between the list and
 * the stream. It keeps Docker in memory: the listed networks and the running
 * containers (by id) with their endpoints' veths resolved. An event is
 * handled by what it names: a container event (start/die/destroy/...)
 * inspects that container alone (gone, or not running: its endpoints go); a
 * network event lists the networks again (one call) and, for connect and
 * disconnect, inspects the container it names. The desired state is then
 * built from the in-memory set (desired.ts, pure) and planned against the
 * programmed view (engine/view.ts), so no map is dumped and no other
 * container inspected: per event the I/O is the named container, the host's
 * links and addresses (one rtnetlink dump), berth_net_meta and the steps.
 * Everything is scoped to Docker's networks (`docker:<name>`, plus any
 * `docker:` network still pinned, so stale ones go). Runs never overlap;
 * events that arrive during one coalesce into one more (engine/loop.ts).
 *
 * The full resync (list networks and running containers, inspect every one,
 * read the pins and the claims again) is the safety net: at (re)connect, on
 * resync() (SIGHUP, daemon.sync()), on a rare timer (intervalMs, default
 * 60 s), and after a run that failed (200 ms, doubling to 5 s). A started container whose veth is not
 * found yet is resolved again after 5, 10, 20 ... 500 ms (about 3 s in all)
 * rather than at the next full resync. fullEveryEvent handles every event
 * with a full resync (the path before the view, for comparisons).
 *
 * The veth: SandboxKey is the container's network namespace; inside it,
 * `ip -j link show` lists the interface whose MAC is the endpoint's, and its
 * link_index is the ifindex of the host-side peer. Lookups are cached per
 * (namespace, MAC) and re-checked against the host's interfaces.
 *
 * host, none and container:<other> containers have no bridge endpoint of their
 * own, so they contribute nothing: a container: sharer's traffic goes through
 * its owner's veth and is counted there.
 *
 * dockerd unreachable (stopped, restarting): nothing is removed; the pinned
 * dataplane keeps forwarding and the follower reconnects with backoff
 * (200 ms doubling to 5 s), then resyncs (adds what is missing, removes what
 * went while it was away).
 */
import { withNetlink } from '../../platform/netlink';
import { enableForwarding as forwardingOn } from '../../platform/sysctl';
import type { Dataplane } from '../../platform/dataplane';
import { log } from '../../platform/log';
import type { Step } from '../../engine/reconcile';
import { syncScope } from '../../engine/scope';
import { ProgrammedView } from '../../engine/view';
import { readClaims } from '../../engine/owners';
import { hostFacts } from '../../platform/hostnet';
import { SyncLoop } from '../../engine/loop';
import type { DesiredNetwork } from '../../engine/reconcile';
import { HostFacts, presentIn } from '../standalone';
import type { DockerClient, DockerContainer, DockerEvent, DockerNetwork } from './client';
import { DockerDesired, DockerSettings, NETWORK_PREFIX, ResolvedContainer, ResolvedEndpoint, desiredFromDocker } from './desired';

/** A link inside a container's namespace: its MAC, and IFLA_LINK (the host end's ifindex for a veth). */
interface NsLink {
  address: string;
  link_index?: number;
}

const RELEVANT: Readonly<Record<string, ReadonlySet<string>>> = {
  container: new Set(['start', 'die', 'destroy', 'restart', 'kill', 'stop']),
  network: new Set(['create', 'destroy', 'remove', 'connect', 'disconnect']),
};

/** 'ipv4', 'ipv6' or 'ipv4,ipv6': what a desired network carries (metrics, logs). */
export function networkFamilies(n: Pick<DesiredNetwork, 'ipv4' | 'subnet6'>): string {
  return [n.ipv4 !== false ? 'ipv4' : '', n.subnet6 ? 'ipv6' : ''].filter(Boolean).join(',');
}

/** Docker mode's scope id in the claims on shared resources (engine/owners.ts). */
export const DOCKER_SCOPE = 'docker';

export function isRelevant(e: DockerEvent): boolean {
  return RELEVANT[e.Type]?.has(e.Action) ?? false;
}

export interface FollowerOptions {
  client: DockerClient;
  dp: Dataplane;
  settings: DockerSettings;
  /** also attach the XDP drop path to uplinks */
  xdp?: boolean;
  /** called after every successful resync (the policy's container/network names) */
  afterSync?: (d: DockerDesired) => void | Promise<void>;
  /** the user policy file in force (its claim on the shared policy) */
  policyFile?: () => string | undefined;
  /** ms between full resyncs (list everything, inspect every container, re-read the pins) even without events (default 60000) */
  intervalMs?: number;
  /** handle every event with a full resync, as before the programmed view (comparisons, benchmarks) */
  fullEveryEvent?: boolean;
  /**
   * the host's interfaces and addresses at each run (default: one rtnetlink dump per run, which
   * grows with the host's links); a provider kept current by netlink events may cache them
   */
  hostFacts?: () => Promise<HostFacts>;
}

export interface FollowerStatus {
  connected: boolean;
  lastOk: number;
  lastError: string;
  events: number;
  /** successful runs, full or by event */
  resyncs: number;
  /** successful full resyncs (list, inspect all, re-read the pins) */
  fullResyncs?: number;
  /** container inspections (GET /containers/{id}/json) */
  inspects?: number;
  reconnects: number;
  /** tracked flows flushed by resyncs because an endpoint or publish they point at changed or went */
  flushed: number;
  skipped: DockerDesired['skipped'];
  managed: string[];
  /** managed network (Docker name) -> its families: 'ipv4', 'ipv6' or 'ipv4,ipv6' */
  families: Record<string, string>;
}

/** Re-resolving a started container whose veth is not found yet: 5, 10, 20 ... 500 ms, given up after ~3 s (the full resync takes over). */
const RETRY_FIRST_MS = 5;
const RETRY_MAX_MS = 500;
const RETRY_TOTAL_MS = 3000;
/** A failed run (dockerd busy, an interface gone mid-run) is followed by a full resync after 200 ms, doubling to 5 s. */
const FAIL_FIRST_MS = 200;
const FAIL_MAX_MS = 5000;

export class DockerFollower {
  private stopped = false;
  private abort?: AbortController;
  private readonly sync: SyncLoop;
  private loop?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private readonly vethCache = new Map<string, number>();
  private readonly forwardingSet = new Set<string>();
  readonly status: FollowerStatus = { connected: false, lastOk: 0, lastError: '', events: 0, resyncs: 0, fullResyncs: 0, inspects: 0, reconnects: 0, flushed: 0, skipped: [], managed: [], families: {} };
  /** the last desired state (the policy resolves names against it) */
  last?: DockerDesired;
  /** what is programmed, kept from the steps run (engine/view.ts); re-read from the pins at every full resync */
  readonly view: ProgrammedView;
  private waiters: Array<() => void> = [];
  private refusedSeen = '';
  /** the warnings of the last resync: one that repeats every resync is logged once */
  private warnedLast = new Set<string>();
  // Docker as last seen: its networks, its running containers (by id) with their endpoints resolved
  private networks?: DockerNetwork[];
  private readonly running = new Map<string, ResolvedContainer>();
  /** the pinned claims, read at each full resync (the other scopes' needs change rarely) */
  private claims?: ReturnType<typeof readClaims>;
  // work for the next run: a full resync, containers to inspect, the network list, containers to resolve again
  private fullWanted = true;
  private readonly dirty = new Set<string>();
  private networksDirty = false;
  private readonly reresolve = new Set<string>();
  private readonly retries = new Map<string, { waited: number; next: number; timer?: NodeJS.Timeout }>();
  private failTimer?: NodeJS.Timeout;
  private failDelay = FAIL_FIRST_MS;

  /** every event runs a full resync (FollowerOptions.fullEveryEvent; may be switched at any time) */
  fullEveryEvent: boolean;

  constructor(private readonly opts: FollowerOptions) {
    this.fullEveryEvent = !!opts.fullEveryEvent;
    this.sync = new SyncLoop(() => this.runOnce(), opts.intervalMs ?? 60000);
    this.view = new ProgrammedView(opts.dp);
  }

  /** Connect, list, program; then follow events in the background. Resolves after the first resync attempt. */
  async start(): Promise<void> {
    const first = new Promise<void>((r) => this.waiters.push(r));
    this.loop = this.eventLoop();
    // the safety net: a full resync on a timer (the SyncLoop's own timer would not say which kind of run)
    this.timer ??= setInterval(() => void this.resync(), this.opts.intervalMs ?? 60000);
    // bounded: an unreachable dockerd must not hold up the metrics server
    await Promise.race([first, new Promise((r) => setTimeout(r, 10000).unref())]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.failTimer) clearTimeout(this.failTimer);
    for (const r of this.retries.values()) if (r.timer) clearTimeout(r.timer);
    this.retries.clear();
    this.abort?.abort();
    await this.loop?.catch(() => undefined);
    await this.sync.stop();
  }

  /** What an event names goes into the next run's work (a container to inspect, the network list). */
  private onEvent(e: DockerEvent): void {
    if (!isRelevant(e)) return;
    this.status.events++;
    const id = e.Type === 'container' ? e.Actor?.ID : e.Actor?.Attributes?.container;
    if (this.fullEveryEvent || (e.Type === 'container' && !id)) this.fullWanted = true;
    if (e.Type === 'network') this.networksDirty = true;
    if (id) this.dirty.add(id);
    void this.kick();
  }

  private async eventLoop(): Promise<void> {
    let backoff = 200;
    while (!this.stopped) {
      this.abort = new AbortController();
      try {
        await this.opts.client.events((e) => this.onEvent(e), {
          signal: this.abort.signal,
          onOpen: () => {
            if (!this.status.connected) log('info', 'docker connected', { socket: this.opts.client.socketPath });
            this.status.connected = true;
            backoff = 200;
            // what happened while the stream was away is only known by listing it all
            void this.resync();
          },
        });
        if (this.stopped) return;
        throw new Error('event stream ended');
      } catch (e) {
        if (this.stopped) return;
        if (this.status.connected) log('warn', 'docker unreachable; forwarding goes on, reconnecting', { error: (e as Error).message });
        this.status.connected = false;
        this.status.lastError = `docker: ${(e as Error).message}`;
        this.status.reconnects++;
        this.release();
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  private release(): void {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }

  /** A run for the work queued (events, retries); concurrent calls coalesce into at most one more run (engine/loop.ts). */
  private kick(): Promise<void> {
    return this.sync.trigger().finally(() => this.release());
  }

  /** Handle what is queued now (events, retries) and wait for it; no full resync unless one is due. */
  caughtUp(): Promise<void> {
    return this.kick();
  }

  /** Full resync now (list everything, inspect every container, re-read the pins); coalesces like every run. */
  resync(): Promise<void> {
    this.fullWanted = true;
    return this.kick();
  }

  /** One run: a full resync when one is wanted, else only what the queued events named. */
  private async runOnce(): Promise<void> {
    if (this.stopped) return;
    const full = this.fullWanted || this.networks === undefined;
    const ids = [...this.dirty];
    const again = [...this.reresolve];
    const netsDirty = this.networksDirty;
    this.fullWanted = false;
    this.dirty.clear();
    this.reresolve.clear();
    this.networksDirty = false;
    const t = new Phases();
    let steps: Step[] = [];
    try {
      const client = this.opts.client;
      let inspected: DockerContainer[];
      if (full) {
        const [networks, summaries] = await Promise.all([client.networks(), client.containers()]);
        inspected = [];
        for (let i = 0; i < summaries.length; i += 16) {
          const batch = await Promise.all(summaries.slice(i, i + 16).map((s) => this.inspect(s.Id)));
          for (const c of batch) if (c && c.State.Running) inspected.push(c);
        }
        this.networks = networks;
        this.running.clear();
        this.claims = readClaims(this.opts.dp.pinRoot);
        this.view.invalidate('full resync');
      } else {
        const [networks, infos] = await Promise.all([netsDirty ? client.networks() : undefined, Promise.all(ids.map((id) => this.inspect(id)))]);
        if (networks) this.networks = networks;
        inspected = [];
        ids.forEach((id, i) => {
          const c = infos[i];
          if (c && c.State.Running) inspected.push(c);
          else this.forget(id);
        });
      }
      t.mark('docker');
      const host: HostFacts = await (this.opts.hostFacts ?? hostFacts)();
      t.mark('host');
      const toResolve = [...inspected, ...again.filter((id) => !ids.includes(id)).map((id) => this.running.get(id)?.info).filter((c): c is DockerContainer => !!c)];
      const resolved = await Promise.all(toResolve.map((c) => this.resolve(c, host)));
      for (const rc of resolved) {
        this.running.set(rc.info.Id, rc);
        this.retryIfUnplumbed(rc);
      }
      if (full) {
        // forget the veths of namespaces that are gone
        const live = new Set([...this.running.values()].map((c) => c.info.NetworkSettings.SandboxKey ?? ''));
        for (const k of this.vethCache.keys()) if (!live.has(k.slice(0, k.lastIndexOf('|')))) this.vethCache.delete(k);
        // and the retries of containers that are not running any more
        for (const [cid, r] of this.retries)
          if (!this.running.has(cid)) {
            if (r.timer) clearTimeout(r.timer);
            this.retries.delete(cid);
          }
      }
      t.mark('resolve');
      const warnedNow = new Set<string>();
      const warn = (msg: string, f: Record<string, unknown>): void => {
        const k = `${msg} ${JSON.stringify(f)}`;
        if (!this.warnedLast.has(k) && !warnedNow.has(k)) log('warn', msg, f);
        warnedNow.add(k);
      };
      const dd = desiredFromDocker(this.networks!, [...this.running.values()], this.opts.settings, host, warn);
      this.warnedLast = warnedNow;
      const refused = dd.refused.map((x) => x.reason).join('; ');
      if (refused && refused !== this.refusedSeen) log('warn', 'interfaces left out', { refused: dd.refused.map((x) => ({ interface: x.ifname, from: x.from, reason: x.reason })) });
      this.refusedSeen = refused;
      await this.enableForwarding(dd);
      t.mark('desired');
      const current = await this.view.current();
      const scope = new Set<string>(dd.managed.keys());
      for (const m of current.networks.values()) if (m.name.startsWith(NETWORK_PREFIX)) scope.add(m.name);
      t.mark('view');
      const res = await syncScope(this.opts.dp, { ...dd.desired, xdp: this.opts.xdp }, { id: DOCKER_SCOPE, scope, present: presentIn(host), policy: this.opts.policyFile?.(), view: this.view, claims: this.claims });
      t.mark('apply');
      steps = res.steps;
      const { flushed } = res;
      this.status.flushed += flushed;
      this.last = dd;
      const skippedNow = dd.skipped.map((s) => s.name).join(',');
      if (skippedNow !== this.status.skipped.map((s) => s.name).join(','))
        for (const s of dd.skipped) log('info', 'docker network left alone', { ...s });
      this.status.skipped = dd.skipped;
      this.status.managed = [...dd.managed.values()].map((m) => m.docker.Name);
      this.status.families = Object.fromEntries([...dd.managed.values()].map((m) => [m.docker.Name, networkFamilies(m.net)]));
      this.status.lastOk = Date.now() / 1000;
      this.status.lastError = '';
      this.status.resyncs++;
      if (full) this.status.fullResyncs = (this.status.fullResyncs ?? 0) + 1;
      await this.opts.afterSync?.(dd);
      t.mark('policy');
      this.failDelay = FAIL_FIRST_MS;
      log('debug', 'docker sync', { full, containers: ids.length, resolved: toResolve.length, running: this.running.size, steps: steps.length, viewReads: this.view.reads, ms: t.ms() });
      if (steps.length) log('info', 'reconciled with docker', { steps: steps.length, ms: t.total(), full, flushed, what: steps.map((s) => `${s.op} ${s.what}`) });
    } catch (e) {
      // what this run did not finish is redone as a whole: a full resync, soon (backing off), or at the next event
      this.fullWanted = true;
      this.retryFailed();
      this.status.lastError = (e as Error).message;
      log('error', 'docker resync failed; the dataplane is left as it was', { error: this.status.lastError });
    }
  }

  /** After a failed run: a full resync after 200 ms, doubling to 5 s while runs keep failing (an event may come first). */
  private retryFailed(): void {
    if (this.failTimer || this.stopped) return;
    const delay = this.failDelay;
    this.failDelay = Math.min(delay * 2, FAIL_MAX_MS);
    this.failTimer = setTimeout(() => {
      this.failTimer = undefined;
      void this.resync();
    }, delay);
  }

  private inspect(id: string): Promise<DockerContainer | null> {
    this.status.inspects = (this.status.inspects ?? 0) + 1;
    return this.opts.client.container(id);
  }

  /** A container that is gone or stopped: its endpoints go at this run, its veths from the cache. */
  private forget(id: string): void {
    const rc = this.running.get(id);
    this.running.delete(id);
    const r = this.retries.get(id);
    if (r?.timer) clearTimeout(r.timer);
    this.retries.delete(id);
    if (!rc) return;
    const sandbox = rc.info.NetworkSettings.SandboxKey ?? '';
    for (const n of Object.values(rc.info.NetworkSettings.Networks ?? {})) if (n.MacAddress) this.vethCache.delete(`${sandbox}|${n.MacAddress.toLowerCase()}`);
  }

  /**
   * A running container with an endpoint on a bridge network whose veth was
   * not found (not plumbed yet): resolve it again soon, backing off, rather
   * than at the next full resync; given up after RETRY_TOTAL_MS.
   */
  private retryIfUnplumbed(rc: ResolvedContainer): void {
    const id = rc.info.Id;
    const bridges = new Set((this.networks ?? []).filter((n) => n.Driver === 'bridge').map((n) => n.Id));
    const wanted = Object.values(rc.info.NetworkSettings.Networks ?? {}).filter((n) => (n.IPAddress || n.GlobalIPv6Address) && n.MacAddress && bridges.has(n.NetworkID)).length;
    const prev = this.retries.get(id);
    if (rc.endpoints.length >= wanted || this.stopped) {
      if (prev?.timer) clearTimeout(prev.timer);
      this.retries.delete(id);
      return;
    }
    const r = prev ?? { waited: 0, next: RETRY_FIRST_MS };
    if (r.waited >= RETRY_TOTAL_MS) {
      log('warn', 'container veth not found; left to the full resync', { container: rc.info.Name, waitedMs: r.waited });
      this.retries.delete(id);
      return;
    }
    const delay = r.next;
    r.waited += delay;
    r.next = Math.min(delay * 2, RETRY_MAX_MS);
    r.timer = setTimeout(() => {
      r.timer = undefined;
      this.reresolve.add(id);
      void this.kick();
    }, delay);
    this.retries.set(id, r);
  }

  /**
   * Per-bridge (and per-uplink) IPv4 forwarding, as dockerd's ip_forward would; only ever turned on.
   * IPv6 the same way on the bridges of networks with IPv6: bpf_fib_lookup answers an IPv6
   * lookup (NAT66, the v6 MTU check) only when the interface it starts from (the bridge)
   * forwards. Not on the uplinks: berth's lookups never start there, and IPv6 forwarding on
   * an interface makes the kernel ignore its router advertisements (accept_ra 1), which
   * may be where the host's own IPv6 default route comes from.
   */
  private async enableForwarding(dd: DockerDesired): Promise<void> {
    const managed = [...dd.managed.values()].filter((m) => !m.net.internal);
    const names = [...managed.map((m) => m.net.bridge), ...(dd.desired.uplinks ?? []).map((u) => u.ifname)];
    for (const n of names) {
      // 'missing': the bridge is not there yet; dockerd creates it with the first endpoint
      if (forwardingOn(4, n) === 'enabled' && !this.forwardingSet.has(n)) log('info', 'ipv4 forwarding enabled', { interface: n });
      this.forwardingSet.add(n);
    }
    const names6 = managed.filter((m) => m.net.subnet6).map((m) => m.net.bridge);
    for (const n of names6) {
      if (forwardingOn(6, n) === 'enabled' && !this.forwardingSet.has(`${n}/6`)) log('info', 'ipv6 forwarding enabled', { interface: n });
      this.forwardingSet.add(`${n}/6`);
    }
  }

  /** Find the host-side veth of each of a container's endpoints. */
  async resolve(c: DockerContainer, host: HostFacts): Promise<ResolvedContainer> {
    const eps: ResolvedEndpoint[] = [];
    const sandbox = c.NetworkSettings.SandboxKey ?? '';
    const nets = Object.values(c.NetworkSettings.Networks ?? {}).filter((n) => (n.IPAddress || n.GlobalIPv6Address) && n.MacAddress);
    if (!sandbox || !nets.length) return { info: c, endpoints: eps };
    const hostIfs = new Map(host.interfaces.map((i) => [i.ifindex, i]));
    let links: NsLink[] | undefined;
    for (const n of nets) {
      const mac = n.MacAddress.toLowerCase();
      const key = `${sandbox}|${mac}`;
      let ifindex = this.vethCache.get(key);
      if (ifindex === undefined || !hostIfs.has(ifindex)) {
        try {
          // a netlink socket made inside the sandbox (no nsenter, no ip)
          links ??= (await withNetlink(sandbox, (nl) => nl.links())).map((l) => ({ address: l.mac, ...(l.peerIfindex ? { link_index: l.peerIfindex } : {}) }));
        } catch (e) {
          log('warn', 'cannot read a container namespace', { container: c.Name, sandbox, error: (e as Error).message });
          return { info: c, endpoints: eps };
        }
        const l = links.find((x) => (x.address ?? '').toLowerCase() === mac && x.link_index);
        if (!l?.link_index || !hostIfs.has(l.link_index)) continue; // not plumbed yet (or gone)
        ifindex = l.link_index;
        this.vethCache.set(key, ifindex);
      }
      eps.push({ networkId: n.NetworkID, ip: n.IPAddress ?? '', ...(n.GlobalIPv6Address ? { ip6: n.GlobalIPv6Address } : {}), mac, ifindex, ifname: hostIfs.get(ifindex)!.ifname });
    }
    return { info: c, endpoints: eps };
  }
}

/** Milliseconds per phase of one run, for the debug line. */
class Phases {
  private readonly t0 = process.hrtime.bigint();
  private last = this.t0;
  private readonly out: Record<string, number> = {};

  mark(phase: string): void {
    const now = process.hrtime.bigint();
    this.out[phase] = Math.round(Number(now - this.last) / 1e4) / 100;
    this.last = now;
  }

  ms(): Record<string, number> {
    return { ...this.out, total: this.total() };
  }

  total(): number {
    return Math.round(Number(process.hrtime.bigint() - this.t0) / 1e4) / 100;
  }
}
