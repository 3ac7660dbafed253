/**
 * Uplinks (berth_uplink: masquerade addresses) and served interfaces (their
 * counters, the tc and XDP hooks): the whole set, shared by every scope
 * (engine/owners.ts widens it to every claim).
 */
import { counterKeyCodec, ifindexKeyCodec, uplinkCodec } from '../../platform/contract';
import { DIRS, PlanContext, syncEntries } from './common';
import { xdpChoiceLogged } from '../../platform/xdpmode';

/** Uplinks and served interfaces (left alone when desired.uplinks is undefined). */
export function planUplinks(ctx: PlanContext): void {
  const { desired, current, steps, uplinkIfindex } = ctx;
  // --- uplinks (map entries) and served interfaces (counters and hooks) ------
  if (desired.uplinks) {
    const want = new Map<string, { key: Buffer; value: Buffer; what: string }>();
    for (const u of desired.uplinks) {
      const key = ifindexKeyCodec.encode({ ifindex: u.ifindex });
      want.set(key.toString('hex'), { key, value: uplinkCodec.encode({ addr: u.addr || '0.0.0.0', flags: 0, mac: u.mac, addr6: u.addr6 ?? '::' }), what: `uplink ${u.ifname}` });
    }
    const isUplink = new Set(desired.uplinks.map((u) => u.ifindex));
    const served = new Map<number, { ifindex: number; ifname: string }>();
    for (const i of [...desired.uplinks, ...(desired.served ?? [])]) served.set(i.ifindex, i);
    // XDP only where the driver runs it natively (platform/xdpmode.ts); the tc program takes the same drops elsewhere
    const xdpOn = new Set(desired.xdp ? [...served.values()].filter((u) => xdpChoiceLogged(u.ifname).mode === 'native').map((u) => u.ifindex) : []);
    for (const u of served.values()) {
      uplinkIfindex.add(u.ifindex);
      const role = isUplink.has(u.ifindex) ? 'uplink' : 'served interface';
      for (const d of DIRS)
        if (!current.counters.has(`${u.ifindex}:${d}`))
          steps.push({ op: 'put', map: 'counters', what: `counters ${role} ${u.ifname}`, key: counterKeyCodec.encode({ ifindex: u.ifindex, direction: d }), value: Buffer.alloc(0), flag: 'noexist' });
      const kinds: Array<'tc' | 'xdp'> = xdpOn.has(u.ifindex) ? ['tc', 'xdp'] : ['tc'];
      for (const kind of kinds) {
        const progId = kind === 'tc' ? current.progIds.uplink : current.progIds.xdp;
        const ok = (current.uplinkAttachments ?? []).some((a) => a.ifindex === u.ifindex && a.kind === kind && a.live && a.progId === progId);
        if (!ok) steps.push({ op: 'attachUplink', what: `${kind} hook on ${role} ${u.ifname}`, ifindex: u.ifindex, kind });
      }
    }
    syncEntries(steps, 'uplink', want, current.uplinks, () => true, (k) => `uplink ifindex ${ifindexKeyCodec.decode(k).ifindex}`);
    for (const a of current.uplinkAttachments ?? []) {
      if (uplinkIfindex.has(a.ifindex) && (a.kind === 'tc' || xdpOn.has(a.ifindex)) && a.live) continue;
      steps.push({ op: 'detachUplink', what: `${a.kind} hook on ifindex ${a.ifindex}`, ifindex: a.ifindex, kind: a.kind });
    }
  } else {
    for (const a of current.uplinkAttachments ?? []) uplinkIfindex.add(a.ifindex);
    for (const e of current.uplinks?.values() ?? []) uplinkIfindex.add(ifindexKeyCodec.decode(e.key).ifindex);
  }

}
