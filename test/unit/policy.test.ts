import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MAX_POLICY_RULES, PolicyAction, PolicyFamilies, policyCtlCodec, policyRuleCodec } from '../../src/platform/contract';
import type { BpfMap } from '../../src/platform/native';
import { PolicyError, loadPolicy, namesFrom, parsePolicy } from '../../src/domain/policy';
import { activeBank, policySlots, readPolicySlots, writePolicy } from '../../src/engine/policy';

t.test('parsePolicy: defaults, both spellings, frozen', async (t) => {
  const p = parsePolicy(
    `
- action: deny
  source: 192.0.2.0/24
  container: web
  proto: tcp
  port: 8080
- action: allow
  source: 198.51.100.7
  network: front
- action: deny
`,
    'p.yaml',
  );
  t.same(p.rules, [
    { action: 'deny', source: '192.0.2.0/24', container: 'web', proto: 'tcp', port: 8080 },
    { action: 'allow', source: '198.51.100.7/32', network: 'front' },
    { action: 'deny', source: 'any' },
  ]);
  t.ok(Object.isFrozen(p) && Object.isFrozen(p.rules) && Object.isFrozen(p.rules[0]));
  t.same(parsePolicy('rules:\n  - action: allow\n').rules, [{ action: 'allow', source: 'any' }]);
  t.same(parsePolicy('').rules, []);
});

t.test('parsePolicy: errors name the field', async (t) => {
  const bad: Array<[string, RegExp]> = [
    ['- action: drop\n', /p\.yaml: \[0\]\.action: expected allow or deny/],
    ['- action: deny\n  source: 10.0.0.1/8\n', /\[0\]\.source: host bits set/],
    ['- action: deny\n  source: nonsense\n', /\[0\]\.source: invalid IPv4 or IPv6 CIDR/],
    ['- action: deny\n  source: fd00::1/8\n', /\[0\]\.source: host bits set in fd00::1\/8 \(did you mean fd00::\/8\?\)/],
    ['- action: deny\n  source: "fd00::/129"\n', /\[0\]\.source: invalid IPv6 CIDR/],
    ['- action: deny\n  source: "fd00:::1"\n', /\[0\]\.source: invalid IPv6 CIDR/],
    ['- action: deny\n  source: "::ffff:192.0.2.1"\n', /\[0\]\.source: .*IPv4-mapped.*192\.0\.2\.1/],
    ['- action: deny\n- action: deny\n  source: [fd00::]\n', /\[1\]\.source: expected an IPv4 or IPv6 CIDR/],
    ['- action: deny\n- action: deny\n  port: 70000\n', /\[1\]\.port: expected a port number/],
    ['- action: deny\n  proto: sctp\n', /\[0\]\.proto: expected tcp or udp/],
    ['- action: deny\n  container: a\n  network: b\n', /\[0\]\.network: give container or network, not both/],
    ['- action: deny\n  dport: 80\n', /\[0\]\.dport: unknown field/],
    ['action: deny\n', /p\.yaml: expected a list of rules/],
    ['- [1, 2]\n', /\[0\]: expected a mapping/],
    ['- action: deny\n   bad: [\n', /not valid YAML/],
  ];
  for (const [text, re] of bad) t.throws(() => parsePolicy(text, 'p.yaml'), re, text.trim());
  t.throws(() => parsePolicy(Array.from({ length: MAX_POLICY_RULES + 1 }, () => '- action: deny').join('\n'), 'p.yaml'), /at most 64/);
  const e = (() => {
    try {
      parsePolicy('- action: x\n', 'p.yaml');
    } catch (err) {
      return err;
    }
  })();
  t.ok(e instanceof PolicyError && e.field === '[0].action');
  t.throws(() => loadPolicy('/nonexistent/policy.yaml'), /cannot read/);
});

t.test('policySlots: names resolved, missing names match nothing, slot i is rule i', async (t) => {
  const p = parsePolicy(`
- {action: deny, source: 192.0.2.0/24, container: web, proto: tcp, port: 8080}
- {action: allow, network: front}
- {action: deny, container: gone}
- {action: deny, proto: udp}
`);
  const slots = policySlots(p, namesFrom(new Map([['web', '10.1.2.3']]), new Map([['front', '10.9.0.0/16']])));
  const v4only = { families: 0, src6_addr: '::', src6_mask: '::', dst6_addr: '::', dst6_mask: '::' };
  const both = { families: PolicyFamilies.V6, src6_addr: '::', src6_mask: '::' };
  const inbound = { out_addr: '0.0.0.0', out_mask: '0.0.0.0', out6_addr: '::', out6_mask: '::', egress: 0 };
  t.same(slots.map((s) => ({ ...s, ...inbound })), slots, 'no destination: inbound slots, out_* zero');
  t.same(slots.map(({ out_addr, out_mask, out6_addr, out6_mask, egress, ...s }) => s), [
    { src_addr: '192.0.2.0', src_mask: '255.255.255.0', dst_addr: '10.1.2.3', dst_mask: '255.255.255.255', port: 8080, proto: 6, action: PolicyAction.DENY, ...v4only },
    { src_addr: '0.0.0.0', src_mask: '0.0.0.0', dst_addr: '10.9.0.0', dst_mask: '255.255.0.0', port: 0, proto: 0, action: PolicyAction.ALLOW, ...both, dst6_addr: ALL6, dst6_mask: ALL6 },
    { src_addr: '0.0.0.0', src_mask: '0.0.0.0', dst_addr: '255.255.255.255', dst_mask: '255.255.255.255', port: 0, proto: 0, action: PolicyAction.DENY, ...both, dst6_addr: ALL6, dst6_mask: ALL6 },
    { src_addr: '0.0.0.0', src_mask: '0.0.0.0', dst_addr: '0.0.0.0', dst_mask: '0.0.0.0', port: 0, proto: 17, action: PolicyAction.DENY, ...both, dst6_addr: '::', dst6_mask: '::' },
  ]);
});

const ALL6 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';

t.test('parsePolicy: IPv6 sources, normalized', async (t) => {
  const p = parsePolicy(`- {action: deny, source: "fd00::/8"}
- {action: allow, source: "2001:DB8::1"}
- {action: deny, source: "::/0"}
- {action: deny, source: 0.0.0.0/0}
- {action: deny, source: any}
`);
  t.same(p.rules.map((r) => r.source), ['fd00::/8', '2001:db8::1/128', '::/0', '0.0.0.0/0', 'any']);
});

t.test('policySlots: each family on its own fields; names resolve to both families', async (t) => {
  const p = parsePolicy(`
- {action: deny, source: "fd00::/8", container: web}
- {action: deny, source: 192.0.2.1, container: web}
- {action: allow, container: web}
- {action: deny, network: front}
- {action: deny, source: "2001:db8::1", network: v4only}
- {action: deny, container: v4web}
`);
  const names = namesFrom(
    new Map([['web', '10.1.2.3'], ['v4web', '10.1.2.4']]),
    new Map([['front', '10.9.0.0/16'], ['v4only', '10.8.0.0/16']]),
    new Map([['web', 'fd09::2']]),
    new Map([['front', 'fd09::/64']]),
  );
  const s = policySlots(p, names);
  const v6only = PolicyFamilies.V6 | PolicyFamilies.NOT_V4;
  t.match(s[0], { families: v6only, src6_addr: 'fd00::', src6_mask: 'ff00::', dst6_addr: 'fd09::2', dst6_mask: ALL6 }, 'IPv6 source: IPv6 packets only');
  t.match(s[1], { families: 0, src_addr: '192.0.2.1', src_mask: '255.255.255.255', dst_addr: '10.1.2.3' }, 'IPv4 source: IPv4 packets only');
  t.match(s[2], { families: PolicyFamilies.V6, src_mask: '0.0.0.0', src6_mask: '::', dst_addr: '10.1.2.3', dst6_addr: 'fd09::2', dst6_mask: ALL6 }, 'no source: both, each to its own address');
  t.match(s[3], { families: PolicyFamilies.V6, dst_addr: '10.9.0.0', dst_mask: '255.255.0.0', dst6_addr: 'fd09::', dst6_mask: 'ffff:ffff:ffff:ffff::' }, 'a network: subnet and subnet6');
  t.match(s[4], { families: v6only, dst6_addr: ALL6, dst6_mask: ALL6 }, 'a network without IPv6: an IPv6 rule matches nothing');
  t.match(s[5], { families: PolicyFamilies.V6, dst_addr: '10.1.2.4', dst6_addr: ALL6, dst6_mask: ALL6 }, 'a container without IPv6: its IPv6 half matches nothing');
  // the kernel layout round-trips
  for (const r of s) t.same(policyRuleCodec.decode(policyRuleCodec.encode(r)), r);
});

/** In-memory array maps (rules, hits, active bank) keyed by slot number. */
function fakeMaps(): { rules: BpfMap; hits: BpfMap; active: BpfMap; data: Map<number, Buffer>; hitData: Map<number, Buffer> } {
  const data = new Map<number, Buffer>();
  const hitData = new Map<number, Buffer>();
  const ctl = new Map<number, Buffer>();
  const mk = (store: Map<number, Buffer>, size: number): BpfMap =>
    ({
      valueBufferSize: size,
      lookup: (k: Buffer) => store.get(k.readUInt32LE(0)) ?? Buffer.alloc(size),
      update: (k: Buffer, v: Buffer) => void store.set(k.readUInt32LE(0), Buffer.from(v)),
    }) as unknown as BpfMap;
  return { rules: mk(data, policyRuleCodec.size), hits: mk(hitData, 16 * 2), active: mk(ctl, policyCtlCodec.size), data, hitData };
}

const rule = (port: number, action: number = PolicyAction.DENY) => ({ src_addr: '0.0.0.0', src_mask: '0.0.0.0', dst_addr: '0.0.0.0', dst_mask: '0.0.0.0', port, proto: 6, action });

t.test('writePolicy: the other bank is written whole, then one flip', async (t) => {
  const m = fakeMaps();
  const walk = (): number[] => readPolicySlots(m).map((r) => r.port);
  let before: number[] = [];
  t.equal(activeBank(m), 0);
  t.equal(writePolicy(m, [rule(1), rule(2), rule(3)], () => (before = walk())), 1, 'bank 1 in force');
  t.same(before, [], 'until the flip, packets see the old (empty) rule set');
  t.same(walk(), [1, 2, 3], 'after it, the whole new one');

  t.equal(writePolicy(m, [rule(1), rule(2), rule(3)]), undefined, 'the same rules: nothing written');
  t.equal(activeBank(m), 1);

  t.equal(writePolicy(m, [rule(9), rule(2)], () => (before = walk())), 0, 'back to bank 0');
  t.same(before, [1, 2, 3], 'a shrinking set: the old one until the flip');
  t.same(walk(), [9, 2], 'no rule of the old set shows through the new END');

  // hit counters: a rule at the same index in both sets keeps its count, a new one starts at zero
  m.hitData.set(0, Buffer.alloc(32, 1));
  m.hitData.set(1, Buffer.alloc(32, 2));
  t.equal(writePolicy(m, [rule(8), rule(2)]), 1);
  t.ok(m.hitData.get(MAX_POLICY_RULES + 0)!.equals(Buffer.alloc(32)), 'slot 0 changed: hits start at zero');
  t.ok(m.hitData.get(MAX_POLICY_RULES + 1)!.equals(Buffer.alloc(32, 2)), 'slot 1 unchanged: hits carried over');

  t.equal(writePolicy(m, []), 0);
  t.same(walk(), [], 'everything away');
  t.throws(() => writePolicy(m, Array.from({ length: MAX_POLICY_RULES + 1 }, (_, i) => rule(i))), /at most 64/);
});

t.test('loadPolicy reads a file', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-policy-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = path.join(dir, 'p.yaml');
  fs.writeFileSync(f, '- action: deny\n  port: 80\n');
  t.same(loadPolicy(f).rules, [{ action: 'deny', source: 'any', port: 80 }]);
  t.equal(loadPolicy(f).source, f);
});

t.test('parsePolicy: destination (egress rules), normalized; errors name the field', async (t) => {
  const p = parsePolicy(
    `
- {action: deny, destination: 169.254.169.254}
- {action: deny, destination: "fd00:0::/8", container: web, proto: udp, port: 53}
- {action: allow, destination: any, source: 10.0.0.0/8}
- {action: deny, destination: 192.0.2.0/24, source: 10.1.0.0/16}
`,
    'p.yaml',
  );
  t.same(p.rules, [
    { action: 'deny', source: 'any', destination: '169.254.169.254/32' },
    { action: 'deny', source: 'any', container: 'web', proto: 'udp', port: 53, destination: 'fd00::/8' },
    { action: 'allow', source: '10.0.0.0/8', destination: 'any' },
    { action: 'deny', source: '10.1.0.0/16', destination: '192.0.2.0/24' },
  ]);
  const bad: Array<[string, RegExp]> = [
    ['- {action: deny, destination: 10.0.0.1/8}\n', /p\.yaml: \[0\]\.destination: host bits set in 10\.0\.0\.1\/8/],
    ['- {action: deny, destination: nowhere}\n', /\[0\]\.destination: invalid IPv4 or IPv6 CIDR/],
    ['- {action: deny, destination: [1]}\n', /\[0\]\.destination: expected an IPv4 or IPv6 CIDR/],
    ['- {action: deny, destination: "::ffff:10.0.0.1"}\n', /\[0\]\.destination: .*IPv4-mapped/],
    ['- {action: deny}\n- {action: deny, source: 10.0.0.0/8, destination: "fd00::/8"}\n', /\[1\]\.destination: fd00::\/8 is IPv6 but source 10\.0\.0\.0\/8 is IPv4/],
  ];
  for (const [text, re] of bad) t.throws(() => parsePolicy(text, 'p.yaml'), re, text.trim());
});

t.test('policySlots: a destination makes an egress slot, its family the destination\'s', async (t) => {
  const names = namesFrom(new Map([['web', '10.0.0.5']]), new Map(), new Map([['web', 'fd00::5']]));
  const [v4, v6, any, inbound] = policySlots(
    parsePolicy(`
- {action: deny, destination: 169.254.169.254, container: web}
- {action: deny, destination: "fd00:1::/64", port: 53, proto: udp}
- {action: deny, destination: any}
- {action: deny, source: 192.0.2.1}
`),
    names,
  );
  t.match(v4, { egress: 1, families: 0, out_addr: '169.254.169.254', out_mask: '255.255.255.255', dst_addr: '10.0.0.5', dst_mask: '255.255.255.255' });
  t.match(v6, { egress: 1, families: PolicyFamilies.V6 | PolicyFamilies.NOT_V4, out6_addr: 'fd00:1::', out6_mask: 'ffff:ffff:ffff:ffff::', port: 53, proto: 17 });
  t.match(any, { egress: 1, families: PolicyFamilies.V6, out_addr: '0.0.0.0', out_mask: '0.0.0.0', out6_addr: '::', out6_mask: '::' });
  t.match(inbound, { egress: 0, out_addr: '0.0.0.0', out_mask: '0.0.0.0', out6_addr: '::', out6_mask: '::' }, 'a rule without destination: an inbound slot');
  // the kernel's bytes: an inbound rule's new members are zero, the layout before
  const buf = policyRuleCodec.encode(inbound!);
  t.ok(buf.subarray(88).equals(Buffer.alloc(buf.length - 88)), 'out_*, egress: all zero');
  t.equal(policyRuleCodec.decode(policyRuleCodec.encode(v4!)).egress, 1, 'round trip');
});

t.test('writePolicy: egress_banks has the bit of each bank holding an egress rule, set before its flip', async (t) => {
  const m = fakeMaps();
  const ctl = () => policyCtlCodec.decode(m.active.lookup(Buffer.alloc(4))!);
  const egress = { ...rule(0), egress: 1, out_addr: '169.254.169.254', out_mask: '255.255.255.255' };
  let atFlip = ctl();
  t.equal(writePolicy(m, [rule(1)]), 1);
  t.same(ctl(), { bank: 1, egress_banks: 0 }, 'no egress rule: no bit');
  t.equal(writePolicy(m, [rule(1), egress], () => (atFlip = ctl())), 0);
  t.same(atFlip, { bank: 1, egress_banks: 1 }, "before the flip: bank 0's bit set, bank 1 still in force");
  t.same(ctl(), { bank: 0, egress_banks: 1 }, 'the flip changes the bank alone');
  t.equal(writePolicy(m, [rule(2)], () => (atFlip = ctl())), 1);
  t.same(atFlip, { bank: 0, egress_banks: 1 }, "bank 1's bit was already clear: unchanged before the flip");
  t.equal(writePolicy(m, [rule(2), egress]), 0);
  t.same(ctl(), { bank: 0, egress_banks: 1 });
  t.equal(writePolicy(m, [rule(3)]), 1);
  t.equal(writePolicy(m, []), 0);
  t.same(ctl(), { bank: 0, egress_banks: 0 }, 'rules away: no bit');
  // a dataplane migrated from before egress rules: the bit is zero; the same rules set it
  t.equal(writePolicy(m, [egress]), 1);
  m.active.update(Buffer.alloc(4), policyCtlCodec.encode({ bank: 1 }));
  t.equal(writePolicy(m, [egress]), undefined, 'the same rules: no flip');
  t.same(ctl(), { bank: 1, egress_banks: 2 }, 'but the bit of the bank in force is set');
});
