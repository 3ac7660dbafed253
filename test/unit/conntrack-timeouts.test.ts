// The conntrack timeouts' one home (src/domain/conntrack-timeouts.ts): the
// names the file format takes, the kernel sysctl each mirrors, the defaults,
// and that the config file and the sweeper both take them from there.
import t from 'tap';
import * as fs from 'node:fs';
import { CONNTRACK_TIMEOUTS, DEFAULT_CONNTRACK_TIMEOUTS, type ConntrackTimeouts } from '../../src/domain/conntrack-timeouts';
import { DEFAULT_SETTINGS, parseConfig } from '../../src/domain/config';
import { timeoutFor } from '../../src/engine/conntrack';
import { CtState } from '../../src/platform/contract';

const NET = 'networks:\n  - name: n\n    subnet: 10.75.251.0/24\n';

t.test('one entry per timeout: unique keys, unique kernel names, positive whole defaults', async (t) => {
  const keys = CONNTRACK_TIMEOUTS.map((x) => x.key);
  const kernel = CONNTRACK_TIMEOUTS.map((x) => x.kernel);
  t.equal(new Set(keys).size, keys.length, 'keys unique');
  t.equal(new Set(kernel).size, kernel.length, 'kernel names unique');
  for (const x of CONNTRACK_TIMEOUTS) {
    t.match(x.kernel, /^nf_conntrack_[a-z0-9]+_timeout(_[a-z_]+)?$/, `${x.key}: ${x.kernel} is an nf_conntrack timeout sysctl`);
    t.ok(Number.isInteger(x.default) && x.default > 0, `${x.key}: ${x.default} s`);
  }
  t.same(Object.keys(DEFAULT_CONNTRACK_TIMEOUTS), keys, 'the defaults are the table, in its order');
  t.ok(Object.isFrozen(DEFAULT_CONNTRACK_TIMEOUTS) && Object.isFrozen(CONNTRACK_TIMEOUTS));
});

t.test('the config file takes them from there: defaults, the keys it accepts', async (t) => {
  const { max, unassuredMax, ...timeouts } = DEFAULT_SETTINGS.conntrack;
  t.ok(max > 0 && unassuredMax > 0);
  t.same(timeouts, DEFAULT_CONNTRACK_TIMEOUTS, 'settings.conntrack defaults = the table');
  t.same(parseConfig(NET).settings.conntrack, DEFAULT_SETTINGS.conntrack, 'no settings: the defaults');
  for (const x of CONNTRACK_TIMEOUTS) {
    const cfg = parseConfig(`${NET}settings:\n  conntrack:\n    ${x.key}: 7\n`);
    t.equal(cfg.settings.conntrack[x.key], 7, `settings.conntrack.${x.key} is taken`);
  }
  t.throws(() => parseConfig(`${NET}settings:\n  conntrack:\n    nf_conntrack_udp_timeout: 7\n`), /settings\.conntrack\.nf_conntrack_udp_timeout: unknown field/, 'the kernel name is documentation, not a key');
});

t.test('the sweeper applies every one of them, each where the kernel does', async (t) => {
  // distinct values, so a key used in the wrong place shows
  const T = Object.fromEntries(CONNTRACK_TIMEOUTS.map((x, i) => [x.key, 1000 + i])) as unknown as ConntrackTimeouts;
  const where: Record<keyof ConntrackTimeouts, { proto: number; state: number; assured: boolean }> = {
    tcpEstablishedTimeout: { proto: 6, state: CtState.ESTABLISHED, assured: true },
    tcpSynTimeout: { proto: 6, state: CtState.SYN_SENT, assured: false },
    tcpSynRecvTimeout: { proto: 6, state: CtState.SYN_RECV, assured: false },
    tcpUnacknowledgedTimeout: { proto: 6, state: CtState.ESTABLISHED, assured: false },
    tcpCloseTimeout: { proto: 6, state: CtState.CLOSED, assured: true },
    tcpFinTimeout: { proto: 6, state: CtState.CLOSING, assured: true },
    udpTimeout: { proto: 17, state: CtState.NEW, assured: false },
    udpStreamTimeout: { proto: 17, state: CtState.ESTABLISHED, assured: true },
    icmpTimeout: { proto: 1, state: CtState.NEW, assured: false },
    greTimeout: { proto: 47, state: CtState.NEW, assured: false },
    greStreamTimeout: { proto: 47, state: CtState.ESTABLISHED, assured: true },
    genericTimeout: { proto: 132, state: CtState.NEW, assured: false },
  };
  t.same(Object.keys(where).sort(), CONNTRACK_TIMEOUTS.map((x) => x.key).sort(), 'every key has a case here');
  for (const x of CONNTRACK_TIMEOUTS) t.equal(timeoutFor(where[x.key], T), T[x.key], `${x.key} (${x.kernel})`);
  t.equal(timeoutFor({ proto: 58, state: CtState.NEW, assured: false }, T), T.icmpTimeout, 'ICMPv6 echo: icmpTimeout');
});

const SYSCTLS = '/proc/sys/net/netfilter';
t.test("this host's kernel has every sysctl the table names", { skip: !fs.existsSync(`${SYSCTLS}/nf_conntrack_generic_timeout`) && 'nf_conntrack is not loaded here: no sysctls to compare' }, async (t) => {
  const dir = SYSCTLS;
  for (const x of CONNTRACK_TIMEOUTS) {
    const p = `${dir}/${x.kernel}`;
    t.ok(fs.existsSync(p), `${p} exists`);
    // the host may be tuned: its value is reported, not asserted
    const v = Number(fs.readFileSync(p, 'utf8').trim());
    if (v !== x.default) t.comment(`${x.kernel}: this host ${v} s, berth's default ${x.default} s (${x.key})`);
  }
});
