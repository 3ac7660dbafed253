// The conntrack sweeper against the real pinned map: expired flows go in
// pairs by their per-state timeouts, live ones stay, filters select flows;
// and the flush of the flows a reconcile left pointing at a changed endpoint
// or publish.
import t from 'tap';
import {
  CtFlags,
  CtState,
  EndpointFlags,
  ctEntryCodec,
  ctKeyCodec,
  CtEntry,
  CtKey,
  endpointCodec,
  ipKeyCodec,
  publishKeyCodec,
  publishValueCodec,
} from '../../src/platform/contract';
import { matchFlow, monotonicNs, pairFlows, readHalves, sweep, timeoutFor } from '../../src/engine/conntrack';
import { DEFAULT_SETTINGS } from '../../src/domain/config';
import { apply } from '../../src/engine/reconcile';
import { Dataplane } from '../../src/platform/dataplane';
import { native } from '../../src/platform/native';

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
    tcp_end: 0,
    tcp_ack: 0,
    tcp_win: 0,
    tcp_wscale: 0,
  };
  return [ctKeyCodec.encode(key), ctEntryCodec.encode(e)];
}

/** A masqueraded flow: container C:cport -> server S:sport, leaving as H:hport. */
function masqFlow(c: string, cport: number, h: string, hport: number, s: string, proto: number, lastSeen: bigint, state: number, assured = state === CtState.ESTABLISHED) {
  const orig = { saddr: c, daddr: s, sport: cport, dport: 80, proto };
  const out = { saddr: h, daddr: s, sport: hport, dport: 80, proto };
  const replyIn = { saddr: s, daddr: h, sport: 80, dport: hport, proto };
  const replyOut = { saddr: s, daddr: c, sport: 80, dport: cport, proto };
  const a = assured ? CtFlags.ASSURED : 0;
  return [half(orig, out, lastSeen, state, CtFlags.MASQ | a), half(replyIn, replyOut, lastSeen, state, CtFlags.MASQ | CtFlags.REPLY | a)];
}

t.test('timeouts by state: one home (settings.conntrack), the kernel\'s defaults', async (t) => {
  const T = DEFAULT_SETTINGS.conntrack;
  t.equal(timeoutFor({ proto: 6, state: CtState.ESTABLISHED, assured: true }, T), 432000, 'established');
  t.equal(timeoutFor({ proto: 6, state: CtState.ESTABLISHED, assured: false }, T), 300, 'picked up, never answered: unacknowledged');
  t.equal(timeoutFor({ proto: 6, state: CtState.SYN_SENT, assured: false }, T), 120, 'syn sent');
  t.equal(timeoutFor({ proto: 6, state: CtState.SYN_RECV, assured: false }, T), 60, 'syn recv');
  t.equal(timeoutFor({ proto: 6, state: CtState.CLOSING, assured: true }, T), 120, 'fin');
  t.equal(timeoutFor({ proto: 6, state: CtState.CLOSED, assured: true }, T), 10, 'close');
  t.equal(timeoutFor({ proto: 17, state: CtState.NEW, assured: false }, T), 30, 'udp');
  t.equal(timeoutFor({ proto: 17, state: CtState.ESTABLISHED, assured: true }, T), 120, 'udp stream');
  t.equal(timeoutFor({ proto: 1, state: CtState.ESTABLISHED, assured: true }, T), 30, 'icmp');
});

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
  const T = DEFAULT_SETTINGS.conntrack;
  const now = 10_000n * SEC;
  const flows = [
    ...masqFlow('10.1.0.2', 40000, '192.0.2.1', 40000, '198.51.100.1', 6, now - 400n * SEC, CtState.ESTABLISHED), // live (5 days)
    ...masqFlow('10.1.0.2', 40001, '192.0.2.1', 40001, '198.51.100.1', 6, now - 200n * SEC, CtState.SYN_SENT), // syn expired (120 s)
    ...masqFlow('10.1.0.3', 5353, '192.0.2.1', 5353, '198.51.100.2', 17, now - 60n * SEC, CtState.NEW), // udp expired (30 s)
    ...masqFlow('10.1.0.3', 5354, '192.0.2.1', 5354, '198.51.100.2', 17, now - 60n * SEC, CtState.ESTABLISHED), // udp stream live (120 s)
    ...masqFlow('10.1.0.4', 40002, '192.0.2.1', 40002, '198.51.100.1', 6, now - 11n * SEC, CtState.CLOSED, true), // rst expired (10 s)
    ...masqFlow('10.1.0.4', 40003, '192.0.2.1', 40003, '198.51.100.1', 6, now - 70n * SEC, CtState.SYN_RECV), // half-open expired (60 s)
    ...masqFlow('10.1.0.4', 40004, '192.0.2.1', 40004, '198.51.100.1', 6, now - 50n * SEC, CtState.SYN_RECV), // half-open live
    ...masqFlow('10.1.0.5', 40005, '192.0.2.1', 40005, '198.51.100.1', 6, now - 400n * SEC, CtState.ESTABLISHED, false), // picked up, unanswered: expired (300 s)
    ...masqFlow('10.1.0.5', 40006, '192.0.2.1', 40006, '198.51.100.1', 6, now - 200n * SEC, CtState.ESTABLISHED, false), // picked up: live
  ];
  for (const [k, v] of flows) ct.update(k, v);

  const paired = pairFlows(await readHalves(ct));
  t.equal(paired.length, 9, 'eighteen halves pair into nine flows');
  t.ok(paired.every((f) => f.reply && f.kind === 'masquerade'));
  t.equal(paired.filter((f) => f.assured).length, 3, 'assured from the flag');
  t.equal(paired.filter((f) => matchFlow(f, { addr: '10.1.0.3' })).length, 2, 'filter by address');
  t.equal(paired.filter((f) => matchFlow(f, { proto: 'udp', port: 5353 })).length, 1, 'filter by protocol and port');

  const res = await sweep(ct, T, now);
  t.equal(res.expired, 5);
  t.equal(res.unassured, 2, 'the live half-open and picked-up flows');
  const left = pairFlows(await readHalves(ct));
  t.same(left.map((f) => f.orig.key.sport).sort(), [40000, 40004, 40006, 5354], 'live flows stay, both halves');
  t.equal((await readHalves(ct)).length, 8);

  // far in the future everything idles out
  const later = await sweep(ct, T, now + 1_000_000n * SEC);
  t.equal(later.expired, 4);
  t.equal((await readHalves(ct)).length, 0, 'table empty');
});

/** A published flow: client K:kport -> host H:hport, DNAT to container C:cport. */
function pubFlow(k: string, kport: number, h: string, hport: number, c: string, cport: number, proto: number, lastSeen: bigint) {
  const orig = { saddr: k, daddr: h, sport: kport, dport: hport, proto };
  const toC = { saddr: k, daddr: c, sport: kport, dport: cport, proto };
  const replyIn = { saddr: c, daddr: k, sport: cport, dport: kport, proto };
  const replyOut = { saddr: h, daddr: k, sport: hport, dport: kport, proto };
  return [half(orig, toC, lastSeen, CtState.ESTABLISHED, CtFlags.PUBLISHED), half(replyIn, replyOut, lastSeen, CtState.ESTABLISHED, CtFlags.PUBLISHED | CtFlags.REPLY)];
}

t.test('a reconcile that changes an endpoint or a publish flushes the flows pointing at it', async (t) => {
  const pinRoot = `/sys/fs/bpf/berth-test-ctflush-${process.pid}`;
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot });
  t.teardown(() => {
    dp.close();
    Dataplane.reset(pinRoot);
  });
  const now = monotonicNs();
  const C1 = '10.99.0.10';
  const C2 = '10.99.0.11';
  const ep = (addr: string, ifindex: number) => endpointCodec.encode({ addr, ifindex, network_id: 1, flags: EndpointFlags.ICC, mac: '02:00:00:00:00:01' });
  for (const [addr, ifx] of [[C1, 501], [C2, 502]] as const) dp.maps.epByIp.update(ipKeyCodec.encode({ addr }), ep(addr, ifx));
  const pubKey = publishKeyCodec.encode({ host_addr: '0.0.0.0', host_port: 8080, proto: 17 });
  dp.maps.publish.update(pubKey, publishValueCodec.encode({ addr: C2, port: 53, flags: 0, ifindex: 502, network_id: 1, mac: '02:00:00:00:00:02' }));
  const flows = [
    ...pubFlow('198.51.100.7', 5000, '192.0.2.1', 9090, C1, 80, 17, now), // to C1 through another port
    ...masqFlow(C1, 41000, '192.0.2.1', 61001, '198.51.100.1', 6, now, CtState.ESTABLISHED), // C1 going out
    ...pubFlow('198.51.100.8', 5000, '192.0.2.1', 8080, C2, 53, 17, now), // the fixed-port sender to C2's publish
    ...masqFlow(C2, 41001, '192.0.2.1', 61002, '198.51.100.1', 6, now, CtState.ESTABLISHED), // C2 going out
  ];
  for (const [k, v] of flows) dp.maps.ct.update(k, v);
  t.equal(pairFlows(await readHalves(dp.maps.ct)).length, 4);

  // C1's container restarts: the same address, another veth
  const r1 = await apply(dp, [{ op: 'put', map: 'epByIp', what: 'address C1', key: ipKeyCodec.encode({ addr: C1 }), value: ep(C1, 601) }]);
  t.equal(r1.flushed, 2, 'both of C1\'s flows flushed');
  const left = pairFlows(await readHalves(dp.maps.ct));
  t.same(left.map((f) => f.orig.key.saddr).sort(), ['198.51.100.8', C2].sort(), 'C2\'s flows stay');

  // the same value again changes nothing
  t.equal((await apply(dp, [{ op: 'put', map: 'epByIp', what: 'address C1', key: ipKeyCodec.encode({ addr: C1 }), value: ep(C1, 601) }])).flushed, 0, 'an unchanged endpoint flushes nothing');

  // the publish goes: its flow goes, C2's own outgoing flow stays
  const r2 = await apply(dp, [{ op: 'delete', map: 'publish', what: 'publish 8080/udp', key: pubKey }]);
  t.equal(r2.flushed, 1, 'the published flow flushed');
  const rest = pairFlows(await readHalves(dp.maps.ct));
  t.same(rest.map((f) => f.orig.key.saddr), [C2], 'the masqueraded flow of C2 stays');

  // the container goes
  t.equal((await apply(dp, [{ op: 'delete', map: 'epByIp', what: 'address C2', key: ipKeyCodec.encode({ addr: C2 }) }])).flushed, 1);
  t.equal((await readHalves(dp.maps.ct)).length, 0, 'nothing left');
});
