/**
 * Kernel settings (sysctls) of this network namespace, written through
 * /proc/sys directly (no sysctl binary, procps, needed), and the one place
 * berth turns forwarding on, in both families and both modes (the file's
 * bridges and externals in standalone mode, Docker's bridges and uplinks in
 * Docker mode).
 *
 * A key is given as its path segments (['net', 'ipv4', 'conf', 'eth0',
 * 'forwarding']), so an interface name with a dot (eth0.100) needs no
 * escaping; messages show it as sysctl(8) does (net.ipv4.conf.eth0/100.forwarding).
 * Every write is read back: a value the kernel did not take (a read-only
 * /proc/sys in a container, a value out of range) is an error naming the key,
 * the value and the reason, never a silent no-op.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const PROC_SYS = '/proc/sys';

export class SysctlError extends Error {
  constructor(
    /** the key as sysctl(8) writes it */
    readonly key: string,
    readonly op: 'read' | 'write',
    readonly reason: string,
    /** errno code, when the kernel refused */
    readonly code?: string,
  ) {
    super(`sysctl ${key}: ${reason}`);
    this.name = 'SysctlError';
  }
}

/** The key as sysctl(8) writes it: dots between segments, a dot inside one as '/'. */
export function sysctlName(segments: readonly string[]): string {
  return segments.map((s) => s.replace(/\./g, '/')).join('.');
}

function sysctlPath(segments: readonly string[], root: string): string {
  if (!segments.length) throw new SysctlError('', 'read', 'no key given');
  for (const s of segments)
    if (!s || s === '.' || s === '..' || s.includes('/') || s.includes('\0')) throw new SysctlError(sysctlName(segments), 'read', `not a valid key segment: ${JSON.stringify(s)}`);
  return path.join(root, ...segments);
}

/** The value (trimmed), or undefined when the key does not exist (an interface that is not there). */
export function readSysctl(segments: readonly string[], root = PROC_SYS): string | undefined {
  const p = sysctlPath(segments, root);
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw new SysctlError(sysctlName(segments), 'read', `cannot read ${p}: ${err.message}`, err.code);
  }
}

/**
 * Set a key and read it back. Returns false when the key does not exist
 * (nothing written); throws SysctlError when the kernel refuses the write or
 * keeps another value.
 */
export function writeSysctl(segments: readonly string[], value: string, root = PROC_SYS): boolean {
  const key = sysctlName(segments);
  const p = sysctlPath(segments, root);
  if (!fs.existsSync(p)) return false;
  try {
    fs.writeFileSync(p, `${value}\n`);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') return false; // went away meanwhile (an interface deleted)
    throw new SysctlError(key, 'write', `cannot set it to ${value}: ${err.message}`, err.code);
  }
  const back = readSysctl(segments, root);
  if (back === undefined) return false;
  if (back !== value) throw new SysctlError(key, 'write', `set to ${value}, but it reads back ${JSON.stringify(back)}`);
  return true;
}

export type IpFamily = 4 | 6;

/** The forwarding key of one interface in one family (net.ipv4.conf.IF.forwarding, net.ipv6.conf.IF.forwarding). */
export function forwardingKey(family: IpFamily, ifname: string): string[] {
  if (!/^[^/\0\s]{1,15}$/.test(ifname) || ifname === '.' || ifname === '..') throw new SysctlError(`net.ipv${family}.conf.${ifname}.forwarding`, 'write', `not an interface name: ${JSON.stringify(ifname)}`);
  return ['net', family === 4 ? 'ipv4' : 'ipv6', 'conf', ifname, 'forwarding'];
}

/**
 * Turn forwarding on for one interface (never off), as dockerd's ip_forward
 * would, but per interface rather than machine-wide. bpf_fib_lookup answers
 * a lookup only when the interface it starts from forwards (masquerade,
 * NAT66, the MTU checks). 'enabled' when it changed, 'already' when it was
 * on, 'missing' when the interface is not there; a refusal throws.
 */
export function enableForwarding(family: IpFamily, ifname: string, root = PROC_SYS): 'enabled' | 'already' | 'missing' {
  const key = forwardingKey(family, ifname);
  const cur = readSysctl(key, root);
  if (cur === undefined) return 'missing';
  if (cur === '1') return 'already';
  return writeSysctl(key, '1', root) ? 'enabled' : 'missing';
}
