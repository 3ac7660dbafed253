import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig, parseConfig } from '../../src/config';
import { cidrContains, cidrOverlaps, formatIPv4, parseCidr, parseIPv4 } from '../../src/ipv4';
import { hostVethName } from '../../src/names';

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
  t.equal(cfg.containers[0]!.run?.[1], 'httpd');
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
    subnet: { addr: '10.88.0.0', prefixLen: 24 },
    subnetCidr: '10.88.0.0/24',
    bridge: 'berth-front',
    gateway: '10.88.0.1',
    icc: true,
  });
  t.equal(other!.gateway, '10.90.0.6');
  t.equal(other!.icc, false);
  // explicit ips (.3, .2) are reserved first; auto ones fill .4, .5, .6 in file order
  t.same(
    cfg.containers.map((c) => c.ip),
    ['10.88.0.4', '10.88.0.3', '10.88.0.5', '10.88.0.2', '10.88.0.6', '10.90.0.1', '10.90.0.2'],
  );
  t.notOk('run' in cfg.containers[0]!, 'run omitted when not given');
  t.same(cfg.containers[6]!.run, ['sleep', '100']);

  const empty = parseConfig('');
  t.same(empty, { networks: [], containers: [] }, 'empty file is an empty config');
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
