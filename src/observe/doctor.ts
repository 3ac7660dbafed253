/**
 * `berth doctor`: what berth needs from the host, what it found, and what to
 * do about what is missing. Two halves:
 *
 *   gatherFacts()  reads /proc, /sys and the addon, and runs a few read-only
 *                  tools (bpftool, ip, tc, iptables-save or nft); no changes
 *   evaluate()     pure: facts in, rows out (check, status, found, fix)
 *
 * A `fail` row means berth cannot work here; `berth up` and `berth run` run
 * the vital checks (preflight()) before any side effect and refuse to start
 * with those rows. `warn` rows are things that work but deserve a look.
 */
import { XdpChoice, xdpChoice } from '../platform/xdpmode';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SocketHooksTarget, describeSocketHooks } from '../platform/cgroup';
import { BPFFS, DEFAULT_PIN_ROOT } from '../platform/dataplane';
import { run } from '../platform/exec';
import { withNetlink } from '../platform/netlink';
import type { NetlinkLink } from '../platform/netlink';
import { table } from './table';
import { RefusedInterface, chooseInterfaces, hostInterfaces } from '../platform/hostnet';
import * as nativeModule from '../platform/native';
import { DEFAULT_DOCKER_SOCKET, DockerClient, DockerInfo } from '../sources/docker/client';
import { describeVersion, readPinnedVersion } from '../platform/lifecycle';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckRow {
  check: string;
  status: CheckStatus;
  found: string;
  /** what to do when not ok ('' when ok) */
  fix: string;
}

// --- facts --------------------------------------------------------------------

export interface ToolSpec {
  name: string;
  /** the Debian package that has it */
  pkg: string;
  use: string;
  /** when berth cannot work without it */
  vital: 'always' | 'standalone' | 'docker' | 'never';
}

/**
 * The programs berth runs (spawn: topology's run: commands, demo). Links,
 * addresses, routes and namespaces go through rtnetlink in the addon, so
 * berth needs no iproute2.
 */
export const TOOLS: readonly ToolSpec[] = Object.freeze([
  { name: 'nsenter', pkg: 'util-linux', use: "starting a container's run: command in its namespace (standalone), berth demo's probes", vital: 'standalone' },
  { name: 'busybox', pkg: 'busybox-static', use: "berth demo's httpd and wget", vital: 'never' },
  { name: 'ping', pkg: 'iputils-ping', use: "berth demo's probes", vital: 'never' },
]);

export interface ToolFact {
  spec: ToolSpec;
  /** where it is on PATH */
  path?: string;
  /** found only outside PATH (e.g. /usr/sbin for a user whose PATH lacks it) */
  offPath?: string;
}

export interface AddonFact {
  libbpf?: string;
  /** where the addon was loaded from */
  path?: string;
  error?: string;
}

export interface AttachedProgram {
  /** e.g. 'tcx/ingress', 'clsact/egress', 'xdp (generic)' */
  hook: string;
  id: number;
  name: string;
}

export interface InterfaceFact {
  ifname: string;
  programs: AttachedProgram[];
  /** how it was looked at, e.g. 'bpftool net' or 'ip link + tc filter' */
  method: string;
  /** false when the tools here cannot list tcx links per interface */
  tcxVisible: boolean;
  error?: string;
  /** which XDP mode berth run --xdp gives it (platform/xdpmode.ts): native, or none and why */
  xdp?: XdpChoice;
}

export interface AttachFacts {
  /** where the interfaces come from: '--uplinks', '--interfaces', both, or 'auto-detected' (with either: the rest is auto-detected) */
  source: string;
  interfaces: InterfaceFact[];
  /** interfaces named with --uplinks or --interfaces that do not exist */
  missing: string[];
  /** named interfaces berth would refuse to serve (L3 devices) */
  refused?: RefusedInterface[];
  /** tcx links bpftool can list but not place on an interface (bpftool < 7.3) */
  unplacedTcx?: AttachedProgram[];
  /** why tcx could not be checked at all */
  tcxUnchecked?: string;
}

export type SettingSource = 'flag' | 'config' | 'api' | 'default';

export interface DockerdProcess {
  pid: number;
  args: string[];
}

export interface FirewallFacts {
  tool?: 'iptables-save' | 'nft';
  /** `table/chain` of Docker's chains that exist */
  chains: string[];
  forwardDrop: boolean;
  error?: string;
}

export interface DockerFacts {
  socket: string;
  configFile: string;
  /** the parsed file (undefined: there is none) */
  config?: Record<string, unknown>;
  configError?: string;
  /** the dockerd serving `socket`, when this process can see it */
  process?: DockerdProcess;
  info?: DockerInfo;
  infoError?: string;
  firewall?: FirewallFacts;
}

export interface DoctorFacts {
  kernel: string;
  btf: boolean;
  tcx: { ok: boolean; error?: string };
  bpffs: boolean;
  pinRoot: string;
  pinned: boolean;
  /** what wrote the pinned dataplane (src/platform/lifecycle.ts describeVersion), when it says */
  pinnedVersion?: string;
  cgroup: SocketHooksTarget;
  uid: number;
  /** CapEff from /proc/self/status */
  capEff?: bigint;
  addon: AddonFact;
  tools: ToolFact[];
  attach?: AttachFacts;
  docker?: DockerFacts;
}

export type Mode = 'standalone' | 'docker';

// --- judging (pure) -------------------------------------------------------------

export const MIN_KERNEL: readonly [number, number] = [6, 6];

export function parseKernelVersion(release: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

export const CAPS = Object.freeze({ CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_BPF: 39 });

export function parseCapEff(status: string): bigint | undefined {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : undefined;
}

export function missingCaps(capEff: bigint): string[] {
  return Object.entries(CAPS)
    .filter(([, bit]) => ((capEff >> BigInt(bit)) & 1n) === 0n)
    .map(([name]) => name);
}

const row = (check: string, status: CheckStatus, found: string, fix = ''): CheckRow => ({ check, status, found, fix: status === 'ok' ? '' : fix });

export const isBerths = (p: AttachedProgram): boolean => p.name.startsWith('berth_');

function describeProgs(ps: readonly AttachedProgram[]): string {
  return ps.map((p) => `${p.name} (${p.hook}, prog ${p.id})`).join(', ');
}

function kernelRow(f: DoctorFacts): CheckRow {
  const v = parseKernelVersion(f.kernel);
  const fix = 'boot a kernel 6.6 or later (Debian 12: linux-image-amd64 from bookworm-backports)';
  if (!v) return row('kernel', 'warn', `release '${f.kernel}' not understood`, 'berth needs 6.6 or later (tcx)');
  const old = v[0] < MIN_KERNEL[0] || (v[0] === MIN_KERNEL[0] && v[1] < MIN_KERNEL[1]);
  if (!old) return row('kernel', 'ok', `${f.kernel} (>= 6.6: tcx)`);
  // an older kernel with tcx backported works; the tcx row decides
  return row('kernel', f.tcx.ok ? 'warn' : 'fail', `${f.kernel} is older than 6.6${f.tcx.ok ? ', but it has tcx' : ''}`, fix);
}

function toolRow(t: ToolFact, mode: Mode): CheckRow {
  const vital = t.spec.vital === 'always' || t.spec.vital === mode;
  const check = `tool: ${t.spec.name}`;
  if (t.path) return row(check, 'ok', `${t.path}; for ${t.spec.use}`);
  if (t.offPath) return row(check, vital ? 'fail' : 'warn', `${t.offPath}, but not on PATH; for ${t.spec.use}`, `add ${path.dirname(t.offPath)} to PATH`);
  return row(check, vital ? 'fail' : 'warn', `not found; ${vital ? 'needed' : 'only needed'} for ${t.spec.use}`, `apt-get install ${t.spec.pkg}`);
}

function privilegeRow(f: DoctorFacts): CheckRow {
  const who = f.uid === 0 ? 'root' : `uid ${f.uid}`;
  if (f.capEff === undefined) return row('privileges', f.uid === 0 ? 'warn' : 'fail', `${who}; CapEff not readable in /proc/self/status`, 'run berth as root');
  const missing = missingCaps(f.capEff);
  if (!missing.length) return row('privileges', 'ok', `${who} with CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN`);
  return row('privileges', 'fail', `${who} without ${missing.join(', ')} (CapEff ${f.capEff.toString(16).padStart(16, '0')})`, 'run berth as root with full capabilities (a container needs --privileged or these capabilities)');
}

function addonRow(f: DoctorFacts): CheckRow {
  if (f.addon.error) return row('libbpf (native addon)', 'fail', f.addon.error.replace(/\s*\n\s*/g, '; '), "in a checkout: 'npm run build'; in an installed package: 'node scripts/install.js' in its directory");
  return row('libbpf (native addon)', 'ok', `libbpf ${f.addon.libbpf}${f.addon.path ? `, addon ${f.addon.path}` : ''}`);
}

function attachRows(a: AttachFacts): CheckRow[] {
  const out: CheckRow[] = [];
  const fixFor = (ps: readonly AttachedProgram[], here = true): string => {
    const xdp = ps.some((p) => p.hook.startsWith('xdp'));
    return [
      `another BPF dataplane (e.g. Cilium) is attached${here ? ' here' : ''}: berth attaches beside it and whichever runs first decides a packet`,
      xdp ? 'an XDP program already here keeps berth run --xdp from attaching' : '',
      here ? 'detach it, or leave this interface out with --uplinks and --interfaces' : 'find where (bpftool 7.3 or later shows the interface) and detach it, or leave that interface out with --uplinks and --interfaces',
    ]
      .filter(Boolean)
      .join('; ');
  };
  for (const n of a.missing) out.push(row(`programs on ${n}`, 'warn', `interface ${n} (from ${a.source}) does not exist`, `check the ${a.source} names (ip link)`));
  for (const r of a.refused ?? []) out.push(row(`interface ${r.ifname}`, 'fail', r.reason, `leave ${r.ifname} out of --${r.from} (berth up/run refuse it)`));
  for (const i of a.interfaces) {
    if (i.xdp) out.push(row(`XDP mode on ${i.ifname}`, 'ok', i.xdp.mode === 'native' ? `native (driver ${i.xdp.driver}): berth run --xdp attaches the XDP drop path here` : `none (${i.xdp.driver}): ${i.xdp.why}`));
    const check = `programs on ${i.ifname}`;
    if (i.error) {
      out.push(row(check, 'warn', `not checked: ${i.error}`, 'apt-get install bpftool (or iproute2) to check'));
      continue;
    }
    const foreign = i.programs.filter((p) => !isBerths(p));
    const own = i.programs.filter(isBerths);
    const how = `${i.method}${i.tcxVisible ? '' : ', tcx not listed per interface'}`;
    if (foreign.length) out.push(row(check, 'warn', `foreign: ${describeProgs(foreign)}${own.length ? `; berth's: ${describeProgs(own)}` : ''} [${how}]`, fixFor(foreign)));
    else out.push(row(check, 'ok', `${own.length ? `berth's own: ${describeProgs(own)}` : 'none'} [${how}] (${a.source})`));
  }
  if (a.tcxUnchecked) out.push(row('tcx programs', 'warn', `not checked: ${a.tcxUnchecked}`, 'apt-get install bpftool (7.3 or later lists tcx per interface)'));
  else if (a.unplacedTcx) {
    const foreign = a.unplacedTcx.filter((p) => !isBerths(p));
    const where = 'this bpftool lists tcx links but not their interface';
    if (foreign.length) out.push(row('tcx programs', 'warn', `foreign tcx link(s) on this host: ${describeProgs(foreign)} (${where})`, fixFor(foreign, false)));
    else out.push(row('tcx programs', 'ok', `${a.unplacedTcx.length ? `${a.unplacedTcx.length} tcx link(s), all berth's` : 'no tcx links'} (${where})`));
  }
  return out;
}

/** A dockerd setting, from the running daemon's flags, then daemon.json, then the API, then Docker's default. */
export interface DockerSetting {
  value?: boolean;
  source: SettingSource;
  text: string;
}

/** Flags of dockerd's command line: `--name`, `--name=value`, `-H value`, `--host value`. */
export function dockerdFlag(args: readonly string[], name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === `--${name}`) out = 'true';
    else if (a.startsWith(`--${name}=`)) out = a.slice(name.length + 3);
  }
  return out;
}

/** The sockets a dockerd listens on (-H/--host); none given: the default socket. */
export function dockerdHosts(args: readonly string[]): string[] {
  const hosts: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if ((a === '-H' || a === '--host') && i + 1 < args.length) hosts.push(args[++i]!);
    else if (a.startsWith('--host=')) hosts.push(a.slice(7));
    else if (a.startsWith('-H=')) hosts.push(a.slice(3));
    else if (a.startsWith('-H') && a.length > 2) hosts.push(a.slice(2));
  }
  return hosts;
}

function boolOf(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  return undefined;
}

export function dockerSetting(d: DockerFacts, key: string, dflt: boolean | undefined): DockerSetting {
  const flag = d.process ? dockerdFlag(d.process.args, key) : undefined;
  if (flag !== undefined && boolOf(flag) !== undefined) return { value: boolOf(flag), source: 'flag', text: `dockerd --${key}=${flag} (pid ${d.process!.pid})` };
  const cfg = d.config?.[key];
  if (cfg !== undefined && boolOf(cfg) !== undefined) return { value: boolOf(cfg), source: 'config', text: `"${key}": ${String(cfg)} in ${d.configFile}` };
  if (key === 'live-restore' && typeof d.info?.LiveRestoreEnabled === 'boolean') return { value: d.info.LiveRestoreEnabled, source: 'api', text: `LiveRestoreEnabled ${d.info.LiveRestoreEnabled} (Engine API /info)` };
  return { value: dflt, source: 'default', text: dflt === undefined ? `not set (Docker's default depends on its version)` : `not set (Docker's default: ${dflt})` };
}

function dockerRows(d: DockerFacts): CheckRow[] {
  const out: CheckRow[] = [];
  const running = !!d.process || !!d.info;
  const version = d.info?.ServerVersion ? `Docker ${d.info.ServerVersion}` : '';
  if (d.process || d.info)
    out.push(row('docker: dockerd', 'ok', [d.process ? `pid ${d.process.pid}` : 'its process is not visible from here', version, d.info ? `API at ${d.socket}` : `API at ${d.socket} not answering (${d.infoError ?? 'unknown'})`].filter(Boolean).join(', ')));
  else out.push(row('docker: dockerd', 'warn', `not running, or not reachable at ${d.socket} (${d.infoError ?? 'no answer'})`, 'start dockerd (berth run --docker waits for it and follows it once it is up)'));
  if (d.configError) out.push(row('docker: daemon.json', 'warn', `${d.configFile}: ${d.configError}`, 'fix the file: dockerd will not start with it either'));

  const ipt = dockerSetting(d, 'iptables', true);
  const daemonJsonFix = (k: string, v: boolean): string => `set "${k}": ${v} in ${d.configFile} (or dockerd --${k}=${v}) and restart docker`;
  if (ipt.value === false) out.push(row('docker: iptables', 'ok', ipt.text));
  else if (d.process || (ipt.source === 'config' && running))
    out.push(row('docker: iptables', 'fail', `${ipt.text}: dockerd programs its own iptables rules, which berth replaces`, daemonJsonFix('iptables', false)));
  else out.push(row('docker: iptables', 'warn', `${ipt.text}${running ? "; dockerd's command line is not visible from here" : '; dockerd is not running'}`, daemonJsonFix('iptables', false)));

  const proxy = dockerSetting(d, 'userland-proxy', true);
  if (proxy.value === false) out.push(row('docker: userland-proxy', 'ok', proxy.text));
  else out.push(row('docker: userland-proxy', 'warn', `${proxy.text}: a docker-proxy process per published port; berth's socket hooks serve 127.0.0.1:PORT without it`, daemonJsonFix('userland-proxy', false)));

  // ip6tables: on by default from Docker 27 (off before, and experimental in 20.10); with it on,
  // dockerd installs its own ip6tables rules next to berth's IPv6 handling, whatever "iptables" says
  const major = Number(/^(\d+)\./.exec(d.info?.ServerVersion ?? '')?.[1] ?? NaN);
  const v6 = dockerSetting(d, 'ip6tables', Number.isNaN(major) ? undefined : major >= 27);
  if (v6.value === false) out.push(row('docker: ip6tables', 'ok', v6.text));
  else if (v6.value === true && (d.process || running))
    out.push(row('docker: ip6tables', 'warn', `${v6.text}: dockerd programs its own ip6tables rules (NAT66, its filter and raw chains) next to berth's`, daemonJsonFix('ip6tables', false)));
  else out.push(row('docker: ip6tables', 'warn', `${v6.text}${v6.value === undefined ? ' (on from Docker 27)' : ''}${running ? '' : '; dockerd is not running'}`, daemonJsonFix('ip6tables', false)));

  const lr = dockerSetting(d, 'live-restore', false);
  if (lr.value === true) out.push(row('docker: live-restore', 'ok', lr.text));
  else out.push(row('docker: live-restore', 'warn', `${lr.text}: containers stop while dockerd restarts (berth's forwarding does not depend on dockerd)`, daemonJsonFix('live-restore', true)));

  const fw = d.firewall;
  if (!fw || fw.error) out.push(row("docker: Docker's iptables chains", 'warn', `not checked: ${fw?.error ?? 'no firewall facts'}`, 'apt-get install iptables (or nftables) to check'));
  else {
    if (fw.chains.length)
      out.push(row("docker: Docker's iptables chains", 'warn', `${fw.chains.join(', ')} (${fw.tool})${ipt.value === false ? ': left over from a run with its own rules' : ''}`, 'reboot, or remove them as the README says ("Going back to Docker\'s own rules", in reverse): they keep filtering what berth hands to the kernel'));
    else out.push(row("docker: Docker's iptables chains", 'ok', `none (${fw.tool})`));
    if (fw.forwardDrop)
      out.push(row('docker: FORWARD policy', 'warn', `DROP (${fw.tool}): berth's fast path never meets it, but packets berth hands to the kernel do`, 'iptables -P FORWARD ACCEPT, if you want the kernel to forward those'));
    else out.push(row('docker: FORWARD policy', 'ok', `ACCEPT (${fw.tool})`));
  }
  return out;
}

/** Every row, in a fixed order. `mode` decides which tools are vital. */
export function evaluate(f: DoctorFacts, mode: Mode = f.docker ? 'docker' : 'standalone'): CheckRow[] {
  const rows: CheckRow[] = [kernelRow(f)];
  rows.push(f.btf ? row('BTF', 'ok', '/sys/kernel/btf/vmlinux') : row('BTF', 'fail', '/sys/kernel/btf/vmlinux is missing: the BPF objects are CO-RE and need the kernel\'s BTF', 'a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian\'s are)'));
  rows.push(
    f.tcx.ok
      ? row('tcx', 'ok', 'the kernel accepts tcx links')
      : row('tcx', 'fail', f.tcx.error ? `not probed: ${f.tcx.error}` : 'the kernel refuses tcx links', f.tcx.error ? 'see the privileges and libbpf rows' : 'boot a kernel 6.6 or later'),
  );
  rows.push(row('XDP', 'ok', 'generic (skb) XDP is always there; native XDP depends on the NIC driver; berth attaches XDP only with --xdp, and then only where the driver has native XDP (see "XDP mode on" each interface)'));
  rows.push(
    f.bpffs
      ? row('bpffs', 'ok', `bpf at ${BPFFS}; pin root ${f.pinRoot} ${f.pinned ? `holds a dataplane${f.pinnedVersion ? ` of ${f.pinnedVersion}` : ''}` : 'is empty'}`)
      : row('bpffs', 'fail', `no bpf filesystem at ${BPFFS}`, `mount -t bpf bpf ${BPFFS} (and add it to /etc/fstab: bpf ${BPFFS} bpf defaults 0 0)`),
  );
  if (f.cgroup.available) rows.push(row('cgroup v2', f.cgroup.note ? 'warn' : 'ok', `${f.cgroup.cgroup} (${f.cgroup.source === 'option' ? '--cgroup' : 'from /proc/self/mountinfo'})${f.cgroup.note ? `; ${f.cgroup.note}` : ''}`, 'pass --cgroup with a mount of the whole tree'));
  else rows.push(row('cgroup v2', 'warn', `${f.cgroup.reason} (only the host's own connections to published ports need it)`, 'mount -t cgroup2 none /sys/fs/cgroup, or pass --cgroup DIR'));
  rows.push(privilegeRow(f));
  rows.push(addonRow(f));
  for (const t of f.tools) rows.push(toolRow(t, mode));
  if (f.attach) rows.push(...attachRows(f.attach));
  if (f.docker) rows.push(...dockerRows(f.docker));
  return rows;
}

export function failures(rows: readonly CheckRow[]): CheckRow[] {
  return rows.filter((r) => r.status === 'fail');
}

export function formatDoctor(rows: readonly CheckRow[]): string {
  const fails = failures(rows).length;
  const warns = rows.filter((r) => r.status === 'warn').length;
  return [
    table(
      ['CHECK', 'STATUS', 'FOUND', 'FIX'],
      rows.map((r) => [r.check, r.status, r.found, r.fix]),
    ),
    '',
    fails ? `berth cannot work here: ${fails} check(s) failed` : `berth can work here${warns ? ` (${warns} warning(s))` : ''}`,
  ].join('\n');
}

/** The refusal of `berth up` / `berth run`: the fail rows, on one line. */
export function refusal(rows: readonly CheckRow[]): string | undefined {
  const f = failures(rows);
  if (!f.length) return undefined;
  return `cannot start: ${f.map((r) => `${r.check}: ${r.found} (fix: ${r.fix})`).join('; ')}; 'berth doctor' shows every check`;
}

// --- parsing tool output (pure) --------------------------------------------------------

/** Docker's chains in `iptables-save` output, and whether FORWARD's policy is DROP. */
export function parseIptablesSave(text: string): { chains: string[]; forwardDrop: boolean } {
  const chains = new Set<string>();
  let tbl = '';
  let forwardDrop = false;
  for (const line of text.split('\n')) {
    const t = /^\*(\S+)/.exec(line);
    if (t) tbl = t[1]!;
    const c = /^:(\S+)\s+(\S+)/.exec(line);
    if (!c) continue;
    if (/^DOCKER(-|$)/.test(c[1]!)) chains.add(`${tbl}/${c[1]}`);
    if (tbl === 'filter' && c[1] === 'FORWARD' && c[2] === 'DROP') forwardDrop = true;
  }
  return { chains: [...chains].sort(), forwardDrop };
}

/** The same from `nft list ruleset`. */
export function parseNftRuleset(text: string): { chains: string[]; forwardDrop: boolean } {
  const chains = new Set<string>();
  let tbl = '';
  let forwardDrop = false;
  let chain = '';
  for (const line of text.split('\n')) {
    const t = /^\s*table\s+(\S+)\s+(\S+)\s*\{/.exec(line);
    if (t) tbl = t[2]!;
    const c = /^\s*chain\s+(\S+)\s*\{/.exec(line);
    if (c) {
      chain = c[1]!;
      if (/^DOCKER(-|$)/.test(chain)) chains.add(`${tbl}/${chain}`);
    }
    if (/hook\s+forward\b/.test(line) && /policy\s+drop\s*;/.test(line) && (chain === 'FORWARD' || tbl === 'filter')) forwardDrop = true;
  }
  return { chains: [...chains].sort(), forwardDrop };
}

interface BpftoolNetEntry {
  xdp?: Array<{ devname?: string; ifindex?: number; mode?: string; id?: number; prog_id?: number; name?: string }>;
  tc?: Array<{ devname?: string; ifindex?: number; kind?: string; name?: string; id?: number; prog_id?: number }>;
}

/** `bpftool -j net show dev X`: the programs attached (names from `names` when bpftool gives none). */
export function parseBpftoolNet(json: string, names: ReadonlyMap<number, string> = new Map()): AttachedProgram[] {
  const out: AttachedProgram[] = [];
  const list = JSON.parse(json || '[]') as BpftoolNetEntry[];
  for (const e of Array.isArray(list) ? list : [list]) {
    for (const x of e.xdp ?? []) {
      const id = x.id ?? x.prog_id ?? 0;
      out.push({ hook: `xdp (${x.mode ?? '?'})`, id, name: x.name ?? names.get(id) ?? '?' });
    }
    for (const c of e.tc ?? []) {
      const id = c.id ?? c.prog_id ?? 0;
      out.push({ hook: c.kind ?? 'tc', id, name: (c.name ?? names.get(id) ?? '?').replace(/:\[\d+\]$/, '') });
    }
  }
  return out;
}

/** IFLA_XDP_ATTACHED's values. */
const XDP_MODES: Readonly<Record<number, string>> = { 1: 'driver', 2: 'generic', 3: 'offload' };

/** The XDP programs of a link as rtnetlink reports them (IFLA_XDP), named from bpftool's list when known. */
export function xdpPrograms(link: Pick<NetlinkLink, 'xdp'>, progNames: ReadonlyMap<number, string> = new Map()): AttachedProgram[] {
  const x = link.xdp;
  if (!x || !x.attached) return [];
  const one = (mode: string, id: number): AttachedProgram => ({ hook: `xdp (${mode})`, id, name: progNames.get(id) ?? '?' });
  const out: AttachedProgram[] = [];
  if (x.drvProgId) out.push(one('driver', x.drvProgId));
  if (x.skbProgId) out.push(one('generic', x.skbProgId));
  if (x.hwProgId) out.push(one('offload', x.hwProgId));
  if (!out.length && x.progId) out.push(one(XDP_MODES[x.attached] ?? '?', x.progId));
  return out;
}

/** `tc -j filter show dev X ingress|egress`: clsact BPF filters. */
export function parseTcFilters(json: string, dir: 'ingress' | 'egress'): AttachedProgram[] {
  const out: AttachedProgram[] = [];
  for (const f of (JSON.parse(json || '[]') as Array<{ kind?: string; options?: { bpf_name?: string; prog?: { id: number; name?: string } } }>)) {
    if (f.kind !== 'bpf' || !f.options?.prog) continue;
    out.push({ hook: `clsact/${dir}`, id: f.options.prog.id, name: f.options.prog.name ?? (f.options.bpf_name ?? '?').replace(/:\[\d+\]$/, '') });
  }
  return out;
}

/** bpftool lists tcx in `net show` from 7.3 on. */
export function bpftoolListsTcx(version: string): boolean {
  const m = /^v?(\d+)\.(\d+)/.exec(version);
  return !!m && (Number(m[1]) > 7 || (Number(m[1]) === 7 && Number(m[2]) >= 3));
}

const BPF_LINK_TYPE_TCX = 11;

/** tcx links from `bpftool -j link show`: those with an ifindex, and those without (older bpftool). */
export function parseBpftoolLinks(json: string, names: ReadonlyMap<number, string>): { placed: Map<number, AttachedProgram[]>; unplaced: AttachedProgram[] } {
  const placed = new Map<number, AttachedProgram[]>();
  const unplaced: AttachedProgram[] = [];
  for (const l of JSON.parse(json || '[]') as Array<{ id: number; type: string | number; prog_id: number; ifindex?: number; attach_type?: string }>) {
    if (l.type !== 'tcx' && l.type !== BPF_LINK_TYPE_TCX) continue;
    const dir = /egress/.test(l.attach_type ?? '') ? 'egress' : /ingress/.test(l.attach_type ?? '') ? 'ingress' : '?';
    const p: AttachedProgram = { hook: `tcx/${dir}`, id: l.prog_id, name: names.get(l.prog_id) ?? '?' };
    if (l.ifindex) placed.set(l.ifindex, [...(placed.get(l.ifindex) ?? []), p]);
    else unplaced.push(p);
  }
  return { placed, unplaced };
}

// --- gathering (reads the host) --------------------------------------------------------

/** The first executable file `name` in the folders of envPath (default $PATH). */
export function which(name: string, envPath = process.env.PATH ?? ''): ToolFact['path'] {
  for (const dir of envPath.split(':').filter(Boolean)) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

export function findTool(spec: ToolSpec): ToolFact {
  const p = which(spec.name);
  if (p) return { spec, path: p };
  const off = which(spec.name, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  return off ? { spec, offPath: off } : { spec };
}

async function tryRun(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    return (await run(cmd, args, { timeoutMs: 10000 })).stdout;
  } catch {
    return undefined;
  }
}

function addonFacts(): { addon: AddonFact; tcx: DoctorFacts['tcx'] } {
  let n: nativeModule.NativeAddon;
  try {
    n = nativeModule.native();
  } catch (e) {
    const msg = (e as Error).message;
    return { addon: { error: msg }, tcx: { ok: false, error: `the native addon does not load` } };
  }
  const addon: AddonFact = { libbpf: n.libbpfVersion(), path: nativeModule.nativePath() };
  let tcx: DoctorFacts['tcx'];
  try {
    tcx = { ok: n.probeTcx() };
  } catch (e) {
    tcx = { ok: false, error: (e as Error).message };
  }
  return { addon, tcx };
}

function bpffsMounted(): boolean {
  try {
    return fs
      .readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[1] === BPFFS && l.split(' ')[2] === 'bpf');
  } catch {
    return false;
  }
}

export interface DoctorOptions {
  pinRoot?: string;
  /** --cgroup, as given */
  cgroupOverride?: string;
  /** Docker mode: check dockerd's settings (socket: --docker-socket) */
  docker?: { socketPath?: string; configFile?: string };
  /** the uplinks and the other served interfaces berth would attach to (default: every outside-facing one) */
  uplinks?: readonly string[];
  interfaces?: readonly string[];
  /** also look at the interfaces and (Docker mode) the firewall: doctor does, preflight does not */
  full?: boolean;
}

/** The dockerd whose -H serves `socket` (none given: the default socket). */
export function findDockerd(socket: string, procRoot = '/proc'): DockerdProcess | undefined {
  const norm = (p: string): string => {
    const abs = path.resolve(p.replace(/^unix:\/\//, ''));
    try {
      return fs.realpathSync(abs);
    } catch {
      return abs;
    }
  };
  const want = norm(socket);
  let entries: string[];
  try {
    entries = fs.readdirSync(procRoot).filter((x) => /^\d+$/.test(x));
  } catch {
    return undefined;
  }
  for (const pid of entries) {
    let args: string[];
    try {
      if (fs.readFileSync(`${procRoot}/${pid}/comm`, 'utf8').trim() !== 'dockerd') continue;
      args = fs.readFileSync(`${procRoot}/${pid}/cmdline`, 'utf8').split('\0');
      if (args[args.length - 1] === '') args.pop();
    } catch {
      continue;
    }
    const hosts = dockerdHosts(args.slice(1));
    const unixHosts = hosts.filter((h) => h.startsWith('unix://') || h.startsWith('/')).map(norm);
    const served = hosts.length === 0 || hosts.some((h) => h.startsWith('fd://')) ? [...unixHosts, norm(DEFAULT_DOCKER_SOCKET)] : unixHosts;
    if (served.includes(want)) return { pid: Number(pid), args: args.slice(1) };
  }
  return undefined;
}

async function firewallFacts(): Promise<FirewallFacts> {
  const save = findTool({ name: 'iptables-save', pkg: 'iptables', use: '', vital: 'never' });
  const saveBin = save.path ?? save.offPath;
  if (saveBin) {
    const out = await tryRun(saveBin, []);
    if (out !== undefined) return { tool: 'iptables-save', ...parseIptablesSave(out) };
  }
  const nft = findTool({ name: 'nft', pkg: 'nftables', use: '', vital: 'never' });
  const nftBin = nft.path ?? nft.offPath;
  if (nftBin) {
    const out = await tryRun(nftBin, ['list', 'ruleset']);
    if (out !== undefined) return { tool: 'nft', ...parseNftRuleset(out) };
  }
  return { chains: [], forwardDrop: false, error: saveBin || nftBin ? 'iptables-save / nft failed' : 'neither iptables-save nor nft is installed' };
}

export async function dockerFacts(opts: { socketPath?: string; configFile?: string; firewall?: boolean }): Promise<DockerFacts> {
  const socket = opts.socketPath ?? DEFAULT_DOCKER_SOCKET;
  const proc = findDockerd(socket);
  const cfgFlag = proc ? dockerdFlag(proc.args, 'config-file') : undefined;
  const configFile = opts.configFile ?? cfgFlag ?? '/etc/docker/daemon.json';
  const d: DockerFacts = { socket, configFile, ...(proc ? { process: proc } : {}) };
  try {
    const parsed = JSON.parse(fs.readFileSync(configFile, 'utf8')) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) d.config = parsed as Record<string, unknown>;
    else d.configError = 'not a JSON object';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') d.configError = (e as Error).message;
  }
  if (fs.existsSync(socket)) {
    const client = new DockerClient({ socketPath: socket, timeoutMs: 3000 });
    try {
      d.info = await client.info();
    } catch (e) {
      d.infoError = (e as Error).message;
    } finally {
      await client.destroy();
    }
  } else d.infoError = `no socket at ${socket}`;
  if (opts.firewall) d.firewall = await firewallFacts();
  return d;
}

async function attachFacts(sel: { uplinks?: readonly string[]; interfaces?: readonly string[] }): Promise<AttachFacts> {
  const flags = [sel.uplinks ? '--uplinks' : '', sel.interfaces ? '--interfaces' : ''].filter(Boolean);
  const source = flags.length ? flags.join(' and ') : 'auto-detected';
  const missing = [...new Set([...(sel.uplinks ?? []), ...(sel.interfaces ?? [])])].filter((u) => !fs.existsSync(`/sys/class/net/${u}`));
  let names: string[];
  let refused: RefusedInterface[];
  try {
    // the interfaces berth would attach berth_up_in to: the same choice as up and run
    const choice = chooseInterfaces(sel, await hostInterfaces());
    names = choice.served.map((i) => i.ifname);
    refused = choice.refused;
  } catch (e) {
    return { source, interfaces: [], missing, tcxUnchecked: `cannot list interfaces: ${(e as Error).message}` };
  }
  const bpftool = findTool({ name: 'bpftool', pkg: 'bpftool', use: '', vital: 'never' });
  const bt = bpftool.path ?? bpftool.offPath;
  const progNames = new Map<number, string>();
  let tcxInNet = false;
  let links: ReturnType<typeof parseBpftoolLinks> | undefined;
  if (bt) {
    try {
      const v = JSON.parse((await tryRun(bt, ['version', '-j'])) ?? '{}') as { version?: string };
      tcxInNet = bpftoolListsTcx(v.version ?? '');
      for (const p of JSON.parse((await tryRun(bt, ['prog', 'show', '-j'])) ?? '[]') as Array<{ id: number; name?: string }>) if (p.name) progNames.set(p.id, p.name);
      if (!tcxInNet) links = parseBpftoolLinks((await tryRun(bt, ['link', 'show', '-j'])) ?? '[]', progNames);
    } catch {
      /* fall back to ip and tc below */
    }
  }
  const ifindexOf = (n: string): number => Number(fs.readFileSync(`/sys/class/net/${n}/ifindex`, 'utf8'));
  const interfaces: InterfaceFact[] = [];
  for (const ifname of names) {
    const xdp = fs.existsSync(`/sys/class/net/${ifname}`) ? { xdp: xdpChoice(ifname) } : {};
    try {
      if (bt) {
        const out = await tryRun(bt, ['net', 'show', 'dev', ifname, '-j']);
        if (out !== undefined) {
          const programs = parseBpftoolNet(out, progNames);
          const placed = links?.placed.get(ifindexOf(ifname)) ?? [];
          interfaces.push({ ifname, programs: [...programs, ...placed], method: 'bpftool net', tcxVisible: tcxInNet, ...xdp });
          continue;
        }
      }
      const link = await withNetlink(undefined, (nl) => nl.link(ifname));
      if (!link) throw new Error(`no interface ${ifname}`);
      const programs = xdpPrograms(link, progNames);
      for (const dir of ['ingress', 'egress'] as const) {
        const tcOut = await tryRun('tc', ['-j', 'filter', 'show', 'dev', ifname, dir]);
        if (tcOut !== undefined) programs.push(...parseTcFilters(tcOut, dir));
      }
      interfaces.push({ ifname, programs, method: 'netlink + tc filter', tcxVisible: false, ...xdp });
    } catch (e) {
      interfaces.push({ ifname, programs: [], method: '', tcxVisible: false, error: (e as Error).message, ...xdp });
    }
  }
  const out: AttachFacts = { source, interfaces, missing, ...(refused.length ? { refused } : {}) };
  if (!bt) out.tcxUnchecked = 'bpftool is not installed';
  else if (links) out.unplacedTcx = links.unplaced;
  return out;
}

/** The pinned contract version, when the pin root holds one and the addon can read it. */
function pinnedVersionFact(pinRoot: string): { pinnedVersion?: string } {
  try {
    const v = readPinnedVersion(pinRoot);
    return v ? { pinnedVersion: describeVersion(v) } : {};
  } catch {
    return {};
  }
}

export async function gatherFacts(opts: DoctorOptions = {}): Promise<DoctorFacts> {
  const pinRoot = opts.pinRoot ?? DEFAULT_PIN_ROOT;
  const { addon, tcx } = addonFacts();
  let status = '';
  try {
    status = fs.readFileSync('/proc/self/status', 'utf8');
  } catch {
    /* no procfs */
  }
  const docker = opts.docker !== undefined;
  const tools = TOOLS.map(findTool);
  return {
    kernel: os.release(),
    btf: fs.existsSync('/sys/kernel/btf/vmlinux'),
    tcx,
    bpffs: bpffsMounted(),
    pinRoot,
    pinned: fs.existsSync(path.join(pinRoot, 'progs')),
    ...pinnedVersionFact(pinRoot),
    cgroup: describeSocketHooks({ override: opts.cgroupOverride }),
    uid: process.getuid?.() ?? -1,
    capEff: parseCapEff(status),
    addon,
    tools,
    ...(opts.full ? { attach: await attachFacts({ ...(opts.uplinks ? { uplinks: opts.uplinks } : {}), ...(opts.interfaces ? { interfaces: opts.interfaces } : {}) }) } : {}),
    ...(docker ? { docker: await dockerFacts({ ...opts.docker, firewall: opts.full }) } : {}),
  };
}

/**
 * The vital checks, before `berth up` / `berth run` change anything: throws
 * the fail rows as one line. Interfaces and firewall are doctor's alone.
 */
export async function preflight(opts: Omit<DoctorOptions, 'full'> = {}): Promise<void> {
  const rows = evaluate(await gatherFacts({ ...opts, full: false }), opts.docker ? 'docker' : 'standalone');
  const msg = refusal(rows);
  if (msg) throw new Error(msg);
}
