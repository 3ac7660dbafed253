// Flows of protocols without ports (GRE, SCTP, ESP, ...; bpf/lib/generic.h)
// as the controller sees them: their timeouts (one home, settings.conntrack),
// `berth ct`'s names, filters and output without ports.
import t from 'tap';
import { CtFlags, CtState, CtEntry, CtKey, ctEntryCodec } from '../../src/platform/contract';
import { DEFAULT_SETTINGS, parseConfig } from '../../src/domain/config';
import { flowSideStr, flowToJson, hasPorts, matchFlow, pairFlows, protoNumber, timeoutFor } from '../../src/engine/conntrack';

const T = DEFAULT_SETTINGS.conntrack;

t.test('timeouts: GRE as the kernel\'s GRE tracker, every other protocol its generic 600 s', async (t) => {
  t.equal(timeoutFor({ proto: 47, state: CtState.NEW, assured: false }, T), 30, 'GRE, unanswered: GRE_CT_UNREPLIED');
  t.equal(timeoutFor({ proto: 47, state: CtState.ESTABLISHED, assured: true }, T), 180, 'GRE, answered: GRE_CT_REPLIED');
  for (const proto of [132, 50, 51, 33, 136, 4, 41])
    for (const assured of [false, true]) t.equal(timeoutFor({ proto, state: assured ? CtState.ESTABLISHED : CtState.NEW, assured }, T), 600, `protocol ${proto}, ${assured ? '' : 'un'}assured: generic`);
  t.equal(timeoutFor({ proto: 1, state: CtState.NEW, assured: false }, T), 30, 'ICMP keeps its own');
  const s = parseConfig('networks:\n  - name: n\n    subnet: 10.92.250.0/24\nsettings:\n  conntrack:\n    genericTimeout: 60\n    greStreamTimeout: 90\n').settings.conntrack;
  t.equal(timeoutFor({ proto: 132, state: CtState.NEW, assured: false }, s), 60, 'settings.conntrack.genericTimeout applies');
  t.equal(timeoutFor({ proto: 47, state: CtState.ESTABLISHED, assured: true }, s), 90, 'settings.conntrack.greStreamTimeout applies');
  t.throws(() => parseConfig('networks:\n  - name: n\n    subnet: 10.92.250.0/24\nsettings:\n  conntrack:\n    genericTimeout: 0\n'), /settings\.conntrack\.genericTimeout.*between 1 and/, 'a bad value: a clear error');
});

t.test('protocol names and numbers', async (t) => {
  t.ok(hasPorts(6) && hasPorts(17) && hasPorts(1), 'TCP, UDP, ICMP have ports');
  t.notOk(hasPorts(47) || hasPorts(132) || hasPorts(33) || hasPorts(136), 'GRE, SCTP, DCCP, UDP-Lite are tracked without');
  t.equal(protoNumber('gre'), 47);
  t.equal(protoNumber('SCTP'), 132);
  t.equal(protoNumber('udplite'), 136);
  t.equal(protoNumber('47'), 47);
  t.equal(protoNumber('0'), 0);
  t.equal(protoNumber('256'), undefined, 'out of range');
  t.equal(protoNumber('grease'), undefined, 'unknown name');
  t.equal(protoNumber('-1'), undefined);
});

function half(key: CtKey, rewrite: CtKey, flags: number, state: number): { key: CtKey; entry: CtEntry; raw: Buffer } {
  const entry: CtEntry = {
    rewrite, created_ns: 1_000_000_000n, last_seen_ns: 2_000_000_000n, packets: 3n, bytes: 300n, out_ifindex: 1, out_kind: 0, count_ifindex: 0,
    out_smac: '00:00:00:00:00:00', out_dmac: '00:00:00:00:00:00', state, flags, tcp_flags_seen: 0, tcp_end: 0, tcp_ack: 0, tcp_win: 0, tcp_wscale: 0,
  };
  return { key, entry, raw: ctEntryCodec.encode(entry) };
}

t.test('berth ct: a GRE flow shows its addresses alone', async (t) => {
  const C = '10.92.250.10';
  const H = '10.92.251.1';
  const R = '10.92.251.2';
  const a = CtFlags.MASQ | CtFlags.ASSURED;
  const flows = pairFlows([
    half({ saddr: C, daddr: R, sport: 0, dport: 0, proto: 47 }, { saddr: H, daddr: R, sport: 0, dport: 0, proto: 47 }, a, CtState.ESTABLISHED),
    half({ saddr: R, daddr: H, sport: 0, dport: 0, proto: 47 }, { saddr: R, daddr: C, sport: 0, dport: 0, proto: 47 }, a | CtFlags.REPLY, CtState.ESTABLISHED),
    half({ saddr: C, daddr: R, sport: 40000, dport: 53, proto: 17 }, { saddr: H, daddr: R, sport: 61000, dport: 53, proto: 17 }, CtFlags.MASQ, CtState.NEW),
  ]);
  t.equal(flows.length, 2, 'the GRE halves pair up');
  const gre = flows.find((f) => f.proto === 47)!;
  t.ok(gre.reply, 'with its reply half');
  const j = flowToJson(gre, 3_000_000_000n);
  t.equal(j.proto, 'gre');
  t.equal(j.kind, 'masquerade');
  t.same(j.original, { src: C, dst: R }, 'no ports in the JSON');
  t.same(j.translated, { src: H, dst: R });
  t.equal(flowSideStr(j.translated), `${H} -> ${R}`, 'nor in the table');
  const udp = flowToJson(flows.find((f) => f.proto === 17)!, 3_000_000_000n);
  t.equal(flowSideStr(udp.translated), `${H}:61000 -> ${R}:53`, 'a UDP flow keeps its ports');
  t.ok(matchFlow(gre, { proto: 'gre' }) && matchFlow(gre, { proto: '47' }), '--proto gre / 47 selects it');
  t.notOk(matchFlow(gre, { proto: 'udp' }), '--proto udp does not');
  t.notOk(matchFlow(gre, { port: 53 }), 'no port filter matches a flow without ports');
  t.ok(matchFlow(gre, { addr: H }), '--addr matches its translated address');
});
