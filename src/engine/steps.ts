/**
 * One step of a plan run against the dataplane, with what undoes it: the
 * executor apply() (reconcile.ts) runs step after step, rolling back in
 * reverse when one fails (long runs of map steps go as batches instead:
 * engine/batch.ts, same semantics).
 */
import { zeroPerCpuCounters } from '../platform/contract';
import type { Dataplane, Maps } from '../platform/dataplane';
import type { Step } from './reconcile';

/** What undoes one step (or one batch of them, engine/batch.ts). */
export type Undo = () => void | Promise<void>;

/**
 * Run `s`; push its undo onto `undo` (a step that changed nothing pushes
 * none). `invalidate` hears of every entry whose value changed or went, for
 * the conntrack flush that follows.
 */
export function runStep(dp: Dataplane, s: Step, undo: Undo[], invalidate: (map: keyof Maps, key: Buffer) => void): void {
  switch (s.op) {
    case 'put': {
      const map = dp.maps[s.map];
      const prev = map.lookup(s.key);
      if (s.flag === 'noexist' && prev) break;
      const value = s.map === 'counters' ? zeroPerCpuCounters(dp.cpus) : s.value;
      map.update(s.key, value, s.flag ?? 'any');
      if (prev && !prev.equals(value)) invalidate(s.map, s.key);
      undo.push(prev ? () => map.update(s.key, prev) : () => void map.delete(s.key));
      break;
    }
    case 'delete': {
      const map = dp.maps[s.map];
      const prev = map.lookup(s.key);
      if (!prev) break;
      invalidate(s.map, s.key);
      map.delete(s.key);
      undo.push(() => map.update(s.key, prev, 'noexist'));
      break;
    }
    case 'attach': {
      const made = dp.attachVeth(s.ifindex);
      undo.push(() => made.forEach((d) => dp.detachHook(s.ifindex, d)));
      break;
    }
    case 'attachUplink': {
      if (dp.attachUplink(s.ifindex, s.kind)) undo.push(() => void dp.detachUplink(s.ifindex, s.kind));
      break;
    }
    case 'detachUplink': {
      dp.detachUplink(s.ifindex, s.kind);
      undo.push(() => {
        try {
          dp.attachUplink(s.ifindex, s.kind);
        } catch {
          /* interface gone */
        }
      });
      break;
    }
    case 'attachBridge': {
      const made = dp.attachBridge(s.ifindex);
      undo.push(() => dp.detachBridge(s.ifindex, made));
      break;
    }
    case 'detachBridge': {
      dp.detachBridge(s.ifindex);
      undo.push(() => {
        try {
          dp.attachBridge(s.ifindex);
        } catch {
          /* bridge gone */
        }
      });
      break;
    }
    case 'attachCgroup': {
      if (dp.attachCgroup(s.hook)) undo.push(() => void dp.detachCgroup(s.hook));
      break;
    }
    case 'detachCgroup': {
      dp.detachCgroup(s.hook);
      undo.push(() => void dp.attachCgroup(s.hook));
      break;
    }
    case 'detach': {
      dp.detachVeth(s.ifindex);
      // re-attaching a detached hook is possible only while the interface exists
      undo.push(() => {
        try {
          dp.attachVeth(s.ifindex);
        } catch {
          /* interface gone: nothing to restore */
        }
      });
      break;
    }
  }
}
