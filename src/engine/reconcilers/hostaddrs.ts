/**
 * The host's own addresses (berth_host_addr, berth_host_addr6): the whole
 * set, shared by every scope (engine/owners.ts).
 */
import { hostAddrValueCodec, ip6KeyCodec, ipKeyCodec } from '../../platform/contract';
import { PlanContext, syncEntries } from './common';

/** The host addresses (left alone when desired.hostAddrs is undefined). */
export function planHostAddrs(ctx: PlanContext): void {
  const { desired, current, steps } = ctx;
  // --- host addresses ---------------------------------------------------------
  if (desired.hostAddrs) {
    const want = new Map<string, { key: Buffer; value: Buffer; what: string }>();
    const want6 = new Map<string, { key: Buffer; value: Buffer; what: string }>();
    for (const a of desired.hostAddrs) {
      const v6 = a.addr.includes(':');
      const key = v6 ? ip6KeyCodec.encode({ addr: a.addr }) : ipKeyCodec.encode({ addr: a.addr });
      (v6 ? want6 : want).set(key.toString('hex'), { key, value: hostAddrValueCodec.encode({ ifindex: a.ifindex, flags: 0 }), what: `host address ${a.addr}` });
    }
    syncEntries(steps, 'hostAddr', want, current.hostAddrs, () => true, (k) => `host address ${ipKeyCodec.decode(k).addr}`);
    syncEntries(steps, 'hostAddr6', want6, current.hostAddrs6, () => true, (k) => `host address ${ip6KeyCodec.decode(k).addr}`);
  }

}
