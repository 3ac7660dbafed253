import t from 'tap';
import type { DockerContainer, DockerNetwork } from '../../src/docker/client';
import { DEFAULT_DOCKER_SETTINGS, berthNetworkName, bridgeNameOf, desiredFromDocker, networksFrom, publishNetwork } from '../../src/docker/desired';
import { isRelevant } from '../../src/docker/follower';
import { dockerPolicyNames } from '../../src/docker/mode';
import type { HostFacts } from '../../src/standalone';

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
