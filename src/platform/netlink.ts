/**
 * rtnetlink for berth, over the addon's Netlink class (native/netlink.cc,
 * libnl-route-3): what berth used to ask `ip` for. Namespaces are named the
 * way `ip netns` names them (/run/netns/<name>); a Netlink opened for one is
 * a socket created inside it, so calls never change the caller's namespace.
 *
 * withNetlink(ns, fn) opens, runs and closes; the helpers below take an open
 * Netlink so a caller doing many steps keeps one socket.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native, isBpfError } from './native';
import type { Netlink, NetlinkAddress, NetlinkLink, NetlinkRoute, NetnsRef } from './native';

export type { Netlink, NetlinkAddress, NetlinkEvent, NetlinkEvents, NetlinkLink, NetlinkRoute } from './native';

/** Where `ip netns add` (and berth) bind named namespaces. */
export const NETNS_RUN_DIR = '/run/netns';

/** Path of a named namespace: netnsPath('c1') = '/run/netns/c1'; a path (with '/') is returned as is. */
export function netnsPath(ns: string): string {
  return ns.includes('/') ? ns : path.join(NETNS_RUN_DIR, ns);
}

/** A Netlink in the named namespace (or at a path), or in the caller's for undefined/''. */
export function openNetlink(ns?: string): Netlink {
  // an interrupted dump (NLM_F_DUMP_INTR: the table changed meanwhile) is taken again in the addon, on its worker thread
  return native().openNetlink(ns ? netnsPath(ns) : null);
}

/** Runs fn with a Netlink in ns (see openNetlink) and closes it, also when fn fails. */
export async function withNetlink<T>(ns: string | undefined, fn: (nl: Netlink) => Promise<T>): Promise<T> {
  const nl = openNetlink(ns);
  try {
    return await fn(nl);
  } finally {
    nl.close();
  }
}

/** True for a BpfError-shaped error with that code ('ENODEV', 'EEXIST', ...). */
export function isNetlinkCode(e: unknown, ...codes: string[]): boolean {
  return isBpfError(e) && codes.includes(e.code);
}

/** `ip netns add`: EEXIST when the name is taken. */
export function netnsAdd(name: string): Promise<void> {
  return native().netnsAdd(name);
}

/** `ip netns del`: ENOENT when there is none. */
export function netnsDelete(name: string): Promise<void> {
  return native().netnsDelete(name);
}

/** `ip netns list`: the names under /run/netns (none when the directory is missing). */
export function netnsList(): string[] {
  try {
    return fs.readdirSync(NETNS_RUN_DIR).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/**
 * `ip netns pids`: pids of the processes whose network namespace is the
 * named one (same device and inode as its bind mount). Processes that go
 * away during the scan, or whose ns link cannot be read, are skipped.
 */
export function netnsPids(name: string): number[] {
  let target: fs.Stats;
  try {
    target = fs.statSync(netnsPath(name));
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.statSync(`/proc/${d}/ns/net`);
      if (st.ino === target.ino && st.dev === target.dev) out.push(Number(d));
    } catch {
      /* gone, or not ours to read */
    }
  }
  return out;
}

/** Writes /proc/sys/<key> inside ns (undefined: the caller's namespace). */
export function writeSysctl(ns: string | undefined, key: string, value: string): Promise<void> {
  return native().writeSysctl(ns ? netnsPath(ns) : null, key, value);
}

/** The ifindex → name map of a link list (a master's name out of its ifindex). */
export function namesByIndex(links: readonly NetlinkLink[]): Map<number, string> {
  return new Map(links.map((l) => [l.ifindex, l.name]));
}

/** The addresses of one link, of one family or both. */
export async function addressesOf(nl: Netlink, ifname: string, family: 0 | 4 | 6 = 0): Promise<NetlinkAddress[]> {
  const link = await nl.link(ifname);
  if (!link) return [];
  return (await nl.addresses(family)).filter((a) => a.ifindex === link.ifindex);
}

/** The default routes of the main table, of one family. */
export async function defaultRoutes(nl: Netlink, family: 4 | 6): Promise<NetlinkRoute[]> {
  return (await nl.routes(family)).filter((r) => r.dst === 'default' && r.table === 254);
}

/** Deletes a link; false when there was none (ENODEV), other errors are thrown. */
export async function deleteLinkIfPresent(nl: Netlink, name: string): Promise<boolean> {
  try {
    await nl.deleteLink(name);
    return true;
  } catch (e) {
    if (isNetlinkCode(e, 'ENODEV')) return false;
    throw e;
  }
}

export type { NetnsRef };
