import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, DEFAULT_CONFIG_PATH, DEFAULT_SETTINGS, loadConfig, parseConfig } from '../../src/domain/config';
import { cidrContains, cidrOverlaps, formatIPv4, parseCidr, parseIPv4 } from '../../src/domain/ipv4';
import { externalVethName, hostVethName } from '../../src/domain/names';

/** Asserts that parsing `text` throws a ConfigError for `field` whose reason matches `reason`. */
function rejects(t: Test, text: string, field: string, reason: RegExp, name?: string): void {
  let err: unknown;
  try {
    parseConfig(text, 'test.yaml');
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof ConfigError, `${name ?? field}: throws ConfigError`);
  if (!(err instanceof ConfigError)) {
    t.fail(`unexpected: ${String(err)}`);
    return;
  }
  t.equal(err.field, field, `${name ?? field}: field`);
  t.match(err.reason, reason, `${name ?? field}: reason`);
  t.ok(err.message.startsWith(`test.yaml: ${field}: `), `${name ?? field}: message names source and field: ${err.message}`);
}

const net = (extra = '') => `networks:\n  - name: front\n    subnet: 10.88.0.0/24\n${extra}`;

t.test('ipv4 helpers', async (t) => {
  t.equal(parseIPv4('10.88.0.1'), 0x0a580001);
  t.equal(parseIPv4('255.255.255.255'), 0xffffffff);
  t.equal(parseIPv4('256.0.0.1'), null);
  t.equal(parseIPv4('1.2.3'), null);
  t.equal(parseIPv4('01.2.3.4'), null);
  t.equal(formatIPv4(0xc0a80101), '192.168.1.1');
  t.same(parseCidr('10.0.0.0/8'), { addr: 0x0a000000, prefixLen: 8 });
  t.equal(parseCidr('10.0.0.0/33'), null);
  t.ok(cidrContains(parseCidr('10.88.0.0/24')!, parseIPv4('10.88.0.255')!));
  t.notOk(cidrContains(parseCidr('10.88.0.0/24')!, parseIPv4('10.88.1.0')!));
  t.ok(cidrOverlaps(parseCidr('10.0.0.0/8')!, parseCidr('10.88.0.0/24')!));
  t.notOk(cidrOverlaps(parseCidr('10.88.0.0/24')!, parseCidr('10.89.0.0/24')!));
  t.match(hostVethName('web'), /^bth[0-9a-f]{8}$/);
  t.equal(hostVethName('web'), hostVethName('web'));
  t.not(hostVethName('web'), hostVethName('db'));
});

t.test('the demo file parses', async (t) => {
  const cfg = loadConfig(DEFAULT_CONFIG_PATH);
  t.same(
    cfg.networks.map((n) => [n.name, n.subnetCidr, n.bridge, n.gateway, n.icc]),
    [
      ['front', '10.88.0.0/24', 'berth-front', '10.88.0.1', true],
      ['back', '10.89.0.0/24', 'berth-back', '10.89.0.1', false],
    ],
  );
  t.same(
    cfg.containers.map((c) => [c.name, c.network, c.ip]),
    [
      ['web', 'front', '10.88.0.10'],
      ['client', 'front', '10.88.0.2'],
      ['db', 'back', '10.89.0.10'],
      ['cache', 'back', '10.89.0.2'],
    ],
  );
  t.equal(cfg.containers[0]!.run?.[1], 'sh');
  t.same(cfg.networks.map((n) => [n.masquerade, n.internal]), [[true, false], [true, false]]);
  t.same(cfg.containers[0]!.publish, [
    { hostIp: '0.0.0.0', hostPort: 8080, containerPort: 80, proto: 'tcp' },
    { hostIp: '127.0.0.1', hostPort: 8081, containerPort: 80, proto: 'tcp' },
  ]);
  t.same(cfg.containers[1]!.publish, []);
  t.equal(cfg.externals.length, 1);
  const w = cfg.externals[0]!;
  t.same([w.name, w.address, w.prefixLen, w.subnetCidr, w.hostAddress, w.hostIfname], ['world', '10.250.0.2', 24, '10.250.0.0/24', '10.250.0.1', externalVethName('world')]);
  t.ok(w.run?.join(' ').includes('httpd'), 'world runs an httpd');
  t.same(cfg.uplinks, [externalVethName('world')], 'uplinks name the external host veth');
  t.same(cfg.settings, DEFAULT_SETTINGS);
});

t.test('defaults', async (t) => {
  const cfg = parseConfig(`
networks:
  - name: front
    subnet: 10.88.0.0/24
  - name: other
    subnet: 10.90.0.0/29
    gateway: 10.90.0.6
    icc: false
containers:
  - name: a
    network: front
  - name: b
    network: front
    ip: 10.88.0.3
  - name: c
    network: front
  - name: d
    network: front
    ip: 10.88.0.2
  - name: e
    network: front
  - name: f
    network: other
  - name: g
    network: other
    run: [sleep, "100"]
`);
  const [front, other] = cfg.networks;
  t.same(front, {
    name: 'front',
    ipv4: true,
    subnet: { addr: '10.88.0.0', prefixLen: 24 },
    subnetCidr: '10.88.0.0/24',
    bridge: 'berth-front',
    gateway: '10.88.0.1',
    ipv6: false,
    icc: true,
    masquerade: true,
    internal: false,
    gatewayMode: 'nat',
    gatewayMode6: 'nat',
  });
  t.equal(other!.gateway, '10.90.0.6');
  t.equal(other!.icc, false);
  // explicit ips (.3, .2) are reserved first; auto ones fill .4, .5, .6 in file order
  t.same(
    cfg.containers.map((c) => c.ip),
    ['10.88.0.4', '10.88.0.3', '10.88.0.5', '10.88.0.2', '10.88.0.6', '10.90.0.1', '10.90.0.2'],
  );
  t.notOk('run' in cfg.containers[0]!, 'run omitted when not given');
  t.notOk('ip6' in cfg.containers[0]!, 'no ip6 on a network without subnet6');
  t.notOk('subnet6' in front! || 'gateway6' in front! || 'subnet6Cidr' in front!, 'no IPv6 fields on an IPv4-only network');
  t.same(cfg.containers[6]!.run, ['sleep', '100']);

  const empty = parseConfig('');
  t.same(empty, { networks: [], containers: [], externals: [], settings: DEFAULT_SETTINGS }, 'empty file is an empty config');
  t.notOk('uplinks' in empty, 'uplinks absent when not given (controller picks)');
  t.same(cfg.containers[0]!.publish, [], 'publish defaults to []');
});

t.test('result is deeply frozen', async (t) => {
  const cfg = parseConfig(`${net()}containers:\n  - name: a\n    network: front\n    run: [sleep, "1"]\n`);
  t.ok(Object.isFrozen(cfg));
  t.ok(Object.isFrozen(cfg.networks));
  t.ok(Object.isFrozen(cfg.networks[0]));
  t.ok(Object.isFrozen(cfg.networks[0]!.subnet));
  t.ok(Object.isFrozen(cfg.containers[0]));
  t.ok(Object.isFrozen(cfg.containers[0]!.run));
  t.throws(() => {
    (cfg.containers[0] as { ip: string }).ip = '1.2.3.4';
  }, TypeError);
});

t.test('invalid configs name the field', async (t) => {
  rejects(t, `networks:\n  - subnet: 10.88.0.0/24\n`, 'networks[0].name', /required/, 'missing network name');
  rejects(t, `${net()}containers:\n  - network: front\n`, 'containers[0].name', /required/, 'missing container name');
  rejects(t, `networks:\n  - name: Front\n    subnet: 10.88.0.0/24\n`, 'networks[0].name', /invalid name/, 'bad name');
  rejects(
    t,
    `${net()}  - name: front\n    subnet: 10.89.0.0/24\n`,
    'networks[1].name',
    /duplicate network name/,
    'duplicate network names',
  );
  rejects(
    t,
    `${net()}containers:\n  - name: a\n    network: front\n  - name: a\n    network: front\n`,
    'containers[1].name',
    /duplicate container name/,
    'duplicate container names',
  );
  rejects(t, `networks:\n  - name: n\n    subnet: 10.88.0/24\n`, 'networks[0].subnet', /invalid IPv4 CIDR/, 'bad CIDR');
  rejects(t, `networks:\n  - name: n\n    subnet: 10.88.0.0/31\n`, 'networks[0].subnet', /between 8 and 30/, 'prefix too long');
  rejects(t, `networks:\n  - name: n\n    subnet: 10.88.0.5/24\n`, 'networks[0].subnet', /host bits/, 'host bits set');
  rejects(
    t,
    `${net()}  - name: b\n    subnet: 10.88.0.128/25\n`,
    'networks[1].subnet',
    /overlaps .*front/,
    'overlapping subnets',
  );
  rejects(t, net('    gateway: 10.89.0.1\n'), 'networks[0].gateway', /outside/, 'gateway outside subnet');
  rejects(t, net('    gateway: 10.88.0.255\n'), 'networks[0].gateway', /broadcast/, 'gateway is broadcast');
  rejects(t, net('    bridge: berth-much-too-long\n'), 'networks[0].bridge', /1\.\.15/, 'bridge name too long');
  rejects(t, net('    bridge: "a b"\n'), 'networks[0].bridge', /whitespace/, 'bridge name with space');
  rejects(
    t,
    `${net()}  - name: b\n    subnet: 10.89.0.0/24\n    bridge: berth-front\n`,
    'networks[1].bridge',
    /duplicate bridge/,
    'duplicate bridge',
  );
  rejects(t, net('    icc: "yes"\n'), 'networks[0].icc', /true or false/, 'icc not boolean');
  rejects(
    t,
    `${net()}containers:\n  - name: a\n    network: front\n    ip: 10.89.0.5\n`,
    'containers[0].ip',
    /outside the subnet/,
    'ip outside subnet',
  );
  rejects(
    t,
    `${net()}containers:\n  - name: a\n    network: front\n    ip: 10.88.0.9\n  - name: b\n    network: front\n    ip: 10.88.0.9\n`,
    'containers[1].ip',
    /duplicate address/,
    'duplicate ip',
  );
  rejects(
    t,
    `${net()}containers:\n  - name: a\n    network: front\n    ip: 10.88.0.1\n`,
    'containers[0].ip',
    /gateway/,
    'ip == gateway',
  );
  rejects(
    t,
    `${net()}containers:\n  - name: a\n    network: front\n    ip: 10.88.0.0\n`,
    'containers[0].ip',
    /network address/,
    'ip == network address',
  );
  rejects(t, `${net()}containers:\n  - name: a\n    network: back\n`, 'containers[0].network', /unknown network "back"/, 'unknown network');
  rejects(t, net('    colour: red\n'), 'networks[0].colour', /unknown field/, 'unknown network field');
  rejects(t, `${net()}containers:\n  - name: a\n    network: front\n    image: x\n`, 'containers[0].image', /unknown field/, 'unknown container field');
  rejects(t, `${net()}volumes: []\n`, 'volumes', /unknown field/, 'unknown top-level field');
  rejects(
    t,
    `networks:\n  - name: n\n    subnet: 10.88.0.0/30\ncontainers:\n  - name: a\n    network: n\n  - name: b\n    network: n\n`,
    'containers[1].ip',
    /no free address/,
    'subnet exhausted',
  );
  rejects(t, `networks: [\n  - name: x\n`, '', /YAML/, 'YAML syntax error');
  rejects(t, `networks:\n  - name: a\n    name: b\n`, '', /YAML/, 'duplicate YAML key');
  rejects(t, `${net()}containers:\n  - name: a\n    network: front\n    run: sleep 10\n`, 'containers[0].run', /list of strings/, 'run not a list');
  rejects(t, `${net()}containers:\n  - name: a\n    network: front\n    run: [sleep, 10]\n`, 'containers[0].run[1]', /must be a string/, 'run item not a string');
  rejects(t, `${net()}containers:\n  - name: a\n    network: front\n    run: []\n`, 'containers[0].run', /empty/, 'run empty');
  rejects(t, `networks: {name: x}\n`, 'networks', /must be a list/, 'networks not a list');
  rejects(t, `- 1\n`, '', /mapping/, 'top level not a mapping');
});

t.test('loadConfig', async (t) => {
  const missing = path.join(os.tmpdir(), `berth-missing-${process.pid}.yaml`);
  t.throws(() => loadConfig(missing), ConfigError);
  t.throws(() => loadConfig(missing), { message: /not found/ });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cfg-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'c.yaml');
  fs.writeFileSync(file, `networks:\n  - name: n\n    subnet: 10.1.0.0/16\n    gatway: 10.1.0.1\n`);
  t.throws(() => loadConfig(file), { message: `${file}: networks[0].gatway: unknown field` });
});

const two = (extra = '') =>
  `networks:\n  - name: front\n    subnet: 10.88.0.0/24\n  - name: back\n    subnet: 10.89.0.0/24\n${extra}`;

t.test('gatewayMode: nat by default, routed turns masquerade off; bad values name the field', async (t) => {
  const cfg = parseConfig(two('    gatewayMode: routed\n'));
  t.same(cfg.networks.map((n) => [n.name, n.gatewayMode, n.masquerade]), [['front', 'nat', true], ['back', 'routed', false]]);
  t.ok(Object.isFrozen(cfg.networks[1]), 'frozen');
  t.equal(parseConfig(two('    gatewayMode: routed\n    masquerade: false\n')).networks[1]!.masquerade, false, 'explicit false is fine');
  rejects(t, two('    gatewayMode: routed\n    masquerade: true\n'), 'networks[1].masquerade', /routed.*does no NAT/, 'routed + masquerade');
  rejects(t, two('    gatewayMode: routed\n    internal: true\n'), 'networks[1].gatewayMode', /internal/, 'routed + internal');
  rejects(t, two('    gatewayMode: nat-unprotected\n'), 'networks[1].gatewayMode', /must be one of nat, routed/, 'nat-unprotected');
  rejects(t, two('    gatewayMode: 3\n'), 'networks[1].gatewayMode', /string/, 'not a string');
  // a routed container's host port is not taken: it may repeat a nat network's
  const pub = parseConfig(
    two('    gatewayMode: routed\n') +
      `containers:\n  - name: a\n    network: front\n    publish: ["8080:80"]\n  - name: b\n    network: back\n    publish: ["8080:80", "127.0.0.1:5353:53/udp"]\n`,
  );
  t.same(pub.containers[1]!.publish.map((b) => `${b.hostIp}:${b.hostPort}:${b.containerPort}/${b.proto}`), ['0.0.0.0:8080:80/tcp', '127.0.0.1:5353:53/udp']);
});

t.test('gatewayMode6: nat by default, per family, only with subnet6; bad values name the field', async (t) => {
  const d6 = (extra = '', net = '    subnet6: fd88:b::/64\n') => two(net + extra);
  const six = (extra = '') => `networks:\n  - name: six\n    subnet6: fd88:6::/64\n${extra}`;
  const cfg = parseConfig(d6('    gatewayMode6: routed\n'));
  t.same(cfg.networks.map((n) => [n.name, n.gatewayMode, n.gatewayMode6, n.masquerade]), [['front', 'nat', 'nat', true], ['back', 'nat', 'routed', true]], 'nat-v4 + routed-v6: IPv4 still masquerades');
  t.same(parseConfig(d6('    gatewayMode: routed\n')).networks[1]!.masquerade, true, 'routed-v4 + nat-v6: NAT66 masquerades');
  t.same(parseConfig(d6('    gatewayMode: routed\n    masquerade: true\n')).networks[1]!.masquerade, true, 'routed-v4 + nat-v6 + masquerade: true: fine (NAT66)');
  t.same(parseConfig(d6('    gatewayMode: routed\n    gatewayMode6: routed\n')).networks[1]!.masquerade, false, 'routed in both families: no masquerade');
  rejects(t, d6('    gatewayMode: routed\n    gatewayMode6: routed\n    masquerade: true\n'), 'networks[1].masquerade', /routed \(gatewayMode and gatewayMode6\).*does no NAT/, 'routed both + masquerade');
  rejects(t, six('    gatewayMode6: routed\n    masquerade: true\n'), 'networks[0].masquerade', /routed \(gatewayMode6\).*does no NAT/, 'IPv6-only routed + masquerade');
  t.same(parseConfig(six('    gatewayMode6: routed\n')).networks[0]!.masquerade, false, 'IPv6-only routed: no masquerade');
  rejects(t, two('    gatewayMode6: routed\n'), 'networks[1].gatewayMode6', /no subnet6/, 'without subnet6');
  rejects(t, d6('    gatewayMode6: routed\n    internal: true\n'), 'networks[1].gatewayMode6', /internal/, 'routed6 + internal');
  rejects(t, d6('    gatewayMode6: nat-unprotected\n'), 'networks[1].gatewayMode6', /must be one of nat, routed/, 'nat-unprotected');
  rejects(t, d6('    gatewayMode6: 6\n'), 'networks[1].gatewayMode6', /string/, 'not a string');
  // per family: `8080:80` on a routed-v6 network still takes host port 8080 for IPv4 ...
  const ctr = (network: string, publish: string, name: string) => `  - name: ${name}\n    network: ${network}\n    publish: ${publish}\n`;
  rejects(
    t,
    d6('    gatewayMode6: routed\n', '    subnet6: fd88:b::/64\n') + `containers:\n${ctr('front', '["8080:80"]', 'a')}${ctr('back', '["8080:80"]', 'b')}`,
    'containers[1].publish[0]',
    /port already taken/,
    'the IPv4 half of a binding on a routed-v6 network takes its host port',
  );
  // ... while its IPv6-only binding takes none, as the routed IPv4 case
  const pub = parseConfig(d6('    gatewayMode6: routed\n') + `containers:\n${ctr('front', '["8080:80"]', 'a')}${ctr('back', '["[::]:8080:80"]', 'b')}`);
  t.same(pub.containers[1]!.publish.map((b) => `${b.hostIp}:${b.hostPort}:${b.containerPort}`), [':::8080:80'], 'a routed-v6 binding repeats a nat network host port');
});

t.test('masquerade and internal', async (t) => {
  const cfg = parseConfig(two('    internal: true\n') + `  - name: nomasq\n    subnet: 10.90.0.0/24\n    masquerade: false\n`);
  t.same(
    cfg.networks.map((n) => [n.name, n.masquerade, n.internal]),
    [
      ['front', true, false],
      ['back', false, true],
      ['nomasq', false, false],
    ],
  );
  t.equal(parseConfig(two('    internal: true\n    masquerade: false\n')).networks[1]!.masquerade, false, 'explicit false is fine');
  rejects(t, two('    internal: true\n    masquerade: true\n'), 'networks[1].masquerade', /internal.*cannot masquerade/, 'internal + masquerade');
  rejects(t, net('    masquerade: 1\n'), 'networks[0].masquerade', /true or false/, 'masquerade not boolean');
  rejects(t, net('    internal: "no"\n'), 'networks[0].internal', /true or false/, 'internal not boolean');
  let err: unknown;
  try {
    parseConfig(
      two('    internal: true\n') + `containers:\n  - name: a\n    network: front\n    publish: ["80:80"]\n  - name: b\n    network: back\n    publish: ["81:80"]\n`,
      'test.yaml',
    );
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof ConfigError);
  t.equal((err as Error).message, 'test.yaml: containers[1].publish: network back is internal; ports cannot be published');
  t.same(parseConfig(two('    internal: true\n') + `containers:\n  - name: b\n    network: back\n    publish: []\n`).containers[0]!.publish, [], 'empty publish on internal is fine');
});

const ctr = (publish: string, name = 'a') => `  - name: ${name}\n    network: front\n    publish: ${publish}\n`;

t.test('publish', async (t) => {
  const cfg = parseConfig(
    `${net()}containers:\n` +
      ctr('["8080:80", "127.0.0.1:8081:80/tcp", "5353:53/udp", "9000-9002:9000-9002", "0.0.0.0:8443:443"]') +
      ctr('["127.0.0.1:7000:70", "127.0.0.2:7000:70", "7000:70/udp"]', 'b'),
  );
  t.same(cfg.containers[0]!.publish, [
    { hostIp: '0.0.0.0', hostPort: 8080, containerPort: 80, proto: 'tcp' },
    { hostIp: '127.0.0.1', hostPort: 8081, containerPort: 80, proto: 'tcp' },
    { hostIp: '0.0.0.0', hostPort: 5353, containerPort: 53, proto: 'udp' },
    { hostIp: '0.0.0.0', hostPort: 9000, containerPort: 9000, proto: 'tcp' },
    { hostIp: '0.0.0.0', hostPort: 9001, containerPort: 9001, proto: 'tcp' },
    { hostIp: '0.0.0.0', hostPort: 9002, containerPort: 9002, proto: 'tcp' },
    { hostIp: '0.0.0.0', hostPort: 8443, containerPort: 443, proto: 'tcp' },
  ]);
  t.equal(cfg.containers[1]!.publish.length, 3, 'same port on two specific addresses, and on udp, is fine');
  t.ok(Object.isFrozen(cfg.containers[0]!.publish[0]), 'bindings frozen');

  const c = (p: string) => `${net()}containers:\n${ctr(p)}`;
  rejects(t, c('["80"]'), 'containers[0].publish[0]', /explicit host port/, 'no host port');
  rejects(t, c('["127.0.0.1::80"]'), 'containers[0].publish[0]', /explicit host port/, 'empty host port');
  rejects(t, c('["8000-8010:80"]'), 'containers[0].publish[0]', /picks one free port/, 'host range to one port');
  rejects(t, c('["8000-8001:80-82"]'), 'containers[0].publish[0]', /same length/, 'unequal ranges');
  rejects(t, c('["0:80"]'), 'containers[0].publish[0]', /out of range/, 'port 0');
  rejects(t, c('["8080:65536"]'), 'containers[0].publish[0]', /out of range/, 'port too big');
  rejects(t, c('["http:80"]'), 'containers[0].publish[0]', /not a port number/, 'port not a number');
  rejects(t, c('["8080:80/sctp"]'), 'containers[0].publish[0]', /sctp is not supported yet/, 'sctp');
  rejects(t, c('["8080:80/icmp"]'), 'containers[0].publish[0]', /unknown protocol/, 'bad proto');
  rejects(t, c('["1.2.3:8080:80"]'), 'containers[0].publish[0]', /invalid host IPv4/, 'bad host ip');
  rejects(t, c('["[::1]:8080:80"]'), 'containers[0].publish[0]', /\[::1\]:8080 is an IPv6 host address but network "front" has no IPv6 \(no subnet6\)/, 'ipv6 on an IPv4-only network');
  rejects(t, c('["[::]:8080:80"]'), 'containers[0].publish[0]', /has no IPv6/, 'any-ipv6 on an IPv4-only network');
  rejects(t, c('["::1:8080:80"]'), 'containers[0].publish[0]', /needs brackets/, 'ipv6 without brackets');
  rejects(t, c('[8080]'), 'containers[0].publish[0]', /must be a string/, 'number');
  rejects(t, c('"8080:80"'), 'containers[0].publish', /must be a list/, 'not a list');
  rejects(t, c('["8080:80", "8080:81"]'), 'containers[0].publish[1]', /port already taken/, 'same container twice');
  rejects(t, `${net()}containers:\n${ctr('["8080:80"]')}${ctr('["8080:80"]', 'b')}`, 'containers[1].publish[0]', /port already taken.*containers\[0\]\.publish\[0\]/, 'two containers');
  rejects(t, `${net()}containers:\n${ctr('["8080:80"]')}${ctr('["127.0.0.1:8080:80"]', 'b')}`, 'containers[1].publish[0]', /port already taken/, 'specific vs any');
  rejects(t, `${net()}containers:\n${ctr('["127.0.0.1:8080:80"]')}${ctr('["0.0.0.0:8080:80"]', 'b')}`, 'containers[1].publish[0]', /port already taken/, 'any vs specific');
  rejects(t, `${net()}containers:\n${ctr('["9000-9005:9000-9005"]')}${ctr('["9005:80"]', 'b')}`, 'containers[1].publish[0]', /port already taken/, 'inside a range');
});

const ext = (name: string, address: string, extra = '') => `  - name: ${name}\n    address: ${address}\n${extra}`;

t.test('externals', async (t) => {
  const cfg = parseConfig(`${net()}externals:\n${ext('world', '10.250.0.2/24')}${ext('moon', '10.251.0.10/30', '    run: [sleep, "5"]\n')}`);
  t.same(cfg.externals, [
    { name: 'world', address: '10.250.0.2', prefixLen: 24, subnetCidr: '10.250.0.0/24', hostAddress: '10.250.0.1', hostIfname: externalVethName('world') },
    {
      name: 'moon',
      address: '10.251.0.10',
      prefixLen: 30,
      subnetCidr: '10.251.0.8/30',
      hostAddress: '10.251.0.9',
      hostIfname: externalVethName('moon'),
      run: ['sleep', '5'],
    },
  ]);
  t.match(externalVethName('world'), /^bte[0-9a-f]{8}$/);
  t.not(externalVethName('world'), hostVethName('world'));
  t.ok(Object.isFrozen(cfg.externals[1]!.run));

  const e = (body: string) => `${net()}externals:\n${body}`;
  rejects(t, e(ext('w', '10.250.0.1/24')), 'externals[0].address', /host-side address/, 'address is the host side');
  rejects(t, e(ext('w', '10.250.0.0/24')), 'externals[0].address', /network address/, 'network address');
  rejects(t, e(ext('w', '10.250.0.255/24')), 'externals[0].address', /broadcast/, 'broadcast');
  rejects(t, e(ext('w', '10.250.0.2')), 'externals[0].address', /a\.b\.c\.d\/len/, 'no prefix');
  rejects(t, e(ext('w', '10.250.0.2/31')), 'externals[0].address', /between 8 and 30/, 'prefix too long');
  rejects(t, e(ext('w', '10.88.0.200/25')), 'externals[0].address', /overlaps .*network "front"/, 'overlaps a network');
  rejects(t, e(ext('w', '10.250.0.2/24') + ext('v', '10.250.0.130/25')), 'externals[1].address', /overlaps .*external "w"/, 'overlaps an external');
  rejects(t, e(ext('w', '10.250.0.2/24') + ext('w', '10.251.0.2/24')), 'externals[1].name', /duplicate external name/, 'duplicate external');
  rejects(t, `${net()}containers:\n  - name: w\n    network: front\nexternals:\n${ext('w', '10.250.0.2/24')}`, 'externals[0].name', /already used by containers\[0\].*namespace/, 'name shared with a container');
  rejects(t, e(ext('W', '10.250.0.2/24')), 'externals[0].name', /invalid name/, 'bad name');
  rejects(t, e('  - name: w\n'), 'externals[0].address', /required/, 'address required');
  rejects(t, e(ext('w', '10.250.0.2/24', '    ip: 1.2.3.4\n')), 'externals[0].ip', /unknown field/, 'unknown field');
  rejects(t, e(ext('w', '10.250.0.2/24', '    run: []\n')), 'externals[0].run', /empty/, 'empty run');
});

t.test('uplinks', async (t) => {
  t.same(parseConfig(`${net()}uplinks: [eth0, ens3]\n`).uplinks, ['eth0', 'ens3']);
  t.same(parseConfig(`${net()}uplinks: []\n`).uplinks, [], 'an empty list is kept (no uplinks)');
  const w = externalVethName('w');
  t.same(parseConfig(`${net()}externals:\n${ext('w', '10.250.0.2/24')}uplinks: [${w}]\n`).uplinks, [w], 'an external host veth is an uplink');
  rejects(t, `${net()}uplinks: [eth0, eth0]\n`, 'uplinks[1]', /duplicate uplink/, 'duplicate');
  rejects(t, `${net()}uplinks: [this-name-is-too-long]\n`, 'uplinks[0]', /1\.\.15/, 'too long');
  rejects(t, `${net()}uplinks: ["a b"]\n`, 'uplinks[0]', /whitespace/, 'whitespace');
  rejects(t, `${net()}uplinks: [berth-front]\n`, 'uplinks[0]', /bridge of networks\[0\]/, 'a bridge');
  rejects(t, `${net()}containers:\n  - name: a\n    network: front\nuplinks: [${hostVethName('a')}]\n`, 'uplinks[0]', /host veth of containers\[0\]/, 'a container veth');
  rejects(t, `${net()}uplinks: eth0\n`, 'uplinks', /must be a list/, 'not a list');
  rejects(t, `${net()}uplinks: [1]\n`, 'uplinks[0]', /interface name/, 'not a string');
});

t.test('interfaces (served besides the uplinks)', async (t) => {
  t.notOk('interfaces' in parseConfig(net()), 'absent when not given (controller picks every outside-facing interface)');
  t.same(parseConfig(`${net()}interfaces: [eth1, ens4]\n`).interfaces, ['eth1', 'ens4']);
  t.same(parseConfig(`${net()}uplinks: [eth0]\ninterfaces: []\n`).interfaces, [], 'an empty list is kept (the uplinks alone)');
  rejects(t, `${net()}interfaces: [eth1, eth1]\n`, 'interfaces[1]', /duplicate interface "eth1" \(also interfaces\[0\]\)/, 'duplicate');
  rejects(t, `${net()}interfaces: [this-name-is-too-long]\n`, 'interfaces[0]', /1\.\.15/, 'too long');
  rejects(t, `${net()}interfaces: [berth-front]\n`, 'interfaces[0]', /bridge of networks\[0\]/, 'a bridge of the file');
  rejects(t, `${net()}containers:\n  - name: a\n    network: front\ninterfaces: [${hostVethName('a')}]\n`, 'interfaces[0]', /host veth of containers\[0\]/, 'a container veth');
  rejects(t, `${net()}interfaces: eth1\n`, 'interfaces', /must be a list/, 'not a list');
});

t.test('settings', async (t) => {
  t.same(parseConfig(net()).settings, DEFAULT_SETTINGS);
  t.equal(DEFAULT_SETTINGS.conntrack.tcpEstablishedTimeout, 432000, 'kernel default');
  const s = parseConfig(`${net()}settings:\n  conntrack:\n    max: 1000\n    udpTimeout: 60\n  nat:\n    portMin: 20000\n`).settings;
  t.same(s.conntrack, { ...DEFAULT_SETTINGS.conntrack, max: 1000, unassuredMax: 250, udpTimeout: 60 }, 'unassuredMax follows max (a quarter)');
  t.equal(DEFAULT_SETTINGS.conntrack.unassuredMax, DEFAULT_SETTINGS.conntrack.max / 4, 'the default is a quarter of the default max');
  t.equal(parseConfig(`${net()}settings:\n  conntrack:\n    max: 1000\n    unassuredMax: 500\n`).settings.conntrack.unassuredMax, 500, 'at most half');
  t.same(s.nat, { portMin: 20000, portMax: DEFAULT_SETTINGS.nat.portMax });
  t.same(parseConfig(`${net()}settings:\n  nat:\n    portMax: 64000\n`).settings.conntrack, DEFAULT_SETTINGS.conntrack);
  t.ok(Object.isFrozen(s.conntrack));
  const st = (body: string) => `${net()}settings:\n${body}`;
  rejects(t, st('  conntrack:\n    max: 0\n'), 'settings.conntrack.max', /between 1 and/, 'max 0');
  rejects(t, st('  conntrack:\n    tcpSynTimeout: -5\n'), 'settings.conntrack.tcpSynTimeout', /between 1 and/, 'negative');
  rejects(t, st('  conntrack:\n    icmpTimeout: 1.5\n'), 'settings.conntrack.icmpTimeout', /integer/, 'fraction');
  rejects(t, st('  conntrack:\n    udpTimeout: "30"\n'), 'settings.conntrack.udpTimeout', /integer/, 'string');
  rejects(t, st('  conntrack:\n    tcpTimeout: 30\n'), 'settings.conntrack.tcpTimeout', /unknown field/, 'unknown conntrack key');
  rejects(t, st('  conntrack:\n    max: 1000\n    unassuredMax: 501\n'), 'settings.conntrack.unassuredMax', /at most max \/ 2 = 500/, 'more unassured flows than the table holds');
  rejects(t, st('  conntrack:\n    unassuredMax: 0\n'), 'settings.conntrack.unassuredMax', /between 1 and/, 'no room for a new flow');
  rejects(t, st('  nat:\n    portMin: 1000\n'), 'settings.nat.portMin', /between 1024 and 65535/, 'portMin too low');
  rejects(t, st('  nat:\n    portMax: 70000\n'), 'settings.nat.portMax', /between 1024 and 65535/, 'portMax too high');
  rejects(t, st('  nat:\n    portMin: 5000\n    portMax: 5000\n'), 'settings.nat.portMin', /lower than portMax/, 'empty range');
  rejects(t, st('  dns: {}\n'), 'settings.dns', /unknown field/, 'unknown settings section');
  rejects(t, st('  - 1\n'), 'settings', /mapping/, 'not a mapping');
});

// ---------------------------------------------------------------------------
// IPv6 (issue 12)

const dual = (extra = '', net6 = '    subnet6: fd88:a::/64\n') => `networks:\n  - name: front\n    subnet: 10.88.0.0/24\n${net6}${extra}`;
const v6only = (extra = '') => `networks:\n  - name: six\n    subnet6: fd88:6::/64\n${extra}`;

t.test('ipv6: dual-stack and IPv6-only networks, defaults', async (t) => {
  const cfg = parseConfig(`
networks:
  - name: front
    subnet: 10.88.0.0/24
    subnet6: FD88:A:0::/64
  - name: six
    subnet6: fd88:6::/48
    gateway6: fd88:6::fe
  - name: four
    subnet: 10.89.0.0/24
containers:
  - name: a
    network: front
  - name: b
    network: front
    ip6: fd88:a::2
  - name: c
    network: front
    ip6: fd88:a:0:0:0:ffff:ffff:ffff
  - name: d
    network: front
  - name: s
    network: six
  - name: f
    network: four
`);
  const [front, six, four] = cfg.networks;
  t.same(front, {
    name: 'front',
    ipv4: true,
    subnet: { addr: '10.88.0.0', prefixLen: 24 },
    subnetCidr: '10.88.0.0/24',
    bridge: 'berth-front',
    gateway: '10.88.0.1',
    ipv6: true,
    subnet6: { addr: 'fd88:a::', prefixLen: 64 },
    subnet6Cidr: 'fd88:a::/64',
    gateway6: 'fd88:a::1',
    icc: true,
    masquerade: true,
    internal: false,
    gatewayMode: 'nat',
    gatewayMode6: 'nat',
  }, 'canonical text, gateway6 defaults to ::1 of the subnet');
  t.same(
    { ipv4: six!.ipv4, subnet: six!.subnet, subnetCidr: six!.subnetCidr, gateway: six!.gateway, ipv6: six!.ipv6, gateway6: six!.gateway6, subnet6Cidr: six!.subnet6Cidr },
    { ipv4: false, subnet: { addr: '', prefixLen: 0 }, subnetCidr: '', gateway: '', ipv6: true, gateway6: 'fd88:6::fe', subnet6Cidr: 'fd88:6::/48' },
    'an IPv6-only network: the IPv4 fields are empty',
  );
  t.equal(four!.ipv6, false);
  t.same(
    cfg.containers.map((c) => [c.ip, c.ip6]),
    [
      ['10.88.0.2', 'fd88:a::3'],
      ['10.88.0.3', 'fd88:a::2'],
      ['10.88.0.4', 'fd88:a::ffff:ffff:ffff'],
      ['10.88.0.5', 'fd88:a::4'],
      ['', 'fd88:6::ff'],
      ['10.89.0.2', undefined],
    ],
    'explicit ip6 reserved first, automatic ones after the gateway6 in file order; IPv6-only: no ip',
  );
  t.notOk('ip6' in cfg.containers[5]!, 'no ip6 key on an IPv4-only network');
  t.ok(Object.isFrozen(six!.subnet6), 'frozen');
  t.equal(parseConfig(dual('', '    subnet6: fd88:a::/64\n    gateway6: fd88:a::1:0\n')).networks[0]!.gateway6, 'fd88:a::1:0');
});

t.test('ipv6: network fields, errors name the field', async (t) => {
  const n6 = (v: string) => dual('', `    subnet6: ${v}\n`);
  rejects(t, n6('fd88:a::/47'), 'networks[0].subnet6', /between 48 and 64/, '/47');
  rejects(t, n6('fd88:a::/65'), 'networks[0].subnet6', /between 48 and 64/, '/65');
  rejects(t, n6('fd88:a::1/64'), 'networks[0].subnet6', /host bits set.*did you mean fd88:a::\/64/, 'host bits');
  rejects(t, n6('fe80::/64'), 'networks[0].subnet6', /link-local/, 'link-local');
  rejects(t, n6('ff00::/64'), 'networks[0].subnet6', /multicast/, 'multicast');
  rejects(t, n6('"::/64"'), 'networks[0].subnet6', /loopback|unspecified|IPv4-mapped/, 'the /64 of ::1 and ::ffff:0:0/96');
  rejects(t, n6('10.1.0.0/24'), 'networks[0].subnet6', /is an IPv4 subnet; use subnet/, 'v4 in subnet6');
  rejects(t, n6('"fd88:a::"'), 'networks[0].subnet6', /invalid IPv6 CIDR/, 'no prefix');
  rejects(t, n6('fd88:g::/64'), 'networks[0].subnet6', /invalid IPv6 CIDR/, 'garbage');
  rejects(t, `networks:\n  - name: front\n    subnet: fd88:a::/64\n`, 'networks[0].subnet', /IPv6 subnet; use subnet6/, 'v6 in subnet');
  rejects(t, `networks:\n  - name: front\n    bridge: bx\n`, 'networks[0].subnet', /required.*subnet6/, 'neither subnet');
  rejects(t, `${dual()}  - name: back\n    subnet: 10.89.0.0/24\n    subnet6: fd88:a::/64\n`, 'networks[1].subnet6', /overlaps the subnet6 fd88:a::\/64 of network "front"/, 'same /64');
  rejects(t, `${dual()}  - name: back\n    subnet6: fd88:a::/48\n`, 'networks[1].subnet6', /overlaps/, 'a /48 holding the other /64');
  t.equal(parseConfig(`${dual()}  - name: back\n    subnet6: fd88:a:0:1::/64\n`).networks.length, 2, 'neighbouring /64s do not overlap');
  const g6 = (v: string) => dual('', `    subnet6: fd88:a::/64\n    gateway6: "${v}"\n`);
  rejects(t, g6('fd88:b::1'), 'networks[0].gateway6', /outside the subnet6/, 'gateway6 outside');
  rejects(t, g6('fd88:a::'), 'networks[0].gateway6', /subnet-router anycast/, 'gateway6 = network address');
  rejects(t, g6('10.88.0.1'), 'networks[0].gateway6', /IPv4 address; use gateway for IPv4/, 'v4 in gateway6');
  rejects(t, g6('fd88:a::zz'), 'networks[0].gateway6', /invalid IPv6 address/, 'bad gateway6');
  rejects(t, `${net()}    gateway6: fd88:a::1\n`, 'networks[0].gateway6', /no subnet6/, 'gateway6 without subnet6');
  rejects(t, v6only('    gateway: 10.0.0.1\n'), 'networks[0].gateway', /no IPv4 subnet/, 'gateway on an IPv6-only network');
  rejects(t, v6only('    gateway: fd88:6::1\n'), 'networks[0].gateway', /use gateway6/, 'v6 in gateway');
});

t.test('ipv6: container ip6, errors name the field', async (t) => {
  const c = (net: string, body: string) => `${net}containers:\n  - name: a\n    network: ${net.includes('six') ? 'six' : 'front'}\n${body}`;
  rejects(t, c(dual(), '    ip: fd88:a::5\n'), 'containers[0].ip', /IPv6 address; use ip6/, 'v6 in ip');
  rejects(t, c(dual(), '    ip6: 10.88.0.5\n'), 'containers[0].ip6', /IPv4 address; use ip for IPv4/, 'v4 in ip6');
  rejects(t, c(dual(), '    ip6: fd88:b::5\n'), 'containers[0].ip6', /outside the subnet6 fd88:a::\/64 of network "front"/, 'outside');
  rejects(t, c(dual(), '    ip6: fd88:a::1\n'), 'containers[0].ip6', /gateway6 of network "front"/, 'the gateway6');
  rejects(t, c(dual(), '    ip6: "fd88:a::"\n'), 'containers[0].ip6', /subnet-router anycast/, 'the network address');
  rejects(t, c(dual(), '    ip6: fe80::5\n'), 'containers[0].ip6', /link-local/, 'link-local');
  rejects(t, c(dual(), '    ip6: ff02::1\n'), 'containers[0].ip6', /multicast/, 'multicast');
  rejects(t, c(dual(), '    ip6: "::1"\n'), 'containers[0].ip6', /loopback/, 'loopback');
  rejects(t, c(dual(), '    ip6: "::ffff:10.88.0.5"\n'), 'containers[0].ip6', /IPv4-mapped/, 'v4-mapped');
  rejects(t, c(dual(), '    ip6: fd88:a::5/64\n'), 'containers[0].ip6', /invalid IPv6 address/, 'with a prefix');
  rejects(t, c(net(), '    ip6: fd88:a::5\n'), 'containers[0].ip6', /has no subnet6/, 'ip6 on a network without subnet6');
  rejects(t, c(v6only(), '    ip: 10.0.0.5\n'), 'containers[0].ip', /no IPv4 subnet/, 'ip on an IPv6-only network');
  rejects(t, `${dual()}containers:\n  - name: a\n    network: front\n    ip6: fd88:a::5\n  - name: b\n    network: front\n    ip6: FD88:A::0005\n`, 'containers[1].ip6', /duplicate address fd88:a::5 \(also containers\[0\]\)/, 'duplicate (canonical compare)');
  rejects(t, c(dual(), '    ip6: [1]\n'), 'containers[0].ip6', /must be a string/, 'not a string');
});

t.test('ipv6: publish families follow Docker 29', async (t) => {
  const ctr6 = (network: string, publish: string, name = 'a') => `  - name: ${name}\n    network: ${network}\n    publish: ${publish}\n`;
  const cfg = parseConfig(`${dual()}containers:\n${ctr6('front', '["8080:80", "[::]:8081:81", "[::1]:8082:82", "[FD00:0::5]:8083:83/udp", "127.0.0.1:8084:84"]')}`);
  t.same(cfg.containers[0]!.publish.map((b) => b.hostIp), ['0.0.0.0', '::', '::1', 'fd00::5', '127.0.0.1'], 'canonical host addresses; 8080:80 keeps 0.0.0.0 (both families)');
  const six = parseConfig(`${v6only()}containers:\n${ctr6('six', '["8080:80", "0.0.0.0:8081:81", "[::]:8082:82"]')}`);
  t.equal(six.containers[0]!.publish.length, 3, 'any address on an IPv6-only network serves IPv6');
  rejects(t, `${v6only()}containers:\n${ctr6('six', '["127.0.0.1:8080:80"]')}`, 'containers[0].publish[0]', /127\.0\.0\.1:8080 is an IPv4 host address but network "six" has no IPv4 \(no subnet\)/, 'v4 on an IPv6-only network');
  // one host port for both families
  const two = (a: string, b: string) => `${dual()}containers:\n${ctr6('front', `["${a}"]`)}${ctr6('front', `["${b}"]`, 'b')}`;
  rejects(t, two('0.0.0.0:8080:80', '[::]:8080:80'), 'containers[1].publish[0]', /port already taken: \[::\]:8080\/tcp collides with 0\.0\.0\.0:8080->80\/tcp of containers\[0\]\.publish\[0\]/, 'any v4+v6 vs any v6');
  rejects(t, two('[::]:8080:80', '8080:80'), 'containers[1].publish[0]', /port already taken/, 'any v6 vs any');
  rejects(t, two('[::]:8080:80', '[fd00::5]:8080:80'), 'containers[1].publish[0]', /port already taken/, 'any v6 vs a v6 address');
  rejects(t, two('[::1]:8080:80', '[::1]:8080:81'), 'containers[1].publish[0]', /port already taken/, 'same v6 address');
  rejects(t, two('8080:80', '[::1]:8080:80'), 'containers[1].publish[0]', /port already taken/, 'any vs v6 loopback');
  t.equal(parseConfig(two('[::]:8080:80', '127.0.0.1:8080:80')).containers.length, 2, '[::]:8080 and 127.0.0.1:8080 do not collide');
  t.equal(parseConfig(two('[::1]:8080:80', '[fd00::5]:8080:80')).containers.length, 2, 'two v6 addresses');
  t.equal(parseConfig(two('[::]:8080:80', '[::]:8080:80/udp')).containers.length, 2, 'tcp and udp');
  rejects(t, `${dual()}containers:\n${ctr6('front', '["[fe80::1]:8080:80"]')}`, 'containers[0].publish[0]', /link-local/, 'link-local host address');
  rejects(t, `${dual()}containers:\n${ctr6('front', '["[10.0.0.1]:8080:80"]')}`, 'containers[0].publish[0]', /brackets are for IPv6/, 'bracketed v4');
});

t.test('ipv6: externals address6', async (t) => {
  const x = (a6: string, name = 'w', a4 = '10.250.0.2/24') => `  - name: ${name}\n    address: ${a4}\n    address6: "${a6}"\n`;
  const cfg = parseConfig(`${dual()}externals:\n${x('FD88:FF::2/64')}  - name: v\n    address: 10.251.0.2/24\n`);
  t.same(cfg.externals[0], {
    name: 'w',
    address: '10.250.0.2',
    prefixLen: 24,
    subnetCidr: '10.250.0.0/24',
    hostAddress: '10.250.0.1',
    hostIfname: externalVethName('w'),
    address6: 'fd88:ff::2',
    prefixLen6: 64,
    subnet6Cidr: 'fd88:ff::/64',
    hostAddress6: 'fd88:ff::1',
  });
  t.notOk('address6' in cfg.externals[1]!, 'no IPv6 fields without address6');
  const e = (body: string) => `${dual()}externals:\n${body}`;
  rejects(t, e(x('fd88:ff::1/64')), 'externals[0].address6', /host-side address/, 'the host side');
  rejects(t, e(x('fd88:ff::/64')), 'externals[0].address6', /subnet-router anycast/, 'the network address');
  rejects(t, e(x('fd88:ff::2')), 'externals[0].address6', /lacks its prefix length/, 'no prefix');
  rejects(t, e(x('10.250.0.2/24')), 'externals[0].address6', /IPv4; use address/, 'v4 in address6');
  rejects(t, e(x('fd88:a::2/64')), 'externals[0].address6', /overlaps the subnet6 fd88:a::\/64 of network "front"/, 'overlaps a network');
  rejects(t, e(x('fd88:a::2/48')), 'externals[0].address6', /overlaps/, 'a /48 over a network');
  rejects(t, e(x('fd88:ff::2/64') + x('fd88:ff::3/64', 'v', '10.251.0.2/24')), 'externals[1].address6', /overlaps the IPv6 subnet of external "w"/, 'overlaps an external');
  rejects(t, e(x('fe80::2/64')), 'externals[0].address6', /link-local/, 'link-local');
  rejects(t, e(x('fd88:ff::2/96')), 'externals[0].address6', /between 48 and 64/, 'prefix');
});

t.test('ipv6: a bad file changes nothing and the result is frozen', async (t) => {
  const cfg = parseConfig(`${dual()}containers:\n  - name: a\n    network: front\nexternals:\n  - name: w\n    address: 10.250.0.2/24\n    address6: fd88:ff::2/64\n`);
  t.ok(Object.isFrozen(cfg.networks[0]!.subnet6) && Object.isFrozen(cfg.containers[0]) && Object.isFrozen(cfg.externals[0]));
  t.throws(() => (cfg.containers[0] as { ip6?: string }).ip6 = 'fd88:a::9');
});
