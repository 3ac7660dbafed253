import t from 'tap';
import { PublishError, bindingFamily, bindingsConflict, bindingsFromDockerPorts, expandBinding, formatBinding, formatHostPort, parsePublish } from '../../src/domain/publish';

const b = (hostIp: string, hostPort: number, containerPort: number, proto: 'tcp' | 'udp' = 'tcp') => ({ hostIp, hostPort, containerPort, proto });

t.test('parsePublish: accepted forms', async (t) => {
  t.same(parsePublish('8080:80'), [b('0.0.0.0', 8080, 80)]);
  t.same(parsePublish('127.0.0.1:8081:80/tcp'), [b('127.0.0.1', 8081, 80)]);
  t.same(parsePublish('5353:53/udp'), [b('0.0.0.0', 5353, 53, 'udp')]);
  t.same(parsePublish('0.0.0.0:8080:80'), [b('0.0.0.0', 8080, 80)]);
  t.same(parsePublish('9000-9002:9000-9002'), [b('0.0.0.0', 9000, 9000), b('0.0.0.0', 9001, 9001), b('0.0.0.0', 9002, 9002)]);
  t.same(parsePublish('10.0.0.1:8000-8001:80-81/udp'), [b('10.0.0.1', 8000, 80, 'udp'), b('10.0.0.1', 8001, 81, 'udp')]);
  t.same(parsePublish(':8080:80'), [b('0.0.0.0', 8080, 80)], 'empty host ip means any');
  t.same(parsePublish('1:65535'), [b('0.0.0.0', 1, 65535)]);
  t.same(parsePublish('7-7:8-8'), [b('0.0.0.0', 7, 8)], 'one-port ranges');
});

t.test('parsePublish: rejected forms', async (t) => {
  const bad: [string, RegExp][] = [
    ['80', /explicit host port/],
    ['80/udp', /explicit host port/],
    ['127.0.0.1::80', /explicit host port/],
    ['8000-8010:80', /picks one free port/],
    ['8000-8001:80-82', /same length/],
    ['8080:80-81', /same length/],
    ['8002-8000:80-82', /reversed/],
    ['0:80', /out of range/],
    ['8080:0', /out of range/],
    ['65536:80', /out of range/],
    ['123456:80', /not a port number/],
    ['-1:80', /not a port number/],
    ['8080:80/sctp', /sctp is not supported yet/],
    ['8080:80/TCP', /unknown protocol/],
    ['8080:80/', /unknown protocol/],
    ['localhost:8080:80', /invalid host IPv4/],
    ['300.1.1.1:8080:80', /invalid host IPv4/],
    ['::1:8080:80', /needs brackets/],
    ['::8080:80', /needs brackets/],
    ['[::1:8080:80', /unclosed/],
    ['::1]:8080:80', /needs brackets/],
    ['1]:8080:80', /unmatched/],
    ['[::1]8080:80', /expected ":hostPort" after \[::1\]/],
    ['[::1]:8080', /expected "\[ip\]:hostPort:containerPort"/],
    ['[::1]:8080:80:90', /too many ":"/],
    ['[::1]::80', /explicit host port/],
    ['[]:8080:80', /invalid host IPv6/],
    ['[fd00::g]:8080:80', /invalid host IPv6/],
    ['[fe80::1%eth0]:8080:80', /invalid host IPv6/],
    ['[fe80::1]:8080:80', /link-local/],
    ['[ff02::1]:8080:80', /multicast/],
    ['[::ffff:10.0.0.1]:8080:80', /IPv4-mapped.*publish on 10\.0\.0\.1/],
    ['[10.0.0.1]:8080:80', /brackets are for IPv6/],
    ['[::]:8080:80/sctp', /sctp/],
    ['', /empty/],
    ['8080:', /not a port number/],
    ['a:b', /not a port number/],
  ];
  for (const [spec, re] of bad) {
    t.throws(() => parsePublish(spec), PublishError, spec);
    try {
      parsePublish(spec);
    } catch (err) {
      t.match((err as Error).message, re, `${JSON.stringify(spec)}: ${(err as Error).message}`);
    }
  }
});

t.test('parsePublish: IPv6 host addresses (Docker 29)', async (t) => {
  t.same(parsePublish('[::]:8080:80'), [b('::', 8080, 80)], 'any IPv6 address');
  t.same(parsePublish('[0:0::0]:8080:80'), [b('::', 8080, 80)], 'the unspecified address, canonical');
  t.same(parsePublish('[::1]:8081:80/udp'), [b('::1', 8081, 80, 'udp')], 'the host only');
  t.same(parsePublish('[FD00:0::05]:8080:80'), [b('fd00::5', 8080, 80)], 'canonical text');
  t.same(parsePublish('[2001:db8::1]:9000-9001:90-91'), [b('2001:db8::1', 9000, 90), b('2001:db8::1', 9001, 91)], 'ranges');
});

t.test('families: bindingFamily, expandBinding', async (t) => {
  t.equal(bindingFamily(b('0.0.0.0', 1, 1)), 4);
  t.equal(bindingFamily(b('::', 1, 1)), 6);
  t.equal(bindingFamily(b('fd00::5', 1, 1)), 6);
  const both = { ipv4: true, ipv6: true };
  const v4 = { ipv4: true, ipv6: false };
  const v6 = { ipv4: false, ipv6: true };
  t.same(expandBinding(b('0.0.0.0', 1, 1), both), ['0.0.0.0', '::'], '8080:80 on a dual-stack network: one entry per family');
  t.same(expandBinding(b('0.0.0.0', 1, 1), v4), ['0.0.0.0']);
  t.same(expandBinding(b('0.0.0.0', 1, 1), v6), ['::'], 'IPv6-only network');
  t.same(expandBinding(b('::', 1, 1), both), ['::'], '[::] is IPv6 only');
  t.same(expandBinding(b('::', 1, 1), v4), [], 'no IPv6 on the network');
  t.same(expandBinding(b('::1', 1, 1), both), ['::1']);
  t.same(expandBinding(b('127.0.0.1', 1, 1), both), ['127.0.0.1']);
  t.same(expandBinding(b('127.0.0.1', 1, 1), v6), []);
  t.same(expandBinding(b('fd00::5', 1, 1), v6), ['fd00::5']);
});

t.test('IPv6 conflicts and formatting', async (t) => {
  t.ok(bindingsConflict(b('0.0.0.0', 80, 1), b('::', 80, 2)), 'IPv4 and IPv6 get the same host port');
  t.ok(bindingsConflict(b('::', 80, 1), b('0.0.0.0', 80, 2)), 'symmetric');
  t.ok(bindingsConflict(b('::', 80, 1), b('::1', 80, 2)), 'any v6 vs v6 loopback');
  t.ok(bindingsConflict(b('fd00::5', 80, 1), b('::', 80, 2)), 'v6 address vs any v6');
  t.ok(bindingsConflict(b('0.0.0.0', 80, 1), b('fd00::5', 80, 2)), 'any (both families) vs a v6 address');
  t.ok(bindingsConflict(b('::1', 80, 1), b('::1', 80, 2)), 'same v6 address');
  t.notOk(bindingsConflict(b('::', 80, 1), b('127.0.0.1', 80, 2)), '[::] and 127.0.0.1 do not meet');
  t.notOk(bindingsConflict(b('::', 80, 1), b('10.0.0.1', 80, 2)), '[::] and an IPv4 address do not meet');
  t.notOk(bindingsConflict(b('::1', 80, 1), b('fd00::5', 80, 2)), 'two v6 addresses');
  t.notOk(bindingsConflict(b('::', 80, 1), b('::', 80, 1, 'udp')), 'tcp vs udp');
  t.notOk(bindingsConflict(b('::', 80, 1), b('::', 81, 1)), 'other port');
  t.equal(formatBinding(b('::', 8080, 80)), '[::]:8080->80/tcp', 'as docker ps writes it');
  t.equal(formatBinding(b('fd00::5', 8080, 80, 'udp')), '[fd00::5]:8080->80/udp');
  t.equal(formatHostPort('::1', 8081), '[::1]:8081');
  t.equal(formatHostPort('10.0.0.1', 8081), '10.0.0.1:8081');
});

t.test('conflicts and formatting', async (t) => {
  t.ok(bindingsConflict(b('0.0.0.0', 80, 1), b('0.0.0.0', 80, 2)), 'same any');
  t.ok(bindingsConflict(b('127.0.0.1', 80, 1), b('0.0.0.0', 80, 2)), 'specific vs any');
  t.ok(bindingsConflict(b('0.0.0.0', 80, 1), b('10.0.0.1', 80, 2)), 'any vs specific');
  t.ok(bindingsConflict(b('10.0.0.1', 80, 1), b('10.0.0.1', 80, 2)), 'same specific');
  t.notOk(bindingsConflict(b('10.0.0.1', 80, 1), b('10.0.0.2', 80, 2)), 'two specific addresses');
  t.notOk(bindingsConflict(b('0.0.0.0', 80, 1), b('0.0.0.0', 80, 1, 'udp')), 'tcp vs udp');
  t.notOk(bindingsConflict(b('0.0.0.0', 80, 1), b('0.0.0.0', 81, 1)), 'other port');
  t.equal(formatBinding(b('127.0.0.1', 8081, 80)), '127.0.0.1:8081->80/tcp');
});

t.test("Docker's NetworkSettings.Ports", async (t) => {
  const ports = {
    '80/tcp': [
      { HostIp: '0.0.0.0', HostPort: '8080' },
      { HostIp: '::', HostPort: '8080' },
    ],
    '53/udp': [{ HostIp: '127.0.0.1', HostPort: '5353' }],
    '443/tcp': null,
    '9/sctp': [{ HostIp: '0.0.0.0', HostPort: '9' }],
    '81/tcp': [{ HostIp: '', HostPort: '8181' }],
  };
  t.same(bindingsFromDockerPorts(ports), [b('0.0.0.0', 8080, 80), b('127.0.0.1', 5353, 53, 'udp'), b('0.0.0.0', 8181, 81)]);
  t.same(bindingsFromDockerPorts(null), []);
  t.same(bindingsFromDockerPorts({}), []);
  t.throws(() => bindingsFromDockerPorts({ '80': [{ HostIp: '0.0.0.0', HostPort: '1' }] }), PublishError);
  t.throws(() => bindingsFromDockerPorts({ '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '' }] }), PublishError);
});
