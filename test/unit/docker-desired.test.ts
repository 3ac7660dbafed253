import t from 'tap';
import type { DockerContainer, DockerNetwork } from '../../src/sources/docker/client';
import { DEFAULT_DOCKER_SETTINGS, berthNetworkName, bridgeNameOf, desiredFromDocker, networksFrom, publishNetwork } from '../../src/sources/docker/desired';
import { isRelevant } from '../../src/sources/docker/follower';
import { dockerPolicyNames } from '../../src/sources/docker/mode';
import type { HostFacts } from '../../src/sources/standalone';

const host: HostFacts = {
  interfaces: [
    { ifindex: 1, ifname: 'lo', mac: '00:00:00:00:00:00', addr: '127.0.0.1', kind: 'loopback', linkType: 'loopback' },
    { ifindex: 2, ifname: 'eth0', mac: '02:00:00:00:00:01', addr: '192.0.2.10', kind: '', linkType: 'ether' },
    { ifindex: 3, ifname: 'docker0', mac: '02:42:00:00:00:01', addr: '172.17.0.1', kind: 'bridge', linkType: 'ether' },
    { ifindex: 4, ifname: 'br-aaaaaaaaaaaa', mac: '02:42:00:00:00:02', addr: '172.18.0.1', kind: 'bridge', linkType: 'ether' },
    { ifindex: 5, ifname: 'eth1', mac: '02:00:00:00:00:02', addr: '198.51.100.10', kind: '', linkType: 'ether' },
    { ifindex: 6, ifname: 'wg0', mac: '00:00:00:00:00:00', addr: '10.9.0.1', kind: 'wireguard', linkType: 'none' },
    { ifindex: 10, ifname: 'veth1', mac: 'aa:00:00:00:00:01', addr: '', kind: 'veth', master: 'docker0', linkType: 'ether' },
    { ifindex: 11, ifname: 'veth2', mac: 'aa:00:00:00:00:02', addr: '', kind: 'veth', master: 'br-aaaaaaaaaaaa', linkType: 'ether' },
    { ifindex: 12, ifname: 'veth3', mac: 'aa:00:00:00:00:03', addr: '', kind: 'veth', master: 'br-aaaaaaaaaaaa', linkType: 'ether' },
  ],
  addresses: [
    { addr: '127.0.0.1', ifindex: 1, ifname: 'lo' },
    { addr: '192.0.2.10', ifindex: 2, ifname: 'eth0' },
  ],
};

const networks: DockerNetwork[] = [
  {
    Name: 'bridge',
    Id: 'b'.repeat(64),
    Driver: 'bridge',
    IPAM: { Config: [{ Subnet: '172.17.0.0/16', Gateway: '172.17.0.1' }] },
    Options: { 'com.docker.network.bridge.default_bridge': 'true', 'com.docker.network.bridge.enable_icc': 'true', 'com.docker.network.bridge.enable_ip_masquerade': 'false', 'com.docker.network.bridge.name': 'docker0' },
  },
  { Name: 'front', Id: 'a'.repeat(64), Driver: 'bridge', IPAM: { Config: [{ Subnet: 'fd00::/64' }, { Subnet: '172.18.0.0/16' }] }, Options: { 'com.docker.network.bridge.enable_icc': 'false' } },
  { Name: 'priv', Id: 'c'.repeat(64), Driver: 'bridge', Internal: true, IPAM: { Config: [{ Subnet: '172.19.0.0/16', Gateway: '172.19.0.1' }] }, Options: { 'com.docker.network.bridge.name': 'privbr', 'com.docker.network.bridge.enable_ip_masquerade': 'false' } },
  { Name: 'host', Id: 'd'.repeat(64), Driver: 'host' },
  { Name: 'none', Id: 'e'.repeat(64), Driver: 'null' },
  { Name: 'ov', Id: 'f'.repeat(64), Driver: 'overlay', IPAM: { Config: [{ Subnet: '10.0.9.0/24' }] } },
];

t.test('networksFrom: bridge networks only, options mapped', async (t) => {
  const { managed, skipped } = networksFrom(networks, { ...DEFAULT_DOCKER_SETTINGS, defaultBridgeIcc: false }, host);
  t.same([...managed.keys()], ['docker:bridge', 'docker:front', 'docker:priv']);
  t.same(managed.get('docker:bridge')!.net, {
    name: 'docker:bridge',
    bridge: 'docker0',
    subnet: '172.17.0.0',
    prefixLen: 16,
    gateway: '172.17.0.1',
    icc: false, // from berth's settings, not the option
    masquerade: true, // dockerd reports false with --iptables=false; berth's setting decides
    internal: false,
    routed: false,
    bridgeIfindex: 3,
    bridgeMac: '02:42:00:00:00:01',
  });
  const front = managed.get('docker:front')!.net;
  t.equal(front.bridge, 'br-aaaaaaaaaaaa');
  t.equal(front.gateway, '172.18.0.1', 'gateway from the bridge when IPAM has none');
  t.equal(front.icc, false);
  t.equal(front.masquerade, true);
  t.equal(front.bridgeIfindex, 4);
  const priv = managed.get('docker:priv')!.net;
  t.equal(priv.internal, true);
  t.equal(priv.masquerade, false);
  t.equal(priv.bridgeIfindex, 0, 'bridge not there yet');
  t.same(skipped.map((s) => `${s.name}:${s.driver}`), ['host:host', 'none:null', 'ov:overlay']);
  t.equal(bridgeNameOf({ Name: 'x', Id: '0123456789abcdef', Driver: 'bridge' }), 'br-0123456789ab');
  t.equal(berthNetworkName({ Name: 'n'.repeat(80), Id: '0123456789abcdef' }).length <= 63, true);
  const routed = networksFrom([{ ...networks[1]!, Options: { 'com.docker.network.bridge.gateway_mode_ipv4': 'routed' } }], DEFAULT_DOCKER_SETTINGS, host);
  t.equal(routed.managed.get('docker:front')!.net.masquerade, false);
  t.equal(routed.managed.get('docker:front')!.net.routed, true);
  t.equal(managed.get('docker:front')!.net.routed, false, 'nat (the default) is not routed');
  const isolated = networksFrom([{ ...networks[1]!, Options: { 'com.docker.network.bridge.gateway_mode_ipv4': 'isolated' } }], DEFAULT_DOCKER_SETTINGS, host);
  t.equal(isolated.managed.get('docker:front')!.net.internal, true);
});

const container = (name: string, nets: Record<string, { id: string; ip: string; mac: string }>, ports: DockerContainer['NetworkSettings']['Ports'] = {}, mode = 'default'): DockerContainer => ({
  Id: name.padEnd(64, '0'),
  Name: `/${name}`,
  State: { Running: true, Pid: 100 },
  HostConfig: { NetworkMode: mode },
  NetworkSettings: {
    SandboxKey: `/run/docker/netns/${name}`,
    Ports: ports,
    Networks: Object.fromEntries(Object.entries(nets).map(([k, v]) => [k, { NetworkID: v.id, IPAddress: v.ip, MacAddress: v.mac }])),
  },
});

t.test('desiredFromDocker: endpoints, publishes on the network the container started on', async (t) => {
  const web = container(
    'web',
    { bridge: { id: 'b'.repeat(64), ip: '172.17.0.2', mac: '02:42:ac:11:00:02' } },
    { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '8080' }, { HostIp: '::', HostPort: '8080' }], '53/udp': [{ HostIp: '127.0.0.1', HostPort: '5353' }], '443/tcp': null },
  );
  const dual = container(
    'dual',
    {
      front: { id: 'a'.repeat(64), ip: '172.18.0.2', mac: '02:42:ac:12:00:02' },
      priv: { id: 'c'.repeat(64), ip: '172.19.0.2', mac: '02:42:ac:13:00:02' },
    },
    { '80/tcp': [{ HostIp: '', HostPort: '9090' }] },
    'priv',
  );
  const dd = desiredFromDocker(
    networks,
    [
      { info: web, endpoints: [{ networkId: 'b'.repeat(64), ip: '172.17.0.2', mac: '02:42:ac:11:00:02', ifindex: 10, ifname: 'veth1' }] },
      {
        info: dual,
        endpoints: [
          { networkId: 'a'.repeat(64), ip: '172.18.0.2', mac: '02:42:ac:12:00:02', ifindex: 11, ifname: 'veth2' },
          { networkId: 'c'.repeat(64), ip: '172.19.0.2', mac: '02:42:ac:13:00:02', ifindex: 12, ifname: 'veth3' },
        ],
      },
    ],
    { ...DEFAULT_DOCKER_SETTINGS, defaultBindIp: '192.0.2.10', uplinks: ['eth0'] },
    host,
  );
  t.same(
    dd.desired.endpoints.map((e) => `${e.container}@${e.network}=${e.ip}/${e.ifname}`),
    ['dual@docker:front=172.18.0.2/veth2', 'dual@docker:priv=172.19.0.2/veth3', 'web@docker:bridge=172.17.0.2/veth1'],
  );
  t.same(
    dd.desired.publish!.map((p) => `${p.hostIp}:${p.hostPort}/${p.proto}->${p.container}@${p.ip}:${p.port}`),
    ['192.0.2.10:9090/tcp->dual@172.18.0.2:80', '0.0.0.0:8080/tcp->web@172.17.0.2:80', '127.0.0.1:5353/udp->web@172.17.0.2:53'],
    'internal network never publishes; an empty HostIp takes the default bind address',
  );
  t.same(dd.desired.uplinks!.map((u) => u.ifname), ['eth0']);
  t.same(dd.desired.served!.map((u) => u.ifname), ['eth0', 'eth1'], 'served: the uplink, and every other outside-facing interface (not the L3 wg0)');
  t.same(dd.refused, []);
  t.equal(dd.desired.socketHooks, true);
  const names = dockerPolicyNames(dd);
  t.equal(names.containerAddr('dual'), '172.18.0.2');
  t.equal(names.containerAddr('web'), '172.17.0.2');
  t.equal(names.containerAddr('nope'), undefined);
  t.equal(names.networkSubnet('front'), '172.18.0.0/16');
  t.equal(publishNetwork(dual, [{ dockerName: 'priv', berthName: 'docker:priv', internal: true }]), undefined);
});

t.test('desiredFromDocker: uplinks auto-detected only when not given; duplicates skipped', async (t) => {
  const warnings: string[] = [];
  const c1 = container('a', { bridge: { id: 'b'.repeat(64), ip: '172.17.0.2', mac: '02:42:ac:11:00:02' } });
  const c2 = container('b', { bridge: { id: 'b'.repeat(64), ip: '172.17.0.2', mac: '02:42:ac:11:00:03' } });
  const dd = desiredFromDocker(
    networks,
    [
      { info: c1, endpoints: [{ networkId: 'b'.repeat(64), ip: '172.17.0.2', mac: '02:42:ac:11:00:02', ifindex: 10, ifname: 'veth1' }] },
      { info: c2, endpoints: [{ networkId: 'b'.repeat(64), ip: '172.17.0.2', mac: '02:42:ac:11:00:03', ifindex: 11, ifname: 'veth2' }] },
    ],
    DEFAULT_DOCKER_SETTINGS,
    host,
    (m) => warnings.push(m),
  );
  t.equal(dd.desired.endpoints.length, 1);
  t.equal(warnings.length, 1);
  t.same(dd.desired.uplinks!.map((u) => u.ifname), ['eth0', 'eth1'], 'auto: not lo, bridges, bridge ports or L3 devices');
  t.same(dd.desired.served!.map((u) => u.ifname), ['eth0', 'eth1']);
});

t.test('desiredFromDocker: --interfaces sets the served interfaces; a named L3 device is refused, never served', async (t) => {
  const dd = desiredFromDocker(networks, [], { ...DEFAULT_DOCKER_SETTINGS, uplinks: ['eth0'], interfaces: [] }, host);
  t.same(dd.desired.served!.map((u) => u.ifname), ['eth0'], "--interfaces '': the uplinks alone");
  const l3 = desiredFromDocker(networks, [], { ...DEFAULT_DOCKER_SETTINGS, uplinks: ['eth0'], interfaces: ['wg0', 'eth1', 'gone0'] }, host);
  t.same(l3.desired.served!.map((u) => u.ifname), ['eth0', 'eth1'], 'wg0 left out; an interface that is not there (yet) is skipped');
  t.same(l3.refused.map((r) => [r.ifname, r.from]), [['wg0', 'interfaces']]);
  t.match(l3.refused[0]!.reason, /wg0 is an L3 device \(link type none, wireguard\): its packets carry no Ethernet header/);
  const up = desiredFromDocker(networks, [], { ...DEFAULT_DOCKER_SETTINGS, uplinks: ['wg0'] }, host);
  t.same(up.desired.uplinks, [], 'an L3 uplink is refused too (uplinks are always served)');
  t.same(up.refused.map((r) => r.from), ['uplinks']);
});

t.test('isRelevant: the events that change the dataplane', async (t) => {
  t.ok(isRelevant({ Type: 'container', Action: 'start' }));
  t.ok(isRelevant({ Type: 'container', Action: 'die' }));
  t.ok(isRelevant({ Type: 'network', Action: 'connect' }));
  t.ok(isRelevant({ Type: 'network', Action: 'disconnect' }));
  t.ok(isRelevant({ Type: 'network', Action: 'create' }));
  t.notOk(isRelevant({ Type: 'container', Action: 'exec_start: sh' }));
  t.notOk(isRelevant({ Type: 'image', Action: 'pull' }));
});

t.test('desiredFromDocker: a routed network publishes its container ports, whatever the host port (empty, 0 or given)', async (t) => {
  const rnets = networks.map((n) => (n.Name === 'front' ? { ...n, Options: { ...(n.Options ?? {}), 'com.docker.network.bridge.gateway_mode_ipv4': 'routed' } } : n));
  const r = container(
    'r',
    { front: { id: 'a'.repeat(64), ip: '172.18.0.2', mac: '02:42:ac:12:00:02' } },
    { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '' }, { HostIp: '::', HostPort: '' }], '53/udp': [{ HostIp: '0.0.0.0', HostPort: '0' }], '81/tcp': [{ HostIp: '0.0.0.0', HostPort: '8081' }] },
    'front',
  );
  const dd = desiredFromDocker(rnets, [{ info: r, endpoints: [{ networkId: 'a'.repeat(64), ip: '172.18.0.2', mac: '02:42:ac:12:00:02', ifindex: 11, ifname: 'veth2' }] }], DEFAULT_DOCKER_SETTINGS, host);
  t.same(
    dd.desired.publish!.map((p) => `${p.proto}:${p.ip}:${p.port}`).sort(),
    ['tcp:172.18.0.2:80', 'tcp:172.18.0.2:81', 'udp:172.18.0.2:53'],
    'every binding kept (the planner keys them by container address and port)',
  );
  t.equal(dd.desired.networks.find((n) => n.name === 'docker:front')!.routed, true);
});

// ---------------------------------------------------------------------------
// IPv6 (issue 12). The fixture is what a real dockerd 20.10 answered
// (GET /networks, /networks/{id}, /containers/{id}/json), captured by
// test/integration/docker-v6.test.ts with BERTH_DOCKER_V6_CAPTURE set:
// `--ipv6 --fixed-cidr-v6 fd89:d::/64` on the default bridge bv6d0, and
//   v6d-net  --ipv6 --subnet 10.89.1.0/24 --subnet fd89:1::/64
//   v6d-gw   ... --gateway fd89:2::fe -o ...gateway_mode_ipv6=routed
//   v6d-v4   IPv4 only
//   v6d-no4  --ipv6 ... -o com.docker.network.enable_ipv4=false (20.10 ignores it)
// containers v6d-c1 (-p 28961:80 -p 127.0.0.1:28962:81/udp -p [::1]:28963:82
// -p [::]:28964:83), c2 on bridge, c3 on v6d-v4, c4 on v6d-gw, c5 on v6d-no4.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bindings6FromDockerPorts, familiesOf, ipv6Subnet } from '../../src/sources/docker/desired';
import type { ResolvedContainer } from '../../src/sources/docker/desired';

interface Capture {
  version: { Version: string; ApiVersion: string };
  networks: DockerNetwork[];
  inspect: Record<string, DockerNetwork>;
  containers: Record<string, DockerContainer>;
}
const FIXTURE = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'docker', 'dockerd-20.10-dualstack.json');
const cap = JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as Capture;
const BRIDGES = ['bv6d0', 'bv6d1', 'bv6d2', 'bv6d3', 'bv6d4'];
const host6: HostFacts = {
  interfaces: [
    { ifindex: 1, ifname: 'lo', mac: '00:00:00:00:00:00', addr: '127.0.0.1', kind: 'loopback', linkType: 'loopback' },
    { ifindex: 2, ifname: 'up0', mac: '02:00:00:00:00:01', addr: '192.0.2.10', addr6: '2001:db8::10', kind: 'veth', linkType: 'ether' },
    { ifindex: 3, ifname: 'up1', mac: '02:00:00:00:00:02', addr: '198.51.100.10', addr6: '', kind: 'veth', linkType: 'ether' },
    ...BRIDGES.map((b, i) => ({ ifindex: 20 + i, ifname: b, mac: `02:42:00:00:00:0${i}`, addr: '', kind: 'bridge', linkType: 'ether' })),
    ...[1, 2, 3, 4, 5].map((i) => ({ ifindex: 30 + i, ifname: `veth${i}`, mac: `aa:00:00:00:00:0${i}`, addr: '', kind: 'veth', linkType: 'ether' })),
  ],
  addresses: [
    { addr: '127.0.0.1', family: 4, ifindex: 1, ifname: 'lo' },
    { addr: '192.0.2.10', family: 4, ifindex: 2, ifname: 'up0' },
    { addr: '::1', family: 6, ifindex: 1, ifname: 'lo' },
    { addr: '2001:db8::10', family: 6, ifindex: 2, ifname: 'up0' },
  ],
};

/** The fixture's running containers, each endpoint on a made-up host veth (31..35, by container number). */
function resolvedFromCapture(): ResolvedContainer[] {
  return Object.values(cap.containers).map((c) => {
    const n = Number(/(\d)$/.exec(c.Name)![1]);
    return {
      info: c,
      endpoints: Object.values(c.NetworkSettings.Networks ?? {}).map((e) => ({
        networkId: e.NetworkID,
        ip: e.IPAddress,
        ...(e.GlobalIPv6Address ? { ip6: e.GlobalIPv6Address } : {}),
        mac: e.MacAddress,
        ifindex: 30 + n,
        ifname: `veth${n}`,
      })),
    };
  });
}

t.test('networks from a real dockerd 20.10 (dual stack): the IPv6 subnet, gateway, families, gateway_mode_ipv6', async (t) => {
  t.equal(cap.version.ApiVersion, '1.41');
  const warnings: string[] = [];
  const { managed, skipped, warnings: w } = networksFrom(cap.networks, DEFAULT_DOCKER_SETTINGS, host6);
  warnings.push(...w.map((x) => x.warning));
  t.same([...managed.keys()].sort(), ['docker:bridge', 'docker:v6d-gw', 'docker:v6d-net', 'docker:v6d-no4', 'docker:v6d-v4']);
  t.same(skipped.map((s) => s.name).sort(), ['host', 'none']);
  t.same(warnings, []);
  const net = (n: string) => managed.get(`docker:${n}`)!.net;
  t.same(
    { subnet: net('v6d-net').subnet, subnet6: net('v6d-net').subnet6, prefixLen6: net('v6d-net').prefixLen6, gateway6: net('v6d-net').gateway6, ipv4: net('v6d-net').ipv4, routed6: net('v6d-net').routed6 },
    { subnet: '10.89.1.0', subnet6: 'fd89:1::', prefixLen6: 64, gateway6: 'fd89:1::1', ipv4: undefined, routed6: undefined },
    'dual stack; no IPv6 Gateway in IPAM: the subnet\'s first address, as Docker (IPv6Gateway of its containers)',
  );
  t.equal(net('v6d-net').gateway6, Object.values(cap.containers['/v6d-c1']!.NetworkSettings.Networks!)[0]!.IPv6Gateway);
  t.equal(net('bridge').subnet6, 'fd89:d::', 'the default bridge: --fixed-cidr-v6');
  t.equal(net('bridge').gateway6, 'fd89:d::1');
  t.equal(net('v6d-gw').gateway6, 'fd89:2::fe', 'an IPv6 Gateway given to docker network create');
  t.equal(net('v6d-gw').routed6, true, 'gateway_mode_ipv6=routed');
  t.equal(net('v6d-gw').routed, false, 'its IPv4 stays nat');
  t.equal(net('v6d-gw').masquerade, true, 'IPv4 is still masqueraded');
  t.equal(net('v6d-v4').subnet6, undefined, 'no --ipv6: no IPv6 fields');
  t.notOk('prefixLen6' in net('v6d-v4') || 'gateway6' in net('v6d-v4') || 'ipv4' in net('v6d-v4'));
  t.same(
    { subnet: net('v6d-no4').subnet, prefixLen: net('v6d-no4').prefixLen, gateway: net('v6d-no4').gateway, ipv4: net('v6d-no4').ipv4, subnet6: net('v6d-no4').subnet6 },
    { subnet: '', prefixLen: 0, gateway: '', ipv4: false, subnet6: 'fd89:4::' },
    'enable_ipv4=false: IPv6-only, though dockerd 20.10 still numbers IPv4 (Docker 29 would not)',
  );
  t.same(familiesOf(cap.inspect['v6d-no4']!), { ipv4: false, ipv6: true });
  t.same(ipv6Subnet(cap.inspect['v6d-gw']!), { addr: 'fd89:2::', prefixLen: 64, gateway: 'fd89:2::fe' });
});

t.test('endpoints and publishes from a real dockerd 20.10: each binding in its family, the container\'s address of that family', async (t) => {
  const warnings: Array<{ msg: string; f: Record<string, unknown> }> = [];
  const dd = desiredFromDocker(cap.networks, resolvedFromCapture(), { ...DEFAULT_DOCKER_SETTINGS, uplinks: ['up0', 'up1'], interfaces: [] }, host6, (msg, f) => warnings.push({ msg, f }));
  t.same(
    dd.desired.endpoints.map((e) => `${e.container}@${e.network}=${e.ip}|${e.ip6 ?? '-'}`).sort(),
    [
      'v6d-c1@docker:v6d-net=10.89.1.2|fd89:1::2',
      'v6d-c2@docker:bridge=10.89.0.2|fd89:d::242:a59:2',
      'v6d-c3@docker:v6d-v4=10.89.3.2|-',
      'v6d-c4@docker:v6d-gw=10.89.2.2|fd89:2::1',
      'v6d-c5@docker:v6d-no4=|fd89:4::2',
    ],
  );
  t.same(
    dd.desired.publish!.map((p) => `${p.hostIp.includes(':') ? `[${p.hostIp}]` : p.hostIp}:${p.hostPort}/${p.proto}->${p.container}@${p.ip}:${p.port}`).sort(),
    [
      '0.0.0.0:28961/tcp->v6d-c1@10.89.1.2:80',
      '0.0.0.0:28965/tcp->v6d-c2@10.89.0.2:80',
      '0.0.0.0:28966/tcp->v6d-c3@10.89.3.2:80',
      '0.0.0.0:28967/tcp->v6d-c4@10.89.2.2:80',
      '127.0.0.1:28962/udp->v6d-c1@10.89.1.2:81',
      '[::1]:28963/tcp->v6d-c1@fd89:1::2:82',
      '[::]:28961/tcp->v6d-c1@fd89:1::2:80',
      '[::]:28964/tcp->v6d-c1@fd89:1::2:83',
      '[::]:28965/tcp->v6d-c2@fd89:d::242:a59:2:80',
      '[::]:28967/tcp->v6d-c4@fd89:2::1:80',
      '[::]:28968/tcp->v6d-c5@fd89:4::2:80',
    ],
    '-p 28961:80 gives two entries; [::]: and [::1]: IPv6 only; 127.0.0.1: IPv4 only',
  );
  for (const p of dd.desired.publish!) {
    const ep = dd.desired.endpoints.find((e) => e.container === p.container)!;
    t.equal(p.ifindex, ep.ifindex);
    t.equal(p.mac, ep.mac);
  }
  t.same(warnings.map((w) => w.msg), ['publish skipped: the container has no address of that family on its network'], 'one warning: the IPv6-only network\'s IPv4 binding');
  t.same(warnings[0]!.f, { container: 'v6d-c5', network: 'docker:v6d-no4', skipped: ['0.0.0.0:28968:80/tcp'] });
  t.same(
    dd.desired.uplinks!.map((u) => [u.ifname, u.addr, u.addr6]),
    [
      ['up0', '192.0.2.10', '2001:db8::10'],
      ['up1', '198.51.100.10', undefined],
    ],
    "NAT66 source: the uplink's global IPv6 address",
  );
  t.same(dd.desired.hostAddrs!.map((a) => a.addr), ['127.0.0.1', '192.0.2.10', '::1', '2001:db8::10'], 'the host addresses of both families');
  t.equal(dd.networkSubnets.get('v6d-no4'), undefined, 'the policy\'s network: rules take IPv4: an IPv6-only network has none');
  t.same(dd.containerIps.get('v6d-c5'), undefined);
  const names = dockerPolicyNames(dd);
  t.equal(names.containerAddr('v6d-c1'), '10.89.1.2', 'the policy target is the IPv4 address');
  t.equal(names.containerAddr('v6d-c5'), undefined);
  t.equal(names.containerAddr6?.('v6d-c1'), 'fd89:1::2', 'the IPv6 fields: the address its v6 ports are published to');
  t.equal(names.containerAddr6?.('v6d-c5'), 'fd89:4::2', 'an IPv6-only container has its IPv6 target');
  t.equal(names.networkSubnet6?.('v6d-no4'), 'fd89:4::/64', "a network's subnet6");
  t.equal(names.containerAddr6?.('nope'), undefined);
});

const v6net: DockerNetwork = {
  Name: 'six',
  Id: '6'.repeat(64),
  Driver: 'bridge',
  EnableIPv6: true,
  IPAM: { Config: [{ Subnet: '10.89.6.0/24', Gateway: '10.89.6.1' }, { Subnet: 'fd89:6::/64', Gateway: 'fd89:6::1' }] },
  Options: { 'com.docker.network.bridge.name': 'bv6d0' },
};
const c6 = (name: string, ip: string, ip6: string, ports: DockerContainer['NetworkSettings']['Ports'], ifindex = 31): ResolvedContainer => ({
  info: {
    Id: name.padEnd(64, '0'),
    Name: `/${name}`,
    State: { Running: true, Pid: 1 },
    HostConfig: { NetworkMode: 'six' },
    NetworkSettings: { Ports: ports, Networks: { six: { NetworkID: '6'.repeat(64), IPAddress: ip, GlobalIPv6Address: ip6, GlobalIPv6PrefixLen: ip6 ? 64 : 0, MacAddress: `aa:00:00:00:00:0${ifindex - 30}` } } },
  },
  endpoints: [{ networkId: '6'.repeat(64), ip, ...(ip6 ? { ip6 } : {}), mac: `aa:00:00:00:00:0${ifindex - 30}`, ifindex, ifname: `veth${ifindex - 30}` }],
});

t.test('Docker 29 shapes: EnableIPv4=false, enable_ipv4/enable_ipv6 as options or labels, gateway_mode_ipv6', async (t) => {
  const only6: DockerNetwork = { ...v6net, EnableIPv4: false, IPAM: { Config: [{ Subnet: 'fd89:6::/64' }] } };
  const a = networksFrom([only6], DEFAULT_DOCKER_SETTINGS, host6).managed.get('docker:six')!.net;
  t.same([a.subnet, a.prefixLen, a.gateway, a.ipv4, a.subnet6, a.gateway6, a.masquerade], ['', 0, '', false, 'fd89:6::', 'fd89:6::1', true], 'EnableIPv4=false: IPv6-only, NAT66');
  t.equal(networksFrom([{ ...only6, EnableIPv6: false }], DEFAULT_DOCKER_SETTINGS, host6).skipped[0]!.reason, 'neither IPv4 nor IPv6');
  t.equal(networksFrom([{ ...only6, IPAM: { Config: [] } }], DEFAULT_DOCKER_SETTINGS, host6).skipped[0]!.reason, 'IPv6-only without an IPv6 subnet');
  t.same(familiesOf({ ...v6net, EnableIPv6: false, Labels: { 'com.docker.network.enable_ipv6': 'true' } }), { ipv4: true, ipv6: true }, 'a label turns IPv6 on');
  t.same(familiesOf({ ...v6net, EnableIPv6: false, Options: { 'com.docker.network.enable_ipv6': 'false' } }), { ipv4: true, ipv6: false });
  t.same(familiesOf({ ...v6net, Labels: { 'com.docker.network.enable_ipv4': 'false' } }), { ipv4: false, ipv6: true }, 'enable_ipv4 as a label');
  const no6 = networksFrom([{ ...v6net, EnableIPv6: false }], DEFAULT_DOCKER_SETTINGS, host6).managed.get('docker:six')!.net;
  t.equal(no6.subnet6, undefined, 'an IPv6 pool in IPAM but IPv6 off: no IPv6 (Docker numbers none)');
  const gw0 = networksFrom([{ ...v6net, IPAM: { Config: [{ Subnet: 'fd89:6::/64', Gateway: 'fd89:7::1' }, { Subnet: '10.89.6.0/24' }] } }], DEFAULT_DOCKER_SETTINGS, host6).managed.get('docker:six')!.net;
  t.equal(gw0.gateway6, 'fd89:6::1', 'a gateway outside the subnet is not taken: the first address');
  const bothRouted = networksFrom([{ ...v6net, Options: { 'com.docker.network.bridge.gateway_mode_ipv4': 'routed', 'com.docker.network.bridge.gateway_mode_ipv6': 'routed' } }], DEFAULT_DOCKER_SETTINGS, host6).managed.get('docker:six')!.net;
  t.same([bothRouted.routed, bothRouted.routed6, bothRouted.masquerade], [true, true, false], 'no family NATed: no masquerade');
  const r4 = networksFrom([{ ...v6net, Options: { 'com.docker.network.bridge.gateway_mode_ipv4': 'routed' } }], DEFAULT_DOCKER_SETTINGS, host6).managed.get('docker:six')!.net;
  t.same([r4.routed, r4.routed6, r4.masquerade], [true, undefined, true], 'IPv4 routed, IPv6 nat: NAT66 still masquerades');
  const iso = networksFrom([{ ...v6net, Options: { 'com.docker.network.bridge.gateway_mode_ipv6': 'isolated' } }], DEFAULT_DOCKER_SETTINGS, host6);
  t.equal(iso.managed.get('docker:six')!.net.internal, true, 'isolated IPv6: internal (fails closed)');
  t.match(iso.warnings, [{ network: 'six', warning: /stricter than Docker/ }]);
  const iso6only = networksFrom([{ ...only6, Options: { 'com.docker.network.bridge.gateway_mode_ipv6': 'isolated' } }], DEFAULT_DOCKER_SETTINGS, host6);
  t.equal(iso6only.managed.get('docker:six')!.net.internal, true);
  t.same(iso6only.warnings, [], 'IPv6-only and isolated: exactly Docker\'s internal');
});

t.test('IPv6 bindings: a container without an IPv6 address gets one warning, an address outside the subnet is left out, bad HostIp skips', async (t) => {
  const warnings: Array<{ msg: string; f: Record<string, unknown> }> = [];
  const w = (msg: string, f: Record<string, unknown>): void => void warnings.push({ msg, f });
  const ports = { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '28971' }, { HostIp: '::', HostPort: '28971' }], '53/udp': [{ HostIp: '::', HostPort: '28972' }, { HostIp: 'fd89::5', HostPort: '28973' }] };
  const dd = desiredFromDocker([v6net], [c6('v4only', '10.89.6.2', '', ports)], { ...DEFAULT_DOCKER_SETTINGS, uplinks: ['up0'] }, host6, w);
  t.same(dd.desired.publish!.map((p) => `${p.hostIp}:${p.hostPort}->${p.ip}`), ['0.0.0.0:28971->10.89.6.2']);
  t.equal(warnings.length, 1, 'one warning for the container, whatever the number of its IPv6 bindings');
  t.same(warnings[0]!.f.skipped, ['[::]:28971:80/tcp', '[::]:28972:53/udp', '[fd89::5]:28973:53/udp']);
  warnings.length = 0;
  const out = desiredFromDocker([v6net], [c6('far', '10.89.6.3', 'fd89:99::3', ports)], DEFAULT_DOCKER_SETTINGS, host6, w);
  t.equal(out.desired.endpoints[0]!.ip6, undefined, 'not in fd89:6::/64');
  t.same(warnings.map((x) => x.msg).sort(), ["endpoint IPv6 address left out: not in the network's IPv6 subnet", 'publish skipped: the container has no address of that family on its network']);
  warnings.length = 0;
  const both = desiredFromDocker([v6net], [c6('a', '10.89.6.2', 'FD89:6:0::2', ports, 31), c6('b', '10.89.6.3', 'fd89:6::2', {}, 32)], DEFAULT_DOCKER_SETTINGS, host6, w);
  t.same(both.desired.endpoints.map((e) => `${e.container}=${e.ip6}`), ['a=fd89:6::2'], 'canonical; the same IPv6 address twice: the second endpoint skipped');
  t.match(warnings, [{ msg: 'endpoint skipped: address or veth already taken' }]);
  t.same(
    both.desired.publish!.map((p) => `${p.hostIp}:${p.hostPort}/${p.proto}->${p.ip}`),
    ['0.0.0.0:28971/tcp->10.89.6.2', ':::28971/tcp->fd89:6::2', ':::28972/udp->fd89:6::2', 'fd89::5:28973/udp->fd89:6::2'],
  );
  warnings.length = 0;
  const bad = desiredFromDocker([v6net], [c6('bad', '10.89.6.2', 'fd89:6::2', { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '28971' }, { HostIp: '::zz', HostPort: '28971' }] })], DEFAULT_DOCKER_SETTINGS, host6, w);
  t.same(bad.desired.publish, [], 'a malformed binding: none of the container\'s publishes (as for IPv4)');
  t.match(warnings, [{ msg: 'published ports skipped', f: { error: /invalid HostIp "::zz"/ } }]);
  t.same(bindings6FromDockerPorts({ '80/tcp': [{ HostIp: '[::1]', HostPort: '80' }, { HostIp: '::1', HostPort: '80' }], '9/sctp': [{ HostIp: '::', HostPort: '9' }] }), [{ hostIp: '::1', hostPort: 80, containerPort: 80, proto: 'tcp' }], 'bracketed and duplicate; sctp left out');
  t.throws(() => bindings6FromDockerPorts({ '80/tcp': [{ HostIp: '::', HostPort: '70000' }] }), /invalid host port "70000"/);
  t.same(bindings6FromDockerPorts({ '80/tcp': [{ HostIp: '::', HostPort: '' }] }, { routed: true }), [{ hostIp: '::', hostPort: 0, containerPort: 80, proto: 'tcp' }], 'routed: no host port');
  const routed = desiredFromDocker([{ ...v6net, Options: { ...v6net.Options, 'com.docker.network.bridge.gateway_mode_ipv6': 'routed' } }], [c6('r', '10.89.6.2', 'fd89:6::2', { '80/tcp': [{ HostIp: '::', HostPort: '' }, { HostIp: '0.0.0.0', HostPort: '28974' }] })], DEFAULT_DOCKER_SETTINGS, host6, w);
  t.same(routed.desired.publish!.map((p) => `${p.hostIp}:${p.hostPort}->${p.ip}:${p.port}`), ['0.0.0.0:28974->10.89.6.2:80', ':::0->fd89:6::2:80']);
});

t.test("Docker mode's berth_docker_networks carries each managed network's families", async (t) => {
  const { Registry } = await import('prom-client');
  const { registerDockerMetrics } = await import('../../src/observe/docker-metrics');
  const { networkFamilies } = await import('../../src/sources/docker/follower');
  const { managed, skipped } = networksFrom(cap.networks, DEFAULT_DOCKER_SETTINGS, host6);
  const registry = new Registry();
  const status = {
    connected: true, lastOk: 0, lastError: '', events: 0, resyncs: 1, reconnects: 0, flushed: 0, skipped,
    managed: [...managed.values()].map((m) => m.docker.Name),
    families: Object.fromEntries([...managed.values()].map((m) => [m.docker.Name, networkFamilies(m.net)])),
  };
  registerDockerMetrics(registry, () => status);
  const text = await registry.metrics();
  t.match(text, /berth_docker_networks\{network="v6d-net",driver="bridge",managed="true",families="ipv4,ipv6"\} 1/);
  t.match(text, /berth_docker_networks\{network="v6d-v4",driver="bridge",managed="true",families="ipv4"\} 1/);
  t.match(text, /berth_docker_networks\{network="v6d-no4",driver="bridge",managed="true",families="ipv6"\} 1/);
  t.match(text, /berth_docker_networks\{network="host",driver="host",managed="false",families=""\} 1/);
});

