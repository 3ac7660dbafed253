// NAT66 in real namespaces (issue 12 item 1): masquerade, published ports,
// hairpin, ICMPv6 echo and errors over IPv6, with berth's counters.
//
// Topology (`berth up` for the namespaces, veths and the IPv4 state, then the
// desired state's IPv6 fields written directly and reconciled, by the fixture of
// test/lib/v6fixture.ts, which v6-policy.test.ts shares): network
// v6n-net on bridge bv6n0 (10.85.1.0/24, fd85:1::/64), containers v6n-c1
// (client) and v6n-web (publishes [::]:PUB -> 8080 tcp and udp), an outside
// host v6n-out on the uplink's link fd85:ff::/64 (host side fd85:ff::1, the
// uplink's addr6, the NAT66 source). v6n-out has NO route to fd85:1::/64: a
// reply reaches a container only through berth's translation.
import t from 'tap';
import * as fs from 'node:fs';
import { parseConfig } from '../../src/domain/config';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { waitFor } from '../lib/dockerd';
import { V6Fixture } from '../lib/v6fixture';

const pinRoot = '/sys/fs/bpf/berth-v6nat';
const N = { net: 'v6n-net', c1: 'v6n-c1', web: 'v6n-web', out: 'v6n-out' };
const BR = 'bv6n0';
const PUB = 34000 + (process.pid % 900);
const WEB_PORT = 8080;
const OUT_PORT = 9090;
const CLOSED_PORT = 9999;
const V6 = { gw: 'fd85:1::1', c1: 'fd85:1::10', web: 'fd85:1::20', up: 'fd85:ff::1', out: 'fd85:ff::2' };

// server: prints "<proto> <data> from <address>" and answers "ack <data>"
const SERVER = `import socket, sys, threading
port = int(sys.argv[1])
def udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(('::', port))
    while True:
        d, a = s.recvfrom(2048)
        print('udp ' + d.decode() + ' from ' + a[0], flush=True)
        s.sendto(b'ack ' + d, a)
def tcp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('::', port))
    s.listen(16)
    while True:
        c, a = s.accept()
        d = c.recv(2048)
        print('tcp ' + d.decode() + ' from ' + a[0], flush=True)
        c.sendall(b'ack ' + d)
        c.close()
threading.Thread(target=udp, daemon=True).start()
tcp()
`;
// client: proto address port message; prints the answer, "refused" or "timeout"
const CLIENT = `import socket, sys
proto, addr, port, msg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
s.settimeout(2)
try:
    s.connect((addr, port))
    s.send(msg)
    print(s.recv(2048).decode())
except ConnectionRefusedError:
    print('refused')
except (socket.timeout, OSError) as e:
    print('timeout ' + str(e))
`;
const cfg = parseConfig(`
networks:
  - name: ${N.net}
    subnet: 10.85.1.0/24
    bridge: ${BR}
containers:
  - name: ${N.c1}
    network: ${N.net}
    ip: 10.85.1.10
  - name: ${N.web}
    network: ${N.net}
    ip: 10.85.1.20
externals:
  - name: ${N.out}
    address: 10.85.250.2/24
uplinks: [${externalVethName(N.out)}]
interfaces: []
`);
const f = new V6Fixture(t, {
  cfg,
  pinRoot,
  tag: 'v6n',
  subnet6: 'fd85:1::',
  gateway6: V6.gw,
  ip6: { [N.c1]: V6.c1, [N.web]: V6.web },
  uplinks6: [{ external: N.out, addr6: V6.up, remote6: V6.out }],
  publish6: (['tcp', 'udp'] as const).map((proto) => ({ hostPort: PUB, proto, container: N.web, port: WEB_PORT })),
  server: SERVER,
  client: CLIENT,
});
const macOf = (name: string): string => fs.readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim();
/** The client (proto address port message) retried until it is answered (or prints `want`). */
const ask = (from: string, proto: 'tcp' | 'udp', addr: string, port: number, msg: string, want = `ack ${msg}`): Promise<string> => f.ask(from, [proto, addr, port, msg], want);

t.test('NAT66: masquerade, publish, hairpin, echo and errors', async (t) => {
  const { desired } = await f.up();
  const upIf = externalVethName(N.out);
  t.ok(desired.uplinks!.some((u) => u.addr6 === V6.up), 'the uplink carries its addr6');

  const c1If = f.ifindexOf(hostVethName(N.c1));
  const webIf = f.ifindexOf(hostVethName(N.web));
  const upIdx = f.ifindexOf(upIf);
  t.match(macOf(BR), /^[0-9a-f:]{17}$/, 'bridge up');
  const atOut = f.serve(N.out, OUT_PORT);
  const atWeb = f.serve(N.web, WEB_PORT);
  // the servers are up once they answer in their own namespace
  t.equal(await ask(N.out, 'udp', '::1', OUT_PORT, 'self'), 'ack self', 'outside server answers locally');
  t.equal(await ask(N.web, 'udp', '::1', WEB_PORT, 'self'), 'ack self', 'web server answers locally');

  t.test('masquerade: TCP and UDP leave with the uplink address, replies come back', async (t) => {
    const before = await f.counter(c1If, 'from', 'redirect');
    t.equal(await ask(N.c1, 'tcp', V6.out, OUT_PORT, 'm-tcp'), 'ack m-tcp', 'TCP reply reached the container');
    t.ok(atOut().includes(`tcp m-tcp from ${V6.up}`), `the outside host saw the uplink's address (${atOut().filter((l) => l.includes('m-tcp')).join('; ')})`);
    t.equal(await ask(N.c1, 'udp', V6.out, OUT_PORT, 'm-udp'), 'ack m-udp', 'UDP reply reached the container');
    t.ok(atOut().includes(`udp m-udp from ${V6.up}`), 'UDP masqueraded to the uplink address');
    t.notOk(atOut().some((l) => l.endsWith(`from ${V6.c1}`)), 'nothing arrived with the container address');
    t.ok((await f.counter(c1If, 'from', 'redirect')) > before, 'counted redirects on the container veth');
  });

  t.test('ping -6 through masquerade', async (t) => {
    const ok = await waitFor(() => f.ns(N.c1, 'ping', '-6', '-c1', '-W2', V6.out).then(() => true, () => false), 15000, 200);
    t.ok(ok, 'echo reply came back through NAT66');
  });

  t.test('a published [::] port: the container sees the client address', async (t) => {
    const before = await f.counter(upIdx, '', 'redirect');
    t.equal(await ask(N.out, 'tcp', V6.up, PUB, 'p-tcp'), 'ack p-tcp', 'TCP through the published port');
    t.ok(atWeb().includes(`tcp p-tcp from ${V6.out}`), `the container saw the client's own address (${atWeb().filter((l) => l.includes('p-tcp')).join('; ')})`);
    t.equal(await ask(N.out, 'udp', V6.up, PUB, 'p-udp'), 'ack p-udp', 'UDP through the published port');
    t.ok(atWeb().includes(`udp p-udp from ${V6.out}`), 'UDP publish keeps the client address');
    t.ok((await f.counter(upIdx, '', 'redirect')) > before, 'counted redirects on the uplink');
  });

  t.test('hairpin: a container reaches the published port on the host v6 address', async (t) => {
    t.equal(await ask(N.c1, 'tcp', V6.up, PUB, 'h-tcp'), 'ack h-tcp', 'hairpin TCP answered');
    t.ok(atWeb().includes(`tcp h-tcp from ${V6.c1}`), `same network: the target sees the client's own address (${atWeb().filter((l) => l.includes('h-tcp')).join('; ')})`);
    t.ok((await f.counter(webIf, 'to', 'redirect')) > 0n, 'counted as redirected into the target');
  });

  t.test('an ICMPv6 port unreachable from outside comes back translated', async (t) => {
    const before = await f.counter(upIdx, '', 'redirect');
    t.equal(await ask(N.c1, 'udp', V6.out, CLOSED_PORT, 'closed', 'refused'), 'refused', 'the container socket got ECONNREFUSED: the quoted tuple was translated back to its own');
    t.ok((await f.counter(upIdx, '', 'redirect')) > before, 'the error was redirected by the uplink program');
  });
});
