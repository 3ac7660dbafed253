/**
 * `npm run bench -- --suite profile` (issue 14 item 1): where every
 * microsecond of a transaction goes, on the bench's own topology (NatEnv,
 * the bare-veth floor).
 *
 * For each path (published, masquerade, host -> 127.0.0.1 and -> [::1]; both
 * families) and each load (request/response on one connection, new
 * connections; one CPU), in the same round as the floor's run of the same
 * load and family, with kernel.bpf_stats_enabled=1:
 *
 *   - the transactions the tool counted (connrate: every transaction or
 *     connection it completed),
 *   - for every berth program (tc_veth ingress/egress, uplink, bridge, the
 *     cgroup socket hooks, XDP), the run_cnt and run_time_ns deltas over
 *     those transactions: runs per transaction, ns per run, ns per transaction,
 *   - the floor's and the path's wall time per transaction (1 / rate, one CPU:
 *     the client and the server share CPU 1, so it is CPU time per transaction),
 *
 * and attributes the gap to the floor: BPF work (the sum of the programs' ns
 * per transaction), and the rest (the extra hops the path takes and the
 * kernel path around them: what BPF statistics cannot see). With --perf, a
 * `perf record` of CPU 1 during one floor run and one published run gives
 * the kernel symbols of that rest (softirq path included).
 *
 * Every load is bounded in time; traffic stays in the suite's namespaces and
 * the host's loopback; everything is removed at the end, on failure too.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { table } from '../src/cli/format';
import { Dataplane } from '../src/platform/dataplane';
import { makeFloor, Floor } from './lib/floor';
import { NatAddrs, NatEnv } from './lib/natenv';
import { CONNRATE, connrate, Endpoints, isV6, killServers, nsArgv, rr, Sample, startServer, stopServer, waitListening, widenPorts } from './lib/tools';
import { enableBpfStats, programIds, readProgStats } from './lib/progstats';
import { median } from './lib/stats';
import { findDockerProxy } from './lib/dockerproxy';

export interface ProfileOptions {
  runs: number;
  seconds: number;
  json?: string;
  perf: boolean;
  /** path keys to run (default: all) */
  paths: string[];
  /** loads to run (default rr,conn) */
  loads: Array<'rr' | 'conn'>;
  /** override the suite's tag (tests use their own names) */
  tag?: string;
  third?: number;
  /** the topology's addresses and pin root (tests give their own) */
  nat?: NatAddrs;
  floorAt?: { v4?: string; v6?: string };
}

/** berth's programs by Dataplane key, as the report names them */
export const PROGRAM_LABELS: Record<string, string> = {
  ingress: 'tc_veth ingress',
  egress: 'tc_veth egress',
  uplink: 'uplink tc ingress',
  xdp: 'uplink xdp',
  bridgeIn: 'bridge ingress',
  bridgeOut: 'bridge egress',
  sockConnect: 'sock connect4',
  sockSend: 'sock sendmsg4',
  sockRecv: 'sock recvmsg4',
  sockConnect6: 'sock connect6',
  sockSend6: 'sock sendmsg6',
  sockRecv6: 'sock recvmsg6',
};

export interface ProgCost {
  program: string;
  key: string;
  runCnt: number;
  runTimeNs: number;
  runsPerTrans: number;
  nsPerRun: number;
  nsPerTrans: number;
}

export interface ProfileRound {
  transactions: number;
  errors: number;
  /** the floor's transaction time, less what the root cgroup's socket hooks cost it */
  floorUs: number;
  /** what berth's socket hooks cost the floor's transaction (taken off floorUs) */
  floorBpfUs: number;
  pathUs: number;
  bpfUs: number;
  programs: ProgCost[];
}

export interface ProfileRow {
  path: string;
  family: 4 | 6;
  load: 'rr' | 'conn';
  rounds: ProfileRound[];
  /** medians over the rounds */
  transactions: number;
  floorUs: number;
  pathUs: number;
  gapUs: number;
  bpfUs: number;
  floorBpfUs: number;
  restUs: number;
  vsFloor: number;
  programs: ProgCost[];
  errors?: string[];
}

export interface PerfProfile {
  what: string;
  ok: boolean;
  error?: string;
  /** as perf reports it ("12K") */
  samples?: string;
  /** self time by symbol, percent of the CPU's samples */
  top?: Array<{ pct: number; symbol: string }>;
  /** including callees, for the softirq path's frames and berth's programs */
  children?: Array<{ pct: number; symbol: string }>;
}

export interface ProfileDoc {
  command: string;
  date: string;
  machine: Record<string, unknown>;
  options: ProfileOptions;
  rows: ProfileRow[];
  perf: PerfProfile[];
  notes: string[];
  errors: string[];
  seconds: number;
}

interface PathSpec {
  key: string;
  name: string;
  family: 4 | 6;
  publish: (port: number) => string[];
  endpoints: (n: NatEnv, port: number) => Endpoints;
  /** also attach the XDP program to the uplink (whatever the driver: to measure it) */
  xdp?: boolean;
}

export const PROFILE_PATHS: PathSpec[] = [
  { key: 'published', name: 'published', family: 4, publish: (p) => [`${p}:${p}`], endpoints: (n, port) => ({ clientNs: n.ext.ns, serverNs: n.server.ns, addr: n.ext.hostAddr, port }) },
  { key: 'published-xdp', name: 'published, XDP on the uplink too', family: 4, xdp: true, publish: (p) => [`${p}:${p}`], endpoints: (n, port) => ({ clientNs: n.ext.ns, serverNs: n.server.ns, addr: n.ext.hostAddr, port }) },
  { key: 'published6', name: 'published', family: 6, publish: (p) => [`${p}:${p}`], endpoints: (n, port) => ({ clientNs: n.ext.ns, serverNs: n.server.ns, addr: n.ext.hostAddr6, port }) },
  { key: 'masquerade', name: 'masquerade', family: 4, publish: () => [], endpoints: (n, port) => ({ clientNs: n.client.ns, serverNs: n.ext.ns, addr: n.ext.addr, port }) },
  { key: 'masquerade6', name: 'masquerade', family: 6, publish: () => [], endpoints: (n, port) => ({ clientNs: n.client.ns, serverNs: n.ext.ns, addr: n.ext.addr6, port }) },
  { key: 'loopback', name: 'host -> 127.0.0.1', family: 4, publish: (p) => [`127.0.0.1:${p}:${p}`], endpoints: (n, port) => ({ clientNs: '', serverNs: n.server.ns, addr: '127.0.0.1', port }) },
  { key: 'loopback6', name: 'host -> [::1]', family: 6, publish: (p) => [`[::1]:${p}:${p}`], endpoints: (n, port) => ({ clientNs: '', serverNs: n.server.ns, addr: '::1', port }) },
];

const log = (s: string) => process.stderr.write(`profile: ${s}\n`);

/**
 * A netlink dump the kernel interrupted because links changed meanwhile (EIO,
 * "Dump inconsistency": other work on this machine makes and removes links)
 * is tried again, a bounded number of times; anything else is not.
 */
async function retryDump<T>(f: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await f();
    } catch (e) {
      if (i >= 9 || !/Dump inconsistency/.test((e as Error).message)) throw e;
      log(`netlink dump interrupted, again (${i + 1}/9)`);
      await new Promise((r) => setTimeout(r, 100 * (i + 1)));
    }
  }
}

const ONE_CPU = { clientCpu: 1, serverCpu: 1 };

async function load(kind: 'rr' | 'conn', e: Endpoints, seconds: number): Promise<Sample> {
  const ep = { ...e, ...ONE_CPU };
  return kind === 'rr' ? rr(ep, seconds) : connrate(ep, seconds);
}

function floorEndpoints(f: Floor, family: 4 | 6, port: number): Endpoints {
  return { clientNs: f.clientNs, serverNs: f.serverNs, addr: family === 6 ? f.serverAddr6 : f.serverAddr, port };
}

/**
 * `perf record` of CPU 1 around a connrate rr client run (perf starts the client itself, once it is
 * set up: on a loaded machine its set-up can outlast a short load); the report's top self symbols and
 * the softirq frames, of connrate's samples only.
 */
async function perfDuring(what: string, e: Endpoints, seconds: number, file: string): Promise<PerfProfile> {
  const srv = startServer(e.serverNs, ONE_CPU.serverCpu, [CONNRATE, 'rrserver', String(e.port), String(seconds + 60), isV6(e.addr) ? '::' : '0.0.0.0']);
  let err = '';
  try {
    await waitListening(e.serverNs, e.port);
    const [cmd, args] = nsArgv(e.clientNs, ONE_CPU.clientCpu, [CONNRATE, 'rr', e.addr, String(e.port), String(seconds)]);
    const rec = spawn('perf', ['record', '-q', '-C', '1', '-g', '-o', file, '--', cmd, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    rec.stderr?.on('data', (d) => (err += String(d)));
    const killer = setTimeout(() => rec.kill('SIGKILL'), (seconds + 60) * 1000);
    const code = await new Promise<number>((r) => {
      rec.once('exit', (c) => r(c ?? -1));
      rec.once('error', (x) => {
        err += x.message;
        r(-1);
      });
    });
    clearTimeout(killer);
    if (code !== 0) return { what, ok: false, error: `perf record exited ${code}: ${err.slice(0, 300)}` };
  } finally {
    await stopServer(srv);
  }
  const report = (children: boolean) =>
    new Promise<string>((resolve, reject) => {
      const p = spawn('perf', ['report', '-i', file, '--stdio', children ? '--children' : '--no-children', '--sort', 'sym', '-g', 'none', '--comms', 'connrate', '--percentage', 'relative', '--percent-limit', children ? '2' : '0.7'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout.on('data', (d) => (out += String(d)));
      const t = setTimeout(() => p.kill('SIGKILL'), 60000);
      p.once('exit', (c) => {
        clearTimeout(t);
        if (c === 0) resolve(out);
        else reject(new Error(`perf report exited ${c}`));
      });
    });
  try {
    const self = await report(false);
    const samples = /# Samples: (\S+)/.exec(self)?.[1];
    const parse = (s: string, children: boolean) =>
      s
        .split('\n')
        .filter((l) => !l.startsWith('#') && l.includes('%'))
        .map((l) => {
          const m = children ? /^\s*([\d.]+)%\s+[\d.]+%\s+\[[k.]\]\s+(.+)$/.exec(l) : /^\s*([\d.]+)%\s+\[[k.]\]\s+(.+)$/.exec(l);
          return m ? { pct: Number(m[1]), symbol: m[2].trim() } : undefined;
        })
        .filter((x): x is { pct: number; symbol: string } => !!x);
    const top = parse(self, false).slice(0, 20);
    const soft = /softirq|net_rx_action|__netif_receive_skb|process_backlog|veth_|tcf_classify|tcx_|bpf_prog_|__dev_queue_xmit|ip_rcv|ip6_rcv|tcp_v[46]_rcv|ip_forward|br_handle|nf_hook|ipt_do_table|nft_do_chain/;
    const children = parse(await report(true), true).filter((x) => soft.test(x.symbol)).slice(0, 25);
    return { what, ok: true, samples, top, children };
  } catch (e) {
    return { what, ok: false, error: `${(e as Error).message}${err ? `: ${err.slice(0, 300)}` : ''}` };
  }
}

export async function runProfile(o: ProfileOptions): Promise<ProfileDoc> {
  const started = Date.now();
  const tag = o.tag ?? `bp${process.pid % 1000}`;
  const third = o.third ?? process.pid % 250;
  const doc: ProfileDoc = {
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, kernel: os.release(), loadavgAtStart: os.loadavg().map((x) => x.toFixed(2)).join(' ') },
    options: o,
    rows: [],
    perf: [],
    notes: [],
    errors: [],
    seconds: 0,
  };
  const paths = PROFILE_PATHS.filter((p) => o.paths.includes(p.key));
  for (const k of o.paths) if (!PROFILE_PATHS.some((p) => p.key === k)) throw new Error(`unknown profile path ${k} (known: ${PROFILE_PATHS.map((p) => p.key).join(', ')})`);
  let restoreStats: (() => void) | undefined;
  let floor: Floor | undefined;
  let nat: NatEnv | undefined;
  let port = 34500 + (process.pid % 200) * 2;
  const nextPort = () => {
    port += 1;
    if (port > 34999) port = 34500;
    return port;
  };
  try {
    restoreStats = enableBpfStats();
    floor = await makeFloor(tag, third, o.floorAt);
    await widenPorts(floor.clientNs);
    nat = new NatEnv(tag, third, async () => (await findDockerProxy()).path, o.nat);
    await retryDump(() => nat!.setup());
    await widenPorts(nat.ext.ns);
    await widenPorts(nat.client.ns);
    for (const p of paths) {
      // one activation per path (switching costs more than the runs): every round's port published at once
      const ports = o.loads.map(() => Array.from({ length: o.runs }, () => nextPort()));
      let active = false;
      const rowsOfPath: ProfileRow[] = o.loads.map((kind) => ({ path: p.name, family: p.family, load: kind, rounds: [], transactions: NaN, floorUs: NaN, pathUs: NaN, gapUs: NaN, bpfUs: NaN, floorBpfUs: NaN, restUs: NaN, vsFloor: NaN, programs: [] }));
      const errorsOf: string[][] = o.loads.map(() => []);
      try {
        await retryDump(() => nat!.activate('berth', { publish: ports.flat().flatMap((pp) => p.publish(pp)) }));
        active = true;
        if (p.xdp) {
          const dp = Dataplane.openPinned(nat.pinRoot);
          try {
            dp.attachUplink(Number(fs.readFileSync(`/sys/class/net/${nat.ext.hostIf}/ifindex`, 'utf8').trim()), 'xdp');
          } finally {
            dp.close();
          }
        }
        const ids = programIds(nat.pinRoot);
        const idList = Object.values(ids);
        const costs = async <T extends Sample>(n0: number | undefined, f: () => Promise<T>): Promise<{ s: T; programs: ProgCost[]; n: number }> => {
          const before = await readProgStats(idList);
          const s = await f();
          const after = await readProgStats(idList);
          const n = n0 ?? s.count ?? 0;
          if (n <= 0) throw new Error('no transaction completed');
          const programs = Object.entries(ids).map(([key, id]) => {
            const runCnt = after.get(id)!.runCnt - before.get(id)!.runCnt;
            const runTimeNs = after.get(id)!.runTimeNs - before.get(id)!.runTimeNs;
            return { program: PROGRAM_LABELS[key] ?? key, key, runCnt, runTimeNs, runsPerTrans: runCnt / n, nsPerRun: runCnt ? runTimeNs / runCnt : 0, nsPerTrans: runTimeNs / n };
          });
          return { s, programs, n };
        };
        for (let li = 0; li < o.loads.length; li++) {
          const kind = o.loads[li];
          const row = rowsOfPath[li];
          for (let r = 0; r < o.runs; r++) {
            try {
              // the floor, in the same round: the socket hooks sit on the root cgroup and run for
              // the floor's connect() too; what they cost there is measured and taken off the floor
              const fl = await costs(undefined, () => load(kind, floorEndpoints(floor!, p.family, nextPort()), o.seconds));
              const floorBpfUs = fl.programs.reduce((a, x) => a + x.nsPerTrans, 0) / 1000;
              const pp = ports[li][r];
              const { s, programs, n } = await costs(undefined, () => load(kind, p.endpoints(nat!, pp), o.seconds));
              if (s.errors) errorsOf[li].push(`round ${r + 1}: ${s.errors} failed`);
              const bpfUs = programs.reduce((a, x) => a + x.nsPerTrans, 0) / 1000;
              row.rounds.push({ transactions: n, errors: s.errors ?? 0, floorUs: 1e6 / fl.s.value - floorBpfUs, floorBpfUs, pathUs: 1e6 / s.value, bpfUs, programs });
            } catch (e) {
              errorsOf[li].push(`round ${r + 1}: ${(e as Error).message.slice(0, 300)}`);
              log(`${p.key} ${kind}: ${(e as Error).message.slice(0, 300)}`);
            }
          }
        }
      } catch (e) {
        for (const es of errorsOf) es.push(`set-up: ${(e as Error).message.slice(0, 300)}`);
        log(`${p.key}: ${(e as Error).message.slice(0, 300)}`);
      } finally {
        if (active) await retryDump(() => nat!.deactivate()).catch((e: Error) => log(`${p.key}: deactivate: ${e.message}`));
      }
      rowsOfPath.forEach((row, i) => {
        summarizeRow(row);
        if (errorsOf[i].length) row.errors = errorsOf[i];
        doc.rows.push(row);
        log(`${p.key} ${row.load}: ${row.rounds.length}/${o.runs} rounds, ${row.pathUs.toFixed(1)} us vs floor ${row.floorUs.toFixed(1)} us, BPF ${row.bpfUs.toFixed(2)} us`);
      });
    }
    if (o.perf) {
      const file = (n: string) => path.join(os.tmpdir(), `berth-profile-${tag}-${n}.data`);
      const pf = nextPort();
      doc.perf.push(await perfDuring('floor (bare veth), request/response, IPv4, CPU 1', floorEndpoints(floor, 4, pf), o.seconds, file('floor')));
      const pp = nextPort();
      await retryDump(() => nat!.activate('berth', { publish: [`${pp}:${pp}`] }));
      try {
        // a first run on the freshly activated path (neighbours, caches): bounded tries
        for (let i = 0; ; i++) {
          try {
            await load('rr', PROFILE_PATHS[0].endpoints(nat, pp), 1);
            break;
          } catch (e) {
            if (i >= 2) throw e;
          }
        }
        doc.perf.push(await perfDuring('published (berth), request/response, IPv4, CPU 1', PROFILE_PATHS[0].endpoints(nat, pp), o.seconds, file('published')));
      } finally {
        await nat.deactivate();
      }
      if (!process.env.BERTH_PROFILE_KEEP) for (const n of ['floor', 'published']) fs.rmSync(file(n), { force: true });
    }
    doc.notes.push('one CPU: client and server pinned to CPU 1, so a transaction\'s wall time is its CPU time on that CPU; the machine is shared (other work runs on CPU 1 too): ratios within a round mean more than absolute figures.');
    doc.notes.push('rr: connrate rr (one connection, 64 bytes each way, TCP_NODELAY) in both families; conn: connrate client (connect, 64 bytes each way, server closes first). transactions = what connrate counted.');
    doc.notes.push('BPF = the sum over berth\'s programs of run_time_ns delta / transactions (kernel.bpf_stats_enabled=1: the kernel\'s own per-program accounting, which adds two clock reads per run); rest = path - floor - BPF: the extra hops (veth pairs, the host\'s routing of the loopback path) and the kernel work around them, which BPF statistics cannot see; the perf profile names it.');
    doc.notes.push('FLOOR us is the floor\'s transaction time less what berth\'s socket hooks cost it (they attach to the root cgroup and run for the floor\'s connect() too: the column after it, measured the same way).');
    doc.notes.push('perf: samples of CPU 1 while the load ran, only those of connrate (the client and the server: their softirq work runs in their context on one CPU), percent of those.');
    doc.notes.push('the socket hooks attach to the root cgroup: while a loopback path runs they also run for other processes\' connect()/sendmsg() on this machine, so their run counts can exceed the path\'s own.');
  } catch (e) {
    doc.errors.push((e as Error).message.slice(0, 500));
    log((e as Error).message);
  } finally {
    killServers();
    await nat?.teardown().catch((e: Error) => log(`teardown: ${e.message}`));
    await floor?.teardown().catch((e: Error) => log(`teardown: ${e.message}`));
    restoreStats?.();
  }
  doc.seconds = (Date.now() - started) / 1000;
  doc.machine.loadavgAtEnd = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  return doc;
}

function summarizeRow(row: ProfileRow): void {
  const rs = row.rounds;
  if (!rs.length) return;
  const m = (f: (x: ProfileRound) => number) => median(rs.map(f));
  row.transactions = m((x) => x.transactions);
  row.floorUs = m((x) => x.floorUs);
  row.pathUs = m((x) => x.pathUs);
  row.bpfUs = m((x) => x.bpfUs);
  row.floorBpfUs = m((x) => x.floorBpfUs);
  row.gapUs = m((x) => x.pathUs - x.floorUs);
  row.restUs = m((x) => x.pathUs - x.floorUs - x.bpfUs);
  row.vsFloor = m((x) => x.floorUs / x.pathUs);
  row.programs = rs[0].programs.map((p0) => {
    const all = rs.map((x) => x.programs.find((q) => q.key === p0.key)!);
    return {
      program: p0.program,
      key: p0.key,
      runCnt: all.reduce((a, x) => a + x.runCnt, 0),
      runTimeNs: all.reduce((a, x) => a + x.runTimeNs, 0),
      runsPerTrans: median(all.map((x) => x.runsPerTrans)),
      nsPerRun: median(all.filter((x) => x.runCnt > 0).map((x) => x.nsPerRun)) || 0,
      nsPerTrans: median(all.map((x) => x.nsPerTrans)),
    };
  });
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');

export function renderProfile(doc: ProfileDoc): string {
  const out: string[] = [];
  const fam = (r: ProfileRow) => (r.family === 6 ? 'IPv6' : 'IPv4');
  const ld = (r: ProfileRow) => (r.load === 'rr' ? 'request/response' : 'new connections');
  out.push('Where a transaction\'s time goes (one CPU; medians over rounds; us per transaction)');
  out.push(
    table(
      ['PATH', 'FAMILY', 'LOAD', 'TRANS/ROUND', 'FLOOR us', '(HOOKS OFF FLOOR)', 'PATH us', 'VS FLOOR', 'GAP us', 'BPF us', 'REST us (hops + kernel)'],
      doc.rows.map((r) => [r.path, fam(r), ld(r), String(Math.round(r.transactions)), f2(r.floorUs), f2(r.floorBpfUs), f2(r.pathUs), Number.isFinite(r.vsFloor) ? `${r.vsFloor.toFixed(3)}x` : '-', f2(r.gapUs), f2(r.bpfUs), f2(r.restUs)]),
    ),
  );
  out.push('', 'Per program (run_cnt and run_time_ns deltas over the counted transactions; programs that did not run are left out)');
  const rows: string[][] = [];
  for (const r of doc.rows)
    for (const p of r.programs.filter((x) => x.runCnt > 0))
      rows.push([r.path, fam(r), ld(r), p.program, String(p.runCnt), f2(p.runsPerTrans), f1(p.nsPerRun), f1(p.nsPerTrans)]);
  out.push(table(['PATH', 'FAMILY', 'LOAD', 'PROGRAM', 'RUNS', 'RUNS/TRANS', 'NS/RUN', 'NS/TRANS'], rows));
  for (const p of doc.perf) {
    out.push('', `perf record -C 1 -g: ${p.what}${p.samples ? ` (${p.samples} samples)` : ''}`);
    if (!p.ok) {
      out.push(`  not available: ${p.error}`);
      continue;
    }
    out.push('  self time, top symbols:');
    for (const t of p.top ?? []) out.push(`    ${t.pct.toFixed(2).padStart(6)}%  ${t.symbol}`);
    out.push('  including callees, the receive/softirq path and BPF frames (>= 2%):');
    for (const t of p.children ?? []) out.push(`    ${t.pct.toFixed(2).padStart(6)}%  ${t.symbol}`);
  }
  const errs = doc.rows.filter((r) => r.errors?.length);
  if (errs.length || doc.errors.length) {
    out.push('', 'Errors');
    for (const e of doc.errors) out.push(`  ${e}`);
    for (const r of errs) out.push(`  ${r.path} ${fam(r)} ${ld(r)}: ${r.errors!.join('; ')}`);
  }
  if (doc.notes.length) out.push('', 'Notes', ...doc.notes.map((n) => `  - ${n}`));
  out.push('', `profile: ${doc.seconds.toFixed(0)} s`);
  return out.join('\n');
}

export function profileReport(doc: ProfileDoc): string {
  const m = Object.entries(doc.machine).map(([k, v]) => `  ${k}: ${v}`);
  return [`command: ${doc.command}`, `date: ${doc.date}`, 'machine:', ...m, '', renderProfile(doc), ''].join('\n');
}

export function writeProfile(doc: ProfileDoc, json: string): string {
  fs.mkdirSync(path.dirname(path.resolve(json)), { recursive: true });
  fs.writeFileSync(json, JSON.stringify(doc, null, 2));
  const txt = json.replace(/\.json$/, '') + '.txt';
  fs.writeFileSync(txt, profileReport(doc));
  return txt;
}
