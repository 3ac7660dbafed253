/**
 * Where the host socket hooks (cgroup connect4/sendmsg4/recvmsg4 and their IPv6 twins) attach: the
 * cgroup v2 mount, found in /proc/self/mountinfo rather than assumed. A pure
 * cgroup v2 host has it at /sys/fs/cgroup, the old hybrid layout at
 * /sys/fs/cgroup/unified, and a private mount can be anywhere; `--cgroup DIR`
 * (or BERTH_CGROUP) names it outright.
 *
 * This is the one home of the concept: the CLI resolves a SocketHooksTarget
 * once, the Dataplane carries it (attachCgroup() attaches there), the planner
 * leaves the cgroup steps out when it is unavailable, and `berth status` and
 * `berth doctor` report it. Without cgroup v2 the rest of the dataplane works;
 * only the host's own connections to published ports (127.0.0.1:PORT, its
 * own addresses) are not translated.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { log } from './log';

export const MOUNTINFO = '/proc/self/mountinfo';
/** statfs f_type of cgroup2 (CGROUP2_SUPER_MAGIC) */
export const CGROUP2_SUPER_MAGIC = 0x63677270;

/** One line of /proc/<pid>/mountinfo (proc(5)), with the octal escapes undone. */
export interface MountInfoEntry {
  mountId: number;
  parentId: number;
  /** major:minor of the filesystem */
  device: string;
  /** the root of the mount within its filesystem */
  root: string;
  mountPoint: string;
  options: string;
  fsType: string;
  source: string;
  superOptions: string;
}

/** Undo the kernel's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash). */
export function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parse mountinfo text; lines that do not have the format are skipped. */
export function parseMountinfo(text: string): MountInfoEntry[] {
  const out: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (f.length < 10 || sep < 0 || f.length < sep + 3) continue;
    out.push({
      mountId: Number(f[0]),
      parentId: Number(f[1]),
      device: f[2]!,
      root: unescapeMountField(f[3]!),
      mountPoint: unescapeMountField(f[4]!),
      options: f[5]!,
      fsType: f[sep + 1]!,
      source: unescapeMountField(f[sep + 2]!),
      superOptions: f[sep + 3] ?? '',
    });
  }
  return out;
}

export interface Cgroup2Mount {
  /** the mount point */
  path: string;
  /** what part of the cgroup tree the mount shows ('/' = all of it) */
  root: string;
}

/** Well-known places first, so a stray private mount never wins over the system's. */
function rank(m: Cgroup2Mount): number {
  return (m.root === '/' ? 0 : 10) + (m.path === '/sys/fs/cgroup' ? 0 : m.path === '/sys/fs/cgroup/unified' ? 1 : 2);
}

/**
 * The cgroup2 mount to attach to, from mountinfo text: prefer one that shows
 * the whole tree (root "/"), then /sys/fs/cgroup, then /sys/fs/cgroup/unified,
 * then the first listed. A mount point mounted over later counts once, as its
 * last (visible) mount. undefined: no cgroup2 mount at all.
 */
export function findCgroup2(mountinfo: string): Cgroup2Mount | undefined {
  const visible = new Map<string, MountInfoEntry>();
  for (const e of parseMountinfo(mountinfo)) {
    visible.delete(e.mountPoint); // re-insert: order of the visible mount
    visible.set(e.mountPoint, e);
  }
  const all = [...visible.values()].filter((e) => e.fsType === 'cgroup2').map((e) => ({ path: e.mountPoint, root: e.root }));
  return all.map((m, i) => ({ m, i })).sort((a, b) => rank(a.m) - rank(b.m) || a.i - b.i)[0]?.m;
}

export type SocketHooksTarget =
  | {
      available: true;
      /** the cgroup v2 directory the hooks attach to */
      cgroup: string;
      source: 'option' | 'mountinfo';
      /** a caveat worth saying (a mount that shows only part of the tree) */
      note?: string;
    }
  | { available: false; reason: string };

export const NO_CGROUP2 = `host socket hooks unavailable: no cgroup2 mount in ${MOUNTINFO}; mount one (mount -t cgroup2 none /sys/fs/cgroup) or pass --cgroup`;

/** Names of the filesystems a wrong --cgroup is most likely on. */
const FS_NAMES: Readonly<Record<number, string>> = {
  0x27e0eb: 'cgroup (v1)',
  0x01021994: 'tmpfs',
  0xef53: 'ext4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x62656572: 'sysfs',
  0x9fa0: 'proc',
  0x794c7630: 'overlay',
  0xcafe4a11: 'bpf',
};

export class CgroupOptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CgroupOptionError';
  }
}

/** Throws CgroupOptionError unless `dir` is a directory on a cgroup2 filesystem. */
export function checkCgroup2Dir(dir: string, what = '--cgroup'): string {
  const abs = path.resolve(dir);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new CgroupOptionError(`${what} ${dir}: no such directory`);
  }
  if (!st.isDirectory()) throw new CgroupOptionError(`${what} ${dir}: not a directory`);
  const type = Number(fs.statfsSync(abs).type) >>> 0;
  if (type !== CGROUP2_SUPER_MAGIC)
    throw new CgroupOptionError(
      `${what} ${dir}: not a cgroup v2 directory (it is on ${FS_NAMES[type] ?? `a filesystem of type 0x${type.toString(16)}`}); give a cgroup2 mount or a directory below one (mount -t cgroup2 none DIR)`,
    );
  return abs;
}

export interface ResolveOptions {
  /** --cgroup / BERTH_CGROUP: used as given (checked to be cgroup v2) */
  override?: string;
  /** mountinfo text (default: read /proc/self/mountinfo) */
  mountinfo?: string;
}

/**
 * Where the host socket hooks go. An override that is not a cgroup v2
 * directory throws CgroupOptionError (the user asked for it: say so, change
 * nothing); a host without cgroup v2 gives { available: false, reason }.
 */
export function resolveSocketHooks(opts: ResolveOptions = {}): SocketHooksTarget {
  if (opts.override !== undefined && opts.override !== '') return { available: true, cgroup: checkCgroup2Dir(opts.override), source: 'option' };
  let text = opts.mountinfo;
  if (text === undefined) {
    try {
      text = fs.readFileSync(MOUNTINFO, 'utf8');
    } catch (e) {
      return { available: false, reason: `host socket hooks unavailable: cannot read ${MOUNTINFO} (${(e as Error).message}); pass --cgroup` };
    }
  }
  const m = findCgroup2(text);
  if (!m) return { available: false, reason: NO_CGROUP2 };
  return {
    available: true,
    cgroup: m.path,
    source: 'mountinfo',
    ...(m.root !== '/' ? { note: `the cgroup2 mount at ${m.path} shows only ${m.root} of the cgroup tree: sockets of processes outside it are not translated; mount the whole tree (mount -t cgroup2 none DIR) and pass --cgroup DIR` } : {}),
  };
}

/** The same, never throwing: a bad override becomes "unavailable" with its reason (for status and doctor). */
export function describeSocketHooks(opts: ResolveOptions = {}): SocketHooksTarget {
  try {
    return resolveSocketHooks(opts);
  } catch (e) {
    return { available: false, reason: (e as Error).message };
  }
}

/** One line for status and logs. */
export function socketHooksSummary(t: SocketHooksTarget): string {
  return t.available ? `cgroup2 at ${t.cgroup} (${t.source === 'option' ? '--cgroup' : 'from mountinfo'})${t.note ? `; ${t.note}` : ''}` : t.reason;
}

const said = new Set<string>();

/** Log, once per process and reason, that the hooks are wanted but cannot be attached. */
export function warnSocketHooksUnavailableOnce(t: SocketHooksTarget): void {
  if (t.available || said.has(t.reason)) return;
  said.add(t.reason);
  log('warn', t.reason, { component: 'socket-hooks', effect: 'the host reaching published ports on its own addresses and 127.0.0.1 is not translated; the rest of the dataplane works' });
}
