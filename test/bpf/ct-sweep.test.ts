// The conntrack sweeper against the real pinned map: expired flows go in
// pairs by their per-state timeouts, live ones stay, filters select flows.
import t from 'tap';
import { CtFlags, CtState, ctEntryCodec, ctKeyCodec, CtEntry, CtKey } from '../../src/contract';
import { DEFAULT_TIMEOUTS, matchFlow, pairFlows, readHalves, sweep, timeoutFor } from '../../src/conntrack';
import { Dataplane } from '../../src/dataplane';
import { native } from '../../src/native';

const SEC = 1_000_000_000n;

function half(key: CtKey, rewrite: CtKey, lastSeen: bigint, state: number, flags: number): [Buffer, Buffer] {
  const e: CtEntry = {
    rewrite,
    created_ns: lastSeen,
    last_seen_ns: lastSeen,
    packets: 1n,
    bytes: 60n,
    out_ifindex: 1,
    out_kind: 0,
    count_ifindex: 0,
    out_smac: '00:00:00:00:00:00',
    out_dmac: '00:00:00:00:00:00',
    state,
    flags,
    tcp_flags_seen: 0,
  };
  return [ctKeyCodec.encode(key), ctEntryCodec.encode(e)];
}

/** A masqueraded flow: container C:cport -> server S:sport, leaving as H:hport. */
function masqFlow(c: string, cport: number, h: string, hport: number, s: string, proto: number, lastSeen: bigint, state: number) {
  const orig = { saddr: c, daddr: s, sport: cport, dport: 80, proto };
  const out = { saddr: h, daddr: s, sport: hport, dport: 80, proto };
  const replyIn = { saddr: s, daddr: h, sport: 80, dport: hport, proto };
  const replyOut = { saddr: s, daddr: c, sport: 80, dport: cport, proto };
  return [half(orig, out, lastSeen, state, CtFlags.MASQ), half(replyIn, replyOut, lastSeen, state, CtFlags.MASQ | CtFlags.REPLY)];
}

t.test('sweeper', async (t) => {
  const pinRoot = `/sys/fs/bpf/berth-test-ctsweep-${process.pid}`;
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot });
  const ct = native().openPinnedMap(`${pinRoot}/berth_ct`);
  t.teardown(() => {
    ct.close();
    dp.close();
    Dataplane.reset(pinRoot);
  });
  const now = 10_000n * SEC;
  const flows = [
    ...masqFlow('10.1.0.2', 40000, '192.0.2.1', 40000, '198.51.100.1', 6, now - 5n * SEC, CtState.ESTABLISHED), // live
    ...masqFlow('10.1.0.2', 40001, '192.0.2.1', 40001, '198.51.100.1', 6, now - 200n * SEC, CtState.NEW), // syn expired (120 s)
    ...masqFlow('10.1.0.3', 5353, '192.0.2.1', 5353, '198.51.100.2', 17, now - 60n * SEC, CtState.NEW), // udp expired (30 s)
    ...masqFlow('10.1.0.3', 5354, '192.0.2.1', 5354, '198.51.100.2', 17, now - 60n * SEC, CtState.ESTABLISHED), // udp stream live (180 s)
    ...masqFlow('10.1.0.4', 40002, '192.0.2.1', 40002, '198.51.100.1', 6, now - 11n * SEC, CtState.CLOSED), // rst expired (10 s)
  ];
  for (const [k, v] of flows) ct.update(k, v);

  const paired = pairFlows(await readHalves(ct));
  t.equal(paired.length, 5, 'ten halves pair into five flows');
  t.ok(paired.every((f) => f.reply && f.kind === 'masquerade'));
  t.equal(paired.filter((f) => matchFlow(f, { addr: '10.1.0.3' })).length, 2, 'filter by address');
  t.equal(paired.filter((f) => matchFlow(f, { proto: 'udp', port: 5353 })).length, 1, 'filter by protocol and port');
  t.equal(timeoutFor({ proto: 6, state: CtState.ESTABLISHED }, DEFAULT_TIMEOUTS), 432000);

  const res = await sweep(ct, DEFAULT_TIMEOUTS, now);
  t.equal(res.expired, 3);
  const left = pairFlows(await readHalves(ct));
  t.same(left.map((f) => f.orig.key.sport).sort(), [40000, 5354], 'live flows stay, both halves');
  t.equal((await readHalves(ct)).length, 4);

  // far in the future everything idles out
  const later = await sweep(ct, DEFAULT_TIMEOUTS, now + 1_000_000n * SEC);
  t.equal(later.expired, 2);
  t.equal((await readHalves(ct)).length, 0, 'table empty');
});
