// The agent's default state directory (docs/agent.md), so that `status`, `down`, `browse` and `revoke` find an
// agent started without --state:
//   $AUTOTUNNEL_STATE_DIR                         when set (the lab sets one per node: its hosts share one disk)
//   /var/lib/autotunnel-agent                     as root (beside, not inside, a server's --data /var/lib/autotunnel)
//   $XDG_STATE_HOME/autotunnel-agent              otherwise, XDG_STATE_HOME defaulting to ~/.local/state
import { homedir } from 'node:os'
import { join } from 'node:path'

export const STATE_DIR_ENV = 'AUTOTUNNEL_STATE_DIR'
export const ROOT_STATE_DIR = '/var/lib/autotunnel-agent'

export function defaultStateDir(
  env: NodeJS.ProcessEnv = process.env,
  uid: number | undefined = process.getuid?.(),
  home: () => string = homedir,
): string {
  const fromEnv = env[STATE_DIR_ENV]
  if (fromEnv) return fromEnv
  if (uid === 0) return ROOT_STATE_DIR
  return join(env.XDG_STATE_HOME || join(home(), '.local', 'state'), 'autotunnel-agent')
}
