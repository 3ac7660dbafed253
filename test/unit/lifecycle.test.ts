// The lifecycle's pure rules (src/platform/lifecycle.ts): which way a start goes over a pinned
// version, release order, and the member-by-name conversion of a changed map value.
import t from 'tap';
import { compareReleases, downgradeMessage, planConversion, transition } from '../../src/platform/lifecycle';

const v = (epoch: number, release: string, layout = 1n, programs = 2n) => ({ epoch, release, layout, programs });

t.test('transition', async (t) => {
  t.equal(transition(undefined, v(1, '0.1.0')), 'upgrade', 'a dataplane from before versions is upgraded');
  t.equal(transition(v(1, '0.1.0'), v(1, '0.1.0')), 'same');
  t.equal(transition(v(1, '0.1.0'), v(1, '0.1.0', 1n, 3n)), 'replace', 'same release, other programs or settings');
  t.equal(transition(v(1, '0.1.0'), v(1, '0.1.0', 5n, 2n)), 'replace', 'same release, another layout');
  t.equal(transition(v(1, '0.1.0'), v(1, '0.2.0')), 'upgrade');
  t.equal(transition(v(1, '0.2.0'), v(1, '0.1.9')), 'downgrade');
  t.equal(transition(v(2, '0.1.0'), v(1, '0.9.0')), 'downgrade', 'the epoch decides before the release');
  t.equal(transition(v(1, '0.9.0'), v(2, '0.1.0')), 'upgrade');
});

t.test('compareReleases', async (t) => {
  t.equal(compareReleases('0.1.0', '0.1.0'), 0);
  t.equal(compareReleases('0.1.10', '0.1.9'), 1, 'numeric, not text');
  t.equal(compareReleases('1.0.0', '0.99.99'), 1);
  t.equal(compareReleases('0.1.0-rc.1', '0.1.0'), 0, 'a pre-release tag is ignored');
  t.equal(compareReleases('dev', '0.1.0'), 0, 'unparseable: not ordered');
});

t.test('the downgrade message names both versions and the way out', async (t) => {
  const m = downgradeMessage('/sys/fs/bpf/berth', v(2, '0.3.0', 0xabn, 0xcdn), v(1, '0.2.0'));
  t.match(m, /berth 0\.3\.0 \(contract epoch 2, layout 00000000000000ab, programs 00000000000000cd\)/);
  t.match(m, /berth 0\.2\.0 \(contract epoch 1/);
  t.match(m, /nothing was changed/);
  t.match(m, /--force/);
});

const int = (s: number) => ({ k: 'int', s, signed: false, bits: s * 8 });
const layout = (value: unknown, over: Record<string, unknown> = {}) =>
  JSON.stringify({ type: 1, flags: 0, keySize: 4, valueSize: (value as { s: number }).s, key: int(4), value, ...over });
const st = (s: number, m: Array<[string, number, unknown]>) => ({ k: 'struct', name: 'v', s, m: m.map(([n, o, t]) => ({ n, o, t })) });

t.test('planConversion', async (t) => {
  const oldV = st(8, [['a', 0, int(4)], ['b', 4, int(4)]]);
  // b moved before a, c added, nothing removed
  const newV = st(12, [['b', 0, int(4)], ['c', 4, int(4)], ['a', 8, int(4)]]);
  const c = planConversion(layout(oldV), layout(newV));
  if ('reason' in c) throw new Error(c.reason);
  t.same(c.added, ['c']);
  t.same(c.removed, []);
  const old = Buffer.from([1, 0, 0, 0, 2, 0, 0, 0]);
  t.same([...c.convert(old)], [2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], 'carried over by name, the new member zero');
  const dropped = planConversion(layout(oldV), layout(st(4, [['b', 0, int(4)]])));
  t.same('reason' in dropped ? [] : dropped.removed, ['a'], 'a member the new value lacks is dropped and said');
  t.same(planConversion(layout(oldV), layout(st(12, [['a', 0, int(8)], ['b', 8, int(4)]]))), { reason: 'member a changed type' });
  t.same(planConversion(layout(oldV), layout(oldV, { key: int(8), keySize: 8 })), { reason: 'the key layout changed' });
  t.same(planConversion(layout(oldV), layout(oldV, { type: 9 })), { reason: 'map type 1 became 9' });
  t.same(planConversion(layout(oldV, { type: 5 }), layout(newV, { type: 5 })), { reason: 'per-CPU values are not converted' });
  t.same(planConversion(layout(int(4)), layout(int(8))), { reason: 'the value is not a struct on both sides' });
  const same = planConversion(layout(oldV), layout(oldV));
  t.same('reason' in same ? same : [...same.convert(old)], [...old], 'the same layout: copied as is');
});
