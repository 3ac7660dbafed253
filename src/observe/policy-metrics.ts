/**
 * The metric of the user policy, berth_policy_hits_total{rule, action}:
 * registered by `berth run` when it has a policy file.
 */
import { Counter, Registry } from 'prom-client';
import type { Dataplane } from '../platform/dataplane';
import type { Policy } from '../domain/policy';
import { PolicyMaps, openPolicyMaps, readPolicyHits } from '../engine/policy';

/**
 * The metric berth_policy_hits_total{rule, action}: packets matched by each
 * rule of the policy in force (read from the kernel at scrape time).
 */
export function registerPolicyMetrics(registry: Registry, dp: Pick<Dataplane, 'pinRoot'>, current: () => Policy | undefined): void {
  let maps: PolicyMaps | undefined;
  new Counter({
    name: 'berth_policy_hits_total',
    help: 'Packets of inbound flows to published ports or into routed networks matched by each rule of the user policy (DOCKER-USER equivalent).',
    labelNames: ['rule', 'action'],
    registers: [registry],
    collect() {
      this.reset();
      const p = current();
      if (!p || !p.rules.length) return;
      try {
        maps ??= openPolicyMaps(dp);
      } catch {
        return;
      }
      readPolicyHits(maps, p.rules.length).forEach((h, i) => this.inc({ rule: String(i), action: p.rules[i]!.action }, Number(h.packets)));
    },
  });
}

