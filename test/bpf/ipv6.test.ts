// bpf/lib/ipv6.h through BPF_PROG_TEST_RUN: test/fixtures/ipv6_fixture.bpf.c
// parses each frame and writes the summary to its slot of an array map; the
// test compares it with what it built and with the reference parse of
// test/lib/ipv6ref.ts. Then seeded random and mutated frames
// (BERTH_V6_FUZZ_SEED, BERTH_V6_FUZZ_COUNT, default 100,000) against the
// reference, and the cost of a parse (BPF_PROG_TEST_RUN repeat).
//
// No interface, no pin, no traffic: the fixture's map is private to this
// process (no pinning), and test runs use the kernel's loopback context.
import t, { Test } from 'tap';
import { BpfMap, BpfObject, BpfProgram, BtfStruct, bpfObjectPath, native } from '../../src/platform/native';
import { Rng } from '../lib/fuzz';
import {
  Cls, Ext, Frag, L6Flag, MAX_EXT, NH, OK_FIELDS, Status, Summary, Upper,
  frame6, icmp6, ip6, raw6, refParse, tcp6, udp6,
} from '../lib/ipv6ref';

const SLOTS = 4096;
const L3 = 14;
/** the shortest IPv6 frame BPF_PROG_TEST_RUN takes: Ethernet and the fixed header */
const MIN_FRAME = L3 + 40;

let obj: BpfObject;
let prog: BpfProgram;
let out: BpfMap;
let decode: (b: Buffer) => Summary;
let tagSeq = 1;

function decoder(o: BtfStruct, l6: BtfStruct, l4: BtfStruct): (b: Buffer) => Summary {
  const off = (s: BtfStruct, name: string): number => {
    const m = s.members.find((x) => x.name === name);
    if (!m) throw new Error(`${s.name} has no member ${name}`);
    return m.offset;
  };
  const base6 = off(o, 'l6');
  const base4 = base6 + off(l6, 'l4');
  const a = (n: string): number => base6 + off(l6, n);
  const b = (n: string): number => base4 + off(l4, n);
  return (v: Buffer): Summary => ({
    status: v.readUInt32LE(off(o, 'status')),
    stage: v.readUInt32LE(off(o, 'stage')),
    posAfter: v.readUInt32LE(off(o, 'pos_after')),
    cls: v.readUInt32LE(off(o, 'cls')),
    saddr: v.subarray(a('saddr'), a('saddr') + 16).toString('hex'),
    daddr: v.subarray(a('daddr'), a('daddr') + 16).toString('hex'),
    hopLimit: v[a('hop_limit')],
    nExt: v[a('n_ext')],
    flags: v[a('flags')],
    proto: v[b('proto')],
    frag: v[b('frag')],
    fragId: v.readUInt32BE(a('frag_id')),
    fragOff: v.readUInt16LE(a('frag_off')),
    fragHdrOff: v.readUInt32LE(a('frag_hdr_off')),
    l3Off: v.readUInt32LE(b('l3_off')),
    l4Off: v.readUInt32LE(b('l4_off')),
    l3End: v.readUInt32LE(b('l3_end')),
    hasPorts: v[b('has_ports')],
    sport: v.readUInt16BE(b('sport')),
    dport: v.readUInt16BE(b('dport')),
    tcpFlags: v[b('tcp_flags')],
    tcpSeq: v.readUInt32LE(b('tcp_seq')),
    tcpAck: v.readUInt32LE(b('tcp_ack')),
    tcpEnd: v.readUInt32LE(b('tcp_end')),
    tcpWin: v.readUInt16LE(b('tcp_win')),
    icmpType: v[b('icmp_type')],
    icmpCode: v[a('icmp_code')],
    csumOff: v.readUInt32LE(b('csum_off')),
    quoteOff: v.readUInt32LE(a('quote_off')),
    // the embedded IPv4 addresses must stay 0 on an IPv6 packet
    ...(v.readUInt32LE(b('saddr')) | v.readUInt32LE(b('daddr')) ? { l4Addr: 'set' } : {}),
  });
}

function ctxFor(slot: number, tag: number, gsoSize = 0): Buffer {
  const c = Buffer.alloc(192); // struct __sk_buff; ifindex 0: the kernel's loopback
  c.writeUInt32LE(slot, 48); // cb[0]
  c.writeUInt32LE(tag >>> 0, 52); // cb[1]
  c.writeUInt32LE(gsoSize, 176); // gso_size
  return c;
}

/** Parse every frame with the fixture; the summaries in order. */
async function parseAll(frames: Buffer[], gsoSize = 0): Promise<Summary[]> {
  const res: Summary[] = [];
  for (let i = 0; i < frames.length; i += SLOTS) {
    const chunk = frames.slice(i, i + SLOTS);
    const tags = chunk.map(() => tagSeq++);
    const runs = await prog.testRunBatch(chunk.map((data, k) => ({ data, ctx: ctxFor(k, tags[k], gsoSize) })));
    runs.forEach((r, k) => {
      if (r.errno !== undefined) throw new Error(`test run of frame ${i + k} refused: ${r.code}`);
      const key = Buffer.alloc(4);
      key.writeUInt32LE(k);
      const v = out.lookup(key);
      if (!v || v.readUInt32LE(0) !== tags[k]) throw new Error(`frame ${i + k}: slot ${k} not written by its run`);
      const s = decode(v);
      if (r.retval !== s.status) throw new Error(`frame ${i + k}: retval ${r.retval} but status ${s.status}`);
      res.push(s);
    });
  }
  return res;
}

const parse1 = async (f: Buffer): Promise<Summary> => (await parseAll([f]))[0];

/** the differences between the BPF summary and the reference, '' when none */
function diff(got: Summary, want: Summary): string {
  const keys: Array<keyof Summary> = ['status', 'stage', 'posAfter'];
  if (want.status === Status.OK) keys.push(...OK_FIELDS);
  const d = keys.filter((k) => got[k] !== want[k]).map((k) => `${k}: got ${got[k]} want ${want[k]}`);
  if ((got as unknown as Record<string, unknown>).l4Addr) d.push('l4.saddr/daddr set');
  return d.join(', ');
}

/** parse, compare with the reference, and return the summary */
async function check(tt: Test, f: Buffer, what: string): Promise<Summary> {
  const got = await parse1(f);
  const want = refParse(f);
  if (!want) throw new Error(`${what}: not an IPv6 frame`);
  tt.equal(diff(got, want), '', `${what}: as the reference`);
  return got;
}

const TCP = (): Upper => tcp6(40000, 443, 0x02, 0x11223344, 0, 64240, Buffer.from('hello'));
const NAMES: Record<number, string> = { 0: 'OK', 1: 'MALFORMED', 2: 'UNSUPPORTED', 3: 'NONLINEAR' };

t.before(async () => {
  obj = native().openObject(bpfObjectPath('ipv6_fixture'));
  await obj.load();
  prog = obj.program('v6fx_summary');
  out = obj.map('v6fx_out');
  decode = decoder(obj.btfStruct('v6fx_out'), obj.btfStruct('berth_l6'), obj.btfStruct('berth_l4'));
});
t.teardown(() => obj?.close());

t.test('the summary: TCP, UDP, ICMPv6 echo without extension headers', async (tt) => {
  const s = await check(tt, frame6({ hop: 63 }, [], TCP()), 'tcp');
  tt.match(s, {
    status: Status.OK, proto: NH.TCP, l3Off: L3, l4Off: L3 + 40, l3End: L3 + 40 + 25, hasPorts: 1, sport: 40000, dport: 443,
    tcpFlags: 0x02, tcpSeq: 0x11223344, tcpWin: 64240, tcpEnd: 0x11223344 + 5 + 1, csumOff: L3 + 40 + 16, posAfter: L3 + 60,
    hopLimit: 63, nExt: 0, flags: 0, frag: Frag.NONE, saddr: ip6('2001:db8:76::10').toString('hex'),
  });
  const u = await check(tt, frame6({}, [], udp6(5353, 53)), 'udp');
  tt.match(u, { proto: NH.UDP, hasPorts: 1, sport: 5353, dport: 53, csumOff: L3 + 46, posAfter: L3 + 48 });
  const e = await check(tt, frame6({}, [], icmp6(128, 0, (0x4242 << 16) | 7)), 'echo request');
  tt.match(e, { proto: NH.ICMP, hasPorts: 1, sport: 0x4242, dport: 0x4242, icmpType: 128, csumOff: L3 + 42, cls: Cls.ECHO });
  const r = await check(tt, frame6({}, [], icmp6(129, 0, (0x99 << 16) | 1)), 'echo reply');
  tt.match(r, { hasPorts: 1, sport: 0x99, icmpType: 129 });
  const x = await check(tt, frame6({}, [], raw6(NH.SCTP, Buffer.alloc(12))), 'another protocol');
  tt.match(x, { proto: NH.SCTP, hasPorts: 0, l4Off: L3 + 40, posAfter: L3 + 40, csumOff: 0 });
  const esp = await check(tt, frame6({}, [{ kind: 'dest' }], raw6(NH.ESP, Buffer.alloc(16))), 'ESP after dest opts');
  tt.match(esp, { proto: NH.ESP, nExt: 1, l4Off: L3 + 48, hasPorts: 0 });
  const short = await check(tt, frame6({}, [], raw6(NH.TCP, Buffer.alloc(19))), 'TCP header 19 bytes');
  tt.match(short, { status: Status.OK, proto: NH.TCP, hasPorts: 0, posAfter: L3 + 40 });
});

t.test('extension headers: every kind, in orders the kernel accepts', async (tt) => {
  const chains: Array<[string, Ext[]]> = [
    ['hop', [{ kind: 'hop' }]],
    ['routing', [{ kind: 'routing', segsLeft: 0 }]],
    ['dest', [{ kind: 'dest', units: 3 }]],
    ['auth', [{ kind: 'auth', units: 4 }]],
    ['atomic frag', [{ kind: 'frag', offset: 0, more: false, id: 0xabcdef01 }]],
    ['hop dest routing frag auth dest', [{ kind: 'hop', units: 1 }, { kind: 'dest' }, { kind: 'routing', segsLeft: 2 },
      { kind: 'frag', offset: 0, more: false, id: 7 }, { kind: 'auth' }, { kind: 'dest', units: 2 }]],
    ['dest dest', [{ kind: 'dest' }, { kind: 'dest' }]],
    ['auth routing', [{ kind: 'auth', units: 0 }, { kind: 'routing' }]],
    ['eight', [{ kind: 'hop' }, { kind: 'dest' }, { kind: 'routing' }, { kind: 'dest' }, { kind: 'auth' }, { kind: 'dest' },
      { kind: 'routing' }, { kind: 'dest' }]],
  ];
  for (const [name, exts] of chains) {
    const f = frame6({}, exts, TCP());
    const s = await check(tt, f, name);
    const len = f.length - L3 - 40 - 25;
    tt.match(s, { status: Status.OK, nExt: exts.length, proto: NH.TCP, l4Off: L3 + 40 + len, hasPorts: 1, sport: 40000 }, `${name}: TCP found`);
  }
  const s = await parse1(frame6({}, chains[5][1], TCP()));
  tt.equal(s.flags, L6Flag.HOP | L6Flag.DEST | L6Flag.ROUTING | L6Flag.RT_SEGS | L6Flag.FRAG_HDR | L6Flag.AUTH, 'every kind flagged');
  tt.equal(s.frag, Frag.NONE, 'an atomic fragment is a whole datagram');
  tt.equal(s.fragId, 7, 'its id recorded');
  const n = await check(tt, frame6({}, [{ kind: 'hop' }, { kind: 'dest' }], raw6(NH.NONE, Buffer.alloc(0))), 'no next header');
  tt.match(n, { status: Status.OK, proto: NH.NONE, flags: L6Flag.HOP | L6Flag.DEST | L6Flag.NO_NEXT, hasPorts: 0 });
});

t.test('extension headers the kernel (or berth) refuses', async (tt) => {
  const cases: Array<[string, Ext[], number]> = [
    ['hop after dest', [{ kind: 'dest' }, { kind: 'hop' }], Status.MALFORMED],
    ['hop twice', [{ kind: 'hop' }, { kind: 'hop' }], Status.MALFORMED],
    ['hop after frag', [{ kind: 'frag', offset: 0, more: false, id: 1 }, { kind: 'hop' }], Status.MALFORMED],
    ['nine headers', Array.from({ length: MAX_EXT + 1 }, (): Ext => ({ kind: 'dest' })), Status.UNSUPPORTED],
    ['two fragment headers', [{ kind: 'frag', offset: 0, more: false, id: 1 }, { kind: 'frag', offset: 0, more: false, id: 2 }], Status.UNSUPPORTED],
  ];
  for (const [name, exts, status] of cases) {
    const s = await check(tt, frame6({}, exts, TCP()), name);
    tt.match(s, { status, stage: 2, posAfter: L3 + 40 }, `${name}: ${NAMES[status]}, the cursor where it was`);
  }
  // a header whose length runs past the datagram
  const f = frame6({}, [{ kind: 'dest', units: 1 }], raw6(NH.NONE, Buffer.alloc(0)));
  f[L3 + 40 + 1] = 2; // 24 bytes claimed, 16 there
  tt.match(await check(tt, f, 'dest opts past the end'), { status: Status.MALFORMED });
  const g = frame6({}, [{ kind: 'dest', units: 1 }], raw6(NH.NONE, Buffer.alloc(0)));
  g.writeUInt16BE(12, L3 + 4); // payload_len cuts the header
  tt.match(await check(tt, Buffer.concat([g, Buffer.alloc(20)]), 'payload_len cuts dest opts (trailing padding)'), { status: Status.MALFORMED });
});

t.test('the fixed header as ip6_rcv_core accepts it', async (tt) => {
  const cases: Array<[string, Buffer, number]> = [
    ['version 4', frame6({ version: 4 }, [], TCP()), Status.MALFORMED],
    ['multicast source', frame6({ src: 'ff02::1' }, [], TCP()), Status.MALFORMED],
    ['loopback source', frame6({ src: '::1' }, [], TCP()), Status.MALFORMED],
    ['loopback destination', frame6({ dst: '::1' }, [], TCP()), Status.MALFORMED],
    ['multicast scope 0', frame6({ dst: 'ff00::1' }, [], udp6(1, 2)), Status.MALFORMED],
    ['interface-local multicast', frame6({ dst: 'ff01::1' }, [], udp6(1, 2)), Status.MALFORMED],
    ['link-local multicast', frame6({ dst: 'ff02::fb' }, [], udp6(5353, 5353)), Status.OK],
    ['payload_len past the packet', frame6({ payloadLen: 26 }, [], TCP()), Status.MALFORMED],
    ['jumbogram (payload_len 0, hop-by-hop)', frame6({ payloadLen: 0 }, [{ kind: 'hop' }], TCP()), Status.UNSUPPORTED],
    ['payload_len 0, no next header', frame6({ payloadLen: 0 }, [], raw6(NH.NONE, Buffer.alloc(0))), Status.OK],
    ['payload_len 0, TCP (an empty payload)', frame6({ payloadLen: 0 }, [], TCP()), Status.OK],
  ];
  for (const [name, f, status] of cases) {
    const s = await check(tt, f, name);
    tt.equal(s.status, status, `${name}: ${NAMES[status]}`);
    if (status !== Status.OK) tt.equal(s.posAfter, L3, `${name}: the cursor where it was`);
  }
  const e = await parse1(frame6({ payloadLen: 0 }, [], TCP()));
  tt.match(e, { l3End: L3 + 40, hasPorts: 0 }, 'an empty payload holds no TCP header');
  const pad = await check(tt, Buffer.concat([frame6({}, [], udp6(1, 2)), Buffer.alloc(30)]), 'trailing padding');
  tt.equal(pad.l3End, L3 + 40 + 13, 'the datagram ends at payload_len, not at the padding');
  const ll = await parse1(frame6({ src: 'fe80::1', dst: 'ff02::fb' }, [], udp6(5353, 5353)));
  tt.equal(ll.cls & (Cls.SRC_LINK | Cls.DST_LINK | Cls.DST_MCAST), Cls.SRC_LINK | Cls.DST_LINK | Cls.DST_MCAST, 'link scope and multicast');
  const gl = await parse1(frame6({ src: '2001:db8::1', dst: 'ff0e::1' }, [], udp6(1, 2)));
  tt.equal(gl.cls & (Cls.SRC_LINK | Cls.DST_LINK), 0, 'global multicast is not link scope');
});

t.test('a GSO packet: payload_len 0 is the rest of the packet (BIG TCP)', async (tt) => {
  const f = frame6({ payloadLen: 0 }, [{ kind: 'dest' }], tcp6(1, 2, 0x10, 100, 200, 300, Buffer.alloc(1000, 7)));
  const [g] = await parseAll([f], 1400);
  tt.equal(diff(g, refParse(f, true)!), '', 'as the reference (gso)');
  tt.match(g, { status: Status.OK, l3End: f.length, hasPorts: 1, tcpEnd: 100 + 1000 }, 'the datagram is the whole packet');
  const [n] = await parseAll([f]);
  tt.equal(diff(n, refParse(f)!), '', 'as the reference (no gso)');
  tt.match(n, { status: Status.MALFORMED, stage: 2 }, 'without GSO: an empty payload, so the dest opts header lies past its end');
  const j = frame6({ payloadLen: 0 }, [{ kind: 'hop' }], TCP());
  tt.equal((await parseAll([j], 1400))[0].status, Status.OK, 'GSO with hop-by-hop first: the rest of the packet, not a jumbogram');
});

t.test('truncated at every byte', async (tt) => {
  const exts: Ext[] = [{ kind: 'hop' }, { kind: 'dest', units: 1 }, { kind: 'routing', segsLeft: 1 },
    { kind: 'frag', offset: 0, more: true, id: 9 }, { kind: 'auth', units: 2 }];
  for (const up of [tcp6(1000, 2000, 0x10, 5, 6, 7, Buffer.alloc(24, 1)), udp6(3, 4, Buffer.alloc(24, 2)), icmp6(128, 0, 0x10001, Buffer.alloc(24, 3))]) {
    const whole = frame6({}, exts, up);
    const frames: Buffer[] = [];
    // from the fixed header's end: BPF_PROG_TEST_RUN refuses (EINVAL) an IPv6 frame without its 40 bytes
    for (let n = MIN_FRAME; n < whole.length; n++) {
      frames.push(whole.subarray(0, n)); // payload_len as it was: past the packet
      const g = Buffer.from(whole.subarray(0, n));
      g.writeUInt16BE(n - L3 - 40, L3 + 4); // payload_len that says so
      frames.push(g);
    }
    const got = await parseAll(frames);
    const bad = got.map((s, i) => [i, diff(s, refParse(frames[i])!)] as const).filter(([, d]) => d);
    tt.same(bad.slice(0, 5), [], `proto ${up.proto}: ${frames.length} truncations as the reference`);
    tt.ok(got.every((s, i) => s.status !== Status.OK || frames[i].length === whole.length ||
      (frames[i].readUInt16BE(L3 + 4) === frames[i].length - L3 - 40)), 'only a payload_len within the packet is accepted');
    const cut = got.filter((s, i) => frames[i].length < whole.length && s.status === Status.OK);
    tt.ok(cut.every((s) => s.frag === Frag.FIRST && s.hasPorts === 1 && s.l4Off + (up.proto === NH.TCP ? 20 : 8) <= s.l3End),
      `a cut first fragment is accepted only with its whole ${up.proto} header (${cut.length} were)`);
  }
});

t.test('fragments: first, later, atomic, and what ip6_frag_queue refuses', async (tt) => {
  const up = udp6(7000, 8000, Buffer.alloc(32, 5)); // 40 bytes: a multiple of 8
  const first = await check(tt, frame6({}, [{ kind: 'frag', offset: 0, more: true, id: 0x01020304 }], up), 'first');
  tt.match(first, { frag: Frag.FIRST, fragId: 0x01020304, fragOff: 0, fragHdrOff: L3 + 40, proto: NH.UDP, hasPorts: 1, sport: 7000, l4Off: L3 + 48 });
  const later = await check(tt, frame6({}, [{ kind: 'dest' }, { kind: 'frag', offset: 1232, more: true, id: 0x0a0b0c0d }], up), 'later');
  tt.match(later, { frag: Frag.LATER, fragId: 0x0a0b0c0d, fragOff: 1232, proto: NH.UDP, hasPorts: 0, sport: 0, l4Off: L3 + 56, nExt: 2, posAfter: L3 + 56 });
  const last = await check(tt, frame6({}, [{ kind: 'frag', offset: 8, more: false, id: 1 }], raw6(NH.UDP, Buffer.alloc(3))), 'last, odd length');
  tt.match(last, { status: Status.OK, frag: Frag.LATER });
  const atomic = await check(tt, frame6({}, [{ kind: 'frag', offset: 0, more: false, id: 5 }], up), 'atomic');
  tt.match(atomic, { frag: Frag.NONE, fragId: 5, flags: L6Flag.FRAG_HDR, hasPorts: 1 });
  const refused: Array<[string, Buffer]> = [
    ['M set, length not a multiple of 8', frame6({}, [{ kind: 'frag', offset: 0, more: true, id: 1 }], udp6(1, 2, Buffer.alloc(3)))],
    ['empty fragment', frame6({}, [{ kind: 'frag', offset: 16, more: false, id: 1 }], raw6(NH.UDP, Buffer.alloc(0)))],
    ['past 65535', frame6({}, [{ kind: 'frag', offset: 65528, more: false, id: 1 }], raw6(NH.UDP, Buffer.alloc(16)))],
    ['first without its UDP header', frame6({}, [{ kind: 'frag', offset: 0, more: true, id: 1 }], raw6(NH.UDP, Buffer.alloc(0)))],
    ['first with 16 bytes of TCP', frame6({}, [{ kind: 'frag', offset: 0, more: true, id: 1 }], raw6(NH.TCP, Buffer.alloc(16)))],
    ['first, its upper header behind a dest opts header past the end',
      frame6({ payloadLen: 8 + 8 }, [{ kind: 'frag', offset: 0, more: true, id: 1 }, { kind: 'dest', units: 1 }], raw6(NH.UDP, Buffer.alloc(8)))],
  ];
  for (const [name, f] of refused) tt.match(await check(tt, f, name), { status: Status.MALFORMED, posAfter: L3 + 40 }, `${name}: MALFORMED`);
  const fn = await check(tt, frame6({}, [{ kind: 'frag', offset: 0, more: true, id: 1 }], raw6(NH.NONE, Buffer.alloc(8))), 'first, no next header');
  tt.match(fn, { status: Status.OK, frag: Frag.FIRST, proto: NH.NONE });
});

t.test('ICMPv6 errors, NDP and MLD', async (tt) => {
  const quoted = frame6({ src: '2001:db8:76::20', dst: '2001:db8:76::10' }, [], udp6(53, 5353)).subarray(L3);
  for (const type of [1, 2, 3, 4]) {
    const s = await check(tt, frame6({}, [], icmp6(type, 0, 1280, quoted)), `error type ${type}`);
    tt.match(s, { icmpType: type, quoteOff: L3 + 48, hasPorts: 0, csumOff: 0, cls: Cls.ERROR }, `type ${type}: the quote at ${L3 + 48}`);
  }
  const dq = await check(tt, frame6({}, [{ kind: 'dest' }], icmp6(2, 0, 1280, quoted)), 'too big after dest opts');
  tt.equal(dq.quoteOff, L3 + 56, 'the quote after the extension header');
  const ni = await check(tt, frame6({}, [], icmp6(5, 0)), 'type 5: no error defined');
  tt.equal(ni.quoteOff, 0);
  for (const type of [133, 134, 135, 136, 137]) {
    const ok = await check(tt, frame6({ src: 'fe80::1', dst: 'ff02::1:ff00:20', hop: 255 }, [], icmp6(type, 0, 0, Buffer.alloc(16))), `ndp ${type}`);
    tt.equal(ok.cls & Cls.NDP, Cls.NDP, `${type} with hop limit 255: NDP`);
    const routed = await check(tt, frame6({ src: 'fe80::1', hop: 254 }, [], icmp6(type, 0, 0, Buffer.alloc(16))), `ndp ${type} hop 254`);
    tt.equal(routed.cls & Cls.NDP, 0, `${type} with hop limit 254: not NDP a node accepts`);
    const code = await check(tt, frame6({ src: 'fe80::1', hop: 255 }, [], icmp6(type, 1, 0, Buffer.alloc(16))), `ndp ${type} code 1`);
    tt.equal(code.cls & Cls.NDP, 0, `${type} code 1: not NDP`);
  }
  const fragNs = await check(tt, frame6({ src: 'fe80::1', hop: 255 }, [{ kind: 'frag', offset: 0, more: true, id: 3 }], icmp6(135, 0, 0, Buffer.alloc(16))), 'fragmented NS');
  tt.equal(fragNs.cls & Cls.NDP, 0, 'a fragmented NS is not NDP (RFC 6980)');
  for (const type of [130, 131, 132, 143]) {
    const m = await check(tt, frame6({ src: 'fe80::2', dst: 'ff02::16', hop: 1 }, [{ kind: 'hop' }], icmp6(type, 0, 0, Buffer.alloc(16))), `mld ${type}`);
    tt.equal(m.cls & Cls.MLD, Cls.MLD, `${type}: MLD`);
    const g = await check(tt, frame6({ src: '2001:db8::2', dst: 'ff02::16', hop: 1 }, [], icmp6(type, 0, 0, Buffer.alloc(16))), `mld ${type} global src`);
    tt.equal(g.cls & Cls.MLD, 0, `${type} from a global source: not MLD`);
  }
  const u = await check(tt, frame6({ src: '::', dst: 'ff02::16', hop: 1 }, [], icmp6(143, 0, 0, Buffer.alloc(16))), 'MLDv2 report from ::');
  tt.equal(u.cls & Cls.MLD, Cls.MLD, 'a report from the unspecified address');
});

// --- random and mutated frames against the reference ------------------------

const KINDS = ['hop', 'dest', 'routing', 'frag', 'auth'] as const;
const ADDRS = ['2001:db8:76::10', '2001:db8:76::20', 'fe80::1', 'ff02::1', 'ff05::2', 'ff01::1', 'ff00::3', '::1', '::', '::ffff:10.0.0.1'];

function randomExt(r: Rng): Ext {
  const k = r.pick(KINDS);
  if (k === 'frag') {
    return { kind: 'frag', offset: r.chance(0.5) ? 0 : r.int(8192) * 8, more: r.chance(0.5), id: r.u32() };
  }
  if (k === 'routing') return { kind: 'routing', units: r.int(3), segsLeft: r.int(3) };
  if (k === 'auth') return { kind: 'auth', units: r.int(6) };
  return { kind: k, units: r.int(3) };
}

function randomUpper(r: Rng): Upper {
  const data = r.bytes(r.weighted([[3, 0], [3, r.int(40)], [1, r.int(400)]] as const));
  switch (r.int(6)) {
    case 0: return tcp6(r.int(65536), r.int(65536), r.int(256), r.u32(), r.u32(), r.int(65536), data);
    case 1: return udp6(r.int(65536), r.int(65536), data);
    case 2: return icmp6(r.pick([1, 2, 3, 4, 128, 129, 130, 131, 133, 134, 135, 136, 137, 143, r.int(256)]), r.int(2), r.u32(), data);
    case 3: return raw6(r.pick([NH.ESP, NH.SCTP, NH.NONE, 47, r.int(256)]), data);
    case 4: return raw6(r.pick([NH.TCP, NH.UDP, NH.ICMP]), r.bytes(r.int(24)));
    default: return udp6(53, 53, Buffer.alloc(r.int(8) * 8));
  }
}

function randomFrame(r: Rng): Buffer {
  const kind = r.weighted([[50, 'built'], [35, 'mutated'], [10, 'truncated'], [5, 'random']] as const);
  if (kind === 'random') {
    const b = r.bytes(r.range(MIN_FRAME, 300));
    b.writeUInt16BE(0x86dd, 12);
    if (r.chance(0.7)) b[L3] = (6 << 4) | (b[L3] & 0xf);
    return b;
  }
  const n = r.weighted([[2, 0], [4, r.range(1, 4)], [2, r.range(5, MAX_EXT)], [1, r.range(MAX_EXT + 1, 11)]] as const);
  const exts = Array.from({ length: n }, () => randomExt(r));
  const o = {
    src: r.chance(0.8) ? ADDRS[r.int(3)] : r.pick(ADDRS),
    dst: r.chance(0.8) ? ADDRS[r.int(3)] : r.pick(ADDRS),
    hop: r.pick([1, 64, 255, r.int(256)]),
  };
  let f = frame6(o, exts, randomUpper(r));
  if (kind === 'built' && r.chance(0.2)) f = Buffer.concat([f, r.bytes(r.int(16))]); // trailing padding
  if (kind === 'mutated') {
    const m = Buffer.from(f);
    const flips = r.range(1, 4);
    for (let i = 0; i < flips; i++) {
      // mostly the headers: the fixed header and the chain's first bytes
      const at = r.chance(0.7) ? L3 + r.int(Math.min(m.length - L3, 40 + 8 * n + 20)) : r.int(m.length);
      m[at] = r.chance(0.5) ? r.int(256) : m[at] ^ (1 << r.int(8));
    }
    if (r.chance(0.2)) m.writeUInt16BE(r.int(m.length - L3 + 8), L3 + 4);
    m.writeUInt16BE(0x86dd, 12);
    return m;
  }
  if (kind === 'truncated') {
    const cut = Buffer.from(f.subarray(0, r.range(MIN_FRAME, f.length)));
    if (r.chance(0.6)) cut.writeUInt16BE(cut.length - L3 - 40, L3 + 4);
    return cut;
  }
  return f;
}

t.test('random and mutated frames against the reference parse', async (tt) => {
  const seed = process.env.BERTH_V6_FUZZ_SEED ? Number(process.env.BERTH_V6_FUZZ_SEED) : (Date.now() ^ process.pid) >>> 0;
  const count = process.env.BERTH_V6_FUZZ_COUNT ? Number(process.env.BERTH_V6_FUZZ_COUNT) : 100_000;
  tt.ok(Number.isInteger(count) && count > 0, `count ${count}`);
  const r = new Rng(seed);
  const tally: Record<string, number> = {};
  const fails: string[] = [];
  let done = 0;
  while (done < count) {
    const frames: Buffer[] = [];
    for (let i = 0; i < SLOTS && done + i < count; i++) frames.push(randomFrame(r));
    const got = await parseAll(frames);
    got.forEach((s, i) => {
      const want = refParse(frames[i])!;
      const d = diff(s, want);
      if (d && fails.length < 10) fails.push(`${d}\n    frame ${frames[i].toString('hex')}`);
      const key = want.status === Status.OK ? `ok ${want.frag === Frag.NONE ? 'whole' : want.frag === Frag.FIRST ? 'first' : 'later'}${want.hasPorts ? ' ports' : ''}` : NAMES[want.status];
      tally[key] = (tally[key] ?? 0) + 1;
    });
    done += frames.length;
  }
  tt.comment(`seed ${seed} (BERTH_V6_FUZZ_SEED), ${done} frames: ${JSON.stringify(tally)}`);
  tt.same(fails, [], 'every summary as the reference: accepted ones field by field, refusals for the same reason');
  tt.ok((tally['ok whole ports'] ?? 0) > count / 10 && (tally.MALFORMED ?? 0) > count / 20 && (tally.UNSUPPORTED ?? 0) > 0 &&
    (tally['ok later'] ?? 0) > 0 && (tally['ok first ports'] ?? 0) > 0, 'the generator reached every outcome');
});

t.test('cost of a parse (BPF_PROG_TEST_RUN repeat)', async (tt) => {
  const repeat = 200_000;
  const cases: Array<[string, Buffer]> = [
    ['not IPv6 (the fixture alone)', (() => { const f = frame6({}, [], TCP()); f.writeUInt16BE(0x0800, 12); return f; })()],
    ['TCP, no extension header', frame6({}, [], TCP())],
    ['UDP first fragment', frame6({}, [{ kind: 'frag', offset: 0, more: true, id: 1 }], udp6(1, 2, Buffer.alloc(16)))],
    ['8 extension headers + TCP', frame6({}, [{ kind: 'hop' }, { kind: 'dest' }, { kind: 'routing' }, { kind: 'frag', offset: 0, more: false, id: 1 },
      { kind: 'auth' }, { kind: 'dest' }, { kind: 'routing' }, { kind: 'dest' }], TCP())],
  ];
  for (const [name, data] of cases) {
    const res = await prog.testRun({ data, repeat, ctx: ctxFor(0, 0) });
    tt.comment(`${name}: ${res.duration} ns per run (repeat ${repeat})`);
    tt.ok(res.duration > 0, `${name}: measured`);
  }
});
