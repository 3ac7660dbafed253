/**
 * Integration-test fixtures: unique names per test file and process (so test
 * files can run in parallel), a config built from them, and a teardown that
 * removes everything by name even when the test failed half-way.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BerthConfig, parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { hostVethName } from '../../src/domain/names';
import * as standalone from '../../src/sources/standalone';

export interface NetSpec {
  key: string;
  icc?: boolean;
  containers: string[];
}

export interface Fixture {
  tag: string;
  pinRoot: string;
  cfg: BerthConfig;
  cfgPath: string;
  /** container key -> unique container (netns) name */
  c: (key: string) => string;
  ip: (key: string) => string;
  veth: (key: string) => string;
  bridge: (netKey: string) => string;
  gateway: (netKey: string) => string;
}

/**
 * `fileIndex` (1..99) keeps subnets of different test files apart; the pid
 * keeps two runs of the same file apart.
 */
export function fixture(t: { teardown(fn: () => void | Promise<void>): void }, name: string, fileIndex: number, nets: NetSpec[]): Fixture {
  const tag = `${name}${process.pid % 100000}`;
  const pinRoot = `/sys/fs/bpf/berth-test-${tag}`;
  const third = (process.pid + 7 * fileIndex) % 240;
  const c = (k: string): string => `${tag}-${k}`;
  const bridge = (k: string): string => `b${tag}${k}`.slice(0, 15);
  const lines: string[] = ['networks:'];
  const ips = new Map<string, string>();
  const gws = new Map<string, string>();
  nets.forEach((n, i) => {
    const base = `10.${150 + fileIndex}.${third + i}`;
    gws.set(n.key, `${base}.1`);
    lines.push(`  - name: ${tag}-${n.key}`, `    subnet: ${base}.0/24`, `    bridge: ${bridge(n.key)}`, `    icc: ${n.icc ?? true}`);
    n.containers.forEach((ck, j) => ips.set(ck, `${base}.${10 + j}`));
  });
  // never let a test attach to the machine's own interfaces
  lines.push('uplinks: []', 'interfaces: []');
  lines.push('containers:');
  nets.forEach((n) => n.containers.forEach((ck) => lines.push(`  - name: ${c(ck)}`, `    network: ${tag}-${n.key}`, `    ip: ${ips.get(ck)}`)));
  const text = lines.join('\n') + '\n';
  const cfgPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`)), 'topology.yaml');
  fs.writeFileSync(cfgPath, text);
  const cfg = parseConfig(text, cfgPath);

  t.teardown(async () => {
    await forceDown(cfg, pinRoot, {
      netns: [...ips.keys()].map(c),
      links: [...[...ips.keys()].map((ck) => hostVethName(c(ck))), ...nets.map((n) => bridge(n.key))],
    });
    fs.rmSync(path.dirname(cfgPath), { recursive: true, force: true });
  });
  return {
    tag,
    pinRoot,
    cfg,
    cfgPath,
    c,
    ip: (k) => ips.get(k)!,
    veth: (k) => hostVethName(c(k)),
    bridge,
    gateway: (k) => gws.get(k)!,
  };
}

/**
 * Take a standalone topology down whatever state it was left in: `down`, then
 * the pin root reset, then whatever namespaces and links of these names are
 * still there. For test teardowns, which must clean up after a failure too.
 */
export async function forceDown(cfg: BerthConfig, pinRoot: string, left: { netns: readonly string[]; links: readonly string[] }): Promise<void> {
  try {
    await standalone.down(cfg, { pinRoot });
  } catch {
    /* fall through to the forced cleanup */
  }
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  for (const ns of left.netns) sh('ip', ['netns', 'del', ns]);
  for (const l of left.links) sh('ip', ['link', 'del', l]);
}

/** Kill every process left in these namespaces, then delete them (test teardowns; missing ones are skipped). */
export function removeNetns(names: Iterable<string>): void {
  for (const ns of names) {
    let pids = '';
    try {
      pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 10000 });
    } catch {
      /* no such namespace */
    }
    for (const p of pids.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    sh('ip', ['netns', 'del', ns]);
  }
}

/** Run a command, ignoring failure; returns whether it succeeded. */
export function sh(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 30000 });
    return true;
  } catch {
    return false;
  }
}

export function nsOk(ns: string, args: string[], timeoutMs = 20000): boolean {
  try {
    execFileSync('ip', ['netns', 'exec', ns, ...args], { stdio: 'ignore', timeout: timeoutMs });
    return true;
  } catch {
    return false;
  }
}

export function linkStat(ifname: string, stat: 'tx_packets' | 'rx_packets'): number {
  return Number(fs.readFileSync(`/sys/class/net/${ifname}/statistics/${stat}`, 'utf8'));
}

export function linkExists(ifname: string): boolean {
  return fs.existsSync(`/sys/class/net/${ifname}`);
}

export function netnsExists(name: string): boolean {
  return fs.existsSync(`/run/netns/${name}`);
}

/**
 * The change lines of `berth up`'s output that are the file's own. The host's
 * addresses are the machine's (tests running beside this one add and remove
 * theirs), so an up may bring the host address set up to date at any time.
 */
export function ownChanges(upStdout: string): string[] {
  return upStdout.split('\n').filter((l) => l.startsWith('  ') && !/ host address /.test(l));
}
