/**
 * Standalone mode: the config file is the source of truth. Builds the
 * namespace topology (topology.ts), turns it into desired dataplane state and
 * reconciles, scoped to the file's own networks.
 */
import type { BerthConfig } from '../domain/config';
import { Dataplane, DataplaneOptions } from '../platform/dataplane';
import { InterfaceChoice, InterfaceSelection, assertServable, hostAddresses, hostInterfaces } from '../platform/hostnet';
import { enableForwarding as forwardingOn } from '../platform/sysctl';
import { ipFamily } from '../domain/ipv6';
import { expandBinding } from '../domain/publish';
import { DesiredPublish, DesiredState, readCurrent, Step } from '../engine/reconcile';
import { fileScopeId } from '../engine/owners';
import { HostFacts, buildDesired, interfacesOf } from '../engine/desired';
import { releaseScope, syncScope } from '../engine/scope';
import type { SocketHooksTarget } from '../platform/cgroup';
import * as topology from '../platform/topology';
import type { RealizedEndpoint } from '../platform/topology';

/**
 * The route lookup the masquerade path does (bpf_fib_lookup) needs IPv4
 * forwarding on the bridge the packet comes from; set it per bridge (and per
 * external link) rather than machine-wide, as Docker does with ip_forward.
 */
export async function enableForwarding(cfg: BerthConfig): Promise<void> {
  const ifs = [...cfg.networks.filter((n) => !n.internal).map((n) => n.bridge), ...cfg.externals.map((x) => x.hostIfname)];
  for (const i of ifs) {
    if (forwardingOn(4, i) === 'missing') throw new Error(`cannot enable forwarding on ${i}: no such interface`);
  }
  // IPv6 the same way, on the IPv6 networks' bridges and the externals with address6 only
  const ifs6 = [...cfg.networks.filter((n) => !n.internal && n.ipv6).map((n) => n.bridge), ...cfg.externals.filter((x) => x.address6).map((x) => x.hostIfname)];
  for (const i of ifs6) {
    if (forwardingOn(6, i) === 'missing') throw new Error(`cannot enable IPv6 forwarding on ${i}: no such interface`);
  }
}

/** The load-time settings a config gives the dataplane (and where the host socket hooks go). */
export function loadOptions(cfg: BerthConfig, pinRoot: string, fastPath?: boolean, socketHooks?: SocketHooksTarget): DataplaneOptions {
  return { pinRoot, fastPath, ctMax: cfg.settings.conntrack.max, ctUnassuredMax: cfg.settings.conntrack.unassuredMax, natPortMin: cfg.settings.nat.portMin, natPortMax: cfg.settings.nat.portMax, ...(socketHooks ? { socketHooks } : {}) };
}

export type { HostFacts } from '../engine/desired';

/** The host's interfaces and addresses (both families). */
export async function readHostFacts(): Promise<HostFacts> {
  return { interfaces: await hostInterfaces(), addresses: await hostAddresses() };
}

/** What a file says about interfaces: its uplinks and served interfaces (absent: auto-detected); each external's host side is an uplink. */
export function selectionOf(cfg: BerthConfig): InterfaceSelection {
  return {
    ...(cfg.uplinks ? { uplinks: cfg.uplinks } : {}),
    ...(cfg.interfaces ? { interfaces: cfg.interfaces } : {}),
    alwaysUplinks: cfg.externals.map((x) => x.hostIfname),
  };
}

/** The file's uplinks and served interfaces on this host (the one choice: engine/desired.ts). */
export function interfacesFor(cfg: BerthConfig, host: Pick<HostFacts, 'interfaces'>): InterfaceChoice {
  return interfacesOf(selectionOf(cfg), host);
}

/** Refuses a file that names an interface berth cannot serve (before anything changes). */
export async function checkInterfaces(cfg: BerthConfig): Promise<void> {
  assertServable(interfacesFor(cfg, { interfaces: await hostInterfaces() }));
}

/**
 * The desired state of a file. Each binding gives one publish entry per
 * family it serves on its network (expandBinding: `8080:80` on a dual-stack
 * network is '0.0.0.0' to the container's ip and '::' to its ip6).
 */
export function desiredFrom(cfg: BerthConfig, endpoints: readonly RealizedEndpoint[], host?: HostFacts): DesiredState {
  const bridgeOf = new Map((host?.interfaces ?? []).map((i) => [i.ifname, i]));
  const epOf = new Map(endpoints.map((e) => [e.container, e]));
  const netOf = new Map(cfg.networks.map((n) => [n.name, n]));
  const publish: DesiredPublish[] = [];
  for (const c of cfg.containers) {
    const e = epOf.get(c.name);
    const n = netOf.get(c.network);
    if (!e || !n) continue;
    for (const b of c.publish ?? []) {
      const hostIps = expandBinding(b, { ipv4: n.ipv4 !== false, ipv6: n.ipv6 === true && e.ip6 !== undefined });
      for (const hostIp of hostIps) {
        const ip = ipFamily(hostIp) === 6 ? e.ip6! : e.ip;
        publish.push({ hostIp, hostPort: b.hostPort, proto: b.proto, container: c.name, network: c.network, ip, port: b.containerPort, ifindex: e.hostIfindex, mac: e.mac });
      }
    }
  }
  const networks = cfg.networks.map((n) => ({
    name: n.name,
    bridge: n.bridge,
    subnet: n.subnet.addr,
    prefixLen: n.subnet.prefixLen,
    gateway: n.gateway,
    ...(n.ipv6 ? { subnet6: n.subnet6!.addr, prefixLen6: n.subnet6!.prefixLen, gateway6: n.gateway6! } : {}),
    ...(n.ipv4 === false ? { ipv4: false } : {}),
    icc: n.icc,
    masquerade: n.masquerade,
    internal: n.internal,
    routed: n.gatewayMode === 'routed',
    ...(n.ipv6 && n.gatewayMode6 === 'routed' ? { routed6: true } : {}),
    bridgeIfindex: bridgeOf.get(n.bridge)?.ifindex ?? 0,
    bridgeMac: bridgeOf.get(n.bridge)?.mac ?? '00:00:00:00:00:00',
  }));
  const eps = endpoints.map((e) => ({
    container: e.container,
    network: e.network,
    ip: e.ip,
    ...(e.ip6 ? { ip6: e.ip6 } : {}),
    mac: e.mac,
    ifindex: e.hostIfindex,
    ifname: e.hostIfname,
  }));
  const socketHooks = cfg.containers.some((c) => (c.publish ?? []).length > 0);
  return buildDesired({ networks, endpoints: eps, publish, socketHooks }, selectionOf(cfg), host).desired;
}

export function scopeOf(cfg: BerthConfig): Set<string> {
  return new Set(cfg.networks.map((n) => n.name));
}

export interface SyncResult {
  endpoints: RealizedEndpoint[];
  steps: Step[];
  /** interfaces the file names that cannot be served (L3 devices), left out */
  refused: InterfaceChoice['refused'];
  /** tracked flows flushed because an endpoint or a publish they point at changed or went (conntrack.ts) */
  flushed: number;
}

/** Program the dataplane for what exists of the config now (no topology changes). */
export async function syncDataplane(dp: Dataplane, cfg: BerthConfig, opts: { xdp?: boolean; policy?: string } = {}): Promise<SyncResult> {
  const { endpoints } = await topology.describeAll(cfg);
  const host = await readHostFacts();
  const desired = { ...desiredFrom(cfg, endpoints, host), xdp: opts.xdp };
  const { steps, flushed } = await syncScope(dp, desired, { id: fileScopeId(scopeOf(cfg)), scope: scopeOf(cfg), present: presentIn(host), policy: opts.policy });
  return { endpoints, steps, refused: interfacesFor(cfg, host).refused, flushed };
}

/** Is ifindex still the interface named so on this host (another scope's claim is checked against it). */
export function presentIn(host: Pick<HostFacts, 'interfaces'>): (ifindex: number, ifname: string) => boolean {
  const byIndex = new Map(host.interfaces.map((i) => [i.ifindex, i.ifname]));
  return (ifindex, ifname) => byIndex.get(ifindex) === ifname;
}

export interface UpOptions {
  pinRoot: string;
  fastPath?: boolean;
  startCommands?: boolean;
  xdp?: boolean;
  /** where the host socket hooks go (default: found in /proc/self/mountinfo) */
  socketHooks?: SocketHooksTarget;
}

/** `berth up`: topology, then dataplane. A dataplane failure leaves the topology (it works without berth). */
export async function up(cfg: BerthConfig, opts: UpOptions): Promise<SyncResult> {
  await checkInterfaces(cfg);
  await topology.up(cfg, { startCommands: opts.startCommands ?? true });
  await enableForwarding(cfg);
  const dp = await Dataplane.openOrLoad(loadOptions(cfg, opts.pinRoot, opts.fastPath, opts.socketHooks));
  try {
    return await syncDataplane(dp, cfg, { xdp: opts.xdp });
  } finally {
    dp.close();
  }
}

/**
 * `berth down`: take the file's endpoints out of the dataplane, remove the
 * topology, and unpin the dataplane when nothing else is left in it.
 */
export async function down(cfg: BerthConfig, opts: { pinRoot: string }): Promise<{ removed: string[]; skipped: string[]; unpinned: boolean }> {
  let unpinned = false;
  if (Dataplane.isPinned(opts.pinRoot)) {
    const dp = Dataplane.openPinned(opts.pinRoot);
    try {
      // the shared resources (socket hooks, uplinks, host addresses, the policy) stay while another scope claims them
      const { othersLeft } = await releaseScope(dp, { id: fileScopeId(scopeOf(cfg)), scope: scopeOf(cfg), present: presentIn({ interfaces: await hostInterfaces() }) });
      const left = await readCurrent(dp);
      unpinned = left.networks.size === 0 && left.endpoints.size === 0 && !othersLeft;
    } finally {
      dp.close();
    }
    if (unpinned) Dataplane.reset(opts.pinRoot);
  }
  const res = await topology.down(cfg);
  return { ...res, unpinned };
}
