// berth doctor's judgement, fed made-up facts: which rows are ok, warn or
// fail, what they say and what they tell the user to do; and the parsers of
// the tools' output it reads.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  CheckRow,
  DockerFacts,
  DoctorFacts,
  TOOLS,
  ToolFact,
  bpftoolListsTcx,
  dockerSetting,
  dockerdFlag,
  dockerdHosts,
  evaluate,
  failures,
  findDockerd,
  formatDoctor,
  missingCaps,
  parseBpftoolLinks,
  parseBpftoolNet,
  parseCapEff,
  xdpPrograms,
  parseIptablesSave,
  parseKernelVersion,
  parseNftRuleset,
  parseTcFilters,
  refusal,
} from '../../src/observe/doctor';
import { NO_CGROUP2 } from '../../src/platform/cgroup';

const ALL_CAPS = parseCapEff('Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n')!;

function facts(over: Partial<DoctorFacts> = {}): DoctorFacts {
  return {
    kernel: '6.18.4-amd64',
    btf: true,
    tcx: { ok: true },
    bpffs: true,
    pinRoot: '/sys/fs/bpf/berth',
    pinned: false,
    cgroup: { available: true, cgroup: '/sys/fs/cgroup', source: 'mountinfo' },
    uid: 0,
    capEff: ALL_CAPS,
    addon: { libbpf: '1.1.2', path: '/opt/berth/build/Release/berth_native.node' },
    tools: TOOLS.map((spec) => ({ spec, path: `/usr/bin/${spec.name}` })),
    ...over,
  };
}

const byCheck = (rows: CheckRow[], check: string): CheckRow => {
  const r = rows.find((x) => x.check === check);
  if (!r) throw new Error(`no row ${check}: ${rows.map((x) => x.check).join(', ')}`);
  return r;
};
const tools = (f: (t: ToolFact) => ToolFact): ToolFact[] => TOOLS.map((spec) => f({ spec, path: `/usr/bin/${spec.name}` }));

t.test('a host with everything: every row ok, nothing to fix', async (t) => {
  const rows = evaluate(facts());
  t.same(rows.filter((r) => r.status !== 'ok'), []);
  t.ok(rows.every((r) => r.fix === ''), 'ok rows carry no fix');
  t.same(
    rows.map((r) => r.check),
    ['kernel', 'BTF', 'tcx', 'XDP', 'bpffs', 'cgroup v2', 'privileges', 'libbpf (native addon)', 'tool: nsenter', 'tool: busybox', 'tool: ping'],
  );
  t.match(byCheck(rows, 'libbpf (native addon)').found, 'libbpf 1.1.2, addon /opt/berth/build/Release/berth_native.node');
  t.equal(refusal(rows), undefined);
  t.match(formatDoctor(rows), /^CHECK\s+STATUS\s+FOUND\s+FIX/);
  t.match(formatDoctor(rows), /berth can work here$/);
});

t.test('kernel, BTF, tcx, bpffs', async (t) => {
  const old = evaluate(facts({ kernel: '6.1.0-18-amd64', tcx: { ok: false } }));
  t.match(byCheck(old, 'kernel'), { status: 'fail', found: '6.1.0-18-amd64 is older than 6.6', fix: /6\.6 or later/ });
  t.match(byCheck(old, 'tcx'), { status: 'fail', found: 'the kernel refuses tcx links' });
  t.match(byCheck(evaluate(facts({ kernel: '5.14.0-427.el9', tcx: { ok: true } })), 'kernel'), { status: 'warn', found: /but it has tcx/ }, 'a backport with tcx is a warning');
  t.match(byCheck(evaluate(facts({ tcx: { ok: false, error: 'EPERM' } })), 'tcx'), { status: 'fail', found: 'not probed: EPERM' });
  t.match(byCheck(evaluate(facts({ btf: false })), 'BTF'), { status: 'fail', fix: /CONFIG_DEBUG_INFO_BTF/ });
  t.match(byCheck(evaluate(facts({ bpffs: false })), 'bpffs'), { status: 'fail', fix: 'mount -t bpf bpf /sys/fs/bpf (and add it to /etc/fstab: bpf /sys/fs/bpf bpf defaults 0 0)' });
  t.same(parseKernelVersion('6.18.44-fc-v1045'), [6, 18]);
  t.equal(parseKernelVersion('weird'), undefined);
  t.equal(byCheck(evaluate(facts()), 'XDP').status, 'ok', 'XDP is informational');
});

t.test('cgroup v2 missing is a warning, not a failure', async (t) => {
  const rows = evaluate(facts({ cgroup: { available: false, reason: NO_CGROUP2 } }));
  t.match(byCheck(rows, 'cgroup v2'), { status: 'warn', found: /no cgroup2 mount in \/proc\/self\/mountinfo.*only the host's own connections/, fix: /--cgroup DIR/ });
  t.equal(failures(rows).length, 0);
  const sub = evaluate(facts({ cgroup: { available: true, cgroup: '/sys/fs/cgroup', source: 'mountinfo', note: 'shows only /docker/x' } }));
  t.equal(byCheck(sub, 'cgroup v2').status, 'warn', 'a subtree mount is a warning');
  t.match(byCheck(evaluate(facts({ cgroup: { available: true, cgroup: '/tmp/cg', source: 'option' } })), 'cgroup v2').found, '/tmp/cg (--cgroup)');
});

t.test('privileges from CapEff', async (t) => {
  t.same(missingCaps(ALL_CAPS), []);
  // CAP_NET_ADMIN and CAP_SYS_ADMIN, no CAP_BPF (a container's default set has none of them)
  const noBpf = (1n << 12n) | (1n << 21n);
  t.same(missingCaps(noBpf), ['CAP_BPF']);
  const rows = evaluate(facts({ capEff: noBpf }));
  t.match(byCheck(rows, 'privileges'), { status: 'fail', found: /^root without CAP_BPF \(CapEff 0000000000201000\)/, fix: /root/ });
  t.match(byCheck(evaluate(facts({ uid: 1000, capEff: 0n })), 'privileges').found, 'uid 1000 without CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF');
  t.match(byCheck(evaluate(facts({ uid: 1000, capEff: ALL_CAPS })), 'privileges'), { status: 'ok', found: /^uid 1000 with/ }, 'capabilities, not the uid, decide');
  t.equal(parseCapEff('no such line'), undefined);
});

t.test('the addon', async (t) => {
  const rows = evaluate(facts({ addon: { error: 'berth: cannot load the native addon.\n  /x: not found' }, tcx: { ok: false, error: 'the native addon does not load' } }));
  t.match(byCheck(rows, 'libbpf (native addon)'), { status: 'fail', found: 'berth: cannot load the native addon.; /x: not found', fix: /npm run build/ });
});

t.test('tools: vital ones fail with the package to install, the others warn', async (t) => {
  const noNsenter0 = evaluate(facts({ tools: tools((x) => (x.spec.name === 'nsenter' ? { spec: x.spec } : x)) }));
  t.match(byCheck(noNsenter0, 'tool: nsenter'), { status: 'fail', fix: 'apt-get install util-linux' });
  const offPath = evaluate(facts({ tools: tools((x) => (x.spec.name === 'nsenter' ? { spec: x.spec, offPath: '/usr/sbin/nsenter' } : x)) }));
  t.match(byCheck(offPath, 'tool: nsenter'), { status: 'fail', found: /\/usr\/sbin\/nsenter, but not on PATH/, fix: 'add /usr/sbin to PATH' });
  t.notOk(evaluate(facts()).some((r) => r.check === 'tool: ip'), 'no ip: berth talks rtnetlink itself');
  const noDemo = evaluate(facts({ tools: tools((x) => (x.spec.name === 'busybox' ? { spec: x.spec } : x)) }));
  t.match(byCheck(noDemo, 'tool: busybox'), { status: 'warn', found: /only needed for berth demo/, fix: 'apt-get install busybox-static' });
  const noNsenter = facts({ tools: tools((x) => (x.spec.name === 'nsenter' ? { spec: x.spec } : x)) });
  t.equal(byCheck(evaluate(noNsenter, 'docker'), 'tool: nsenter').status, 'warn', 'nsenter: standalone mode only (run: commands)');
  t.match(byCheck(evaluate(noNsenter, 'standalone'), 'tool: nsenter'), { status: 'fail', fix: 'apt-get install util-linux' });
});

t.test('the fail rows, on one line, are what up and run refuse with', async (t) => {
  const rows = evaluate(facts({ btf: false, tools: tools((x) => (x.spec.name === 'nsenter' ? { spec: x.spec } : x)) }));
  const msg = refusal(rows)!;
  t.notMatch(msg, /\n/, 'one line');
  t.match(msg, /^cannot start: BTF: .*\(fix: a kernel built with CONFIG_DEBUG_INFO_BTF=y.*\); tool: nsenter: not found; needed for .*\(fix: apt-get install util-linux\); 'berth doctor' shows every check$/);
  t.match(formatDoctor(rows), /berth cannot work here: 2 check\(s\) failed$/);
});

t.test('programs already on the interfaces', async (t) => {
  const rows = evaluate(
    facts({
      attach: {
        source: '--uplinks',
        missing: ['eth9'],
        interfaces: [
          { ifname: 'eth0', programs: [{ hook: 'tcx/ingress', id: 7, name: 'berth_up_in' }], method: 'bpftool net', tcxVisible: true },
          { ifname: 'eth1', programs: [{ hook: 'tcx/ingress', id: 9, name: 'cil_from_netdev' }, { hook: 'xdp (driver)', id: 10, name: 'cil_xdp_entry' }], method: 'bpftool net', tcxVisible: true },
          { ifname: 'eth2', programs: [], method: '', tcxVisible: false, error: 'ip failed' },
        ],
        unplacedTcx: [{ hook: 'tcx/?', id: 11, name: 'berth_veth_ingr' }],
      },
    }),
  );
  t.match(byCheck(rows, 'programs on eth0'), { status: 'ok', found: "berth's own: berth_up_in (tcx/ingress, prog 7) [bpftool net] (--uplinks)" });
  t.match(byCheck(rows, 'programs on eth1'), { status: 'warn', found: /^foreign: cil_from_netdev \(tcx\/ingress, prog 9\), cil_xdp_entry/, fix: /Cilium.*--xdp from attaching.*--uplinks/ });
  t.match(byCheck(rows, 'programs on eth2'), { status: 'warn', found: 'not checked: ip failed' });
  t.match(byCheck(rows, 'programs on eth9'), { status: 'warn', found: /does not exist/ });
  t.match(byCheck(rows, 'tcx programs'), { status: 'ok', found: /1 tcx link\(s\), all berth's/ });
  const foreign = evaluate(facts({ attach: { source: 'auto-detected', missing: [], interfaces: [], unplacedTcx: [{ hook: 'tcx/?', id: 12, name: 'cil_to_netdev' }] } }));
  t.match(byCheck(foreign, 'tcx programs'), { status: 'warn', found: /foreign tcx link\(s\) on this host: cil_to_netdev/ });
  const unchecked = evaluate(facts({ attach: { source: 'auto-detected', missing: [], interfaces: [], tcxUnchecked: 'bpftool is not installed' } }));
  t.match(byCheck(unchecked, 'tcx programs'), { status: 'warn', fix: /apt-get install bpftool/ });
  t.equal(failures(rows).length, 0, 'never a failure');
});

t.test('a named L3 device fails: up and run would refuse it', async (t) => {
  const reason = 'tun0 is an L3 device (link type none, tun): its packets carry no Ethernet header, which berth_up_in needs';
  const rows = evaluate(facts({ attach: { source: '--interfaces', missing: [], interfaces: [], refused: [{ ifname: 'tun0', from: 'interfaces', reason }] } }));
  t.match(byCheck(rows, 'interface tun0'), { status: 'fail', found: reason, fix: 'leave tun0 out of --interfaces (berth up/run refuse it)' });
  t.equal(failures(rows).length, 1);
});

const docker = (over: Partial<DockerFacts> = {}): DockerFacts => ({
  socket: '/var/run/docker.sock',
  configFile: '/etc/docker/daemon.json',
  process: { pid: 42, args: ['--iptables=false', '--ip6tables=false', '--userland-proxy=false', '--live-restore'] },
  info: { ServerVersion: '29.0.1' },
  firewall: { tool: 'iptables-save', chains: [], forwardDrop: false },
  ...over,
});

t.test("dockerd's settings", async (t) => {
  const good = evaluate(facts({ docker: docker() }), 'docker');
  t.same(good.filter((r) => r.status !== 'ok').map((r) => r.check), []);
  t.match(byCheck(good, 'docker: iptables').found, 'dockerd --iptables=false (pid 42)');
  t.match(byCheck(good, 'docker: live-restore').found, 'dockerd --live-restore=true (pid 42)');
  t.match(byCheck(good, 'docker: dockerd').found, 'pid 42, Docker 29.0.1, API at /var/run/docker.sock');

  // daemon.json alone
  const cfg = evaluate(facts({ docker: docker({ process: { pid: 7, args: [] }, config: { iptables: false, 'userland-proxy': false, 'live-restore': true, ip6tables: true } }) }), 'docker');
  t.match(byCheck(cfg, 'docker: iptables'), { status: 'ok', found: '"iptables": false in /etc/docker/daemon.json' });
  t.match(byCheck(cfg, 'docker: ip6tables'), { status: 'warn', found: /"ip6tables": true in \/etc\/docker\/daemon.json: dockerd programs its own ip6tables rules/, fix: 'set "ip6tables": false in /etc/docker/daemon.json (or dockerd --ip6tables=false) and restart docker' });
  t.notOk(refusal(cfg), 'ip6tables on warns, it does not refuse');
  t.match(byCheck(good, 'docker: ip6tables'), { status: 'ok', found: 'dockerd --ip6tables=false (pid 42)' });

  // a running dockerd with its own rules: berth cannot work
  const own = evaluate(facts({ docker: docker({ process: { pid: 7, args: ['-H', 'fd://'] } }) }), 'docker');
  t.match(byCheck(own, 'docker: iptables'), { status: 'fail', found: /not set \(Docker's default: true\): dockerd programs its own iptables rules/, fix: 'set "iptables": false in /etc/docker/daemon.json (or dockerd --iptables=false) and restart docker' });
  t.match(byCheck(own, 'docker: userland-proxy'), { status: 'warn', fix: /"userland-proxy": false/ });
  t.match(byCheck(own, 'docker: live-restore'), { status: 'warn', fix: /"live-restore": true/ });
  t.match(byCheck(own, 'docker: ip6tables'), { status: 'warn', found: /not set \(Docker's default: true\): dockerd programs its own ip6tables rules/ }, 'Docker 29: ip6tables on by default');
  const old20 = evaluate(facts({ docker: docker({ process: { pid: 7, args: ['--iptables=false'] }, info: { ServerVersion: '20.10.24+dfsg1' } }) }), 'docker');
  t.match(byCheck(old20, 'docker: ip6tables'), { status: 'ok', found: "not set (Docker's default: false)" }, 'Docker 20.10: off by default');
  const unknown = evaluate(facts({ docker: docker({ process: { pid: 7, args: ['--iptables=false'] }, info: undefined }) }), 'docker');
  t.match(byCheck(unknown, 'docker: ip6tables'), { status: 'warn', found: /depends on its version.*on from Docker 27/ });
  t.match(refusal(own), /docker: iptables/);

  // a flag beats the file
  t.equal(dockerSetting(docker({ process: { pid: 1, args: ['--iptables=true'] }, config: { iptables: false } }), 'iptables', true).value, true);
  // the API says whether live-restore is on when nothing else does
  t.match(dockerSetting(docker({ process: { pid: 1, args: [] }, info: { LiveRestoreEnabled: true } }), 'live-restore', false), { value: true, source: 'api' });

  // dockerd not running: nothing can be confirmed, nothing fails
  const down = evaluate(facts({ docker: docker({ process: undefined, info: undefined, infoError: 'no socket at /var/run/docker.sock' }) }), 'docker');
  t.match(byCheck(down, 'docker: dockerd'), { status: 'warn', found: /not running/ });
  t.match(byCheck(down, 'docker: iptables'), { status: 'warn', found: /dockerd is not running/ });
  t.equal(failures(down).length, 0);
  // its process out of sight (another pid namespace), the API answering
  t.match(byCheck(evaluate(facts({ docker: docker({ process: undefined }) }), 'docker'), 'docker: iptables'), { status: 'warn', found: /command line is not visible/ });
  t.match(byCheck(evaluate(facts({ docker: docker({ configError: 'Unexpected token' }) }), 'docker'), 'docker: daemon.json').status, 'warn');
});

t.test("Docker's chains and the FORWARD policy", async (t) => {
  const left = evaluate(facts({ docker: docker({ firewall: { tool: 'iptables-save', chains: ['filter/DOCKER', 'filter/DOCKER-USER'], forwardDrop: true } }) }), 'docker');
  t.match(byCheck(left, "docker: Docker's iptables chains"), { status: 'warn', found: 'filter/DOCKER, filter/DOCKER-USER (iptables-save): left over from a run with its own rules', fix: /reboot/ });
  t.match(byCheck(left, 'docker: FORWARD policy'), { status: 'warn', found: /^DROP/, fix: /iptables -P FORWARD ACCEPT/ });
  const none = evaluate(facts({ docker: docker({ firewall: { chains: [], forwardDrop: false, error: 'neither iptables-save nor nft is installed' } }) }), 'docker');
  t.match(byCheck(none, "docker: Docker's iptables chains"), { status: 'warn', found: /not checked/ });

  const save = [
    '# Generated by iptables-nft-save v1.8.9',
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':DOCKER - [0:0]',
    'COMMIT',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':DOCKER - [0:0]',
    ':DOCKER-ISOLATION-STAGE-1 - [0:0]',
    ':DOCKER-ISOLATION-STAGE-2 - [0:0]',
    ':DOCKER-USER - [0:0]',
    ':DOCKERISH - [0:0]',
    '-A FORWARD -j DOCKER-USER',
    'COMMIT',
  ].join('\n');
  t.same(parseIptablesSave(save), {
    chains: ['filter/DOCKER', 'filter/DOCKER-ISOLATION-STAGE-1', 'filter/DOCKER-ISOLATION-STAGE-2', 'filter/DOCKER-USER', 'nat/DOCKER'],
    forwardDrop: true,
  });
  t.same(parseIptablesSave('*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n'), { chains: [], forwardDrop: false });
  const nft = `table ip filter {
\tchain FORWARD {
\t\ttype filter hook forward priority filter; policy drop;
\t\tcounter packets 0 bytes 0 jump DOCKER-USER
\t}
\tchain DOCKER-USER {
\t}
}
table ip nat {
\tchain DOCKER {
\t}
}
`;
  t.same(parseNftRuleset(nft), { chains: ['filter/DOCKER-USER', 'nat/DOCKER'], forwardDrop: true });
  t.same(parseNftRuleset('table inet f {\n\tchain fwd {\n\t\ttype filter hook forward priority 0; policy accept;\n\t}\n}\n'), { chains: [], forwardDrop: false });
});

t.test("dockerd's command line", async (t) => {
  t.equal(dockerdFlag(['--iptables=false'], 'iptables'), 'false');
  t.equal(dockerdFlag(['--live-restore'], 'live-restore'), 'true');
  t.equal(dockerdFlag(['--iptables-foo'], 'iptables'), undefined);
  t.same(dockerdHosts(['-H', 'unix:///a.sock', '--host=tcp://0:2375', '-Hfd://', '--host', '/b.sock']), ['unix:///a.sock', 'tcp://0:2375', 'fd://', '/b.sock']);

  const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-proc-'));
  t.teardown(() => fs.rmSync(proc, { recursive: true, force: true }));
  const fake = (pid: number, comm: string, argv: string[]): void => {
    fs.mkdirSync(path.join(proc, String(pid)));
    fs.writeFileSync(path.join(proc, String(pid), 'comm'), `${comm}\n`);
    fs.writeFileSync(path.join(proc, String(pid), 'cmdline'), argv.join('\0') + '\0');
  };
  fake(10, 'dockerd', ['/usr/bin/dockerd', '-H', 'fd://', '--containerd=/run/containerd/containerd.sock']);
  fake(11, 'dockerd', ['/usr/bin/dockerd', '-H', 'unix:///tmp/private/docker.sock', '--iptables=false']);
  fake(12, 'bash', ['bash', '-H', 'unix:///tmp/private/docker.sock']);
  t.same(findDockerd('/tmp/private/docker.sock', proc), { pid: 11, args: ['-H', 'unix:///tmp/private/docker.sock', '--iptables=false'] });
  t.equal(findDockerd('/var/run/docker.sock', proc)?.pid, 10, 'fd:// serves the default socket');
  t.equal(findDockerd('/tmp/other.sock', proc), undefined);
});

t.test('tool output parsers', async (t) => {
  const net = '[{"xdp":[{"devname":"eth0","ifindex":2,"mode":"generic","id":416}],"tc":[{"devname":"eth0","ifindex":2,"kind":"clsact/ingress","name":"berth_veth_ingr:[411]","id":411},{"devname":"eth0","ifindex":2,"kind":"tcx/egress","name":"cil_to_netdev","prog_id":77,"link_id":5}],"flow_dissector":[]}]';
  t.same(parseBpftoolNet(net, new Map([[416, 'berth_xdp_up']])), [
    { hook: 'xdp (generic)', id: 416, name: 'berth_xdp_up' },
    { hook: 'clsact/ingress', id: 411, name: 'berth_veth_ingr' },
    { hook: 'tcx/egress', id: 77, name: 'cil_to_netdev' },
  ]);
  const tc = '[{"protocol":"all","pref":7,"kind":"bpf","chain":0},{"protocol":"all","pref":7,"kind":"bpf","chain":0,"options":{"handle":"0x1","bpf_name":"x.o:[tc]","prog":{"id":411,"name":"cil_from_netdev"}}}]';
  t.same(parseTcFilters(tc, 'ingress'), [{ hook: 'clsact/ingress', id: 411, name: 'cil_from_netdev' }]);
  t.same(parseTcFilters('', 'egress'), []);
  const names = new Map([
    [129, 'berth_veth_ingr'],
    [130, 'cil_from_netdev'],
  ]);
  const links = parseBpftoolLinks('[{"id":8,"type":11,"prog_id":129},{"id":9,"type":"tcx","prog_id":130,"ifindex":4,"attach_type":"tcx_ingress"},{"id":105,"type":"xdp","prog_id":416}]', names);
  t.same(links.unplaced, [{ hook: 'tcx/?', id: 129, name: 'berth_veth_ingr' }]);
  t.same([...links.placed], [[4, [{ hook: 'tcx/ingress', id: 130, name: 'cil_from_netdev' }]]]);
  t.equal(bpftoolListsTcx('7.1.0'), false);
  t.equal(bpftoolListsTcx('v7.3.0'), true);
  t.equal(bpftoolListsTcx('8.0'), true);
});

t.test("xdpPrograms: a link's IFLA_XDP as attached programs", async (t) => {
  const x = (o: Partial<{ attached: number; progId: number; drvProgId: number; skbProgId: number; hwProgId: number }>) =>
    ({ xdp: { attached: 0, progId: 0, drvProgId: 0, skbProgId: 0, hwProgId: 0, ...o } });
  t.same(xdpPrograms({ xdp: null }), [], 'no IFLA_XDP');
  t.same(xdpPrograms(x({})), [], 'nothing attached');
  t.same(xdpPrograms(x({ attached: 2, progId: 7, skbProgId: 7 }), new Map([[7, 'berth_xdp']])), [{ hook: 'xdp (generic)', id: 7, name: 'berth_xdp' }]);
  t.same(xdpPrograms(x({ attached: 1, progId: 9 })), [{ hook: 'xdp (driver)', id: 9, name: '?' }], 'older kernels: only the prog id and the mode');
  t.same(xdpPrograms(x({ attached: 4, drvProgId: 3, skbProgId: 4 })).map((p) => p.hook), ['xdp (driver)', 'xdp (generic)'], 'several at once');
});
