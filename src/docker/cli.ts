/** `berth run` options for Docker mode and the policy (cli.ts only adds them). */
import type { Command } from 'commander';
import { parseIPv4 } from '../ipv4';
import { DEFAULT_DOCKER_SOCKET } from './client';
import type { DockerModeOptions } from './mode';

export function addDockerOptions(cmd: Command): Command {
  return cmd
    .option('--docker', 'follow dockerd (run it with --iptables=false) instead of a topology file')
    .option('--docker-socket <path>', 'the Docker Engine API socket', DEFAULT_DOCKER_SOCKET)
    .option('--uplinks <names>', 'comma-separated uplink interfaces (Docker mode; default: every outside-facing interface)')
    .option('--default-bridge-icc <bool>', 'icc on Docker\'s default bridge (dockerd --icc, which dockerd refuses with --iptables=false)', 'true')
    .option('--default-bridge-masquerade <bool>', 'masquerade on Docker\'s default bridge (dockerd --ip-masq)', 'true')
    .option('--default-bind-ip <ip>', 'host address of -p without one (dockerd --ip)', '0.0.0.0')
    .option('--policy <file>', 'user policy (DOCKER-USER equivalent): YAML list of allow/deny rules; reloaded on SIGHUP');
}

/** Docker-mode options from parsed flags (undefined when --docker is not given). Throws on bad values. */
export function dockerModeFrom(o: Record<string, unknown>): DockerModeOptions | undefined {
  if (!o.docker) return undefined;
  const icc = String(o.defaultBridgeIcc ?? 'true');
  if (icc !== 'true' && icc !== 'false') throw new Error(`--default-bridge-icc must be true or false, got '${icc}'`);
  const masq = String(o.defaultBridgeMasquerade ?? 'true');
  if (masq !== 'true' && masq !== 'false') throw new Error(`--default-bridge-masquerade must be true or false, got '${masq}'`);
  const bind = String(o.defaultBindIp ?? '0.0.0.0');
  if (parseIPv4(bind) === null) throw new Error(`--default-bind-ip: invalid IPv4 address '${bind}'`);
  const uplinks = o.uplinks === undefined ? undefined : String(o.uplinks).split(',').map((s) => s.trim()).filter(Boolean);
  return {
    socketPath: String(o.dockerSocket ?? DEFAULT_DOCKER_SOCKET),
    settings: { defaultBridgeIcc: icc === 'true', defaultBridgeMasquerade: masq === 'true', defaultBindIp: bind, ...(uplinks ? { uplinks } : {}) },
  };
}
