// Finding the cgroup v2 mount in mountinfo text, and the planner leaving the
// socket-hook steps out (and nothing else) when there is none.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CgroupOptionError, NO_CGROUP2, checkCgroup2Dir, findCgroup2, parseMountinfo, resolveSocketHooks, unescapeMountField } from '../../src/platform/cgroup';
import { CurrentState, DesiredState, plan } from '../../src/engine/reconcile';

const PURE = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
25 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
26 24 0:24 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:5 - bpf bpf rw,mode=700
`;

const HYBRID = `22 1 8:1 / / rw,relatime - ext4 /dev/vda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;

const NONE = `22 1 8:1 / / rw,relatime - ext4 /dev/vda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
`;

// a container's view: the cgroup2 mount shows only its own subtree
const SUBTREE = `100 99 0:50 / / rw - overlay overlay rw
110 100 0:23 /docker/4f1e /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw
`;

t.test('mountinfo fields, with the octal escapes undone', async (t) => {
  t.equal(unescapeMountField('/mnt/my\\040cgroup\\011x\\134y'), '/mnt/my cgroup\tx\\y');
  const [e] = parseMountinfo('41 31 0:38 /a\\040b /mnt/cg\\040two rw,relatime shared:9 master:3 - cgroup2 none\\040x rw\n');
  t.same(e, { mountId: 41, parentId: 31, device: '0:38', root: '/a b', mountPoint: '/mnt/cg two', options: 'rw,relatime', fsType: 'cgroup2', source: 'none x', superOptions: 'rw' });
  t.same(parseMountinfo('garbage\n\n1 2 3\n'), [], 'lines without the format are skipped');
});

t.test('which cgroup2 mount', async (t) => {
  t.same(findCgroup2(PURE), { path: '/sys/fs/cgroup', root: '/' }, 'pure cgroup v2');
  t.same(findCgroup2(HYBRID), { path: '/sys/fs/cgroup/unified', root: '/' }, 'hybrid');
  t.equal(findCgroup2(NONE), undefined, 'none');
  t.same(findCgroup2(SUBTREE), { path: '/sys/fs/cgroup', root: '/docker/4f1e' }, 'a subtree is still found');
  const spaced = `${NONE}50 22 0:60 / /run/my\\040cgroups rw - cgroup2 none rw\n`;
  t.same(findCgroup2(spaced), { path: '/run/my cgroups', root: '/' }, 'anywhere else, escaped space');
  // a private mount (listed later) never wins over the system's
  t.same(findCgroup2(`${HYBRID}60 22 0:38 / /tmp/x rw - cgroup2 none rw\n`)?.path, '/sys/fs/cgroup/unified');
  // a whole-tree mount wins over a subtree one wherever they are
  t.same(findCgroup2(`${SUBTREE}120 100 0:23 / /host/cg rw - cgroup2 cgroup2 rw\n`), { path: '/host/cg', root: '/' });
  // mounted over: the visible mount counts
  t.equal(findCgroup2(`${PURE}70 25 0:80 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n`), undefined, 'cgroup2 hidden under a tmpfs');
});

t.test('resolving the target', async (t) => {
  t.same(resolveSocketHooks({ mountinfo: PURE }), { available: true, cgroup: '/sys/fs/cgroup', source: 'mountinfo' });
  t.same(resolveSocketHooks({ mountinfo: NONE }), { available: false, reason: NO_CGROUP2 });
  t.match(NO_CGROUP2, /no cgroup2 mount in \/proc\/self\/mountinfo; mount one .* or pass --cgroup/);
  const sub = resolveSocketHooks({ mountinfo: SUBTREE });
  t.ok(sub.available && /shows only \/docker\/4f1e/.test(sub.note ?? ''), 'a subtree comes with a note');

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cg-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  t.throws(() => checkCgroup2Dir(dir), CgroupOptionError);
  t.throws(() => resolveSocketHooks({ override: dir, mountinfo: PURE }), /--cgroup .*: not a cgroup v2 directory \(it is on /);
  t.throws(() => resolveSocketHooks({ override: path.join(dir, 'missing') }), /no such directory/);
  t.same(resolveSocketHooks({ override: '', mountinfo: HYBRID }), { available: true, cgroup: '/sys/fs/cgroup/unified', source: 'mountinfo' }, 'an empty override is no override');
});

const desired: DesiredState = {
  networks: [{ name: 'n', bridge: 'b-n', subnet: '10.239.1.0', prefixLen: 24, gateway: '10.239.1.1', icc: true }],
  endpoints: [{ container: 'c', network: 'n', ip: '10.239.1.10', mac: '02:00:00:00:00:0a', ifindex: 10, ifname: 'bthc' }],
  socketHooks: true,
};
const current = (over: Partial<CurrentState> = {}): CurrentState => ({
  networks: new Map(),
  endpoints: new Map(),
  byIp: new Map(),
  counters: new Set(),
  attachments: [],
  progIds: { ingress: 1, egress: 2, sock: { connect4: 3, sendmsg4: 4, recvmsg4: 5, connect6: 6, sendmsg6: 7, recvmsg6: 8 } },
  cgroupAttachments: [],
  ...over,
});

t.test('the plan without cgroup v2: no cgroup steps, everything else', async (t) => {
  const scope = new Set(['n']);
  const withHooks = plan(desired, current(), scope);
  const without = plan(desired, current({ socketHooksAvailable: false }), scope);
  t.same(withHooks.filter((s) => s.op === 'attachCgroup').map((s) => s.op === 'attachCgroup' && s.hook), ['connect4', 'sendmsg4', 'recvmsg4', 'connect6', 'sendmsg6', 'recvmsg6']);
  t.equal(without.filter((s) => s.op === 'attachCgroup' || s.op === 'detachCgroup').length, 0);
  t.same(without, withHooks.filter((s) => s.op !== 'attachCgroup'), 'the rest of the plan is the same');
  // hooks pinned earlier are left alone, and can still be removed when not wanted
  const pinned = current({ socketHooksAvailable: false, cgroupAttachments: [{ hook: 'connect4', progId: 3 }] });
  t.equal(plan(desired, pinned, scope).filter((s) => s.op === 'detachCgroup').length, 0);
  t.same(plan({ ...desired, socketHooks: false }, pinned, scope).filter((s) => s.op === 'detachCgroup').length, 1);
});
