/**
 * The one decode of a per-CPU map value made of u64 counters: berth_counters'
 * struct berth_counter_value, berth_policy_hits' struct berth_pb and
 * berth_stats' struct berth_global_stats. The kernel returns one slot per
 * possible CPU, each roundup(value size, 8) bytes; every u64 of the value is
 * summed over the slots.
 *
 * Two ways to read the sums of one value: bigint(i), exact to any size
 * (`berth stats`, the tests, the global counters), and numbers(), every u64
 * as a double in one pass without a bigint per count (exact below 2^53,
 * 9 PB; what Prometheus, the dashboard and `berth stats --watch` take, and
 * the hot part of a scrape with 1,000 veths).
 */

export class PerCpuSums {
  /** how many u64 the value has */
  readonly length: number;
  /** how many CPUs the buffer holds */
  readonly cpus: number;
  private readonly stride: number;

  /**
   * buf: the per-CPU value as the map returns it; valueSize: the struct's size
   * (a multiple of 8: u64 fields only); cpus: the possible CPUs (omitted: as
   * many as buf holds slots). A buffer of another size is a RangeError, never
   * a misread.
   */
  constructor(
    private readonly buf: Buffer,
    valueSize: number,
    cpus?: number,
  ) {
    if (valueSize <= 0 || valueSize % 8) throw new RangeError(`per-CPU value of ${valueSize} bytes: not a struct of u64 counters`);
    this.stride = valueSize; // already roundup(valueSize, 8)
    const n = cpus ?? buf.length / valueSize;
    if (!Number.isInteger(n) || n < 1 || buf.length !== valueSize * n)
      throw new RangeError(`per-CPU buffer of ${buf.length} bytes, expected ${cpus === undefined ? `a multiple of ${valueSize}` : valueSize * cpus}`);
    this.cpus = n;
    this.length = valueSize / 8;
  }

  /** the i-th u64 summed over CPUs, exact */
  bigint(i: number): bigint {
    if (!(i >= 0 && i < this.length)) throw new RangeError(`u64 ${i} of a ${this.length}-u64 value`);
    let t = 0n;
    for (let cpu = 0; cpu < this.cpus; cpu++) t += this.buf.readBigUInt64LE(cpu * this.stride + 8 * i);
    return t;
  }

  /** every u64 summed over CPUs, as doubles (exact below 2^53) */
  numbers(): Float64Array {
    const out = new Float64Array(this.length);
    const b = this.buf;
    for (let cpu = 0; cpu < this.cpus; cpu++) {
      const base = cpu * this.stride;
      for (let j = 0; j < out.length; j++) out[j] += b.readUInt32LE(base + 8 * j + 4) * 4294967296 + b.readUInt32LE(base + 8 * j);
    }
    return out;
  }
}
