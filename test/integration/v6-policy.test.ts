// The user policy (DOCKER-USER, which Docker 29 has in ip6tables too) on IPv6
// published flows, in real namespaces, with berth's counters (issue 12).
//
// Topology (`berth up` for the namespaces, veths and the IPv4 state, then the
// desired state's IPv6 fields written directly and reconciled, as
// v6-nat.test.ts, by the fixture of test/lib/v6fixture.ts): network v6pol-net on bridge bv6pol0 (10.84.1.0/24,
// fd84:1::/64), container v6pol-web publishing [::]:PUB6 -> 8080/udp and
// PUB4 -> 8080/udp; two outside hosts, each behind its own uplink:
// v6pol-ok (10.84.250.2, fd84:fa::2) and v6pol-no (10.84.251.2, fd84:fb::2).
// The rules are parsed and programmed by src/domain/policy.ts (parsePolicy,
// policySlots, writePolicy) as the daemon does. A denied datagram is asserted
// not to have reached the container's listener, and the uplink's POLICY
// drop counter to have counted it.
import t from 'tap';
import { parseConfig } from '../../src/domain/config';
import { externalVethName } from '../../src/domain/names';
import { namesFrom, parsePolicy } from '../../src/domain/policy';
import { closePolicyMaps, openPolicyMaps, policySlots, writePolicy } from '../../src/engine/policy';
import { V6Fixture } from '../lib/v6fixture';

const pinRoot = '/sys/fs/bpf/berth-v6policy';
const N = { net: 'v6pol-net', web: 'v6pol-web', ok: 'v6pol-ok', no: 'v6pol-no' };
const BR = 'bv6pol0';
const PUB6 = 32000 + (process.pid % 200);
const PUB4 = PUB6 + 250;
const WEB_PORT = 8080;
const V6 = { gw: 'fd84:1::1', web: 'fd84:1::20', upOk: 'fd84:fa::1', ok: 'fd84:fa::2', upNo: 'fd84:fb::1', no: 'fd84:fb::2' };
const V4 = { upNo: '10.84.251.1', no: '10.84.251.2' };

// a dual-stack UDP server: prints "<data> from <address>" and answers "ack <data>"
const SERVER = `import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', int(sys.argv[1])))
while True:
    d, a = s.recvfrom(2048)
    print(d.decode() + ' from ' + a[0], flush=True)
    s.sendto(b'ack ' + d, a)
`;
// client: address port message; prints the answer or "timeout"
const CLIENT = `import socket, sys
addr, port, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
try:
    s.sendto(msg, (addr, port))
    print(s.recv(2048).decode())
except (socket.timeout, OSError) as e:
    print('timeout ' + str(e))
`;
const cfg = parseConfig(`
networks:
  - name: ${N.net}
    subnet: 10.84.1.0/24
    bridge: ${BR}
containers:
  - name: ${N.web}
    network: ${N.net}
    ip: 10.84.1.20
    publish: ["${PUB4}:${WEB_PORT}/udp"]
externals:
  - name: ${N.ok}
    address: 10.84.250.2/24
  - name: ${N.no}
    address: ${V4.no}/24
uplinks: [${externalVethName(N.ok)}, ${externalVethName(N.no)}]
interfaces: []
`);
const f = new V6Fixture(t, {
  cfg,
  pinRoot,
  tag: 'v6pol',
  subnet6: 'fd84:1::',
  gateway6: V6.gw,
  ip6: { [N.web]: V6.web },
  uplinks6: [
    { external: N.ok, addr6: V6.upOk, remote6: V6.ok },
    { external: N.no, addr6: V6.upNo, remote6: V6.no },
  ],
  publish6: [{ hostPort: PUB6, proto: 'udp', container: N.web, port: WEB_PORT }],
  server: SERVER,
  client: CLIENT,
});
/** The client (address port message) retried until it is answered (ND settles; bounded), then the answer. */
const ask = (from: string, addr: string, port: number, msg: string): Promise<string> => f.ask(from, [addr, port, msg], `ack ${msg}`);
const policyDrops = (ifindex: number): Promise<bigint> => f.counter(ifindex, '', 'policy');

t.test('the user policy on IPv6 published flows', async (t) => {
  const { res } = await f.up();
  const upNo = externalVethName(N.no);
  const web = res.endpoints.find((e) => e.container === N.web)!;
  const names = namesFrom(new Map([[N.web, web.ip]]), new Map([[N.net, '10.84.1.0/24']]), new Map([[N.web, V6.web]]), new Map([[N.net, 'fd84:1::/64']]));
  const program = (yaml: string): void => {
    const m = openPolicyMaps({ pinRoot });
    try {
      writePolicy(m, policySlots(parsePolicy(yaml), names));
    } finally {
      closePolicyMaps(m);
    }
  };
  const noIdx = f.ifindexOf(upNo);
  const atWeb = f.serve(N.web, WEB_PORT);
  t.equal(await ask(N.web, '::1', WEB_PORT, 'self'), 'ack self', 'the server answers locally');

  t.test('no rules: both v6 clients get through', async (t) => {
    t.equal(await ask(N.ok, V6.upOk, PUB6, 'ok-0'), 'ack ok-0');
    t.equal(await ask(N.no, V6.upNo, PUB6, 'no-0'), 'ack no-0');
    t.ok(atWeb().includes(`no-0 from ${V6.no}`), 'the container saw the client address');
  });

  t.test('a v6 rule: the denied client gets no datagram through, the allowed one does', async (t) => {
    program(`- {action: deny, source: "fd84:fb::/64", network: ${N.net}, proto: udp}\n`);
    const before = await policyDrops(noIdx);
    t.match(await f.client(N.no, V6.upNo, PUB6, 'no-1'), /^timeout/, 'no answer for the denied client');
    t.equal(await ask(N.ok, V6.upOk, PUB6, 'ok-1'), 'ack ok-1', 'the allowed client is answered');
    t.notOk(atWeb().some((l) => l.startsWith('no-1 ')), 'the denied datagram never reached the listener');
    t.ok((await policyDrops(noIdx)) > before, 'counted as a policy drop on its uplink');
  });

  t.test('an IPv4 rule does not match IPv6 clients, and a v6 rule no IPv4 one', async (t) => {
    program(`- {action: deny, source: 10.84.0.0/16}\n`);
    t.equal(await ask(N.no, V6.upNo, PUB6, 'no-2'), 'ack no-2', 'an IPv4 rule leaves a v6 client alone');
    t.ok(atWeb().includes(`no-2 from ${V6.no}`), 'arrived');
    let before = await policyDrops(noIdx);
    t.match(await f.client(N.no, V4.upNo, PUB4, 'no-3'), /^timeout/, 'but denies the same host over IPv4');
    t.notOk(atWeb().some((l) => l.startsWith('no-3 ')), 'the IPv4 datagram never reached the listener');
    t.ok((await policyDrops(noIdx)) > before, 'counted');

    program(`- {action: deny, source: "::/0"}\n`);
    t.equal(await ask(N.no, V4.upNo, PUB4, 'no-4'), 'ack no-4', 'a v6 rule leaves an IPv4 client alone');
    t.ok(atWeb().includes(`no-4 from ::ffff:${V4.no}`), 'arrived');
    before = await policyDrops(noIdx);
    t.match(await f.client(N.no, V6.upNo, PUB6, 'no-5'), /^timeout/, 'but denies the v6 one');
    t.notOk(atWeb().some((l) => l.startsWith('no-5 ')), 'never reached the listener');
    t.ok((await policyDrops(noIdx)) > before, 'counted');
  });

  t.test('no source: both families', async (t) => {
    program(`- {action: allow, source: "${V6.ok}"}\n- {action: deny, container: ${N.web}}\n`);
    t.equal(await ask(N.ok, V6.upOk, PUB6, 'ok-6'), 'ack ok-6', 'an allow first');
    t.match(await f.client(N.no, V6.upNo, PUB6, 'no-6'), /^timeout/, 'v6 denied');
    t.match(await f.client(N.no, V4.upNo, PUB4, 'no-7'), /^timeout/, 'v4 denied');
    t.notOk(atWeb().some((l) => l.startsWith('no-6 ') || l.startsWith('no-7 ')), 'neither reached the listener');
    program('');
    t.equal(await ask(N.no, V6.upNo, PUB6, 'no-8'), 'ack no-8', 'rules removed: through again');
  });
});
