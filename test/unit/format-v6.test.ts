// berth status and berth ports with IPv6 (issue 12): pure formatting.
import t from 'tap';
import { formatPorts, formatStatus } from '../../src/cli/format';
import type { PortRow } from '../../src/observe/ports';
import type { Status } from '../../src/observe/status';

const base: Status = {
  pinRoot: '/sys/fs/bpf/x',
  loaded: true,
  programs: [],
  networks: [{ id: 1, name: 'a', bridge: 'br-a', subnet: '10.88.0.0/24', gateway: '10.88.0.1', icc: true, routed: false, endpoints: 1 }],
  endpoints: [{ container: 'c1', network: 'a', address: '10.88.0.2', mac: '02:00:00:00:00:01', interface: 'veth1', ifindex: 7, hooks: ['ingress'] }],
  staleLinks: 0,
  socketHooks: { available: false, reason: 'none', attached: [] },
};

t.test('status: IPv6 columns only when there is IPv6', async (t) => {
  const v4 = formatStatus(base);
  t.notMatch(v4, /SUBNET6|GATEWAY6|ADDRESS6/, 'an IPv4-only status keeps its columns');
  const v6 = formatStatus({
    ...base,
    networks: [{ ...base.networks[0]!, subnet6: 'fd88:a::/64', gateway6: 'fd88:a::1' }, { id: 2, name: 'b', bridge: 'br-b', subnet: '10.88.1.0/24', gateway: '10.88.1.1', icc: true, routed: false, endpoints: 0 }],
    endpoints: [{ ...base.endpoints[0]!, address6: 'fd88:a::2' }],
  });
  t.match(v6, /NETWORK +ID +BRIDGE +SUBNET +GATEWAY +SUBNET6 +GATEWAY6 +ICC/);
  t.match(v6, /\na +1 +br-a +10\.88\.0\.0\/24 +10\.88\.0\.1 +fd88:a::\/64 +fd88:a::1 +yes/);
  t.match(v6, /\nb +2 +br-b +10\.88\.1\.0\/24 +10\.88\.1\.1 +- +- +yes/, 'a network without IPv6: -');
  t.match(v6, /CONTAINER +NETWORK +ADDRESS +ADDRESS6 +MAC/);
  t.match(v6, /\nc1 +a +10\.88\.0\.2 +fd88:a::2 +02:00:00:00:00:01/);
});

t.test('ports: IPv6 bindings as Docker writes them', async (t) => {
  const row = (hostIp: string, containerIp: string, extra: Partial<PortRow> = {}): PortRow => ({ hostIp, hostPort: 8080, proto: 'tcp', container: 'c1', network: 'a', containerIp, containerPort: 80, loopbackOnly: false, routed: false, ...extra });
  const out = formatPorts([row('0.0.0.0', '10.88.0.2'), row('::', 'fd88:a::2'), row('::1', 'fd88:a::2', { loopbackOnly: true })]);
  t.match(out, /\n0\.0\.0\.0:8080 +tcp +c1 +a +10\.88\.0\.2:80 +any/);
  t.match(out, /\n\[::\]:8080 +tcp +c1 +a +\[fd88:a::2\]:80 +any/);
  t.match(out, /\n\[::1\]:8080 +tcp +c1 +a +\[fd88:a::2\]:80 +host only/);
});
