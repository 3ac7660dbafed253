/**
 * Endpoints: a container's veth (its counters, metadata, hooks) and the
 * forwarding entries that lead to it (berth_ep_by_ifindex, _by_ip, _by_ip6).
 * Order for packets in flight: what the veth's own hooks read (counters,
 * metadata) exists before they attach, and the hooks are on before any
 * forwarding entry sends a packet to the veth; on the way out the forwarding
 * entries go first (no new packet is sent there), then the hooks, then what
 * only the hooks read. Each kind of step is planned for every endpoint before
 * the next kind (all counters, all metadata, all hooks, all forwarding
 * entries), which keeps each endpoint's order and gives apply() long runs of
 * one map to batch (engine/batch.ts).
 */
import { CounterKey, Direction, Endpoint, counterKeyCodec, endpointCodec, endpointMetaCodec, ifindexKeyCodec, ip6KeyCodec, ipKeyCodec } from '../../platform/contract';
import { DIRS, PlanContext, networkFlags, sameBuf } from './common';

/** Every desired endpoint, added or brought up to date. */
export function planEndpoints(ctx: PlanContext): void {
  const { current, steps: out, ids, desiredNet, desired, desiredIfindex, desiredIps, desiredIps6 } = ctx;
  const phases = { counters: [] as typeof out, meta: [] as typeof out, hooks: [] as typeof out, byIfindex: [] as typeof out, byIp: [] as typeof out, byIp6: [] as typeof out };

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
        phases.counters.push({
          op: 'put',
          map: 'counters',
          what: `counters ${e.ifname} ${d === Direction.FROM_CONTAINER ? 'from' : 'to'} container`,
          key: counterKeyCodec.encode({ ifindex: e.ifindex, direction: d } as CounterKey),
          value: Buffer.alloc(0), // sized by apply() for the machine's CPU count
          flag: 'noexist',
        });
    }
    if (!cur?.meta || !sameBuf(endpointMetaCodec.encode(cur.meta), metaBuf))
      phases.meta.push({ op: 'put', map: 'epMeta', what: label, key: ifKey, value: metaBuf });
    const hooks = current.attachments.filter((a) => a.ifindex === e.ifindex && a.live);
    const ok = (dir: 'ingress' | 'egress'): boolean =>
      hooks.some((h) => h.direction === dir && h.progId === current.progIds[dir]);
    if (!ok('ingress') || !ok('egress')) phases.hooks.push({ op: 'attach', what: label, ifindex: e.ifindex });
    if (!cur || !sameBuf(endpointCodec.encode(cur.ep), epBuf))
      phases.byIfindex.push({ op: 'put', map: 'epByIfindex', what: label, key: ifKey, value: epBuf });
    const curIp = e.ip ? current.byIp.get(e.ip) : undefined;
    if (e.ip && (!curIp || !sameBuf(endpointCodec.encode(curIp), epBuf)))
      phases.byIp.push({ op: 'put', map: 'epByIp', what: `address ${e.ip} -> ${e.container}`, key: ipKeyCodec.encode({ addr: e.ip }), value: epBuf });
    const curIp6 = e.ip6 ? current.byIp6?.get(e.ip6) : undefined;
    if (e.ip6 && (!curIp6 || !sameBuf(endpointCodec.encode(curIp6), epBuf)))
      phases.byIp6.push({ op: 'put', map: 'epByIp6', what: `address ${e.ip6} -> ${e.container}`, key: ip6KeyCodec.encode({ addr: e.ip6 }), value: epBuf });
  }
  for (const p of Object.values(phases)) for (const s of p) out.push(s);
}

/** The scope's endpoints no longer desired, and what is left of half-made ones (only inside the scope). */
export function planEndpointRemovals(ctx: PlanContext): void {
  const { current, steps, inScope, desiredIfindex, desiredIps, desiredIps6, uplinkIfindex, bridgeIfindex } = ctx;
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
}
