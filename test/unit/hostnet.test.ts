// Host facts that decide what berth may do: the masquerade range against the
// host's own ephemeral ports.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_SETTINGS } from '../../src/config';
import { checkNatPortRange, hostEphemeralPorts } from '../../src/hostnet';

t.test('the masquerade range may not overlap the host\'s ephemeral ports', async (t) => {
  const host = { min: 32768, max: 60999 };
  t.doesNotThrow(() => checkNatPortRange(61000, 65535, host), 'above it');
  t.doesNotThrow(() => checkNatPortRange(20000, 32767, host), 'below it');
  t.throws(() => checkNatPortRange(60999, 65535, host), /overlap the host's own ephemeral ports \(net\.ipv4\.ip_local_port_range 32768 60999\)/, 'one port in common');
  t.throws(() => checkNatPortRange(40000, 45000, host), /settings\.nat/, 'inside it');
  t.throws(() => checkNatPortRange(1024, 65535, host), /overlap/, 'around it');
});

t.test('the default range fits a stock host, and this one', async (t) => {
  t.doesNotThrow(() => checkNatPortRange(DEFAULT_SETTINGS.nat.portMin, DEFAULT_SETTINGS.nat.portMax, { min: 32768, max: 60999 }));
  const here = hostEphemeralPorts();
  t.ok(here.min > 0 && here.max >= here.min, `this host: ${here.min}-${here.max}`);
});

t.test('hostEphemeralPorts reads the sysctl file', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-hostnet-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'r'), '1024\t65000\n');
  t.same(hostEphemeralPorts(path.join(dir, 'r')), { min: 1024, max: 65000 });
  fs.writeFileSync(path.join(dir, 'bad'), 'x\n');
  t.throws(() => hostEphemeralPorts(path.join(dir, 'bad')), /unreadable/);
});
