/**
 * Docker mode: follow dockerd and keep berth's dataplane in step with its
 * bridge networks.
 *
 * On start (and on every reconnect) the follower opens the /events stream
 * first and then lists everything, so no change falls between the list and
 * the stream. Every relevant event (container start/die/destroy, network
 * create/destroy/connect/disconnect) schedules a full resync: list networks
 * and running containers, find each endpoint's host-side veth, build the
 * desired state (desired.ts) and reconcile it, scoped to Docker's networks
 * (`docker:<name>`, plus any `docker:` network still pinned, so stale ones go).
 * Resyncs never overlap; events that arrive during one coalesce into one more.
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
import { readCurrent, Step } from '../../engine/reconcile';
import { syncScope } from '../../engine/scope';
import { SyncLoop } from '../../engine/loop';
import type { DesiredNetwork } from '../../engine/reconcile';
import { HostFacts, presentIn, readHostFacts } from '../standalone';
import type { DockerClient, DockerContainer, DockerEvent } from './client';
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
  /** ms between full resyncs even without events (default 5000) */
  intervalMs?: number;
}

export interface FollowerStatus {
  connected: boolean;
  lastOk: number;
  lastError: string;
  events: number;
  resyncs: number;
  reconnects: number;
  /** tracked flows flushed by resyncs because an endpoint or publish they point at changed or went */
  flushed: number;
  skipped: DockerDesired['skipped'];
  managed: string[];
  /** managed network (Docker name) -> its families: 'ipv4', 'ipv6' or 'ipv4,ipv6' */
  families: Record<string, string>;
}

export class DockerFollower {
  private stopped = false;
  private abort?: AbortController;
  private readonly sync: SyncLoop;
  private loop?: Promise<void>;
  private readonly vethCache = new Map<string, number>();
  private readonly forwardingSet = new Set<string>();
  readonly status: FollowerStatus = { connected: false, lastOk: 0, lastError: '', events: 0, resyncs: 0, reconnects: 0, flushed: 0, skipped: [], managed: [], families: {} };
  /** the last desired state (the policy resolves names against it) */
  last?: DockerDesired;
  private waiters: Array<() => void> = [];
  private refusedSeen = '';
  /** the warnings of the last resync: one that repeats every resync is logged once */
  private warnedLast = new Set<string>();

  constructor(private readonly opts: FollowerOptions) {
    this.sync = new SyncLoop(() => this.resyncOnce(), opts.intervalMs ?? 5000);
  }

  /** Connect, list, program; then follow events in the background. Resolves after the first resync attempt. */
  async start(): Promise<void> {
    const first = new Promise<void>((r) => this.waiters.push(r));
    this.loop = this.eventLoop();
    this.sync.start();
    // bounded: an unreachable dockerd must not hold up the metrics server
    await Promise.race([first, new Promise((r) => setTimeout(r, 10000).unref())]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    await this.loop?.catch(() => undefined);
    await this.sync.stop();
  }

  private async eventLoop(): Promise<void> {
    let backoff = 200;
    while (!this.stopped) {
      this.abort = new AbortController();
      try {
        await this.opts.client.events(
          (e) => {
            if (!isRelevant(e)) return;
            this.status.events++;
            void this.resync();
          },
          {
            signal: this.abort.signal,
            onOpen: () => {
              if (!this.status.connected) log('info', 'docker connected', { socket: this.opts.client.socketPath });
              this.status.connected = true;
              backoff = 200;
              void this.resync();
            },
          },
        );
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

  /** Full resync now; concurrent calls coalesce into at most one more run (engine/loop.ts). */
  resync(): Promise<void> {
    return this.sync.trigger().finally(() => this.release());
  }

  private async resyncOnce(): Promise<void> {
    if (this.stopped) return;
    const started = process.hrtime.bigint();
    let steps: Step[] = [];
    try {
      const client = this.opts.client;
      const [networks, summaries] = await Promise.all([client.networks(), client.containers()]);
      const infos: DockerContainer[] = [];
      for (let i = 0; i < summaries.length; i += 16) {
        const batch = await Promise.all(summaries.slice(i, i + 16).map((s) => client.container(s.Id)));
        for (const c of batch) if (c && c.State.Running) infos.push(c);
      }
      const host = await readHostFacts();
      const resolved = await Promise.all(infos.map((c) => this.resolve(c, host)));
      // forget the veths of namespaces that are gone
      const live = new Set(infos.map((c) => c.NetworkSettings.SandboxKey ?? ''));
      for (const k of this.vethCache.keys()) if (!live.has(k.slice(0, k.lastIndexOf('|')))) this.vethCache.delete(k);
      const warnedNow = new Set<string>();
      const warn = (msg: string, f: Record<string, unknown>): void => {
        const k = `${msg} ${JSON.stringify(f)}`;
        if (!this.warnedLast.has(k) && !warnedNow.has(k)) log('warn', msg, f);
        warnedNow.add(k);
      };
      const dd = desiredFromDocker(networks, resolved, this.opts.settings, host, warn);
      this.warnedLast = warnedNow;
      const refused = dd.refused.map((x) => x.reason).join('; ');
      if (refused && refused !== this.refusedSeen) log('warn', 'interfaces left out', { refused: dd.refused.map((x) => ({ interface: x.ifname, from: x.from, reason: x.reason })) });
      this.refusedSeen = refused;
      await this.enableForwarding(dd);
      const current = await readCurrent(this.opts.dp);
      const scope = new Set<string>(dd.managed.keys());
      for (const m of current.networks.values()) if (m.name.startsWith(NETWORK_PREFIX)) scope.add(m.name);
      const res = await syncScope(this.opts.dp, { ...dd.desired, xdp: this.opts.xdp }, { id: DOCKER_SCOPE, scope, present: presentIn(host), policy: this.opts.policyFile?.() });
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
      await this.opts.afterSync?.(dd);
      if (steps.length)
        log('info', 'reconciled with docker', { steps: steps.length, ms: Number(process.hrtime.bigint() - started) / 1e6, flushed, what: steps.map((s) => `${s.op} ${s.what}`) });
    } catch (e) {
      this.status.lastError = (e as Error).message;
      log('error', 'docker resync failed; the dataplane is left as it was', { error: this.status.lastError });
    }
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
