/**
 * From desired state to map entries and attachments.
 *
 * plan() is pure: it compares the desired networks/endpoints with the state
 * read back from the pinned maps and returns the ordered steps that make the
 * kernel match (empty when it already does: "check"). apply() runs the steps
 * and, if one fails, undoes the ones already done in reverse order, so a
 * half-done change never stays behind. Because the current state is always
 * read from the pinned maps, a controller that died mid-way resumes simply by
 * planning again.
 *
 * Scope: a caller manages a set of network names (the networks of one config
 * file, or Docker's). Entries of networks outside that scope are never touched.
 */
import {
  Endpoint,
  EndpointMeta,
  NetworkMeta,
  counterKeyCodec,
  endpointCodec,
  endpointMetaCodec,
  ifindexKeyCodec,
  ipKeyCodec,
  ip6KeyCodec,
  networkKeyCodec,
  networkMetaCodec,
  publishKeyCodec,
} from '../platform/contract';
import type { Attachment, Dataplane, Maps } from '../platform/dataplane';
import { planContext } from './reconcilers/common';
import { planNetworks, planNetworkRemovals } from './reconcilers/networks';
import { planBridges } from './reconcilers/bridges';
import { planEndpoints, planEndpointRemovals } from './reconcilers/endpoints';
import { planPublish } from './reconcilers/publish';
import { planHostAddrs } from './reconcilers/hostaddrs';
import { planUplinks } from './reconcilers/uplinks';
import { planSocketHooks } from './reconcilers/sockets';
import { Undo, runStep } from './steps';
import { BATCH_MIN, BatchStepError, runBatch, runLength } from './batch';
import type { BpfMap, CgroupHook } from '../platform/native';
import { warnSocketHooksUnavailableOnce } from '../platform/cgroup';
import { flushInvalidated, publishRef } from './conntrack';

export interface DesiredNetwork {
  name: string;
  bridge: string;
  subnet: string;
  prefixLen: number;
  gateway: string;
  icc: boolean;
  masquerade?: boolean;
  internal?: boolean;
  /**
   * gateway_mode_ipv4=routed: no NAT; its containers are reachable on their
   * own addresses, on their published container ports (the host port is
   * ignored) and by ICMP (BERTH_EP_ROUTED, lib/routed.h)
   */
  routed?: boolean;
  /**
   * gateway_mode_ipv6=routed, the same for IPv6 (on a network with subnet6;
   * each family has its own mode): no NAT66; its containers are reachable on
   * their own addr6, on their published container ports and by ICMPv6
   * (BERTH_EP_ROUTED6, lib/routed6.h)
   */
  routed6?: boolean;
  /**
   * IPv6 (issue 12): the network's IPv6 subnet ("fd00:1::", prefix 64) and
   * gateway (the bridge's address), all three or none. ipv4 false: an
   * IPv6-only network (Docker's --ipv4=false): subnet/prefixLen/gateway are
   * then ignored ('' / 0) and no IPv4 reaches or leaves its containers.
   */
  subnet6?: string;
  prefixLen6?: number;
  gateway6?: string;
  /** undefined = true */
  ipv4?: boolean;
  /** the bridge's ifindex and MAC (for berth_net); 0 / zero MAC when unknown */
  bridgeIfindex?: number;
  bridgeMac?: string;
}

export interface DesiredPublish {
  /**
   * '0.0.0.0' = any IPv4 host address, '::' = any IPv6 host address; the
   * family of hostIp is the family of the entry, and `ip` is the container's
   * address in that family. One `-p 8080:80` on a dual-stack network gives two
   * entries ('0.0.0.0' with the IPv4 address, '::' with the IPv6 one).
   */
  hostIp: string;
  hostPort: number;
  proto: 'tcp' | 'udp';
  container: string;
  network: string;
  ip: string;
  port: number;
  ifindex: number;
  mac: string;
}

export interface DesiredUplink {
  ifindex: number;
  ifname: string;
  addr: string;
  /** the uplink's global IPv6 address, NAT66's source (undefined: none, IPv6 is not masqueraded out of it) */
  addr6?: string;
  mac: string;
}

export interface DesiredEndpoint {
  container: string;
  network: string;
  /** '' on an IPv6-only network */
  ip: string;
  /** the container's IPv6 address on an IPv6 network (undefined: none) */
  ip6?: string;
  mac: string;
  ifindex: number;
  ifname: string;
}

export interface DesiredState {
  networks: readonly DesiredNetwork[];
  endpoints: readonly DesiredEndpoint[];
  /** published ports of the scope's containers (undefined: leave the map alone) */
  publish?: readonly DesiredPublish[];
  /** the host's local addresses (IPv4 and IPv6), the whole set (undefined: leave the map alone) */
  hostAddrs?: readonly { addr: string; ifindex: number }[];
  /** uplinks (berth_uplink: masquerade addresses), the whole set (undefined: leave them alone) */
  uplinks?: readonly DesiredUplink[];
  /**
   * the served interfaces: berth_up_in (and XDP) on each, the whole set, the
   * uplinks included (undefined with uplinks given: the uplinks alone)
   */
  served?: readonly { ifindex: number; ifname: string }[];
  /** attach the XDP program to the served interfaces too */
  xdp?: boolean;
  /** attach the cgroup socket hooks (undefined: leave them alone) */
  socketHooks?: boolean;
}

/** Map entries by hex key, as read back from a map. */
export type RawEntries = ReadonlyMap<string, { key: Buffer; value: Buffer }>;

export interface CurrentEndpoint {
  ep: Endpoint;
  meta?: EndpointMeta;
}

export interface CurrentState {
  networks: ReadonlyMap<number, NetworkMeta>;
  endpoints: ReadonlyMap<number, CurrentEndpoint>; // by ifindex
  byIp: ReadonlyMap<string, Endpoint>;
  /** berth_ep_by_ip6 (undefined: empty) */
  byIp6?: ReadonlyMap<string, Endpoint>;
  counters: ReadonlySet<string>; // `${ifindex}:${direction}`
  /** ifindex -> attached hooks with the program ids they run */
  attachments: ReadonlyArray<Pick<Attachment, 'ifindex' | 'direction' | 'progId' | 'live'>>;
  progIds: {
    ingress: number;
    egress: number;
    uplink?: number;
    xdp?: number;
    bridgeOut?: number;
    bridgeIn?: number;
    sock?: Partial<Record<CgroupHook, number>>;
  };
  net?: RawEntries;
  publish?: RawEntries;
  hostAddrs?: RawEntries;
  hostAddrs6?: RawEntries;
  uplinks?: RawEntries;
  uplinkAttachments?: ReadonlyArray<{ ifindex: number; kind: 'tc' | 'xdp'; progId: number; live: boolean }>;
  /** berth_bridge entries (undefined: leave the bridges alone) */
  bridges?: RawEntries;
  bridgeAttachments?: ReadonlyArray<{ ifindex: number; direction: 'ingress' | 'egress'; progId: number; live: boolean }>;
  cgroupAttachments?: ReadonlyArray<{ hook: CgroupHook; progId: number }>;
  /** false: no cgroup v2 to attach the socket hooks to (undefined: available) */
  socketHooksAvailable?: boolean;
}

export type Step =
  | { op: 'put'; map: keyof Maps; what: string; key: Buffer; value: Buffer; flag?: 'noexist' }
  | { op: 'delete'; map: keyof Maps; what: string; key: Buffer }
  | { op: 'attach'; what: string; ifindex: number }
  | { op: 'detach'; what: string; ifindex: number }
  | { op: 'attachUplink'; what: string; ifindex: number; kind: 'tc' | 'xdp' }
  | { op: 'detachUplink'; what: string; ifindex: number; kind: 'tc' | 'xdp' }
  | { op: 'attachBridge'; what: string; ifindex: number }
  | { op: 'detachBridge'; what: string; ifindex: number }
  | { op: 'attachCgroup'; what: string; hook: CgroupHook }
  | { op: 'detachCgroup'; what: string; hook: CgroupHook };

export { SOCKET_HOOKS } from './reconcilers/sockets';
export { assignNetworkIds, networkFlags } from './reconcilers/common';

/**
 * The ordered steps that make the kernel match `desired` for `scope`: one
 * small reconciler per resource (src/engine/reconcilers/), run in the order
 * that is safe for packets in flight. A network's metadata and choke point
 * come before its endpoints; an endpoint's counters and metadata before its
 * hooks, its hooks before the forwarding entries that lead to it; publishes
 * after the endpoints they point at; the shared resources (host addresses,
 * uplinks, socket hooks) next; then removals the other way round: forwarding
 * entries, hooks, what only hooks read, and the networks last.
 */
export function plan(desired: DesiredState, current: CurrentState, scope: ReadonlySet<string>): Step[] {
  for (const n of desired.networks) if (!scope.has(n.name)) throw new Error(`network ${n.name} is outside the reconcile scope`);
  const ctx = planContext(desired, current, scope);
  planNetworks(ctx);
  planBridges(ctx);
  planEndpoints(ctx);
  planPublish(ctx);
  planHostAddrs(ctx);
  planUplinks(ctx);
  planSocketHooks(ctx);
  planEndpointRemovals(ctx);
  planNetworkRemovals(ctx);
  return ctx.steps;
}

/** Read the dataplane's current state back from its pinned maps and links. */
export async function readCurrent(dp: Dataplane): Promise<CurrentState> {
  const networks = new Map<number, NetworkMeta>();
  for (const [k, v] of await dp.maps.netMeta.dump()) networks.set(networkKeyCodec.decode(k).network_id, networkMetaCodec.decode(v));
  const metas = new Map<number, EndpointMeta>();
  for (const [k, v] of await dp.maps.epMeta.dump()) metas.set(ifindexKeyCodec.decode(k).ifindex, endpointMetaCodec.decode(v));
  const endpoints = new Map<number, CurrentEndpoint>();
  for (const [k, v] of await dp.maps.epByIfindex.dump()) {
    const ifindex = ifindexKeyCodec.decode(k).ifindex;
    endpoints.set(ifindex, { ep: endpointCodec.decode(v), meta: metas.get(ifindex) });
  }
  // metadata whose endpoint entry is missing still belongs to a (half-made) endpoint
  for (const [ifindex, meta] of metas) {
    if (!endpoints.has(ifindex))
      endpoints.set(ifindex, { ep: { addr: '0.0.0.0', ifindex, network_id: meta.network_id, flags: 0, mac: '00:00:00:00:00:00' }, meta });
  }
  const byIp = new Map<string, Endpoint>();
  for (const [k, v] of await dp.maps.epByIp.dump()) byIp.set(ipKeyCodec.decode(k).addr, endpointCodec.decode(v));
  const byIp6 = new Map<string, Endpoint>();
  for (const [k, v] of await dp.maps.epByIp6.dump()) byIp6.set(ip6KeyCodec.decode(k).addr, endpointCodec.decode(v));
  const counters = new Set<string>();
  for (const k of dp.maps.counters.keys()) {
    const ck = counterKeyCodec.decode(k);
    counters.add(`${ck.ifindex}:${ck.direction}`);
  }
  const raw = async (m: BpfMap): Promise<RawEntries> => new Map((await m.dump()).map(([key, value]) => [key.toString('hex'), { key, value }]));
  return {
    networks,
    endpoints,
    byIp,
    byIp6,
    counters,
    attachments: dp.attachments(),
    progIds: {
      ingress: dp.progs.ingress.id,
      egress: dp.progs.egress.id,
      uplink: dp.progs.uplink.id,
      xdp: dp.progs.xdp.id,
      bridgeOut: dp.progs.bridgeOut.id,
      bridgeIn: dp.progs.bridgeIn.id,
      sock: {
        connect4: dp.progs.sockConnect.id,
        sendmsg4: dp.progs.sockSend.id,
        recvmsg4: dp.progs.sockRecv.id,
        connect6: dp.progs.sockConnect6.id,
        sendmsg6: dp.progs.sockSend6.id,
        recvmsg6: dp.progs.sockRecv6.id,
      },
    },
    net: await raw(dp.maps.net),
    publish: await raw(dp.maps.publish),
    hostAddrs: await raw(dp.maps.hostAddr),
    hostAddrs6: await raw(dp.maps.hostAddr6),
    uplinks: await raw(dp.maps.uplink),
    uplinkAttachments: dp.uplinkAttachments(),
    bridges: await raw(dp.maps.bridge),
    bridgeAttachments: dp.bridgeAttachments(),
    cgroupAttachments: dp.cgroupAttachments(),
    socketHooksAvailable: dp.socketHooks.available,
  };
}

export interface ApplyResult {
  applied: number;
  steps: Step[];
  /** tracked flows deleted because their endpoint or publish changed */
  flushed: number;
}

export class ReconcileError extends Error {
  constructor(
    message: string,
    readonly step: Step,
    readonly rolledBack: number,
    override readonly cause: unknown,
  ) {
    super(message);
    this.name = 'ReconcileError';
  }
}

/**
 * Run the steps; on failure undo what was done, in reverse, and throw. A run
 * of BATCH_MIN or more consecutive puts (or deletes) on one map goes as one
 * batch on the thread pool (engine/batch.ts), in plan()'s order: every other
 * step (attach, detach, ...) is a barrier between runs. With hooks.beforeStep
 * every step runs one by one, so the hook sees each before it runs.
 */
export async function apply(
  dp: Dataplane,
  steps: readonly Step[],
  hooks?: { beforeStep?: (s: Step, i: number) => void },
): Promise<ApplyResult> {
  const undo: Undo[] = [];
  // how many steps one undo stands for (a batch's); 1 when absent
  const weights = new Map<Undo, number>();
  // what tracked flows may still point at once the steps are done (see conntrack.ts)
  const addresses = new Set<string>();
  const publishes = new Set<string>();
  const invalidate = (map: keyof Maps, key: Buffer): void => {
    if (map === 'epByIp') addresses.add(ipKeyCodec.decode(key).addr);
    if (map === 'epByIp6') addresses.add(ip6KeyCodec.decode(key).addr);
    if (map === 'publish') {
      const k = publishKeyCodec.decode(key);
      publishes.add(publishRef(k.proto, k.host_addr, k.host_port));
    }
  };
  let i = 0;
  try {
    while (i < steps.length) {
      const n = hooks?.beforeStep ? 1 : runLength(steps, i);
      if (n >= BATCH_MIN) {
        try {
          await runBatch(dp, steps.slice(i, i + n) as Array<Extract<Step, { op: 'put' | 'delete' }>>, undo, weights, invalidate);
        } catch (e) {
          if (!(e instanceof BatchStepError)) throw e;
          i += e.index;
          throw e.cause;
        }
        i += n;
        continue;
      }
      for (const end = i + n; i < end; i++) {
        const s = steps[i];
        hooks?.beforeStep?.(s, i);
        runStep(dp, s, undo, invalidate);
      }
    }
  } catch (e) {
    let rolledBack = 0;
    for (const u of undo.reverse()) {
      try {
        await u();
        rolledBack += weights.get(u) ?? 1;
      } catch {
        /* keep undoing the rest */
      }
    }
    const s = steps[i];
    throw new ReconcileError(`reconcile failed at step ${i + 1}/${steps.length} (${s.op} ${s.what}): ${(e as Error).message}; rolled back ${rolledBack} step(s)`, s, rolledBack, e);
  }
  // after the new state is in place: a packet of a flushed flow now meets it
  const flushed = await flushInvalidated(dp.maps.ct, { addresses, publishes });
  return { applied: steps.length, steps: [...steps], flushed };
}

/**
 * plan() against `current`, saying once per process when the host socket
 * hooks are wanted but have no cgroup v2 to go to (the rest is planned as usual).
 */
export function planWith(dp: Pick<Dataplane, 'socketHooks'>, desired: DesiredState, current: CurrentState, scope: ReadonlySet<string>): Step[] {
  if (desired.socketHooks) warnSocketHooksUnavailableOnce(dp.socketHooks);
  return plan(desired, current, scope);
}

/** plan + apply against what is pinned now. */
export async function reconcile(dp: Dataplane, desired: DesiredState, scope: ReadonlySet<string>): Promise<ApplyResult> {
  const steps = planWith(dp, desired, await readCurrent(dp), scope);
  return apply(dp, steps);
}
