/** What is published where, read back from the pinned publish map (`berth ports`). */
import { publishKeyCodec, publishValueCodec, PublishFlags, networkKeyCodec, networkMetaCodec, ifindexKeyCodec, endpointMetaCodec } from '../platform/contract';
import type { Dataplane } from '../platform/dataplane';

export interface PortRow {
  hostIp: string;
  hostPort: number;
  proto: string;
  container: string;
  network: string;
  containerIp: string;
  containerPort: number;
  loopbackOnly: boolean;
  /** a routed network's container port: hostIp/hostPort are the container's own address and port (no host port) */
  routed: boolean;
}

export async function readPorts(dp: Dataplane): Promise<PortRow[]> {
  const nets = new Map<number, string>();
  for (const [k, v] of await dp.maps.netMeta.dump()) nets.set(networkKeyCodec.decode(k).network_id, networkMetaCodec.decode(v).name);
  const containers = new Map<number, string>();
  for (const [k, v] of await dp.maps.epMeta.dump()) containers.set(ifindexKeyCodec.decode(k).ifindex, endpointMetaCodec.decode(v).container);
  const rows: PortRow[] = [];
  for (const [k, v] of await dp.maps.publish.dump()) {
    const key = publishKeyCodec.decode(k);
    const val = publishValueCodec.decode(v);
    rows.push({
      hostIp: key.host_addr,
      hostPort: key.host_port,
      proto: key.proto === 6 ? 'tcp' : key.proto === 17 ? 'udp' : String(key.proto),
      container: containers.get(val.ifindex) ?? '',
      network: nets.get(val.network_id) ?? '',
      containerIp: val.addr,
      containerPort: val.port,
      loopbackOnly: (val.flags & PublishFlags.LOOPBACK) !== 0,
      routed: (val.flags & PublishFlags.ROUTED) !== 0,
    });
  }
  return rows.sort((a, b) => a.hostPort - b.hostPort || a.proto.localeCompare(b.proto) || a.hostIp.localeCompare(b.hostIp));
}
