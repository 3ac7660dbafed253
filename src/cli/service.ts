/**
 * `berth install-service`: the systemd unit of packaging/berth.service, with
 * ExecStart pointing at this berth (its node and its bin/berth, as absolute
 * paths) and the options given, written to /etc/systemd/system (or
 * --unit-dir); then `systemctl daemon-reload`, and with --enable
 * `systemctl enable --now berth`. Where systemd is not running (no
 * /run/systemd/system) or systemctl is missing, those steps are skipped and
 * the output says so. A unit that differs from what would be written is left
 * alone unless --force.
 *
 * Everything the unit names is checked first (the policy and topology files
 * are parsed), so a service that cannot start is never installed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../domain/config';
import { DEFAULT_PIN_ROOT } from '../platform/dataplane';
import { run } from '../platform/exec';
import { loadPolicy } from '../domain/policy';
import { DEFAULT_DOCKER_SOCKET } from '../sources/docker/client';

export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');
export const UNIT_TEMPLATE = path.join(PACKAGE_ROOT, 'packaging', 'berth.service');
export const BERTH_BIN = path.join(PACKAGE_ROOT, 'bin', 'berth');
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';
export const UNIT_NAME = 'berth.service';
/** where systemd looks for units by name (so `enable berth` finds it) */
const SYSTEMD_UNIT_DIRS = ['/etc/systemd/system', '/run/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system', '/usr/local/lib/systemd/system'];

export interface ServiceOptions {
  docker?: boolean;
  dockerSocket?: string;
  /** standalone: the topology file */
  file?: string;
  /** Docker mode: uplinks and served interfaces ([] is meaningful: none; undefined: auto-detected) */
  uplinks?: readonly string[];
  interfaces?: readonly string[];
  policy?: string;
  metrics?: string;
  xdp?: boolean;
  /** global options to carry into ExecStart */
  pinRoot?: string;
  cgroup?: string;
  /** defaults: this process's node and the package's bin/berth */
  node?: string;
  berthBin?: string;
}

/** One ExecStart word, quoted for systemd (systemd.syntax(7)): % and $ doubled, quotes when needed. */
export function systemdWord(w: string): string {
  if (/[\n\r]/.test(w)) throw new Error(`cannot put a line break into ExecStart: ${JSON.stringify(w)}`);
  const s = w.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  if (s !== '' && /^[A-Za-z0-9_@%+=:,./$-]+$/.test(s)) return s;
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** The berth command line the service runs (argv, absolute paths). Throws on options that make no service. */
export function serviceArgv(o: ServiceOptions): string[] {
  const node = o.node ?? process.execPath;
  const bin = o.berthBin ?? BERTH_BIN;
  if (!path.isAbsolute(node) || !path.isAbsolute(bin)) throw new Error(`ExecStart needs absolute paths (node ${node}, berth ${bin})`);
  const argv = [node, bin];
  if (o.pinRoot && path.resolve(o.pinRoot) !== DEFAULT_PIN_ROOT) argv.push('--bpffs', path.resolve(o.pinRoot));
  if (o.cgroup) argv.push('--cgroup', path.resolve(o.cgroup));
  argv.push('run');
  if (o.docker) {
    if (o.file) throw new Error('-f/--file is for standalone mode; with --docker berth follows dockerd');
    argv.push('--docker');
    if (o.dockerSocket && path.resolve(o.dockerSocket) !== DEFAULT_DOCKER_SOCKET) argv.push('--docker-socket', path.resolve(o.dockerSocket));
    if (o.uplinks !== undefined) argv.push('--uplinks', o.uplinks.join(','));
    if (o.interfaces !== undefined) argv.push('--interfaces', o.interfaces.join(','));
  } else {
    if (!o.file) throw new Error('install-service needs --docker (follow dockerd) or -f FILE (a topology file)');
    if (o.uplinks !== undefined) throw new Error('--uplinks is for Docker mode; a topology file names its own uplinks');
    if (o.interfaces !== undefined) throw new Error('--interfaces is for Docker mode; a topology file names its own (interfaces:)');
    argv.push('-f', path.resolve(o.file));
  }
  if (o.policy) argv.push('--policy', path.resolve(o.policy));
  if (o.metrics) argv.push('--metrics', o.metrics);
  if (o.xdp) argv.push('--xdp');
  return argv;
}

/** The unit text: the template with its @...@ lines filled in. */
export function renderUnit(template: string, o: ServiceOptions): string {
  // Docker mode: berth before dockerd, so that at boot the hooks and the uplinks' programs are in place
  // before dockerd restarts its containers; berth waits for dockerd's API and programs each container
  // from its events (dockerd absent at start is not an error: src/sources/docker/follower.ts)
  const deps = o.docker
    ? ['After=network-online.target', 'Wants=network-online.target docker.service', 'Before=docker.service']
    : ['After=network-online.target', 'Wants=network-online.target'];
  // standalone: the containers' run commands outlive berth, as they do outside systemd; `berth down` stops them
  const mode = o.docker ? [] : ["# the containers' run commands outlive a restart of berth (berth down stops them)", 'KillMode=process'];
  const fill: Record<string, string[]> = {
    '@UNIT_DEPENDENCIES@': deps,
    '@SERVICE_MODE@': mode,
  };
  const lines: string[] = [];
  for (const line of template.split('\n')) {
    const whole = fill[line.trim()];
    if (line.startsWith('#@')) continue; // the template's own notes
    if (whole) lines.push(...whole);
    else if (line.startsWith('ExecStart=')) {
      if (!line.includes('@EXEC_START@')) throw new Error(`${UNIT_TEMPLATE}: ExecStart has no @EXEC_START@`);
      lines.push(line.replace('@EXEC_START@', serviceArgv(o).map(systemdWord).join(' ')));
    } else lines.push(line);
  }
  const text = lines.join('\n');
  const left = /@[A-Z_]+@/.exec(text);
  if (left) throw new Error(`${UNIT_TEMPLATE}: placeholder ${left[0]} not filled`);
  return text;
}

export interface InstallOptions extends ServiceOptions {
  unitDir?: string;
  enable?: boolean;
  force?: boolean;
  /** for tests: what says whether systemd runs here (default /run/systemd/system exists) */
  systemdRunning?: () => boolean;
  /** for tests: where systemctl is (default: found on PATH) */
  systemctl?: string | null;
}

export interface InstallResult {
  unitPath: string;
  written: boolean;
  /** what was done or skipped, one line each */
  notes: string[];
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** The first line where two texts differ, for the refusal. */
function firstDifference(a: string, b: string): string {
  const x = a.split('\n');
  const y = b.split('\n');
  for (let i = 0; i < Math.max(x.length, y.length); i++)
    if (x[i] !== y[i]) return `line ${i + 1}: has ${JSON.stringify(x[i] ?? '')}, would be ${JSON.stringify(y[i] ?? '')}`;
  return 'no line differs';
}

export async function installService(o: InstallOptions): Promise<InstallResult> {
  // everything the unit names is checked before anything is written
  if (o.policy) loadPolicy(path.resolve(o.policy));
  if (!o.docker && o.file) loadConfig(path.resolve(o.file));
  let template: string;
  try {
    template = fs.readFileSync(UNIT_TEMPLATE, 'utf8');
  } catch (e) {
    throw new Error(`the unit template ${UNIT_TEMPLATE} is missing from this berth (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); the package must ship packaging/berth.service`);
  }
  const text = renderUnit(template, o);
  const dir = path.resolve(o.unitDir ?? DEFAULT_UNIT_DIR);
  const unitPath = path.join(dir, UNIT_NAME);
  const notes: string[] = [];
  let existing: string | undefined;
  try {
    existing = fs.readFileSync(unitPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  let written = false;
  if (existing === text) notes.push(`${unitPath} is already this unit: left as it is`);
  else {
    if (existing !== undefined && !o.force) throw new Error(`refusing to overwrite ${unitPath}: it differs from the unit berth would write (${firstDifference(existing, text)}); pass --force to replace it`);
    fs.mkdirSync(dir, { recursive: true });
    const tmp = path.join(dir, `.${UNIT_NAME}.${process.pid}.tmp`);
    fs.writeFileSync(tmp, text, { mode: 0o644 });
    fs.renameSync(tmp, unitPath);
    written = true;
    notes.push(`${existing === undefined ? 'wrote' : 'replaced'} ${unitPath}`);
  }
  const running = (o.systemdRunning ?? (() => fs.existsSync('/run/systemd/system')))();
  const systemctl = o.systemctl === undefined ? onPath('systemctl') : (o.systemctl ?? undefined);
  const todo = ['systemctl daemon-reload', ...(o.enable ? ['systemctl enable --now berth'] : [])];
  if (!running || !systemctl) {
    const why = !running ? 'systemd is not running here (no /run/systemd/system)' : 'systemctl is not installed';
    notes.push(`skipped ${todo.join(' and ')}: ${why}; run ${todo.length > 1 ? 'them' : 'it'} where systemd runs this unit`);
    return { unitPath, written, notes };
  }
  await run(systemctl, ['daemon-reload']);
  notes.push('ran systemctl daemon-reload');
  if (o.enable) {
    // a unit outside systemd's search path is enabled by its path (systemctl links it in)
    const target = SYSTEMD_UNIT_DIRS.includes(dir) ? 'berth' : unitPath;
    await run(systemctl, ['enable', '--now', target], { timeoutMs: 120000 });
    notes.push(`ran systemctl enable --now ${target}`);
  }
  return { unitPath, written, notes };
}
