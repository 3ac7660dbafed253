/**
 * Docker's view (networks, running containers, their endpoints and published
 * ports) turned into berth's DesiredState. Pure: no I/O; the follower
 * gathers the facts and this decides what they mean.
 *
 * Mapping, per Docker bridge network (other drivers are left alone):
 *   name      `docker:<Name>` (so Docker's networks never clash with a
 *             standalone file's); longer than 63 bytes: shortened + id
 *   bridge    option com.docker.network.bridge.name, else docker0 for the
 *             default network and br-<id12> for the others
 *   icc       option ...bridge.enable_icc (default true); the default
 *             bridge's comes from berth's settings, since dockerd refuses
 *             --icc=false together with --iptables=false
 *   masquerade option ...bridge.enable_ip_masquerade (default true);
 *             gateway_mode_ipv4=routed turns it off; the default bridge's
 *             from berth's settings (dockerd reports false with --iptables=false)
 *   routed    gateway_mode_ipv4=routed: no NAT; the published container ports
 *             open on the container's address, host ports ignored (as
 *             Docker's routed port mapper does); nat-unprotected is taken as
 *             nat (berth keeps the per-port filtering)
 *   internal  Internal, or gateway_mode_ipv4=isolated
 *   publish   NetworkSettings.Ports of each running container, bound to its
 *             endpoint on the network it was started on (HostConfig.NetworkMode),
 *             else its first non-internal network by name; an empty HostIp
 *             gets the network's host_binding_ipv4, else berth's default
 *             bind address (dockerd --ip)
 */
import { parseIPv4, formatIPv4, prefixMask } from '../ipv4';
import type { HostFacts } from '../standalone';
import { InterfaceChoice, InterfaceSelection, chooseInterfaces } from '../hostnet';
import { bindingsFromDockerPorts } from '../publish';
import type { DesiredEndpoint, DesiredNetwork, DesiredPublish, DesiredState, DesiredUplink } from '../reconcile';
import type { DockerContainer, DockerNetwork } from './client';

export const NETWORK_PREFIX = 'docker:';
const NAME_MAX = 63; // BERTH_NAME_LEN - 1

export const Opt = Object.freeze({
  BRIDGE_NAME: 'com.docker.network.bridge.name',
  ICC: 'com.docker.network.bridge.enable_icc',
  MASQ: 'com.docker.network.bridge.enable_ip_masquerade',
  HOST_BINDING: 'com.docker.network.bridge.host_binding_ipv4',
  DEFAULT_BRIDGE: 'com.docker.network.bridge.default_bridge',
  GATEWAY_MODE: 'com.docker.network.bridge.gateway_mode_ipv4',
} as const);

/** Daemon-wide defaults that dockerd does not expose through the API. */
export interface DockerSettings {
  /** icc on the default bridge (dockerd --icc); default true */
  defaultBridgeIcc: boolean;
  /**
   * masquerade on the default bridge (dockerd --ip-masq): dockerd forces its
   * enable_ip_masquerade option to false when --iptables=false; default true
   */
  defaultBridgeMasquerade?: boolean;
  /** host address for `-p PORT:PORT` without one (dockerd --ip); default 0.0.0.0 */
  defaultBindIp: string;
  /** uplink interface names (masquerade addresses); undefined: every outside-facing interface */
  uplinks?: readonly string[];
  /** served interface names besides the uplinks (published ports); undefined: every outside-facing interface */
  interfaces?: readonly string[];
}

export const DEFAULT_DOCKER_SETTINGS: DockerSettings = Object.freeze({ defaultBridgeIcc: true, defaultBindIp: '0.0.0.0' });

/** A running container's endpoint with its host-side veth found. */
export interface ResolvedEndpoint {
  networkId: string;
  ip: string;
  mac: string;
  ifindex: number;
  ifname: string;
}

export interface ResolvedContainer {
  info: DockerContainer;
  /** endpoints whose host veth was found (others are skipped until found) */
  endpoints: readonly ResolvedEndpoint[];
}

export interface SkippedNetwork {
  name: string;
  driver: string;
  reason: string;
}

export interface DockerDesired {
  desired: DesiredState;
  /** berth network name -> Docker network */
  managed: ReadonlyMap<string, { docker: DockerNetwork; net: DesiredNetwork }>;
  skipped: readonly SkippedNetwork[];
  /** container name -> endpoint addresses (for the policy's `container:` rules) */
  containerIps: ReadonlyMap<string, string[]>;
  /** docker network name -> "subnet/len" (for the policy's `network:` rules) */
  networkSubnets: ReadonlyMap<string, string>;
  /** named interfaces that cannot be served (L3 devices), left out */
  refused: InterfaceChoice['refused'];
}

export function berthNetworkName(n: Pick<DockerNetwork, 'Name' | 'Id'>): string {
  const full = NETWORK_PREFIX + n.Name;
  if (Buffer.byteLength(full) <= NAME_MAX) return full;
  return `${NETWORK_PREFIX}${n.Name.slice(0, 40)}~${n.Id.slice(0, 12)}`;
}

export function containerName(c: Pick<DockerContainer, 'Name' | 'Id'>): string {
  const n = (c.Name || c.Id.slice(0, 12)).replace(/^\//, '');
  return Buffer.byteLength(n) <= NAME_MAX ? n : `${n.slice(0, 48)}~${c.Id.slice(0, 12)}`;
}

export function isDefaultBridge(n: DockerNetwork): boolean {
  return n.Options?.[Opt.DEFAULT_BRIDGE] === 'true' || (n.Name === 'bridge' && n.Driver === 'bridge');
}

export function bridgeNameOf(n: DockerNetwork): string {
  const opt = n.Options?.[Opt.BRIDGE_NAME];
  if (opt) return opt;
  return isDefaultBridge(n) ? 'docker0' : `br-${n.Id.slice(0, 12)}`;
}

function boolOpt(v: string | undefined, dflt: boolean): boolean {
  if (v === undefined || v === '') return dflt;
  return !['false', '0', 'no', 'off'].includes(v.toLowerCase());
}

/** The IPv4 subnet of a network's IPAM config, or undefined. */
export function ipv4Subnet(n: DockerNetwork): { addr: string; prefixLen: number; gateway?: string } | undefined {
  for (const c of n.IPAM?.Config ?? []) {
    const m = /^([0-9.]+)\/(\d{1,2})$/.exec(c.Subnet ?? '');
    if (!m) continue;
    const a = parseIPv4(m[1]!);
    const len = Number(m[2]);
    if (a === null || len > 32) continue;
    const base = formatIPv4((a & prefixMask(len)) >>> 0);
    const gw = c.Gateway && parseIPv4(c.Gateway.replace(/\/\d+$/, '')) !== null ? c.Gateway.replace(/\/\d+$/, '') : undefined;
    return { addr: base, prefixLen: len, gateway: gw };
  }
  return undefined;
}

/** Decide which Docker networks berth manages and with which settings. */
export function networksFrom(
  networks: readonly DockerNetwork[],
  settings: DockerSettings,
  host?: HostFacts,
): { managed: Map<string, { docker: DockerNetwork; net: DesiredNetwork }>; skipped: SkippedNetwork[] } {
  const managed = new Map<string, { docker: DockerNetwork; net: DesiredNetwork }>();
  const skipped: SkippedNetwork[] = [];
  const ifs = new Map((host?.interfaces ?? []).map((i) => [i.ifname, i]));
  for (const n of [...networks].sort((a, b) => a.Name.localeCompare(b.Name))) {
    if (n.Driver !== 'bridge') {
      skipped.push({ name: n.Name, driver: n.Driver || 'none', reason: `driver ${n.Driver || 'none'} is not handled (bridge only)` });
      continue;
    }
    const sub = ipv4Subnet(n);
    if (!sub) {
      skipped.push({ name: n.Name, driver: n.Driver, reason: 'no IPv4 subnet' });
      continue;
    }
    const bridge = bridgeNameOf(n);
    const br = ifs.get(bridge);
    const opts = n.Options ?? {};
    const mode = opts[Opt.GATEWAY_MODE] ?? 'nat';
    const internal = !!n.Internal || mode === 'isolated';
    const icc = isDefaultBridge(n) ? settings.defaultBridgeIcc : boolOpt(opts[Opt.ICC], true);
    const masquerade = mode === 'routed' ? false : isDefaultBridge(n) ? settings.defaultBridgeMasquerade ?? true : boolOpt(opts[Opt.MASQ], true);
    const gateway = sub.gateway ?? (br?.addr || formatIPv4(((parseIPv4(sub.addr) ?? 0) + 1) >>> 0));
    const name = berthNetworkName(n);
    managed.set(name, {
      docker: n,
      net: {
        name,
        bridge,
        subnet: sub.addr,
        prefixLen: sub.prefixLen,
        gateway,
        icc,
        masquerade,
        internal,
        routed: mode === 'routed' && !internal,
        bridgeIfindex: br?.ifindex ?? 0,
        bridgeMac: br?.mac ?? '00:00:00:00:00:00',
      },
    });
  }
  return { managed, skipped };
}

/** The network a container's ports are published on (the one it was started on). */
export function publishNetwork(c: DockerContainer, candidates: readonly { dockerName: string; berthName: string; internal: boolean }[]): string | undefined {
  let mode = c.HostConfig?.NetworkMode ?? '';
  if (mode === 'default') mode = 'bridge';
  const own = candidates.find((x) => x.dockerName === mode && !x.internal);
  if (own) return own.berthName;
  return [...candidates].filter((x) => !x.internal).sort((a, b) => a.dockerName.localeCompare(b.dockerName))[0]?.berthName;
}

/** What berth's Docker-mode options say about interfaces. */
export function dockerSelection(settings: DockerSettings): InterfaceSelection {
  return { ...(settings.uplinks ? { uplinks: settings.uplinks } : {}), ...(settings.interfaces ? { interfaces: settings.interfaces } : {}) };
}

/** The uplinks and served interfaces on this host (see chooseInterfaces). */
export function interfacesFrom(settings: DockerSettings, host: HostFacts): InterfaceChoice {
  return chooseInterfaces(dockerSelection(settings), host.interfaces);
}

export function desiredFromDocker(
  networks: readonly DockerNetwork[],
  containers: readonly ResolvedContainer[],
  settings: DockerSettings,
  host: HostFacts,
  warn: (msg: string, fields: Record<string, unknown>) => void = () => undefined,
): DockerDesired {
  const { managed, skipped } = networksFrom(networks, settings, host);
  const byId = new Map<string, string>();
  for (const [name, m] of managed) byId.set(m.docker.Id, name);
  const endpoints: DesiredEndpoint[] = [];
  const publish: DesiredPublish[] = [];
  const containerIps = new Map<string, string[]>();
  const seenIfindex = new Set<number>();
  const seenIp = new Set<string>();
  const seenPub = new Set<string>();
  for (const rc of [...containers].sort((a, b) => a.info.Id.localeCompare(b.info.Id))) {
    const c = rc.info;
    const cname = containerName(c);
    const mine: Array<{ ep: DesiredEndpoint; dockerName: string; berthName: string; internal: boolean }> = [];
    const dockerNameOf = new Map(Object.entries(c.NetworkSettings.Networks ?? {}).map(([k, v]) => [v.NetworkID, k]));
    for (const e of rc.endpoints) {
      const berthName = byId.get(e.networkId);
      if (!berthName) continue;
      if (seenIfindex.has(e.ifindex) || seenIp.has(e.ip)) {
        warn('endpoint skipped: address or veth already taken', { container: cname, ip: e.ip, ifindex: e.ifindex });
        continue;
      }
      seenIfindex.add(e.ifindex);
      seenIp.add(e.ip);
      const ep: DesiredEndpoint = { container: cname, network: berthName, ip: e.ip, mac: e.mac, ifindex: e.ifindex, ifname: e.ifname };
      endpoints.push(ep);
      mine.push({ ep, dockerName: dockerNameOf.get(e.networkId) ?? managed.get(berthName)!.docker.Name, berthName, internal: !!managed.get(berthName)!.net.internal });
      containerIps.set(cname, [...(containerIps.get(cname) ?? []), e.ip]);
    }
    if (!mine.length) continue;
    const pubNet = publishNetwork(c, mine);
    if (!pubNet) continue;
    const target = mine.find((m) => m.berthName === pubNet)!.ep;
    const routedPub = !!managed.get(pubNet)!.net.routed;
    let bindings;
    try {
      bindings = bindingsFromDockerPorts(c.NetworkSettings.Ports as never, { routed: routedPub });
    } catch (e) {
      warn('published ports skipped', { container: cname, error: (e as Error).message });
      continue;
    }
    const netOpts = managed.get(pubNet)!.docker.Options ?? {};
    for (const b of bindings) {
      const hostIp = b.hostIp === '0.0.0.0' && isUnspecified(c, b.containerPort, b.proto) ? netOpts[Opt.HOST_BINDING] || settings.defaultBindIp : b.hostIp;
      // routed: the container port on the container's own address, host port ignored
      const key = routedPub ? `${target.ip}:${b.containerPort}/${b.proto} (routed)` : `${hostIp}:${b.hostPort}/${b.proto}`;
      if (seenPub.has(key)) {
        warn('publish skipped: port already taken', { container: cname, publish: key });
        continue;
      }
      seenPub.add(key);
      publish.push({ hostIp, hostPort: b.hostPort, proto: b.proto, container: cname, network: pubNet, ip: target.ip, port: b.containerPort, ifindex: target.ifindex, mac: target.mac });
    }
  }
  const networkSubnets = new Map<string, string>();
  for (const m of managed.values()) networkSubnets.set(m.docker.Name, `${m.net.subnet}/${m.net.prefixLen}`);
  const ifs = interfacesFrom(settings, host);
  return {
    desired: {
      networks: [...managed.values()].map((m) => m.net),
      endpoints,
      publish,
      hostAddrs: host.addresses.map((a) => ({ addr: a.addr, ifindex: a.ifindex })),
      uplinks: ifs.uplinks.map((i): DesiredUplink => ({ ifindex: i.ifindex, ifname: i.ifname, addr: i.addr, mac: i.mac })),
      served: ifs.served.map((i) => ({ ifindex: i.ifindex, ifname: i.ifname })),
      socketHooks: true,
    },
    refused: ifs.refused,
    managed,
    skipped,
    containerIps,
    networkSubnets,
  };
}

/** True when the Ports entry for this binding had an empty HostIp (dockerd left the address to the network / daemon default). */
function isUnspecified(c: DockerContainer, port: number, proto: string): boolean {
  const list = c.NetworkSettings.Ports?.[`${port}/${proto}`] ?? [];
  return list.some((e) => (e.HostIp ?? '') === '');
}
