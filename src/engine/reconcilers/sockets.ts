/**
 * The host socket hooks (cgroup connect/sendmsg/recvmsg, both families).
 * Without cgroup v2 nothing is attached (hooks pinned earlier are left as
 * they are).
 */
import { PlanContext } from './common';
import type { CgroupHook } from '../../platform/native';

export const SOCKET_HOOKS: readonly CgroupHook[] = Object.freeze(['connect4', 'sendmsg4', 'recvmsg4', 'connect6', 'sendmsg6', 'recvmsg6']);

/** The cgroup hooks (left alone when desired.socketHooks is undefined). */
export function planSocketHooks(ctx: PlanContext): void {
  const { desired, current, steps } = ctx;
  // --- host socket hooks (cgroup) ---------------------------------------------
  // without cgroup v2 nothing is attached (hooks pinned earlier are left as they are)
  if (desired.socketHooks !== undefined) {
    const canAttach = current.socketHooksAvailable !== false;
    for (const hook of SOCKET_HOOKS) {
      const have = (current.cgroupAttachments ?? []).find((a) => a.hook === hook);
      const progId = current.progIds.sock?.[hook];
      if (desired.socketHooks && canAttach && (!have || have.progId !== progId)) steps.push({ op: 'attachCgroup', what: `cgroup ${hook} hook`, hook });
      if (!desired.socketHooks && have) steps.push({ op: 'detachCgroup', what: `cgroup ${hook} hook`, hook });
    }
  }

}
