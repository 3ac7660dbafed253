/** `berth run` options for Docker mode and the policy (cli.ts only adds them). */
import type { Command } from 'commander';
import { parseIPv4 } from '../domain/ipv4';
import { ifnameProblem } from '../domain/names';
import { DEFAULT_DOCKER_SOCKET } from '../sources/docker/client';
import type { DockerModeOptions } from '../sources/docker/mode';

export function addDockerOptions(cmd: Command): Command {
  return cmd
    .option('--docker', 'follow dockerd (run it with --iptables=false) instead of a topology file')
    .option('--docker-socket <path>', 'the Docker Engine API socket', DEFAULT_DOCKER_SOCKET)
    .option('--uplinks <names>', 'comma-separated uplinks, whose addresses masquerade uses (Docker mode; default: every outside-facing interface)')
    .option('--interfaces <names>', 'comma-separated interfaces that serve published ports besides the uplinks (Docker mode; default: every outside-facing interface)')
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
  const uplinks = interfaceNames(o.uplinks, '--uplinks');
  const interfaces = interfaceNames(o.interfaces, '--interfaces');
  return {
    socketPath: String(o.dockerSocket ?? DEFAULT_DOCKER_SOCKET),
    settings: { defaultBridgeIcc: icc === 'true', defaultBridgeMasquerade: masq === 'true', defaultBindIp: bind, ...(uplinks ? { uplinks } : {}), ...(interfaces ? { interfaces } : {}) },
  };
}

/** A comma-separated list of interface names ('' is the empty list); undefined when not given. Throws on a bad name. */
export function interfaceNames(v: unknown, flag: string): string[] | undefined {
  if (v === undefined) return undefined;
  const names = String(v).split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) {
    const p = ifnameProblem(n);
    if (p) throw new Error(`${flag}: invalid interface name '${n}': ${p}`);
  }
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new Error(`${flag}: '${dup}' is named twice`);
  return names;
}
