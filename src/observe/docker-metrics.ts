/** Docker-mode metrics (and the policy's), registered by the daemon on its registry. */
import { Counter, Gauge, Registry } from 'prom-client';
import type { Dataplane } from '../platform/dataplane';
import type { PolicyManager } from '../engine/policy';
import type { FollowerStatus } from '../sources/docker/follower';
import type { DockerMode } from '../sources/docker/mode';
import { registerPolicyMetrics } from './policy-metrics';

/** What `berth run` adds to its registry: the policy's hit counters, and Docker mode's metrics when it follows dockerd. */
export function registerModeMetrics(registry: Registry, dp: Dataplane, policy: () => PolicyManager | undefined, docker?: DockerMode): void {
  registerPolicyMetrics(registry, dp, () => policy()?.current);
  if (docker) registerDockerMetrics(registry, () => docker.follower.status);
}

export function registerDockerMetrics(registry: Registry, status: () => FollowerStatus): void {
  new Gauge({
    name: 'berth_docker_connected',
    help: '1 while berth follows the Docker daemon\'s event stream.',
    registers: [registry],
    collect() {
      this.set(status().connected ? 1 : 0);
    },
  });
  new Counter({
    name: 'berth_docker_events_total',
    help: 'Docker events handled (each programs what it names).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(status().events);
    },
  });
  new Counter({
    name: 'berth_docker_inspects_total',
    help: 'Container inspections (an event inspects the container it names; a full resync every running one).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(status().inspects ?? 0);
    },
  });
  new Counter({
    name: 'berth_docker_full_resyncs_total',
    help: 'Full resyncs with dockerd (at connect, on SIGHUP, on the timer, after a failed run): everything listed and inspected, the pins read again.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(status().fullResyncs ?? 0);
    },
  });
  new Counter({
    name: 'berth_docker_reconnects_total',
    help: 'Times the Docker event stream was lost and reopened.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(status().reconnects);
    },
  });
  new Gauge({
    name: 'berth_docker_networks',
    help: 'Docker networks seen: managed by berth (bridge driver) or left alone; families: ipv4, ipv6 or ipv4,ipv6 (empty when left alone).',
    labelNames: ['network', 'driver', 'managed', 'families'],
    registers: [registry],
    collect() {
      this.reset();
      const s = status();
      for (const n of s.managed) this.set({ network: n, driver: 'bridge', managed: 'true', families: s.families?.[n] ?? '' }, 1);
      for (const n of s.skipped) this.set({ network: n.name, driver: n.driver, managed: 'false', families: '' }, 1);
    },
  });
}
