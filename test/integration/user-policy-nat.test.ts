// The user policy (DOCKER-USER) on a container's own flows, in real
// namespaces, with berth's counters and the rules' hits (bpf/lib/egress_policy.h):
//  - the replies of masqueraded flows (NAT44 and NAT66) meet the inbound
//    rules after de-NAT: a `source:` deny of the outside host cuts an
//    established masqueraded UDP flow at its next reply (the reply never
//    reaches the container's socket, the request did reach the outside);
//    an allow earlier keeps it; `container:` narrows it; a rule with `port:`
//    never meets a reply;
//  - egress rules (`destination:`) meet what containers send out: a deny of
//    one outside address drops the container's datagrams to it (the outside
//    listener gets none) while the other outside address still gets them;
//    `container:` narrows it to one sender; an IPv6 destination IPv6 only.
//
// Topology (test/lib/v6fixture.ts: `berth up`, then the IPv6 side): network
// bup-net on bridge bbup0 (10.66.1.0/24, fd66:1::/64, masquerade on),
// containers bup-c1 (10.66.1.10, fd66:1::10) and bup-c2 (10.66.1.11,
// fd66:1::11); two outside hosts, each behind its own uplink, neither with a
// route to the containers' subnets (a reply reaches a container only through
// berth's de-NAT): bup-a (10.66.250.2, fd66:fa::2) and bup-b (10.66.251.2,
// fd66:fb::2). Rules are parsed and programmed by src/domain/policy.ts and
// src/engine/policy.ts, as the daemon does.
import t from 'tap';
import { parseConfig } from '../../src/domain/config';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { namesFrom, parsePolicy } from '../../src/domain/policy';
import { closePolicyMaps, openPolicyMaps, policySlots, readPolicyHits, writePolicy } from '../../src/engine/policy';
import { policyCtlCodec } from '../../src/platform/contract';
import { V6Fixture } from '../lib/v6fixture';

const pinRoot = '/sys/fs/bpf/berth-up-test';
const N = { net: 'bup-net', c1: 'bup-c1', c2: 'bup-c2', a: 'bup-a', b: 'bup-b' };
const BR = 'bbup0';
const PORT = 30000 + (process.pid % 200); // the outside hosts' server
const SPORT = PORT + 250; // the containers' fixed source ports: PORT+250 .. PORT+259
const V4 = { c1: '10.66.1.10', c2: '10.66.1.11', upA: '10.66.250.1', a: '10.66.250.2', upB: '10.66.251.1', b: '10.66.251.2' };
const V6 = { gw: 'fd66:1::1', c1: 'fd66:1::10', c2: 'fd66:1::11', upA: 'fd66:fa::1', a: 'fd66:fa::2', upB: 'fd66:fb::1', b: 'fd66:fb::2' };

// a dual-stack UDP server: prints "<data> from <address> <port>" and answers "ack <data>"
const SERVER = `import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', int(sys.argv[1])))
while True:
    d, a = s.recvfrom(2048)
    print(d.decode() + ' from ' + a[0] + ' ' + str(a[1]), flush=True)
    s.sendto(b'ack ' + d, a)
`;
// client: address port message sport; sends from source port sport, prints the answer or "timeout"
// (its socket is the container's listener for the reply)
const CLIENT = `import socket, sys
addr, port, msg, sport = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])
v6 = ':' in addr
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('::' if v6 else '0.0.0.0', sport))
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
    subnet: 10.66.1.0/24
    bridge: ${BR}
containers:
  - name: ${N.c1}
    network: ${N.net}
    ip: ${V4.c1}
  - name: ${N.c2}
    network: ${N.net}
    ip: ${V4.c2}
externals:
  - name: ${N.a}
    address: ${V4.a}/24
  - name: ${N.b}
    address: ${V4.b}/24
uplinks: [${externalVethName(N.a)}, ${externalVethName(N.b)}]
interfaces: []
`);
const f = new V6Fixture(t, {
  cfg,
  pinRoot,
  tag: 'bup',
  subnet6: 'fd66:1::',
  gateway6: V6.gw,
  ip6: { [N.c1]: V6.c1, [N.c2]: V6.c2 },
  uplinks6: [
    { external: N.a, addr6: V6.upA, remote6: V6.a },
    { external: N.b, addr6: V6.upB, remote6: V6.b },
  ],
  publish6: [],
  server: SERVER,
  client: CLIENT,
});
const names = namesFrom(
  new Map([
    [N.c1, V4.c1],
    [N.c2, V4.c2],
  ]),
  new Map([[N.net, '10.66.1.0/24']]),
  new Map([
    [N.c1, V6.c1],
    [N.c2, V6.c2],
  ]),
  new Map([[N.net, 'fd66:1::/64']]),
);

/** Parse and program a rule set (the inactive bank, then the flip), as the daemon does. */
function program(yaml: string): void {
  const m = openPolicyMaps({ pinRoot });
  try {
    writePolicy(m, policySlots(parsePolicy(yaml), names));
  } finally {
    closePolicyMaps(m);
  }
}
/** Packets matched per rule of the rule set in force. */
function hits(count: number): bigint[] {
  const m = openPolicyMaps({ pinRoot });
  try {
    return readPolicyHits(m, count).map((h) => h.packets);
  } finally {
    closePolicyMaps(m);
  }
}
/** berth_policy_ctl.egress_banks has the bit of the bank in force. */
function egressOn(): boolean {
  const m = openPolicyMaps({ pinRoot });
  try {
    const c = policyCtlCodec.decode(m.active.lookup(Buffer.alloc(4))!);
    return ((c.egress_banks ?? 0) & (1 << c.bank)) !== 0;
  } finally {
    closePolicyMaps(m);
  }
}
/** From container `from` (source port sport) to addr: retried until answered (ND and ARP settle; bounded), then the answer. */
const ask = (from: string, addr: string, msg: string, sport: number): Promise<string> => f.ask(from, [addr, PORT, msg, sport], `ack ${msg}`);
/** Once: the answer or "timeout ...". */
const once = (from: string, addr: string, msg: string, sport: number): Promise<string> => f.client(from, addr, PORT, msg, sport);

t.test('the user policy on masquerade replies and on egress', async (t) => {
  await f.up();
  const upA = f.ifindexOf(externalVethName(N.a));
  const vethC1 = f.ifindexOf(hostVethName(N.c1));
  const vethC2 = f.ifindexOf(hostVethName(N.c2));
  const policyAt = (ifindex: number): Promise<bigint> => f.counter(ifindex, '', 'policy');
  const atA = f.serve(N.a, PORT);
  const atB = f.serve(N.b, PORT);
  /** the line the outside host logged for message msg ('' when it never got it) */
  const seen = (log: () => string[], msg: string): string => log().find((l) => l.startsWith(`${msg} from `)) ?? '';

  t.test('no rules: both containers reach both outside hosts, masqueraded, over both families', async (t) => {
    program('');
    t.notOk(egressOn(), 'no destination rule: the egress walk is off');
    t.equal(await ask(N.c1, V4.a, 'v4-0', SPORT), 'ack v4-0');
    t.match(seen(atA, 'v4-0'), `from ::ffff:${V4.upA} `, 'the outside saw the uplink address (masquerade)');
    t.equal(await ask(N.c2, V4.a, 'v4-0b', SPORT + 1), 'ack v4-0b');
    t.equal(await ask(N.c1, V4.b, 'v4-0c', SPORT + 2), 'ack v4-0c');
    t.equal(await ask(N.c1, V6.a, 'v6-0', SPORT + 3), 'ack v6-0');
    t.match(seen(atA, 'v6-0'), `from ${V6.upA} `, 'NAT66: the outside saw the uplink addr6');
    t.equal(await ask(N.c1, V6.b, 'v6-0b', SPORT + 4), 'ack v6-0b');
    t.equal(await ask(N.c2, V6.a, 'v6-0c', SPORT + 5), 'ack v6-0c');
  });

  t.test('a source deny cuts an established masqueraded flow at its next reply (NAT44)', async (t) => {
    t.equal(await ask(N.c1, V4.a, 'v4-1', SPORT), 'ack v4-1', 'the flow answers before the deny');
    const port1 = seen(atA, 'v4-1').split(' ').pop();
    program(`- {action: deny, source: ${V4.a}}\n`);
    t.notOk(egressOn(), 'an inbound rule only: the egress walk stays off');
    const drops = await policyAt(upA);
    t.match(await once(N.c1, V4.a, 'v4-2', SPORT), /^timeout/, "the reply never reached the container's socket");
    t.ok(seen(atA, 'v4-2'), 'the request went out (an inbound rule does not meet egress) and was answered');
    t.equal(seen(atA, 'v4-2').split(' ').pop(), port1, 'on the same masqueraded flow (same translated source port)');
    t.ok((await policyAt(upA)) > drops, "counted as a policy drop on the reply's uplink");
    t.ok(hits(1)[0]! > 0n, 'and in the rule hits');
    t.equal(await ask(N.c1, V4.b, 'v4-3', SPORT + 2), 'ack v4-3', 'the other outside host still answers');
  });

  t.test('an allow earlier keeps it; container: narrows the deny to the container the reply goes to', async (t) => {
    program(`- {action: allow, source: ${V4.a}, container: ${N.c1}}\n- {action: deny, source: ${V4.a}}\n`);
    t.equal(await ask(N.c1, V4.a, 'v4-4', SPORT), 'ack v4-4', 'c1: allowed by the first rule');
    const drops = await policyAt(upA);
    t.match(await once(N.c2, V4.a, 'v4-5', SPORT + 1), /^timeout/, 'c2: denied by the second');
    t.ok(seen(atA, 'v4-5'), 'its request got out and was answered');
    t.ok((await policyAt(upA)) > drops, 'counted');
    const h = hits(2);
    t.ok(h[0]! > 0n && h[1]! > 0n, `both rules matched (hits ${h.join(', ')})`);

    program(`- {action: deny, source: ${V4.a}, container: ${N.c2}}\n`);
    t.equal(await ask(N.c1, V4.a, 'v4-6', SPORT), 'ack v4-6', 'a deny naming c2 leaves c1 alone');
    t.match(await once(N.c2, V4.a, 'v4-7', SPORT + 1), /^timeout/, 'and denies c2');
  });

  t.test('a rule with port: never meets a reply (a masqueraded flow has no published port)', async (t) => {
    program(`- {action: deny, source: ${V4.a}, port: ${PORT}}\n- {action: deny, source: ${V4.a}, port: ${SPORT}}\n`);
    t.equal(await ask(N.c1, V4.a, 'v4-8', SPORT), 'ack v4-8', 'answered');
    t.same(hits(2), [0n, 0n], 'neither rule matched');
  });

  t.test('NAT66: a source deny cuts the reply, an allow earlier keeps it', async (t) => {
    t.equal(await ask(N.c1, V6.a, 'v6-1', SPORT + 3), 'ack v6-1', 'answers before the deny');
    program(`- {action: deny, source: "${V6.a}"}\n`);
    const drops = await policyAt(upA);
    t.match(await once(N.c1, V6.a, 'v6-2', SPORT + 3), /^timeout/, "the reply never reached the container's socket");
    t.ok(seen(atA, 'v6-2'), 'the request went out and was answered');
    t.ok((await policyAt(upA)) > drops, 'counted as a policy drop on the uplink');
    t.ok(hits(1)[0]! > 0n, 'and in the rule hits');
    t.equal(await ask(N.c1, V4.a, 'v4-9', SPORT), 'ack v4-9', 'an IPv6 source leaves the IPv4 flow alone');

    program(`- {action: allow, container: ${N.c1}}\n- {action: deny, network: ${N.net}}\n`);
    t.equal(await ask(N.c1, V6.a, 'v6-3', SPORT + 3), 'ack v6-3', 'c1 allowed first');
    t.match(await once(N.c2, V6.a, 'v6-4', SPORT + 5), /^timeout/, 'c2 denied by network:');
    t.ok(seen(atA, 'v6-4'), 'its request got out');
  });

  t.test('egress: a destination deny drops what containers send to it, and only there', async (t) => {
    program('');
    t.equal(await ask(N.c1, V4.a, 'e-0', SPORT + 6), 'ack e-0', 'the flow works before the deny');
    program(`- {action: deny, destination: ${V4.a}}\n`);
    t.ok(egressOn(), 'a destination rule: the egress walk is on for the bank in force');
    const drops = await policyAt(vethC1);
    t.match(await once(N.c1, V4.a, 'e-1', SPORT + 6), /^timeout/, 'the established flow is cut at its next packet');
    t.match(await once(N.c1, V4.a, 'e-2', SPORT + 7), /^timeout/, 'a new flow is refused');
    t.notOk(seen(atA, 'e-1') || seen(atA, 'e-2'), 'the outside listener got none of them');
    t.ok((await policyAt(vethC1)) > drops, "counted as a policy drop on the sender's veth");
    t.ok(hits(1)[0]! >= 2n, `in the rule hits (${hits(1)[0]})`);
    t.equal(await ask(N.c1, V4.b, 'e-3', SPORT + 8), 'ack e-3', 'the other outside address still gets them');
    t.ok(seen(atB, 'e-3'), 'arrived');
    t.equal(await ask(N.c1, V6.a, 'e-4', SPORT + 9), 'ack e-4', 'an IPv4 destination leaves IPv6 alone');
  });

  t.test('egress: container: narrows it to one sender', async (t) => {
    program(`- {action: deny, destination: 10.66.250.0/24, container: ${N.c1}, proto: udp, port: ${PORT}}\n`);
    const d1 = await policyAt(vethC1);
    const d2 = await policyAt(vethC2);
    t.match(await once(N.c1, V4.a, 'e-5', SPORT + 7), /^timeout/, 'c1 to bup-a: denied');
    t.notOk(seen(atA, 'e-5'), 'the outside listener got nothing from c1');
    t.equal(await ask(N.c2, V4.a, 'e-6', SPORT + 7), 'ack e-6', 'c2 to bup-a: through');
    t.ok(seen(atA, 'e-6'), 'arrived');
    t.ok((await policyAt(vethC1)) > d1, "c1's drop counted on its veth");
    t.equal(await policyAt(vethC2), d2, 'none on c2');
  });

  t.test('egress over IPv6 (NAT66): a v6 destination deny, an allow earlier', async (t) => {
    program(`- {action: allow, destination: "${V6.a}", container: ${N.c2}}\n- {action: deny, destination: "fd66:fa::/64"}\n`);
    const drops = await policyAt(vethC1);
    t.match(await once(N.c1, V6.a, 'e6-1', SPORT + 3), /^timeout/, 'c1 to bup-a over IPv6: denied');
    t.notOk(seen(atA, 'e6-1'), 'the outside listener got nothing');
    t.ok((await policyAt(vethC1)) > drops, 'counted');
    t.equal(await ask(N.c2, V6.a, 'e6-2', SPORT + 5), 'ack e6-2', 'c2: allowed by the first rule');
    t.equal(await ask(N.c1, V6.b, 'e6-3', SPORT + 4), 'ack e6-3', 'bup-b over IPv6: through');
    t.equal(await ask(N.c1, V4.a, 'e6-4', SPORT + 6), 'ack e6-4', 'bup-a over IPv4: through (a v6 rule)');
    const h = hits(2);
    t.ok(h[0]! > 0n && h[1]! > 0n, `both rules matched (hits ${h.join(', ')})`);
    program('');
    t.notOk(egressOn(), 'rules removed: the egress walk is off again');
    t.equal(await ask(N.c1, V6.a, 'e6-5', SPORT + 3), 'ack e6-5', 'through again');
  });
});
