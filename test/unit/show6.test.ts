// What `berth trace` and `berth ct` show of IPv6 (issue 12 item 6), without a
// kernel: the trace's IPv6 frames (checksums verified independently of the
// builder, with the fuzz helpers' sums), parsed back; the ct table's
// [addr]:port, --addr in any spelling, --family, ICMPv6 echo flows.
import t from 'tap';
import { CtEntry, CtFlags, CtKey, CtState, ctEntryCodec } from '../../src/platform/contract';
import { DEFAULT_SETTINGS } from '../../src/domain/config';
import { flowInvalidated, flowSideStr, flowToJson, hasPorts, matchFlow, pairFlows, protoNumber, publishRef, timeoutFor } from '../../src/engine/conntrack';
import { buildFrame, parseFrame } from '../../src/observe/trace';
import { residue, sum16 } from '../lib/fuzz';

const SRC = 'fd80:a::10';
const DST = 'fd80:ff::2';

/** The IPv6 pseudo header's sum taken from the frame's own bytes, plus its L4 bytes. */
function l4Residue(f: Buffer): number {
  const len = f.readUInt16BE(18);
  const acc = sum16(f, 22, 54) + (len >>> 16) + (len & 0xffff) + f[20];
  return residue(sum16(f, 54, 54 + len, acc));
}

t.test('trace frames: IPv6 header, valid checksums, parsed back', async (t) => {
  for (const [proto, name] of [[6, 'tcp'], [17, 'udp'], [58, 'icmpv6']] as const) {
    const f = buildFrame({ smac: '02:00:00:00:00:01', dmac: '02:00:00:00:00:02', src: SRC, dst: DST, proto, sport: 4242, dport: proto === 58 ? 4242 : 80 });
    t.equal(f.readUInt16BE(12), 0x86dd, `${name}: ethertype IPv6`);
    t.equal(f[14] >> 4, 6, `${name}: version 6`);
    t.equal(f[20], proto, `${name}: next header`);
    t.equal(f.readUInt16BE(18), f.length - 54, `${name}: payload length`);
    t.equal(l4Residue(f), 0, `${name}: L4 checksum over the pseudo header`);
    if (proto === 58) t.equal(f[54], 128, 'an echo request');
    t.same(parseFrame(f), { dmac: '02:00:00:00:00:02', smac: '02:00:00:00:00:01', src: SRC, dst: DST, sport: 4242, dport: proto === 58 ? 4242 : 80, proto: name, ttl: 64 }, `${name}: parsed back`);
  }
  const gre = buildFrame({ smac: '02:00:00:00:00:01', dmac: '02:00:00:00:00:02', src: SRC, dst: DST, proto: 47, sport: 0, dport: 0 });
  t.match(parseFrame(gre), { proto: 'gre', sport: 0, dport: 0, src: SRC });
});

function half(key: CtKey, rewrite: CtKey, flags: number): { key: CtKey; entry: CtEntry; raw: Buffer } {
  const entry: CtEntry = {
    rewrite, created_ns: 1_000_000_000n, last_seen_ns: 2_000_000_000n, packets: 1n, bytes: 100n, out_ifindex: 1, out_kind: 0, count_ifindex: 0,
    out_smac: '00:00:00:00:00:00', out_dmac: '00:00:00:00:00:00', state: CtState.NEW, flags, tcp_flags_seen: 0, tcp_end: 0, tcp_ack: 0, tcp_win: 0, tcp_wscale: 0,
  };
  return { key, entry, raw: ctEntryCodec.encode(entry) };
}

t.test('berth ct: IPv6 flows', async (t) => {
  const H = 'fd80:ff::1';
  const flows = pairFlows([
    half({ saddr: SRC, daddr: DST, sport: 777, dport: 777, proto: 58 }, { saddr: H, daddr: DST, sport: 20000, dport: 20000, proto: 58 }, CtFlags.MASQ),
    half({ saddr: DST, daddr: H, sport: 20000, dport: 20000, proto: 58 }, { saddr: DST, daddr: SRC, sport: 777, dport: 777, proto: 58 }, CtFlags.MASQ | CtFlags.REPLY),
    half({ saddr: '10.80.0.2', daddr: '10.80.255.2', sport: 5000, dport: 53, proto: 17 }, { saddr: '10.80.255.1', daddr: '10.80.255.2', sport: 5000, dport: 53, proto: 17 }, CtFlags.MASQ),
  ]);
  t.equal(flows.length, 2);
  const icmp6 = flows.find((f) => f.proto === 58)!;
  t.ok(icmp6.reply, 'the ICMPv6 halves pair up');
  t.equal(protoNumber('icmpv6'), 58);
  t.ok(hasPorts(58), 'ICMPv6 echo has its identifier as ports');
  t.equal(timeoutFor(icmp6, DEFAULT_SETTINGS.conntrack), DEFAULT_SETTINGS.conntrack.icmpTimeout, 'and the ICMP timeout, not the generic one');
  const j = flowToJson(icmp6, 3_000_000_000n);
  t.equal(j.proto, 'icmpv6');
  t.equal(flowSideStr(j.original), `[${SRC}]:777 -> [${DST}]:777`, 'IPv6 as [addr]:port');
  t.equal(flowSideStr(j.translated), `[${H}]:20000 -> [${DST}]:20000`);
  const udp = flows.find((f) => f.proto === 17)!;
  t.equal(flowSideStr(flowToJson(udp).original), '10.80.0.2:5000 -> 10.80.255.2:53', 'IPv4 unchanged');
  t.ok(matchFlow(icmp6, { addr: 'FD80:A:0:0::10' }), '--addr in another spelling of the address');
  t.ok(matchFlow(icmp6, { addr: H }), '--addr: the translated address');
  t.notOk(matchFlow(icmp6, { addr: 'fd80:a::11' }));
  t.ok(matchFlow(icmp6, { family: 6 }) && !matchFlow(icmp6, { family: 4 }), '--family 6');
  t.ok(matchFlow(udp, { family: 4 }) && !matchFlow(udp, { family: 6 }), '--family 4');
  t.ok(matchFlow(icmp6, { proto: 'icmpv6' }) && !matchFlow(icmp6, { proto: 'icmp' }), '--proto icmpv6');
});

t.test('a changed [::] publish or IPv6 address flushes the IPv6 flows that use it', async (t) => {
  const H = 'fd80:ff::1';
  const C = 'fd80:a::10';
  const P = CtFlags.PUBLISHED;
  const [f] = pairFlows([
    half({ saddr: DST, daddr: H, sport: 40000, dport: 32080, proto: 17 }, { saddr: DST, daddr: C, sport: 40000, dport: 80, proto: 17 }, P),
    half({ saddr: C, daddr: DST, sport: 80, dport: 40000, proto: 17 }, { saddr: H, daddr: DST, sport: 32080, dport: 40000, proto: 17 }, P | CtFlags.REPLY),
  ]);
  const none = new Set<string>();
  t.ok(flowInvalidated(f!, { addresses: none, publishes: new Set([publishRef(17, '::', 32080)]) }), 'the [::]:32080 publish changed');
  t.ok(flowInvalidated(f!, { addresses: none, publishes: new Set([publishRef(17, H, 32080)]) }), 'the publish of that very address changed');
  t.notOk(flowInvalidated(f!, { addresses: none, publishes: new Set([publishRef(17, '0.0.0.0', 32080)]) }), 'the IPv4 half of 32080 is not this flow');
  t.ok(flowInvalidated(f!, { addresses: new Set([C]), publishes: none }), "the container's IPv6 address changed");
});
