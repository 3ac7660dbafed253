// The conntrack sweep on a big table (100,000 halves: 50,000 flows, half of
// them expired) against a real pinned berth_ct: what expired goes in pairs,
// the rest stays, and the event loop keeps turning during the sweep. The
// event-loop delay during it is reported, not asserted.
import t from 'tap';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { CtFlags, CtState, ctEntryCodec, ctKeyCodec } from '../../src/platform/contract';
import { DEFAULT_CONNTRACK_TIMEOUTS } from '../../src/domain/conntrack-timeouts';
import { monotonicNs, sweep } from '../../src/engine/conntrack';
import { Dataplane } from '../../src/platform/dataplane';

const pinRoot = `/sys/fs/bpf/berth-bt-test${process.pid}-ct`;
const FLOWS = 50_000;
const SEC = 1_000_000_000n;

t.teardown(() => Dataplane.reset(pinRoot));

function half(saddr: string, daddr: string, sport: number, dport: number, rw: [string, string, number, number], lastSeen: bigint, flags: number): [Buffer, Buffer] {
  const z = '00:00:00:00:00:00';
  return [
    ctKeyCodec.encode({ saddr, daddr, sport, dport, proto: 17 }),
    ctEntryCodec.encode({
      rewrite: { saddr: rw[0], daddr: rw[1], sport: rw[2], dport: rw[3], proto: 17 },
      created_ns: lastSeen, last_seen_ns: lastSeen, packets: 1n, bytes: 60n, out_ifindex: 1, out_kind: 0, count_ifindex: 0,
      out_smac: z, out_dmac: z, state: CtState.ESTABLISHED, flags: CtFlags.MASQ | CtFlags.ASSURED | flags,
      tcp_flags_seen: 0, tcp_end: 0, tcp_ack: 0, tcp_win: 0, tcp_wscale: 0,
    }),
  ];
}

t.test('a sweep of 100,000 halves: expired flows go in pairs, the loop keeps turning', async (t) => {
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot, ctMax: 131072 });
  t.teardown(() => dp.close());
  const now = monotonicNs();
  const keys: Buffer[] = [];
  const vals: Buffer[] = [];
  for (let i = 0; i < FLOWS; i++) {
    // container 10.63.x.y:port -> 10.63.200.1:53 leaving as 10.63.255.1:hport; every other flow idle for an hour
    const c = `10.63.${(i >> 8) & 127}.${i & 255}`;
    const hport = 1024 + i;
    const srv = `10.63.${200 + (i % 50)}.1`;
    const seen = i % 2 ? now - 3600n * SEC : now;
    const o = half(c, srv, 5000 + (i >> 15), 53, ['10.63.255.1', srv, hport, 53], seen, 0);
    const r = half(srv, '10.63.255.1', 53, hport, [srv, c, 53, 5000 + (i >> 15)], seen, CtFlags.REPLY);
    keys.push(o[0], r[0]);
    vals.push(o[1], r[1]);
  }
  await dp.maps.ct.updateBatch(keys, vals);
  t.equal((await dp.maps.ct.dump()).length, 2 * FLOWS, '100,000 halves in the table');

  const h = monitorEventLoopDelay({ resolution: 1 });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  h.enable();
  // the monitor's first tick only sets its baseline: let it pass before the sweep
  await new Promise((res) => setTimeout(res, 20));
  const r = await sweep(dp.maps.ct, DEFAULT_CONNTRACK_TIMEOUTS, now);
  await new Promise((res) => setTimeout(res, 10));
  h.disable();
  clearInterval(timer);
  t.comment(`sweep of ${2 * FLOWS} halves: ${r.durationMs.toFixed(0)} ms, ${r.expired} expired; event-loop delay during it p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms, max ${(h.max / 1e6).toFixed(1)} ms, ${ticks} ticks of a 5 ms timer`);
  t.equal(r.flows, FLOWS);
  t.equal(r.expired, FLOWS / 2, 'every idle flow expired');
  t.equal(r.kept, 0);
  const left = await dp.maps.ct.dump();
  t.equal(left.length, FLOWS, 'both halves of each expired flow gone, the live ones kept');
  t.ok(left.every(([, v]) => ctEntryCodec.decode(v).last_seen_ns === now), 'only live flows left');
});
