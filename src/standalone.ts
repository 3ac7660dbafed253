/**
 * Standalone mode: the config file is the source of truth. Builds the
 * namespace topology (topology.ts), turns it into desired dataplane state and
 * reconciles, scoped to the file's own networks.
 */
import type { BerthConfig } from './config';
import { Dataplane } from './dataplane';
import { DesiredState, apply, plan, readCurrent, Step } from './reconcile';
import * as topology from './topology';
import type { RealizedEndpoint } from './topology';

export function desiredFrom(cfg: BerthConfig, endpoints: readonly RealizedEndpoint[]): DesiredState {
  return {
    networks: cfg.networks.map((n) => ({
      name: n.name,
      bridge: n.bridge,
      subnet: n.subnet.addr,
      prefixLen: n.subnet.prefixLen,
      gateway: n.gateway,
      icc: n.icc,
    })),
    endpoints: endpoints.map((e) => ({
      container: e.container,
      network: e.network,
      ip: e.ip,
      mac: e.mac,
      ifindex: e.hostIfindex,
      ifname: e.hostIfname,
    })),
  };
}

export function scopeOf(cfg: BerthConfig): Set<string> {
  return new Set(cfg.networks.map((n) => n.name));
}

export interface SyncResult {
  endpoints: RealizedEndpoint[];
  steps: Step[];
}

/** Program the dataplane for what exists of the config now (no topology changes). */
export async function syncDataplane(dp: Dataplane, cfg: BerthConfig): Promise<SyncResult> {
  const endpoints = await topology.describe(cfg);
  const steps = plan(desiredFrom(cfg, endpoints), await readCurrent(dp), scopeOf(cfg));
  await apply(dp, steps);
  return { endpoints, steps };
}

export interface UpOptions {
  pinRoot: string;
  fastPath?: boolean;
  startCommands?: boolean;
}

/** `berth up`: topology, then dataplane. A dataplane failure leaves the topology (it works without berth). */
export async function up(cfg: BerthConfig, opts: UpOptions): Promise<SyncResult> {
  await topology.up(cfg, { startCommands: opts.startCommands ?? true });
  const dp = await Dataplane.openOrLoad({ pinRoot: opts.pinRoot, fastPath: opts.fastPath });
  try {
    return await syncDataplane(dp, cfg);
  } finally {
    dp.close();
  }
}

/**
 * `berth down`: take the file's endpoints out of the dataplane, remove the
 * topology, and unpin the dataplane when nothing else is left in it.
 */
export async function down(cfg: BerthConfig, opts: { pinRoot: string }): Promise<{ removed: string[]; skipped: string[]; unpinned: boolean }> {
  let unpinned = false;
  if (Dataplane.isPinned(opts.pinRoot)) {
    const dp = Dataplane.openPinned(opts.pinRoot);
    try {
      await apply(dp, plan({ networks: [], endpoints: [] }, await readCurrent(dp), scopeOf(cfg)));
      const left = await readCurrent(dp);
      unpinned = left.networks.size === 0 && left.endpoints.size === 0;
    } finally {
      dp.close();
    }
    if (unpinned) Dataplane.reset(opts.pinRoot);
  }
  const res = await topology.down(cfg);
  return { ...res, unpinned };
}
