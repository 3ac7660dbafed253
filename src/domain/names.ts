// Naming rules and ownership marks shared by config validation and topology.
import { createHash } from 'node:crypto';

/** Network and container names (container names are also netns names). */
export const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,31}$/;

export const IFNAMSIZ = 16; // kernel limit including the NUL: names are 1..15 chars

/** Reason why `name` is not a valid Linux interface name, or null when valid. */
export function ifnameProblem(name: string): string | null {
  if (name.length < 1 || name.length > IFNAMSIZ - 1) return `must be 1..${IFNAMSIZ - 1} characters (got ${name.length})`;
  if (name === '.' || name === '..') return 'must not be "." or ".."';
  if (/[\/:\s]/.test(name)) return 'must not contain "/", ":" or whitespace';
  if (/[^\x21-\x7e]/.test(name)) return 'must contain printable ASCII characters only';
  return null;
}

/** Host-side veth name for a container: "bth" + 8 hex chars of sha1(name) (11 chars). */
export function hostVethName(container: string): string {
  return 'bth' + createHash('sha1').update(container, 'utf8').digest('hex').slice(0, 8);
}

/** Default bridge name for a network. */
export function defaultBridgeName(network: string): string {
  return `berth-${network}`;
}

/** Interface name of the container end of the veth pair, inside its namespace. */
export const CONTAINER_IFNAME = 'eth0';

// Ownership marks, stored as link aliases (ifalias).
export const MARK_PREFIX = 'berth:';
export function bridgeMark(network: string): string {
  return `berth:bridge:${network}`;
}
export function hostVethMark(container: string): string {
  return `berth:veth:${container}`;
}
export function eth0Mark(container: string): string {
  return `berth:eth0:${container}`;
}

/** Host-side veth name of an external ("outside host") namespace: "bte" + 8 hex chars of sha1(name). */
export function externalVethName(external: string): string {
  return 'bte' + createHash('sha1').update(external, 'utf8').digest('hex').slice(0, 8);
}
/** Mark of the host side of an external's veth. */
export function externalMark(external: string): string {
  return `berth:ext:${external}`;
}
/** Mark of eth0 inside an external's namespace. */
export function externalEth0Mark(external: string): string {
  return `berth:exteth0:${external}`;
}
