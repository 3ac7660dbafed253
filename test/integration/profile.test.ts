/**
 * The profile suite (bench/profile.ts), reduced: one round of request/response on the published path
 * and the 127.0.0.1 path, and the report has every program that traffic runs through with run_cnt > 0
 * (tc_veth ingress and the uplink's tc program for published, the connect4 hook for 127.0.0.1), the
 * transactions connrate counted, and the floor measured in the same round. Not timing.
 *
 * Own names bfl2*, subnets 10.64.3-5.0/24 and fd64:3-5::/64, pin root /sys/fs/bpf/berth-fl-test-prof,
 * host ports 34500-34999.
 */
import t from 'tap';
import { runProfile } from '../../bench/profile';

t.test('profile: published and loopback, one round each', async (t) => {
  const doc = await runProfile({
    runs: 1,
    seconds: 1,
    perf: false,
    paths: ['published', 'loopback'],
    loads: ['rr'],
    tag: 'bfl2',
    third: 3,
    nat: { net4: '10.64.3', ext4: '10.64.4', net6: 'fd64:3', ext6: 'fd64:4', pinRoot: '/sys/fs/bpf/berth-fl-test-prof' },
    floorAt: { v4: '10.64.5', v6: 'fd64:5' },
  });
  t.same(doc.errors, [], 'no suite error');
  t.equal(doc.rows.length, 2, 'a row per path and load');
  const ran = (path: string) => doc.rows.find((r) => r.path === path)!;
  for (const [path, programs] of [['published', ['tc_veth ingress', 'uplink tc ingress']], ['host -> 127.0.0.1', ['sock connect4', 'tc_veth ingress']]] as const) {
    const r = ran(path);
    t.ok(r, `${path}: a row`);
    t.equal(r.rounds.length, 1, `${path}: the round completed`);
    t.ok(r.transactions > 0, `${path}: connrate counted transactions (${r.transactions})`);
    t.ok(r.floorUs > 0, `${path}: the floor measured in the same round`);
    for (const p of programs) {
      const c = r.programs.find((x) => x.program === p);
      t.ok(c && c.runCnt > 0, `${path}: ${p} ran (run_cnt ${c?.runCnt})`);
      t.ok(c && c.runTimeNs > 0, `${path}: ${p} has run time`);
    }
    t.ok(r.bpfUs > 0, `${path}: BPF time per transaction is summed`);
  }
  // request/response on one connection: one tracked packet each way through the published path per transaction
  const pub = ran('published');
  const veth = pub.programs.find((x) => x.program === 'tc_veth ingress')!;
  t.ok(veth.runCnt >= pub.transactions, 'published: tc_veth ingress ran at least once per transaction (the reply)');
});
