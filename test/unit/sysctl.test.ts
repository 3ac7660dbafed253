// The one sysctl module (src/platform/sysctl.ts): keys by segments, every
// write read back, clear errors; and forwarding turned on for a real
// interface this test makes, in both families.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SysctlError, enableForwarding, forwardingKey, readSysctl, sysctlName, writeSysctl } from '../../src/platform/sysctl';

t.test('keys: segments, named as sysctl(8) names them', async (t) => {
  t.equal(sysctlName(['net', 'ipv4', 'conf', 'eth0.100', 'forwarding']), 'net.ipv4.conf.eth0/100.forwarding', 'a dot inside a segment is a slash');
  t.same(forwardingKey(6, 'br0'), ['net', 'ipv6', 'conf', 'br0', 'forwarding']);
  t.throws(() => forwardingKey(4, 'a/b'), /not an interface name: "a\/b"/);
  t.throws(() => forwardingKey(4, ''), /not an interface name/);
  t.throws(() => forwardingKey(4, 'x'.repeat(16)), /not an interface name/, 'longer than IFNAMSIZ - 1');
  t.throws(() => readSysctl(['net', '..', 'x']), SysctlError, 'no walking out of /proc/sys');
});

t.test('on a tree of files: read, write and read back, missing keys, a write that does not stick', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bmg-sysctl-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.mkdirSync(path.join(root, 'net/ipv4/conf/bmg0'), { recursive: true });
  fs.writeFileSync(path.join(root, 'net/ipv4/conf/bmg0/forwarding'), '0\n');
  t.equal(readSysctl(['net', 'ipv4', 'conf', 'bmg0', 'forwarding'], root), '0');
  t.equal(readSysctl(['net', 'ipv4', 'conf', 'nope', 'forwarding'], root), undefined, 'missing: undefined');
  t.equal(enableForwarding(4, 'bmg0', root), 'enabled');
  t.equal(fs.readFileSync(path.join(root, 'net/ipv4/conf/bmg0/forwarding'), 'utf8'), '1\n');
  t.equal(enableForwarding(4, 'bmg0', root), 'already');
  t.equal(enableForwarding(6, 'bmg0', root), 'missing', 'no such key in this family');
  t.equal(writeSysctl(['net', 'ipv4', 'conf', 'nope', 'forwarding'], '1', root), false, 'a missing key is not created');
  t.notOk(fs.existsSync(path.join(root, 'net/ipv4/conf/nope')));
  // a key whose writes vanish (as a value the kernel clamps or ignores would)
  fs.mkdirSync(path.join(root, 'net/ipv4/conf/bmg1'), { recursive: true });
  fs.symlinkSync('/dev/null', path.join(root, 'net/ipv4/conf/bmg1/forwarding'));
  t.throws(() => enableForwarding(4, 'bmg1', root), /sysctl net\.ipv4\.conf\.bmg1\.forwarding: set to 1, but it reads back ""/, 'read back: the value did not stick');
});

const VA = `bmgfw${process.pid % 10000}a`;
const VB = `bmgfw${process.pid % 10000}b`;
const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'pipe' });

t.test('the kernel: forwarding on for an interface of this test, both families, and a refusal', async (t) => {
  ip('link', 'add', VA, 'type', 'veth', 'peer', 'name', VB);
  t.teardown(() => {
    try {
      ip('link', 'del', VA);
    } catch {
      /* already gone */
    }
  });
  const has6 = fs.existsSync(`/proc/sys/net/ipv6/conf/${VA}`);
  for (const family of has6 ? ([4, 6] as const) : ([4] as const)) {
    const key = forwardingKey(family, VA);
    t.equal(writeSysctl(key, '0'), true, `IPv${family}: set off first (the host's default may be on)`);
    t.equal(readSysctl(key), '0');
    t.equal(enableForwarding(family, VA), 'enabled', `IPv${family}: turned on`);
    t.equal(fs.readFileSync(`/proc/sys/net/ipv${family}/conf/${VA}/forwarding`, 'utf8').trim(), '1', `IPv${family}: the kernel holds it`);
    t.equal(enableForwarding(family, VA), 'already', `IPv${family}: a second time changes nothing`);
  }
  if (!has6) t.comment('IPv6 is off on this host: the IPv6 key was not checked');
  const err = (() => {
    try {
      writeSysctl(forwardingKey(4, VA), 'x');
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  t.type(err, SysctlError, 'a value the kernel refuses is an error');
  t.match((err as SysctlError).message, new RegExp(`sysctl net\\.ipv4\\.conf\\.${VA}\\.forwarding: cannot set it to x`));
  t.equal((err as SysctlError).code, 'EINVAL');
  t.equal(readSysctl(forwardingKey(4, VA)), '1', 'and it changed nothing');
  ip('link', 'del', VA);
  t.equal(enableForwarding(4, VA), 'missing', 'an interface that is gone: missing, nothing written');
});
