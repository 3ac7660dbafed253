#!/usr/bin/env node
/**
 * berth's command line: parses arguments and hands off to the module that owns
 * each concept. Errors are printed as one line and exit non-zero.
 */
import { Command, Option } from 'commander';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../domain/config';
import { DEFAULT_PIN_ROOT, Dataplane } from '../platform/dataplane';
import { startDaemon } from '../engine/daemon';
import { runDemo } from './demo';
import { formatPorts, formatStats, formatStatus, table } from './format';
import { readPorts } from '../observe/ports';
import { PROTO_NAMES, ctSummary, flowSideStr, flowToJson, formatCtSummary, matchFlow, monotonicNs, pairFlows, protoNumber, readHalves } from '../engine/conntrack';
import { isBpfError } from '../platform/native';
import { ipFamily } from '../domain/ipv6';
import { log } from '../platform/log';
import { readCounters, rowToJson } from '../observe/stats';
import * as standalone from '../sources/standalone';
import { readStatus } from '../observe/status';
import { runWatch } from '../observe/watch';
import { DEFAULT_MONITOR_RATE, runMonitor } from '../observe/monitor';
import { formatTrace, runTrace } from '../observe/trace';
import { VERSION } from '../platform/version';
import { addDockerOptions, dockerModeFrom, interfaceNames } from './docker';
import { SocketHooksTarget, describeSocketHooks, resolveSocketHooks } from '../platform/cgroup';
import { evaluate, failures, formatDoctor, gatherFacts, preflight } from '../observe/doctor';
import { DEFAULT_DOCKER_SOCKET } from '../sources/docker/client';
import { DEFAULT_UNIT_DIR, installService } from './service';

const DEFAULT_METRICS = '127.0.0.1:9469';

function pinRootOf(cmd: Command): string {
  return (cmd.optsWithGlobals().bpffs as string | undefined) ?? process.env.BERTH_PIN_ROOT ?? DEFAULT_PIN_ROOT;
}

function cgroupOf(cmd: Command): string | undefined {
  return cmd.optsWithGlobals().cgroup as string | undefined;
}

/** --cgroup / BERTH_CGROUP, else the cgroup2 mount in mountinfo; a bad --cgroup throws (nothing has changed yet). */
function socketHooksOf(cmd: Command): SocketHooksTarget {
  return resolveSocketHooks({ override: cgroupOf(cmd) });
}

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive whole number, got '${v}'`);
    return n;
  };
}

/** `berth ct --proto`: a protocol name berth knows or a number 0..255. */
function protoOption(v: string): string {
  if (protoNumber(v) === undefined) throw new Error(`--proto must be a protocol name (${Object.values(PROTO_NAMES).join(', ')}) or a number 0..255, got '${v}'`);
  return v;
}

/** `berth ct --addr`: an IPv4 or IPv6 address (brackets allowed), compared in RFC 5952 form. */
function ctAddrOption(v: string): string {
  const a = v.startsWith('[') && v.endsWith(']') ? v.slice(1, -1) : v;
  if (ipFamily(a) === null) throw new Error(`--addr must be an IPv4 or IPv6 address, got '${v}'`);
  return a;
}

/** `berth ct --family`: 4 or 6 (ipv4, ipv6 too). */
function familyOption(v: string): 4 | 6 {
  const f = { '4': 4, ipv4: 4, inet: 4, '6': 6, ipv6: 6, inet6: 6 }[v.toLowerCase()] as 4 | 6 | undefined;
  if (!f) throw new Error(`--family must be 4 or 6, got '${v}'`);
  return f;
}

export function buildCli(): Command {
  const program = new Command('berth')
    .description('eBPF fast path for Docker bridge networks')
    .version(VERSION)
    .addOption(new Option('--bpffs <dir>', 'pin root for berth\'s maps, programs and links').env('BERTH_PIN_ROOT').default(DEFAULT_PIN_ROOT))
    .addOption(new Option('--cgroup <dir>', 'cgroup v2 directory for the host socket hooks (default: the cgroup2 mount in /proc/self/mountinfo)').env('BERTH_CGROUP'))
    .showHelpAfterError();
  // in this order: `berth --help` lists the commands as they are added
  addTopologyCommands(program);
  addRunCommand(program);
  addHostCommands(program);
  addCounterCommands(program);
  addInspectCommands(program);
  addMaintenanceCommands(program);
  return program;
}

/** `up` and `down`: a file's namespaces, veths and bridges, and its dataplane entries. */
function addTopologyCommands(program: Command): void {
  program
    .command('up')
    .description('build the namespaces, veths and bridges of a file and program the dataplane')
    .option('-f, --file <path>', 'topology file', DEFAULT_CONFIG_PATH)
    .option('--no-run', 'do not start the containers\' run commands')
    .option('--no-fast-path', 'count only; leave forwarding to the kernel')
    .option('--xdp', 'also attach the XDP drop path to the served interfaces')
    .action(async (o, cmd: Command) => {
      const cfg = loadConfig(o.file);
      const socketHooks = socketHooksOf(cmd);
      await preflight({ pinRoot: pinRootOf(cmd), cgroupOverride: cgroupOf(cmd) });
      const res = await standalone.up(cfg, { pinRoot: pinRootOf(cmd), fastPath: o.fastPath, startCommands: o.run, xdp: o.xdp, socketHooks });
      console.log(`berth up: ${res.endpoints.length} container(s) on ${cfg.networks.length} network(s), ${res.steps.length} dataplane change(s)`);
      for (const s of res.steps) console.log(`  ${s.op} ${s.what}`);
      if (res.flushed) console.log(`berth up: ${res.flushed} tracked flow(s) flushed (their endpoint or published port changed)`);
    });

  program
    .command('down')
    .description('remove exactly what `up` made for a file')
    .option('-f, --file <path>', 'topology file', DEFAULT_CONFIG_PATH)
    .action(async (o, cmd: Command) => {
      const cfg = loadConfig(o.file);
      const res = await standalone.down(cfg, { pinRoot: pinRootOf(cmd) });
      console.log(`berth down: removed ${res.removed.length} object(s)${res.skipped.length ? `, left ${res.skipped.length} not made by berth: ${res.skipped.join(', ')}` : ''}${res.unpinned ? '; dataplane unpinned' : ''}`);
    });
}

/** `run`: the daemon, in standalone or Docker mode. */
function addRunCommand(program: Command): void {
  addDockerOptions(program
    .command('run')
    .description('keep the dataplane in step with the file (or with Docker: --docker) and serve /metrics'))
    .option('-f, --file <path>', 'topology file', DEFAULT_CONFIG_PATH)
    .option('--metrics <addr>', 'listen address for /metrics', DEFAULT_METRICS)
    .option('--interval <ms>', 'milliseconds between full reconciles, the safety net (host changes are followed as netlink events; default 60000; Docker mode: the follower default)', positiveInt('--interval'))
    .option('--xdp', 'also attach the XDP drop path to the served interfaces')
    .option('--force', 'take over a dataplane pinned by a newer berth (a downgrade), which is refused without it')
    .action(async (o, cmd: Command) => {
      const docker = dockerModeFrom(o);
      const socketHooks = socketHooksOf(cmd);
      await preflight({ pinRoot: pinRootOf(cmd), cgroupOverride: cgroupOf(cmd), ...(docker ? { docker: { socketPath: docker.socketPath } } : {}) });
      let d;
      try {
        d = await startDaemon({ configPath: o.file, pinRoot: pinRootOf(cmd), metrics: o.metrics, intervalMs: o.interval, xdp: o.xdp, docker, policyPath: o.policy, socketHooks, force: o.force === true });
      } catch (e) {
        // a daemon's every event is one line (the journal keeps each line apart): the verifier log goes into a JSON line
        if (isBpfError(e) && e.verifierLog) log('error', 'berth run did not start', { error: e.message, verifierLog: e.verifierLog });
        throw new Error(((e as Error).message ?? String(e)).replace(/\s*\n\s*/g, '; '));
      }
      console.log(`berth run: metrics at ${d.metricsUrl}`);
      process.on('SIGHUP', () => void d.reload());
      const stop = (): void => {
        void d.stop().then(() => process.exit(0));
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
}

/** `status`, `doctor`, `install-service`: the host and berth on it. */
function addHostCommands(program: Command): void {
  program
    .command('status')
    .description('what the dataplane holds: networks, endpoints, attachments')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      const st = await readStatus(pinRootOf(cmd), describeSocketHooks({ override: cgroupOf(cmd) }));
      console.log(o.json ? JSON.stringify(st, null, 2) : formatStatus(st));
    });

  program
    .command('doctor')
    .description('what berth needs from this host, what it found, and what to do about what is missing')
    .option('--json', 'machine-readable output')
    .option('--docker', "also check for Docker mode: dockerd's settings and Docker's iptables chains")
    .option('--docker-socket <path>', 'the Engine API socket', DEFAULT_DOCKER_SOCKET)
    .option('--uplinks <names>', 'comma-separated uplinks to check, as berth run --docker would take them (default: every outside-facing interface)')
    .option('--interfaces <names>', 'comma-separated served interfaces besides the uplinks, likewise (default: every outside-facing interface)')
    .action(async (o, cmd: Command) => {
      const uplinks = interfaceNames(o.uplinks, '--uplinks');
      const interfaces = interfaceNames(o.interfaces, '--interfaces');
      const facts = await gatherFacts({ pinRoot: pinRootOf(cmd), cgroupOverride: cgroupOf(cmd), uplinks, interfaces, full: true, ...(o.docker ? { docker: { socketPath: o.dockerSocket } } : {}) });
      const rows = evaluate(facts, o.docker ? 'docker' : 'standalone');
      const ok = failures(rows).length === 0;
      console.log(o.json ? JSON.stringify({ ok, mode: o.docker ? 'docker' : 'standalone', rows }, null, 2) : formatDoctor(rows));
      if (!ok) process.exitCode = 1;
    });

  program
    .command('install-service')
    .description("write the systemd unit (ExecStart: this berth's run with these options), then daemon-reload (and --enable: enable --now)")
    .option('--docker', 'the service follows dockerd')
    .option('--docker-socket <path>', 'the Engine API socket', DEFAULT_DOCKER_SOCKET)
    .option('-f, --file <path>', 'standalone: the topology file the service keeps in step')
    .option('--uplinks <names>', 'Docker mode: comma-separated uplinks (masquerade addresses)')
    .option('--interfaces <names>', 'Docker mode: comma-separated interfaces that serve published ports besides the uplinks')
    .option('--policy <file>', 'the user policy file')
    .option('--metrics <addr>', 'listen address for /metrics')
    .option('--xdp', 'also attach the XDP drop path to the served interfaces')
    .option('--unit-dir <dir>', 'where the unit goes', DEFAULT_UNIT_DIR)
    .option('--enable', 'also systemctl enable --now berth')
    .option('--force', 'replace a berth.service that differs')
    .action(async (o, cmd: Command) => {
      const g = cmd.optsWithGlobals();
      const uplinks = interfaceNames(o.uplinks, '--uplinks');
      const interfaces = interfaceNames(o.interfaces, '--interfaces');
      const res = await installService({
        docker: o.docker,
        dockerSocket: o.dockerSocket,
        file: o.file,
        uplinks,
        interfaces,
        policy: o.policy,
        metrics: o.metrics,
        xdp: o.xdp,
        pinRoot: pinRootOf(cmd),
        cgroup: g.cgroup as string | undefined,
        unitDir: o.unitDir,
        enable: o.enable,
        force: o.force,
      });
      for (const n of res.notes) console.log(`berth install-service: ${n}`);
    });
}

/** `stats` and `monitor`: counters and drop events. */
function addCounterCommands(program: Command): void {
  program
    .command('stats')
    .description('per-veth packet and byte counters')
    .option('--json', 'machine-readable output')
    .option('--watch', 'live view with rates, redrawn every second (Ctrl-C stops)')
    .option('--count <n>', 'with --watch: stop after this many frames', positiveInt('--count'))
    .option('--interval <ms>', 'with --watch: milliseconds between frames', positiveInt('--interval'), 1000)
    .action(async (o, cmd: Command) => {
      const root = pinRootOf(cmd);
      if (o.watch) {
        await runWatch({ pinRoot: root, intervalMs: o.interval, count: o.count });
        return;
      }
      if (!Dataplane.isPinned(root)) throw new Error(`no berth dataplane pinned at ${root}`);
      const dp = Dataplane.openPinned(root);
      try {
        const rows = await readCounters(dp);
        console.log(o.json ? JSON.stringify(rows.map(rowToJson), null, 2) : formatStats(rows));
      } finally {
        dp.close();
      }
    });

  program
    .command('monitor')
    .description('stream drop events from the dataplane (sampled: at most --rate per second per CPU)')
    .option('--rate <n>', 'events per second per CPU', positiveInt('--rate'), DEFAULT_MONITOR_RATE)
    .option('--json', 'one JSON object per line')
    .option('--count <n>', 'stop after this many events', positiveInt('--count'))
    .option('--duration <seconds>', 'stop after this many seconds', positiveInt('--duration'))
    .action(async (o, cmd: Command) => {
      await runMonitor({ pinRoot: pinRootOf(cmd), rate: o.rate, json: o.json, count: o.count, durationSec: o.duration });
    });
}

/** `trace`, `ports` and `ct`: a packet's path, the publishes, the tracked flows. */
function addInspectCommands(program: Command): void {
  program
    .command('trace')
    .description("run a described packet through berth's programs (BPF_PROG_TEST_RUN) and show each decision")
    .option('--from <container>', "from a container: berth_veth_ingress on its host veth")
    .option('--from-outside <interface>', 'from outside: berth_up_in on this served interface (an uplink or another; with --src)')
    .option('--src <addr>', 'source address (default with --from: the container\'s)')
    .requiredOption('--to <addr:port>', 'destination: A.B.C.D:PORT or [IPV6]:PORT (the address alone for icmp and the protocols without ports)')
    .option('--proto <p>', 'tcp, udp, icmp (ICMPv6 echo to an IPv6 --to), or one tracked without ports: gre, sctp, esp, ... or a number', 'tcp')
    .option('--sport <n>', 'source port (icmp: echo identifier)', positiveInt('--sport'))
    .option('--keep-conntrack', 'keep the conntrack entries the trace creates (default: delete them)')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      const r = await runTrace({ pinRoot: pinRootOf(cmd), from: o.from, fromOutside: o.fromOutside, src: o.src, to: o.to, proto: o.proto, sport: o.sport, keepConntrack: o.keepConntrack });
      console.log(o.json ? JSON.stringify(r, null, 2) : formatTrace(r));
    });

  program
    .command('ports')
    .description('what is published where')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      await withPinned(pinRootOf(cmd), async (dp) => {
        const rows = await readPorts(dp);
        console.log(o.json ? JSON.stringify(rows, null, 2) : formatPorts(rows));
      });
    });

  program
    .command('ct')
    .description('conntrack and NAT entries with state and age')
    .option('--json', 'machine-readable output')
    .option('--addr <ip>', 'only flows with this address, IPv4 or IPv6 (original or translated)', ctAddrOption)
    .option('--family <4|6>', 'only flows of this address family', familyOption)
    .option('--port <n>', 'only flows with this port', positiveInt('--port'))
    .option('--proto <p>', 'tcp, udp, icmp, gre, sctp, esp, ... or a protocol number', protoOption)
    .action(async (o, cmd: Command) => {
      await withPinned(pinRootOf(cmd), async (dp) => {
        const now = monotonicNs();
        const flows = pairFlows(await readHalves(dp.maps.ct)).filter((f) => matchFlow(f, { addr: o.addr, family: o.family, port: o.port, proto: o.proto }));
        const rows = flows.map((f) => flowToJson(f, now));
        if (o.json) {
          console.log(JSON.stringify(rows, null, 2));
          return;
        }
        const unassured = rows.filter((r) => !r.assured).length;
        console.log(
          table(
            ['PROTO', 'KIND', 'STATE', 'ASSURED', 'ORIGINAL', 'TRANSLATED', 'AGE', 'IDLE', 'PACKETS', 'BYTES'],
            rows.map((r) => [
              r.proto,
              r.kind,
              r.state,
              r.assured ? 'yes' : 'no',
              flowSideStr(r.original),
              flowSideStr(r.translated),
              `${r.ageSeconds.toFixed(1)}s`,
              `${r.idleSeconds.toFixed(1)}s`,
              String(r.packets),
              String(r.bytes),
            ]),
          ),
        );
        console.log(`\n${rows.length} flow(s) shown, ${unassured} unassured\n${formatCtSummary(ctSummary(dp.maps, dp.cpus))}`);
      });
    });
}

/** `reset` and `demo`. */
function addMaintenanceCommands(program: Command): void {
  program
    .command('reset')
    .description('detach and unpin everything berth made (topology is left: see `down`)')
    .action((_o, cmd: Command) => {
      const res = Dataplane.reset(pinRootOf(cmd));
      console.log(`berth reset: detached ${res.detached} hook(s), unpinned ${res.unpinned.length} object(s)`);
    });

  program
    .command('demo')
    .description('bring up examples/demo.yaml, send traffic, show counters and metrics')
    .option('-f, --file <path>', 'topology file', DEFAULT_CONFIG_PATH)
    .option('--duration <seconds>', 'stop by itself after this many seconds', positiveInt('--duration'))
    .option('--metrics <addr>', 'listen address for /metrics', DEFAULT_METRICS)
    .action(async (o, cmd: Command) => {
      await runDemo({ configPath: o.file, pinRoot: pinRootOf(cmd), metrics: o.metrics, durationSec: o.duration });
    });
}


async function withPinned(root: string, fn: (dp: Dataplane) => Promise<void>): Promise<void> {
  if (!Dataplane.isPinned(root)) throw new Error(`no berth dataplane pinned at ${root}`);
  const dp = Dataplane.openPinned(root);
  try {
    await fn(dp);
  } finally {
    dp.close();
  }
}

function describeError(e: unknown): string {
  if (isBpfError(e)) return `${e.message}${e.verifierLog ? `\nverifier log:\n${e.verifierLog}` : ''}`;
  return e instanceof Error ? e.message : String(e);
}

if (require.main === module) {
  buildCli()
    .parseAsync(process.argv)
    .catch((e: unknown) => {
      console.error(`berth: ${describeError(e)}`);
      process.exit(1);
    });
}
