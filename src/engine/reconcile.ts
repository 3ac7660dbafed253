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
  CounterKey,
  Direction,
  Endpoint,
  EndpointFlags,
  EndpointMeta,
  NetworkMeta,
  PublishFlags,
  bridgeCodec,
  counterKeyCodec,
  endpointCodec,
  hostAddrValueCodec,
  netValueCodec,
  publishKeyCodec,
  publishValueCodec,
  uplinkCodec,
  endpointMetaCodec,
  ifindexKeyCodec,
  ipKeyCodec,
  ip6KeyCodec,
  networkKeyCodec,
  networkMetaCodec,
  zeroPerCpuCounters,
} from '../platform/contract';
import type { Attachment, Dataplane, Maps } from '../platform/dataplane';
import type { BpfMap, CgroupHook } from '../platform/native';
import { formatIPv4, prefixMask } from '../domain/ipv4';
import { ipv6Mask } from '../platform/codec';
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

const DIRS = [Direction.FROM_CONTAINER, Direction.TO_CONTAINER] as const;

function sameBuf(a: Buffer | undefined, b: Buffer): boolean {
  return !!a && a.equals(b);
}

/** An IPv4 field of a network, '0.0.0.0' on an IPv6-only one. */
function v4OrNone(n: DesiredNetwork, v: string): string {
  return n.ipv4 === false || !v ? '0.0.0.0' : v;
}

export function networkFlags(n: DesiredNetwork): number {
  const routed = !!n.routed && !n.internal;
  const routed6 = !!n.routed6 && !n.internal && !!n.subnet6;
  // MASQUERADE is for the families that are not routed: IPv4's path reads
  // ROUTED first, NAT66's ROUTED6 (a nat-v4 + routed-v6 network masquerades IPv4 only)
  const natted = (n.ipv4 !== false && !routed) || (!!n.subnet6 && !routed6);
  return (
    (n.icc ? EndpointFlags.ICC : 0) |
    (n.masquerade && !n.internal && natted ? EndpointFlags.MASQUERADE : 0) |
    (n.internal ? EndpointFlags.INTERNAL : 0) |
    (routed ? EndpointFlags.ROUTED : 0) |
    (routed6 ? EndpointFlags.ROUTED6 : 0) |
    (n.subnet6 ? EndpointFlags.IPV6 : 0) |
    (n.ipv4 === false ? EndpointFlags.NO_IPV4 : 0)
  );
}

export const SOCKET_HOOKS: readonly CgroupHook[] = Object.freeze(['connect4', 'sendmsg4', 'recvmsg4', 'connect6', 'sendmsg6', 'recvmsg6']);

/**
 * Make a map hold exactly `want` among the entries `owned` says are ours:
 * puts for missing or different values, deletes for owned entries not wanted.
 */
function syncEntries(
  steps: Step[],
  map: keyof Maps,
  want: ReadonlyMap<string, { key: Buffer; value: Buffer; what: string }>,
  have: RawEntries | undefined,
  owned: (e: { key: Buffer; value: Buffer }) => boolean,
  label: (key: Buffer) => string,
): void {
  for (const [hex, w] of want) {
    const h = have?.get(hex);
    if (!h || !h.value.equals(w.value)) steps.push({ op: 'put', map, what: w.what, key: w.key, value: w.value });
  }
  for (const [hex, h] of have ?? []) {
    if (want.has(hex) || !owned(h)) continue;
    steps.push({ op: 'delete', map, what: label(h.key), key: h.key });
  }
}

/** Network ids: keep the id a network already has; new ones take the lowest free id >= 1. */
export function assignNetworkIds(desired: readonly DesiredNetwork[], current: ReadonlyMap<number, NetworkMeta>): Map<string, number> {
  const byName = new Map<string, number>();
  for (const [id, meta] of current) byName.set(meta.name, id);
  const used = new Set(current.keys());
  const out = new Map<string, number>();
  let next = 1;
  for (const n of desired) {
    const have = byName.get(n.name);
    if (have !== undefined) {
      out.set(n.name, have);
      continue;
    }
    while (used.has(next)) next++;
    used.add(next);
    out.set(n.name, next);
  }
  return out;
}

export function plan(desired: DesiredState, current: CurrentState, scope: ReadonlySet<string>): Step[] {
  for (const n of desired.networks) if (!scope.has(n.name)) throw new Error(`network ${n.name} is outside the reconcile scope`);
  const steps: Step[] = [];
  const ids = assignNetworkIds(desired.networks, current.networks);
  const desiredNet = new Map(desired.networks.map((n) => [n.name, n]));
  const netName = (id: number): string | undefined => current.networks.get(id)?.name;
  const inScope = (id: number): boolean => {
    const name = netName(id);
    return name !== undefined && scope.has(name);
  };

  // --- additions and changes --------------------------------------------------
  for (const n of desired.networks) {
    const id = ids.get(n.name)!;
    const meta: NetworkMeta = {
      name: n.name,
      bridge: n.bridge,
      subnet: v4OrNone(n, n.subnet),
      prefix_len: n.ipv4 === false ? 0 : n.prefixLen,
      gateway: v4OrNone(n, n.gateway),
      flags: networkFlags(n),
      subnet6: n.subnet6 ?? '::',
      gateway6: n.gateway6 ?? '::',
      prefix_len6: n.subnet6 ? n.prefixLen6 ?? 64 : 0,
    };
    const value = networkMetaCodec.encode(meta);
    const cur = current.networks.get(id);
    if (!cur || !networkMetaCodec.encode(cur).equals(value))
      steps.push({ op: 'put', map: 'netMeta', what: `network ${n.name} (id ${id})`, key: networkKeyCodec.encode({ network_id: id }), value });
  }

  // --- per-network facts for the packet path (berth_net) ----------------------
  if (current.net) {
    const want = new Map<string, { key: Buffer; value: Buffer; what: string }>();
    for (const n of desired.networks) {
      const id = ids.get(n.name)!;
      const key = networkKeyCodec.encode({ network_id: id });
      const value = netValueCodec.encode({
        subnet: v4OrNone(n, n.subnet),
        mask: n.ipv4 === false ? '0.0.0.0' : formatIPv4(prefixMask(n.prefixLen)),
        gateway: v4OrNone(n, n.gateway),
        flags: networkFlags(n),
        bridge_ifindex: n.bridgeIfindex ?? 0,
        gw_mac: n.bridgeMac ?? '00:00:00:00:00:00',
        subnet6: n.subnet6 ?? '::',
        mask6: n.subnet6 ? ipv6Mask(n.prefixLen6 ?? 64) : '::',
        gateway6: n.gateway6 ?? '::',
      });
      want.set(key.toString('hex'), { key, value, what: `network ${n.name} packet-path facts` });
    }
    syncEntries(steps, 'net', want, current.net, (e) => inScope(networkKeyCodec.decode(e.key).network_id) || !current.networks.has(networkKeyCodec.decode(e.key).network_id), (k) => `network id ${networkKeyCodec.decode(k).network_id} packet-path facts`);
  }

  // --- bridges: each network's choke point, programmed before its endpoints ----
  // Every bridge of the scope gets its berth_bridge entry, then its programs.
  // Bridges of other scopes are theirs; an attachment with no entry is an orphan.
  const bridgeIfindex = new Set<number>();
  if (current.bridges) {
    const want = new Map<string, { key: Buffer; value: Buffer; what: string }>();
    const bridgeNet = new Map<number, number>();
    for (const e of current.bridges.values()) bridgeNet.set(ifindexKeyCodec.decode(e.key).ifindex, bridgeCodec.decode(e.value).network_id);
    const ownedBridge = (ifindex: number): boolean => {
      const id = bridgeNet.get(ifindex);
      return id === undefined || inScope(id) || !current.networks.has(id);
    };
    for (const ifindex of bridgeNet.keys()) if (!ownedBridge(ifindex)) bridgeIfindex.add(ifindex);
    for (const n of desired.networks) {
      if (!n.bridgeIfindex) continue;
      if (bridgeIfindex.has(n.bridgeIfindex)) throw new Error(`network ${n.name}: bridge ${n.bridge} already guards network ${netName(bridgeNet.get(n.bridgeIfindex)!)}`);
      bridgeIfindex.add(n.bridgeIfindex);
      const id = ids.get(n.name)!;
      const key = ifindexKeyCodec.encode({ ifindex: n.bridgeIfindex });
      want.set(key.toString('hex'), { key, value: bridgeCodec.encode({ network_id: id, flags: networkFlags(n) }), what: `bridge ${n.bridge} guards network ${n.name}` });
    }
    syncEntries(steps, 'bridge', want, current.bridges, (e) => ownedBridge(ifindexKeyCodec.decode(e.key).ifindex), (k) => `bridge ifindex ${ifindexKeyCodec.decode(k).ifindex}`);
    for (const n of desired.networks) {
      if (!n.bridgeIfindex) continue;
      for (const d of DIRS)
        if (!current.counters.has(`${n.bridgeIfindex}:${d}`))
          steps.push({ op: 'put', map: 'counters', what: `counters bridge ${n.bridge}`, key: counterKeyCodec.encode({ ifindex: n.bridgeIfindex, direction: d }), value: Buffer.alloc(0), flag: 'noexist' });
      const have = (current.bridgeAttachments ?? []).filter((a) => a.ifindex === n.bridgeIfindex && a.live);
      const ok = (dir: 'ingress' | 'egress', progId?: number): boolean => have.some((a) => a.direction === dir && a.progId === progId);
      if (!ok('egress', current.progIds.bridgeOut) || !ok('ingress', current.progIds.bridgeIn))
        steps.push({ op: 'attachBridge', what: `choke point on bridge ${n.bridge}`, ifindex: n.bridgeIfindex });
    }
    const detached = new Set<number>();
    for (const a of current.bridgeAttachments ?? []) {
      if (bridgeIfindex.has(a.ifindex) || detached.has(a.ifindex)) continue;
      detached.add(a.ifindex);
      steps.push({ op: 'detachBridge', what: `choke point on bridge ifindex ${a.ifindex}`, ifindex: a.ifindex });
    }
  }

  const desiredIfindex = new Set<number>();
  const desiredIps = new Set<string>();
  const desiredIps6 = new Set<string>();
  for (const e of desired.endpoints) {
    const net = desiredNet.get(e.network);
    if (!net) throw new Error(`endpoint ${e.container}: network ${e.network} is not desired`);
    if (desiredIfindex.has(e.ifindex)) throw new Error(`endpoint ${e.container}: ifindex ${e.ifindex} used twice`);
    if (e.ip && desiredIps.has(e.ip)) throw new Error(`endpoint ${e.container}: address ${e.ip} used twice`);
    if (e.ip6 && desiredIps6.has(e.ip6)) throw new Error(`endpoint ${e.container}: address ${e.ip6} used twice`);
    if (e.ip6 && !net.subnet6) throw new Error(`endpoint ${e.container}: IPv6 address ${e.ip6} on network ${net.name}, which has no IPv6`);
    if (!e.ip && net.ipv4 !== false) throw new Error(`endpoint ${e.container}: no IPv4 address on network ${net.name}`);
    desiredIfindex.add(e.ifindex);
    if (e.ip) desiredIps.add(e.ip);
    if (e.ip6) desiredIps6.add(e.ip6);
    const id = ids.get(e.network)!;
    const ep: Endpoint = { addr: e.ip || '0.0.0.0', ifindex: e.ifindex, network_id: id, flags: networkFlags(net), mac: e.mac, addr6: e.ip6 ?? '::' };
    const epBuf = endpointCodec.encode(ep);
    const metaBuf = endpointMetaCodec.encode({ container: e.container, ifname: e.ifname, network_id: id });
    const ifKey = ifindexKeyCodec.encode({ ifindex: e.ifindex });
    const cur = current.endpoints.get(e.ifindex);
    const label = `endpoint ${e.container} (${e.ifname}, ifindex ${e.ifindex})`;

    for (const d of DIRS) {
      if (!current.counters.has(`${e.ifindex}:${d}`))
        steps.push({
          op: 'put',
          map: 'counters',
          what: `counters ${e.ifname} ${d === Direction.FROM_CONTAINER ? 'from' : 'to'} container`,
          key: counterKeyCodec.encode({ ifindex: e.ifindex, direction: d } as CounterKey),
          value: Buffer.alloc(0), // sized by apply() for the machine's CPU count
          flag: 'noexist',
        });
    }
    if (!cur?.meta || !sameBuf(endpointMetaCodec.encode(cur.meta), metaBuf))
      steps.push({ op: 'put', map: 'epMeta', what: label, key: ifKey, value: metaBuf });
    const hooks = current.attachments.filter((a) => a.ifindex === e.ifindex && a.live);
    const ok = (dir: 'ingress' | 'egress'): boolean =>
      hooks.some((h) => h.direction === dir && h.progId === current.progIds[dir]);
    if (!ok('ingress') || !ok('egress')) steps.push({ op: 'attach', what: label, ifindex: e.ifindex });
    if (!cur || !sameBuf(endpointCodec.encode(cur.ep), epBuf))
      steps.push({ op: 'put', map: 'epByIfindex', what: label, key: ifKey, value: epBuf });
    const curIp = e.ip ? current.byIp.get(e.ip) : undefined;
    if (e.ip && (!curIp || !sameBuf(endpointCodec.encode(curIp), epBuf)))
      steps.push({ op: 'put', map: 'epByIp', what: `address ${e.ip} -> ${e.container}`, key: ipKeyCodec.encode({ addr: e.ip }), value: epBuf });
    const curIp6 = e.ip6 ? current.byIp6?.get(e.ip6) : undefined;
    if (e.ip6 && (!curIp6 || !sameBuf(endpointCodec.encode(curIp6), epBuf)))
      steps.push({ op: 'put', map: 'epByIp6', what: `address ${e.ip6} -> ${e.container}`, key: ip6KeyCodec.encode({ addr: e.ip6 }), value: epBuf });
  }

  // --- published ports ----------------------------------------------------------
  if (desired.publish) {
    const want = new Map<string, { key: Buffer; value: Buffer; what: string }>();
    // per family: a network may be routed for IPv4 and nat for IPv6, or the other way
    const routedNets = new Set(desired.networks.filter((n) => n.routed && !n.internal).map((n) => n.name));
    const routed6Nets = new Set(desired.networks.filter((n) => n.routed6 && !n.internal && n.subnet6).map((n) => n.name));
    for (const p of desired.publish) {
      const id = ids.get(p.network);
      if (id === undefined) throw new Error(`publish ${p.hostIp}:${p.hostPort}/${p.proto}: network ${p.network} is not desired`);
      // a routed network's publish opens the container port on the container's
      // own address, whatever the host address and port (Docker's routed port
      // mapper drops them): keyed by (container address, container port)
      const routed = (p.hostIp.includes(':') ? routed6Nets : routedNets).has(p.network);
      const key = routed
        ? publishKeyCodec.encode({ host_addr: p.ip, host_port: p.port, proto: p.proto === 'tcp' ? 6 : 17 })
        : publishKeyCodec.encode({ host_addr: p.hostIp, host_port: p.hostPort, proto: p.proto === 'tcp' ? 6 : 17 });
      const hex = key.toString('hex');
      const value = publishValueCodec.encode({
        addr: p.ip,
        port: p.port,
        flags: routed ? PublishFlags.ROUTED : p.hostIp.startsWith('127.') || p.hostIp === '::1' ? PublishFlags.LOOPBACK : 0,
        ifindex: p.ifindex,
        network_id: id,
        mac: p.mac,
      });
      const prev = want.get(hex);
      if (prev && routed && prev.value.equals(value)) continue; // -p 8080:80 -p 8081:80: one container port
      if (p.hostIp.includes(':') !== p.ip.includes(':')) throw new Error(`publish ${p.hostIp}:${p.hostPort}/${p.proto}: container address ${p.ip} is not of the host address's family`);
      if (prev) throw new Error(`publish ${p.hostIp}:${p.hostPort}/${p.proto}: port already taken by ${prev.what}`);
      const what = routed ? `${p.ip}:${p.port}/${p.proto} (routed) -> ${p.container}:${p.port}` : `${p.hostIp}:${p.hostPort}/${p.proto} -> ${p.container}:${p.port}`;
      want.set(hex, { key, value, what });
    }
    // a taken port in another scope is refused before any step
    for (const [hex, w] of want) {
      const h = current.publish?.get(hex);
      if (h && !inScope(publishValueCodec.decode(h.value).network_id) && current.networks.has(publishValueCodec.decode(h.value).network_id))
        throw new Error(`publish ${w.what}: port already taken by network ${netName(publishValueCodec.decode(h.value).network_id)}`);
    }
    syncEntries(steps, 'publish', want, current.publish, (e) => {
      const id = publishValueCodec.decode(e.value).network_id;
      return inScope(id) || !current.networks.has(id);
    }, (k) => {
      const pk = publishKeyCodec.decode(k);
      return `publish ${pk.host_addr}:${pk.host_port}/${pk.proto === 6 ? 'tcp' : 'udp'}`;
    });
  }

  // --- host addresses ---------------------------------------------------------
  if (desired.hostAddrs) {
    const want = new Map<string, { key: Buffer; value: Buffer; what: string }>();
    const want6 = new Map<string, { key: Buffer; value: Buffer; what: string }>();
    for (const a of desired.hostAddrs) {
      const v6 = a.addr.includes(':');
      const key = v6 ? ip6KeyCodec.encode({ addr: a.addr }) : ipKeyCodec.encode({ addr: a.addr });
      (v6 ? want6 : want).set(key.toString('hex'), { key, value: hostAddrValueCodec.encode({ ifindex: a.ifindex, flags: 0 }), what: `host address ${a.addr}` });
    }
    syncEntries(steps, 'hostAddr', want, current.hostAddrs, () => true, (k) => `host address ${ipKeyCodec.decode(k).addr}`);
    syncEntries(steps, 'hostAddr6', want6, current.hostAddrs6, () => true, (k) => `host address ${ip6KeyCodec.decode(k).addr}`);
  }

  // --- uplinks (map entries) and served interfaces (counters and hooks) ------
  const uplinkIfindex = new Set<number>();
  if (desired.uplinks) {
    const want = new Map<string, { key: Buffer; value: Buffer; what: string }>();
    for (const u of desired.uplinks) {
      const key = ifindexKeyCodec.encode({ ifindex: u.ifindex });
      want.set(key.toString('hex'), { key, value: uplinkCodec.encode({ addr: u.addr || '0.0.0.0', flags: 0, mac: u.mac, addr6: u.addr6 ?? '::' }), what: `uplink ${u.ifname}` });
    }
    const isUplink = new Set(desired.uplinks.map((u) => u.ifindex));
    const served = new Map<number, { ifindex: number; ifname: string }>();
    for (const i of [...desired.uplinks, ...(desired.served ?? [])]) served.set(i.ifindex, i);
    for (const u of served.values()) {
      uplinkIfindex.add(u.ifindex);
      const role = isUplink.has(u.ifindex) ? 'uplink' : 'served interface';
      for (const d of DIRS)
        if (!current.counters.has(`${u.ifindex}:${d}`))
          steps.push({ op: 'put', map: 'counters', what: `counters ${role} ${u.ifname}`, key: counterKeyCodec.encode({ ifindex: u.ifindex, direction: d }), value: Buffer.alloc(0), flag: 'noexist' });
      const kinds: Array<'tc' | 'xdp'> = desired.xdp ? ['tc', 'xdp'] : ['tc'];
      for (const kind of kinds) {
        const progId = kind === 'tc' ? current.progIds.uplink : current.progIds.xdp;
        const ok = (current.uplinkAttachments ?? []).some((a) => a.ifindex === u.ifindex && a.kind === kind && a.live && a.progId === progId);
        if (!ok) steps.push({ op: 'attachUplink', what: `${kind} hook on ${role} ${u.ifname}`, ifindex: u.ifindex, kind });
      }
    }
    syncEntries(steps, 'uplink', want, current.uplinks, () => true, (k) => `uplink ifindex ${ifindexKeyCodec.decode(k).ifindex}`);
    for (const a of current.uplinkAttachments ?? []) {
      if (uplinkIfindex.has(a.ifindex) && (a.kind === 'tc' || desired.xdp) && a.live) continue;
      steps.push({ op: 'detachUplink', what: `${a.kind} hook on ifindex ${a.ifindex}`, ifindex: a.ifindex, kind: a.kind });
    }
  } else {
    for (const a of current.uplinkAttachments ?? []) uplinkIfindex.add(a.ifindex);
    for (const e of current.uplinks?.values() ?? []) uplinkIfindex.add(ifindexKeyCodec.decode(e.key).ifindex);
  }

  // --- host socket hooks (cgroup) ---------------------------------------------
  // without cgroup v2 nothing is attached (hooks pinned earlier are left as they are)
  if (desired.socketHooks !== undefined) {
    const canAttach = current.socketHooksAvailable !== false;
    for (const hook of SOCKET_HOOKS) {
      const have = (current.cgroupAttachments ?? []).find((a) => a.hook === hook);
      const progId = current.progIds.sock?.[hook];
      if (desired.socketHooks && canAttach && (!have || have.progId !== progId)) steps.push({ op: 'attachCgroup', what: `cgroup ${hook} hook`, hook });
      if (!desired.socketHooks && have) steps.push({ op: 'detachCgroup', what: `cgroup ${hook} hook`, hook });
    }
  }

  // --- removals (only inside the scope) ---------------------------------------
  const desiredIds = new Set(ids.values());
  for (const [ip, ep] of current.byIp) {
    if (desiredIps.has(ip) || !inScope(ep.network_id) && current.networks.has(ep.network_id)) continue;
    steps.push({ op: 'delete', map: 'epByIp', what: `address ${ip}`, key: ipKeyCodec.encode({ addr: ip }) });
  }
  for (const [ip, ep] of current.byIp6 ?? []) {
    if (desiredIps6.has(ip) || !inScope(ep.network_id) && current.networks.has(ep.network_id)) continue;
    steps.push({ op: 'delete', map: 'epByIp6', what: `address ${ip}`, key: ip6KeyCodec.encode({ addr: ip }) });
  }
  const removedIfindex = new Set<number>();
  for (const [ifindex, cur] of current.endpoints) {
    if (desiredIfindex.has(ifindex)) continue;
    if (!inScope(cur.ep.network_id) && current.networks.has(cur.ep.network_id)) continue;
    removedIfindex.add(ifindex);
    const label = `endpoint ${cur.meta?.container ?? '?'} (ifindex ${ifindex})`;
    steps.push({ op: 'delete', map: 'epByIfindex', what: label, key: ifindexKeyCodec.encode({ ifindex }) });
  }
  // endpoint metadata without an endpoint entry (a crash between steps)
  const knownIfindex = new Set<number>([...desiredIfindex, ...uplinkIfindex, ...bridgeIfindex]);
  for (const [ifindex, cur] of current.endpoints) {
    if (!removedIfindex.has(ifindex)) knownIfindex.add(ifindex);
    void cur;
  }
  const attachedIfindex = new Set(current.attachments.map((a) => a.ifindex));
  for (const ifindex of attachedIfindex) {
    if (knownIfindex.has(ifindex)) continue;
    steps.push({ op: 'detach', what: `hooks on ifindex ${ifindex}`, ifindex });
  }
  for (const c of current.counters) {
    const [ifindex, dir] = c.split(':').map(Number);
    if (knownIfindex.has(ifindex)) continue;
    steps.push({ op: 'delete', map: 'counters', what: `counters ifindex ${ifindex}`, key: counterKeyCodec.encode({ ifindex, direction: dir }) });
  }
  for (const [ifindex, cur] of current.endpoints) {
    if (!removedIfindex.has(ifindex) || !cur.meta) continue;
    steps.push({ op: 'delete', map: 'epMeta', what: `metadata ifindex ${ifindex}`, key: ifindexKeyCodec.encode({ ifindex }) });
  }
  for (const [id, meta] of current.networks) {
    if (!scope.has(meta.name) || desiredIds.has(id)) continue;
    steps.push({ op: 'delete', map: 'netMeta', what: `network ${meta.name} (id ${id})`, key: networkKeyCodec.encode({ network_id: id }) });
  }
  return steps;
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

/** Run the steps; on failure undo what was done, in reverse, and throw. */
export async function apply(
  dp: Dataplane,
  steps: readonly Step[],
  hooks?: { beforeStep?: (s: Step, i: number) => void },
): Promise<ApplyResult> {
  const undo: Array<() => void> = [];
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
    for (; i < steps.length; i++) {
      const s = steps[i];
      hooks?.beforeStep?.(s, i);
      switch (s.op) {
        case 'put': {
          const map = dp.maps[s.map];
          const prev = map.lookup(s.key);
          if (s.flag === 'noexist' && prev) break;
          const value = s.map === 'counters' ? zeroPerCpuCounters(dp.cpus) : s.value;
          map.update(s.key, value, s.flag ?? 'any');
          if (prev && !prev.equals(value)) invalidate(s.map, s.key);
          undo.push(prev ? () => map.update(s.key, prev) : () => void map.delete(s.key));
          break;
        }
        case 'delete': {
          const map = dp.maps[s.map];
          const prev = map.lookup(s.key);
          if (!prev) break;
          invalidate(s.map, s.key);
          map.delete(s.key);
          undo.push(() => map.update(s.key, prev, 'noexist'));
          break;
        }
        case 'attach': {
          const made = dp.attachVeth(s.ifindex);
          undo.push(() => made.forEach((d) => dp.detachHook(s.ifindex, d)));
          break;
        }
        case 'attachUplink': {
          if (dp.attachUplink(s.ifindex, s.kind)) undo.push(() => void dp.detachUplink(s.ifindex, s.kind));
          break;
        }
        case 'detachUplink': {
          dp.detachUplink(s.ifindex, s.kind);
          undo.push(() => {
            try {
              dp.attachUplink(s.ifindex, s.kind);
            } catch {
              /* interface gone */
            }
          });
          break;
        }
        case 'attachBridge': {
          const made = dp.attachBridge(s.ifindex);
          undo.push(() => dp.detachBridge(s.ifindex, made));
          break;
        }
        case 'detachBridge': {
          dp.detachBridge(s.ifindex);
          undo.push(() => {
            try {
              dp.attachBridge(s.ifindex);
            } catch {
              /* bridge gone */
            }
          });
          break;
        }
        case 'attachCgroup': {
          if (dp.attachCgroup(s.hook)) undo.push(() => void dp.detachCgroup(s.hook));
          break;
        }
        case 'detachCgroup': {
          dp.detachCgroup(s.hook);
          undo.push(() => void dp.attachCgroup(s.hook));
          break;
        }
        case 'detach': {
          dp.detachVeth(s.ifindex);
          // re-attaching a detached hook is possible only while the interface exists
          undo.push(() => {
            try {
              dp.attachVeth(s.ifindex);
            } catch {
              /* interface gone: nothing to restore */
            }
          });
          break;
        }
      }
    }
  } catch (e) {
    let rolledBack = 0;
    for (const u of undo.reverse()) {
      try {
        u();
        rolledBack++;
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
