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
  counterKeyCodec,
  endpointCodec,
  endpointMetaCodec,
  ifindexKeyCodec,
  ipKeyCodec,
  networkKeyCodec,
  networkMetaCodec,
  zeroPerCpuCounters,
} from './contract';
import type { Attachment, Dataplane, Maps } from './dataplane';

export interface DesiredNetwork {
  name: string;
  bridge: string;
  subnet: string;
  prefixLen: number;
  gateway: string;
  icc: boolean;
}

export interface DesiredEndpoint {
  container: string;
  network: string;
  ip: string;
  mac: string;
  ifindex: number;
  ifname: string;
}

export interface DesiredState {
  networks: readonly DesiredNetwork[];
  endpoints: readonly DesiredEndpoint[];
}

export interface CurrentEndpoint {
  ep: Endpoint;
  meta?: EndpointMeta;
}

export interface CurrentState {
  networks: ReadonlyMap<number, NetworkMeta>;
  endpoints: ReadonlyMap<number, CurrentEndpoint>; // by ifindex
  byIp: ReadonlyMap<string, Endpoint>;
  counters: ReadonlySet<string>; // `${ifindex}:${direction}`
  /** ifindex -> attached hooks with the program ids they run */
  attachments: ReadonlyArray<Pick<Attachment, 'ifindex' | 'direction' | 'progId' | 'live'>>;
  progIds: { ingress: number; egress: number };
}

export type Step =
  | { op: 'put'; map: keyof Maps; what: string; key: Buffer; value: Buffer; flag?: 'noexist' }
  | { op: 'delete'; map: keyof Maps; what: string; key: Buffer }
  | { op: 'attach'; what: string; ifindex: number }
  | { op: 'detach'; what: string; ifindex: number };

const DIRS = [Direction.FROM_CONTAINER, Direction.TO_CONTAINER] as const;

function sameBuf(a: Buffer | undefined, b: Buffer): boolean {
  return !!a && a.equals(b);
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
      subnet: n.subnet,
      prefix_len: n.prefixLen,
      gateway: n.gateway,
      flags: n.icc ? EndpointFlags.ICC : 0,
    };
    const value = networkMetaCodec.encode(meta);
    const cur = current.networks.get(id);
    if (!cur || !networkMetaCodec.encode(cur).equals(value))
      steps.push({ op: 'put', map: 'netMeta', what: `network ${n.name} (id ${id})`, key: networkKeyCodec.encode({ network_id: id }), value });
  }

  const desiredIfindex = new Set<number>();
  const desiredIps = new Set<string>();
  for (const e of desired.endpoints) {
    const net = desiredNet.get(e.network);
    if (!net) throw new Error(`endpoint ${e.container}: network ${e.network} is not desired`);
    if (desiredIfindex.has(e.ifindex)) throw new Error(`endpoint ${e.container}: ifindex ${e.ifindex} used twice`);
    if (desiredIps.has(e.ip)) throw new Error(`endpoint ${e.container}: address ${e.ip} used twice`);
    desiredIfindex.add(e.ifindex);
    desiredIps.add(e.ip);
    const id = ids.get(e.network)!;
    const ep: Endpoint = { addr: e.ip, ifindex: e.ifindex, network_id: id, flags: net.icc ? EndpointFlags.ICC : 0, mac: e.mac };
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
    const curIp = current.byIp.get(e.ip);
    if (!curIp || !sameBuf(endpointCodec.encode(curIp), epBuf))
      steps.push({ op: 'put', map: 'epByIp', what: `address ${e.ip} -> ${e.container}`, key: ipKeyCodec.encode({ addr: e.ip }), value: epBuf });
  }

  // --- removals (only inside the scope) ---------------------------------------
  const desiredIds = new Set(ids.values());
  for (const [ip, ep] of current.byIp) {
    if (desiredIps.has(ip) || !inScope(ep.network_id) && current.networks.has(ep.network_id)) continue;
    steps.push({ op: 'delete', map: 'epByIp', what: `address ${ip}`, key: ipKeyCodec.encode({ addr: ip }) });
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
  const knownIfindex = new Set<number>([...desiredIfindex]);
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
  const counters = new Set<string>();
  for (const k of dp.maps.counters.keys()) {
    const ck = counterKeyCodec.decode(k);
    counters.add(`${ck.ifindex}:${ck.direction}`);
  }
  return {
    networks,
    endpoints,
    byIp,
    counters,
    attachments: dp.attachments(),
    progIds: { ingress: dp.progs.ingress.id, egress: dp.progs.egress.id },
  };
}

export interface ApplyResult {
  applied: number;
  steps: Step[];
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
export async function apply(dp: Dataplane, steps: readonly Step[], hooks?: { beforeStep?: (s: Step, i: number) => void }): Promise<ApplyResult> {
  const undo: Array<() => void> = [];
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
          undo.push(prev ? () => map.update(s.key, prev) : () => void map.delete(s.key));
          break;
        }
        case 'delete': {
          const map = dp.maps[s.map];
          const prev = map.lookup(s.key);
          if (!prev) break;
          map.delete(s.key);
          undo.push(() => map.update(s.key, prev, 'noexist'));
          break;
        }
        case 'attach': {
          const made = dp.attachVeth(s.ifindex);
          undo.push(() => made.forEach((d) => dp.detachHook(s.ifindex, d)));
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
  return { applied: steps.length, steps: [...steps] };
}

/** plan + apply against what is pinned now. */
export async function reconcile(dp: Dataplane, desired: DesiredState, scope: ReadonlySet<string>): Promise<ApplyResult> {
  const steps = plan(desired, await readCurrent(dp), scope);
  return apply(dp, steps);
}
