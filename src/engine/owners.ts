/**
 * Shared resources and who needs them.
 *
 * One pinned dataplane serves several scopes (each config file brought up on
 * the same pin root, and Docker mode): the map entries of networks, endpoints
 * and publishes belong to one scope each, but the cgroup socket hooks, the
 * uplinks and served interfaces (their map entries and hooks, XDP included),
 * the host addresses and the user policy are one for all. Each scope records
 * what it needs of them in a claim; a shared resource is programmed for the
 * union of the claims and goes only when the last claim that needs it goes.
 *
 * Claims are pinned state: one symlink per scope under <pinRoot>/owners/
 * (bpffs holds no regular files, but it holds symlinks, which live as long
 * as the pins do), named by a hash of the scope's id, its target the claim as
 * JSON. Written by replacing the link atomically (a new link renamed over the
 * old), so a reader sees the old claim or the new one. A restarted daemon, a
 * `berth down` in another process, all read the same claims.
 *
 * A claim names its scope's networks. A claim whose networks are all gone
 * from the dataplane (its owner crashed between steps, or was reset by hand)
 * is stale: it is ignored, and goes with the dataplane when nothing else is
 * left. A claim that names no network is kept until its owner releases it.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DesiredState, DesiredUplink } from './reconcile';

export interface Claim {
  /** the scope's id: `file:<network names>` for a file, `docker` for Docker mode */
  scope: string;
  /** the scope's networks (stale when none of them is in the dataplane) */
  networks: string[];
  /** the host socket hooks are needed */
  socketHooks?: boolean;
  /** the host's addresses are needed in berth_host_addr(6) */
  hostAddrs?: boolean;
  /** uplinks as the scope last saw them (addresses, MAC) */
  uplinks?: DesiredUplink[];
  /** served interfaces besides the uplinks */
  served?: { ifindex: number; ifname: string }[];
  /** XDP on the served interfaces */
  xdp?: boolean;
  /** the user policy file this scope programs */
  policy?: string;
}

export const OWNERS_DIR = 'owners';

/** The scope id of a set of network names (a config file's scope). */
export function fileScopeId(networks: Iterable<string>): string {
  return `file:${[...networks].sort().join(',')}`;
}

function ownersDir(pinRoot: string): string {
  return path.join(pinRoot, OWNERS_DIR);
}

function linkName(scope: string): string {
  return createHash('sha256').update(scope).digest('hex').slice(0, 24);
}

/** What a scope's desired state needs of the shared resources (undefined fields: it says nothing). */
export function claimOf(scope: string, desired: DesiredState, extra: { policy?: string } = {}): Claim {
  return {
    scope,
    networks: desired.networks.map((n) => n.name).sort(),
    ...(desired.socketHooks !== undefined ? { socketHooks: desired.socketHooks } : {}),
    ...(desired.hostAddrs !== undefined ? { hostAddrs: true } : {}),
    ...(desired.uplinks !== undefined ? { uplinks: [...desired.uplinks], served: [...(desired.served ?? [])], xdp: !!desired.xdp } : {}),
    ...(extra.policy ? { policy: extra.policy } : {}),
  };
}

function parseClaim(text: string): Claim | undefined {
  try {
    const c = JSON.parse(text) as Claim;
    if (typeof c?.scope !== 'string' || !Array.isArray(c.networks)) return undefined;
    return c;
  } catch {
    return undefined;
  }
}

/** Every claim pinned under the pin root (unreadable ones are returned as errors, never guessed at). */
export function readClaims(pinRoot: string): { claims: Claim[]; unreadable: string[] } {
  const dir = ownersDir(pinRoot);
  const claims: Claim[] = [];
  const unreadable: string[] = [];
  if (!fs.existsSync(dir)) return { claims, unreadable };
  for (const f of fs.readdirSync(dir)) {
    if (f.endsWith("-new")) continue;
    let c: Claim | undefined;
    try {
      c = parseClaim(fs.readlinkSync(path.join(dir, f)));
    } catch {
      c = undefined;
    }
    if (c) claims.push(c);
    else unreadable.push(f);
  }
  return { claims, unreadable };
}

/** Pin a scope's claim (no-op when it is already the pinned one). */
export function writeClaim(pinRoot: string, claim: Claim): boolean {
  const dir = ownersDir(pinRoot);
  const target = JSON.stringify(claim);
  // a symlink's target is at most PATH_MAX; a claim past that is refused, never cut
  if (Buffer.byteLength(target) >= 4096) throw new Error(`scope ${claim.scope}: its claim on the shared resources is too long to pin (${Buffer.byteLength(target)} bytes)`);
  const file = path.join(dir, linkName(claim.scope));
  try {
    if (fs.readlinkSync(file) === target) return false;
  } catch {
    /* none yet */
  }
  fs.mkdirSync(dir, { recursive: true });
  // bpffs refuses names with a dot (reserved), hence the dash
  const tmp = `${file}-${process.pid}-new`;
  try {
    fs.unlinkSync(tmp);
  } catch {
    /* none */
  }
  fs.symlinkSync(target, tmp);
  fs.renameSync(tmp, file);
  return true;
}

/** Remove a scope's claim (no-op when it has none). */
export function releaseClaim(pinRoot: string, scope: string): boolean {
  try {
    fs.unlinkSync(path.join(ownersDir(pinRoot), linkName(scope)));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** The claims of other scopes that still count: not `scope`'s own, not stale. */
export function otherLiveClaims(claims: readonly Claim[], scope: string, pinnedNetworks: ReadonlySet<string>): Claim[] {
  return claims.filter((c) => c.scope !== scope && (c.networks.length === 0 || c.networks.some((n) => pinnedNetworks.has(n))));
}

/**
 * The desired state with the shared resources widened to what the other
 * scopes' claims need. `desired` says what this scope needs (a field left
 * undefined: this scope leaves that resource alone, and so does the result);
 * `release` says this scope needs nothing any more, so a shared resource is
 * kept exactly as far as the others need it, and removed when none does.
 * `present` says whether an interface another scope claimed is still the
 * one it saw (same ifindex and name): one that is gone, or whose ifindex
 * now names another interface, is never served for that claim.
 */
export function withShared(
  desired: DesiredState,
  others: readonly Claim[],
  opts: { release?: boolean; present?: (ifindex: number, ifname: string) => boolean } = {},
): DesiredState {
  const out: { -readonly [K in keyof DesiredState]: DesiredState[K] } = { ...desired };
  const anyOther = (f: (c: Claim) => boolean | undefined): boolean => others.some((c) => !!f(c));
  const present = opts.present ?? (() => true);
  // socket hooks: attached while any scope needs them
  if (desired.socketHooks !== undefined || opts.release) out.socketHooks = !!desired.socketHooks || anyOther((c) => c.socketHooks);
  // host addresses: the host's own set, kept while any scope needs it; the last one out removes them
  if (opts.release && desired.hostAddrs === undefined && !anyOther((c) => c.hostAddrs)) out.hostAddrs = [];
  // uplinks and served interfaces: the union (this scope's fresh facts win for an interface both name)
  if (desired.uplinks !== undefined || opts.release) {
    const uplinks = new Map<number, DesiredUplink>();
    const served = new Map<number, { ifindex: number; ifname: string }>();
    let xdp = !!desired.xdp;
    for (const c of others) {
      if (c.uplinks === undefined) continue;
      for (const u of c.uplinks) if (present(u.ifindex, u.ifname)) uplinks.set(u.ifindex, u);
      for (const s of c.served ?? []) if (present(s.ifindex, s.ifname)) served.set(s.ifindex, s);
      xdp ||= !!c.xdp;
    }
    for (const u of desired.uplinks ?? []) uplinks.set(u.ifindex, u);
    // plan() reads `served` as the whole set, the uplinks included
    for (const s of desired.served ?? []) served.set(s.ifindex, { ifindex: s.ifindex, ifname: s.ifname });
    for (const u of uplinks.values()) served.set(u.ifindex, { ifindex: u.ifindex, ifname: u.ifname });
    out.uplinks = [...uplinks.values()].sort((a, b) => a.ifindex - b.ifindex);
    out.served = [...served.values()].sort((a, b) => a.ifindex - b.ifindex);
    out.xdp = xdp;
  }
  return out;
}
