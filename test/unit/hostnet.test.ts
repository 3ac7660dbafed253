// Host facts that decide what berth may do: the masquerade range against the
// host's own ephemeral ports, and which interfaces berth works on.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_SETTINGS } from '../../src/domain/config';
import { HostInterface, assertServable, autoUplinks, checkNatPortRange, chooseInterfaces, hostEphemeralPorts, hostInterfaces, hasEthernetHeader } from '../../src/platform/hostnet';

t.test('the masquerade range may not overlap the host\'s ephemeral ports', async (t) => {
  const host = { min: 32768, max: 60999 };
  t.doesNotThrow(() => checkNatPortRange(61000, 65535, host), 'above it');
  t.doesNotThrow(() => checkNatPortRange(20000, 32767, host), 'below it');
  t.throws(() => checkNatPortRange(60999, 65535, host), /overlap the host's own ephemeral ports \(net\.ipv4\.ip_local_port_range 32768 60999\)/, 'one port in common');
  t.throws(() => checkNatPortRange(40000, 45000, host), /settings\.nat/, 'inside it');
  t.throws(() => checkNatPortRange(1024, 65535, host), /overlap/, 'around it');
});

t.test('the default range fits a stock host, and this one', async (t) => {
  t.doesNotThrow(() => checkNatPortRange(DEFAULT_SETTINGS.nat.portMin, DEFAULT_SETTINGS.nat.portMax, { min: 32768, max: 60999 }));
  const here = hostEphemeralPorts();
  t.ok(here.min > 0 && here.max >= here.min, `this host: ${here.min}-${here.max}`);
});

t.test('hostEphemeralPorts reads the sysctl file', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-hostnet-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'r'), '1024\t65000\n');
  t.same(hostEphemeralPorts(path.join(dir, 'r')), { min: 1024, max: 65000 });
  fs.writeFileSync(path.join(dir, 'bad'), 'x\n');
  t.throws(() => hostEphemeralPorts(path.join(dir, 'bad')), /unreadable/);
});

const iface = (ifindex: number, ifname: string, kind: string, linkType: string, extra: Partial<HostInterface> = {}): HostInterface => ({ ifindex, ifname, mac: '02:00:00:00:00:00', addr: '', kind, linkType, ...extra });
const ifs: HostInterface[] = [
  iface(1, 'lo', 'loopback', 'loopback'),
  iface(2, 'eth0', '', 'ether'),
  iface(3, 'eth1', '', 'ether'),
  iface(4, 'docker0', 'bridge', 'ether'),
  iface(5, 'vethA', 'veth', 'ether', { master: 'docker0' }),
  iface(6, 'tun0', 'tun', 'none'),
  iface(7, 'wg0', 'wireguard', 'none'),
  iface(8, 'ipip0', 'ipip', 'ipip'),
  iface(9, 'bth01234567', 'veth', 'ether', { alias: 'berth:veth:web' }),
  iface(10, 'bte01234567', 'veth', 'ether', { alias: 'berth:ext:world' }),
];
const names = (xs: readonly HostInterface[]): string[] => xs.map((x) => x.ifname);

t.test('chooseInterfaces: auto-detection is every outside-facing Ethernet interface, for both roles', async (t) => {
  t.same(names(autoUplinks(ifs)), ['eth0', 'eth1', 'bte01234567'], 'not lo, bridges, bridge ports, container veths or L3 devices');
  const c = chooseInterfaces({}, ifs);
  t.same(names(c.uplinks), ['eth0', 'eth1', 'bte01234567']);
  t.same(names(c.served), ['eth0', 'eth1', 'bte01234567']);
  t.same(c.refused, [], 'nothing named, nothing refused: L3 devices are just left out');
});

t.test('chooseInterfaces: uplinks are always served; interfaces adds to them', async (t) => {
  const a = chooseInterfaces({ uplinks: ['eth0'] }, ifs);
  t.same(names(a.uplinks), ['eth0']);
  t.same(names(a.served), ['eth0', 'eth1', 'bte01234567'], 'served interfaces not given: every outside-facing one');
  const b = chooseInterfaces({ uplinks: ['eth0'], interfaces: [] }, ifs);
  t.same(names(b.served), ['eth0'], 'interfaces: [] serves the uplinks alone');
  const c = chooseInterfaces({ uplinks: [], interfaces: ['eth1'], alwaysUplinks: ['bte01234567'] }, ifs);
  t.same(names(c.uplinks), ['bte01234567'], 'an external host side is an uplink whatever uplinks says');
  t.same(names(c.served), ['eth1', 'bte01234567']);
  const d = chooseInterfaces({ interfaces: ['eth1', 'gone0'] }, ifs);
  t.same(names(d.served), ['eth0', 'eth1', 'bte01234567'], 'a name that is not there (yet) is skipped');
});

t.test('chooseInterfaces: a named L3 device is refused, with the interface and why', async (t) => {
  const c = chooseInterfaces({ uplinks: ['eth0', 'wg0'], interfaces: ['tun0', 'ipip0', 'eth1'] }, ifs);
  t.same(names(c.uplinks), ['eth0']);
  t.same(names(c.served), ['eth0', 'eth1'], 'never served');
  t.same(c.refused.map((r) => `${r.from}:${r.ifname}`), ['uplinks:wg0', 'interfaces:tun0', 'interfaces:ipip0']);
  t.match(c.refused[1]!.reason, /^tun0 is an L3 device \(link type none, tun\): its packets carry no Ethernet header, which berth_up_in needs/);
  t.match(c.refused[2]!.reason, /link type ipip/);
  t.throws(() => assertServable(c), /uplinks: wg0 is an L3 device .*; interfaces: tun0 is an L3 device/);
  t.doesNotThrow(() => assertServable(chooseInterfaces({ interfaces: ['eth1'] }, ifs)));
  t.ok(hasEthernetHeader(iface(0, 'x', 'vlan', 'ether')) && !hasEthernetHeader(iface(0, 'y', '', '')), 'an unknown link type is not Ethernet');
  t.same(chooseInterfaces({ uplinks: ['lo'] }, ifs).refused, [], 'loopback frames carry an Ethernet header: named, lo is not refused (auto-detection never picks it)');
});

t.test('hostInterfaces reads each interface\'s link type', async (t) => {
  const here = await hostInterfaces();
  const lo = here.find((i) => i.ifname === 'lo');
  t.equal(lo?.linkType, 'loopback');
  t.ok(here.every((i) => typeof i.linkType === 'string' && i.linkType.length > 0), 'every interface has one');
});
