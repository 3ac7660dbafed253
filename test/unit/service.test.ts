// The unit install-service writes: ExecStart words quoted for systemd, the
// command line per mode, the template's placeholders filled.
import t from 'tap';
import * as fs from 'node:fs';
import { BERTH_BIN, UNIT_TEMPLATE, renderUnit, serviceArgv, systemdWord } from '../../src/cli/service';

t.test('ExecStart words', async (t) => {
  t.equal(systemdWord('/usr/bin/node'), '/usr/bin/node');
  t.equal(systemdWord('eth0,eth1'), 'eth0,eth1');
  t.equal(systemdWord('/etc/berth/my policy.yaml'), '"/etc/berth/my policy.yaml"');
  t.equal(systemdWord('100%'), '100%%', 'specifiers are doubled');
  t.equal(systemdWord('$HOME'), '$$HOME', 'no variable expansion');
  t.equal(systemdWord('a"b\\c d'), '"a\\"b\\\\c d"');
  t.equal(systemdWord(''), '""');
  t.throws(() => systemdWord('a\nb'), /line break/);
});

t.test('the command line', async (t) => {
  const base = { node: '/usr/bin/node', berthBin: '/opt/berth/bin/berth' };
  t.same(serviceArgv({ ...base, docker: true, uplinks: ['eth0', 'eth1'], policy: '/etc/berth/policy.yaml' }), ['/usr/bin/node', '/opt/berth/bin/berth', 'run', '--docker', '--uplinks', 'eth0,eth1', '--policy', '/etc/berth/policy.yaml']);
  t.same(serviceArgv({ ...base, docker: true, dockerSocket: '/var/run/docker.sock', pinRoot: '/sys/fs/bpf/berth' }), ['/usr/bin/node', '/opt/berth/bin/berth', 'run', '--docker'], 'defaults are left out');
  t.same(
    serviceArgv({ ...base, docker: true, dockerSocket: '/run/d.sock', pinRoot: '/sys/fs/bpf/other', cgroup: '/sys/fs/cgroup', metrics: '0.0.0.0:9469', xdp: true }),
    ['/usr/bin/node', '/opt/berth/bin/berth', '--bpffs', '/sys/fs/bpf/other', '--cgroup', '/sys/fs/cgroup', 'run', '--docker', '--docker-socket', '/run/d.sock', '--metrics', '0.0.0.0:9469', '--xdp'],
  );
  const rel = serviceArgv({ ...base, file: 'examples/demo.yaml' });
  t.same(rel.slice(2), ['run', '-f', `${process.cwd()}/examples/demo.yaml`], 'files become absolute');
  t.throws(() => serviceArgv(base), /needs --docker .* or -f FILE/);
  t.throws(() => serviceArgv({ ...base, file: '/x.yaml', uplinks: ['eth0'] }), /--uplinks is for Docker mode/);
  t.throws(() => serviceArgv({ ...base, file: '/x.yaml', interfaces: [] }), /--interfaces is for Docker mode/);
  t.same(serviceArgv({ ...base, docker: true, uplinks: ['eth0'], interfaces: [] }).slice(2), ['run', '--docker', '--uplinks', 'eth0', '--interfaces', ''], "--interfaces '' (the uplinks alone) is kept");
  t.match(renderUnit(fs.readFileSync(UNIT_TEMPLATE, 'utf8'), { ...base, docker: true, interfaces: ['eth1', 'eth2'] }), /^ExecStart=\/usr\/bin\/node \/opt\/berth\/bin\/berth run --docker --interfaces eth1,eth2$/m);
  t.throws(() => serviceArgv({ ...base, docker: true, file: '/x.yaml' }), /-f\/--file is for standalone mode/);
  t.throws(() => serviceArgv({ node: 'node', berthBin: '/opt/berth/bin/berth', docker: true }), /absolute paths/);
  t.match(serviceArgv({ docker: true })[1], BERTH_BIN, "default: this package's bin/berth");
  t.equal(serviceArgv({ docker: true })[0], process.execPath, "default: this process's node");
});

t.test('the unit', async (t) => {
  const template = fs.readFileSync(UNIT_TEMPLATE, 'utf8');
  t.match(template, /^ExecStart=@EXEC_START@$/m, 'the template has the placeholder');
  const docker = renderUnit(template, { node: '/usr/bin/node', berthBin: '/opt/berth/bin/berth', docker: true, uplinks: ['eth0'], policy: '/etc/berth/p 1.yaml' });
  t.match(docker, /^ExecStart=\/usr\/bin\/node \/opt\/berth\/bin\/berth run --docker --uplinks eth0 --policy "\/etc\/berth\/p 1\.yaml"$/m);
  // at boot berth comes first: its hooks are in place before dockerd restarts the containers
  t.match(docker, /^Before=docker\.service$/m, 'Docker mode: berth starts before dockerd');
  t.notMatch(docker, /^After=.*docker\.service/m, 'never after it (that would leave restarted containers without berth)');
  t.match(docker, /^Wants=network-online\.target docker\.service$/m);
  t.match(docker, /^After=network-online\.target$/m, 'the uplinks are up');
  t.match(docker, /^SyslogIdentifier=berth$/m);
  t.match(docker, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  t.match(docker, /^Restart=always$/m);
  t.match(docker, /^Type=notify$/m, 'READY=1 says when dockerd, ordered after berth, may start');
  t.match(docker, /^NotifyAccess=main$/m, 'only berth itself notifies');
  t.match(docker, /^WantedBy=multi-user\.target$/m);
  t.notMatch(docker, /KillMode/);
  t.notMatch(docker, /@[A-Z_]+@|^#@/m, 'no placeholder and no template note is left');
  const standalone = renderUnit(template, { node: '/usr/bin/node', berthBin: '/opt/berth/bin/berth', file: '/etc/berth/topology.yaml' });
  t.match(standalone, /^ExecStart=\/usr\/bin\/node \/opt\/berth\/bin\/berth run -f \/etc\/berth\/topology\.yaml$/m);
  t.match(standalone, /^KillMode=process$/m, "the containers' commands outlive a restart");
  t.match(standalone, /^After=network-online\.target$/m);
  t.throws(() => renderUnit('ExecStart=/bin/true\n', { docker: true }), /no @EXEC_START@/);
  t.throws(() => renderUnit('ExecStart=@EXEC_START@\n@NEW_THING@\n', { docker: true }), /placeholder @NEW_THING@ not filled/);
});
