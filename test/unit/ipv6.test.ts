import t from 'tap';
import {
  canonicalIPv6,
  cidr6Contains,
  cidr6Overlaps,
  formatCidr6,
  formatIPv6,
  hasHostBits6,
  ipFamily,
  isLinkLocal6,
  isLoopback6,
  isMulticast6,
  isUla6,
  isUnspecified6,
  isV4Mapped6,
  lastAddress6,
  networkAddress6,
  nextFreeIPv6,
  parseCidr6,
  parseIPv6,
  prefixMask6,
  subnetProblem6,
  unicastProblem6,
  v4OfMapped,
} from '../../src/domain/ipv6';

const P = (s: string): bigint => {
  const n = parseIPv6(s);
  if (n === null) throw new Error(`test: ${s} does not parse`);
  return n;
};

t.test('parseIPv6: accepted forms and their values', async (t) => {
  t.equal(parseIPv6('::'), 0n);
  t.equal(parseIPv6('::1'), 1n);
  t.equal(parseIPv6('0:0:0:0:0:0:0:1'), 1n, 'all eight groups');
  t.equal(parseIPv6('1::'), 1n << 112n, 'trailing ::');
  t.equal(parseIPv6('fd00:1::2'), (0xfd00n << 112n) | (1n << 96n) | 2n);
  t.equal(parseIPv6('FD00:1::2'), parseIPv6('fd00:1::2'), 'upper case');
  t.equal(parseIPv6('fd00:0001:0000::0002'), parseIPv6('fd00:1::2'), 'leading zeros');
  t.equal(parseIPv6('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), (1n << 128n) - 1n);
  t.equal(parseIPv6('1:2:3:4:5:6:7::'), parseIPv6('1:2:3:4:5:6:7:0'), ':: standing for one group');
  t.equal(parseIPv6('::2:3:4:5:6:7:8'), parseIPv6('0:2:3:4:5:6:7:8'));
  t.equal(parseIPv6('::ffff:10.0.0.1'), (0xffffn << 32n) | 0x0a000001n, 'v4-mapped');
  t.equal(parseIPv6('::FFFF:10.0.0.1'), parseIPv6('::ffff:a00:1'));
  t.equal(parseIPv6('::1.2.3.4'), 0x01020304n, 'v4-compatible (deprecated, still syntax)');
  t.equal(parseIPv6('1:2:3:4:5:6:1.2.3.4'), parseIPv6('1:2:3:4:5:6:102:304'), 'dotted quad after six groups');
  t.equal(parseIPv6('64:ff9b::192.0.2.33'), parseIPv6('64:ff9b::c000:221'));
});

t.test('parseIPv6: rejected forms', async (t) => {
  for (const s of [
    '', ':', ':::', '1', '1:2', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1::2::3', '::1::', ':1::2', '1::2:', '12345::',
    'g::1', '[::1]', '::1/64', 'fe80::1%eth0', ' ::1', '::1 ', '1:2:3:4:5:6:7:8::', '::1:2:3:4:5:6:7:8',
    '::ffff:10.0.0', '::ffff:10.0.0.256', '::ffff:010.0.0.1', '1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '::1.2.3.4:5',
    'localhost', '0x1::',
  ]) {
    t.equal(parseIPv6(s), null, JSON.stringify(s));
  }
  t.equal(parseIPv6(undefined as unknown as string), null, 'not a string');
});

t.test('formatIPv6: RFC 5952 canonical text', async (t) => {
  const cases: [string, string][] = [
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['FD00:0001:0000:0000:0000:0000:0000:0002', 'fd00:1::2'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // 5952 4.2.3: the first of two equal runs
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run, not the first
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // 4.2.2: one zero group is not shortened
    ['2001:db8::', '2001:db8::'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['::ffff:a00:1', '::ffff:10.0.0.1'], // v4-mapped with its dotted quad (5952 5)
    ['fe80::1', 'fe80::1'],
    ['0:1:0:0:1:0:0:0', '0:1:0:0:1::'],
  ];
  for (const [i, o] of cases) t.equal(formatIPv6(P(i)), o, i);
  t.equal(canonicalIPv6('FD88:A:0::0:1'), 'fd88:a::1');
  t.equal(canonicalIPv6('10.0.0.1'), null);
  // round trip on every single-group and every zero-run layout
  for (let mask = 0; mask < 256; mask++) {
    let n = 0n;
    for (let g = 0; g < 8; g++) n = (n << 16n) | BigInt(mask & (1 << g) ? 0xab0 + g : 0);
    t.equal(parseIPv6(formatIPv6(n)), n, `round trip of layout ${mask}`);
  }
});

t.test('ipFamily', async (t) => {
  t.equal(ipFamily('10.0.0.1'), 4);
  t.equal(ipFamily('::'), 6);
  t.equal(ipFamily('::ffff:10.0.0.1'), 6);
  t.equal(ipFamily('[::]'), null);
  t.equal(ipFamily('10.0.0.1/24'), null);
  t.equal(ipFamily('x'), null);
});

t.test('CIDR: parse, masks, containment, overlap', async (t) => {
  t.same(parseCidr6('fd00:1::/64'), { addr: P('fd00:1::'), prefixLen: 64 });
  t.same(parseCidr6('::/0'), { addr: 0n, prefixLen: 0 });
  t.same(parseCidr6('::1/128'), { addr: 1n, prefixLen: 128 });
  for (const s of ['fd00::/129', 'fd00::/064', 'fd00::', 'fd00::/', '/64', 'fd00::/-1', '10.0.0.0/8', 'fd00::/6 4', 'zz::/64'])
    t.equal(parseCidr6(s), null, s);
  t.equal(prefixMask6(0), 0n);
  t.equal(prefixMask6(128), (1n << 128n) - 1n);
  t.equal(prefixMask6(64), ((1n << 64n) - 1n) << 64n);
  t.equal(prefixMask6(1), 1n << 127n);
  const c = parseCidr6('fd00:1::5/64')!;
  t.ok(hasHostBits6(c));
  t.notOk(hasHostBits6(parseCidr6('fd00:1::/64')!));
  t.equal(formatIPv6(networkAddress6(c)), 'fd00:1::');
  t.equal(formatIPv6(lastAddress6(c)), 'fd00:1::ffff:ffff:ffff:ffff');
  t.equal(formatCidr6(parseCidr6('FD00:1:0::/48')!), 'fd00:1::/48');
  t.ok(cidr6Contains(c, P('fd00:1::ffff:ffff:ffff:ffff')));
  t.ok(cidr6Contains(c, P('fd00:1::')));
  t.notOk(cidr6Contains(c, P('fd00:1:0:1::')));
  t.notOk(cidr6Contains(c, P('fd00::1')));
  t.ok(cidr6Overlaps(parseCidr6('fd00:1::/48')!, parseCidr6('fd00:1:0:2::/64')!), '/48 holds the /64');
  t.ok(cidr6Overlaps(parseCidr6('fd00:1:0:2::/64')!, parseCidr6('fd00:1::/48')!), 'symmetric');
  t.notOk(cidr6Overlaps(parseCidr6('fd00:1::/64')!, parseCidr6('fd00:1:0:1::/64')!), 'neighbouring /64s');
  t.ok(cidr6Overlaps(parseCidr6('::/0')!, parseCidr6('fd00::/64')!));
});

t.test('nextFreeIPv6', async (t) => {
  const c = parseCidr6('fd00:1::/64')!;
  const taken = new Set([P('fd00:1::1'), P('fd00:1::2'), P('fd00:1::4')]);
  t.equal(nextFreeIPv6(c, 0n, (a) => taken.has(a)), P('fd00:1::3'), 'lowest free after the network address');
  t.equal(nextFreeIPv6(c, P('fd00:1::4'), (a) => taken.has(a)), P('fd00:1::5'), 'from a cursor');
  t.equal(nextFreeIPv6(c, P('fd00:1::'), () => false), P('fd00:1::1'), 'never the network (subnet-router anycast) address');
  t.equal(nextFreeIPv6(c, P('fd00:1::ffff:ffff:ffff:ffff'), () => false), P('fd00:1::ffff:ffff:ffff:ffff'), 'the last address is an address');
  t.equal(nextFreeIPv6(c, P('fd00:1::ffff:ffff:ffff:ffff'), () => true), null, 'past the end');
  t.equal(nextFreeIPv6(parseCidr6('fd00::/126')!, 0n, (a) => a <= P('fd00::3')), null, 'a full small prefix');
  t.equal(nextFreeIPv6(c, 0n, () => true, 10), null, 'bounded walk');
});

t.test('scopes', async (t) => {
  t.ok(isUnspecified6(P('::')));
  t.ok(isLoopback6(P('::1')));
  t.notOk(isLoopback6(P('::2')));
  t.ok(isLinkLocal6(P('fe80::1')));
  t.ok(isLinkLocal6(P('febf:ffff::1')), 'fe80::/10 ends at febf');
  t.notOk(isLinkLocal6(P('fec0::1')));
  t.ok(isMulticast6(P('ff02::1')));
  t.notOk(isMulticast6(P('fe00::1')));
  t.ok(isUla6(P('fd00::1')));
  t.ok(isUla6(P('fc00::1')));
  t.notOk(isUla6(P('fe00::1')));
  t.notOk(isUla6(P('2001:db8::1')));
  t.ok(isV4Mapped6(P('::ffff:1.2.3.4')));
  t.notOk(isV4Mapped6(P('::1.2.3.4')));
  t.equal(v4OfMapped(P('::ffff:192.168.1.1')), '192.168.1.1');
  t.equal(v4OfMapped(P('fd00::1')), null);
  t.equal(unicastProblem6(P('fd00::1')), '');
  t.equal(unicastProblem6(P('2001:db8::1')), '');
  for (const s of ['::', '::1', 'ff02::1', 'fe80::1', '::ffff:10.0.0.1']) t.not(unicastProblem6(P(s)), '', s);
  t.equal(subnetProblem6(parseCidr6('fd00:1::/64')!), '');
  t.match(subnetProblem6(parseCidr6('fe80::/64')!), /link-local/);
  t.match(subnetProblem6(parseCidr6('ff00::/64')!), /multicast/);
  t.match(subnetProblem6(parseCidr6('::ffff:0:0/96')!), /IPv4-mapped/);
  t.match(subnetProblem6(parseCidr6('::/64')!), /loopback|unspecified|IPv4-mapped/, 'the /64 holding ::1');
});
