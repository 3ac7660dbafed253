/**
 * The kernel's own BPF statistics (kernel.bpf_stats_enabled=1): run count and
 * run time of each program, read with `bpftool prog show --json`
 * (BPF_OBJ_GET_INFO run_cnt and run_time_ns). The profile suite reads them
 * before and after a counted number of transactions and divides the deltas.
 *
 * Each berth dataplane loads its own program instances (one per pin root), so
 * the ids of the suite's pinned dataplane count only its own attachments; the
 * cgroup socket hooks sit on the root cgroup and also run for other
 * processes' connect()/sendmsg() while they are attached (the report says so).
 */
import * as fs from 'node:fs';
import { run } from '../../src/platform/exec';
import { Dataplane } from '../../src/platform/dataplane';

const STATS = '/proc/sys/kernel/bpf_stats_enabled';

export interface ProgStat {
  id: number;
  runCnt: number;
  runTimeNs: number;
}

/**
 * Turn the statistics on; returns the function that puts back what was there.
 * Refuses when the sysctl is missing (an old kernel): the profile would be empty.
 */
export function enableBpfStats(): () => void {
  if (!fs.existsSync(STATS)) throw new Error(`${STATS} is missing: this kernel cannot count BPF run time`);
  const before = fs.readFileSync(STATS, 'utf8').trim();
  fs.writeFileSync(STATS, '1');
  return () => fs.writeFileSync(STATS, before);
}

/** run_cnt and run_time_ns of the given program ids (a missing id is an error). */
export async function readProgStats(ids: number[]): Promise<Map<number, ProgStat>> {
  const { stdout } = await run('bpftool', ['prog', 'show', '--json']);
  const all = JSON.parse(stdout) as Array<{ id: number; run_cnt?: number; run_time_ns?: number }>;
  const out = new Map<number, ProgStat>();
  for (const p of all) if (ids.includes(p.id)) out.set(p.id, { id: p.id, runCnt: p.run_cnt ?? 0, runTimeNs: p.run_time_ns ?? 0 });
  for (const id of ids) if (!out.has(id)) throw new Error(`bpftool: program id ${id} is not loaded`);
  return out;
}

/** The program ids of a pinned dataplane, by program key (ingress, egress, uplink, xdp, bridgeIn, ...). */
export function programIds(pinRoot: string): Record<string, number> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    return Object.fromEntries(Object.entries(dp.progs).map(([k, p]) => [k, p.id]));
  } finally {
    dp.close();
  }
}
