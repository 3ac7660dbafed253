import t from 'tap';
import { StructCodec, array, cstr, ipv4, mac, pad, struct, u16, u32, u64, u8 } from '../../src/codec';
import { counterValueCodec, endpointCodec, sumPerCpuCounters, zeroPerCpuCounters } from '../../src/contract';

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
  t.equal(buf.length, 24);
  t.same([...buf.subarray(0, 4)], [10, 88, 0, 10], 'address in network byte order');
  t.equal(buf.readUInt32LE(4), 7, 'ifindex host (little-endian) order');
  t.same(endpointCodec.decode(buf), ep);
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
