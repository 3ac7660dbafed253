/**
 * Per-packet cost of each program on each verdict, with BPF_PROG_TEST_RUN on
 * crafted frames (the frames and map set-up of test/bpf/nat.test.ts). Nothing
 * leaves the host: test runs never execute redirects. The cgroup socket hooks
 * cannot be test-run (the kernel has no BPF_PROG_TEST_RUN for sock_addr
 * programs); their cost shows in the loopback scenario instead.
 */
import * as fs from 'node:fs';
import { skbTestContext } from '../../src/platform/native';
import { execFileSync } from 'node:child_process';
import { Dataplane } from '../../src/platform/dataplane';
import {
  CtFlags,
  CtState,
  CtEntry,
  EndpointFlags,
  OutKind,
  counterKeyCodec,
  ctEntryCodec,
  ctKeyCodec,
  endpointCodec,
  hostAddrValueCodec,
  ifindexKeyCodec,
  ip6KeyCodec,
  ipKeyCodec,
  netValueCodec,
  networkKeyCodec,
  publishKeyCodec,
  publishValueCodec,
  uplinkCodec,
  zeroPerCpuCounters,
} from '../../src/platform/contract';
import type { BpfProgram } from '../../src/platform/native';
import { checksum as ipChecksum, eth, ipv4, ipv6Frame, tcp, udp } from '../../test/lib/packets';
import { median } from './stats';

export interface CostRow {
  program: string;
  verdict: string;
  /** ns per packet, one value per run */
  runs: number[];
  retval: number;
  note?: string;
}

const TCP = 6;
const UDP = 17;
const sh = (args: string[]) => execFileSync('ip', args, { stdio: 'ignore' });
const ifindexOf = (n: string) => Number(fs.readFileSync(`/sys/class/net/${n}/ifindex`, 'utf8').trim());
const macOf = (n: string) => fs.readFileSync(`/sys/class/net/${n}/address`, 'utf8').trim();

function tcpFrame(o: { dmac: string; smac: string; src: string; dst: string; sport: number; dport: number; flags?: number }): Buffer {
  return eth(o.dmac, o.smac, 0x0800, ipv4({ src: o.src, dst: o.dst, proto: TCP }, tcp(o.src, o.dst, o.sport, o.dport, o.flags ?? 0x10, Buffer.from('hello'))));
}
function udpFrame(o: { dmac: string; smac: string; src: string; dst: string; sport: number; dport: number }): Buffer {
  return eth(o.dmac, o.smac, 0x0800, ipv4({ src: o.src, dst: o.dst, proto: UDP }, udp(o.src, o.dst, o.sport, o.dport)));
}

export async function bpfCost(o: { tag: string; third: number; runs: number; repeat: number }): Promise<CostRow[]> {
  const pinRoot = `/sys/fs/bpf/berth-bench-${o.tag}-cost`;
  const IF = { u0: `${o.tag}u0`, u1: `${o.tag}u1`, c0: `${o.tag}c0`, c1: `${o.tag}c1` };
  const X = o.third;
  const UP = `10.196.${X}.1`;
  const NEIGH = `10.196.${X}.3`;
  const NEIGH_MAC = '02:00:c6:12:00:03';
  const CLIENT = `10.196.${X}.50`;
  const CLIENT_MAC = '02:00:c6:12:00:32';
  const GW = `10.197.${X}.1`;
  const GW_MAC = '02:00:0a:00:00:01';
  const A = { addr: `10.197.${X}.10`, addr6: `fd97:${X.toString(16)}::10`, mac: '02:00:0a:00:00:0a', ifindex: 1 };
  const B = { addr: `10.197.${X}.20`, addr6: `fd97:${X.toString(16)}::20`, mac: '02:00:0a:00:00:14', ifindex: 0 };
  // IPv6: the containers' /64, the gateway6, the uplink's and its neighbour's addresses
  const GW6 = `fd97:${X.toString(16)}::1`;
  const UP6 = `fd96:${X.toString(16)}::1`;
  const NEIGH6 = `fd96:${X.toString(16)}::3`;
  const CLIENT6 = `fd96:${X.toString(16)}::50`;
  const cleanup = () => {
    for (const n of [IF.u0, IF.c0]) {
      try {
        sh(['link', 'del', n]);
      } catch {
        /* not there */
      }
    }
    Dataplane.reset(pinRoot);
  };
  cleanup();
  const out: CostRow[] = [];
  let dp: Dataplane | undefined;
  try {
    sh(['link', 'add', IF.u0, 'type', 'veth', 'peer', 'name', IF.u1]);
    sh(['link', 'add', IF.c0, 'type', 'veth', 'peer', 'name', IF.c1]);
    for (const n of Object.values(IF)) sh(['link', 'set', n, 'up']);
    sh(['addr', 'add', `${UP}/24`, 'dev', IF.u0]);
    sh(['neigh', 'replace', NEIGH, 'lladdr', NEIGH_MAC, 'dev', IF.u0, 'nud', 'permanent']);
    fs.writeFileSync(`/proc/sys/net/ipv4/conf/${IF.u1}/forwarding`, '1');
    for (const n of [IF.u0, IF.u1]) fs.writeFileSync(`/proc/sys/net/ipv6/conf/${n}/disable_ipv6`, '0');
    sh(['-6', 'addr', 'add', `${UP6}/64`, 'dev', IF.u0, 'nodad']);
    sh(['-6', 'neigh', 'replace', NEIGH6, 'lladdr', NEIGH_MAC, 'dev', IF.u0, 'nud', 'permanent']);
    fs.writeFileSync(`/proc/sys/net/ipv6/conf/${IF.u1}/forwarding`, '1');
    dp = await Dataplane.openOrLoad({ pinRoot });
    const m = dp.maps;
    const ifx = { u0: ifindexOf(IF.u0), u1: ifindexOf(IF.u1), c0: ifindexOf(IF.c0) };
    B.ifindex = ifx.c0;
    // one dual-stack network
    const flags = EndpointFlags.ICC | EndpointFlags.MASQUERADE | EndpointFlags.IPV6;
    for (const e of [A, B]) {
      const v = endpointCodec.encode({ addr: e.addr, ifindex: e.ifindex, network_id: 1, flags, mac: e.mac, addr6: e.addr6 });
      m.epByIfindex.update(ifindexKeyCodec.encode({ ifindex: e.ifindex }), v);
      m.epByIp.update(ipKeyCodec.encode({ addr: e.addr }), v);
      m.epByIp6.update(ip6KeyCodec.encode({ addr: e.addr6 }), v);
    }
    m.net.update(
      networkKeyCodec.encode({ network_id: 1 }),
      netValueCodec.encode({ subnet: `10.197.${X}.0`, mask: '255.255.255.0', gateway: GW, flags, bridge_ifindex: ifx.u1, gw_mac: GW_MAC, subnet6: `fd97:${X.toString(16)}::`, mask6: 'ffff:ffff:ffff:ffff::', gateway6: GW6 }),
    );
    const upMac = macOf(IF.u0);
    m.uplink.update(ifindexKeyCodec.encode({ ifindex: ifx.u0 }), uplinkCodec.encode({ addr: UP, flags: 0, mac: upMac, addr6: UP6 }));
    m.hostAddr.update(ipKeyCodec.encode({ addr: UP }), hostAddrValueCodec.encode({ ifindex: ifx.u0, flags: 0 }));
    m.hostAddr6.update(ip6KeyCodec.encode({ addr: UP6 }), hostAddrValueCodec.encode({ ifindex: ifx.u0, flags: 0 }));
    m.publish.update(publishKeyCodec.encode({ host_addr: '0.0.0.0', host_port: 8080, proto: TCP }), publishValueCodec.encode({ addr: B.addr, port: 80, flags: 0, ifindex: B.ifindex, network_id: 1, mac: B.mac }));
    m.publish.update(publishKeyCodec.encode({ host_addr: '::', host_port: 8080, proto: TCP }), publishValueCodec.encode({ addr: B.addr6, port: 80, flags: 0, ifindex: B.ifindex, network_id: 1, mac: B.mac }));
    for (const ifindex of [1, ifx.u0, ifx.c0]) for (const direction of [0, 1]) m.counters.update(counterKeyCodec.encode({ ifindex, direction }), zeroPerCpuCounters(dp.cpus));

    const runRepeat = async (program: string, verdict: string, prog: BpfProgram, data: Buffer, ifindex?: number) => {
      const runs: number[] = [];
      let retval = 0;
      for (let i = 0; i < o.runs; i++) {
        const r = await prog.testRun({ data, ctx: ifindex ? skbTestContext(ifindex) : undefined, repeat: o.repeat });
        runs.push(r.duration);
        retval = r.retval >>> 0;
      }
      out.push({ program, verdict, runs, retval });
    };
    // A translated packet's TTL goes down at every repeat, and at TTL 1 it is
    // no longer redirected (bpf/lib/hop.h): translations run from TTL 255 in
    // batches of 250 repeats, each run the average of its batches.
    const runRouted = async (program: string, verdict: string, prog: BpfProgram, frame: Buffer, ifindex?: number) => {
      const data = Buffer.from(frame);
      data[14 + 8] = 255;
      data.writeUInt16BE(0, 14 + 10);
      data.writeUInt16BE(ipChecksum(data.subarray(14, 14 + (data[14] & 15) * 4)), 14 + 10);
      const batches = Math.max(1, Math.ceil(o.repeat / 250));
      const runs: number[] = [];
      let retval = 0;
      for (let i = 0; i < o.runs; i++) {
        let total = 0;
        for (let b = 0; b < batches; b++) {
          const r = await prog.testRun({ data, ctx: ifindex ? skbTestContext(ifindex) : undefined, repeat: 250 });
          total += r.duration;
          retval = r.retval >>> 0;
        }
        runs.push(total / batches);
      }
      out.push({ program, verdict, runs, retval, note: 'batches of 250 repeats from TTL 255' });
    };
    // tracked flows: a pair of entries translating a tuple back and forth (each repeat runs on the result)
    const base: CtEntry = {
      rewrite: { saddr: '0.0.0.0', daddr: '0.0.0.0', sport: 0, dport: 0, proto: 0 },
      created_ns: 0n, last_seen_ns: 0n, packets: 0n, bytes: 0n,
      out_ifindex: ifx.u0, out_kind: OutKind.MAC, count_ifindex: ifx.u0,
      out_smac: upMac, out_dmac: NEIGH_MAC, state: CtState.ESTABLISHED, flags: CtFlags.MASQ | CtFlags.ASSURED, tcp_flags_seen: 0,
      tcp_end: 0, tcp_ack: 0, tcp_win: 0, tcp_wscale: 0,
    };
    type T = { saddr: string; daddr: string; sport: number; dport: number };
    const pingPong = (a: T, b: T, e: CtEntry) => {
      m.ct.update(ctKeyCodec.encode({ ...a, proto: UDP }), ctEntryCodec.encode({ ...e, rewrite: { ...b, proto: UDP } }));
      m.ct.update(ctKeyCodec.encode({ ...b, proto: UDP }), ctEntryCodec.encode({ ...e, rewrite: { ...a, proto: UDP } }));
    };
    // single runs (repeat 1) on a fresh frame each: new flows (a fresh source port each), and a
    // container's tracked flow (the translated packet cannot run again at the veth: its source
    // is no longer the container's own, and the source check drops it)
    const single = async (program: string, verdict: string, prog: BpfProgram, mk: (i: number) => Buffer, ifindex?: number) => {
      const ns: number[] = [];
      let retval = 0;
      const n = Math.max(200, o.runs * 40);
      for (let i = 0; i < n; i++) {
        const r = await prog.testRun({ data: mk(i), ctx: ifindex ? skbTestContext(ifindex) : undefined, repeat: 1 });
        ns.push(r.duration);
        retval = r.retval >>> 0;
      }
      // runs of 40 single packets, each summarized by its median
      const runs: number[] = [];
      for (let i = 0; i + 40 <= ns.length; i += 40) runs.push(median(ns.slice(i, i + 40)));
      out.push({ program, verdict, runs, retval, note: 'single packets (repeat 1), median of 40 per run' });
    };
    // the floor of a single run: BPF_PROG_TEST_RUN's own cost at repeat 1 on a path that does little
    await single('berth_veth_ingress', 'own subnet, not a container: pass (the floor of single runs)', dp.progs.ingress, () => udpFrame({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: `10.197.${X}.99`, sport: 1, dport: 2 }));
    await runRepeat('berth_veth_ingress', 'container to container: redirect_peer', dp.progs.ingress, udpFrame({ dmac: B.mac, smac: A.mac, src: A.addr, dst: B.addr, sport: 1, dport: 2 }));
    await runRepeat('berth_veth_ingress', 'own subnet, not a container: pass', dp.progs.ingress, udpFrame({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: `10.197.${X}.99`, sport: 1, dport: 2 }));
    pingPong({ saddr: A.addr, daddr: NEIGH, sport: 7001, dport: 53 }, { saddr: UP, daddr: NEIGH, sport: 7002, dport: 53 }, base);
    await single('berth_veth_ingress', 'tracked masqueraded flow: SNAT + redirect', dp.progs.ingress, () => udpFrame({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: NEIGH, sport: 7001, dport: 53 }));
    pingPong(
      { saddr: NEIGH, daddr: UP, sport: 53, dport: 7003 },
      { saddr: NEIGH, daddr: `10.196.${X}.200`, sport: 53, dport: 7004 },
      { ...base, out_kind: OutKind.PEER, out_ifindex: 1, count_ifindex: 1, flags: CtFlags.MASQ | CtFlags.REPLY },
    );
    await runRouted('berth_up_in', 'tracked published flow: DNAT + redirect_peer', dp.progs.uplink, udpFrame({ dmac: upMac, smac: CLIENT_MAC, src: NEIGH, dst: UP, sport: 53, dport: 7003 }), ifx.u0);
    await runRepeat('berth_up_in', 'unpublished host port: pass', dp.progs.uplink, tcpFrame({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT, dst: UP, sport: 1, dport: 22 }), ifx.u0);
    await runRepeat('berth_up_in', 'container address from outside: drop', dp.progs.uplink, tcpFrame({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT, dst: B.addr, sport: 1, dport: 80 }), ifx.u0);
    await runRepeat('berth_xdp_up', 'container address from outside: XDP_DROP', dp.progs.xdp, tcpFrame({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT, dst: B.addr, sport: 1, dport: 80 }));
    await runRepeat('berth_xdp_up', 'anything else: XDP_PASS', dp.progs.xdp, tcpFrame({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT, dst: UP, sport: 1, dport: 22 }));
    // IPv6: the same paths (a translated packet's hop limit goes down at every repeat, as TTL does)
    const runRouted6 = async (program: string, verdict: string, prog: BpfProgram, frame: Buffer, ifindex?: number) => {
      const data = Buffer.from(frame);
      data[14 + 7] = 255;
      const batches = Math.max(1, Math.ceil(o.repeat / 250));
      const runs: number[] = [];
      let retval = 0;
      for (let i = 0; i < o.runs; i++) {
        let total = 0;
        for (let b = 0; b < batches; b++) {
          const r = await prog.testRun({ data, ctx: ifindex ? skbTestContext(ifindex) : undefined, repeat: 250 });
          total += r.duration;
          retval = r.retval >>> 0;
        }
        runs.push(total / batches);
      }
      out.push({ program, verdict, runs, retval, note: 'batches of 250 repeats from hop limit 255' });
    };
    const v6 = (o6: { smac: string; dmac: string; src: string; dst: string; sport: number; dport: number; proto?: 6 | 17; tcpFlags?: number }) => ipv6Frame({ proto: UDP, ...o6 });
    await runRepeat('berth_veth_ingress', 'IPv6 container to container: redirect_peer', dp.progs.ingress, v6({ dmac: B.mac, smac: A.mac, src: A.addr6, dst: B.addr6, sport: 1, dport: 2 }));
    pingPong({ saddr: A.addr6, daddr: NEIGH6, sport: 7001, dport: 53 }, { saddr: UP6, daddr: NEIGH6, sport: 7002, dport: 53 }, base);
    await single('berth_veth_ingress', 'IPv6 tracked masqueraded flow: SNAT + redirect', dp.progs.ingress, () => v6({ dmac: GW_MAC, smac: A.mac, src: A.addr6, dst: NEIGH6, sport: 7001, dport: 53 }));
    pingPong(
      { saddr: NEIGH6, daddr: UP6, sport: 53, dport: 7003 },
      { saddr: NEIGH6, daddr: `fd96:${X.toString(16)}::200`, sport: 53, dport: 7004 },
      { ...base, out_kind: OutKind.PEER, out_ifindex: 1, count_ifindex: 1, flags: CtFlags.MASQ | CtFlags.REPLY },
    );
    await runRouted6('berth_up_in', 'IPv6 tracked published flow: DNAT + redirect_peer', dp.progs.uplink, v6({ dmac: upMac, smac: CLIENT_MAC, src: NEIGH6, dst: UP6, sport: 53, dport: 7003 }), ifx.u0);
    await runRepeat('berth_up_in', 'IPv6 container address from outside: drop', dp.progs.uplink, v6({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT6, dst: B.addr6, sport: 1, dport: 80, proto: TCP }), ifx.u0);

    // new flows are created once per packet: single runs, each with a fresh source port
    await single('berth_veth_ingress', 'new masqueraded flow: route lookup, two inserts', dp.progs.ingress, (i) => tcpFrame({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: NEIGH, sport: 20000 + i, dport: 80, flags: 0x02 }));
    await single('berth_up_in', 'new published flow: DNAT, two inserts', dp.progs.uplink, (i) => tcpFrame({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT, dst: UP, sport: 20000 + i, dport: 8080, flags: 0x02 }), ifx.u0);
    await single('berth_veth_ingress', 'IPv6 new masqueraded flow: route lookup, two inserts', dp.progs.ingress, (i) => v6({ dmac: GW_MAC, smac: A.mac, src: A.addr6, dst: NEIGH6, sport: 20000 + i, dport: 80, proto: TCP, tcpFlags: 0x02 }));
    await single('berth_up_in', 'IPv6 new published flow: DNAT, two inserts', dp.progs.uplink, (i) => v6({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT6, dst: UP6, sport: 20000 + i, dport: 8080, proto: TCP, tcpFlags: 0x02 }), ifx.u0);
    return out;
  } finally {
    dp?.close();
    cleanup();
  }
}
