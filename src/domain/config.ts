// berth standalone configuration: parse, validate, apply defaults and freeze
// BEFORE anything touches the system.
//
// The schema is organised as one validator per top-level section (SECTIONS);
// later sections (masquerade, publish, externals, uplinks, ...) are added there
// and per-item fields are added to the matching *_FIELDS list.
import * as fs from 'node:fs';
import * as path from 'node:path';
import YAML from 'yaml';
import {
  broadcastAddress,
  cidrContains,
  cidrOverlaps,
  formatCidr,
  formatIPv4,
  hasHostBits,
  networkAddress,
  parseCidr,
  parseIPv4,
  type Cidr,
} from './ipv4';
import {
  cidr6Contains,
  cidr6Overlaps,
  formatCidr6,
  formatIPv6,
  hasHostBits6,
  networkAddress6,
  nextFreeIPv6,
  parseCidr6,
  parseIPv6,
  subnetProblem6,
  unicastProblem6,
  type Cidr6,
} from './ipv6';
import { deepFreeze } from './freeze';
import { type ConntrackTimeouts, DEFAULT_CONNTRACK_TIMEOUTS } from './conntrack-timeouts';
import { NAME_RE, defaultBridgeName, externalVethName, hostVethName, ifnameProblem } from './names';
import { PublishError, bindingsConflict, expandBinding, formatBinding, formatHostPort, parsePublish, type PortBinding } from './publish';

export type { PortBinding, PortProto } from './publish';

export interface NetworkConfig {
  readonly name: string;
  /**
   * IPv4 on this network: false for an IPv6-only network (a file that gives
   * `subnet6` and no `subnet`, Docker's --ipv4=false). Then subnet is
   * { addr: '', prefixLen: 0 } and subnetCidr and gateway are '' (the
   * desired state's convention for an IPv6-only network).
   */
  readonly ipv4: boolean;
  /** Network address (dotted quad) and prefix length ('' / 0 without IPv4). */
  readonly subnet: { readonly addr: string; readonly prefixLen: number };
  /** "a.b.c.d/len" ('' without IPv4) */
  readonly subnetCidr: string;
  readonly bridge: string;
  /** the bridge's IPv4 address ('' without IPv4) */
  readonly gateway: string;
  /** IPv6 on this network (issue 12): subnet6, subnet6Cidr and gateway6 are present exactly when true. */
  readonly ipv6: boolean;
  /** IPv6 network address (RFC 5952 text) and prefix length (48..64) */
  readonly subnet6?: { readonly addr: string; readonly prefixLen: number };
  /** "fd00:1::/64" */
  readonly subnet6Cidr?: string;
  /** the bridge's IPv6 address (default: the subnet's ::1) */
  readonly gateway6?: string;
  /** Inter-container communication allowed on this network. */
  readonly icc: boolean;
  /** Masquerade traffic from the subnet leaving through another interface (Docker's enable_ip_masquerade). */
  readonly masquerade: boolean;
  /** Docker's --internal: no default route in containers, no masquerade, no published ports. */
  readonly internal: boolean;
  /**
   * Docker's com.docker.network.bridge.gateway_mode_ipv4: 'nat' (the default:
   * masquerade, ports published on host ports) or 'routed' (no NAT: outside
   * hosts reach the containers on their own addresses, only on the published
   * container ports and by ICMP; the host port of a publish is ignored).
   */
  readonly gatewayMode: GatewayMode;
  /**
   * Docker's com.docker.network.bridge.gateway_mode_ipv6, the same for IPv6,
   * on a network with subnet6 (each family has its own mode): 'nat' (the
   * default: NAT66, published ports on host ports) or 'routed' (no NAT66:
   * outside hosts reach the containers on their own addr6, only on the
   * published container ports and by ICMPv6).
   */
  readonly gatewayMode6: GatewayMode;
}

export const GATEWAY_MODES = ['nat', 'routed'] as const;
export type GatewayMode = (typeof GATEWAY_MODES)[number];

export interface ContainerConfig {
  readonly name: string;
  readonly network: string;
  /** IPv4 address ('' on an IPv6-only network) */
  readonly ip: string;
  /** IPv6 address (RFC 5952 text) on a network with subnet6; absent otherwise */
  readonly ip6?: string;
  readonly run?: readonly string[];
  /** Published ports, one binding per port (from Docker `-p` specs); [] when none. */
  readonly publish: readonly PortBinding[];
}

/** An "outside host": a namespace linked to the host by a veth whose host side is an uplink. */
export interface ExternalConfig {
  readonly name: string;
  /** Address of eth0 in the namespace (dotted quad). */
  readonly address: string;
  readonly prefixLen: number;
  /** "a.b.c.d/len" of the link's subnet. */
  readonly subnetCidr: string;
  /** Address of the host side: the first usable address of the subnet. */
  readonly hostAddress: string;
  /** Host side veth name (externalVethName(name)). */
  readonly hostIfname: string;
  /** IPv6 of eth0 in the namespace (RFC 5952 text), with prefix6, subnet6Cidr and hostAddress6; all absent without `address6`. */
  readonly address6?: string;
  readonly prefixLen6?: number;
  /** "fd00:ff:1::/64" */
  readonly subnet6Cidr?: string;
  /** The host side's IPv6 address: the first address of the subnet (::1). */
  readonly hostAddress6?: string;
  readonly run?: readonly string[];
}

export type { ConntrackTimeouts } from './conntrack-timeouts';

export interface ConntrackSettings extends ConntrackTimeouts {
  /** Size of the conntrack table, in entries (two per flow). */
  readonly max: number;
  /**
   * Flows that may wait unassured (no completed handshake, no reply) at
   * once; beyond it the oldest unassured flow is evicted. Default: max / 4
   * (half the entries); at most max / 2.
   */
  readonly unassuredMax: number;
}

export interface NatSettings {
  /** Source ports used by masquerade (inclusive), like ip_local_port_range. */
  readonly portMin: number;
  readonly portMax: number;
}

export interface Settings {
  readonly conntrack: ConntrackSettings;
  readonly nat: NatSettings;
}

/**
 * Defaults. The conntrack timeouts are the kernel's, from their one home
 * (domain/conntrack-timeouts.ts: each key with the nf_conntrack sysctl it
 * mirrors).
 */
export const DEFAULT_SETTINGS: Settings = Object.freeze({
  conntrack: Object.freeze({
    max: 262144,
    unassuredMax: 65536,
    ...DEFAULT_CONNTRACK_TIMEOUTS,
  }),
  // The one default of the masquerade range: above the host's default ephemeral
  // range (32768-60999), since berth cannot see host sockets (the dataplane
  // refuses a range that overlaps the host's ip_local_port_range at start).
  nat: Object.freeze({ portMin: 1024, portMax: 32767 }),
});

export interface BerthConfig {
  readonly networks: readonly NetworkConfig[];
  readonly containers: readonly ContainerConfig[];
  /** Externals ("outside hosts"); [] when none. */
  readonly externals: readonly ExternalConfig[];
  /**
   * Uplinks: the interfaces whose addresses masquerade translates to (each
   * external's host side is one too). Absent: every outside-facing interface
   * (not lo, bridges, bridge ports, container veths or L3 devices; decided
   * by the controller). Uplinks are always served.
   */
  readonly uplinks?: readonly string[];
  /**
   * Served interfaces besides the uplinks: where published ports answer and
   * replies of tracked flows are translated (berth_up_in). Absent: every
   * outside-facing interface, as Docker's DNAT serves every interface.
   */
  readonly interfaces?: readonly string[];
  readonly settings: Settings;
}

/** dist/src/domain/config.js is three levels below the repository root. */
export const DEFAULT_CONFIG_PATH = path.resolve(__dirname, '..', '..', '..', 'examples', 'demo.yaml');

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    /** Path of the offending field, e.g. `containers[2].ip` ('' for the whole file). */
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${source}: ${field}: ${reason}`);
    this.name = 'ConfigError';
  }
}

/** Internal: thrown by validators, turned into ConfigError with the source. */
class Invalid extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

function fail(field: string, reason: string): never {
  throw new Invalid(field, reason);
}

type Obj = Record<string, unknown>;

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function expectObj(v: unknown, field: string): Obj {
  if (!isObj(v)) fail(field, `must be a mapping (got ${describeType(v)})`);
  return v;
}

function checkKeys(obj: Obj, allowed: readonly string[], field: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) fail(field ? `${field}.${k}` : k, 'unknown field');
  }
}

function optList(v: unknown, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(field, `must be a list (got ${describeType(v)})`);
  return v;
}

function reqString(obj: Obj, key: string, field: string): string {
  const v = obj[key];
  if (v === undefined || v === null) fail(`${field}.${key}`, 'required');
  if (typeof v !== 'string') fail(`${field}.${key}`, `must be a string (got ${describeType(v)})`);
  return v;
}

function optString(obj: Obj, key: string, field: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') fail(`${field}.${key}`, `must be a string (got ${describeType(v)})`);
  return v;
}

function optBool(obj: Obj, key: string, field: string): boolean | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') fail(`${field}.${key}`, `must be true or false (got ${describeType(v)})`);
  return v;
}

function checkName(name: string, field: string): void {
  if (!NAME_RE.test(name)) {
    fail(field, `invalid name ${JSON.stringify(name)}: must match ${NAME_RE.source} (lowercase letters, digits, "_", ".", "-"; at most 32 characters)`);
  }
}

function ipField(s: string, field: string): number {
  const n = parseIPv4(s);
  if (n === null) fail(field, `invalid IPv4 address ${JSON.stringify(s)}`);
  return n;
}

// ---------------------------------------------------------------------------
// Sections

interface NetInfo {
  /** null on an IPv6-only network */
  cidr: Cidr | null;
  gateway: number;
  /** null on a network without IPv6 */
  cidr6: Cidr6 | null;
  gateway6: bigint;
  index: number;
  internal: boolean;
  gatewayMode: GatewayMode;
  gatewayMode6: GatewayMode;
}

/** Working state shared by section validators (built up in SECTION_ORDER). */
interface Draft {
  networks: NetworkConfig[];
  /** network name → parsed subnet, gateway (uint32) and index in file */
  netInfo: Map<string, NetInfo>;
  containers: ContainerConfig[];
  /** container name → index in file */
  containerIndex: Map<string, number>;
  /** interface name → what owns it (bridges, container veths, external veths) */
  ifnames: Map<string, string>;
  externals: ExternalConfig[];
  uplinks?: string[];
  interfaces?: string[];
  settings: Settings;
}

const NETWORK_FIELDS = ['name', 'subnet', 'subnet6', 'bridge', 'gateway', 'gateway6', 'icc', 'masquerade', 'internal', 'gatewayMode', 'gatewayMode6'] as const;
const CONTAINER_FIELDS = ['name', 'network', 'ip', 'ip6', 'run', 'publish'] as const;
const EXTERNAL_FIELDS = ['name', 'address', 'address6', 'run'] as const;

/** The prefix lengths a network's or an external's IPv6 subnet may have (Docker wants at most /64 for its address pools; /64 is typical). */
const PREFIX6_MIN = 48;
const PREFIX6_MAX = 64;

function ip6Field(s: string, field: string): bigint {
  const n = parseIPv6(s);
  if (n === null) {
    if (parseIPv4(s) !== null) fail(field, `${s} is an IPv4 address; ${field.endsWith('6') ? `use ${field.slice(field.lastIndexOf('.') + 1, -1)} for IPv4` : 'expected IPv6'}`);
    fail(field, `invalid IPv6 address ${JSON.stringify(s)}`);
  }
  const p = unicastProblem6(n);
  if (p) fail(field, `${s} is ${p}`);
  return n;
}

/** A network's or an external's IPv6 prefix: syntax, family, length, scope. */
function subnet6Field(s: string, field: string, hostBitsOk: boolean): Cidr6 {
  const c = parseCidr6(s);
  if (!c) {
    if (parseCidr(s)) fail(field, `${s} is an IPv4 subnet; use ${field.slice(field.lastIndexOf('.') + 1, -1)} for IPv4`);
    fail(field, `invalid IPv6 CIDR ${JSON.stringify(s)} (expected e.g. fd00:1::/64)`);
  }
  if (c.prefixLen < PREFIX6_MIN || c.prefixLen > PREFIX6_MAX) fail(field, `prefix length must be between ${PREFIX6_MIN} and ${PREFIX6_MAX} (got /${c.prefixLen}; /64 is typical)`);
  if (!hostBitsOk && hasHostBits6(c)) fail(field, `host bits set in ${s} (did you mean ${formatIPv6(networkAddress6(c))}/${c.prefixLen}?)`);
  const p = subnetProblem6(c);
  if (p) fail(field, `${s} cannot be a subnet: ${p}`);
  return c;
}

function optRun(o: Obj, f: string): string[] | undefined {
  if (o.run === undefined || o.run === null) return undefined;
  if (!Array.isArray(o.run)) fail(`${f}.run`, `must be a list of strings (got ${describeType(o.run)})`);
  if (o.run.length === 0) fail(`${f}.run`, 'must not be empty');
  o.run.forEach((a, j) => {
    if (typeof a !== 'string') fail(`${f}.run[${j}]`, `must be a string (got ${describeType(a)}; quote it)`);
  });
  if (o.run[0] === '') fail(`${f}.run[0]`, 'the command must not be empty');
  return [...(o.run as string[])];
}

function validateNetworks(raw: unknown, d: Draft): void {
  const list = optList(raw, 'networks');
  const bridges = new Map<string, number>();
  list.forEach((item, i) => {
    const f = `networks[${i}]`;
    const o = expectObj(item, f);
    checkKeys(o, NETWORK_FIELDS, f);

    const name = reqString(o, 'name', f);
    checkName(name, `${f}.name`);
    const prev = d.netInfo.get(name);
    if (prev) fail(`${f}.name`, `duplicate network name ${JSON.stringify(name)} (also networks[${prev.index}])`);

    const subnetStr = optString(o, 'subnet', f);
    const subnet6Str = optString(o, 'subnet6', f);
    if (subnetStr === undefined && subnet6Str === undefined) fail(`${f}.subnet`, 'required (an IPv4 subnet, or subnet6 for an IPv6-only network, or both)');
    let cidr: Cidr | null = null;
    if (subnetStr !== undefined) {
      cidr = parseCidr(subnetStr);
      if (!cidr) {
        if (parseCidr6(subnetStr)) fail(`${f}.subnet`, `${subnetStr} is an IPv6 subnet; use subnet6 for IPv6`);
        fail(`${f}.subnet`, `invalid IPv4 CIDR ${JSON.stringify(subnetStr)} (expected a.b.c.d/len)`);
      }
      if (cidr.prefixLen < 8 || cidr.prefixLen > 30) fail(`${f}.subnet`, `prefix length must be between 8 and 30 (got /${cidr.prefixLen})`);
      if (hasHostBits(cidr)) {
        fail(`${f}.subnet`, `host bits set in ${subnetStr} (did you mean ${formatIPv4(networkAddress(cidr))}/${cidr.prefixLen}?)`);
      }
      for (const [otherName, other] of d.netInfo) {
        if (other.cidr && cidrOverlaps(cidr, other.cidr)) {
          fail(`${f}.subnet`, `${subnetStr} overlaps the subnet ${formatCidr(other.cidr)} of network ${JSON.stringify(otherName)} (networks[${other.index}])`);
        }
      }
    }
    let cidr6: Cidr6 | null = null;
    if (subnet6Str !== undefined) {
      cidr6 = subnet6Field(subnet6Str, `${f}.subnet6`, false);
      for (const [otherName, other] of d.netInfo) {
        if (other.cidr6 && cidr6Overlaps(cidr6, other.cidr6)) {
          fail(`${f}.subnet6`, `${subnet6Str} overlaps the subnet6 ${formatCidr6(other.cidr6)} of network ${JSON.stringify(otherName)} (networks[${other.index}])`);
        }
      }
    }

    const bridge = optString(o, 'bridge', f) ?? defaultBridgeName(name);
    const ifp = ifnameProblem(bridge);
    if (ifp) fail(`${f}.bridge`, `invalid interface name ${JSON.stringify(bridge)}: ${ifp}`);
    const prevBridge = bridges.get(bridge);
    if (prevBridge !== undefined) fail(`${f}.bridge`, `duplicate bridge name ${JSON.stringify(bridge)} (also networks[${prevBridge}])`);
    bridges.set(bridge, i);

    const gwStr = optString(o, 'gateway', f);
    let gateway = 0;
    if (cidr) {
      const net = networkAddress(cidr);
      const bcast = broadcastAddress(cidr);
      if (gwStr === undefined) {
        gateway = net + 1;
      } else {
        gateway = ipField(gwStr, `${f}.gateway`);
        if (!cidrContains(cidr, gateway)) fail(`${f}.gateway`, `${gwStr} is outside the subnet ${subnetStr}`);
        if (gateway === net) fail(`${f}.gateway`, `${gwStr} is the network address of ${subnetStr}`);
        if (gateway === bcast) fail(`${f}.gateway`, `${gwStr} is the broadcast address of ${subnetStr}`);
      }
    } else if (gwStr !== undefined) {
      fail(`${f}.gateway`, `network ${JSON.stringify(name)} has no IPv4 subnet (an IPv6-only network); ${parseIPv6(gwStr) !== null ? 'use gateway6 for IPv6' : 'drop gateway or give subnet'}`);
    }
    const gw6Str = optString(o, 'gateway6', f);
    let gateway6 = 0n;
    if (cidr6) {
      const net6 = networkAddress6(cidr6);
      if (gw6Str === undefined) {
        gateway6 = net6 + 1n;
      } else {
        gateway6 = ip6Field(gw6Str, `${f}.gateway6`);
        if (!cidr6Contains(cidr6, gateway6)) fail(`${f}.gateway6`, `${gw6Str} is outside the subnet6 ${subnet6Str}`);
        if (gateway6 === net6) fail(`${f}.gateway6`, `${gw6Str} is the network (subnet-router anycast) address of ${subnet6Str}`);
      }
    } else if (gw6Str !== undefined) {
      fail(`${f}.gateway6`, `network ${JSON.stringify(name)} has no subnet6; give subnet6 or drop gateway6`);
    }

    const icc = optBool(o, 'icc', f) ?? true;
    const internal = optBool(o, 'internal', f) ?? false;
    const masq = optBool(o, 'masquerade', f);
    if (internal && masq === true) fail(`${f}.masquerade`, `network ${JSON.stringify(name)} is internal; an internal network cannot masquerade (drop masquerade or internal)`);
    const gm = optString(o, 'gatewayMode', f) ?? 'nat';
    if (!(GATEWAY_MODES as readonly string[]).includes(gm)) {
      fail(`${f}.gatewayMode`, `must be one of ${GATEWAY_MODES.join(', ')} (got ${JSON.stringify(gm)}; nat-unprotected is not supported)`);
    }
    const gatewayMode = gm as GatewayMode;
    if (gatewayMode === 'routed' && internal) fail(`${f}.gatewayMode`, `network ${JSON.stringify(name)} is internal; an internal network has no gateway to route by (drop gatewayMode or internal)`);
    const gm6 = optString(o, 'gatewayMode6', f);
    if (gm6 !== undefined && !(GATEWAY_MODES as readonly string[]).includes(gm6)) {
      fail(`${f}.gatewayMode6`, `must be one of ${GATEWAY_MODES.join(', ')} (got ${JSON.stringify(gm6)}; nat-unprotected is not supported)`);
    }
    if (gm6 !== undefined && !cidr6) fail(`${f}.gatewayMode6`, `network ${JSON.stringify(name)} has no subnet6; gatewayMode6 is IPv6's mode (give subnet6 or drop gatewayMode6)`);
    const gatewayMode6 = (gm6 ?? 'nat') as GatewayMode;
    if (gatewayMode6 === 'routed' && internal) fail(`${f}.gatewayMode6`, `network ${JSON.stringify(name)} is internal; an internal network has no gateway to route by (drop gatewayMode6 or internal)`);
    // per family: masquerade is for the families in nat mode; true with none is an error
    const nat4 = cidr !== null && gatewayMode === 'nat';
    const nat6 = cidr6 !== null && gatewayMode6 === 'nat';
    if (masq === true && !nat4 && !nat6) {
      const which = gatewayMode6 === 'routed' ? (gatewayMode === 'routed' && cidr ? 'gatewayMode and gatewayMode6' : 'gatewayMode6') : 'gatewayMode';
      fail(`${f}.masquerade`, `network ${JSON.stringify(name)} is routed (${which}) in every family it has; a routed network does no NAT (drop masquerade or ${which})`);
    }
    const masquerade = masq ?? (!internal && (nat4 || nat6));

    d.netInfo.set(name, { cidr, gateway, cidr6, gateway6, index: i, internal, gatewayMode, gatewayMode6 });
    const n: { -readonly [K in keyof NetworkConfig]: NetworkConfig[K] } = {
      name,
      ipv4: cidr !== null,
      subnet: cidr ? { addr: formatIPv4(networkAddress(cidr)), prefixLen: cidr.prefixLen } : { addr: '', prefixLen: 0 },
      subnetCidr: cidr ? formatCidr(cidr) : '',
      bridge,
      gateway: cidr ? formatIPv4(gateway) : '',
      ipv6: cidr6 !== null,
      icc,
      masquerade,
      internal,
      gatewayMode,
      gatewayMode6,
    };
    if (cidr6) {
      n.subnet6 = { addr: formatIPv6(cidr6.addr), prefixLen: cidr6.prefixLen };
      n.subnet6Cidr = formatCidr6(cidr6);
      n.gateway6 = formatIPv6(gateway6);
    }
    d.networks.push(n);
  });
}

function validateContainers(raw: unknown, d: Draft): void {
  const list = optList(raw, 'containers');
  const names = new Map<string, number>();
  /** uint32 address → index of the container that took it explicitly */
  const taken = new Map<number, number>();
  /** IPv6 address → index of the container that took it */
  const taken6 = new Map<bigint, number>();

  interface Pending {
    index: number;
    name: string;
    network: string;
    ip: number | null;
    ip6: bigint | null;
    run?: string[];
    publish: PortBinding[];
  }
  /** every binding so far, with the field that declared it */
  const bound: { b: PortBinding; field: string }[] = [];
  const pending: Pending[] = [];

  // Pass 1: shape, names, networks, explicit addresses (reserved first).
  list.forEach((item, i) => {
    const f = `containers[${i}]`;
    const o = expectObj(item, f);
    checkKeys(o, CONTAINER_FIELDS, f);

    const name = reqString(o, 'name', f);
    checkName(name, `${f}.name`);
    const prev = names.get(name);
    if (prev !== undefined) fail(`${f}.name`, `duplicate container name ${JSON.stringify(name)} (also containers[${prev}])`);
    names.set(name, i);

    const network = reqString(o, 'network', f);
    const info = d.netInfo.get(network);
    if (!info) fail(`${f}.network`, `unknown network ${JSON.stringify(network)}`);

    let ip: number | null = null;
    const ipStr = optString(o, 'ip', f);
    if (ipStr !== undefined && !info.cidr) {
      fail(`${f}.ip`, `network ${JSON.stringify(network)} has no IPv4 subnet (an IPv6-only network)${parseIPv6(ipStr) !== null ? '; use ip6 for IPv6' : ''}`);
    }
    if (ipStr !== undefined && info.cidr) {
      if (parseIPv6(ipStr) !== null) fail(`${f}.ip`, `${ipStr} is an IPv6 address; use ip6 for IPv6`);
      ip = ipField(ipStr, `${f}.ip`);
      const sub = formatCidr(info.cidr);
      if (!cidrContains(info.cidr, ip)) fail(`${f}.ip`, `${ipStr} is outside the subnet ${sub} of network ${JSON.stringify(network)}`);
      if (ip === networkAddress(info.cidr)) fail(`${f}.ip`, `${ipStr} is the network address of ${sub}`);
      if (ip === broadcastAddress(info.cidr)) fail(`${f}.ip`, `${ipStr} is the broadcast address of ${sub}`);
      if (ip === info.gateway) fail(`${f}.ip`, `${ipStr} is the gateway of network ${JSON.stringify(network)}`);
      const other = taken.get(ip);
      if (other !== undefined) fail(`${f}.ip`, `duplicate address ${ipStr} (also containers[${other}])`);
      taken.set(ip, i);
    }

    let ip6: bigint | null = null;
    const ip6Str = optString(o, 'ip6', f);
    if (ip6Str !== undefined) {
      if (!info.cidr6) fail(`${f}.ip6`, `network ${JSON.stringify(network)} has no subnet6 (no IPv6); give the network subnet6 or drop ip6`);
      ip6 = ip6Field(ip6Str, `${f}.ip6`);
      const sub6 = formatCidr6(info.cidr6);
      if (!cidr6Contains(info.cidr6, ip6)) fail(`${f}.ip6`, `${ip6Str} is outside the subnet6 ${sub6} of network ${JSON.stringify(network)}`);
      if (ip6 === networkAddress6(info.cidr6)) fail(`${f}.ip6`, `${ip6Str} is the network (subnet-router anycast) address of ${sub6}`);
      if (ip6 === info.gateway6) fail(`${f}.ip6`, `${ip6Str} is the gateway6 of network ${JSON.stringify(network)}`);
      const other = taken6.get(ip6);
      if (other !== undefined) fail(`${f}.ip6`, `duplicate address ${formatIPv6(ip6)} (also containers[${other}])`);
      taken6.set(ip6, i);
    }

    const run = optRun(o, f);

    const publish: PortBinding[] = [];
    const specs = optList(o.publish, `${f}.publish`);
    if (specs.length > 0 && info.internal) {
      fail(`${f}.publish`, `network ${network} is internal; ports cannot be published`);
    }
    specs.forEach((spec, j) => {
      const pf = `${f}.publish[${j}]`;
      if (typeof spec !== 'string') fail(pf, `must be a string in Docker's -p syntax, e.g. "8080:80" (got ${describeType(spec)}; quote it)`);
      let bs: PortBinding[];
      try {
        bs = parsePublish(spec);
      } catch (err) {
        if (err instanceof PublishError) fail(pf, err.message);
        throw err;
      }
      const has = { ipv4: info.cidr !== null, ipv6: info.cidr6 !== null };
      for (const b of bs) {
        if (expandBinding(b, has).length === 0) {
          fail(pf, `${formatHostPort(b.hostIp, b.hostPort)} is an ${has.ipv4 ? 'IPv6' : 'IPv4'} host address but network ${JSON.stringify(network)} has no ${has.ipv4 ? 'IPv6 (no subnet6)' : 'IPv4 (no subnet)'}`);
        }
      }
      for (const b of bs) {
        // routed in every family it serves: no host port, the binding opens the
        // container port on the container's own address (per family: a nat
        // family of the same binding still takes its host port)
        const families = expandBinding(b, has).map((h) => (h.includes(':') ? info.gatewayMode6 : info.gatewayMode));
        if (families.every((m) => m === 'routed')) {
          publish.push(b);
          continue;
        }
        const clash = bound.find((x) => bindingsConflict(x.b, b));
        if (clash) {
          fail(pf, `port already taken: ${formatHostPort(b.hostIp, b.hostPort)}/${b.proto} collides with ${formatBinding(clash.b)} of ${clash.field}`);
        }
        bound.push({ b, field: pf });
        publish.push(b);
      }
    });

    pending.push({ index: i, name, network, ip, ip6, run, publish });
  });

  // Host-side veth names are derived from container names; a (very unlikely)
  // hash collision, or a bridge using the same name, is a configuration error.
  const ifnames = d.ifnames;
  for (const n of d.networks) ifnames.set(n.bridge, `the bridge of networks[${d.netInfo.get(n.name)!.index}]`);
  for (const p of pending) {
    const v = hostVethName(p.name);
    const other = ifnames.get(v);
    if (other) fail(`containers[${p.index}].name`, `host veth name ${v} collides with ${other}`);
    ifnames.set(v, `the host veth of containers[${p.index}]`);
  }

  // Pass 2: automatic addresses, in file order, lowest free address first
  // (IPv6: after the gateway6, as Docker's IPAM hands them out).
  const cursor = new Map<string, number>();
  const cursor6 = new Map<string, bigint>();
  for (const p of pending) {
    const info = d.netInfo.get(p.network)!;
    if (p.ip === null && info.cidr) {
      const last = broadcastAddress(info.cidr) - 1;
      let a = cursor.get(p.network) ?? networkAddress(info.cidr) + 1;
      while (a <= last && (a === info.gateway || taken.has(a))) a++;
      if (a > last) {
        fail(`containers[${p.index}].ip`, `no free address left in subnet ${formatCidr(info.cidr)} of network ${JSON.stringify(p.network)}`);
      }
      p.ip = a;
      taken.set(a, p.index);
      cursor.set(p.network, a + 1);
    }
    if (p.ip6 === null && info.cidr6) {
      const from = cursor6.get(p.network) ?? info.gateway6 + 1n;
      const a = nextFreeIPv6(info.cidr6, from, (x) => x === info.gateway6 || taken6.has(x));
      if (a === null) fail(`containers[${p.index}].ip6`, `no free address left in subnet6 ${formatCidr6(info.cidr6)} of network ${JSON.stringify(p.network)} after ${formatIPv6(from)}`);
      p.ip6 = a;
      taken6.set(a, p.index);
      cursor6.set(p.network, a + 1n);
    }
    const c: { -readonly [K in keyof ContainerConfig]: ContainerConfig[K] } = {
      name: p.name,
      network: p.network,
      ip: p.ip === null ? '' : formatIPv4(p.ip),
      publish: p.publish,
    };
    if (p.ip6 !== null) c.ip6 = formatIPv6(p.ip6);
    if (p.run) c.run = p.run;
    d.containers.push(c);
    d.containerIndex.set(p.name, p.index);
  }
}

function validateExternals(raw: unknown, d: Draft): void {
  const list = optList(raw, 'externals');
  const seen = new Map<string, { index: number; cidr: Cidr; cidr6: Cidr6 | null }>();
  list.forEach((item, i) => {
    const f = `externals[${i}]`;
    const o = expectObj(item, f);
    checkKeys(o, EXTERNAL_FIELDS, f);
    const name = reqString(o, 'name', f);
    checkName(name, `${f}.name`);
    const ci = d.containerIndex.get(name);
    if (ci !== undefined) fail(`${f}.name`, `name ${JSON.stringify(name)} is already used by containers[${ci}] (externals and containers share the network namespace names)`);
    const prev = seen.get(name);
    if (prev) fail(`${f}.name`, `duplicate external name ${JSON.stringify(name)} (also externals[${prev.index}])`);

    const addrStr = reqString(o, 'address', f);
    const cidr = parseCidr(addrStr);
    if (!cidr) fail(`${f}.address`, `invalid IPv4 address with prefix ${JSON.stringify(addrStr)} (expected a.b.c.d/len, e.g. 10.250.0.2/24)`);
    if (cidr.prefixLen < 8 || cidr.prefixLen > 30) fail(`${f}.address`, `prefix length must be between 8 and 30 (got /${cidr.prefixLen})`);
    const net = networkAddress(cidr);
    const subnet = `${formatIPv4(net)}/${cidr.prefixLen}`;
    const hostAddr = net + 1;
    if (cidr.addr === net) fail(`${f}.address`, `${addrStr} is the network address of ${subnet}`);
    if (cidr.addr === broadcastAddress(cidr)) fail(`${f}.address`, `${addrStr} is the broadcast address of ${subnet}`);
    if (cidr.addr === hostAddr) fail(`${f}.address`, `${addrStr} is the host-side address of ${subnet} (the first usable address belongs to the host; use another one)`);
    for (const [otherName, other] of d.netInfo) {
      if (other.cidr && cidrOverlaps(cidr, other.cidr)) fail(`${f}.address`, `subnet ${subnet} overlaps the subnet ${formatCidr(other.cidr)} of network ${JSON.stringify(otherName)} (networks[${other.index}])`);
    }
    for (const [otherName, other] of seen) {
      if (cidrOverlaps(cidr, other.cidr)) fail(`${f}.address`, `subnet ${subnet} overlaps the subnet of external ${JSON.stringify(otherName)} (externals[${other.index}])`);
    }
    let cidr6: Cidr6 | null = null;
    const addr6Str = optString(o, 'address6', f);
    if (addr6Str !== undefined) {
      if (parseCidr(addr6Str) || parseIPv4(addr6Str) !== null) fail(`${f}.address6`, `${addr6Str} is IPv4; use address for IPv4 (address6 is e.g. fd00:ff:1::2/64)`);
      if (parseIPv6(addr6Str) !== null) fail(`${f}.address6`, `${addr6Str} lacks its prefix length (expected e.g. fd00:ff:1::2/64)`);
      cidr6 = subnet6Field(addr6Str, `${f}.address6`, true);
      const p6 = unicastProblem6(cidr6.addr);
      if (p6) fail(`${f}.address6`, `${addr6Str} is ${p6}`);
      const net6 = networkAddress6(cidr6);
      const sub6 = formatCidr6({ addr: net6, prefixLen: cidr6.prefixLen });
      if (cidr6.addr === net6) fail(`${f}.address6`, `${addr6Str} is the network (subnet-router anycast) address of ${sub6}`);
      if (cidr6.addr === net6 + 1n) fail(`${f}.address6`, `${addr6Str} is the host-side address of ${sub6} (the first address belongs to the host; use another one)`);
      for (const [otherName, other] of d.netInfo) {
        if (other.cidr6 && cidr6Overlaps(cidr6, other.cidr6)) fail(`${f}.address6`, `subnet ${sub6} overlaps the subnet6 ${formatCidr6(other.cidr6)} of network ${JSON.stringify(otherName)} (networks[${other.index}])`);
      }
      for (const [otherName, other] of seen) {
        if (other.cidr6 && cidr6Overlaps(cidr6, other.cidr6)) fail(`${f}.address6`, `subnet ${sub6} overlaps the IPv6 subnet of external ${JSON.stringify(otherName)} (externals[${other.index}])`);
      }
    }

    const hostIfname = externalVethName(name);
    const owner = d.ifnames.get(hostIfname);
    if (owner) fail(`${f}.name`, `host veth name ${hostIfname} collides with ${owner}`);
    d.ifnames.set(hostIfname, `the host veth of externals[${i}]`);
    seen.set(name, { index: i, cidr, cidr6 });

    const run = optRun(o, f);
    const e: { -readonly [K in keyof ExternalConfig]: ExternalConfig[K] } = {
      name,
      address: formatIPv4(cidr.addr),
      prefixLen: cidr.prefixLen,
      subnetCidr: subnet,
      hostAddress: formatIPv4(hostAddr),
      hostIfname,
    };
    if (cidr6) {
      const net6 = networkAddress6(cidr6);
      e.address6 = formatIPv6(cidr6.addr);
      e.prefixLen6 = cidr6.prefixLen;
      e.subnet6Cidr = formatCidr6({ addr: net6, prefixLen: cidr6.prefixLen });
      e.hostAddress6 = formatIPv6(net6 + 1n);
    }
    if (run) e.run = run;
    d.externals.push(e);
  });
}

/** A list of host interface names (uplinks, interfaces): names, no duplicates, none of the file's bridges or container veths. */
function interfaceList(raw: unknown, key: 'uplinks' | 'interfaces', what: string, d: Draft): string[] {
  const list = optList(raw, key);
  const seen = new Map<string, number>();
  const out: string[] = [];
  list.forEach((v, i) => {
    const f = `${key}[${i}]`;
    if (typeof v !== 'string') fail(f, `must be an interface name (got ${describeType(v)})`);
    const p = ifnameProblem(v);
    if (p) fail(f, `invalid interface name ${JSON.stringify(v)}: ${p}`);
    const prev = seen.get(v);
    if (prev !== undefined) fail(f, `duplicate ${what} ${JSON.stringify(v)} (also ${key}[${prev}])`);
    const owner = d.ifnames.get(v);
    if (owner && !owner.startsWith('the host veth of externals')) fail(f, `${v} is ${owner}, not an interface to the outside`);
    seen.set(v, i);
    out.push(v);
  });
  return out;
}

function validateUplinks(raw: unknown, d: Draft): void {
  if (raw === undefined || raw === null) return;
  d.uplinks = interfaceList(raw, 'uplinks', 'uplink', d);
}

function validateInterfaces(raw: unknown, d: Draft): void {
  if (raw === undefined || raw === null) return;
  d.interfaces = interfaceList(raw, 'interfaces', 'interface', d);
}

function intField(o: Obj, key: string, f: string, def: number, min: number, max: number): number {
  const v = o[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(`${f}.${key}`, `must be an integer (got ${describeType(v)})`);
  if (v < min || v > max) fail(`${f}.${key}`, `must be between ${min} and ${max} (got ${v})`);
  return v;
}

function validateSettings(raw: unknown, d: Draft): void {
  if (raw === undefined || raw === null) return;
  const o = expectObj(raw, 'settings');
  checkKeys(o, ['conntrack', 'nat'], 'settings');
  const D = DEFAULT_SETTINGS;
  let conntrack = D.conntrack;
  if (o.conntrack !== undefined && o.conntrack !== null) {
    const c = expectObj(o.conntrack, 'settings.conntrack');
    const keys = Object.keys(D.conntrack) as (keyof ConntrackSettings)[];
    checkKeys(c, keys, 'settings.conntrack');
    const out = {} as { -readonly [K in keyof ConntrackSettings]: number };
    for (const k of keys) out[k] = intField(c, k, 'settings.conntrack', D.conntrack[k], 1, 0x7fffffff);
    // two entries per flow: at most half the table waits unassured; by default a quarter
    const most = Math.max(1, Math.floor(out.max / 2));
    if (c.unassuredMax === undefined || c.unassuredMax === null) out.unassuredMax = Math.max(1, Math.floor(out.max / 4));
    else if (out.unassuredMax > most) fail('settings.conntrack.unassuredMax', `must be at most max / 2 = ${most} (two entries per flow; got ${out.unassuredMax})`);
    conntrack = out;
  }
  let nat = D.nat;
  if (o.nat !== undefined && o.nat !== null) {
    const n = expectObj(o.nat, 'settings.nat');
    checkKeys(n, ['portMin', 'portMax'], 'settings.nat');
    const portMin = intField(n, 'portMin', 'settings.nat', D.nat.portMin, 1024, 65535);
    const portMax = intField(n, 'portMax', 'settings.nat', D.nat.portMax, 1024, 65535);
    if (portMin >= portMax) fail('settings.nat.portMin', `must be lower than portMax (${portMin} >= ${portMax})`);
    nat = { portMin, portMax };
  }
  d.settings = { conntrack, nat };
}

/** Top-level sections, validated in this order (later ones may use earlier results). */
const SECTIONS: ReadonlyArray<readonly [string, (raw: unknown, d: Draft) => void]> = [
  ['networks', validateNetworks],
  ['containers', validateContainers],
  ['externals', validateExternals],
  ['uplinks', validateUplinks],
  ['interfaces', validateInterfaces],
  ['settings', validateSettings],
];

/** Validates an already-parsed document (e.g. from JSON). */
export function validateConfig(doc: unknown, source = '<config>'): BerthConfig {
  try {
    const top = expectObj(doc ?? {}, '');
    checkKeys(top, SECTIONS.map(([k]) => k), '');
    const d: Draft = {
      networks: [],
      netInfo: new Map(),
      containers: [],
      containerIndex: new Map(),
      ifnames: new Map(),
      externals: [],
      settings: DEFAULT_SETTINGS,
    };
    for (const [key, validate] of SECTIONS) validate(top[key], d);
    const cfg: { -readonly [K in keyof BerthConfig]: BerthConfig[K] } = {
      networks: d.networks,
      containers: d.containers,
      externals: d.externals,
      settings: d.settings,
    };
    if (d.uplinks) cfg.uplinks = d.uplinks;
    if (d.interfaces) cfg.interfaces = d.interfaces;
    return deepFreeze(cfg);
  } catch (err) {
    if (err instanceof Invalid) throw new ConfigError(source, err.field, err.reason);
    throw err;
  }
}

export function parseConfig(text: string, source = '<config>'): BerthConfig {
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(source, '', `YAML syntax error: ${doc.errors[0]!.message}`);
  }
  let js: unknown;
  try {
    js = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(source, '', `YAML error: ${(err as Error).message}`);
  }
  return validateConfig(js, source);
}

export function loadConfig(file: string): BerthConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(file, '', e.code === 'ENOENT' ? 'config file not found' : `cannot read config file: ${e.message}`);
  }
  return parseConfig(text, file);
}
