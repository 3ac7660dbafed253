/**
 * A run of a plan's map steps as one batch on the thread pool: apply()
 * (reconcile.ts) hands over BATCH_MIN or more consecutive puts (same map, same
 * flag) or deletes (same map), which would otherwise be as many synchronous
 * syscalls on the event loop. Semantics are those of runStep (steps.ts), step
 * by step: what each key held is read first (lookupBatch, off the loop), a
 * 'noexist' put of a key that exists is skipped, a delete of an absent key does
 * nothing, and the undo restores the old values and deletes the new keys. The
 * batch ops go element by element in order (native/map.cc), so when one fails
 * at element k, the k before it are done and undone, and the step that failed
 * is the k-th: the same step, error and rollback as the one-by-one path.
 */
import { zeroPerCpuCounters } from '../platform/contract';
import type { Dataplane, Maps } from '../platform/dataplane';
import { BpfError, isBpfError } from '../platform/native';
import type { Step } from './reconcile';
import type { Undo } from './steps';

/** Runs shorter than this go step by step (a batch's worker round trip is not worth it). */
export const BATCH_MIN = 8;

type MapStep = Extract<Step, { op: 'put' | 'delete' }>;

/** How many steps from `i` on form one batchable run (1 for a step that is not a map step). */
export function runLength(steps: readonly Step[], i: number): number {
  const a = steps[i];
  if (a.op !== 'put' && a.op !== 'delete') return 1;
  let n = 1;
  for (; i + n < steps.length; n++) {
    const b = steps[i + n];
    if (b.op !== a.op || b.map !== a.map) break;
    if (a.op === 'put' && b.op === 'put' && (a.flag ?? 'any') !== (b.flag ?? 'any')) break;
  }
  return n;
}

/** A batch failed at group[index]; cause is the error the one-by-one path would have thrown. */
export class BatchStepError extends Error {
  constructor(readonly index: number, override readonly cause: unknown) {
    super((cause as Error)?.message ?? String(cause));
  }
}

/**
 * The element's error as the element op would have raised it (map.update,
 * map.delete, map.lookup; no " at element k"), so a failed batch reads as the
 * failed step always has.
 */
function asElementError(e: unknown): unknown {
  if (!isBpfError(e)) return e;
  const op = e.op.replace(/Batch$/, '');
  const err = new Error(e.message.replace(/^map\.(update|delete|lookup)Batch /, `${op} `).replace(/ at element \d+ \(/, ' (')) as BpfError;
  err.errno = e.errno;
  err.code = e.code;
  err.op = op;
  err.object = e.object;
  return err;
}

function failedAt(e: unknown): number {
  return isBpfError(e) && typeof e.element === 'number' ? e.element : 0;
}

/**
 * Run `group` (one run as runLength() finds it) as batches. Pushes one undo
 * per batch onto `undo`, with the number of steps it undoes in `weights`;
 * throws BatchStepError naming the step that failed.
 */
export async function runBatch(
  dp: Dataplane,
  group: readonly MapStep[],
  undo: Undo[],
  weights: Map<Undo, number>,
  invalidate: (map: keyof Maps, key: Buffer) => void,
): Promise<void> {
  const s0 = group[0];
  const map = dp.maps[s0.map];
  const keys = group.map((s) => s.key);
  // bad input is refused before anything is written, naming its step
  const bad = group.findIndex((s) => s.key.length !== map.keySize || (s.op === 'put' && s.map !== 'counters' && s.value.length !== map.valueBufferSize));
  if (bad >= 0) {
    const s = group[bad];
    const what = s.key.length !== map.keySize ? `key is ${s.key.length} bytes, not ${map.keySize}` : `value is ${(s as { value: Buffer }).value.length} bytes, not ${map.valueBufferSize}`;
    throw new BatchStepError(bad, new TypeError(`map.${s.op === 'put' ? 'update' : 'delete'} map '${map.name}': ${what} (EINVAL)`));
  }
  let prev: Array<Buffer | null>;
  try {
    prev = await map.lookupBatch(keys);
  } catch (e) {
    throw new BatchStepError(failedAt(e), asElementError(e));
  }
  if (s0.op === 'put') {
    const zero = s0.map === 'counters' ? zeroPerCpuCounters(dp.cpus) : undefined;
    const todo = group.map((_, i) => i).filter((i) => !(s0.flag === 'noexist' && prev[i]));
    if (todo.length === 0) return;
    const values = todo.map((i) => zero ?? (group[i] as Extract<Step, { op: 'put' }>).value);
    let done = todo.length;
    const u: Undo = async () => {
      const back = todo.slice(0, done);
      const old = back.filter((i) => prev[i]);
      const added = back.filter((i) => !prev[i]);
      if (old.length) await map.updateBatch(old.map((i) => keys[i]), old.map((i) => prev[i]!));
      if (added.length) await map.deleteBatch(added.map((i) => keys[i]));
    };
    undo.push(u);
    try {
      await map.updateBatch(todo.map((i) => keys[i]), values, s0.flag ?? 'any');
    } catch (e) {
      done = failedAt(e);
      weights.set(u, done);
      throw new BatchStepError(todo[done] ?? todo[0], asElementError(e));
    }
    weights.set(u, todo.length);
    todo.forEach((i, j) => {
      if (prev[i] && !prev[i]!.equals(values[j])) invalidate(s0.map, keys[i]);
    });
    return;
  }
  const present = group.map((_, i) => i).filter((i) => prev[i]);
  if (present.length === 0) return;
  let done = present.length;
  const u: Undo = async () => {
    const back = present.slice(0, done);
    await map.updateBatch(back.map((i) => keys[i]), back.map((i) => prev[i]!), 'noexist');
  };
  undo.push(u);
  try {
    await map.deleteBatch(present.map((i) => keys[i]));
  } catch (e) {
    done = failedAt(e);
    weights.set(u, done);
    throw new BatchStepError(present[done] ?? present[0], asElementError(e));
  }
  weights.set(u, present.length);
  for (const i of present) invalidate(s0.map, keys[i]);
}
