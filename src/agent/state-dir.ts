// The agent's default state directory (docs/agent.md), so that `status`, `down`, `browse` and `revoke` find an
// agent started without --state:
//   $AUTOTUNNEL_STATE_DIR                         when set (the lab sets one per node: its hosts share one disk)
//   /var/lib/autotunnel-agent                     as root (beside, not inside, a server's --data /var/lib/autotunnel)
//   $XDG_STATE_HOME/autotunnel-agent              otherwise, XDG_STATE_HOME defaulting to ~/.local/state
//   /var/lib/autotunnel-agent                     for a user without a home directory (a systemd dynamic user)
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
  if (env.XDG_STATE_HOME) return join(env.XDG_STATE_HOME, 'autotunnel-agent')
  try {
    return join(home(), '.local', 'state', 'autotunnel-agent')
  } catch {
    // A user with no home: a systemd DynamicUser= where nss-systemd is not in nsswitch.conf (Debian's default) has
    // no passwd entry and no $HOME, and os.homedir() throws. The default is computed when the CLI starts, for every
    // command (`autotunnel server` in its unit died of it): the system's directory then, where `status` looks too.
    return ROOT_STATE_DIR
  }
}
