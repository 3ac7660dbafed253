/**
 * Published ports (berth_publish): the scope's entries; a port another
 * scope holds is refused before any step.
 */
import { PublishFlags, publishKeyCodec, publishValueCodec } from '../../platform/contract';
import { PlanContext, syncEntries } from './common';

/** berth_publish for the scope (left alone when desired.publish is undefined). */
export function planPublish(ctx: PlanContext): void {
  const { desired, current, steps, ids, inScope, netName } = ctx;
  // --- published ports ----------------------------------------------------------
  if (desired.publish) {
    const want = new Map<string, { key: Buffer; value: Buffer; what: string }>();
    // per family: a network may be routed for IPv4 and nat for IPv6, or the other way
    const routedNets = new Set(desired.networks.filter((n) => n.routed && !n.internal).map((n) => n.name));
    const routed6Nets = new Set(desired.networks.filter((n) => n.routed6 && !n.internal && n.subnet6).map((n) => n.name));
    for (const p of desired.publish) {
      const id = ids.get(p.network);
      if (id === undefined) throw new Error(`publish ${p.hostIp}:${p.hostPort}/${p.proto}: network ${p.network} is not desired`);
      // a routed network's publish opens the container port on the container's
      // own address, whatever the host address and port (Docker's routed port
      // mapper drops them): keyed by (container address, container port)
      const routed = (p.hostIp.includes(':') ? routed6Nets : routedNets).has(p.network);
      const key = routed
        ? publishKeyCodec.encode({ host_addr: p.ip, host_port: p.port, proto: p.proto === 'tcp' ? 6 : 17 })
        : publishKeyCodec.encode({ host_addr: p.hostIp, host_port: p.hostPort, proto: p.proto === 'tcp' ? 6 : 17 });
      const hex = key.toString('hex');
      const value = publishValueCodec.encode({
        addr: p.ip,
        port: p.port,
        flags: routed ? PublishFlags.ROUTED : p.hostIp.startsWith('127.') || p.hostIp === '::1' ? PublishFlags.LOOPBACK : 0,
        ifindex: p.ifindex,
        network_id: id,
        mac: p.mac,
      });
      const prev = want.get(hex);
      if (prev && routed && prev.value.equals(value)) continue; // -p 8080:80 -p 8081:80: one container port
      if (p.hostIp.includes(':') !== p.ip.includes(':')) throw new Error(`publish ${p.hostIp}:${p.hostPort}/${p.proto}: container address ${p.ip} is not of the host address's family`);
      if (prev) throw new Error(`publish ${p.hostIp}:${p.hostPort}/${p.proto}: port already taken by ${prev.what}`);
      const what = routed ? `${p.ip}:${p.port}/${p.proto} (routed) -> ${p.container}:${p.port}` : `${p.hostIp}:${p.hostPort}/${p.proto} -> ${p.container}:${p.port}`;
      want.set(hex, { key, value, what });
    }
    // a taken port in another scope is refused before any step
    for (const [hex, w] of want) {
      const h = current.publish?.get(hex);
      if (h && !inScope(publishValueCodec.decode(h.value).network_id) && current.networks.has(publishValueCodec.decode(h.value).network_id))
        throw new Error(`publish ${w.what}: port already taken by network ${netName(publishValueCodec.decode(h.value).network_id)}`);
    }
    syncEntries(steps, 'publish', want, current.publish, (e) => {
      const id = publishValueCodec.decode(e.value).network_id;
      return inScope(id) || !current.networks.has(id);
    }, (k) => {
      const pk = publishKeyCodec.decode(k);
      return `publish ${pk.host_addr}:${pk.host_port}/${pk.proto === 6 ? 'tcp' : 'udp'}`;
    });
  }

}
