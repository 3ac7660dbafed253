/**
 * The pieces `berth run` adds for Docker mode and for the user policy, kept
 * here so that src/engine/daemon.ts only wires them in (their metrics:
 * observe/docker-metrics.ts registerModeMetrics).
 */
import type { BerthConfig } from '../../domain/config';
import type { Dataplane } from '../../platform/dataplane';
import { log } from '../../platform/log';
import type { PolicyNames } from '../../domain/policy';
import type { PolicyManager } from '../../engine/policy';
import type { RealizedEndpoint } from '../../platform/topology';
import { DockerClient } from './client';
import type { DockerDesired, DockerSettings } from './desired';
import { DockerFollower } from './follower';

export interface DockerModeOptions {
  socketPath?: string;
  settings: DockerSettings;
}

/** Policy names from Docker's current view: containers by name, networks by Docker name. */
export function dockerPolicyNames(dd: DockerDesired): PolicyNames {
  const target = new Map<string, string>();
  const target6 = new Map<string, string>();
  // each family's rule fields name the address that family's ports are published to
  for (const p of dd.desired.publish ?? []) {
    const m = p.ip.includes(':') ? target6 : target;
    if (!m.has(p.container)) m.set(p.container, p.ip);
  }
  for (const e of dd.desired.endpoints) if (e.ip6 && !target6.has(e.container)) target6.set(e.container, e.ip6);
  const subnets6 = new Map<string, string>();
  for (const m of dd.managed.values()) if (m.net.subnet6 && m.net.prefixLen6 !== undefined) subnets6.set(m.docker.Name, `${m.net.subnet6}/${m.net.prefixLen6}`);
  return {
    containerAddr: (n) => target.get(n.replace(/^\//, '')) ?? dd.containerIps.get(n.replace(/^\//, ''))?.[0],
    networkSubnet: (n) => dd.networkSubnets.get(n),
    containerAddr6: (n) => target6.get(n.replace(/^\//, '')),
    networkSubnet6: (n) => subnets6.get(n),
  };
}

/** Policy names from a standalone file and its realized endpoints. */
export function standalonePolicyNames(cfg: BerthConfig, endpoints: readonly RealizedEndpoint[]): PolicyNames {
  const ips = new Map(endpoints.filter((e) => e.ip).map((e) => [e.container, e.ip]));
  const ips6 = new Map(endpoints.filter((e) => e.ip6).map((e) => [e.container, e.ip6!]));
  const subnets = new Map(cfg.networks.filter((n) => n.subnetCidr).map((n) => [n.name, n.subnetCidr]));
  const subnets6 = new Map(cfg.networks.filter((n) => n.subnet6Cidr).map((n) => [n.name, n.subnet6Cidr!]));
  return { containerAddr: (n) => ips.get(n), networkSubnet: (n) => subnets.get(n), containerAddr6: (n) => ips6.get(n), networkSubnet6: (n) => subnets6.get(n) };
}

/** Program the policy (if any) for these names; errors are logged, never thrown. */
export function programPolicy(policy: PolicyManager | undefined, names: PolicyNames): void {
  if (!policy) return;
  try {
    if (policy.program(names)) log('info', 'policy programmed', { file: policy.file, rules: policy.current.rules.length });
  } catch (e) {
    log('error', 'policy programming failed', { file: policy.file, error: (e as Error).message });
  }
}

export interface DockerMode {
  follower: DockerFollower;
  client: DockerClient;
  stop(): Promise<void>;
}

export async function startDockerMode(dp: Dataplane, opts: DockerModeOptions & { xdp?: boolean; intervalMs?: number; policy?: () => PolicyManager | undefined }): Promise<DockerMode> {
  const client = new DockerClient({ socketPath: opts.socketPath });
  const follower = new DockerFollower({
    client,
    dp,
    settings: opts.settings,
    xdp: opts.xdp,
    intervalMs: opts.intervalMs,
    policyFile: () => opts.policy?.()?.file,
    afterSync: (dd) => programPolicy(opts.policy?.(), dockerPolicyNames(dd)),
  });
  await follower.start();
  return {
    follower,
    client,
    async stop() {
      await follower.stop();
      await client.destroy();
    },
  };
}
