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
 *
 * IPv6 (issue 12), as Docker 29 reads the same facts:
 *   subnet6   the IPv6 entry of IPAM.Config when the network has IPv6
 *             (EnableIPv6, or option/label com.docker.network.enable_ipv6);
 *             gateway6 its Gateway, else the subnet's first address (Docker's
 *             default); an IPv6 network without an IPv6 subnet gets none
 *   ipv4      false when EnableIPv4 is false (Docker 28+) or the option/label
 *             com.docker.network.enable_ipv4 says so (dockerd 20.10 ignores it
 *             and still numbers IPv4; berth follows what Docker 29 would do:
 *             the network is IPv6-only, its IPv4 addresses and publishes left out)
 *   routed6   gateway_mode_ipv6=routed: no NAT66, the published container
 *             ports open on the container's addr6 (DesiredNetwork.routed6,
 *             BERTH_EP_ROUTED6, lib/routed6.h); isolated: internal (on a network whose IPv4 is not
 *             isolated too this is stricter than Docker, and warned)
 *   masquerade off when no family of the network is NATed
 *   ip6       NetworkSettings.Networks[*].GlobalIPv6Address, when it lies in
 *             the network's subnet6
 *   publish   each binding in its family: HostIp "::", "::1" or another IPv6
 *             address gives an IPv6 entry with the container's IPv6 address
 *             (dockerd 20.10 gives `-p 8080:80` two bindings, 0.0.0.0 and ::);
 *             a binding of a family the container lacks on its network is
 *             skipped, with one warning per container
 */
import { parseIPv4, formatIPv4, prefixMask } from '../../domain/ipv4';
import type { HostFacts } from '../standalone';
import type { InterfaceChoice, InterfaceSelection } from '../../platform/hostnet';
import { buildDesired, interfacesOf } from '../../engine/desired';
import { PortBinding, bindingsFromDockerPorts } from '../../domain/publish';
import { canonicalIPv6, cidr6Contains, formatIPv6, networkAddress6, parseCidr6, parseIPv6 } from '../../domain/ipv6';
import type { DesiredEndpoint, DesiredNetwork, DesiredPublish, DesiredState } from '../../engine/reconcile';
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
  GATEWAY_MODE6: 'com.docker.network.bridge.gateway_mode_ipv6',
  ENABLE_IPV4: 'com.docker.network.enable_ipv4',
  ENABLE_IPV6: 'com.docker.network.enable_ipv6',
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
  /** '' when the endpoint has no IPv4 address */
  ip: string;
  /** GlobalIPv6Address (undefined or '': none) */
  ip6?: string;
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

/** The IPv6 subnet of a network's IPAM config (canonical base), with its gateway (Docker's default: the first address). */
export function ipv6Subnet(n: DockerNetwork): { addr: string; prefixLen: number; gateway: string } | undefined {
  for (const c of n.IPAM?.Config ?? []) {
    const c6 = parseCidr6(c.Subnet ?? '');
    if (!c6 || c6.prefixLen > 127) continue;
    const base = networkAddress6(c6);
    const gwText = (c.Gateway ?? '').replace(/\/\d+$/, '');
    const gw = gwText ? parseIPv6(gwText) : null;
    const gateway = gw !== null && cidr6Contains(c6, gw) ? formatIPv6(gw) : formatIPv6(base + 1n);
    return { addr: formatIPv6(base), prefixLen: c6.prefixLen, gateway };
  }
  return undefined;
}

/** An option, else a label, of the network (Docker takes com.docker.network.enable_ipv4/6 as either). */
function optOrLabel(n: DockerNetwork, key: string): string | undefined {
  return n.Options?.[key] ?? n.Labels?.[key] ?? undefined;
}

/** Which families a network has, as Docker 29 decides (see the header). */
export function familiesOf(n: DockerNetwork): { ipv4: boolean; ipv6: boolean } {
  const v4opt = optOrLabel(n, Opt.ENABLE_IPV4);
  const v6opt = optOrLabel(n, Opt.ENABLE_IPV6);
  const ipv4 = n.EnableIPv4 !== false && boolOpt(v4opt, true);
  const ipv6 = n.EnableIPv6 === true || (v6opt !== undefined && v6opt !== '' && boolOpt(v6opt, false));
  return { ipv4, ipv6 };
}

/** Decide which Docker networks berth manages and with which settings. */
export function networksFrom(
  networks: readonly DockerNetwork[],
  settings: DockerSettings,
  host?: HostFacts,
): { managed: Map<string, { docker: DockerNetwork; net: DesiredNetwork }>; skipped: SkippedNetwork[]; warnings: { network: string; warning: string }[] } {
  const managed = new Map<string, { docker: DockerNetwork; net: DesiredNetwork }>();
  const skipped: SkippedNetwork[] = [];
  const warnings: { network: string; warning: string }[] = [];
  const ifs = new Map((host?.interfaces ?? []).map((i) => [i.ifname, i]));
  for (const n of [...networks].sort((a, b) => a.Name.localeCompare(b.Name))) {
    if (n.Driver !== 'bridge') {
      skipped.push({ name: n.Name, driver: n.Driver || 'none', reason: `driver ${n.Driver || 'none'} is not handled (bridge only)` });
      continue;
    }
    const fam = familiesOf(n);
    const sub = fam.ipv4 ? ipv4Subnet(n) : undefined;
    const sub6 = fam.ipv6 ? ipv6Subnet(n) : undefined;
    if (fam.ipv4 && !sub) {
      skipped.push({ name: n.Name, driver: n.Driver, reason: 'no IPv4 subnet' });
      continue;
    }
    if (!fam.ipv4 && !sub6) {
      skipped.push({ name: n.Name, driver: n.Driver, reason: fam.ipv6 ? 'IPv6-only without an IPv6 subnet' : 'neither IPv4 nor IPv6' });
      continue;
    }
    const bridge = bridgeNameOf(n);
    const br = ifs.get(bridge);
    const opts = n.Options ?? {};
    const mode = opts[Opt.GATEWAY_MODE] ?? 'nat';
    const mode6 = opts[Opt.GATEWAY_MODE6] ?? 'nat';
    // a family that is isolated has no gateway: internal. berth's internal
    // covers the whole network, so an isolated IPv6 next to a non-isolated
    // IPv4 makes both internal (stricter than Docker; warned by the caller)
    const iso4 = !!sub && mode === 'isolated';
    const iso6 = !!sub6 && mode6 === 'isolated';
    const internal = !!n.Internal || iso4 || iso6;
    const icc = isDefaultBridge(n) ? settings.defaultBridgeIcc : boolOpt(opts[Opt.ICC], true);
    const natted = (!!sub && mode !== 'routed') || (!!sub6 && mode6 !== 'routed');
    const masquerade = !natted ? false : isDefaultBridge(n) ? settings.defaultBridgeMasquerade ?? true : boolOpt(opts[Opt.MASQ], true);
    const gateway = sub ? sub.gateway ?? (br?.addr || formatIPv4(((parseIPv4(sub.addr) ?? 0) + 1) >>> 0)) : '';
    const name = berthNetworkName(n);
    managed.set(name, {
      docker: n,
      net: {
        name,
        bridge,
        subnet: sub?.addr ?? '',
        prefixLen: sub?.prefixLen ?? 0,
        gateway,
        icc,
        masquerade,
        internal,
        routed: !!sub && mode === 'routed' && !internal,
        ...(sub6 ? { subnet6: sub6.addr, prefixLen6: sub6.prefixLen, gateway6: sub6.gateway } : {}),
        ...(sub6 && mode6 === 'routed' && !internal ? { routed6: true } : {}),
        ...(!sub ? { ipv4: false } : {}),
        bridgeIfindex: br?.ifindex ?? 0,
        bridgeMac: br?.mac ?? '00:00:00:00:00:00',
      },
    });
    if (iso6 && !n.Internal && sub && !iso4) warnings.push({ network: n.Name, warning: 'gateway_mode_ipv6=isolated: berth makes the whole network internal, IPv4 too (stricter than Docker)' });
  }
  return { managed, skipped, warnings };
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

/** The uplinks and served interfaces on this host (the one choice: engine/desired.ts). */
export function interfacesFrom(settings: DockerSettings, host: Pick<HostFacts, 'interfaces'>): InterfaceChoice {
  return interfacesOf(dockerSelection(settings), host);
}

export function desiredFromDocker(
  networks: readonly DockerNetwork[],
  containers: readonly ResolvedContainer[],
  settings: DockerSettings,
  host: HostFacts,
  warn: (msg: string, fields: Record<string, unknown>) => void = () => undefined,
): DockerDesired {
  const { managed, skipped, warnings } = networksFrom(networks, settings, host);
  for (const w of warnings) warn('network taken stricter than Docker', { ...w });
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
      const net = managed.get(berthName)!.net;
      // each family's address, where the network has that family
      const ip = net.ipv4 === false ? '' : e.ip;
      const ip6 = endpointIp6(net, e.ip6);
      if (e.ip6 && net.subnet6 && !ip6) warn('endpoint IPv6 address left out: not in the network\'s IPv6 subnet', { container: cname, ip6: e.ip6, subnet6: `${net.subnet6}/${net.prefixLen6}` });
      if (!ip && !ip6) {
        warn('endpoint skipped: no address of a family the network has', { container: cname, network: berthName, ip: e.ip, ip6: e.ip6 ?? '' });
        continue;
      }
      const addrs = [ip, ip6].filter((x): x is string => !!x);
      if (seenIfindex.has(e.ifindex) || addrs.some((a) => seenIp.has(a))) {
        warn('endpoint skipped: address or veth already taken', { container: cname, ip: addrs.join(','), ifindex: e.ifindex });
        continue;
      }
      seenIfindex.add(e.ifindex);
      for (const a of addrs) seenIp.add(a);
      const ep: DesiredEndpoint = { container: cname, network: berthName, ip, ...(ip6 ? { ip6 } : {}), mac: e.mac, ifindex: e.ifindex, ifname: e.ifname };
      endpoints.push(ep);
      mine.push({ ep, dockerName: dockerNameOf.get(e.networkId) ?? managed.get(berthName)!.docker.Name, berthName, internal: !!net.internal });
      // the policy's container: rules take IPv4 addresses
      if (ip) containerIps.set(cname, [...(containerIps.get(cname) ?? []), ip]);
    }
    if (!mine.length) continue;
    const pubNet = publishNetwork(c, mine);
    if (!pubNet) continue;
    const target = mine.find((m) => m.berthName === pubNet)!.ep;
    const pnet = managed.get(pubNet)!.net;
    const routedPub = !!pnet.routed;
    let bindings: PortBinding[];
    let bindings6: PortBinding[];
    try {
      // IPv4 from the shared parser, IPv6 from Docker mode's own (whichever the shared one returns)
      bindings = bindingsFromDockerPorts(c.NetworkSettings.Ports as never, { routed: routedPub }).filter((b) => !b.hostIp.includes(':'));
      // without an IPv6 address nothing is published in IPv6: its bindings are only named in the warning
      bindings6 = target.ip6 ? bindings6FromDockerPorts(c.NetworkSettings.Ports, { routed: !!pnet.routed6 }) : [];
    } catch (e) {
      warn('published ports skipped', { container: cname, error: (e as Error).message });
      continue;
    }
    const netOpts = managed.get(pubNet)!.docker.Options ?? {};
    const lacking: string[] = target.ip6 ? [] : rawBindings6(c.NetworkSettings.Ports);
    for (const b of bindings) {
      const hostIp = b.hostIp === '0.0.0.0' && isUnspecified(c, b.containerPort, b.proto) ? netOpts[Opt.HOST_BINDING] || settings.defaultBindIp : b.hostIp;
      if (!target.ip) {
        lacking.push(`${hostIp}:${b.hostPort}:${b.containerPort}/${b.proto}`);
        continue;
      }
      // routed: the container port on the container's own address, host port ignored
      const key = routedPub ? `${target.ip}:${b.containerPort}/${b.proto} (routed)` : `${hostIp}:${b.hostPort}/${b.proto}`;
      if (seenPub.has(key)) {
        warn('publish skipped: port already taken', { container: cname, publish: key });
        continue;
      }
      seenPub.add(key);
      publish.push({ hostIp, hostPort: b.hostPort, proto: b.proto, container: cname, network: pubNet, ip: target.ip, port: b.containerPort, ifindex: target.ifindex, mac: target.mac });
    }
    for (const b of bindings6) {
      if (!target.ip6) continue;
      const key = pnet.routed6 ? `[${target.ip6}]:${b.containerPort}/${b.proto} (routed)` : `[${b.hostIp}]:${b.hostPort}/${b.proto}`;
      if (seenPub.has(key)) {
        warn('publish skipped: port already taken', { container: cname, publish: key });
        continue;
      }
      seenPub.add(key);
      publish.push({ hostIp: b.hostIp, hostPort: b.hostPort, proto: b.proto, container: cname, network: pubNet, ip: target.ip6, port: b.containerPort, ifindex: target.ifindex, mac: target.mac });
    }
    // Docker 29 makes no binding for a family the container has no address of
    if (lacking.length)
      warn('publish skipped: the container has no address of that family on its network', { container: cname, network: pubNet, skipped: lacking });
  }
  const networkSubnets = new Map<string, string>();
  // the policy's network: rules take IPv4 subnets (an IPv6-only network has none)
  for (const m of managed.values()) if (m.net.subnet) networkSubnets.set(m.docker.Name, `${m.net.subnet}/${m.net.prefixLen}`);
  // the host's part (addresses, the one uplink choice, served interfaces) as for a file: engine/desired.ts
  const { desired, refused } = buildDesired({ networks: [...managed.values()].map((m) => m.net), endpoints, publish, socketHooks: true }, dockerSelection(settings), host);
  return {
    desired,
    refused,
    managed,
    skipped,
    containerIps,
    networkSubnets,
  };
}

/** The endpoint's IPv6 address in canonical form, when the network has IPv6 and it lies in its subnet. */
function endpointIp6(net: DesiredNetwork, ip6: string | undefined): string | undefined {
  if (!ip6 || !net.subnet6 || net.prefixLen6 === undefined) return undefined;
  const a = parseIPv6(ip6);
  const base = parseIPv6(net.subnet6);
  if (a === null || base === null || !cidr6Contains({ addr: base, prefixLen: net.prefixLen6 }, a)) return undefined;
  return formatIPv6(a);
}

/**
 * The IPv6 bindings of NetworkSettings.Ports (HostIp "::", "::1", another
 * IPv6 address), host addresses canonical. Malformed: an error naming the
 * entry (the container's publishes are then skipped, as for IPv4).
 */
export function bindings6FromDockerPorts(ports: DockerContainer['NetworkSettings']['Ports'], opts: { routed?: boolean } = {}): PortBinding[] {
  const out: PortBinding[] = [];
  for (const [key, list] of Object.entries(ports ?? {})) {
    if (!list) continue;
    const m = /^([0-9]+)\/([a-z]+)$/.exec(key);
    if (!m) throw new Error(`published port ${key}: expected "port/proto"`);
    if (m[2] !== 'tcp' && m[2] !== 'udp') continue; // sctp: not handled, as for IPv4
    const containerPort = portOf(m[1]!, 'container port', key);
    for (const e of list) {
      const ipStr = (e.HostIp ?? '').replace(/^\[(.*)\]$/, '$1');
      if (!ipStr.includes(':')) continue; // IPv4 (or empty): the shared parser's
      const hostIp = canonicalIPv6(ipStr);
      if (!hostIp) throw new Error(`published port ${key}: invalid HostIp ${JSON.stringify(e.HostIp)}`);
      const hostPort = opts.routed && ['', '0'].includes(e.HostPort ?? '') ? 0 : portOf(e.HostPort ?? '', 'host port', key);
      const b: PortBinding = { hostIp, hostPort, containerPort, proto: m[2] as 'tcp' | 'udp' };
      if (!out.some((o) => o.hostIp === b.hostIp && o.hostPort === b.hostPort && o.proto === b.proto)) out.push(b);
    }
  }
  return out;
}

/** The IPv6 bindings as Docker lists them ("[::]:8080:80/tcp"), for a warning. */
function rawBindings6(ports: DockerContainer['NetworkSettings']['Ports']): string[] {
  const out: string[] = [];
  for (const [key, list] of Object.entries(ports ?? {}))
    for (const e of list ?? []) if ((e.HostIp ?? '').includes(':')) out.push(`[${(e.HostIp ?? '').replace(/^\[(.*)\]$/, '$1')}]:${e.HostPort ?? ''}:${key}`);
  return out;
}

function portOf(s: string, what: string, key: string): number {
  const n = /^\d{1,5}$/.test(s) ? Number(s) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new Error(`published port ${key}: invalid ${what} ${JSON.stringify(s)}`);
  return n;
}

/** True when the Ports entry for this binding had an empty HostIp (dockerd left the address to the network / daemon default). */
function isUnspecified(c: DockerContainer, port: number, proto: string): boolean {
  const list = c.NetworkSettings.Ports?.[`${port}/${proto}`] ?? [];
  return list.some((e) => (e.HostIp ?? '') === '');
}
