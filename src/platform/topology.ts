// Builds the namespaces of a berth config the way Docker plumbs a
// --network=none container by hand:
//
//   network   → Linux bridge (alias berth:bridge:<network>), gateway/prefix, up
//   container → netns <container>, lo up, veth pair: host end bthXXXXXXXX
//               (alias berth:veth:<container>) enslaved to the bridge, peer
//               eth0 inside the netns (alias berth:eth0:<container>) with
//               ip/prefix and a default route via the gateway (none on an
//               internal network).
//   external  → an "outside host": netns <name>, lo up, veth pair: host end
//               bteXXXXXXXX (alias berth:ext:<name>, NOT on a bridge) with the
//               first usable address of the external's subnet, peer eth0
//               inside (alias berth:exteth0:<name>) with the external's
//               address and a default route via the host end.
//
// IPv6 (issue 12), for a network with subnet6 and an external with address6
// only (the others are built as before): IPv6 is switched on
// (disable_ipv6=0) on the bridge, in the namespace (all, default, eth0) and
// on the external's host end; the bridge gets gateway6/prefix6, eth0 its ip6
// (or address6), the external's host end the first address of its subnet,
// all `nodad` (berth owns these links, nothing else can hold the address),
// and the namespace a default IPv6 route via gateway6 (not on an internal
// network) or via the external's host end. An IPv6-only network (no subnet)
// gets no IPv4 address and no IPv4 route.
//
// The aliases are ownership marks: `up` refuses to touch, and `down` leaves
// alone, anything with a wanted name that does not carry berth's mark.
//
// Everything goes through rtnetlink (./netlink: the addon's Netlink class);
// no `ip` process. Namespaces are made like `ip netns add` (and interoperate
// with it); a container's `run:` command starts under `nsenter --net=`.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { BerthConfig, ContainerConfig, ExternalConfig, NetworkConfig } from '../domain/config';
import type { Netlink } from './netlink';
import {
  addressesOf, defaultRoutes, deleteLinkIfPresent, netnsAdd, netnsDelete, netnsList, netnsPath,
  netnsPids as netnsPidsOf, openNetlink, withNetlink, writeSysctl,
} from './netlink';
import { canonicalIPv6 } from '../domain/ipv6';
import { CONTAINER_IFNAME, bridgeMark, eth0Mark, externalEth0Mark, externalMark, hostVethMark, hostVethName } from '../domain/names';

export interface RealizedEndpoint {
  container: string;
  network: string;
  /** '' on an IPv6-only network */
  ip: string;
  prefixLen: number;
  gateway: string;
  /** IPv6 address, prefix length and gateway on a network with subnet6 (absent otherwise) */
  ip6?: string;
  prefixLen6?: number;
  gateway6?: string;
  /** container eth0 MAC, lowercase aa:bb:cc:dd:ee:ff */
  mac: string;
  hostIfname: string;
  hostIfindex: number;
  bridge: string;
  bridgeIfindex: number;
  netns: string;
}

export interface RealizedExternal {
  name: string;
  /** eth0 address inside the external's namespace */
  address: string;
  prefixLen: number;
  /** address of the host side of the veth (the external's gateway) */
  hostAddress: string;
  /** IPv6: eth0's address, prefix length and the host side's address (absent without address6) */
  address6?: string;
  prefixLen6?: number;
  hostAddress6?: string;
  hostIfname: string;
  hostIfindex: number;
  /** host side MAC, lowercase */
  hostMac: string;
  netns: string;
  /** eth0 MAC inside the namespace, lowercase */
  mac: string;
}

export interface UpOptions {
  /** Start each container's `run` command (default true). */
  startCommands?: boolean;
}

export interface DownResult {
  removed: string[];
  skipped: string[];
}

/** Error from up(): either a failed pre-check (problems) or a failed step (rolled back). */
export class TopologyError extends Error {
  constructor(
    message: string,
    /** Failed step, when a step failed after the pre-check. */
    readonly step?: string,
    /** Pre-check problems (nothing was created). */
    readonly problems: readonly string[] = [],
  ) {
    super(message);
    this.name = 'TopologyError';
  }
}

// ---------------------------------------------------------------------------
// Reading state over rtnetlink

/** What the topology needs of a link (names as `ip -j` had them). */
interface IpLink {
  ifindex: number;
  ifname: string;
  /** MAC, '' when none */
  address: string;
  /** '' when none */
  ifalias?: string;
  /** the master's name, when there is one */
  master?: string;
  /** IFLA_LINK: a veth's peer ifindex; undefined when none */
  link_index?: number;
  /** IFLA_INFO_KIND, '' when none */
  kind: string;
}

async function getLink(name: string, ns?: string): Promise<IpLink | null> {
  return withNetlink(ns, async (nl) => {
    const l = await nl.link(name);
    if (!l) return null;
    const master = l.master ? (await nl.links()).find((m) => m.ifindex === l.master)?.name ?? String(l.master) : undefined;
    return {
      ifindex: l.ifindex,
      ifname: l.name,
      address: l.mac,
      ...(l.alias ? { ifalias: l.alias } : {}),
      ...(master !== undefined ? { master } : {}),
      ...(l.peerIfindex ? { link_index: l.peerIfindex } : {}),
      kind: l.kind,
    };
  });
}

/** Link state inside a namespace that may be broken or vanish: errors → null. */
async function getLinkQuiet(name: string, ns?: string): Promise<IpLink | null> {
  try {
    return await getLink(name, ns);
  } catch {
    return null;
  }
}

async function getAddrs(name: string, ns?: string, family: 4 | 6 = 4): Promise<{ local: string; prefixlen: number }[]> {
  return (await withNetlink(ns, (nl) => addressesOf(nl, name, family))).map((a) => ({ local: a.address, prefixlen: a.prefixLen }));
}

async function getDefaultRoutes(ns: string, family: 4 | 6 = 4): Promise<{ gateway?: string }[]> {
  return (await withNetlink(ns, (nl) => defaultRoutes(nl, family))).map((r) => (r.gateway ? { gateway: r.gateway } : {}));
}

/** The addon prints IPv6 in RFC 5952 text already (inet_ntop); compare canonically anyway (the config's text is canonical). */
const sameAddr = (a: { local: string; prefixlen: number }, want: string): boolean => `${canonicalIPv6(a.local) ?? a.local}/${a.prefixlen}` === want;

async function listNetns(): Promise<Set<string>> {
  return new Set(netnsList());
}

async function netnsPids(ns: string): Promise<number[]> {
  try {
    return netnsPidsOf(ns);
  } catch {
    return [];
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/** SIGTERM every process in the namespace, then SIGKILL survivors after a bounded wait. */
async function killNetnsProcesses(ns: string, termWaitMs = 1000): Promise<number> {
  let pids = await netnsPids(ns);
  const total = pids.length;
  if (total === 0) return 0;
  for (const p of pids) signal(p, 'SIGTERM');
  for (const [sig, wait] of [['SIGKILL', termWaitMs], [null, 2000]] as const) {
    const deadline = Date.now() + wait;
    while (Date.now() < deadline) {
      await sleep(50);
      pids = await netnsPids(ns);
      if (pids.length === 0) return total;
    }
    if (sig) for (const p of pids) signal(p, sig);
  }
  return total;
}

/** Waits (bounded) for a host link to disappear; returns its state if it is still there. */
async function waitLinkGone(name: string, ms: number): Promise<IpLink | null> {
  const deadline = Date.now() + ms;
  for (;;) {
    const l = await getLinkQuiet(name);
    if (!l || Date.now() >= deadline) return l;
    await sleep(50);
  }
}

/** IPv4 on a network (hand-made configs from before issue 12 have no `ipv4`: IPv4). */
const hasIpv4 = (net: NetworkConfig): boolean => net.ipv4 !== false;

/** IPv6 on for one host interface (the bridge or an external's host end), before it gets its address. */
function enableIpv6(ifname: string): void {
  if (!/^[^/\0]{1,15}$/.test(ifname) || ifname === '.' || ifname === '..') throw new Error(`not an interface name: '${ifname}'`);
  fs.writeFileSync(`/proc/sys/net/ipv6/conf/${ifname}/disable_ipv6`, '0');
}

/** Switches IPv6 on in a namespace (all, default and eth0), by /proc inside it (no procps, no process). */
async function enableIpv6InNetns(ns: string): Promise<void> {
  for (const c of ['all', 'default', CONTAINER_IFNAME]) await writeSysctl(ns, `net/ipv6/conf/${c}/disable_ipv6`, '0');
}

// ---------------------------------------------------------------------------
// Planning

interface ContainerPlan {
  c: ContainerConfig;
  net: NetworkConfig;
  hostIf: string;
  create: boolean;
}

interface ExternalPlan {
  e: ExternalConfig;
  create: boolean;
}

interface Plan {
  bridges: { net: NetworkConfig; create: boolean }[];
  containers: ContainerPlan[];
  externals: ExternalPlan[];
  problems: string[];
}

function externalsOf(cfg: BerthConfig): readonly ExternalConfig[] {
  // Tolerate hand-made configs written before externals existed.
  return cfg.externals ?? [];
}

function aliasText(l: IpLink): string {
  return l.ifalias ? `alias "${l.ifalias}"` : 'no alias';
}

function networkOf(cfg: BerthConfig, c: ContainerConfig): NetworkConfig {
  const net = cfg.networks.find((n) => n.name === c.network);
  if (!net) throw new TopologyError(`container ${c.name}: unknown network ${c.network}`);
  return net;
}

async function plan(cfg: BerthConfig): Promise<Plan> {
  const problems: string[] = [];
  const p: Plan = { bridges: [], containers: [], externals: [], problems };
  const namespaces = await listNetns();

  for (const net of cfg.networks) {
    const l = await getLink(net.bridge);
    if (!l) {
      p.bridges.push({ net, create: true });
      continue;
    }
    if (l.ifalias !== bridgeMark(net.name)) {
      problems.push(`bridge ${net.bridge} (network ${net.name}) already exists and is not berth's (${aliasText(l)})`);
      continue;
    }
    const want = `${net.gateway}/${net.subnet.prefixLen}`;
    const want6 = `${net.gateway6}/${net.subnet6?.prefixLen}`;
    if (l.kind !== 'bridge') {
      problems.push(`link ${net.bridge} carries berth's mark for network ${net.name} but is not a bridge (kind ${l.kind || 'unknown'}); run down first`);
    } else if (hasIpv4(net) && !(await getAddrs(net.bridge)).some((a) => `${a.local}/${a.prefixlen}` === want)) {
      problems.push(`bridge ${net.bridge} carries berth's mark for network ${net.name} but lacks address ${want}; run down first`);
    } else if (net.ipv6 && !(await getAddrs(net.bridge, undefined, 6)).some((a) => sameAddr(a, want6))) {
      problems.push(`bridge ${net.bridge} carries berth's mark for network ${net.name} but lacks address ${want6}; run down first`);
    }
    p.bridges.push({ net, create: false });
  }

  for (const c of cfg.containers) {
    const net = networkOf(cfg, c);
    const hostIf = hostVethName(c.name);
    const host = await getLink(hostIf);
    if (host && host.ifalias !== hostVethMark(c.name)) {
      problems.push(`interface ${hostIf} (host veth of container ${c.name}) already exists and is not berth's (${aliasText(host)})`);
    }
    if (!namespaces.has(c.name)) {
      if (host && host.ifalias === hostVethMark(c.name)) {
        problems.push(`host veth ${hostIf} of container ${c.name} exists but its network namespace does not; run down first`);
      }
      p.containers.push({ c, net, hostIf, create: true });
      continue;
    }
    const eth0 = await getLinkQuiet(CONTAINER_IFNAME, c.name);
    if (!eth0 || eth0.ifalias !== eth0Mark(c.name)) {
      problems.push(
        `network namespace ${c.name} already exists and is not berth's (${eth0 ? `${CONTAINER_IFNAME} has ${aliasText(eth0)}` : `no ${CONTAINER_IFNAME}`})`,
      );
      continue;
    }
    // Ours: it must match the config, otherwise refuse rather than guess.
    const mismatch: string[] = [];
    if (!host) mismatch.push(`host veth ${hostIf} is missing`);
    else if (host.ifalias === hostVethMark(c.name)) {
      if (host.master !== net.bridge) mismatch.push(`host veth ${hostIf} is attached to ${host.master ?? 'nothing'} instead of ${net.bridge}`);
      if (eth0.link_index !== undefined && eth0.link_index !== host.ifindex) mismatch.push(`${CONTAINER_IFNAME} is not the peer of ${hostIf}`);
    }
    if (hasIpv4(net)) {
      const want = `${c.ip}/${net.subnet.prefixLen}`;
      const addrs = await getAddrs(CONTAINER_IFNAME, c.name);
      if (!addrs.some((a) => `${a.local}/${a.prefixlen}` === want)) mismatch.push(`${CONTAINER_IFNAME} lacks address ${want}`);
      const routes = await getDefaultRoutes(c.name);
      if (net.internal) {
        if (routes.length) mismatch.push(`has a default route but network ${net.name} is internal`);
      } else if (!routes.some((r) => r.gateway === net.gateway)) mismatch.push(`no default route via ${net.gateway}`);
    }
    if (net.ipv6 && c.ip6) {
      const want6 = `${c.ip6}/${net.subnet6!.prefixLen}`;
      if (!(await getAddrs(CONTAINER_IFNAME, c.name, 6)).some((a) => sameAddr(a, want6))) mismatch.push(`${CONTAINER_IFNAME} lacks address ${want6}`);
      const routes6 = await getDefaultRoutes(c.name, 6);
      if (net.internal) {
        if (routes6.length) mismatch.push(`has a default IPv6 route but network ${net.name} is internal`);
      } else if (!routes6.some((r) => canonicalIPv6(r.gateway ?? '') === net.gateway6)) mismatch.push(`no default IPv6 route via ${net.gateway6}`);
    }
    if (mismatch.length) {
      problems.push(`network namespace ${c.name} is berth's but does not match the config (${mismatch.join('; ')}); run down first`);
    }
    p.containers.push({ c, net, hostIf, create: false });
  }

  for (const e of externalsOf(cfg)) {
    const host = await getLink(e.hostIfname);
    if (host && host.ifalias !== externalMark(e.name)) {
      problems.push(`interface ${e.hostIfname} (host veth of external ${e.name}) already exists and is not berth's (${aliasText(host)})`);
    }
    if (!namespaces.has(e.name)) {
      if (host && host.ifalias === externalMark(e.name)) {
        problems.push(`host veth ${e.hostIfname} of external ${e.name} exists but its network namespace does not; run down first`);
      }
      p.externals.push({ e, create: true });
      continue;
    }
    const eth0 = await getLinkQuiet(CONTAINER_IFNAME, e.name);
    if (!eth0 || eth0.ifalias !== externalEth0Mark(e.name)) {
      problems.push(
        `network namespace ${e.name} already exists and is not berth's (${eth0 ? `${CONTAINER_IFNAME} has ${aliasText(eth0)}` : `no ${CONTAINER_IFNAME}`})`,
      );
      continue;
    }
    const mismatch: string[] = [];
    if (!host) mismatch.push(`host veth ${e.hostIfname} is missing`);
    else if (host.ifalias === externalMark(e.name)) {
      if (host.master) mismatch.push(`host veth ${e.hostIfname} is attached to ${host.master}`);
      if (eth0.link_index !== undefined && eth0.link_index !== host.ifindex) mismatch.push(`${CONTAINER_IFNAME} is not the peer of ${e.hostIfname}`);
      const hostWant = `${e.hostAddress}/${e.prefixLen}`;
      if (!(await getAddrs(e.hostIfname)).some((a) => `${a.local}/${a.prefixlen}` === hostWant)) mismatch.push(`${e.hostIfname} lacks address ${hostWant}`);
    }
    const want = `${e.address}/${e.prefixLen}`;
    if (!(await getAddrs(CONTAINER_IFNAME, e.name)).some((a) => `${a.local}/${a.prefixlen}` === want)) mismatch.push(`${CONTAINER_IFNAME} lacks address ${want}`);
    if (!(await getDefaultRoutes(e.name)).some((r) => r.gateway === e.hostAddress)) mismatch.push(`no default route via ${e.hostAddress}`);
    if (e.address6) {
      const want6 = `${e.address6}/${e.prefixLen6}`;
      const hostWant6 = `${e.hostAddress6}/${e.prefixLen6}`;
      if (host && !(await getAddrs(e.hostIfname, undefined, 6)).some((a) => sameAddr(a, hostWant6))) mismatch.push(`${e.hostIfname} lacks address ${hostWant6}`);
      if (!(await getAddrs(CONTAINER_IFNAME, e.name, 6)).some((a) => sameAddr(a, want6))) mismatch.push(`${CONTAINER_IFNAME} lacks address ${want6}`);
      if (!(await getDefaultRoutes(e.name, 6)).some((r) => canonicalIPv6(r.gateway ?? '') === e.hostAddress6)) mismatch.push(`no default IPv6 route via ${e.hostAddress6}`);
    }
    if (mismatch.length) {
      problems.push(`network namespace ${e.name} (external) is berth's but does not match the config (${mismatch.join('; ')}); run down first`);
    }
    p.externals.push({ e, create: false });
  }
  return p;
}

// ---------------------------------------------------------------------------
// up / describe / down

interface Undo {
  what: string;
  fn: () => Promise<void>;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Window during which a started command exiting non-zero makes `up` fail. */
const START_CHECK_MS = 300;

function startDetached(ns: string, argv: readonly string[]): Promise<{ pid: number; exited: Promise<string | null> }> {
  return new Promise((resolve, reject) => {
    // nsenter (util-linux) joins the namespace only; `ip netns exec` used to
    // also remount /sys, which no container command here relies on.
    const child = spawn('nsenter', [`--net=${netnsPath(ns)}`, '--', ...argv], { detached: true, stdio: 'ignore' });
    let failed: string | null = null;
    const exited = new Promise<string | null>((res) => {
      child.once('exit', (code, sig) => {
        failed = code === 0 ? null : sig ? `killed by ${sig}` : `exited with code ${code}`;
        res(failed);
      });
    });
    child.once('error', (err) => reject(err));
    child.once('spawn', () => {
      child.unref();
      resolve({ pid: child.pid!, exited });
    });
  });
}

export async function up(cfg: BerthConfig, opts: UpOptions = {}): Promise<RealizedEndpoint[]> {
  const startCommands = opts.startCommands ?? true;
  const p = await plan(cfg);
  if (p.problems.length) {
    throw new TopologyError(`berth up: refusing to change anything:\n  - ${p.problems.join('\n  - ')}`, undefined, p.problems);
  }

  const undo: Undo[] = [];
  let current = '';
  const step = async (what: string, fn: () => Promise<unknown>, undoFn?: () => Promise<void>) => {
    current = what;
    await fn();
    if (undoFn) undo.push({ what, fn: undoFn });
  };
  const host = openNetlink();
  const inNs = (ns: string, fn: (nl: Netlink) => Promise<void>) => withNetlink(ns, fn);
  const removeLink = async (name: string) => {
    await deleteLinkIfPresent(host, name);
  };

  try {
    for (const { net, create } of p.bridges) {
      if (!create) continue;
      const br = net.bridge;
      await step(`create bridge ${br}`, () => host.addBridge(br), () => removeLink(br));
      await step(`mark bridge ${br}`, () => host.setLink(br, { alias: bridgeMark(net.name) }));
      if (hasIpv4(net)) {
        await step(`add address ${net.gateway}/${net.subnet.prefixLen} to bridge ${br}`, () =>
          host.addAddress(br, { address: net.gateway, prefixLen: net.subnet.prefixLen, broadcast: true }),
        );
      }
      if (net.ipv6) {
        current = `enable IPv6 on bridge ${br}`;
        enableIpv6(br);
        await step(`add address ${net.gateway6}/${net.subnet6!.prefixLen} to bridge ${br}`, () =>
          host.addAddress(br, { address: net.gateway6!, prefixLen: net.subnet6!.prefixLen, nodad: true }),
        );
      }
      await step(`set bridge ${br} up`, () => host.setLink(br, { up: true }));
    }

    /**
     * A namespace with lo up and a veth pair: `hostIf` in the host, eth0
     * inside (created there under its final name, so no temporary name in
     * the host can collide), both carrying berth's marks.
     */
    const plumb = async (ns: string, hostIf: string, hostMark: string, innerMark: string): Promise<void> => {
      await step(`create network namespace ${ns}`, () => netnsAdd(ns), async () => {
        await killNetnsProcesses(ns);
        await netnsDelete(ns);
      });
      await step(`set lo up in ${ns}`, () => inNs(ns, (nl) => nl.setLink('lo', { up: true })));
      await step(
        `create veth ${hostIf} <-> ${ns}:${CONTAINER_IFNAME}`,
        () => host.addVeth(hostIf, CONTAINER_IFNAME, { peerNetns: netnsPath(ns) }),
        () => removeLink(hostIf),
      );
      await step(`mark veth ${hostIf}`, () => host.setLink(hostIf, { alias: hostMark }));
      await step(`mark ${ns}:${CONTAINER_IFNAME}`, () => inNs(ns, (nl) => nl.setLink(CONTAINER_IFNAME, { alias: innerMark })));
    };

    for (const { c, net, hostIf, create } of p.containers) {
      if (!create) continue;
      const ns = c.name;
      await plumb(ns, hostIf, hostVethMark(c.name), eth0Mark(c.name));
      await step(`attach ${hostIf} to bridge ${net.bridge}`, () => host.setLink(hostIf, { master: net.bridge }));
      await step(`set ${hostIf} up`, () => host.setLink(hostIf, { up: true }));
      if (hasIpv4(net)) {
        await step(`add address ${c.ip}/${net.subnet.prefixLen} to ${ns}:${CONTAINER_IFNAME}`, () =>
          inNs(ns, (nl) => nl.addAddress(CONTAINER_IFNAME, { address: c.ip, prefixLen: net.subnet.prefixLen, broadcast: true })),
        );
      }
      if (net.ipv6 && c.ip6) {
        await step(`enable IPv6 in ${ns}`, () => enableIpv6InNetns(ns));
        await step(`add address ${c.ip6}/${net.subnet6!.prefixLen} to ${ns}:${CONTAINER_IFNAME}`, () =>
          inNs(ns, (nl) => nl.addAddress(CONTAINER_IFNAME, { address: c.ip6!, prefixLen: net.subnet6!.prefixLen, nodad: true })),
        );
      }
      await step(`set ${ns}:${CONTAINER_IFNAME} up`, () => inNs(ns, (nl) => nl.setLink(CONTAINER_IFNAME, { up: true })));
      // An internal network has no way out: no default route (like Docker's --internal).
      if (!net.internal && hasIpv4(net)) {
        await step(`add default route via ${net.gateway} in ${ns}`, () =>
          inNs(ns, (nl) => nl.addRoute({ dst: 'default', gateway: net.gateway, dev: CONTAINER_IFNAME })),
        );
      }
      if (!net.internal && net.ipv6 && c.ip6) {
        await step(`add default IPv6 route via ${net.gateway6} in ${ns}`, () =>
          inNs(ns, (nl) => nl.addRoute({ dst: 'default', gateway: net.gateway6!, dev: CONTAINER_IFNAME })),
        );
      }
    }

    for (const { e, create } of p.externals) {
      if (!create) continue;
      const ns = e.name;
      const hostIf = e.hostIfname;
      await plumb(ns, hostIf, externalMark(e.name), externalEth0Mark(e.name));
      await step(`add address ${e.hostAddress}/${e.prefixLen} to ${hostIf}`, () =>
        host.addAddress(hostIf, { address: e.hostAddress, prefixLen: e.prefixLen, broadcast: true }),
      );
      await step(`set ${hostIf} up`, () => host.setLink(hostIf, { up: true }));
      await step(`add address ${e.address}/${e.prefixLen} to ${ns}:${CONTAINER_IFNAME}`, () =>
        inNs(ns, (nl) => nl.addAddress(CONTAINER_IFNAME, { address: e.address, prefixLen: e.prefixLen, broadcast: true })),
      );
      await step(`set ${ns}:${CONTAINER_IFNAME} up`, () => inNs(ns, (nl) => nl.setLink(CONTAINER_IFNAME, { up: true })));
      await step(`add default route via ${e.hostAddress} in ${ns}`, () =>
        inNs(ns, (nl) => nl.addRoute({ dst: 'default', gateway: e.hostAddress, dev: CONTAINER_IFNAME })),
      );
      if (e.address6) {
        current = `enable IPv6 on ${hostIf}`;
        enableIpv6(hostIf);
        await step(`add address ${e.hostAddress6}/${e.prefixLen6} to ${hostIf}`, () =>
          host.addAddress(hostIf, { address: e.hostAddress6!, prefixLen: e.prefixLen6!, nodad: true }),
        );
        await step(`enable IPv6 in ${ns}`, () => enableIpv6InNetns(ns));
        await step(`add address ${e.address6}/${e.prefixLen6} to ${ns}:${CONTAINER_IFNAME}`, () =>
          inNs(ns, (nl) => nl.addAddress(CONTAINER_IFNAME, { address: e.address6!, prefixLen: e.prefixLen6!, nodad: true })),
        );
        await step(`add default IPv6 route via ${e.hostAddress6} in ${ns}`, () =>
          inNs(ns, (nl) => nl.addRoute({ dst: 'default', gateway: e.hostAddress6!, dev: CONTAINER_IFNAME })),
        );
      }
    }

    if (startCommands) {
      const started: { ns: string; argv: readonly string[]; exited: Promise<string | null> }[] = [];
      const runners: { name: string; run?: readonly string[] }[] = [...p.containers.map((x) => x.c), ...p.externals.map((x) => x.e)];
      for (const c of runners) {
        if (!c.run || c.run.length === 0) continue;
        // Idempotence: a namespace that already runs something is left alone.
        if ((await netnsPids(c.name)).length > 0) continue;
        current = `start command in ${c.name}: ${c.run.join(' ')}`;
        const { pid, exited } = await startDetached(c.name, c.run);
        undo.push({
          what: current,
          fn: async () => {
            signal(-pid, 'SIGKILL');
          },
        });
        started.push({ ns: c.name, argv: c.run, exited });
      }
      if (started.length) {
        const timeout = sleep(START_CHECK_MS).then(() => 'ok' as const);
        for (const s of started) {
          const r = await Promise.race([s.exited, timeout]);
          if (typeof r === 'string' && r !== 'ok') {
            current = `start command in ${s.ns}: ${s.argv.join(' ')}`;
            throw new Error(`command ${r} within ${START_CHECK_MS}ms`);
          }
        }
      }
    }
  } catch (err) {
    const failures: string[] = [];
    for (const u of undo.reverse()) {
      try {
        await u.fn();
      } catch (e) {
        failures.push(`undo "${u.what}": ${errText(e)}`);
      }
    }
    const rb = failures.length ? `; rollback incomplete:\n  - ${failures.join('\n  - ')}` : '; rolled back';
    throw new TopologyError(`berth up: step "${current}" failed: ${errText(err)}${rb}`, current);
  } finally {
    host.close();
  }

  return describe(cfg);
}

/** Endpoints (containers) and externals that exist and carry berth's marks. */
export async function describeAll(cfg: BerthConfig): Promise<{ endpoints: RealizedEndpoint[]; externals: RealizedExternal[] }> {
  const endpoints = await describe(cfg);
  const namespaces = await listNetns();
  const externals: RealizedExternal[] = [];
  for (const e of externalsOf(cfg)) {
    if (!namespaces.has(e.name)) continue;
    const eth0 = await getLinkQuiet(CONTAINER_IFNAME, e.name);
    const host = await getLinkQuiet(e.hostIfname);
    if (!eth0 || !host || !eth0.address || !host.address) continue;
    if (eth0.ifalias !== externalEth0Mark(e.name) || host.ifalias !== externalMark(e.name)) continue;
    externals.push({
      name: e.name,
      address: e.address,
      prefixLen: e.prefixLen,
      hostAddress: e.hostAddress,
      ...(e.address6 ? { address6: e.address6, prefixLen6: e.prefixLen6, hostAddress6: e.hostAddress6 } : {}),
      hostIfname: e.hostIfname,
      hostIfindex: host.ifindex,
      hostMac: host.address.toLowerCase(),
      netns: e.name,
      mac: eth0.address.toLowerCase(),
    });
  }
  return { endpoints, externals };
}

export async function describe(cfg: BerthConfig): Promise<RealizedEndpoint[]> {
  const namespaces = await listNetns();
  const out: RealizedEndpoint[] = [];
  const bridges = new Map<string, IpLink | null>();
  for (const c of cfg.containers) {
    if (!namespaces.has(c.name)) continue;
    const net = networkOf(cfg, c);
    if (!bridges.has(net.bridge)) bridges.set(net.bridge, await getLinkQuiet(net.bridge));
    const br = bridges.get(net.bridge);
    const hostIfname = hostVethName(c.name);
    const eth0 = await getLinkQuiet(CONTAINER_IFNAME, c.name);
    const host = await getLinkQuiet(hostIfname);
    if (!br || !eth0 || !host || !eth0.address) continue;
    if (br.ifalias !== bridgeMark(net.name) || eth0.ifalias !== eth0Mark(c.name) || host.ifalias !== hostVethMark(c.name)) continue;
    out.push({
      container: c.name,
      network: net.name,
      ip: c.ip,
      prefixLen: net.subnet.prefixLen,
      gateway: net.gateway,
      ...(net.ipv6 && c.ip6 ? { ip6: c.ip6, prefixLen6: net.subnet6!.prefixLen, gateway6: net.gateway6 } : {}),
      mac: eth0.address.toLowerCase(),
      hostIfname,
      hostIfindex: host.ifindex,
      bridge: net.bridge,
      bridgeIfindex: br.ifindex,
      netns: c.name,
    });
  }
  return out;
}

export async function down(cfg: BerthConfig): Promise<DownResult> {
  const removed: string[] = [];
  const skipped: string[] = [];
  const namespaces = await listNetns();

  for (const c of cfg.containers) {
    const ns = c.name;
    const hostIf = hostVethName(c.name);
    let deletedNs = false;
    if (namespaces.has(ns)) {
      const eth0 = await getLinkQuiet(CONTAINER_IFNAME, ns);
      if (eth0 && eth0.ifalias === eth0Mark(c.name)) {
        const killed = await killNetnsProcesses(ns);
        await netnsDelete(ns);
        removed.push(`netns ${ns}${killed ? ` (killed ${killed} process${killed > 1 ? 'es' : ''})` : ''}`);
        deletedNs = true;
      } else {
        skipped.push(`netns ${ns}: not berth's (${eth0 ? `${CONTAINER_IFNAME} has ${aliasText(eth0)}` : `no ${CONTAINER_IFNAME}`})`);
      }
    }
    // Deleting the namespace destroys eth0 and thus the veth pair, but the
    // kernel does so asynchronously: give it a moment before deleting by hand.
    const host = deletedNs ? await waitLinkGone(hostIf, 2000) : await getLink(hostIf);
    if (host) {
      if (host.ifalias === hostVethMark(c.name)) {
        await withNetlink(undefined, (nl) => deleteLinkIfPresent(nl, hostIf));
        removed.push(`link ${hostIf}`);
      } else {
        skipped.push(`link ${hostIf}: not berth's (${aliasText(host)})`);
      }
    }
  }

  for (const e of externalsOf(cfg)) {
    const ns = e.name;
    let deletedNs = false;
    if (namespaces.has(ns)) {
      const eth0 = await getLinkQuiet(CONTAINER_IFNAME, ns);
      if (eth0 && eth0.ifalias === externalEth0Mark(e.name)) {
        const killed = await killNetnsProcesses(ns);
        await netnsDelete(ns);
        removed.push(`netns ${ns}${killed ? ` (killed ${killed} process${killed > 1 ? 'es' : ''})` : ''}`);
        deletedNs = true;
      } else {
        skipped.push(`netns ${ns}: not berth's (${eth0 ? `${CONTAINER_IFNAME} has ${aliasText(eth0)}` : `no ${CONTAINER_IFNAME}`})`);
      }
    }
    const host = deletedNs ? await waitLinkGone(e.hostIfname, 2000) : await getLink(e.hostIfname);
    if (host) {
      if (host.ifalias === externalMark(e.name)) {
        await withNetlink(undefined, (nl) => deleteLinkIfPresent(nl, e.hostIfname));
        removed.push(`link ${e.hostIfname}`);
      } else {
        skipped.push(`link ${e.hostIfname}: not berth's (${aliasText(host)})`);
      }
    }
  }

  for (const net of cfg.networks) {
    const br = await getLink(net.bridge);
    if (!br) continue;
    if (br.ifalias === bridgeMark(net.name)) {
      await withNetlink(undefined, (nl) => deleteLinkIfPresent(nl, net.bridge));
      removed.push(`bridge ${net.bridge}`);
    } else {
      skipped.push(`bridge ${net.bridge}: not berth's (${aliasText(br)})`);
    }
  }
  return { removed, skipped };
}
