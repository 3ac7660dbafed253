/**
 * Bridges: each network's choke point (berth_bridge, its counters, the
 * tc_bridge hooks), programmed before the network's endpoints. Bridges of
 * other scopes are theirs; an attachment with no entry is an orphan.
 */
import { bridgeCodec, counterKeyCodec, ifindexKeyCodec } from '../../platform/contract';
import { DIRS, PlanContext, networkFlags, syncEntries } from './common';

/** berth_bridge entries, counters and choke-point hooks of the scope's bridges. */
export function planBridges(ctx: PlanContext): void {
  const { desired, current, steps, ids, inScope, netName, bridgeIfindex } = ctx;
  // --- bridges: each network's choke point, programmed before its endpoints ----
  // Every bridge of the scope gets its berth_bridge entry, then its programs.
  // Bridges of other scopes are theirs; an attachment with no entry is an orphan.
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
}
