/**
 * Networks: their metadata (berth_net_meta) and their packet-path facts
 * (berth_net), put first; a network of the scope no longer desired goes last,
 * after everything that pointed at it.
 */
import { formatIPv4, prefixMask } from '../../domain/ipv4';
import { ipv6Mask } from '../../platform/codec';
import { NetworkMeta, netValueCodec, networkKeyCodec, networkMetaCodec } from '../../platform/contract';
import { PlanContext, networkFlags, syncEntries, v4OrNone } from './common';

/** berth_net_meta and berth_net for every desired network. */
export function planNetworks(ctx: PlanContext): void {
  const { desired, current, steps, ids, inScope } = ctx;
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

}

/** The scope's networks that are no longer desired (after their endpoints). */
export function planNetworkRemovals(ctx: PlanContext): void {
  const { current, scope, steps, ids } = ctx;
  const desiredIds = new Set(ids.values());
  for (const [id, meta] of current.networks) {
    if (!scope.has(meta.name) || desiredIds.has(id)) continue;
    steps.push({ op: 'delete', map: 'netMeta', what: `network ${meta.name} (id ${id})`, key: networkKeyCodec.encode({ network_id: id }) });
  }
}
