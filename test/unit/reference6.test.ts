// The ip6tables half of the reference (test/lib/reference6.ts): the text of
// Docker 29's ip6tables rules (proxy off), checked line for line against the
// shapes of moby's iptabler golden files (`hairpin=true,...__ip6tables`),
// the chain-suffix scoping, the reading of a config's IPv6 side, and bad
// input refused with the field named. Pure: nothing is installed.
import t from 'tap';
import { parseConfig, type BerthConfig } from '../../src/domain/config';
import { dockerRules, dockerRulesV6 } from '../lib/reference';
import { Side6, canon6, canonCidr6, checkSide6, dockerRules6, firstHost6, inPrefix6, side6FromConfig } from '../lib/reference6';

const side: Side6 = {
  networks: [
    { name: 'n1', bridge: 'bridge1', subnet6: 'fd49:efd7:54aa::/64', gateway6: 'fd49:efd7:54aa::1', internal: false, icc: true, masquerade: true, routed: false },
    { name: 'n2', bridge: 'bridge2', subnet6: '2001:db8:2::/64', gateway6: '2001:db8:2::1', internal: false, icc: false, masquerade: true, routed: false },
    { name: 'n3', bridge: 'bridge3', subnet6: 'fd00:3::/64', gateway6: 'fd00:3::1', internal: true, icc: true, masquerade: true, routed: false },
    { name: 'n4', bridge: 'bridge4', subnet6: 'fd00:4::/64', gateway6: 'fd00:4::1', internal: false, icc: true, masquerade: false, routed: false },
  ],
  containers: [
    {
      name: 'c1',
      network: 'n1',
      ip6: 'fd49:efd7:54aa::2',
      publish: [
        { hostIp: '::', hostPort: 8080, containerPort: 80, proto: 'tcp' },
        { hostIp: '::1', hostPort: 8081, containerPort: 80, proto: 'tcp' },
        { hostIp: '::', hostPort: 5353, containerPort: 53, proto: 'udp' },
        { hostIp: '2001:db8:ff::1', hostPort: 8082, containerPort: 80, proto: 'tcp' },
      ],
    },
    { name: 'c2', network: 'n2', ip6: '2001:db8:2::2', publish: [] },
    { name: 'c3', network: 'n3', ip6: 'fd00:3::2', publish: [] },
    { name: 'c4', network: 'n4', ip6: 'fd00:4::2', publish: [] },
  ],
  externals: [],
};

t.test('Docker 29\'s ip6tables rules, proxy off (moby iptabler golden files, hairpin=true)', async (t) => {
  const r = dockerRules6(side, [], { uplinks: ['eth0'] });
  t.same(r.filter, [
    ':DOCKER - [0:0]',
    ':DOCKER-BRIDGE - [0:0]',
    ':DOCKER-CT - [0:0]',
    ':DOCKER-FORWARD - [0:0]',
    ':DOCKER-INTERNAL - [0:0]',
    ':DOCKER-USER - [0:0]',
    '-A FORWARD -j DOCKER-USER',
    '-A FORWARD -j DOCKER-FORWARD',
    '-A DOCKER -d fd49:efd7:54aa::2/128 ! -i bridge1 -o bridge1 -p tcp -m tcp --dport 80 -j ACCEPT',
    '-A DOCKER -d fd49:efd7:54aa::2/128 ! -i bridge1 -o bridge1 -p udp -m udp --dport 53 -j ACCEPT',
    '-A DOCKER ! -i bridge1 -o bridge1 -j DROP',
    '-A DOCKER ! -i bridge2 -o bridge2 -j DROP',
    '-A DOCKER ! -i bridge4 -o bridge4 -j DROP',
    '-A DOCKER-BRIDGE -o bridge1 -j DOCKER',
    '-A DOCKER-BRIDGE -o bridge2 -j DOCKER',
    '-A DOCKER-BRIDGE -o bridge4 -j DOCKER',
    '-A DOCKER-CT -o bridge1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A DOCKER-CT -o bridge2 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A DOCKER-CT -o bridge4 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A DOCKER-FORWARD -j DOCKER-CT',
    '-A DOCKER-FORWARD -j DOCKER-INTERNAL',
    '-A DOCKER-FORWARD -j DOCKER-BRIDGE',
    '-A DOCKER-FORWARD -i bridge1 -j ACCEPT',
    '-A DOCKER-FORWARD -i bridge2 -o bridge2 -j DROP',
    '-A DOCKER-FORWARD -i bridge2 ! -o bridge2 -j ACCEPT',
    '-A DOCKER-FORWARD -i bridge3 -o bridge3 -j ACCEPT',
    '-A DOCKER-FORWARD -i bridge4 -j ACCEPT',
    '-A DOCKER-INTERNAL ! -s fd00:3::/64 ! -i bridge3 -o bridge3 -j DROP',
    '-A DOCKER-INTERNAL ! -d fd00:3::/64 -i bridge3 ! -o bridge3 -j DROP',
  ]);
  t.same(r.nat, [
    ':DOCKER - [0:0]',
    '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
    '-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER',
    '-A POSTROUTING -o bridge1 -m addrtype --src-type LOCAL -j MASQUERADE',
    '-A POSTROUTING -s fd49:efd7:54aa::/64 ! -o bridge1 -j MASQUERADE',
    '-A POSTROUTING -o bridge2 -m addrtype --src-type LOCAL -j MASQUERADE',
    '-A POSTROUTING -s 2001:db8:2::/64 ! -o bridge2 -j MASQUERADE',
    '-A POSTROUTING -o bridge4 -m addrtype --src-type LOCAL -j MASQUERADE',
    '-A POSTROUTING -s fd49:efd7:54aa::2/128 -d fd49:efd7:54aa::2/128 -p tcp -m tcp --dport 80 -j MASQUERADE',
    '-A POSTROUTING -s fd49:efd7:54aa::2/128 -d fd49:efd7:54aa::2/128 -p udp -m udp --dport 53 -j MASQUERADE',
    '-A DOCKER ! -s fe80::/10 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd49:efd7:54aa::2]:80',
    '-A DOCKER ! -s fe80::/10 -d ::1/128 -p tcp -m tcp --dport 8081 -j DNAT --to-destination [fd49:efd7:54aa::2]:80',
    '-A DOCKER ! -s fe80::/10 -p udp -m udp --dport 5353 -j DNAT --to-destination [fd49:efd7:54aa::2]:53',
    '-A DOCKER ! -s fe80::/10 -d 2001:db8:ff::1/128 -p tcp -m tcp --dport 8082 -j DNAT --to-destination [fd49:efd7:54aa::2]:80',
  ], 'NAT66 for the ULA and the global prefix alike; none for n4 (masquerade off) nor the internal n3');
  t.same(r.raw, [
    '-A PREROUTING -d fd49:efd7:54aa::2/128 ! -i bridge1 -j DROP',
    '-A PREROUTING -d 2001:db8:2::2/128 ! -i bridge2 -j DROP',
    '-A PREROUTING -d fd00:4::2/128 ! -i bridge4 -j DROP',
  ], 'direct access dropped per endpoint; no ::1 loopback rule (the kernel drops ::1 off lo itself)');
});

t.test('a routed IPv6 network (gateway_mode_ipv6=routed): ipv6-icmp accepted, no NAT, no direct-access drop', async (t) => {
  const rt: Side6 = {
    networks: [{ name: 'r', bridge: 'br-r', subnet6: 'fd49:efd7:54aa::/64', gateway6: 'fd49:efd7:54aa::1', internal: false, icc: true, masquerade: true, routed: true }],
    containers: [{ name: 'c', network: 'r', ip6: 'fd49:efd7:54aa::2', publish: [{ hostIp: '::', hostPort: 8080, containerPort: 80, proto: 'tcp' }] }],
    externals: [],
  };
  const r = dockerRules6(rt, [], { uplinks: [] });
  t.same(r.filter.filter((l) => l.startsWith('-A DOCKER ')), [
    '-A DOCKER -d fd49:efd7:54aa::2/128 ! -i br-r -o br-r -p tcp -m tcp --dport 80 -j ACCEPT',
    '-A DOCKER -o br-r -p ipv6-icmp -j ACCEPT',
    '-A DOCKER ! -i br-r -o br-r -j DROP',
  ]);
  t.same(r.nat, [
    ':DOCKER - [0:0]',
    '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
    '-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER',
    '-A POSTROUTING -o br-r -m addrtype --src-type LOCAL -j MASQUERADE',
  ]);
  t.same(r.raw, []);
});

t.test('chain suffix: every chain renamed, builtins entered only for our interfaces and v6 addresses', async (t) => {
  const s: Side6 = { ...side, externals: [{ name: 'x', hostIfname: 'vx', address6: 'fd00:ff::2', prefixLen6: 64, hostAddress6: 'fd00:ff::1' }] };
  const r = dockerRules6(s, [], { uplinks: ['up0'], chainSuffix: 'x1', hostInterfaces: [{ ifname: 'side0', addr6: 'fd00:5:0::1' }] });
  const all = [...r.filter, ...r.nat, ...r.raw];
  t.notOk(all.some((l) => /^-A (FORWARD|PREROUTING|OUTPUT|POSTROUTING|INPUT) /.test(l) && !/ -[jg] \S+-x1$/.test(l)), 'builtin chains only get jumps to our chains');
  t.ok(r.filter.includes('-A FORWARD -i up0 -g FORWARD-x1') && r.filter.includes('-A FORWARD -o bridge3 -g FORWARD-x1') && r.filter.includes('-A FORWARD -i side0 -g FORWARD-x1'));
  t.ok(r.nat.includes(':PREROUTING-x1 - [0:0]') && r.nat.includes(':POSTROUTING-x1 - [0:0]'));
  t.same(r.nat.filter((l) => l.startsWith('-A OUTPUT ')), [
    '-A OUTPUT -d fd49:efd7:54aa::1/128 -j OUTPUT-x1',
    '-A OUTPUT -d 2001:db8:2::1/128 -j OUTPUT-x1',
    '-A OUTPUT -d fd00:3::1/128 -j OUTPUT-x1',
    '-A OUTPUT -d fd00:4::1/128 -j OUTPUT-x1',
    '-A OUTPUT -d fd00:ff::1/128 -j OUTPUT-x1',
    '-A OUTPUT -d fd00:5::1/128 -j OUTPUT-x1',
    '-A OUTPUT -d 2001:db8:ff::1/128 -j OUTPUT-x1',
    '-A OUTPUT -d ::1/128 -p tcp -m tcp --dport 8080 -j OUTPUT-x1',
    '-A OUTPUT -d ::1/128 -p tcp -m tcp --dport 8081 -j OUTPUT-x1',
    '-A OUTPUT -d ::1/128 -p udp -m udp --dport 5353 -j OUTPUT-x1',
  ], 'the host\'s connections to the gateways, the external\'s host side, the other NIC, a specific publish address, and ::1 for the ::1 and :: publishes');
  t.ok(r.raw.includes('-A PREROUTING-x1 -d fd49:efd7:54aa::2/128 ! -i bridge1 -j DROP'));
  t.throws(() => dockerRules6(side, [], { uplinks: [], chainSuffix: 'much-too-long-suffix' }), /chainSuffix/);
});

t.test('addresses are written as ip6tables-save prints them', async (t) => {
  t.equal(canon6('FD87:0000:0:1::0010'), 'fd87:0:0:1::10');
  t.equal(canon6('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  t.equal(canonCidr6('fd87:0:0:1:0:0:0:0/64'), 'fd87:0:0:1::/64');
  t.equal(firstHost6('fd87:0:0:1::/64'), 'fd87:0:0:1::1');
  t.ok(inPrefix6('fd87:0:0:1::10', 'fd87:0:0:1::/64'));
  t.notOk(inPrefix6('fd87:0:0:2::10', 'fd87:0:0:1::/64'));
  t.throws(() => canon6('10.0.0.1'), /not an IPv6 address/);
  t.throws(() => canon6('fd87::1::2'), /not an IPv6 address/);
  t.throws(() => canonCidr6('fd87::1/64'), /host bits/);
  t.throws(() => canonCidr6('fd87::/129'), /not an IPv6 prefix/);
});

t.test('bad input: an error naming the field, no rules', async (t) => {
  const bad = (patch: (s: Side6) => Side6, re: RegExp): void => {
    t.throws(() => dockerRules6(patch(side), [], { uplinks: [] }), re);
  };
  bad((s) => ({ ...s, networks: [{ ...s.networks[0]!, subnet6: 'fd49:efd7:54aa:0::/64' }, ...s.networks.slice(1)] }), /v6\.networks\[0\]\.subnet6: .* not canonical/);
  bad((s) => ({ ...s, networks: [{ ...s.networks[0]!, gateway6: 'fd00:9::1' }, ...s.networks.slice(1)] }), /v6\.networks\[0\]\.gateway6/);
  bad((s) => ({ ...s, containers: [{ ...s.containers[0]!, ip6: 'fd00:9::2' }] }), /v6\.containers\[0\]\.ip6: fd00:9::2 is not a canonical address in fd49:efd7:54aa::\/64/);
  bad((s) => ({ ...s, containers: [{ ...s.containers[0]!, network: 'nope' }] }), /v6\.containers\[0\]\.network: nope has no IPv6 side/);
  bad((s) => ({ ...s, containers: [{ ...s.containers[2]!, publish: [{ hostIp: '::', hostPort: 1, containerPort: 1, proto: 'tcp' }] }] }), /v6\.containers\[0\]\.publish\[0\]: network n3 is internal/);
  bad((s) => ({ ...s, containers: [{ ...s.containers[0]!, publish: [{ hostIp: '127.0.0.1', hostPort: 1, containerPort: 1, proto: 'tcp' }] }] }), /publish\[0\]\.hostIp/);
  t.doesNotThrow(() => checkSide6(side));
});

const v4 = parseConfig(`
networks:
  - name: n1
    subnet: 192.0.2.0/24
    bridge: bridge1
containers:
  - name: c1
    network: n1
    ip: 192.0.2.2
    publish: ["8080:80", "127.0.0.1:8081:80"]
uplinks: []
`);

t.test('a config without IPv6: no ip6tables half; the IPv4 half ignores v6 bindings', async (t) => {
  t.same(side6FromConfig(v4), { networks: [], containers: [], externals: [] });
  t.equal(dockerRulesV6(v4, { uplinks: [] }), null, 'nothing for ip6tables-restore');
  // the dual-stack shape of issue 12 (v6cfg's fields), built by hand
  const dual = {
    ...v4,
    networks: [{ ...v4.networks[0]!, subnet6: { addr: 'fd87:1::', prefixLen: 64 } }],
    containers: [{ ...v4.containers[0]!, ip6: 'fd87:1::2', publish: [...v4.containers[0]!.publish, { hostIp: '::1', hostPort: 8081, containerPort: 80, proto: 'tcp' as const }] }],
  } as unknown as BerthConfig;
  t.same(dockerRules(dual, { uplinks: [] }), dockerRules(v4, { uplinks: [] }), 'the IPv4 rules are those of the IPv4 config');
  const s = side6FromConfig(dual);
  t.same(s.networks.map((n) => [n.subnet6, n.gateway6]), [['fd87:1::/64', 'fd87:1::1']], 'gateway6 defaults to the subnet\'s ::1');
  t.same(s.containers[0]!.publish, [
    { hostIp: '::', hostPort: 8080, containerPort: 80, proto: 'tcp' },
    { hostIp: '::1', hostPort: 8081, containerPort: 80, proto: 'tcp' },
  ], '8080:80 serves both families; 127.0.0.1: stays IPv4; [::1]: is IPv6');
  const r = dockerRulesV6(dual, { uplinks: [] })!;
  t.ok(r.nat.includes('-A DOCKER ! -s fe80::/10 -d ::1/128 -p tcp -m tcp --dport 8081 -j DNAT --to-destination [fd87:1::2]:80'));
  t.ok(r.raw.includes('-A PREROUTING -d fd87:1::2/128 ! -i bridge1 -j DROP'));
});

t.test('a dual-stack file, as the config parser reads it (issue 12): both halves', async (t) => {
  const dual = parseConfig(`
networks:
  - name: n1
    subnet: 192.0.2.0/24
    subnet6: fd87:0:1::/64
    bridge: bridge1
  - name: n6
    subnet6: fd87:0:6::/64
    gateway6: fd87:0:6::fe
    bridge: bridge6
    icc: false
containers:
  - name: c1
    network: n1
    ip: 192.0.2.2
    ip6: fd87:0:1::2
    publish: ["8080:80", "127.0.0.1:8081:80", "[::1]:8081:80", "[::]:8082:82", "5353:53/udp"]
  - name: c6
    network: n6
    ip6: fd87:0:6::2
    publish: ["9090:90"]
externals:
  - name: x1
    address: 198.51.100.2/24
    address6: fd87:0:ff::2/64
uplinks: []
`);
  const s = side6FromConfig(dual);
  t.same(s.networks.map((n) => [n.name, n.subnet6, n.gateway6, n.icc]), [
    ['n1', 'fd87:0:1::/64', 'fd87:0:1::1', true],
    ['n6', 'fd87:0:6::/64', 'fd87:0:6::fe', false],
  ]);
  t.same(s.containers.map((c) => [c.name, c.ip6, c.publish.map((b) => `[${b.hostIp}]:${b.hostPort}:${b.containerPort}/${b.proto}`)]), [
    ['c1', 'fd87:0:1::2', ['[::]:8080:80/tcp', '[::1]:8081:80/tcp', '[::]:8082:82/tcp', '[::]:5353:53/udp']],
    ['c6', 'fd87:0:6::2', ['[::]:9090:90/tcp']],
  ], 'the families of Docker 29: no host address serves both, [::] and [::1] IPv6 alone, 127.0.0.1 IPv4 alone');
  t.same(s.externals.map((e) => [e.address6, e.prefixLen6, e.hostAddress6]), [['fd87:0:ff::2', 64, 'fd87:0:ff::1']]);
  const r4 = dockerRules(dual, { uplinks: [] });
  t.same([...r4.filter, ...r4.nat, ...r4.raw].filter((l) => /bridge6|fd87|::|8082|9090/.test(l)), [], 'the IPv6-only network and the v6 bindings get no iptables rule');
  t.ok(r4.nat.includes('-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.0.2.2:80'), 'but 8080:80 is in IPv4 too');
  const r6 = dockerRulesV6(dual, { uplinks: [] })!;
  t.same(r6.nat.filter((l) => l.startsWith('-A DOCKER ')), [
    '-A DOCKER ! -s fe80::/10 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd87:0:1::2]:80',
    '-A DOCKER ! -s fe80::/10 -d ::1/128 -p tcp -m tcp --dport 8081 -j DNAT --to-destination [fd87:0:1::2]:80',
    '-A DOCKER ! -s fe80::/10 -p tcp -m tcp --dport 8082 -j DNAT --to-destination [fd87:0:1::2]:82',
    '-A DOCKER ! -s fe80::/10 -p udp -m udp --dport 5353 -j DNAT --to-destination [fd87:0:1::2]:53',
    '-A DOCKER ! -s fe80::/10 -p tcp -m tcp --dport 9090 -j DNAT --to-destination [fd87:0:6::2]:90',
  ]);
  t.ok(r6.filter.includes('-A DOCKER-FORWARD -i bridge6 -o bridge6 -j DROP'), 'icc=false on the IPv6-only network');
  t.ok(r6.nat.includes('-A POSTROUTING -s fd87:0:6::/64 ! -o bridge6 -j MASQUERADE'), 'NAT66 for the IPv6-only network');
});

t.test("the user's DOCKER-USER rules (opts.dockerUser / dockerUser6): in order, right after FORWARD's jumps, both families", async (t) => {
  const cfg = parseConfig(`
networks:
  - name: r
    subnet: 10.72.250.0/24
    subnet6: fd72:fa::/64
    bridge: bfcu0
    gatewayMode: routed
    gatewayMode6: routed
containers:
  - name: web
    network: r
    ip: 10.72.250.10
    ip6: fd72:fa::10
    publish: ["31990:80"]
`);
  const v4 = ['-s 192.0.2.9/32 -p udp -j DROP', '-d 10.72.250.10/32 -p tcp -m tcp --dport 80 -j DROP'];
  const v6 = ['-s 2001:db8::9/128 -j RETURN'];
  const r4 = dockerRules(cfg, { uplinks: [], dockerUser: v4 });
  const r6 = dockerRulesV6(cfg, { uplinks: [], dockerUser6: v6 })!;
  t.same(r4.filter.filter((l) => l.startsWith('-A FORWARD') || l.startsWith('-A DOCKER-USER')), [
    '-A FORWARD -j DOCKER-USER',
    '-A FORWARD -j DOCKER-FORWARD',
    '-A DOCKER-USER -s 192.0.2.9/32 -p udp -j DROP',
    '-A DOCKER-USER -d 10.72.250.10/32 -p tcp -m tcp --dport 80 -j DROP',
  ]);
  t.same(r6.filter.filter((l) => l.startsWith('-A DOCKER-USER')), ['-A DOCKER-USER -s 2001:db8::9/128 -j RETURN'], 'ip6tables: its own rules only');
  t.same(dockerRules(cfg, { uplinks: [] }).filter.filter((l) => l.startsWith('-A DOCKER-USER')), [], 'none given: the chain stays empty, as Docker creates it');
  const sfx = dockerRules(cfg, { uplinks: [], chainSuffix: 'U1', dockerUser: v4 });
  t.ok(sfx.filter.includes('-A DOCKER-USER-U1 -s 192.0.2.9/32 -p udp -j DROP'), 'suffixed: the rules go to DOCKER-USER-<suffix>');
  t.throws(() => dockerRules(cfg, { uplinks: [], dockerUser: ['-A DOCKER-USER -j DROP'] }), /without -A CHAIN/, 'a rule with its own -A: refused');
  t.throws(() => dockerRules(cfg, { uplinks: [], dockerUser: ['-j DROP\n-A FORWARD -j ACCEPT'] }), /one rule spec/, 'two rules in one: refused');
});

t.test('suffixed, a config of routed networks only: no raw rule, so no raw entry rule to a chain that is not there', async (t) => {
  const cfg = parseConfig(`
networks:
  - name: r
    subnet: 10.72.251.0/24
    subnet6: fd72:fb::/64
    bridge: bfcu1
    gatewayMode: routed
    gatewayMode6: routed
containers:
  - name: web
    network: r
    ip: 10.72.251.10
    ip6: fd72:fb::10
    publish: ["31991:80"]
`);
  t.same(dockerRules(cfg, { uplinks: ['up0'], chainSuffix: 'U2' }).raw, [], 'IPv4: raw empty');
  t.same(dockerRulesV6(cfg, { uplinks: ['up0'], chainSuffix: 'U2' })!.raw, [], 'IPv6: raw empty');
});
