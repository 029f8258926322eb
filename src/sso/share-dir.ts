// Where single sign-on keeps what the SSO user must read (the ticket hook, the CA, the client certificate and key):
// /var/lib/autotunnel/sso on a machine, outside the agent's own state directory, which is root's only. The lab sets
// AUTOTUNNEL_SSO_SHARE_DIR per node (its hosts share one disk, where machines each have their own /var/lib).
export const SSO_SHARE_DIR_ENV = 'AUTOTUNNEL_SSO_SHARE_DIR'
export const DEFAULT_SSO_SHARE_DIR = '/var/lib/autotunnel/sso'

export function ssoShareDir(env: NodeJS.ProcessEnv = process.env): string {
  return env[SSO_SHARE_DIR_ENV] || DEFAULT_SSO_SHARE_DIR
}

/** `off`: single sign-on only with an explicit --sso-user (the lab sets it: its hosts share the machine's /etc). */
export const SSO_DEFAULT_ENV = 'AUTOTUNNEL_SSO_DEFAULT'
