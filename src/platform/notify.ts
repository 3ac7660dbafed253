/**
 * sd_notify(3) for `berth run` under systemd (Type=notify, cli/service.ts): one datagram of
 * "KEY=value" lines to the unix socket $NOTIFY_SOCKET names (a leading '@' is an abstract name).
 * Without NOTIFY_SOCKET nothing is sent. The sending is native (node has no unix datagram
 * sockets): native/notify.cc.
 */
import { native } from './native';

/** Send `state` (e.g. 'READY=1') to $NOTIFY_SOCKET; false when it is not set. A send failure throws (a BpfError-like error with errno, code, op). */
export function sdNotify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return false;
  native().sendUnixDatagram(socket, Buffer.from(state.endsWith('\n') ? state : `${state}\n`));
  return true;
}
