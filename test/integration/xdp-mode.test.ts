/**
 * XDP only where it pays (issue 14 item 4): with --xdp, a veth uplink gets no
 * XDP program (veth's native XDP costs GRO), berth's log says why once, doctor
 * shows the mode, and the tc program still drops what the XDP path would: a
 * datagram from outside to a container address never arrives, counted as
 * not_published on the uplink.
 *
 * Own names bfl*, subnets 10.64.0.0/16 and fd64::/16, pin root
 * /sys/fs/bpf/berth-fl-test-xdp, UDP port 34600.
 */
import t from 'tap';
import { NatEnv } from '../../bench/lib/natenv';
import { Dataplane } from '../../src/platform/dataplane';
import { run } from '../../src/platform/exec';
import { readCounters } from '../../src/observe/stats';
import { xdpChoice } from '../../src/platform/xdpmode';
import { evaluate, gatherFacts } from '../../src/observe/doctor';

const PORT = 34600;
const PIN = '/sys/fs/bpf/berth-fl-test-xdp';

/** A UDP listener in ns for one datagram (bounded): resolves 'arrived from X' or 'never arrived'. */
function listen(ns: string, port: number, seconds: number): { ready: Promise<void>; outcome: Promise<string> } {
  const py = `import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',${port}))\nprint('ready',flush=True)\ns.settimeout(${seconds})\ntry:\n  d,a=s.recvfrom(100)\n  print('arrived from',a[0])\nexcept socket.timeout:\n  print('never arrived')\n`;
  const outcome = run('ip', ['netns', 'exec', ns, 'python3', '-c', py], { timeoutMs: (seconds + 10) * 1000 }).then((r) => r.stdout.split('\n').filter((l) => l && l !== 'ready').join(''));
  // bounded wait for the socket: ss sees it
  const ready = (async () => {
    for (let i = 0; i < 100; i++) {
      const out = (await run('ip', ['netns', 'exec', ns, 'ss', '-Hlun', `sport = :${port}`]).catch(() => ({ stdout: '' }))).stdout;
      if (out.trim()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no UDP listener on ${port} in ${ns}`);
  })();
  return { ready, outcome };
}

async function send(ns: string, addr: string, port: number): Promise<void> {
  await run('ip', ['netns', 'exec', ns, 'python3', '-c', `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.sendto(b'berth',('${addr}',${port}))\n`]);
}

t.test('a veth uplink with xdp on: no XDP program, the tc program takes the drop', async (t) => {
  const n = new NatEnv('bfl1', 1, async () => 'unused', { net4: '10.64.1', ext4: '10.64.2', net6: 'fd64:1', ext6: 'fd64:2', pinRoot: PIN });
  t.teardown(() => n.teardown());
  await n.setup();
  await n.activate('berth-xdp', { publish: [] });
  const dp = Dataplane.openPinned(PIN);
  t.teardown(() => dp.close());
  const upIfindex = Number((await run('cat', [`/sys/class/net/${n.ext.hostIf}/ifindex`])).stdout.trim());

  const choice = xdpChoice(n.ext.hostIf);
  t.equal(choice.mode, 'none', 'a veth: XDP mode none');
  t.equal(choice.driver, 'virtual (veth)', 'the driver is named a virtual veth');
  t.match(choice.why, /GRO/, 'why: GRO');
  const kinds = dp.uplinkAttachments().filter((a) => a.ifindex === upIfindex).map((a) => a.kind);
  t.same(kinds, ['tc'], 'the uplink has the tc program and no XDP program');
  const bt = await run('bpftool', ['net', 'show', 'dev', n.ext.hostIf, '-j']).then((r) => JSON.parse(r.stdout) as Array<{ xdp?: unknown[] }>).catch(() => undefined);
  if (bt) t.same(bt.flatMap((e) => e.xdp ?? []), [], 'bpftool: no XDP program on the uplink');

  // the listener works: a datagram from the client container on the same network arrives
  const ctl = listen(n.server.ns, PORT, 3);
  await ctl.ready;
  await send(n.client.ns, n.server.ip, PORT);
  t.equal(await ctl.outcome, `arrived from ${n.client.ip}`, 'control: a datagram from the same network arrives');

  // from outside to the container's address (what the XDP path drops): the tc program drops it, counted
  await run('ip', ['-n', n.ext.ns, 'route', 'replace', '10.64.1.0/24', 'via', n.ext.hostAddr]);
  const dropsOf = async () => (await readCounters(dp)).filter((r) => r.ifindex === upIfindex && r.direction === 'from_outside').reduce((a, r) => a + r.drop.not_published.packets, 0n);
  const before = await dropsOf();
  const l = listen(n.server.ns, PORT, 2);
  await l.ready;
  await send(n.ext.ns, n.server.ip, PORT);
  t.equal(await l.outcome, 'never arrived', 'a datagram from outside to a container address never arrives');
  t.ok((await dropsOf()) > before, 'counted: not_published on the uplink, from outside');

  // doctor names the mode
  const facts = await gatherFacts({ full: true, uplinks: [n.ext.hostIf], pinRoot: PIN });
  const iface = facts.attach?.interfaces.find((i) => i.ifname === n.ext.hostIf);
  t.equal(iface?.xdp?.mode, 'none', 'doctor facts (--json): XDP mode none');
  const rowText = evaluate(facts).find((r) => r.check === `XDP mode on ${n.ext.hostIf}`);
  t.match(rowText?.found ?? '', /^none \(virtual \(veth\)\): veth: XDP on a veth costs GRO/, 'doctor text: none and why');
});
