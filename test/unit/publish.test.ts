import t from 'tap';
import { PublishError, bindingsConflict, bindingsFromDockerPorts, formatBinding, parsePublish } from '../../src/publish';

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
    ['[::1]:8080:80', /IPv6/],
    ['::1:8080:80', /IPv6/],
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
