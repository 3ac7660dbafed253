/**
 * A standalone reload by difference (issue 13): which networks, containers
 * and externals of a file changed between the version in force and the new
 * one, so that a reload builds or takes down only their topology
 * (platform/topology.ts); the plan then emits steps only for what differs.
 *
 * What counts as a topology change: for a network, its name, families,
 * subnets, gateways, bridge and `internal` (containers' default routes);
 * `icc`, `masquerade` and `gatewayMode` are the dataplane's alone. For a
 * container, its network, addresses and `run`, or a topology change of its
 * network; its `publish` list is the dataplane's alone. An external: any
 * field. A changed one is taken down and built again (a changed `run` is a
 * restart of that command).
 */
import type { BerthConfig, ContainerConfig, ExternalConfig, NetworkConfig } from '../domain/config';
import { externalVethName, hostVethName } from '../domain/names';

export interface NameLists {
  networks: string[];
  containers: string[];
  externals: string[];
}

export interface ConfigDiff {
  /** in the new file and not in the old one (nothing of theirs exists yet) */
  added: { networks: NetworkConfig[]; containers: ContainerConfig[]; externals: ExternalConfig[] };
  /** in the old file and not in the new one */
  removed: { networks: NetworkConfig[]; containers: ContainerConfig[]; externals: ExternalConfig[] };
  /** in both, with a topology change: the old version (to take down) and the new (to build) */
  changed: {
    networks: Array<{ old: NetworkConfig; next: NetworkConfig }>;
    containers: Array<{ old: ContainerConfig; next: ContainerConfig }>;
    externals: Array<{ old: ExternalConfig; next: ExternalConfig }>;
  };
  /** load-time settings of the dataplane that differ: they take effect at the next start of berth */
  loadTime: string[];
}

function networkTopology(n: NetworkConfig): string {
  return JSON.stringify([n.name, n.ipv4, n.subnetCidr, n.bridge, n.gateway, n.ipv6, n.subnet6Cidr ?? '', n.gateway6 ?? '', n.internal]);
}

function containerTopology(c: ContainerConfig): string {
  return JSON.stringify([c.network, c.ip, c.ip6 ?? '', c.run ?? []]);
}

function byName<T extends { name: string }>(xs: readonly T[]): Map<string, T> {
  return new Map(xs.map((x) => [x.name, x]));
}

/** Splits two versions of a file into added, removed and changed (see the header); pure. */
export function diffConfig(old: BerthConfig, next: BerthConfig): ConfigDiff {
  const d: ConfigDiff = { added: { networks: [], containers: [], externals: [] }, removed: { networks: [], containers: [], externals: [] }, changed: { networks: [], containers: [], externals: [] }, loadTime: [] };
  const oldNets = byName(old.networks);
  const nextNets = byName(next.networks);
  const netChanged = new Set<string>();
  for (const n of next.networks) {
    const o = oldNets.get(n.name);
    if (!o) d.added.networks.push(n);
    else if (networkTopology(o) !== networkTopology(n)) {
      d.changed.networks.push({ old: o, next: n });
      netChanged.add(n.name);
    }
  }
  for (const o of old.networks) if (!nextNets.has(o.name)) d.removed.networks.push(o);

  const oldCs = byName(old.containers);
  const nextCs = byName(next.containers);
  for (const c of next.containers) {
    const o = oldCs.get(c.name);
    if (!o) d.added.containers.push(c);
    else if (containerTopology(o) !== containerTopology(c) || netChanged.has(c.network) || netChanged.has(o.network)) d.changed.containers.push({ old: o, next: c });
  }
  for (const o of old.containers) if (!nextCs.has(o.name)) d.removed.containers.push(o);

  const oldXs = byName(old.externals);
  const nextXs = byName(next.externals);
  for (const x of next.externals) {
    const o = oldXs.get(x.name);
    if (!o) d.added.externals.push(x);
    else if (JSON.stringify(o) !== JSON.stringify(x)) d.changed.externals.push({ old: o, next: x });
  }
  for (const o of old.externals) if (!nextXs.has(o.name)) d.removed.externals.push(o);

  const s0 = old.settings;
  const s1 = next.settings;
  if (s0.conntrack.max !== s1.conntrack.max) d.loadTime.push('settings.conntrack.max');
  if (s0.conntrack.unassuredMax !== s1.conntrack.unassuredMax) d.loadTime.push('settings.conntrack.unassuredMax');
  if (s0.nat.portMin !== s1.nat.portMin || s0.nat.portMax !== s1.nat.portMax) d.loadTime.push('settings.nat');
  return d;
}

/** A file part with nothing in it (no topology call needed). */
export function emptyPart(c: BerthConfig): boolean {
  return !c.networks.length && !c.containers.length && !c.externals.length;
}

/**
 * A file of the given parts of `base` (topology.up and down take a whole
 * file): the containers' networks are added, as up checks each container's
 * bridge (an existing one is checked, not built again).
 */
export function partOf(base: BerthConfig, part: { networks?: readonly NetworkConfig[]; containers?: readonly ContainerConfig[]; externals?: readonly ExternalConfig[] }): BerthConfig {
  const nets = new Map((part.networks ?? []).map((n) => [n.name, n]));
  for (const c of part.containers ?? []) {
    const n = base.networks.find((x) => x.name === c.network);
    if (n && !nets.has(n.name)) nets.set(n.name, n);
  }
  return { ...base, networks: [...nets.values()], containers: [...(part.containers ?? [])], externals: [...(part.externals ?? [])] };
}

/** The three topology phases of a reload, in order (see daemon.ts reload): each a file part and its names. */
export function reloadPhases(old: BerthConfig, next: BerthConfig, d: ConfigDiff): { add: BerthConfig; takeDown: BerthConfig; rebuild: BerthConfig; up: NameLists; down: NameLists } {
  // 1. what is only added: nothing of it exists, so building it first and refusing before any change keeps a bad reload harmless
  const addedNets = new Set(d.added.networks.map((n) => n.name));
  const changedNets = new Set(d.changed.networks.map((x) => x.next.name));
  // a new container on a changed network waits for its network's rebuild (phase 3)
  const addNow = d.added.containers.filter((c) => !changedNets.has(c.network));
  const addLater = d.added.containers.filter((c) => changedNets.has(c.network));
  const add = partOf(next, { networks: d.added.networks, containers: addNow, externals: d.added.externals });
  // 2. what goes or changes, taken down as `berth down` would (its namespace, processes, veths, bridge)
  const takeDown: BerthConfig = {
    ...old,
    networks: [...d.removed.networks, ...d.changed.networks.map((x) => x.old)],
    containers: [...d.removed.containers, ...d.changed.containers.map((x) => x.old)],
    externals: [...d.removed.externals, ...d.changed.externals.map((x) => x.old)],
  };
  // 3. the changed ones built again from the new file
  const rebuild = partOf(next, { networks: d.changed.networks.map((x) => x.next), containers: [...d.changed.containers.map((x) => x.next), ...addLater], externals: d.changed.externals.map((x) => x.next) });
  const names = (c: BerthConfig, builtNets: (n: NetworkConfig) => boolean): NameLists => ({ networks: c.networks.filter(builtNets).map((n) => n.name), containers: c.containers.map((x) => x.name), externals: c.externals.map((x) => x.name) });
  const up = names(add, (n) => addedNets.has(n.name));
  const again = names(rebuild, (n) => changedNets.has(n.name));
  return {
    add,
    takeDown,
    rebuild,
    up: { networks: [...up.networks, ...again.networks], containers: [...up.containers, ...again.containers], externals: [...up.externals, ...again.externals] },
    down: { networks: takeDown.networks.map((n) => n.name), containers: takeDown.containers.map((c) => c.name), externals: takeDown.externals.map((x) => x.name) },
  };
}

/**
 * What the new file holds that the host lost behind berth's back (a container's or an external's
 * host veth gone: its namespace deleted, the container restarted by hand): built again after the
 * reload's own phases, as a whole-file `berth up` would. `linkExists` is asked after those phases.
 */
export function lostPart(next: BerthConfig, linkExists: (ifname: string) => boolean): BerthConfig {
  return partOf(next, {
    containers: next.containers.filter((c) => !linkExists(hostVethName(c.name))),
    externals: next.externals.filter((x) => !linkExists(externalVethName(x.name))),
  });
}

