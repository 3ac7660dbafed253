// The standalone desired state of a dual-stack file (issue 12), and the
// host's IPv6 addresses: pure, no kernel.
import t from 'tap';
import { parseConfig } from '../../src/domain/config';
import { hostAddressesOf, type IpLink } from '../../src/platform/hostnet';
import { desiredFrom, type HostFacts } from '../../src/sources/standalone';
import { standalonePolicyNames } from '../../src/sources/docker/mode';
import type { RealizedEndpoint } from '../../src/platform/topology';

const cfg = parseConfig(`
networks:
  - name: a
    subnet: 10.88.0.0/24
    subnet6: fd88:a::/64
  - name: four
    subnet: 10.88.2.0/24
containers:
  - name: c1
    network: a
    publish: ["8080:80", "[::]:8081:81", "[::1]:8082:82/udp", "127.0.0.1:8083:83"]
  - name: c2
    network: four
    publish: ["9090:90"]
externals:
  - name: w
    address: 10.250.0.2/24
    address6: fd88:ff::2/64
`);

const ep = (container: string, network: string, ip: string, ifindex: number, v6?: { ip6: string; gateway6: string }): RealizedEndpoint => ({
  container,
  network,
  ip,
  prefixLen: 24,
  gateway: '',
  ...(v6 ? { ip6: v6.ip6, prefixLen6: 64, gateway6: v6.gateway6 } : {}),
  mac: `02:00:00:00:00:0${ifindex}`,
  hostIfname: `veth${ifindex}`,
  hostIfindex: ifindex,
  bridge: '',
  bridgeIfindex: 0,
  netns: container,
});
const endpoints = [ep('c1', 'a', '10.88.0.2', 7, { ip6: 'fd88:a::2', gateway6: 'fd88:a::1' }), ep('c2', 'four', '10.88.2.2', 8)];
const host: HostFacts = {
  interfaces: [
    { ifindex: 2, ifname: 'eth9', mac: '02:00:00:00:00:09', addr: '192.0.2.10', addr6: '2001:db8::10', kind: '', linkType: 'ether' },
    { ifindex: 3, ifname: cfg.externals[0]!.hostIfname, mac: '02:00:00:00:00:0a', addr: '10.250.0.1', addr6: 'fd88:ff::1', kind: 'veth', linkType: 'ether' },
  ],
  addresses: [
    { addr: '192.0.2.10', family: 4, ifindex: 2, ifname: 'eth9' },
    { addr: '2001:db8::10', family: 6, ifindex: 2, ifname: 'eth9' },
  ],
};
const cfgUplinks = { ...cfg, uplinks: ['eth9'] };

t.test('desiredFrom: the IPv6 fields of networks, endpoints and uplinks', async (t) => {
  const d = desiredFrom(cfgUplinks, endpoints, host);
  const [a, four] = d.networks;
  t.match(a, { subnet: '10.88.0.0', prefixLen: 24, gateway: '10.88.0.1', subnet6: 'fd88:a::', prefixLen6: 64, gateway6: 'fd88:a::1' });
  t.notOk('ipv4' in a!, 'ipv4 left undefined (= true) on a dual-stack network');
  t.notOk('subnet6' in four! || 'gateway6' in four!, 'no IPv6 fields on an IPv4-only network');
  t.equal(d.endpoints[0]!.ip6, 'fd88:a::2');
  t.notOk('ip6' in d.endpoints[1]!);
  t.same(
    d.uplinks!.map((u) => [u.ifname, u.addr, u.addr6]),
    [
      ['eth9', '192.0.2.10', '2001:db8::10'],
      [cfg.externals[0]!.hostIfname, '10.250.0.1', 'fd88:ff::1'],
    ],
    'uplinks carry their IPv6 address (the external host side: the first address of its subnet)',
  );
  t.same(d.hostAddrs, [
    { addr: '192.0.2.10', ifindex: 2 },
    { addr: '2001:db8::10', ifindex: 2 },
  ], 'host addresses of both families');
});

t.test('desiredFrom: one publish entry per family the binding serves', async (t) => {
  const d = desiredFrom(cfgUplinks, endpoints, host);
  t.same(
    d.publish!.map((p) => [p.container, p.hostIp, p.hostPort, p.proto, p.ip, p.port]),
    [
      ['c1', '0.0.0.0', 8080, 'tcp', '10.88.0.2', 80],
      ['c1', '::', 8080, 'tcp', 'fd88:a::2', 80],
      ['c1', '::', 8081, 'tcp', 'fd88:a::2', 81],
      ['c1', '::1', 8082, 'udp', 'fd88:a::2', 82],
      ['c1', '127.0.0.1', 8083, 'tcp', '10.88.0.2', 83],
      ['c2', '0.0.0.0', 9090, 'tcp', '10.88.2.2', 90],
    ],
  );
});

t.test('desiredFrom: an IPv6-only network', async (t) => {
  const six = parseConfig('networks:\n  - name: six\n    subnet6: fd88:6::/64\n');
  t.equal(desiredFrom(six, [], host).networks[0]!.ipv4, false, 'IPv6-only: ipv4 false');
});

t.test('hostAddressesOf: IPv4, IPv6 global/ULA and ::1, no link-local', async (t) => {
  const links: IpLink[] = [
    {
      ifindex: 1,
      ifname: 'lo',
      addr_info: [
        { family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' },
        { family: 'inet6', local: '::1', prefixlen: 128, scope: 'host' },
      ],
    },
    {
      ifindex: 2,
      ifname: 'eth0',
      addr_info: [
        { family: 'inet', local: '192.0.2.10', prefixlen: 24, scope: 'global' },
        { family: 'inet6', local: 'fd00::2', prefixlen: 64, scope: 'global' },
        { family: 'inet6', local: '2001:DB8:0::10', prefixlen: 64, scope: 'global' },
        { family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' },
      ],
    },
  ];
  t.same(hostAddressesOf(links), [
    { addr: '127.0.0.1', family: 4, ifindex: 1, ifname: 'lo' },
    { addr: '::1', family: 6, ifindex: 1, ifname: 'lo' },
    { addr: '192.0.2.10', family: 4, ifindex: 2, ifname: 'eth0' },
    { addr: 'fd00::2', family: 6, ifindex: 2, ifname: 'eth0' },
    { addr: '2001:db8::10', family: 6, ifindex: 2, ifname: 'eth0' },
  ]);
});

t.test('the policy names of a standalone file: both families', async (t) => {
  const names = standalonePolicyNames(cfg, endpoints);
  t.equal(names.containerAddr('c1'), '10.88.0.2');
  t.equal(names.containerAddr6?.('c1'), 'fd88:a::2', "a container's ip6");
  t.equal(names.containerAddr6?.('c2'), undefined, 'none on an IPv4-only network');
  t.equal(names.networkSubnet6?.('a'), 'fd88:a::/64', "a network's subnet6");
  t.equal(names.networkSubnet6?.('four'), undefined);
  t.equal(names.networkSubnet('four'), '10.88.2.0/24');
});
