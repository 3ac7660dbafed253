// The one reader of berth's per-CPU counter maps: platform/percpu.ts's
// decode (exact bigints and doubles from one pass), the contract's sums built
// on it against a per-CPU codec decode, and observe/stats.ts's two views of
// one read (readCounters, readCounterTotals) on a real pinned dataplane.
import t from 'tap';
import { PerCpuSums } from '../../src/platform/percpu';
import {
  CounterSlot,
  DIRECTION_NAMES,
  DROP_REASON_COUNT,
  DROP_REASON_NAMES,
  counterKeyCodec,
  counterValueCodec,
  endpointMetaCodec,
  globalStatsCodec,
  ifindexKeyCodec,
  networkKeyCodec,
  networkMetaCodec,
  pbCodec,
  sumGlobalStats,
  sumPerCpuCounters,
  type CounterValue,
  type GlobalStats,
} from '../../src/platform/contract';
import { Dataplane } from '../../src/platform/dataplane';
import { V, readCounterTotals, readCounters, readGlobals } from '../../src/observe/stats';

const U64 = (1n << 64n) - 1n;

/** A per-CPU buffer of u64 values (cpus × slots). */
function perCpu(values: bigint[][]): Buffer {
  const slots = values[0]!.length;
  const b = Buffer.alloc(values.length * slots * 8);
  values.forEach((cpu, c) => cpu.forEach((v, j) => b.writeBigUInt64LE(v, (c * slots + j) * 8)));
  return b;
}

/** A seeded xorshift, so a failure repeats. */
function rng(seed: number): () => bigint {
  let x = BigInt(seed) | 1n;
  return () => {
    x ^= (x << 13n) & U64;
    x ^= x >> 7n;
    x ^= (x << 17n) & U64;
    return x;
  };
}

t.test('PerCpuSums: exact bigints past 2^53 (and past 2^64 as a sum), doubles, every CPU counted', async (t) => {
  const big = (1n << 62n) + 12345n;
  const b = perCpu([
    [big, 1n],
    [big, 2n],
    [big, (1n << 32n) - 1n],
  ]);
  const s = new PerCpuSums(b, 16, 3);
  t.equal(s.length, 2);
  t.equal(s.bigint(0), 3n * big, 'three CPUs near 2^62 summed exactly');
  t.equal(s.bigint(1), 1n + 2n + ((1n << 32n) - 1n), 'low halves that carry into the high half');
  t.same([...s.numbers()], [Number(big) * 3, Number(1n + 2n + ((1n << 32n) - 1n))], 'doubles: the sum of each CPU\'s count as a double');
  t.throws(() => s.bigint(2), /u64 2 of a 2-u64 value/, 'no u64 past the value');
  t.equal(new PerCpuSums(b, 16).bigint(0), 3n * big, 'cpus omitted: as many as the buffer holds');
});

t.test('PerCpuSums refuses a buffer of another size, or a value that is not u64s', async (t) => {
  const b = perCpu([[1n, 2n], [3n, 4n]]);
  t.throws(() => new PerCpuSums(b, 16, 3), /per-CPU buffer of 32 bytes, expected 48/);
  t.throws(() => new PerCpuSums(b.subarray(1), 16), /expected a multiple of 16/);
  t.throws(() => new PerCpuSums(Buffer.alloc(0), 16), /expected a multiple of 16/, 'no CPU at all');
  t.throws(() => new PerCpuSums(b, 12, 2), /not a struct of u64 counters/);
});

t.test('sumPerCpuCounters and sumGlobalStats match a per-CPU codec decode summed in bigints', async (t) => {
  const r = rng(20261201);
  for (const cpus of [1, 2, 7]) {
    for (let round = 0; round < 20; round++) {
      const slotsC = counterValueCodec.size / 8;
      const c = perCpu(Array.from({ length: cpus }, () => Array.from({ length: slotsC }, () => r() >> BigInt(round % 3 === 0 ? 1 : 20))));
      const want: CounterValue = counterValueCodec.decodeFrom(Buffer.alloc(counterValueCodec.size), 0);
      for (let cpu = 0; cpu < cpus; cpu++) {
        const v = counterValueCodec.decodeFrom(c, cpu * counterValueCodec.size);
        for (const [a, b] of [[want.pass, v.pass], [want.redirect, v.redirect], ...want.drop.map((d, i) => [d, v.drop[i]!] as const)] as const) {
          a.packets += b.packets;
          a.bytes += b.bytes;
        }
      }
      t.same(sumPerCpuCounters(c, cpus), want, `counters, ${cpus} CPUs, round ${round}`);
      const slotsG = globalStatsCodec.size / 8;
      const g = perCpu(Array.from({ length: cpus }, () => Array.from({ length: slotsG }, () => r() >> 8n)));
      const wantG = globalStatsCodec.decodeFrom(Buffer.alloc(globalStatsCodec.size), 0) as GlobalStats;
      for (let cpu = 0; cpu < cpus; cpu++) {
        const v = globalStatsCodec.decodeFrom(g, cpu * globalStatsCodec.size);
        for (const k of Object.keys(wantG) as Array<keyof GlobalStats>) wantG[k] += v[k];
      }
      t.same(sumGlobalStats(g, cpus), wantG, `global stats, ${cpus} CPUs, round ${round}`);
    }
  }
  t.equal(CounterSlot.COUNT * 8, counterValueCodec.size, 'the slots cover struct berth_counter_value');
  t.equal(CounterSlot.drop(1) * 8, counterValueCodec.layout.find((f) => f.name === 'drop')!.offset + pbCodec.size, "drop reason 1's slot is where the codec puts it");
  t.throws(() => sumPerCpuCounters(Buffer.alloc(counterValueCodec.size * 2 - 8), 2), /per-CPU buffer/);
});

t.test('readCounters and readCounterTotals: two views of one read of a real pinned map', async (t) => {
  const pinRoot = `/sys/fs/bpf/berth-mg-test-stats-${process.pid}`;
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot });
  t.teardown(() => {
    dp.close();
    Dataplane.reset(pinRoot);
  });
  const IF = [910001, 910002]; // no real interface has these
  dp.maps.netMeta.update(networkKeyCodec.encode({ network_id: 1 }), networkMetaCodec.encode({ name: 'bmgnet', bridge: 'bmgbr0', subnet: '10.75.252.0', prefix_len: 24, gateway: '10.75.252.1', flags: 1 }));
  IF.forEach((ifindex, i) => dp.maps.epMeta.update(ifindexKeyCodec.encode({ ifindex }), endpointMetaCodec.encode({ container: `bmgc${i}`, ifname: `bmgv${i}`, network_id: 1 })));
  // every CPU counts; veth 0's pass packets sum past 2^53 (exact as a bigint only)
  const per = (ifindex: number, direction: number) => (cpu: number): bigint[] =>
    Array.from({ length: CounterSlot.COUNT }, (_, j) => (ifindex === IF[0] && direction === 0 && j === V.PASS_P ? 1n << 52n : BigInt(1000 * ifindex + 100 * direction + 10 * cpu + j)));
  const expect = new Map<string, bigint[]>();
  for (const ifindex of IF)
    for (const direction of [0, 1]) {
      const rows = Array.from({ length: dp.cpus }, (_, cpu) => per(ifindex, direction)(cpu));
      dp.maps.counters.update(counterKeyCodec.encode({ ifindex, direction }), perCpu(rows));
      expect.set(`${ifindex}/${direction}`, Array.from({ length: CounterSlot.COUNT }, (_, j) => rows.reduce((a, r) => a + r[j]!, 0n)));
    }

  const rows = await readCounters(dp);
  const totals = await readCounterTotals(dp);
  t.equal(rows.length, 4, 'one row per entry');
  t.equal(totals.length, 4);
  t.same(rows.map((r) => `${r.container}/${r.interface}/${r.network}/${r.direction}`), ['bmgc0/bmgv0/bmgnet/from_container', 'bmgc0/bmgv0/bmgnet/to_container', 'bmgc1/bmgv1/bmgnet/from_container', 'bmgc1/bmgv1/bmgnet/to_container'], 'named from the pinned metadata, sorted');
  for (const r of rows) {
    const dir = Object.entries(DIRECTION_NAMES).find(([, n]) => n === r.direction)?.[0];
    const e = expect.get(`${r.ifindex}/${dir}`);
    if (!e) {
      t.fail(`no entry written for ${r.ifindex}/${r.direction}`);
      continue;
    }
    t.equal(r.pass.packets, e[V.PASS_P], `${r.interface} ${r.direction}: pass packets exact`);
    t.equal(r.redirect.bytes, e[V.REDIR_B]);
    t.same(
      DROP_REASON_NAMES.slice(1).map((n) => [r.drop[n]!.packets, r.drop[n]!.bytes]),
      Array.from({ length: DROP_REASON_COUNT - 1 }, (_, i) => [e[V.drop(i + 1)], e[V.drop(i + 1) + 1]]),
      'every drop reason, packets and bytes',
    );
    t.notOk('none' in r.drop, 'reason 0 is not a drop');
    const tot = totals.find((x) => x.ifindex === r.ifindex && x.direction === r.direction)!;
    t.same({ ...tot, vals: undefined }, { ifindex: r.ifindex, interface: r.interface, container: r.container, network: r.network, direction: r.direction, vals: undefined }, 'the same labels');
    t.same([...tot.vals], e.map((x) => Number(x)), 'the doubles are the exact sums, rounded once');
  }
  const big = rows.find((r) => r.ifindex === IF[0] && r.direction === DIRECTION_NAMES[0])!;
  t.equal(big.pass.packets, BigInt(dp.cpus) << 52n, `${dp.cpus} CPUs × 2^52 exact`);
  t.same(readGlobals(dp), globalStatsCodec.decodeFrom(Buffer.alloc(globalStatsCodec.size), 0), 'a fresh dataplane: every global counter zero');
});
