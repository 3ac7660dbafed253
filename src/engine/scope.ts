/**
 * Reconciling one scope (a config file's networks, or Docker's) on a
 * dataplane that other scopes share, and releasing it.
 *
 * The scope's own entries are planned as ever (reconcile.ts: scoped by
 * network name). The shared resources (owners.ts: socket hooks, uplinks and
 * served interfaces, host addresses, the policy) are planned for the union of
 * what every scope's pinned claim needs, so one scope's reconcile or `down`
 * never takes away what another still uses. The claim is pinned before the
 * steps run: a crash half-way leaves a claim that keeps the resources, never
 * one missing.
 */
import type { Dataplane } from '../platform/dataplane';
import { log } from '../platform/log';
import { PolicyManager } from './policy';
import { ApplyResult, CurrentState, DesiredState, apply, planWith, readCurrent } from './reconcile';
import { Claim, claimOf, otherLiveClaims, readClaims, releaseClaim, withShared, writeClaim } from './owners';
import type { ProgrammedView } from './view';

export interface ScopeOptions {
  /** the scope's id in the claims (owners.ts) */
  id: string;
  /** the network names this scope manages */
  scope: ReadonlySet<string>;
  /** is an interface another scope claimed still the one it saw (see withShared) */
  present?: (ifindex: number, ifname: string) => boolean;
  /** the user policy file this scope programs, if any */
  policy?: string;
  /**
   * plan against this view of what is programmed (engine/view.ts) instead of
   * reading every pin, and keep it up to date with the steps run (a failed
   * apply drops it); undefined: read the pins
   */
  view?: ProgrammedView;
  /** the pinned claims as the caller last read them (readClaims); undefined: read them now */
  claims?: ReturnType<typeof readClaims>;
}

/** The other scopes' claims that count, and a warning for the unreadable ones. */
function othersOf(pinRoot: string, current: CurrentState, id: string, read?: ReturnType<typeof readClaims>): Claim[] {
  const { claims, unreadable } = read ?? readClaims(pinRoot);
  if (unreadable.length) log('warn', 'claims on shared resources left unread', { pinRoot, links: unreadable });
  return otherLiveClaims(claims, id, new Set([...current.networks.values()].map((m) => m.name)));
}

/** Plan and apply a scope's desired state, the shared resources widened to every scope's claim. */
export async function syncScope(dp: Dataplane, desired: DesiredState, opts: ScopeOptions): Promise<ApplyResult> {
  const current = opts.view ? await opts.view.current() : await readCurrent(dp);
  const others = othersOf(dp.pinRoot, current, opts.id, opts.claims);
  const conflict = others.find((c) => c.policy && opts.policy && c.policy !== opts.policy);
  if (conflict) log('warn', 'another scope programs another policy; the last one programmed is in force', { scope: opts.id, policy: opts.policy, other: conflict.scope, otherPolicy: conflict.policy });
  writeClaim(dp.pinRoot, claimOf(opts.id, desired, { policy: opts.policy }));
  const steps = planWith(dp, withShared(desired, others, { present: opts.present }), current, opts.scope);
  if (!opts.view) return apply(dp, steps);
  try {
    const res = await apply(dp, steps);
    opts.view.applied(res.steps);
    return res;
  } catch (e) {
    opts.view.invalidate(`apply failed: ${(e as Error).message}`);
    throw e;
  }
}

/**
 * Take a scope out: its own entries go, the shared resources are kept as far
 * as the other scopes' claims need them (the last one out removes them), then
 * its claim goes. Returns whether anything of any scope is left.
 */
export async function releaseScope(dp: Dataplane, opts: ScopeOptions): Promise<ApplyResult & { othersLeft: boolean }> {
  const current = await readCurrent(dp);
  const { claims } = readClaims(dp.pinRoot);
  const own = claims.find((c) => c.scope === opts.id);
  const others = othersOf(dp.pinRoot, current, opts.id);
  const desired = withShared({ networks: [], endpoints: [], publish: [] }, others, { release: true, present: opts.present });
  const res = await apply(dp, planWith(dp, desired, current, opts.scope));
  // the policy's rules go with the last scope that programmed one
  if ((own?.policy || opts.policy) && !others.some((c) => c.policy)) PolicyManager.clear(dp);
  releaseClaim(dp.pinRoot, opts.id);
  return { ...res, othersLeft: others.length > 0 };
}
