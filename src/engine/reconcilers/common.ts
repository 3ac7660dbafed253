/**
 * What every reconciler of plan() shares: the plan's context (desired state,
 * current state, scope, the network ids) and the small helpers.
 */
import { Direction, NetworkMeta, EndpointFlags } from '../../platform/contract';
import type { Maps } from '../../platform/dataplane';
import type { CurrentState, DesiredNetwork, DesiredState, RawEntries, Step } from '../reconcile';

export const DIRS = [Direction.FROM_CONTAINER, Direction.TO_CONTAINER] as const;

export function sameBuf(a: Buffer | undefined, b: Buffer): boolean {
  return !!a && a.equals(b);
}

/** An IPv4 field of a network, '0.0.0.0' on an IPv6-only one. */
export function v4OrNone(n: DesiredNetwork, v: string): string {
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

/**
 * Make a map hold exactly `want` among the entries `owned` says are ours:
 * puts for missing or different values, deletes for owned entries not wanted.
 */
export function syncEntries(
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

/** One plan's shared context; each reconciler appends its steps to `steps`. */
export interface PlanContext {
  readonly desired: DesiredState;
  readonly current: CurrentState;
  readonly scope: ReadonlySet<string>;
  readonly steps: Step[];
  /** network name -> id (kept, or the lowest free) */
  readonly ids: ReadonlyMap<string, number>;
  readonly desiredNet: ReadonlyMap<string, DesiredNetwork>;
  netName(id: number): string | undefined;
  /** the network id is one of this scope's */
  inScope(id: number): boolean;
  /** interfaces others own, which endpoint removals leave alone: every bridge berth guards, every served interface */
  readonly bridgeIfindex: Set<number>;
  readonly uplinkIfindex: Set<number>;
  /** the desired endpoints' veths and addresses (filled by the endpoints reconciler) */
  readonly desiredIfindex: Set<number>;
  readonly desiredIps: Set<string>;
  readonly desiredIps6: Set<string>;
}

export function planContext(desired: DesiredState, current: CurrentState, scope: ReadonlySet<string>): PlanContext {
  const netName = (id: number): string | undefined => current.networks.get(id)?.name;
  return {
    desired,
    current,
    scope,
    steps: [],
    ids: assignNetworkIds(desired.networks, current.networks),
    desiredNet: new Map(desired.networks.map((n) => [n.name, n])),
    netName,
    inScope: (id) => {
      const name = netName(id);
      return name !== undefined && scope.has(name);
    },
    bridgeIfindex: new Set(),
    uplinkIfindex: new Set(),
    desiredIfindex: new Set(),
    desiredIps: new Set(),
    desiredIps6: new Set(),
  };
}
