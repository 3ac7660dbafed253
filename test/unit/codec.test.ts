import t from 'tap';
import { AF_INET, AF_INET6, StructCodec, array, cstr, formatIPv6Bytes, ipv4, ipv6Bytes, ipv6Mask, mac, pad, struct, u16, u32, u64, u8 } from '../../src/platform/codec';
import { counterValueCodec, ctKeyCodec, endpointCodec, sumPerCpuCounters, zeroPerCpuCounters } from '../../src/platform/contract';

t.test('C alignment rules', async (t) => {
  const inner = new StructCodec<{ a: number }>('inner', [['a', u16]]);
  const c = new StructCodec<any>('s', [
    ['a', u8],
    ['b', u32],
    ['c', u8],
    ['d', u64],
    ['e', struct(inner)],
    ['f', array(u16, 3)],
  ]);
  t.same(
    c.layout.map((l) => [l.name, l.offset, l.size]),
    [
      ['a', 0, 1],
      ['b', 4, 4],
      ['c', 8, 1],
      ['d', 16, 8],
      ['e', 24, 2],
      ['f', 26, 6],
    ],
  );
  t.equal(c.size, 32, 'padded to the largest alignment');
});

t.test('round trip and byte order', async (t) => {
  const ep = { addr: '10.88.0.10', ifindex: 7, network_id: 3, flags: 1, mac: '02:42:ac:11:00:02' };
  const buf = endpointCodec.encode(ep);
  t.equal(buf.length, 40);
  t.same([...buf.subarray(0, 4)], [10, 88, 0, 10], 'address in network byte order');
  t.equal(buf.readUInt32LE(4), 7, 'ifindex host (little-endian) order');
  t.same(endpointCodec.decode(buf), { ...ep, addr6: '::' }, 'an IPv6 address left out is ::');
  const ep6 = { ...ep, addr6: 'fd00:1::5' };
  const b6 = endpointCodec.encode(ep6);
  t.same([...b6.subarray(24, 40)], [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5], 'IPv6 address as on the wire');
  t.same(endpointCodec.decode(b6), ep6);
});

t.test('addresses of both families in one field (ip46) and the family derived from them', async (t) => {
  const k4 = ctKeyCodec.encode({ saddr: '10.1.2.3', daddr: '10.9.8.7', sport: 1, dport: 2, proto: 6 });
  t.same([...k4.subarray(0, 16)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3], 'IPv4 as ::ffff:a.b.c.d');
  t.equal(k4[37], AF_INET, 'family AF_INET');
  t.same(ctKeyCodec.decode(k4), { saddr: '10.1.2.3', daddr: '10.9.8.7', sport: 1, dport: 2, proto: 6, family: AF_INET });
  const k6 = ctKeyCodec.encode({ saddr: '2001:db8::1', daddr: 'fd00::ff', sport: 1, dport: 2, proto: 17 });
  t.equal(k6[37], AF_INET6, 'family AF_INET6');
  t.same(ctKeyCodec.decode(k6), { saddr: '2001:db8::1', daddr: 'fd00::ff', sport: 1, dport: 2, proto: 17, family: AF_INET6 });
  t.throws(() => ctKeyCodec.encode({ saddr: '1::2::3', daddr: '::', sport: 1, dport: 2, proto: 6 }), /not an IPv4 or IPv6 address/);
  t.throws(() => ctKeyCodec.encode({ saddr: '10.0.0.1', daddr: '10.0.0.2', sport: 1, dport: 2, proto: 6, family: 3 }), /not an address family/);
  for (const [text, canon] of [['::', '::'], ['0:0:0:0:0:0:0:1', '::1'], ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], ['fe80::1:2', 'fe80::1:2'], ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'], ['64:ff9b::10.0.0.1', '64:ff9b::a00:1']])
    t.equal(formatIPv6Bytes(ipv6Bytes(text)!), canon, `${text} -> ${canon}`);
  for (const bad of ['1:2:3:4:5:6:7:8:9', ':::', '1::2::3', 'g::', '10.0.0.1', '::1%eth0', '::1.2.3'])
    t.equal(ipv6Bytes(bad), null, `${bad} refused`);
  t.equal(ipv6Mask(64), 'ffff:ffff:ffff:ffff::');
  t.equal(ipv6Mask(56), 'ffff:ffff:ffff:ff00::');
});

t.test('bad values are refused, never truncated', async (t) => {
  const c = new StructCodec<any>('x', [['n', u8], ['s', cstr(4)], ['m', mac], ['ip', ipv4], ['p', pad(2)]]);
  t.throws(() => c.encode({ n: 256, s: 'a', m: '00:00:00:00:00:00', ip: '1.2.3.4' }), /does not fit u8/);
  t.throws(() => c.encode({ n: 1, s: 'abcd', m: '00:00:00:00:00:00', ip: '1.2.3.4' }), /longer than 3 bytes/);
  t.throws(() => c.encode({ n: 1, s: 'a', m: '00:00:00:00:00', ip: '1.2.3.4' }), /not a MAC/);
  t.throws(() => c.encode({ n: 1, s: 'a', m: '00:00:00:00:00:00', ip: '1.2.3.256' }), /not an IPv4/);
  t.throws(() => c.encode({ n: 1, s: 'a', m: '00:00:00:00:00:00' }), /ip: missing/);
  t.throws(() => c.decode(Buffer.alloc(3)), /need/);
});

t.test('per-CPU counters are summed over every CPU slot', async (t) => {
  const cpus = 3;
  const buf = zeroPerCpuCounters(cpus);
  const stride = counterValueCodec.size;
  for (let cpu = 0; cpu < cpus; cpu++) {
    buf.writeBigUInt64LE(BigInt(cpu + 1), cpu * stride + 16); // redirect.packets
    buf.writeBigUInt64LE(100n, cpu * stride + 24); // redirect.bytes
    buf.writeBigUInt64LE(5n, cpu * stride + 32 + 16 * 2); // drop[2].packets
  }
  const s = sumPerCpuCounters(buf, cpus);
  t.equal(s.redirect.packets, 6n);
  t.equal(s.redirect.bytes, 300n);
  t.equal(s.drop[2].packets, 15n);
  t.equal(s.pass.packets, 0n);
  t.throws(() => sumPerCpuCounters(buf.subarray(1), cpus));
});
